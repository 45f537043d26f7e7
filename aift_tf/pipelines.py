"""tf.data pipelines over a candidate store.

* :func:`scoring_dataset` streams the patches of some candidates from HDF5, candidate-major
  (all ``m`` patches of ``ids[0]``, then of ``ids[1]``, …), as float32 batches.
* :func:`predict_candidates` runs a model over that stream and regroups the patch predictions
  into an ``(len(ids), m, K)`` array in the order of ``ids``.
* :func:`training_dataset` serves the (small) labelled set: every patch of a labelled candidate
  with the candidate's label, optionally shuffled, class-balanced and augmented, all seeded.

Randomness: shuffling, balancing and augmentation are seeded by ``seed`` through tf.data's seeded
ops, so two datasets built with the same ``seed`` yield the same batches and every new pass
(epoch) reshuffles/re-augments in a repeatable way. tf.data combines op seeds with TensorFlow's
global seed, so the sequence also depends on ``tf.random.set_seed`` (fixed unless you change it).
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import tensorflow as tf

from aift_tf.errors import AiftError
from aift_tf.sources import as_source

__all__ = [
    "scoring_dataset",
    "predict_candidates",
    "training_dataset",
    "num_patches",
    "steps_per_epoch",
    "augment_batch",
    "examples_dataset",
    "inference_step",
    "run_batches",
    "aligned_chunk",
]

AUTOTUNE = tf.data.AUTOTUNE
# On-the-fly augmentation ranges (training_dataset(augment=True)).
BRIGHTNESS_DELTA = 0.1  # additive, uniform in [-d, d]
CONTRAST_RANGE = (0.9, 1.1)  # multiplicative around each patch's per-channel mean


def _ids_array(source, ids) -> np.ndarray:
    return as_source(source).check_ids(ids)


def _check_batch_size(batch_size) -> int:
    try:
        b = int(batch_size)
    except (TypeError, ValueError):
        raise AiftError(f"batch_size must be a positive integer, got {batch_size!r}") from None
    if b < 1 or b != batch_size:
        raise AiftError(f"batch_size must be a positive integer, got {batch_size!r}")
    return b


def num_patches(store, ids) -> int:
    """Number of patches (training examples) of the candidates ``ids``: ``len(ids) * m``."""
    return int(len(_ids_array(store, ids))) * int(store.m)


def steps_per_epoch(store, ids, batch_size: int) -> int:
    """Batches in one pass over the patches of ``ids`` (the last batch may be smaller)."""
    return math.ceil(num_patches(store, ids) / _check_batch_size(batch_size))


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------


def scoring_dataset(store, ids, batch_size: int = 256) -> tf.data.Dataset:
    """Float32 ``(b, H, W, C)`` patch batches of ``ids`` in candidate-major order.

    Patches are read from the HDF5 file in blocks of whole candidates by a generator (one reader;
    the store's lock makes this safe alongside other reads), regrouped into exactly
    ``batch_size`` patches with vectorised numpy slicing (only the last batch is smaller),
    converted to float32 in [0, 1] inside TensorFlow and prefetched. The dataset has a known
    cardinality and can be iterated several times.

    Args:
        store: an open :class:`aift_tf.store.CandidateStore`.
        ids: candidate ids (None = all candidates), in the order wanted.
        batch_size: patches per batch.
    """
    ids = _ids_array(store, ids)
    bs = _check_batch_size(batch_size)
    m = int(store.m)
    h, w, c = store.patch_shape
    dtype = np.dtype(store.dtype)
    per_batch = math.ceil(bs / m)  # candidates needed for one batch
    chunk = max(per_batch, min(4 * per_batch, store.default_chunk()))

    def generate():
        pending = None
        for _, block in store.iter_chunks(ids, chunk, as_float=False):
            flat = block.reshape(-1, h, w, c)
            if pending is not None and pending.shape[0]:
                flat = np.concatenate([pending, flat])
            full = flat.shape[0] // bs * bs
            for i in range(0, full, bs):
                yield flat[i:i + bs]
            pending = flat[full:]
        if pending is not None and pending.shape[0]:
            yield pending

    ds = tf.data.Dataset.from_generator(
        generate, output_signature=tf.TensorSpec((None, h, w, c), tf.as_dtype(dtype))
    )
    if dtype == np.uint8:
        ds = ds.map(lambda x: tf.cast(x, tf.float32) / 255.0, num_parallel_calls=AUTOTUNE)
    ds = ds.apply(tf.data.experimental.assert_cardinality(math.ceil(ids.shape[0] * m / bs)))
    return ds.prefetch(AUTOTUNE)


def _to_probs(y, model_name: str) -> np.ndarray:
    if isinstance(y, dict):
        if len(y) != 1:
            raise AiftError(f"model {model_name} has {len(y)} outputs; predict_candidates needs one")
        y = next(iter(y.values()))
    if isinstance(y, (list, tuple)):
        if len(y) != 1:
            raise AiftError(f"model {model_name} has {len(y)} outputs; predict_candidates needs one")
        y = y[0]
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise AiftError(f"model {model_name} outputs shape {y.shape}; expected (batch, K) probabilities")
    if y.shape[1] == 1:  # sigmoid P(positive) -> [1 - p, p]
        y = np.concatenate([1.0 - y, y], axis=1)
    return y


def _check_probs(y: np.ndarray, model_name: str) -> None:
    if not np.isfinite(y).all():
        raise AiftError(f"model {model_name} produced NaN or infinite outputs")
    lo, hi = float(y.min()), float(y.max())
    sums = y.sum(axis=1)
    if lo < -1e-3 or hi > 1 + 1e-3 or np.abs(sums - 1).max() > 1e-2:
        raise AiftError(
            f"model {model_name} outputs do not look like probabilities (values in [{lo:.3g}, {hi:.3g}], "
            f"row sums up to {float(np.abs(sums - 1).max() + 1):.3g}); end the model with a softmax"
        )


def predict_candidates(model, source, ids=None, batch_size: int = 256, progress=None, distribution=None) -> np.ndarray:
    """Patch probabilities of candidates, ``(len(ids), m, K)`` float32, in the order of ``ids``.

    Args:
        model: a Keras model mapping a float32 batch of the source's examples (patches ``(b, H, W, C)``
            in [0, 1] for a store) to ``(b, K)`` softmax probabilities, or ``(b, 1)`` sigmoid
            P(positive) (converted to ``[1 - p, p]``).
        source: an open :class:`aift_tf.store.CandidateStore`, or any :class:`aift_tf.sources.PatchSource`
            (e.g. a :class:`aift_tf.trunk_cache.TrunkCache`, with ``model`` the trainable rest).
        ids: candidate ids (None = all ``0 … n-1``).
        batch_size: examples per forward pass (the global batch under a distribution).
        progress: optional ``callable(n_done_candidates, n_total)`` called after each batch that
            completes a candidate.
        distribution: optional ``tf.distribute.Strategy`` the model was built under; every batch is
            split over its local replicas (see :mod:`aift_tf.distribute`).

    How it runs (profiled on a shared 2-core CPU, see ``benchmarks/``): candidates are read in large
    blocks (~32 MB, a whole number of batches) by a background thread one block ahead of the model,
    so reading overlaps inference; batches are numpy views of a block in the *stored* dtype (uint8 →
    float32 happens inside the compiled step, not in numpy); the step is a ``tf.function``
    (``training=False``) cached per model and input signature (held weakly, never attached to the
    model), so repeated calls – every round, every validation epoch – do not retrace; predictions
    are written straight into the preallocated ``(n·m, K)`` result, the only O(n) array.

    Raises:
        AiftError: if the outputs are not probabilities (e.g. logits).

    Example:
    >>> predict_candidates(model, store, [4, 2]).shape
    (2, 5, 2)
    """
    source = as_source(source)
    ids = source.check_ids(ids)
    n, m = ids.shape[0], int(source.m)
    name = getattr(model, "name", type(model).__name__)
    bs = _check_batch_size(batch_size)
    if n == 0:
        k = model.output_shape[-1] if hasattr(model, "output_shape") else 2
        return np.empty((0, m, max(int(k), 2)), dtype=np.float32)
    step = inference_step(model, source.example_shape, np.dtype(source.dtype), distribution=distribution)
    chunk = aligned_chunk(bs, m, source.block_candidates())
    out = None
    total = n * m
    done = 0
    last_reported = -1
    for y in run_batches(step, source.blocks(ids, chunk), bs):
        y = _to_probs(y, name)
        if out is None:
            _check_probs(y, name)
            out = np.empty((total, y.shape[1]), dtype=np.float32)
        b = y.shape[0]
        out[done:done + b] = y
        done += b
        if progress is not None:
            cand = done // m
            if cand != last_reported:
                progress(cand, n)
                last_reported = cand
    if done != total:  # pragma: no cover - guards against a store changing under us
        raise AiftError(f"{source.name}: expected {total} patch predictions, got {done}")
    return out.reshape(n, m, -1)


def aligned_chunk(batch_size: int, m: int, target: int) -> int:
    """Candidates per block: about ``target`` and a whole number of batches (``chunk·m % bs == 0``)."""
    unit = batch_size // math.gcd(batch_size, m)  # candidates in lcm(bs, m) patches
    return max(unit, (max(int(target), 1) // unit) * unit)


def run_batches(step, blocks, batch_size: int):
    """Yield ``step(batch)`` as numpy for consecutive ``batch_size`` slices of ``blocks``.

    ``blocks`` yields arrays whose first axis is the example axis. The next block is produced by a
    background thread while the current one is being computed (one block of read-ahead: HDF5
    reads overlap model compute, memory stays bounded by two blocks). Blocks whose length is not a
    multiple of ``batch_size`` are carried over into the next block, so every batch but the last
    is full.
    """
    import queue
    import threading

    q: "queue.Queue" = queue.Queue(maxsize=1)
    stop = threading.Event()
    _END = object()

    def produce():
        try:
            for blk in blocks:
                while not stop.is_set():
                    try:
                        q.put(blk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as e:  # re-raised in the consumer
            q.put(e)

    t = threading.Thread(target=produce, name="aift-read-ahead", daemon=True)
    t.start()
    pending = None
    try:
        while True:
            item = q.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            flat = item
            if pending is not None and pending.shape[0]:
                flat = np.concatenate([pending, flat])
            full = flat.shape[0] // batch_size * batch_size
            for i in range(0, full, batch_size):
                yield _numpy(step(flat[i:i + batch_size]))
            pending = flat[full:]
        if pending is not None and pending.shape[0]:
            yield _numpy(step(pending))
    finally:
        stop.set()
        t.join(timeout=5)


def _numpy(y):
    if isinstance(y, dict):
        return {k: _numpy(v) for k, v in y.items()}
    if isinstance(y, (list, tuple)):
        return type(y)(_numpy(v) for v in y)
    return y.numpy() if hasattr(y, "numpy") else np.asarray(y)


# Compiled inference steps, per model (held weakly: an entry dies with its model) and per
# (input shape, dtype, distribution). The steps reference the model only through a weak reference, so
# the cache never keeps a model alive and nothing is attached to the model (SavedModel export).
_STEPS = weakref.WeakKeyDictionary()


def inference_step(model, input_shape, dtype=np.float32, distribution=None):
    """A compiled ``model(x, training=False)`` for any batch size, cached per model.

    ``dtype`` is the dtype batches arrive in: uint8 batches are converted to float32 in [0, 1]
    inside the step (``x / 255``, exactly as :meth:`CandidateStore.read_float`). With a
    multi-replica ``distribution`` the batch is split in contiguous parts over the local replicas and
    the results are concatenated in order. Returns a callable ``step(numpy_batch) -> tensor``.
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(v) for v in input_shape)
    replicas = _local_replicas(distribution)
    key = (shape, dtype.str, id(distribution) if replicas > 1 else None)
    try:
        per_model = _STEPS.setdefault(model, {})
    except TypeError:  # not weak-referenceable: build per call
        per_model = {}
    step = per_model.get(key)
    if step is None:
        step = _build_step(weakref.ref(model) if _weakrefable(model) else (lambda: model),
                           shape, dtype, distribution if replicas > 1 else None, replicas)
        per_model[key] = step
    return step


