"""Atomic file writing and hashing helpers shared by every writer in the package.

Nothing is ever half-written: writers produce a temporary sibling and ``os.replace`` it onto the
destination once complete; on any exception the temporary is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from aift_tf.errors import AiftError


def _check_parent(path: Path) -> None:
    parent = path.parent
    if not parent.exists():
        raise AiftError(f"{path}: parent folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise AiftError(f"{path}: folder {parent} is not writable")


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary file path beside ``path``; rename it onto ``path`` on success.

    Args:
        path: final destination.
        suffix: suffix for the temporary name (some writers, e.g. Keras, check extensions).

    Example:
    >>> with atomic_path("out.h5", suffix=".h5") as tmp:
    ...     write_something(tmp)
    """
    path = Path(path)
    _check_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside ``path``; move it onto ``path`` on success.

    An existing folder at ``path`` is replaced only once the new one is complete.
    """
    path = Path(path)
    _check_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes_atomic(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text_atomic(path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj, indent: int = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=False, default=json_default) + "\n")


def read_json(path, missing: str):
    """Parse the JSON file ``path``; one-line AiftErrors: ``missing`` if it is not a file, or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise AiftError(missing)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AiftError(f"{path}: unreadable ({e})") from None


def json_default(o):
    """`json.dumps` default for numpy scalars/arrays and paths."""
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()
