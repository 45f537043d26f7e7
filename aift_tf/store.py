"""The HDF5 candidate store: format, validation, lazy reads and atomic writes.

A *candidate* (a video frame, a detection, a CT location) is a bag of ``m`` augmented patches that
all inherit the candidate's label. One store file holds one data set: every candidate of every
split, with its label (``-1`` while unknown), its group (patient / video / volume) and its split.

File layout (``format = "aift-candidate-store"``, ``format_version = 1``)::

    /patches   (n, m, H, W, C) uint8 or float32 (float32 values in [0, 1]); chunks=(1, m, H, W, C)
    /labels    (n,) int64   -1 = not yet known, else 0 .. K-1
    /groups    (n,) int64   >= 0; a group never spans two splits
    /split     (n,) uint8   0 = train (the active-learning pool), 1 = val, 2 = test
    attrs: format, format_version, app (str), class_names (JSON list of str),
           json_attrs (JSON list of the extra attribute names whose values are JSON-encoded),
           plus any extra attributes given by the writer.

See ``data/README.md`` for the full description. This module needs numpy and h5py only.

Thread safety: h5py is not safe for concurrent use of one handle. Every :class:`CandidateStore`
holds one read-only h5py handle and serialises its reads with a lock, so one store may be read
from a ``tf.data`` generator thread while the main thread also reads it.
"""

from __future__ import annotations

import errno
import gc
import io
import json
import numbers
import sys
import threading
from pathlib import Path

import h5py
import numpy as np

from aift_tf.errors import AiftError, StoreError
from aift_tf.files import WriteFailed, atomic_path, file_sha256, json_default

__all__ = [
    "SPLITS",
    "FORMAT",
    "FORMAT_VERSION",
    "CandidateStore",
    "StoreWriter",
    "open_store",
    "write_store",
    "encode_split",
]

SPLITS = ("train", "val", "test")
FORMAT = "aift-candidate-store"
FORMAT_VERSION = 1
PATCH_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))
RESERVED_ATTRS = ("format", "format_version", "app", "class_names", "json_attrs")
_DATASETS = ("patches", "labels", "groups", "split")
# Bytes of patches read at once when streaming (value checks, default chunk sizes).
_BLOCK_BYTES = 32 << 20