def _weakrefable(obj) -> bool:
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False


def _local_replicas(distribution) -> int:
    if distribution is None or int(distribution.num_replicas_in_sync) <= 1:
        return 1
    try:
        return max(1, len(distribution.extended.worker_devices))
    except (AttributeError, NotImplementedError, RuntimeError):
        return int(distribution.num_replicas_in_sync)


def _build_step(model_ref, shape, dtype, distribution, replicas):
    is_uint8 = dtype == np.uint8
    tf_dtype = tf.as_dtype(dtype)

    def forward(x):
        if is_uint8:
            x = tf.cast(x, tf.float32) / 255.0
        return model_ref()(x, training=False)

    if distribution is None:
        fn = tf.function(forward, input_signature=[tf.TensorSpec((None,) + shape, tf_dtype)])
        return fn

    run = tf.function(lambda x: distribution.run(forward, args=(x,)), reduce_retracing=True)

    def step(x):
        x = np.asarray(x)
        parts = np.array_split(x, replicas)
        dist = distribution.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(parts[ctx.replica_id_in_sync_group % replicas]))
        y = run(dist)
        local = distribution.experimental_local_results(y)
        if isinstance(local[0], dict) or isinstance(local[0], (list, tuple)):
            raise AiftError("distributed scoring needs a single-output model")
        return tf.concat([tf.convert_to_tensor(v) for v in local], axis=0)

    return step


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def augment_batch(x, seed):
    """Randomly flip, transpose (square patches), and jitter brightness/contrast a batch.

    Each patch of ``x`` (float32 ``(b, H, W, C)`` in [0, 1]) gets its own random dihedral
    transform (flips + transpose cover all 8 rotations/reflections) and a small brightness and
    contrast change; the result is clipped to [0, 1]. ``seed`` is a stateless seed (shape ``[2]``
    int), so the same seed gives the same output.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=5)
    b = tf.shape(x)[0]

    def coin(s):
        return (tf.random.stateless_uniform([b], seed=s) < 0.5)[:, None, None, None]

    x = tf.where(coin(seeds[0]), tf.reverse(x, axis=[2]), x)
    x = tf.where(coin(seeds[1]), tf.reverse(x, axis=[1]), x)
    if x.shape[1] is not None and x.shape[1] == x.shape[2]:
        x = tf.where(coin(seeds[2]), tf.transpose(x, [0, 2, 1, 3]), x)
    delta = tf.random.stateless_uniform([b, 1, 1, 1], seed=seeds[3], minval=-BRIGHTNESS_DELTA, maxval=BRIGHTNESS_DELTA)
    factor = tf.random.stateless_uniform([b, 1, 1, 1], seed=seeds[4], minval=CONTRAST_RANGE[0], maxval=CONTRAST_RANGE[1])
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    x = (x - mean) * factor + mean + delta
    return tf.clip_by_value(x, 0.0, 1.0)


def training_dataset(
    source,
    ids,
    labels,
    batch_size: int = 64,
    seed: int = 0,
    augment: bool = False,
    balance: bool = False,
    shuffle: bool = True,
    repeat: bool = False,
) -> tf.data.Dataset:
    """``(x, y)`` batches of every example (patch) of the labelled candidates ``ids``.

    Args:
        source: an open :class:`aift_tf.store.CandidateStore`, or any
            :class:`aift_tf.sources.PatchSource` (e.g. a :class:`aift_tf.trunk_cache.TrunkCache`:
            batches of cached trunk features, in the same seeded order as the patches).
        ids: labelled candidate ids (their examples are read into memory once, in the source's
            dtype; the labelled set is small).
        labels: ``(len(ids),)`` class indices in ``[0, K-1]``; every example inherits its
            candidate's label.
        batch_size: examples per batch (the last batch of a pass may be smaller).
        seed: seeds shuffling, balancing and augmentation (repeatable; a new order every pass).
        augment: random flips/transposes and brightness/contrast jitter (see :func:`augment_batch`);
            refused by sources whose examples are not patches (a trunk cache).
        balance: sample examples so that every class present is equally likely (each class is
            drawn with replacement, shuffled); one pass has the original number of examples.
            Balanced sampling is random, so ``shuffle`` is ignored when it is on.
        shuffle: reshuffle all examples every pass (ignored with ``balance``).
        repeat: repeat forever (use ``steps_per_epoch(store, ids, batch_size)`` steps per epoch);
            otherwise one pass with a known cardinality.

    Returns:
        tf.data.Dataset of ``(x float32 (b, *example_shape), y int32 (b,))``; patches in [0, 1].

    Example:
    >>> ds = training_dataset(store, [0, 3], [1, 0], batch_size=8, seed=1)
    """
    source = as_source(source)
    source.check_augment(augment)
    ids = source.check_ids(ids)
    bs = _check_batch_size(batch_size)
    y_c = np.asarray(labels)
    if y_c.shape != ids.shape:
        raise AiftError(f"labels has shape {y_c.shape}, expected ({ids.shape[0]},) (one per candidate id)")
    if ids.shape[0] == 0:
        raise AiftError("training_dataset needs at least one labelled candidate")
    if y_c.dtype.kind not in "iu" and not (y_c.dtype.kind == "f" and np.all(y_c == np.round(y_c))):
        raise AiftError(f"labels must be integer class indices, got dtype {y_c.dtype}")
    y_c = y_c.astype(np.int64)
    k = int(source.num_classes)
    bad = (y_c < 0) | (y_c >= k)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AiftError(
            f"label {int(y_c[i])} of candidate {int(ids[i])} is not a class index in [0, {k - 1}]"
            + (" (-1 = unknown cannot be trained on)" if y_c[i] == -1 else "")
        )
    try:
        seed = int(seed) if seed is not None else 0
    except (TypeError, ValueError):
        raise AiftError(f"seed must be an integer, got {seed!r}") from None

    m = int(source.m)
    # Kept in the source's dtype (uint8 is 4x smaller than float32); converted per batch.
    x = source.read(ids).reshape((-1,) + tuple(source.example_shape))
    y = np.repeat(y_c, m).astype(np.int32)
    return examples_dataset(x, y, bs, seed=seed, augment=augment, balance=balance, shuffle=shuffle,
                            repeat=repeat)


def examples_dataset(x, y, batch_size: int, seed: int = 0, augment: bool = False, balance: bool = False,
                     shuffle: bool = True, repeat: bool = False) -> tf.data.Dataset:
    """``(x, y)`` batches over in-memory examples, with :func:`training_dataset`'s seeded order.

    ``x`` is ``(N, ...)`` (uint8 is converted to float32 / 255 per batch; other dtypes are served as
    float32 as they are), ``y`` is ``(N,)`` int32. Two calls with the same ``len(y)``, labels, batch
    size and seed visit the examples in the same order, whatever ``x`` holds — so training on cached
    trunk features (:mod:`aift_tf.trunk_cache`) sees the same batches as training on the patches.
    ``augment`` needs image batches ``(b, H, W, C)``.
    """
    bs = _check_batch_size(batch_size)
    y = np.asarray(y, dtype=np.int32)
    n_p = int(y.shape[0])
    x_t = tf.constant(x)
    y_t = tf.constant(y)
    is_uint8 = x.dtype == np.uint8

    def one_stream(_=None):
        def gather(i):
            xb = tf.gather(x_t, i)
            xb = tf.cast(xb, tf.float32) / 255.0 if is_uint8 else tf.cast(xb, tf.float32)
            return xb, tf.gather(y_t, i)

        classes = np.unique(y)
        if balance and classes.shape[0] > 1:
            per_class = []
            for k in classes:
                idx = np.flatnonzero(y == k).astype(np.int64)
                per_class.append(
                    tf.data.Dataset.from_tensor_slices(idx)
                    .shuffle(idx.shape[0], seed=seed + 1 + int(k), reshuffle_each_iteration=True)
                    .repeat()
                )
            weights = [1.0 / len(per_class)] * len(per_class)
            index = tf.data.Dataset.sample_from_datasets(
                per_class, weights=weights, seed=seed, rerandomize_each_iteration=True
            ).take(n_p)
        elif shuffle:
            index = tf.data.Dataset.range(n_p).shuffle(n_p, seed=seed, reshuffle_each_iteration=True)
        else:
            index = tf.data.Dataset.range(n_p)

        ds = index.batch(bs).map(gather, num_parallel_calls=AUTOTUNE)
        if augment:
            rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            seed_t = tf.constant(seed, tf.int64)
            ds = tf.data.Dataset.zip((ds, rand)).map(
                lambda xy, r: (augment_batch(xy[0], tf.stack([r, seed_t])), xy[1]),
                num_parallel_calls=AUTOTUNE,
                deterministic=True,
            )
        steps = math.ceil(n_p / bs)
        ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
        if repeat:
            ds = ds.repeat()
        return ds

    if not repeat:
        return one_stream().prefetch(AUTOTUNE)
    # Repeated (a fit of a fixed number of steps): built inside a flat_map so that every new iterator
    # starts from the first seeded shuffle. Under a tf.distribute strategy Keras draws one batch from
    # a first iterator before training and then trains on a second one; with the shuffle's state
    # shared by both, the second iterator's order depended on how far the first one had prefetched
    # (a race between runs). The first iterator's batches are exactly the plain stream's.
    ds = tf.data.Dataset.range(1).flat_map(one_stream)
    return ds.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY)).prefetch(AUTOTUNE)
