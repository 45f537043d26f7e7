"""The project's lock: one command at a time writes a project (``PROJECT/.aift.lock`` through ``filelock``)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from aift_tf.annotation.checks import printable, quoted
from aift_tf.annotation.layout import LOCK
from aift_tf.errors import AiftError


@contextlib.contextmanager
def locked(path: Path, write: bool = True):
    """Exclusive, non-blocking lock on the project (``PROJECT/.aift.lock`` through ``filelock``).

    A project that cannot be locked (the lock file is a folder or a symbolic link, a read-only medium, no
    permission) is never written: with ``write`` the command is refused with one line (two commands writing
    at once would leave the ledger and the checkpoints disagreeing). A read-only command (``write=False``:
    ``aift status``) still answers, unlocked.
    """
    from filelock import FileLock, Timeout

    f = path / LOCK
    problem = None
    if f.is_symlink():
        problem = "it is a symbolic link"
    else:
        lock = FileLock(str(f), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise AiftError(f"{path}: another aift command is working on this project; try again when it "
                            f"ends") from None
        except OSError as e:
            problem = e.strerror or str(e)
    if problem is not None:
        if write:
            raise AiftError(f"{f}: cannot lock the project ({printable(problem)}), so nothing is written (two "
                            f"commands at once could damage it); make {LOCK} an ordinary writable file again, "
                            f"e.g. `rm -r {quoted(f)}` on a writable disk, and retry")
        yield
        return
    try:
        yield
    finally:
        lock.release()
