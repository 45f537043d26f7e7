"""Self-supervised M0 on the unlabeled pool itself: SimCLR with the candidate's own patches as views.

Every AIFT user holds thousands of unlabeled candidates of their own domain, and each candidate is
already a bag of ``m`` augmented patches of one object (a frame, a detection, a lesion candidate). That
is exactly what contrastive pre-training needs: two patches of the same candidate are a *positive
pair*, the other candidates of the batch are the negatives.

**Method** (SimCLR, Chen et al., ICML 2020, with the candidate's patches as the augmentation):

* each step draws ``batch_size`` pool candidates and two *different* patches of each (one patch:
  the same patch twice) and augments both lightly: random horizontal flip, a random multiple of 90°
  (square patches), brightness ±0.1 and contrast ×[0.8, 1.2] (numpy, seeded);
* the zoo model's trunk (everything before ``head_dropout``; BatchNorm trained) maps them to its
  pooled features ``h``; a projection MLP ``Dense(128, relu) → Dense(64)`` maps ``h`` to ``z``;
* the loss is NT-Xent (normalised temperature-scaled cross-entropy) over the ``2·batch_size`` views,
  temperature 0.2; Adam, cosine-decayed learning rate;
* the projection is dropped; the trunk becomes M0.

**Why SimCLR rather than Models Genesis restoration.** The store already holds several augmented
views of every candidate, so contrastive learning needs no hand-made corruption and learns what AIFT
needs: features under which a candidate's patches agree and different candidates differ (AIFT's
diversity term compares a candidate's patches). A restoration task (Models Genesis) learns to
reconstruct pixels through an encoder-decoder twice the size, which on 32×32 patches spends most of
the CPU budget on low-level detail. Contrastive learning on small batches is known to be weaker than
with SimCLR's thousands of negatives; here it is measured (a linear probe in the tests, the learning
curves of ``aift-sim --m0 self-supervised``), not assumed.

**Labels are never read**: only ``store.ids``, ``store.read``, the shape and the sha256 are used; a
store whose labels are all −1 works. By default only the pool (``train`` split) is used, so the test
images stay unseen.

**Cost** is fixed by steps × batch, not by pool size: the default 600 steps of 128 candidates (256 views of
32×32) is bounded at **3 minutes on a quiet 2-core CPU** — measured 2 min 36 s for the quick-scale PE store
(benchmarks/RESULTS.md, with TensorFlow's oneDNN kernels, its default; 4 min 46 s with them switched off);
every card records its ``runtime_seconds``.

The output is a ``.weights.h5`` of the zoo model (built for the store's patch shape; the head is a
64-way placeholder, never trained, so ``build_model(..., num_classes=K)`` skips it and every seed
draws its own head, as with the offline M0's 40-way head) with a JSON card beside it.

Example::

    from aift_tf.ssl import ssl_pretrain
    card = ssl_pretrain("pool.h5", "ssl-m0.weights.h5", steps=600, seed=0)
    # then: aift-sim --data pool.h5 --weights ssl-m0.weights.h5   or   aift init P --data pool.h5 --weights ...
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path

import numpy as np

from aift_tf.checks import check_int, check_number
from aift_tf.errors import AiftError
from aift_tf.files import atomic_path, file_sha256, write_json_atomic

CARD_FORMAT = 1
METHOD = "simclr-candidate-views"
DEFAULT_STEPS = 600
DEFAULT_BATCH_SIZE = 128
DEFAULT_LR = 1e-3
DEFAULT_TEMPERATURE = 0.2
PROJECTION = (128, 64)
#: units of the placeholder head saved with the trunk (never trained; skipped when a task loads it)
PLACEHOLDER_CLASSES = 64
#: stores up to this many bytes of patches are read into memory once; larger ones per batch
IN_MEMORY_BYTES = 1 << 30


def two_views(patches: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two augmented views of every candidate of ``patches`` ``(B, m, H, W, C)`` float32 in [0, 1]:
    two different patches (the same one if m == 1), each flipped / rotated / jittered independently.

    Example: ``v1, v2 = two_views(np.random.rand(4, 3, 8, 8, 1).astype("float32"), np.random.default_rng(0))``.
    """
    B, m = patches.shape[:2]
    j1 = rng.integers(m, size=B)
    j2 = (j1 + rng.integers(1, m, size=B)) % m if m > 1 else j1
    rows = np.arange(B)
    return _augment(patches[rows, j1], rng), _augment(patches[rows, j2], rng)


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = x.copy()
    B, H, W = x.shape[:3]
    flip = rng.random(B) < 0.5
    x[flip] = x[flip, :, ::-1]
    if H == W:
        k = rng.integers(4, size=B)
        for r in (1, 2, 3):
            sel = k == r
            if sel.any():
                x[sel] = np.rot90(x[sel], r, axes=(1, 2))
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    c = rng.uniform(0.8, 1.2, size=(B, 1, 1, 1)).astype(np.float32)
    b = rng.uniform(-0.1, 0.1, size=(B, 1, 1, 1)).astype(np.float32)
    return np.clip((x - mean) * c + mean + b, 0.0, 1.0).astype(np.float32)


