"""Cached frozen trunk: run the frozen part of a network once per patch for a whole simulation.

With ``trainable="head"`` or ``"top"`` most of the network never changes between rounds.
:func:`aift_tf.zoo.split_frozen` cuts a model into ``trunk`` (frozen prefix) and ``rest``
(trainable suffix, sharing its layers with the model, ``rest(trunk(x)) == model(x)``).
:class:`TrunkCache` computes ``trunk(x)`` for every patch of the store once and keeps the
activations in memory or in an HDF5 side file; rounds then only run ``rest``:

A :class:`TrunkCache` is a :class:`aift_tf.sources.PatchSource` whose examples are the cached
features, so the ordinary pipelines run ``rest`` on it:

* scoring: ``predict_candidates(rest, cache, ids)`` (:func:`aift_tf.pipelines.predict_candidates`);
* fine-tuning: ``fine_tune(rest, cache, ...)`` trains ``rest`` on cached features with the same
  seeded batch order as on the patches (:func:`aift_tf.pipelines.training_dataset`). Frozen
  BatchNorm layers run in inference mode, so this gives the same weights as training the full
  model with a frozen trunk (up to float rounding).

On-the-fly augmentation changes the trunk's input, so it cannot be used with cached features:
:func:`check_cacheable` and :meth:`TrunkCache.check_augment` refuse ``augment=True``.

Side files are keyed by ``sha256(store file) + trunk architecture + trunk weights``, so a file is
reused only for exactly the same patches and frozen weights (e.g. every strategy and seed of a
simulation that starts from the same M0), and any change produces a new file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import numpy as np

from aift_tf.errors import AiftError
from aift_tf.sources import PatchSource

__all__ = ["TrunkCache", "check_cacheable", "trunk_key", "CACHEABLE_POLICIES"]

CACHEABLE_POLICIES = ("head", "top")
FORMAT = 1
AUGMENT_REFUSED = ("cache_trunk cannot be used with augment=True: augmentation changes the trunk's input "
                   "every epoch, so cached trunk activations would be wrong; disable one of them")


def check_cacheable(trainable, augment: bool = False) -> None:
    """Raise a one-line :class:`AiftError` unless a trunk cache can be used."""
    if trainable not in CACHEABLE_POLICIES:
        raise AiftError(f"cache_trunk needs trainable in {CACHEABLE_POLICIES} (a frozen trunk), got {trainable!r}")
    if augment:
        raise AiftError(AUGMENT_REFUSED)


def _weights_hash(model) -> str:
    h = hashlib.sha256()
    for w in model.get_weights():
        a = np.ascontiguousarray(w)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _without_initializers(config):
    """A layer config without its weight initializers: they carry the seed the model was built with (the
    new head's seed differs per simulation seed) but not what the trunk computes; its weights are hashed."""
    if isinstance(config, dict):
        return {k: _without_initializers(v) for k, v in config.items() if not str(k).endswith("_initializer")}
    if isinstance(config, (list, tuple)):
        return [_without_initializers(v) for v in config]
    return config


def trunk_key(store, trunk) -> str:
    """sha256 over the store file's sha256, the trunk's architecture (without its initializers, which only
    carry the build seed) and its weights: every seed of a simulation that starts from one M0 shares a file."""
    arch = json.dumps(_without_initializers(trunk.get_config()), sort_keys=True, default=str)
    h = hashlib.sha256()
    h.update(f"aift-trunk-cache/{FORMAT}\n".encode())
    h.update(store.sha256.encode() + b"\n")
    h.update(arch.encode() + b"\n")
    h.update(_weights_hash(trunk).encode())
    return h.hexdigest()


class TrunkCache(PatchSource):
    """Trunk activations of every patch of a store, ``(n, m, *feature_shape)`` float32.

    A :class:`aift_tf.sources.PatchSource` (``example_shape == feature_shape``, dtype float32): pass
    it with the trainable rest to :func:`aift_tf.pipelines.predict_candidates`,
    :func:`aift_tf.pipelines.training_dataset` or :func:`aift_tf.finetune.fine_tune`.

    Args:
        store: an open :class:`aift_tf.store.CandidateStore`.
        trunk: the frozen prefix from :func:`aift_tf.zoo.split_frozen`.
        directory: ``None`` keeps the activations in memory; a directory keeps them in an HDF5 side
            file ``<store stem>.trunk-<key[:16]>.h5`` there (reused when it exists; written
            atomically) and reads them in blocks, so memory stays bounded.
        batch_size: patches per trunk forward pass while filling the cache.
        distribution: optional ``tf.distribute.Strategy`` for filling and scoring.
        progress: optional ``callable(done_candidates, total)``.

    Attributes:
        key, path (side file or None), feature_shape, seconds (time spent computing, 0 if reused).

    Example:
    >>> trunk, rest = split_frozen(model)
    >>> cache = TrunkCache(store, trunk)
    >>> probs = predict_candidates(rest, cache, [0, 1])   # == predict_candidates(model, store, [0, 1])
    """

    dtype = np.dtype(np.float32)
    n = property(lambda self: int(self.store.n))
    m = property(lambda self: int(self.store.m))
    example_shape = property(lambda self: self.feature_shape)
    num_classes = property(lambda self: int(self.store.num_classes))
    labels = property(lambda self: self.store.labels)
    name = property(lambda self: str(self.store.path))

    def __init__(self, store, trunk, directory=None, batch_size: int = 256, distribution=None, progress=None):
        import time

        self.store = store
        self.distribution = distribution
        self.batch_size = int(batch_size)
        self.key = trunk_key(store, trunk)
        fshape = tuple(int(v) for v in trunk.output_shape[1:])
        if any(v is None for v in fshape):  # pragma: no cover - zoo cuts have static shapes
            raise AiftError(f"trunk output shape {trunk.output_shape} is not fully known")
        self.feature_shape = fshape
        self.path: Optional[Path] = None
        self._mem = None
        self._h5 = None
        t0 = time.perf_counter()
        computed = False
        if directory is None:
            self._mem = np.empty((store.n, store.m) + fshape, dtype=np.float32)
            self._fill(trunk, lambda a, b, y: self._mem.reshape((-1,) + fshape).__setitem__(slice(a, b), y), progress)
            computed = True
        else:
            d = Path(directory)
            d.mkdir(parents=True, exist_ok=True)
            self.path = d / f"{Path(store.path).stem}.trunk-{self.key[:16]}.h5"
            from filelock import FileLock

            # processes sharing the directory (aift-sim's workers) compute a missing file once: the others wait
            with FileLock(str(self.path) + ".lock"):
                if not self._valid_file(self.path):
                    self._write_file(trunk, progress)
                    computed = True
            import h5py

            self._h5 = h5py.File(self.path, "r")
            self._ds = self._h5["features"]
        self.seconds = time.perf_counter() - t0 if computed else 0.0

    # ------------------------------------------------------------------ filling
    def _fill(self, trunk, put, progress):
        from aift_tf.pipelines import aligned_chunk, inference_step, run_batches

        st = self.store
        shape = tuple(st.patch_shape)
        step = inference_step(trunk, shape, np.dtype(st.dtype), distribution=self.distribution)
        chunk = aligned_chunk(self.batch_size, st.m, st.default_chunk())
        blocks = (b.reshape((-1,) + shape) for _, b in st.iter_chunks(None, chunk, as_float=False))
        done = 0
        for y in run_batches(step, blocks, self.batch_size):
            y = np.asarray(y, dtype=np.float32)
            put(done, done + y.shape[0], y)
            done += y.shape[0]
            if progress is not None:
                progress(done // st.m, st.n)
        if done != st.n * st.m:  # pragma: no cover
            raise AiftError(f"{st.path}: trunk produced {done} outputs for {st.n * st.m} patches")

    def _valid_file(self, path: Path) -> bool:
        import h5py

        if not path.is_file():
            return False
        try:
            with h5py.File(path, "r") as f:
                return (f.attrs.get("key") == self.key and f.attrs.get("complete") == 1
                        and f["features"].shape == (self.store.n, self.store.m) + self.feature_shape)
        except (OSError, KeyError):
            return False

    def _write_file(self, trunk, progress):
        import h5py

        from aift_tf.files import atomic_path

        st = self.store
        row = int(np.prod(self.feature_shape)) * 4 * st.m
        with atomic_path(self.path) as tmp:
            with h5py.File(tmp, "w") as f:
                ds = f.create_dataset("features", shape=(st.n, st.m) + self.feature_shape, dtype="float32",
                                      chunks=(max(1, min(st.n, (1 << 20) // max(row, 1))), st.m) + self.feature_shape)
                flat_m = st.m

                def put(a, b, y):  # a, b are patch offsets; write whole candidates when aligned
                    y = y.reshape((-1,) + self.feature_shape)
                    ca, ra = divmod(a, flat_m)
                    cb, rb = divmod(b, flat_m)
                    if ra == 0 and rb == 0:
                        ds[ca:cb] = y.reshape((cb - ca, flat_m) + self.feature_shape)
                    else:  # pragma: no cover - blocks are batch- and candidate-aligned except the tail
                        for p in range(a, b):
                            ds[p // flat_m, p % flat_m] = y[p - a]

                self._fill(trunk, put, progress)
                f.attrs["key"] = self.key
                f.attrs["store_sha256"] = st.sha256
                f.attrs["complete"] = 1

    # ------------------------------------------------------------------ reading
    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __del__(self):  # pragma: no cover
        try:
            self.close()
        except Exception:
            pass

    def read(self, ids) -> np.ndarray:
        """Features of ``ids`` as ``(len(ids), m, *feature_shape)`` float32, in the order asked."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._mem is not None:
            return self._mem[ids]
        if ids.size == 0:
            return np.empty((0, self.store.m) + self.feature_shape, np.float32)
        uniq, inv = np.unique(ids, return_inverse=True)
        out = np.empty((uniq.shape[0], self.store.m) + self.feature_shape, np.float32)
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [uniq.shape[0]]])
        for a, b in zip(starts.tolist(), stops.tolist()):
            lo = int(uniq[a])
            self._ds.read_direct(out, source_sel=np.s_[lo:lo + (b - a)], dest_sel=np.s_[a:b])
        if uniq.shape[0] == ids.shape[0] and np.array_equal(uniq, ids):
            return out
        return out[inv.reshape(-1)]

    def pooled(self, ids) -> np.ndarray:
        """Features of ``ids`` averaged over each candidate's ``m`` patches and the spatial axes:
        float32 ``(len(ids), channels)`` (one vector per candidate, e.g. for k-center greedy).

        Example: ``cache.pooled([0, 1]).shape == (2, cache.feature_shape[-1])``.
        """
        ids = np.asarray(ids, dtype=np.int64)
        axes = tuple(range(1, 1 + len(self.feature_shape)))  # m and the spatial axes; channels last
        out = np.empty((ids.shape[0], self.feature_shape[-1]), dtype=np.float32)
        step = max(1, self._chunk())
        for a in range(0, ids.shape[0], step):
            out[a:a + step] = self.read(ids[a:a + step]).mean(axis=axes, dtype=np.float64)
        return out

    def _chunk(self) -> int:
        row = self.store.m * int(np.prod(self.feature_shape)) * 4
        return max(1, (32 << 20) // max(row, 1))

    def block_candidates(self) -> int:
        return self._chunk()

    def check_augment(self, augment: bool) -> None:
        """Refuse ``augment=True``: augmentation would change the trunk's input."""
        if augment:
            raise AiftError(AUGMENT_REFUSED)
