"""Patch sources: what a network reads for each candidate.

A network of the learner reads, for each candidate id, ``m`` examples of one shape. Two sources
provide them:

* :class:`StoreSource` – the patches of a :class:`aift_tf.store.CandidateStore` (stored uint8 is
  served as float32 / 255 to the network, exactly as ``CandidateStore.read_float``);
* :class:`aift_tf.trunk_cache.TrunkCache` – the cached activations of a frozen trunk (float32),
  read by the trainable rest of the network (see :func:`aift_tf.zoo.split_frozen`).

:func:`aift_tf.pipelines.predict_candidates`, :func:`aift_tf.pipelines.training_dataset` and
:func:`aift_tf.finetune.fine_tune` take either (or a plain store, wrapped by :func:`as_source`), so
scoring and fine-tuning are written once for both.

Example:
>>> from aift_tf.sources import as_source
>>> src = as_source(store)
>>> src.read([0, 3]).shape == (2, src.m) + src.example_shape
True
"""

from __future__ import annotations

import numpy as np

from aift_tf.errors import AiftError

__all__ = ["PatchSource", "StoreSource", "as_source"]


class PatchSource:
    """The examples of every candidate, ``(n, m, *example_shape)`` in ``dtype``.

    Subclasses set the attributes and implement :meth:`read`; the other methods have defaults.

    Attributes:
        n: number of candidates (ids are ``0 … n-1``).
        m: examples per candidate.
        example_shape: the shape of one example (a network input without the batch axis).
        dtype: numpy dtype :meth:`read` returns (uint8 examples are images scaled by 255).
        num_classes: K, the number of classes of the labels.
        labels: ``(n,)`` int64 candidate labels (-1 = unknown).
        name: what error messages call the source (the store's path).
    """

    n: int
    m: int
    example_shape: tuple
    dtype: np.dtype
    num_classes: int
    labels: np.ndarray
    name: str

    def read(self, ids) -> np.ndarray:
        """Examples of ``ids``: ``(len(ids), m, *example_shape)`` in ``dtype``, in the order asked."""
        raise NotImplementedError

    def read_float(self, ids) -> np.ndarray:
        """Like :meth:`read` but float32 network inputs (uint8 is divided by 255)."""
        x = self.read(ids)
        if x.dtype == np.uint8:
            return x.astype(np.float32) / np.float32(255.0)
        return x

    def block_candidates(self) -> int:
        """Candidates per read block (about 32 MB)."""
        row = int(self.m) * int(np.prod(self.example_shape)) * np.dtype(self.dtype).itemsize
        return max(1, (32 << 20) // max(row, 1))

    def blocks(self, ids, chunk: int):
        """Yield the examples of consecutive ``chunk`` candidates of ``ids`` as flat
        ``(chunk·m, *example_shape)`` blocks in ``dtype``."""
        for i in range(0, len(ids), int(chunk)):
            yield self.read(ids[i:i + chunk]).reshape((-1,) + tuple(self.example_shape))

    def check_ids(self, ids) -> np.ndarray:
        """``ids`` as a 1-D int64 array of valid candidate ids (None = all ``0 … n-1``)."""
        if ids is None:
            return np.arange(self.n, dtype=np.int64)
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise AiftError(f"candidate ids must be 1-D, got shape {arr.shape}")
        if arr.size and arr.dtype.kind not in "iu":
            raise AiftError(f"candidate ids must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.n):
            bad = arr[(arr < 0) | (arr >= self.n)][0]
            raise AiftError(f"{self.name}: candidate id {int(bad)} is out of range [0, {self.n - 1}]")
        return arr

    def check_augment(self, augment: bool) -> None:
        """Raise a one-line :class:`AiftError` if on-the-fly augmentation cannot apply to these examples."""


class StoreSource(PatchSource):
    """The patches of a candidate store (the examples are the stored patches, ``(H, W, C)``).

    Args:
        store: an open :class:`aift_tf.store.CandidateStore`.

    Example:
    >>> StoreSource(store).example_shape == tuple(store.patch_shape)
    True
    """

    def __init__(self, store):
        self.store = store

    n = property(lambda self: int(self.store.n))
    m = property(lambda self: int(self.store.m))
    example_shape = property(lambda self: tuple(self.store.patch_shape))
    dtype = property(lambda self: np.dtype(self.store.dtype))
    num_classes = property(lambda self: int(self.store.num_classes))
    labels = property(lambda self: self.store.labels)
    name = property(lambda self: str(self.store.path))

    def read(self, ids) -> np.ndarray:
        return self.store.read(ids)

    def read_float(self, ids) -> np.ndarray:
        return self.store.read_float(ids)

    def block_candidates(self) -> int:
        return self.store.default_chunk()

    def blocks(self, ids, chunk: int):
        shape = (-1,) + self.example_shape
        return (b.reshape(shape) for _, b in self.store.iter_chunks(ids, chunk, as_float=False))

    def __repr__(self) -> str:
        return f"<StoreSource {self.store.path}>"


def as_source(obj) -> PatchSource:
    """``obj`` if it is a :class:`PatchSource`, a :class:`StoreSource` over it if it is a store.

    Raises:
        AiftError: for anything else.
    """
    if isinstance(obj, PatchSource):
        return obj
    if hasattr(obj, "patch_shape") and hasattr(obj, "read") and hasattr(obj, "iter_chunks"):
        return StoreSource(obj)
    raise AiftError(f"expected a candidate store or a patch source, got {type(obj).__name__}")
