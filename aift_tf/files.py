"""Atomic file writing and hashing helpers shared by every writer in the package, and the one
round-folder name (:func:`round_name`, ``round-NNN``) of projects and simulation run folders.

Nothing is ever half-written: writers produce a temporary sibling and ``os.replace`` it onto the
destination once complete; on any exception the temporary is removed. After the rename the folder
itself is fsynced, so a power cut right after a write cannot lose the new name. Temporaries get the
permissions a plain ``open``/``mkdir`` would give (``0666``/``0777`` minus the umask), not the private
``0600``/``0700`` of :mod:`tempfile`, so a project shared by a group stays readable by its members.
``atomic_dir(path, replace=False)`` never replaces an existing ``path`` (``renameat2(RENAME_NOREPLACE)``).

This is the one write path of the package: every file is fsynced before it is renamed into place (so a
full disk that only shows at fsync is caught too), and a write that fails because the disk is full, read-only
or forbidden (ENOSPC, EDQUOT, EACCES, EPERM, EROFS, EFBIG, EIO) becomes :class:`WriteFailed`, a one-line
:class:`~aift_tf.errors.AiftError` naming the final file (never the temporary), after the temporary is removed.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from aift_tf.errors import AiftError


def current_umask() -> int:
    """The process umask, read without changing it (``/proc/self/status``), else via ``os.umask``.

    Example:
    >>> oct(0o666 & ~current_umask())  # the mode a new file gets, e.g. '0o644'
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # not thread-safe; only where /proc is unavailable
    os.umask(mask)
    return mask


def fsync_dir(folder) -> None:
    """fsync a folder so that a rename/creation inside it survives a power cut (no-op where unsupported).

    Example:
    >>> os.replace("a.tmp", "a"); fsync_dir(".")
    """
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder
    finally:
        os.close(fd)


WRITE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large",
    errno.EIO: "input/output error",
}


class WriteFailed(AiftError):
    """A write refused by the disk (full, read-only, forbidden); ``path`` is the final file or folder.

    The message is one line: ``PATH: cannot write (no space left on the device); nothing was changed``.
    """

    def __init__(self, path, reason: str, errno_: int = 0):
        self.path = Path(path)
        self.reason = reason
        self.errno = errno_
        super().__init__(f"{path}: cannot write ({reason}); nothing was changed")


def write_failure(path, exc: BaseException):
    """:class:`WriteFailed` for ``exc`` if it is a disk-level write error (see ``WRITE_ERRNOS``), else None.

    Libraries that write through C (h5py, Keras' zip writer) do not always set ``errno``; their message is
    matched against the errno strings as well.

    Example:
    >>> write_failure("a.json", OSError(errno.ENOSPC, "No space left on device")).reason
    'no space left on the device'
    """
    if isinstance(exc, WriteFailed):
        return exc
    if not isinstance(exc, (OSError, RuntimeError)):
        return None
    code = getattr(exc, "errno", None)
    if code not in WRITE_ERRNOS:
        text = str(exc)
        code = next((c for c in WRITE_ERRNOS if os.strerror(c) in text or f"errno = {c}," in text), None)
    if code is None:
        return None
    return WriteFailed(path, WRITE_ERRNOS[code], code)


_deferred = contextvars.ContextVar("aift_io_deferred_fsync", default=False)


