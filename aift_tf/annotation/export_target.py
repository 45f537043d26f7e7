"""Where ``aift export --out`` may write: a new path, or (with ``--force``) an earlier export.

Anything else is refused with one line and left as it is: a folder holding other files, a regular file, a
symbolic link, the project's store, and any path in (or containing) a project folder.
"""

from __future__ import annotations

from pathlib import Path

from aift_tf.annotation.checks import printable
from aift_tf.annotation.create import check_parent_folder
from aift_tf.annotation.layout import project_above
from aift_tf.errors import AiftError


def check_export_target(out: Path, force: bool, project: Path, store: Path) -> None:
    """Refuse an export target that is not a new path or (with ``force``) an earlier export.

    Args:
        out: the ``--out`` path.
        force: replace an earlier export written by aift_tf (:func:`aift_tf.export.is_export`).
        project: the project folder exporting.
        store: the project's candidate store.

    Raises:
        AiftError: one line naming ``--out`` and why; nothing is changed.

    Example:
    >>> check_export_target(Path("pe-model"), False, Path("pe-project"), Path("pe.h5"))
    """
    from aift_tf.export import is_export

    where = f"--out {printable(out)}"
    if out.is_symlink():
        raise AiftError(f"{where}: is a symbolic link (give the folder itself); nothing was changed")
    check_parent_folder(out, "the export")
    rp = out.resolve()
    store = Path(store).resolve()
    project = Path(project).resolve()
    if rp == store:
        raise AiftError(f"{where}: is the project's store; choose a new folder for the export")
    inside = project_above(rp)
    if inside is not None:
        raise AiftError(f"{where}: lies inside the project {printable(inside)} (its files would be replaced or "
                        f"mixed with the export); choose a folder outside it")
    if rp.is_dir() and (rp == project.parent or project.is_relative_to(rp) or store.is_relative_to(rp)):
        raise AiftError(f"{where}: holds the project or its store; choose a new folder for the export")
    if not (out.exists() or out.is_symlink()):
        return
    if not out.is_dir():
        raise AiftError(f"{where}: is a file, not an earlier export; choose a new folder (nothing was changed)")
    if not is_export(out):
        raise AiftError(f"{where}: already exists and is not an export written by aift_tf (only an earlier "
                        f"export is replaced, even with --force); choose a new folder (nothing was changed)")
    if not force:
        raise AiftError(f"{where}: already exists (an earlier export; pass --force to replace it)")