# ----------------------------------------------------------------------------------------------
# Shared validation
# ----------------------------------------------------------------------------------------------


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def encode_split(split, n: int | None = None, where: str = "split") -> np.ndarray:
    """Return split codes (uint8, 0 = train, 1 = val, 2 = test) from names or codes.

    Args:
        split: sequence of "train"/"val"/"test" strings, or integer codes 0/1/2.
        n: expected length (checked when given).
        where: prefix of the error messages (usually the file name).
    """
    arr = np.asarray(split)
    if arr.ndim != 1:
        raise StoreError(f"{where}: split must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise StoreError(f"{where}: split has {arr.shape[0]} entries, expected {n}")
    if arr.dtype.kind in "USO":
        names = arr.astype(str) if arr.dtype.kind != "O" else np.array([str(s) for s in arr])
        codes = np.full(arr.shape[0], 255, dtype=np.uint8)
        for code, name in enumerate(SPLITS):
            codes[names == name] = code
        if (codes == 255).any():
            i = _first(codes == 255)
            raise StoreError(f"{where}: unknown split {str(names[i])!r} at candidate {i} (expected one of {SPLITS})")
        return codes
    if arr.dtype.kind not in "iu":
        raise StoreError(f"{where}: split must be names or integer codes, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= len(SPLITS))
    if bad.any():
        i = _first(bad)
        raise StoreError(f"{where}: unknown split code {int(arr[i])} at candidate {i} (expected 0=train, 1=val, 2=test)")
    return arr.astype(np.uint8)


def _as_int64(values, name: str, n: int | None, where: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise StoreError(f"{where}: {name} must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise StoreError(f"{where}: {name} has {arr.shape[0]} entries, expected {n} (one per candidate)")
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = _first(bad)
            raise StoreError(f"{where}: {name} must be integers, got {arr[i]!r} at candidate {i}")
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise StoreError(f"{where}: {name} must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check_class_names(class_names, where: str) -> list[str]:
    if isinstance(class_names, str) or not isinstance(class_names, (list, tuple, np.ndarray)):
        raise StoreError(f"{where}: class_names must be a list of strings, got {class_names!r}")
    names = list(class_names)
    if len(names) < 2:
        raise StoreError(f"{where}: class_names needs at least 2 classes, got {names!r}")
    if not all(isinstance(s, str) and s for s in names):
        raise StoreError(f"{where}: class_names must be non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        raise StoreError(f"{where}: class_names has duplicates: {names!r}")
    return names


def _check_meta(where: str, labels, groups, split, num_classes: int, n: int | None = None):
    """Validate per-candidate metadata; return (labels int64, groups int64, split uint8)."""
    labels = _as_int64(labels, "labels", n, where)
    n = labels.shape[0]
    if n == 0:
        raise StoreError(f"{where}: store is empty (0 candidates)")
    groups = _as_int64(groups, "groups", n, where)
    split = encode_split(split, n, where)
    bad = (labels < -1) | (labels >= num_classes)
    if bad.any():
        i = _first(bad)
        raise StoreError(
            f"{where}: label {int(labels[i])} of candidate {i} is outside [-1, {num_classes - 1}] "
            f"({num_classes} classes)"
        )
    if (groups < 0).any():
        i = _first(groups < 0)
        raise StoreError(f"{where}: group id {int(groups[i])} of candidate {i} is negative")
    # Leakage: a group must live in one split only.
    pairs = np.unique(np.stack([groups, split.astype(np.int64)], axis=1), axis=0)
    if pairs.shape[0] != np.unique(groups).shape[0]:
        g, counts = np.unique(pairs[:, 0], return_counts=True)
        grp = int(g[counts > 1][0])
        names = [SPLITS[int(s)] for s in pairs[pairs[:, 0] == grp, 1]]
        raise StoreError(f"{where}: group {grp} appears in splits {' and '.join(names)} (data leakage)")
    return labels, groups, split


def _check_patch_geometry(where: str, m, patch_shape, dtype):
    try:
        m = int(m)
        patch_shape = tuple(int(s) for s in patch_shape)
    except (TypeError, ValueError):
        raise StoreError(f"{where}: bad m={m!r} or patch_shape={patch_shape!r}") from None
    if m < 1:
        raise StoreError(f"{where}: m (patches per candidate) must be >= 1, got {m}")
    if len(patch_shape) != 3 or min(patch_shape) < 1:
        raise StoreError(f"{where}: patch_shape must be (H, W, C) with positive sizes, got {patch_shape}")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise StoreError(f"{where}: bad patch dtype {dtype!r} (expected uint8 or float32)") from None
    if dtype not in PATCH_DTYPES:
        raise StoreError(f"{where}: patches dtype must be uint8 or float32, got {dtype}")
    return m, patch_shape, dtype


def _check_float_values(where: str, block: np.ndarray, offset: int) -> None:
    """Raise if a float32 patch block (k, m, H, W, C) holds non-finite or out-of-[0, 1] values."""
    flat = block.reshape(block.shape[0], -1)
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        raise StoreError(f"{where}: patches of candidate {offset + _first(~finite)} contain NaN or infinite values")
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    bad = (lo < 0) | (hi > 1)
    if bad.any():
        i = _first(bad)
        raise StoreError(
            f"{where}: float32 patches of candidate {offset + i} have values in [{lo[i]:g}, {hi[i]:g}], "
            "outside [0, 1]"
        )


def _block_rows(m: int, patch_shape, dtype) -> int:
    per = m * int(np.prod(patch_shape)) * np.dtype(dtype).itemsize
    return max(1, _BLOCK_BYTES // max(per, 1))


def _encode_attrs(where: str, attrs) -> tuple[dict, list[str]]:
    """Split extra attributes into HDF5-native values and JSON-encoded ones."""
    if attrs is None:
        return {}, []
    if not isinstance(attrs, dict):
        raise StoreError(f"{where}: attrs must be a dict, got {type(attrs).__name__}")
    out, json_keys = {}, []
    for key, value in attrs.items():
        if not isinstance(key, str) or not key or "/" in key:
            raise StoreError(f"{where}: attribute name {key!r} must be a non-empty string without '/'")
        if key in RESERVED_ATTRS:
            raise StoreError(f"{where}: attribute name {key!r} is reserved by the store format")
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, (bool, numbers.Integral, numbers.Real, str)) and not isinstance(value, complex):
            out[key] = value
            continue
        try:
            out[key] = json.dumps(value, default=json_default)
        except (TypeError, ValueError) as e:
            raise StoreError(f"{where}: attribute {key!r} is not JSON-serialisable ({e})") from None
        json_keys.append(key)
    return out, json_keys


def _attr_value(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


class CandidateStore:
    """A validated, open candidate store. Use :func:`open_store` to create one.

    Attributes:
        path (Path), n (int), m (int), patch_shape (H, W, C), dtype (numpy dtype: uint8/float32),
        class_names (list[str]), num_classes (int), app (str), attrs (dict of the extra attributes,
        JSON-encoded ones decoded), labels (n,) int64, groups (n,) int64, split (n,) uint8 — the
        three arrays are read-only numpy arrays held in memory; patches stay on disk.

    Reads are serialised by a per-store lock (h5py handles are not thread-safe), so the store can
    feed a ``tf.data`` generator. Closing the store invalidates further reads.
    """

    def __init__(self, path, h5: h5py.File, meta: dict):
        self.path = Path(path)
        self._h5 = h5
        self._patches = h5["patches"]
        self._lock = threading.RLock()
        self._sha256 = None
        self.n = meta["n"]
        self.m = meta["m"]
        self.patch_shape = meta["patch_shape"]
        self.dtype = meta["dtype"]
        self.class_names = meta["class_names"]
        self.num_classes = len(self.class_names)
        self.app = meta["app"]
        self.attrs = meta["attrs"]
        for name in ("labels", "groups", "split"):
            arr = meta[name]
            arr.setflags(write=False)
            setattr(self, name, arr)

    # -- context manager / lifecycle
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        """Close the HDF5 handle (idempotent)."""
        with self._lock:
            if self._h5 is not None:
                try:
                    self._h5.close()
                finally:
                    self._h5 = None
                    self._patches = None

    @property
    def closed(self) -> bool:
        return self._h5 is None

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (
            f"<CandidateStore {self.path} app={self.app!r} n={self.n} m={self.m} "
            f"patch_shape={self.patch_shape} dtype={self.dtype} classes={self.class_names} {state}>"
        )

    # -- metadata
    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the file bytes (computed once, then cached)."""
        if self._sha256 is None:
            self._sha256 = file_sha256(self.path)
        return self._sha256

    def ids(self, split=None) -> np.ndarray:
        """Candidate ids (int64, increasing) of ``split`` ("train", "val", "test" or code); None = all."""
        if split is None:
            return np.arange(self.n, dtype=np.int64)
        if isinstance(split, str):
            if split not in SPLITS:
                raise AiftError(f"unknown split {split!r} (expected one of {SPLITS})")
            code = SPLITS.index(split)
        elif isinstance(split, numbers.Integral) and 0 <= int(split) < len(SPLITS):
            code = int(split)
        else:
            raise AiftError(f"unknown split {split!r} (expected one of {SPLITS})")
        return np.flatnonzero(self.split == code).astype(np.int64)

    def split_counts(self) -> dict:
        """Number of candidates per split name."""
        counts = np.bincount(self.split, minlength=len(SPLITS))
        return {name: int(counts[i]) for i, name in enumerate(SPLITS)}

    # -- patches
    def _check_ids(self, ids) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise AiftError(f"{self.path}: candidate ids must be 1-D, got shape {arr.shape}")
        if arr.size and arr.dtype.kind not in "iu":
            raise AiftError(f"{self.path}: candidate ids must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.size:
            bad = (arr < 0) | (arr >= self.n)
            if bad.any():
                raise AiftError(
                    f"{self.path}: candidate id {int(arr[_first(bad)])} is out of range [0, {self.n - 1}]"
                )
        return arr

    def read(self, ids) -> np.ndarray:
        """Patches of ``ids`` as (len(ids), m, H, W, C) in the stored dtype, in the order asked.

        Duplicated ids are allowed. Ids are sorted and contiguous runs are read in one call each.
        """
        ids = self._check_ids(ids)
        shape = (self.m,) + tuple(self.patch_shape)
        if ids.size == 0:
            return np.empty((0,) + shape, dtype=self.dtype)
        uniq, inv = np.unique(ids, return_inverse=True)
        out = np.empty((uniq.shape[0],) + shape, dtype=self.dtype)
        # Contiguous runs of the sorted unique ids.
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [uniq.shape[0]]])
        with self._lock:
            if self._h5 is None:
                raise StoreError(f"{self.path}: store is closed")
            ds = self._patches
            for a, b in zip(starts.tolist(), stops.tolist()):
                lo = int(uniq[a])
                try:
                    ds.read_direct(out, source_sel=np.s_[lo:lo + (b - a)], dest_sel=np.s_[a:b])
                except (OSError, RuntimeError) as e:
                    raise StoreError(f"{self.path}: cannot read patches of candidates {lo}..{lo + b - a - 1}: {e}") from None
        if uniq.shape[0] == ids.shape[0] and np.array_equal(uniq, ids):
            return out
        return out[inv.reshape(-1)]

    def read_float(self, ids) -> np.ndarray:
        """Like :meth:`read` but float32 in [0, 1] (uint8 stores are divided by 255)."""
        x = self.read(ids)
        if x.dtype == np.uint8:
            return x.astype(np.float32) / np.float32(255.0)
        return x

    def default_chunk(self) -> int:
        """Candidates per read that keep one read around 32 MB."""
        return _block_rows(self.m, self.patch_shape, self.dtype)

    def iter_chunks(self, ids=None, chunk: int = 64, as_float: bool = True):
        """Yield ``(ids_chunk, patches)`` over ``ids`` (None = all) in the order given.

        ``patches`` is float32 in [0, 1] (``as_float=False``: the stored dtype).
        """
        ids = np.arange(self.n, dtype=np.int64) if ids is None else self._check_ids(ids)
        chunk = int(chunk)
        if chunk < 1:
            raise AiftError(f"chunk must be >= 1, got {chunk}")
        reader = self.read_float if as_float else self.read
        for i in range(0, ids.shape[0], chunk):
            part = ids[i:i + chunk]
            yield part, reader(part)


def _validate_open(path: Path, h5: h5py.File, check_values: bool) -> dict:
    where = str(path)
    a = h5.attrs
    fmt = _attr_value(a.get("format"))
    if fmt is None:
        raise StoreError(f"{where}: missing attribute 'format' (not a candidate store?)")
    if fmt != FORMAT:
        raise StoreError(f"{where}: attribute format is {fmt!r}, expected {FORMAT!r}")
    version = _attr_value(a.get("format_version"))
    if not isinstance(version, numbers.Integral) or isinstance(version, bool):
        raise StoreError(f"{where}: attribute format_version is {version!r}, expected the integer {FORMAT_VERSION}")
    if version != FORMAT_VERSION:
        raise StoreError(
            f"{where}: unsupported format_version {version} (this aift-tf reads version {FORMAT_VERSION})"
        )
    app = _attr_value(a.get("app"))
    if not isinstance(app, str):
        raise StoreError(f"{where}: attribute 'app' must be a string, got {app!r}")
    raw_names = _attr_value(a.get("class_names"))
    if raw_names is None:
        raise StoreError(f"{where}: missing attribute 'class_names'")
    try:
        names = json.loads(raw_names) if isinstance(raw_names, str) else raw_names
    except json.JSONDecodeError:
        raise StoreError(f"{where}: attribute class_names is not a JSON list: {raw_names!r}") from None
    class_names = _check_class_names(names, where)
    json_keys = _attr_value(a.get("json_attrs", "[]"))
    try:
        json_keys = json.loads(json_keys) if isinstance(json_keys, str) else list(json_keys)
    except (json.JSONDecodeError, TypeError):
        raise StoreError(f"{where}: attribute json_attrs is not a JSON list: {json_keys!r}") from None
    attrs = {}
    for key in a.keys():
        if key in RESERVED_ATTRS:
            continue
        v = _attr_value(a[key])
        if key in json_keys:
            try:
                v = json.loads(v)
            except (json.JSONDecodeError, TypeError):
                raise StoreError(f"{where}: attribute {key!r} is not valid JSON: {v!r}") from None
        attrs[key] = v

    for name in _DATASETS:
        if name not in h5:
            raise StoreError(f"{where}: missing dataset '{name}'")
        if not isinstance(h5[name], h5py.Dataset):
            raise StoreError(f"{where}: '{name}' is not a dataset")
    p = h5["patches"]
    if p.ndim != 5:
        raise StoreError(f"{where}: dataset 'patches' must be 5-D (n, m, H, W, C), got shape {p.shape}")
    if p.dtype not in PATCH_DTYPES:
        raise StoreError(f"{where}: dataset 'patches' has dtype {p.dtype}, expected uint8 or float32")
    n, m = int(p.shape[0]), int(p.shape[1])
    if n == 0:
        raise StoreError(f"{where}: store is empty (0 candidates)")
    if min(p.shape[1:]) < 1:
        raise StoreError(f"{where}: dataset 'patches' has an empty dimension: shape {p.shape}")
    arrays = {}
    for name in ("labels", "groups", "split"):
        d = h5[name]
        if d.ndim != 1:
            raise StoreError(f"{where}: dataset '{name}' must be 1-D, got shape {d.shape}")
        if d.shape[0] != n:
            raise StoreError(f"{where}: dataset '{name}' has {d.shape[0]} entries but 'patches' has {n} candidates")
        if d.dtype.kind not in "iu":
            raise StoreError(f"{where}: dataset '{name}' has dtype {d.dtype}, expected an integer type")
        arrays[name] = d[()]
    labels, groups, split = _check_meta(where, arrays["labels"], arrays["groups"], arrays["split"], len(class_names), n)

    if check_values and p.dtype == np.float32:
        rows = _block_rows(m, p.shape[2:], p.dtype)
        if p.chunks is not None:  # align reads with chunk boundaries
            rows = max(p.chunks[0], rows // p.chunks[0] * p.chunks[0])
        for start in range(0, n, rows):
            _check_float_values(where, p[start:start + rows], start)

    return dict(
        n=n, m=m, patch_shape=tuple(int(s) for s in p.shape[2:]), dtype=np.dtype(p.dtype),
        class_names=class_names, app=app, attrs=attrs, labels=labels, groups=groups, split=split,
    )


def open_store(path, check_values: bool = True) -> CandidateStore:
    """Open and validate a candidate store.

    Args:
        path: the ``.h5`` file.
        check_values: stream through float32 patches (block by block, never the whole pool at once)
            to reject NaN/inf or values outside [0, 1]. Set False to skip on trusted, huge files.

    Raises:
        StoreError: one line ``"<path>: <problem>"`` for any missing, unreadable or malformed file.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such file")
    if not path.is_file():
        raise StoreError(f"{path}: not a file")
    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise StoreError(f"{path}: not a readable HDF5 file (corrupt or wrong format: {msg})") from None
    try:
        meta = _validate_open(path, h5, check_values)
    except StoreError:
        h5.close()
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
        h5.close()
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise StoreError(f"{path}: corrupt store ({msg})") from None
    return CandidateStore(path, h5, meta)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


class StoreWriter:
    """Incremental, atomic writer for stores that do not fit in memory.

    The file is built as a temporary sibling of ``path`` and renamed onto ``path`` by
    :meth:`close` (or a clean exit of the ``with`` block) once every candidate has been written
    and the metadata validated. On an exception (or :meth:`abort`) the temporary file is removed
    and nothing appears at ``path``.

    Example:
    >>> with StoreWriter("pool.h5", n=1000, m=5, patch_shape=(32, 32, 1), dtype="uint8",
    ...                  app="demo", class_names=["negative", "positive"]) as w:
    ...     for start in range(0, 1000, 100):
    ...         w.write(start, patches[start:start + 100], labels[start:start + 100],
    ...                 groups[start:start + 100], split[start:start + 100])

    Args:
        path: destination file.
        n, m, patch_shape, dtype: geometry; dtype is "uint8" or "float32".
        app: application name (string).
        class_names: list of K >= 2 class names (index = label).
        attrs: extra file attributes; non-scalar values are stored JSON-encoded (listed in the
            ``json_attrs`` attribute) and decoded again by :func:`open_store`.
        compression: None, "gzip" or "lzf" for the patches dataset.
    """

    def __init__(self, path, n, m, patch_shape, dtype, *, app, class_names, attrs=None, compression=None):
        self.path = Path(path)
        where = str(self.path)
        try:
            n = int(n)
        except (TypeError, ValueError):
            raise StoreError(f"{where}: bad number of candidates n={n!r}") from None
        if n < 1:
            raise StoreError(f"{where}: store is empty (n={n}); a store needs at least one candidate")
        self.n = n
        self.m, self.patch_shape, self.dtype = _check_patch_geometry(where, m, patch_shape, dtype)
        if not isinstance(app, str) or not app:
            raise StoreError(f"{where}: app must be a non-empty string, got {app!r}")
        self.app = app
        self.class_names = _check_class_names(class_names, where)
        self._attrs, self._json_keys = _encode_attrs(where, attrs)
        if compression not in (None, "gzip", "lzf"):
            raise StoreError(f"{where}: compression must be None, 'gzip' or 'lzf', got {compression!r}")
        self._labels = np.full(n, -1, dtype=np.int64)
        self._groups = np.zeros(n, dtype=np.int64)
        self._split = np.zeros(n, dtype=np.uint8)
        self._written = np.zeros(n, dtype=bool)
        if compression is None:
            _check_free_space(self.path, n * (self.m * int(np.prod(self.patch_shape)) * self.dtype.itemsize + 17))
        self._ctx = atomic_path(self.path, suffix=".h5")
        self._tmp = self._ctx.__enter__()
        self._done = False
        try:
            self._h5 = h5py.File(self._tmp, "w")
            self._patches = self._h5.create_dataset(
                "patches", shape=(n, self.m) + self.patch_shape, dtype=self.dtype,
                chunks=(1, self.m) + self.patch_shape, compression=compression,
                shuffle=compression is not None,
            )
        except BaseException as e:
            self._abort(e)
            raise

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._abort(exc)
            return False
        self.close()
        return False

    def write(self, start, patches, labels, groups, split) -> None:
        """Write candidates ``start .. start + k - 1``.

        Args:
            start: first row.
            patches: (k, m, H, W, C); uint8 stores take integer arrays in [0, 255], float32 stores
                take float arrays with finite values in [0, 1].
            labels, groups, split: (k,) each; split as names or codes.
        """
        if self._done:
            raise StoreError(f"{self.path}: writer is already closed")
        where = str(self.path)
        try:
            self._write(where, start, patches, labels, groups, split)
        except BaseException as e:
            if not isinstance(e, StoreError):
                self._abort(e)
            raise

    def _write(self, where, start, patches, labels, groups, split):
        x = np.asarray(patches)
        want = (self.m,) + self.patch_shape
        if x.ndim != 5 or x.shape[1:] != want:
            raise StoreError(f"{where}: patches must have shape (k, {', '.join(map(str, want))}), got {x.shape}")
        k = x.shape[0]
        start = int(start)
        if start < 0 or start + k > self.n:
            raise StoreError(f"{where}: rows {start}..{start + k - 1} are outside [0, {self.n - 1}]")
        if self.dtype == np.uint8:
            if x.dtype != np.uint8:
                if x.dtype.kind not in "iub":
                    raise StoreError(
                        f"{where}: a uint8 store needs integer patches in [0, 255], got dtype {x.dtype} "
                        "(scale floats yourself or use dtype='float32')"
                    )
                if x.size and (x.min() < 0 or x.max() > 255):
                    raise StoreError(f"{where}: patch values [{x.min()}, {x.max()}] are outside [0, 255]")
                x = x.astype(np.uint8)
        else:
            if x.dtype.kind not in "fiub":
                raise StoreError(f"{where}: float32 patches must be numeric, got dtype {x.dtype}")
            x = x.astype(np.float32, copy=False)
            if k:
                _check_float_values(where, x, start)
        lab = _as_int64(labels, "labels", k, where)
        grp = _as_int64(groups, "groups", k, where)
        spl = encode_split(split, k, where)
        if k == 0:
            return
        bad = (lab < -1) | (lab >= len(self.class_names))
        if bad.any():
            i = _first(bad)
            raise StoreError(
                f"{where}: label {int(lab[i])} of candidate {start + i} is outside [-1, {len(self.class_names) - 1}]"
            )
        if (grp < 0).any():
            i = _first(grp < 0)
            raise StoreError(f"{where}: group id {int(grp[i])} of candidate {start + i} is negative")
        self._patches[start:start + k] = x
        self._labels[start:start + k] = lab
        self._groups[start:start + k] = grp
        self._split[start:start + k] = spl
        self._written[start:start + k] = True

    def update_attrs(self, attrs: dict) -> None:
        """Add or replace extra attributes before :meth:`close` (e.g. values known only after the
        last write); validated like the ``attrs`` of the constructor.

        Example:
        >>> w.update_attrs({"volume_windows": {"scan01": [-1000.0, 400.0]}})
        """
        if self._done:
            raise StoreError(f"{self.path}: writer is already closed")
        new, json_keys = _encode_attrs(str(self.path), attrs)
        self._attrs.update(new)
        self._json_keys = [k for k in self._json_keys if k not in new] + json_keys

    def close(self) -> None:
        """Validate, finish and atomically move the file into place (idempotent)."""
        if self._done:
            return
        where = str(self.path)
        try:
            if not self._written.all():
                missing = np.flatnonzero(~self._written)
                raise StoreError(
                    f"{where}: {missing.size} of {self.n} candidates were never written (first: {int(missing[0])})"
                )
            _check_meta(where, self._labels, self._groups, self._split, len(self.class_names), self.n)
            h5 = self._h5  # dropped before anything can fail: a frame in a traceback must not hold it
            h5.create_dataset("labels", data=self._labels, dtype=np.int64)
            h5.create_dataset("groups", data=self._groups, dtype=np.int64)
            h5.create_dataset("split", data=self._split, dtype=np.uint8)
            h5.attrs["format"] = FORMAT
            h5.attrs["format_version"] = np.int64(FORMAT_VERSION)
            h5.attrs["app"] = self.app
            h5.attrs["class_names"] = json.dumps(self.class_names)
            h5.attrs["json_attrs"] = json.dumps(self._json_keys)
            for key, value in self._attrs.items():
                h5.attrs[key] = value
            del h5
            self._h5.flush()  # a full disk fails here, while every handle is still valid (see _abort)
            self._patches = None
            self._h5.close()
            self._h5 = None
        except BaseException as e:
            self._abort(e)
            raise
        self._done = True
        self._ctx.__exit__(None, None, None)  # os.replace onto the destination

    def abort(self) -> None:
        """Discard everything written so far; no file is created."""
        self._abort(StoreError(f"{self.path}: writing aborted"))

    def _abort(self, exc: BaseException) -> None:
        if self._done:
            return
        self._done = True
        # The dataset handle goes before the file (h5py crashes on a dataset that outlives a file whose
        # close failed); on a full disk both report write errors as they go, which are moot: the file is
        # discarded, so h5py's "Exception ignored in __dealloc__" tracebacks are silenced here.
        hook, stderr = sys.unraisablehook, sys.stderr
        sys.unraisablehook = lambda unraisable: None
        sys.stderr = io.StringIO()  # h5py's Cython __dealloc__ prints its traceback to sys.stderr itself
        try:
            self._patches = None
            h5 = getattr(self, "_h5", None)
            if h5 is not None:
                try:
                    h5.close()
                except Exception:
                    pass
                self._h5 = None
                del h5
            gc.collect()  # handles in reference cycles go now, not at some later moment
        finally:
            sys.unraisablehook, sys.stderr = hook, stderr
        self._ctx.__exit__(type(exc), exc, exc.__traceback__)  # removes the temporary file

    def __del__(self):
        if not getattr(self, "_done", True) and hasattr(self, "_ctx"):
            try:
                self.abort()
            except Exception:
                pass


def _check_free_space(path: Path, need: int) -> None:
    """Refuse a store that cannot fit on its disk before HDF5 writes a byte: HDF5 itself does not survive a
    full disk well (its handles stay open and the process may crash at exit)."""
    import shutil

    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return
    if need * 1.02 + (256 << 10) > free:  # chunk index and metadata: a little over the raw bytes
        raise WriteFailed(path, f"no space left on the device: the store needs about {need / 2 ** 20:.1f} MiB, "
                                f"{free / 2 ** 20:.1f} MiB are free", errno.ENOSPC)


def write_store(path, patches, labels, groups, split, *, app, class_names, attrs=None, compression=None) -> Path:
    """Write a whole in-memory data set as a candidate store, atomically.

    Args:
        path: destination ``.h5`` file (replaced if it exists, only once the new one is complete).
        patches: (n, m, H, W, C) uint8, or float32 with values in [0, 1].
        labels: (n,) ints in [-1, K-1] (-1 = unknown).
        groups: (n,) ints >= 0 (patient / video / volume); a group must stay in one split.
        split: (n,) "train"/"val"/"test" names or codes 0/1/2.
        app, class_names, attrs, compression: see :class:`StoreWriter`.

    Returns:
        the path written.

    Raises:
        StoreError: naming the bad value; nothing is written in that case.
    """
    where = str(path)
    x = np.asarray(patches)
    if x.ndim != 5:
        raise StoreError(f"{where}: patches must be 5-D (n, m, H, W, C), got shape {x.shape}")
    if x.dtype not in PATCH_DTYPES:
        if x.dtype.kind == "f":
            x = x.astype(np.float32)
        else:
            raise StoreError(f"{where}: patches dtype must be uint8 or float32, got {x.dtype}")
    names = _check_class_names(class_names, where)
    labels, groups, split = _check_meta(where, labels, groups, split, len(names), x.shape[0])
    with StoreWriter(path, x.shape[0], x.shape[1], x.shape[2:], x.dtype, app=app, class_names=names,
                     attrs=attrs, compression=compression) as w:
        w.write(0, x, labels, groups, split)
    return Path(path)
