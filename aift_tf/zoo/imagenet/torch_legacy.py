"""Read a *legacy* (pre-zip) PyTorch ``.pth`` state dict with numpy only: no ``torch``, no plain ``pickle.load``.

The legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``) is a concatenation of:

1. a pickled magic number (``0x1950a86a20f9469cfc6c``), 2. a pickled protocol version (1001),
3. a pickled system-info dict (byte order, type sizes), 4. the pickled object (here an ``OrderedDict`` of
tensors) whose storages are *persistent ids* ``('storage', <StorageType>, key, location, numel, view)``,
5. a pickled list of the storage keys, then for each key in that order: an int64 element count and the
storage's raw bytes (little-endian).

Every pickle is read by :class:`_RestrictedUnpickler`, which resolves only the globals the format needs
(:data:`ALLOWED_GLOBALS`: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the storage
types, all mapped to harmless local stand-ins) and refuses anything else, so a tampered file cannot run code.
Tensors are views on their storage with their own offset, shape and strides
(``numpy.lib.stride_tricks.as_strided``), then copied to contiguous arrays.

Example::

    from aift_tf.zoo.imagenet.torch_legacy import read_state_dict
    tensors = read_state_dict("efficientnet-lite0-57934424.pth")   # {name: numpy array}
    tensors["_conv_stem.weight"].shape                               # (32, 3, 3, 3)
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
from pathlib import Path

from aift_tf.errors import AiftError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

#: storage type name → numpy dtype (the legacy format's typed storages)
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


class _StorageType:
    """Stand-in for ``torch.<X>Storage`` classes: only carries the numpy dtype (a fresh one per lookup)."""

    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _Storage:
    """A storage announced by a persistent id; its bytes are filled in after the pickle."""

    def __init__(self, key, stype, numel):
        self.key, self.stype, self.numel = key, stype, numel
        self.array = None


class _TensorRef:
    """What ``_rebuild_tensor_v2`` returns here: a storage view, materialised once the bytes are read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 without a storage")
    if not all(isinstance(v, int) for v in (storage_offset, *size, *stride)):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 with non-integer geometry")
    return _TensorRef(storage, int(storage_offset), size, stride)


def _fresh_rebuild():
    def rebuild(*args):
        return _rebuild_tensor_v2(*args)

    return rebuild


#: the only globals a legacy state-dict pickle may name: (module, name) → factory of a local stand-in. Each lookup
#: gets a fresh stand-in, so a pickle that BUILDs (sets attributes on) what it looked up changes nothing shared.
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,  # a builtin type: immutable
    ("torch._utils", "_rebuild_tensor_v2"): _fresh_rebuild,
    **{("torch", name): (lambda name=name: _StorageType(name)) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader that resolves only :data:`ALLOWED_GLOBALS` and legacy storage persistent ids."""

    def __init__(self, file, storages):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        try:
            factory = ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a state dict") from None
        return factory()

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or not isinstance(pid[4], int) or pid[4] < 0):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:60]}")
        if pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        _, stype, key, _location, numel, _view = pid
        st = self._storages.get(key)
        if st is None:
            st = self._storages[key] = _Storage(key, stype, numel)
        elif st.stype.name != stype.name or st.numel != numel:
            raise pickle.UnpicklingError(f"storage {key} announced twice with different types")
        return st


def _load(f, storages):
    return _RestrictedUnpickler(f, storages).load()


def read_state_dict(path) -> "collections.OrderedDict[str, object]":
    """The tensors of a legacy PyTorch ``.pth`` state dict as numpy arrays (C-contiguous copies).

    Args:
        path: the ``.pth`` file (legacy, non-zip format).

    Returns:
        ``OrderedDict`` name → ``numpy.ndarray`` (float32 parameters, int64 counters), in file order.

    Raises:
        AiftError: one line naming ``path`` for anything unexpected: a zip-format or truncated file, a
            wrong magic number, a global outside :data:`ALLOWED_GLOBALS`, a tensor that lies outside its
            storage, bytes left over.

    Example:
    >>> sd = read_state_dict(path)
    >>> sd["_fc.bias"].shape
    (1000,)
    """
    import numpy as np

    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                raise ValueError("a zip-format checkpoint, not the legacy format")
            f.seek(0)
            storages: dict = {}
            if _load(f, storages) != MAGIC_NUMBER:
                raise ValueError("wrong magic number")
            if _load(f, storages) != PROTOCOL_VERSION:
                raise ValueError("unsupported protocol version")
            info = _load(f, storages)
            if not isinstance(info, dict) or info.get("little_endian") is not True:
                raise ValueError("not a little-endian file")
            obj = _load(f, storages)
            keys = _load(f, storages)
            if not isinstance(keys, list) or sorted(keys) != sorted(storages):
                raise ValueError("storage key list does not match the tensors")
            size = os.fstat(f.fileno()).st_size
            for key in keys:
                st = storages[key]
                head = f.read(8)
                if len(head) != 8:
                    raise ValueError("truncated (storage header)")
                (numel,) = struct.unpack("<q", head)
                if numel != st.numel:
                    raise ValueError(f"storage {key}: {numel} elements, announced {st.numel}")
                dtype = np.dtype(st.stype.dtype)
                if numel < 0 or numel * dtype.itemsize > size - f.tell():
                    raise ValueError(f"truncated (storage {key} needs {numel * dtype.itemsize} bytes)")
                raw = f.read(numel * dtype.itemsize)
                if len(raw) != numel * dtype.itemsize:
                    raise ValueError(f"truncated (storage {key})")
                st.array = np.frombuffer(raw, dtype=dtype)
            if f.read(1):
                raise ValueError("unexpected bytes after the last storage")
        if not isinstance(obj, dict):
            raise ValueError("the pickled object is not a state dict")
        out = collections.OrderedDict()
        for name, ref in obj.items():
            if not isinstance(name, str) or not isinstance(ref, _TensorRef):
                raise ValueError(f"entry {str(name)[:40]!r} is not a tensor")
            out[name] = _materialise(ref, name)
        return out
    except AiftError:
        raise
    except OSError as e:
        raise AiftError(f"{path}: cannot read ({e.strerror or e})") from None
    except (pickle.UnpicklingError, ValueError, EOFError, TypeError, KeyError, IndexError, AttributeError,
            struct.error, MemoryError, RecursionError, OverflowError) as e:
        raise AiftError(f"{path}: not a valid legacy PyTorch state dict "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'corrupt'})") from None


def _materialise(ref: _TensorRef, name: str):
    """The tensor's values: a strided view of its storage (bounds checked), copied to a contiguous array."""
    import numpy as np

    arr = ref.storage.array
    if len(ref.size) != len(ref.stride) or any(s < 0 for s in ref.size) or any(s < 0 for s in ref.stride):
        raise ValueError(f"tensor {name}: bad shape/stride")
    if 0 in ref.size:
        return np.zeros(ref.size, arr.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if ref.offset < 0 or last >= arr.size:
        raise ValueError(f"tensor {name} lies outside its storage")
    base = arr[ref.offset:]
    view = np.lib.stride_tricks.as_strided(base, shape=ref.size,
                                           strides=tuple(s * arr.itemsize for s in ref.stride), writeable=False)
    return np.ascontiguousarray(view)