def _backbone_shape(model):
    """The backbone shape a zoo model was built with (an M0 of another patch shape adapts the input)."""
    from aift_tf.zoo import model_config

    shape = model_config(model).get("backbone_shape")
    return tuple(shape) if shape else None


def encoder_of(model):
    """The zoo model's trunk up to its pooled features (the input of ``head_dropout``)."""
    import keras

    try:
        feats = model.get_layer("head_dropout").input
    except ValueError:
        raise AiftError(f"model {model.name!r} has no head_dropout layer (not a zoo model)") from None
    return keras.Model(model.input, feats, name=f"{model.name}_encoder")


def ssl_pretrain(data, out, *, model: str = "small_cnn", steps: int = DEFAULT_STEPS,
                 batch_size: int = DEFAULT_BATCH_SIZE, lr: float = DEFAULT_LR,
                 temperature: float = DEFAULT_TEMPERATURE, seed: int = 0, split: str | None = "train",
                 init=None, progress=True) -> dict:
    """Pre-train ``model``'s trunk on the patches of store ``data`` (SimCLR, see the module docstring).

    Args:
        data: candidate store path (or an open store); its labels are never read.
        out: weights path ending in ``.weights.h5``; the card is written beside it (``<stem>.json``).
        model: zoo model name.
        steps: gradient steps.
        batch_size: candidates per step (2 views each), at least 2.
        lr: Adam learning rate (cosine-decayed to 1% of it).
        temperature: NT-Xent temperature.
        seed: seeds initialisation, the candidate draws and the augmentation.
        split: which split's candidates to use (default the pool, ``"train"``); ``None`` = every candidate.
        init: ``None`` (random initialisation) or a ``.weights.h5`` to start from (e.g. the offline M0:
            continued, domain-adaptive pre-training on the pool).
        progress: ``True`` shows a tqdm bar; a callable gets ``(step, steps, loss)``; ``False`` silent.

    Returns:
        The card (dict), also written to the card path.
    """
    import keras
    import tensorflow as tf

    from aift_tf.finetune import set_seeds
    from aift_tf.store import open_store
    from aift_tf.zoo import MODEL_NAMES, build_model
    from aift_tf.zoo.pretrained import card_path

    if model not in MODEL_NAMES:
        raise AiftError(f"unknown model {model!r}; valid models: {', '.join(MODEL_NAMES)}")
    steps = check_int(steps, "steps", 1)
    batch_size = check_int(batch_size, "batch_size", 2)
    lr = check_number(lr, "lr", low=0, low_open=True)
    temperature = check_number(temperature, "temperature", low=0, low_open=True)
    seed = check_int(seed, "seed", 0)
    out = Path(out)
    if not out.name.endswith(".weights.h5"):
        raise AiftError(f"{out}: weights file name must end with .weights.h5")
    if not out.parent.exists():
        raise AiftError(f"{out}: parent folder {out.parent} does not exist")

    own = not hasattr(data, "read")
    store = open_store(data) if own else data
    try:
        ids = store.ids(split) if split is not None else np.arange(store.n, dtype=np.int64)
        if ids.size < 2:
            raise AiftError(f"{store.path}: the {split or 'whole'} split has {ids.size} candidate(s); "
                            f"contrastive pre-training needs at least 2")
        shape = tuple(int(v) for v in store.patch_shape)
        batch = min(batch_size, int(ids.size))
        t0 = time.time()
        nbytes = int(ids.size) * store.m * int(np.prod(shape)) * np.dtype(store.dtype).itemsize
        cached = store.read(ids) if nbytes <= IN_MEMORY_BYTES else None
        scale = 255.0 if np.dtype(store.dtype) == np.uint8 else 1.0

        def patches_of(pos):
            raw = cached[pos] if cached is not None else store.read(ids[np.sort(pos)])
            return raw.astype(np.float32) / scale if scale != 1.0 else raw.astype(np.float32)

        set_seeds(seed, deterministic=True)
        net = build_model(model, shape, num_classes=2, weights=None if init is None else str(init), trainable="all",
                          train_batchnorm=True, seed=seed)
        enc = encoder_of(net)
        glorot = keras.initializers.GlorotUniform
        proj = keras.Sequential([keras.layers.Dense(PROJECTION[0], activation="relu", kernel_initializer=glorot(seed)),
                                 keras.layers.Dense(PROJECTION[1], kernel_initializer=glorot(seed + 1))],
                                name="projection")
        proj.build((None, int(enc.output_shape[-1])))
        schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps, alpha=0.01)
        opt = keras.optimizers.Adam(schedule)
        variables = enc.trainable_variables + proj.trainable_variables
        tau = tf.constant(temperature, tf.float32)

        @tf.function(reduce_retracing=True)
        def train_step(v1, v2):
            n = tf.shape(v1)[0]
            with tf.GradientTape() as tape:
                z = proj(enc(tf.concat([v1, v2], axis=0), training=True), training=True)
                z = tf.math.l2_normalize(z, axis=1)
                sim = tf.matmul(z, z, transpose_b=True) / tau
                sim = sim - 1e9 * tf.eye(2 * n)  # a view is not its own positive
                target = tf.concat([tf.range(n, 2 * n), tf.range(0, n)], axis=0)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=sim))
            grads = tape.gradient(loss, variables)
            opt.apply_gradients(zip(grads, variables))
            acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(sim, axis=1, output_type=tf.int32), target), tf.float32))
            return loss, acc

        rng = np.random.default_rng([seed, 31337])
        bar = None
        if progress is True:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, desc=f"self-supervised M0 ({model}, {ids.size} candidates)", unit="step",
                       dynamic_ncols=True)
        losses, accs = [], []
        t_train = time.time()
        for step in range(steps):
            pos = rng.choice(ids.size, size=batch, replace=False)
            v1, v2 = two_views(patches_of(pos), rng)
            loss, acc = train_step(tf.constant(v1), tf.constant(v2))
            losses.append(float(loss))
            accs.append(float(acc))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", pos_acc=f"{accs[-1]:.2f}")
            elif callable(progress):
                progress(step + 1, steps, losses[-1])
        if bar is not None:
            bar.close()
        t_train = time.time() - t_train
        if not np.isfinite(losses[-1]):
            raise AiftError(f"self-supervised pre-training diverged (loss {losses[-1]}); lower --lr")

        # the trunk into a model with a placeholder head (skipped by any task's build_model), no optimizer slots
        clean = build_model(model, shape, num_classes=PLACEHOLDER_CLASSES, weights=None, seed=seed,
                            backbone_shape=_backbone_shape(net))
        for layer in clean.layers:
            if layer.weights and not layer.name.startswith("head_"):
                layer.set_weights(net.get_layer(layer.name).get_weights())
        with atomic_path(out, suffix=".weights.h5") as tmp:
            clean.save_weights(tmp)
        tail = max(1, steps // 10)
        card = {
            "format": CARD_FORMAT,
            "kind": "M0 self-supervised on the unlabeled pool (SimCLR; positive pairs = two patches of one "
                    "candidate); labels never read",
            "model": model,
            # the shape the trunk runs at: the store's, or the init M0's when the input is adapted to it
            "input_shape": list(_backbone_shape(net) or shape),
            "weights_file": out.name,
            "sha256": file_sha256(out),
            "size_bytes": out.stat().st_size,
            "head": f"{PLACEHOLDER_CLASSES}-way placeholder, never trained; skipped when loaded with a task's "
                    f"num_classes, so every seed draws its own head",
            "method": {
                "name": METHOD, "reference": "Chen et al., A Simple Framework for Contrastive Learning of Visual "
                                             "Representations (SimCLR), ICML 2020",
                "views": "two different patches of the same candidate, each with a random horizontal flip, a random "
                         "multiple of 90 degrees (square patches), brightness +-0.1 and contrast x[0.8, 1.2]",
                "encoder": "the zoo model up to head_dropout (pooled trunk features), BatchNorm trained",
                "projection": f"Dense({PROJECTION[0]}, relu) -> Dense({PROJECTION[1]}), dropped after training",
                "loss": "NT-Xent", "temperature": temperature,
            },
            "data": {"store": str(Path(store.path).resolve()), "store_sha256": store.sha256, "app": store.app,
                     "split": split or "all", "candidates": int(ids.size), "patches_per_candidate": int(store.m),
                     "labels_read": False},
            "steps": steps, "batch_size": batch,
            "optimizer": f"Adam, lr {lr:g} cosine-decayed to {lr * 0.01:g}",
            "seed": seed,
            "init": "random" if init is None else {"weights": str(init), "sha256": file_sha256(init)},
            "final_loss": float(np.mean(losses[-tail:])),
            "final_positive_accuracy": float(np.mean(accs[-tail:])),
            "chance_positive_accuracy": 1.0 / (2 * batch - 1),
            "history": {"loss": [round(float(np.mean(losses[i:i + tail])), 4) for i in range(0, steps, tail)],
                        "positive_accuracy": [round(float(np.mean(accs[i:i + tail])), 4)
                                              for i in range(0, steps, tail)]},
            "command": (f"aift-data pretrain --self-supervised --data {store.path} --model {model} --steps {steps} "
                        f"--batch-size {batch_size} --lr {lr:g} --temperature {temperature:g} --seed {seed} "
                        f"--out {out}"),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "runtime_seconds": {"train": round(t_train, 1), "total": round(time.time() - t0, 1)},
        }
        from aift_tf.zoo.pretrained import machine_info

        card["machine"] = machine_info()
        write_json_atomic(card_path(out), card)
        return card
    finally:
        if own:
            store.close()


def pooled_features(weights, store, ids, model: str = "small_cnn", batch_size: int = 256) -> np.ndarray:
    """Trunk features (the input of ``head_dropout``) of a weights file, averaged over each candidate's
    patches: ``(len(ids), d)`` float64 — what a linear probe of the M0 reads (``weights=None``: random trunk)."""
    import warnings

    from aift_tf.zoo import build_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*skipped \\(shape mismatch\\)")  # the placeholder head
        net = build_model(model, tuple(store.patch_shape), num_classes=2, weights=weights, seed=0)
    enc = encoder_of(net)
    x = store.read_float(np.asarray(ids, dtype=np.int64))
    n, m = x.shape[:2]
    f = np.asarray(enc.predict(x.reshape((n * m,) + x.shape[2:]), batch_size=batch_size, verbose=0))
    return f.reshape(n, m, -1).mean(axis=1).astype(np.float64)


def cached_ssl_m0(store, model: str = "small_cnn", cache_dir=None, seed: int = 0, progress=True,
                  steps: int | None = None) -> Path:
    """The self-supervised M0 of ``store`` with the default settings: pre-trained once (:func:`ssl_pretrain`)
    and kept in ``cache_dir/m0/`` (default ``$AIFT_CACHE`` or ``~/.cache/aift-tf``), keyed by the store's
    sha256, the model, the seed and the method's settings; a file whose sha256 differs from its card is
    rebuilt.

    Example: ``aift-sim --m0 self-supervised`` and ``aift init --m0 self-supervised`` use it through
    :func:`self_supervised_m0`.
    """
    import hashlib
    import json

    from aift_tf.zoo.pretrained import m0_card

    if cache_dir is None:
        from aift_tf.files import default_cache_dir

        cache_dir = default_cache_dir()
    steps = DEFAULT_STEPS if steps is None else int(steps)
    settings = dict(method=METHOD, format=CARD_FORMAT, model=model, seed=int(seed), steps=steps,
                    batch_size=DEFAULT_BATCH_SIZE, lr=DEFAULT_LR, temperature=DEFAULT_TEMPERATURE,
                    projection=list(PROJECTION), store=store.sha256)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / "m0"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{Path(store.path).stem}.ssl-{model}-{key}.weights.h5"
    if path.is_file():
        try:
            if m0_card(path).get("sha256") == file_sha256(path):
                return path
        except AiftError:
            pass
    ssl_pretrain(store, path, model=model, seed=seed, steps=steps, progress=progress)
    return path


def self_supervised_m0(store, model: str = "small_cnn", cache_dir=None, seed: int = 0, progress=True):
    """Resolve the self-supervised M0 of ``store`` (pre-trained once, cached: :func:`cached_ssl_m0`) the way
    :func:`aift_tf.zoo.pretrained.resolve_m0` resolves the offline one.

    Returns:
        ``(weights, record)``: the weights file to build the model from, and the M0 record (``source`` =
        ``"self-supervised"``, ``weights``, ``path``, ``card``, a one-line ``summary``) that ``aift-sim``'s
        config.json / report and ``aift init``'s project config print.

    Example:
    >>> weights, m0 = self_supervised_m0(open_store("pool.h5"), "small_cnn")
    >>> m0["source"]
    'self-supervised'
    """
    from aift_tf.zoo.pretrained import m0_card, resolve_m0

    path = cached_ssl_m0(store, model, cache_dir=cache_dir, seed=seed, progress=progress)
    weights, record = resolve_m0(str(path), model, tuple(int(v) for v in store.patch_shape))
    card = m0_card(path)
    record = dict(record, source="self-supervised", weights=weights, path=weights, card=card,
                  summary=f"self-supervised on this store's pool ({card['method']['name']}, {card['steps']} steps "
                          f"of {card['batch_size']} candidates, final positive-pair accuracy "
                          f"{card['final_positive_accuracy']:.2f}); sha256 {card['sha256'][:12]}…")
    return weights, record