def fsync_file(path) -> None:
    """fsync one file's data (raises the OSError a full disk reports at fsync).

    Example:
    >>> fsync_file("model.keras")
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for root, dirs, files in os.walk(folder):
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                try:
                    fsync_file(p)
                except OSError as e:
                    raise (write_failure(p, e) or e) from None
        fsync_dir(root)


def _translate(exc: WriteFailed, tmp: Path, final: Path) -> WriteFailed:
    """``exc`` with a path inside the temporary folder ``tmp`` re-expressed inside ``final``."""
    try:
        rel = exc.path.relative_to(tmp)
    except ValueError:
        return exc
    return WriteFailed(final / rel, exc.reason, exc.errno)


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` atomically, failing with FileExistsError if ``dst`` exists (any type).

    Linux ``renameat2(RENAME_NOREPLACE)``; elsewhere (or where the filesystem refuses the flag) ``dst``
    is first claimed with an exclusive ``mkdir`` and the complete folder renamed onto that empty claim.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, rename_noreplace = -100, 1
        if renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), rename_noreplace) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), str(dst))
    rename_into_claim(src, dst)


def rename_into_claim(src: Path, dst: Path) -> None:
    """Portable no-replace folder rename: claim ``dst`` with an exclusive ``mkdir``, rename ``src`` onto it.

    FileExistsError if ``dst`` exists; OSError (ENOTEMPTY) if something was written into the claim
    meanwhile. Used where ``renameat2(RENAME_NOREPLACE)`` is unavailable.

    Example:
    >>> rename_into_claim(Path(".round-002.tmp"), Path("round-002"))
    """
    if dst.exists() or dst.is_symlink():
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.mkdir(dst)  # raises FileExistsError if another process won the race
    try:
        os.rename(src, dst)  # onto our own empty folder; ENOTEMPTY if somebody wrote into it meanwhile
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(dst)
        raise


def _check_parent(path: Path) -> None:
    parent = path.parent
    if not parent.exists():
        raise AiftError(f"{path}: parent folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise WriteFailed(path, f"folder {parent} is not writable", errno.EACCES)


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
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    except OSError as e:
        raise (write_failure(path, e) or e) from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a plain open() would follow the umask
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        if not _deferred.get():  # inside atomic_dir the whole folder is fsynced before its rename
            fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        failed = write_failure(path, e)
        if failed is not None and failed is not e:
            raise failed from None
        raise


@contextlib.contextmanager
def atomic_dir(path, replace: bool = True):
    """Yield a temporary folder beside ``path``; move it onto ``path`` on success.

    Args:
        path: final folder.
        replace: True: an existing folder at ``path`` is replaced once the new one is complete.
            False: ``path`` is never replaced; if anything exists there when the new folder is complete
            (even if it appeared meanwhile, e.g. a concurrent writer), raise ``AiftError`` and discard
            the new folder.

    Example:
    >>> with atomic_dir("PROJECT/round-002", replace=False) as tmp:
    ...     (tmp / "queries.csv").write_text("id,label\n")
    """
    path = Path(path)
    _check_parent(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise (write_failure(path, e) or e) from None
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; a plain mkdir would follow the umask
    nested = _deferred.get()  # inside another atomic_dir: the outer one fsyncs the whole tree
    try:
        token = _deferred.set(True)
        try:
            yield tmp
        finally:
            _deferred.reset(token)
        if not nested:
            _fsync_tree(tmp)  # every file's data is on disk before the folder's name is
        if not replace:
            try:
                _rename_noreplace(tmp, path)
            except FileExistsError:
                raise AiftError(f"{path}: already exists (it was not replaced)") from None
            except OSError as e:
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise AiftError(f"{path}: already exists (it was not replaced)") from None
                raise
        elif path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        failed = write_failure(getattr(e, "filename", None) or path, e)
        if isinstance(failed, WriteFailed):
            failed = _translate(failed, tmp, path)
            if not str(failed.path).startswith(str(path)):
                failed = WriteFailed(path, failed.reason, failed.errno)
            if failed is not e:
                raise failed from None
        raise


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary sibling, fsync, rename, fsync of the folder).

    Example:
    >>> write_bytes_atomic("ledger.jsonl", b"{}\n")
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


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


def default_cache_dir() -> Path:
    """The user-level cache of aift-tf (generated app stores, trunk features, self-supervised M0s, stop-set
    predictions): ``$AIFT_CACHE`` or ``~/.cache/aift-tf``."""
    return Path(os.environ.get("AIFT_CACHE", Path.home() / ".cache" / "aift-tf"))


#: suffixes of what an interrupted atomic write leaves behind (hidden names: ``.NAME.<random>.tmp`` etc.)
LEFTOVER_SUFFIXES = (".tmp", ".old", ".trash")


def clean_temporaries(folder) -> None:
    """Remove what interrupted atomic writes left in ``folder``: hidden ``*.tmp`` / ``*.old`` / ``*.trash``.

    Never a complete file or folder (those have no leading dot); a missing ``folder`` is fine.

    Example:
    >>> clean_temporaries("PROJECT/checkpoints")
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.name.startswith(".") and p.name.endswith(LEFTOVER_SUFFIXES):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()


def remove_folder(path) -> None:
    """Remove folder ``path`` so that it is never seen half-deleted: rename it to ``.NAME.trash``, then delete.

    An interrupted removal leaves only the hidden ``.NAME.trash`` (cleaned by :func:`clean_temporaries`).
    Raises the ``OSError`` of the rename (e.g. permission denied); callers that prune best-effort catch it.

    Example:
    >>> remove_folder("PROJECT/checkpoints/round-001")
    """
    path = Path(path)
    trash = path.with_name(f".{path.name}.trash")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


#: The number in a round-folder name (:func:`round_name`): at least three digits. The one pattern, also for
#: names that hold a round's name (a labeling page's download ``round-NNN-labels.csv``).
ROUND_DIGITS = r"\d{3,}"
_ROUND_RES = {}


def round_name(k: int, prefix: str = "round") -> str:
    """The folder name of round ``k``: ``round-NNN`` (at least three digits).

    The one spelling of a round folder: a project's query rounds and checkpoints
    (:mod:`aift_tf.project`) and a simulation run folder's state, TensorBoard and export rounds
    (``simulate/run_folder.py``) all use it; a project's adjudication lists are
    ``round_name(k, "adjudication")``.

    Args:
        k: the round number (an int >= 0).
        prefix: the word before the number (``round``; ``adjudication`` for an adjudication list).

    Example:
    >>> round_name(3), round_name(1234), round_name(2, "adjudication")
    ('round-003', 'round-1234', 'adjudication-002')
    """
    return f"{prefix}-{int(k):03d}"


def round_number(name: str, prefix: str = "round"):
    """The round number of a folder named by :func:`round_name` (with the same ``prefix``), or ``None`` for
    any other name.

    Args:
        name: a folder name (not a path).
        prefix: as for :func:`round_name`.

    Example:
    >>> round_number("round-012"), round_number("round12"), round_number("round-1")
    (12, None, None)
    """
    rx = _ROUND_RES.get(prefix)
    if rx is None:
        rx = _ROUND_RES[prefix] = re.compile(rf"^{re.escape(prefix)}-({ROUND_DIGITS})$")
    m = rx.match(str(name))
    return int(m.group(1)) if m else None
