"""The annotation project folder's layout: every file and folder name of a project, the names built from a
round number or an annotator's name, and their parsers. Nothing else in :mod:`aift_tf` spells these names
(``tests/test_structure.py`` checks it).

Layout of a project folder ``PROJECT/``::

    config.json                 settings, store path + sha256, classes (CONFIG); written once by ``aift init``
    ledger.jsonl                the label ledger (LEDGER), see :mod:`aift_tf.annotation.ledger`
    .aift.lock                  the lock file (LOCK), empty
    checkpoints/round-TTT/      the learner state after teach round TTT (CHECKPOINTS, :func:`checkpoint_folder`);
                                a damaged one set aside by ``aift recover`` is ``round-TTT.damaged[-k]``
    round-NNN/                  one query round (:func:`round_folder`): queries.csv + gallery.html, or
                                queries-NAME.csv + gallery-NAME.html per annotator; patches/<id>.png; query.json
    adjudication-NNN/           a list of disagreements (``round_folder(project, k, ADJUDICATION)``), the same files

The labeling page's **Download labels** saves ``round-NNN[-NAME]-labels.csv`` (or ``adjudication-NNN-labels.csv``;
browsers add `` (1)`` to a second download): :func:`download_name` builds it, :func:`parse_download_name` reads it
back. Round numbers come from :func:`aift_tf.files.round_name` (``ROUND_DIGITS``), annotator names from
:data:`aift_tf.annotation.checks.NAME_PATTERN`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from aift_tf.annotation.checks import NAME_PATTERN
from aift_tf.files import ROUND_DIGITS, round_name, round_number

#: settings of the project (written once by ``aift init``)
CONFIG = "config.json"
#: the label ledger
LEDGER = "ledger.jsonl"
#: the folder of the learner checkpoints (``checkpoints/round-TTT``)
CHECKPOINTS = "checkpoints"
#: the project's lock file (empty; created by ``init``, kept): ``filelock`` locks it on POSIX and Windows alike
LOCK = ".aift.lock"
#: the prefix of a query round's folder (``round-NNN``)
ROUND = "round"
#: the prefix of an adjudication list's folder (``adjudication-NNN``)
ADJUDICATION = "adjudication"
#: a round's (or adjudication list's) record
QUERY_INFO = "query.json"
#: the round's sheet for one annotator (several: ``queries-NAME.csv``, :func:`queries_name`)
QUERIES = "queries.csv"
#: the round's labeling page for one annotator (several: ``gallery-NAME.html``, :func:`gallery_name`)
GALLERY = "gallery.html"
#: the round folder's patch montages (``patches/<id>.png``)
PATCHES = "patches"
#: the suffix of a checkpoint folder set aside by ``aift recover``
DAMAGED = ".damaged"

# an annotator's sheet (queries-NAME.csv) and the name the labeling page gives a downloaded CSV (browsers add
# " (1)" to a second download), both from the one annotator-name and round-number patterns
_QUERIES_RE = re.compile(rf"^queries(?:-({NAME_PATTERN}))?\.csv$")
_DOWNLOAD_RE = re.compile(rf"^({ROUND}|{ADJUDICATION})-({ROUND_DIGITS})(?:-({NAME_PATTERN}))?"
                          rf"-labels(?: ?\(\d+\))?\.csv$")
_LABELS = "-labels"


def _suffix(annotator: Optional[str]) -> str:
    return f"-{annotator}" if annotator else ""


def queries_name(annotator: Optional[str] = None) -> str:
    """``queries.csv``, or ``queries-NAME.csv`` for one of several annotators."""
    return f"queries{_suffix(annotator)}.csv"


def gallery_name(annotator: Optional[str] = None) -> str:
    """``gallery.html``, or ``gallery-NAME.html`` for one of several annotators."""
    return f"gallery{_suffix(annotator)}.html"


def parse_queries_name(name: str):
    """``(True, annotator or None)`` if ``name`` is a round's sheet (``queries[-NAME].csv``), else ``(False, None)``.

    Example:
    >>> parse_queries_name("queries-alice.csv"), parse_queries_name("queries.csv"), parse_queries_name("x.csv")
    ((True, 'alice'), (True, None), (False, None))
    """
    m = _QUERIES_RE.match(name)
    return (True, m.group(1)) if m else (False, None)


def download_name(folder: str, annotator: Optional[str] = None) -> str:
    """The labeling page's download: ``round-NNN[-NAME]-labels.csv`` for the round folder named ``folder``.

    Example:
    >>> download_name("round-001", "alice"), download_name("adjudication-002")
    ('round-001-alice-labels.csv', 'adjudication-002-labels.csv')
    """
    return f"{folder}{_suffix(annotator)}{_LABELS}.csv"


def download_stem(download: str) -> str:
    """``round-001[-alice]`` of a download name built by :func:`download_name`."""
    return download.rsplit(_LABELS, 1)[0]


def parse_download_name(name: str):
    """``(kind, k, annotator or None)`` of a labeling page's download (``kind``: "query" or "adjudication"), or
    None for any other name.

    Example:
    >>> parse_download_name("round-003-bob-labels (1).csv"), parse_download_name("labels.csv")
    (('query', 3, 'bob'), None)
    """
    m = _DOWNLOAD_RE.match(name)
    if not m:
        return None
    return ("query" if m.group(1) == ROUND else "adjudication"), int(m.group(2)), m.group(3)


def round_folder(project, k: int, kind: str = ROUND) -> Path:
    """``PROJECT/round-NNN`` (or ``PROJECT/adjudication-NNN`` with ``kind=ADJUDICATION``)."""
    return Path(project) / round_name(k, ROUND if kind in (ROUND, "query") else ADJUDICATION)


def round_folder_number(name: str, kind: str = ROUND) -> Optional[int]:
    """The number of a ``round-NNN`` (or ``adjudication-NNN``) folder name, else None."""
    return round_number(name, ROUND if kind in (ROUND, "query") else ADJUDICATION)


def checkpoints_folder(project) -> Path:
    """``PROJECT/checkpoints``."""
    return Path(project) / CHECKPOINTS


def checkpoint_folder(project, r: int) -> Path:
    """``PROJECT/checkpoints/round-TTT``: the learner state after teach round ``r`` (0: M0)."""
    return checkpoints_folder(project) / round_name(r)


def damaged_folder(p: Path) -> Path:
    """A free name to set the damaged checkpoint folder ``p`` aside: ``round-TTT.damaged`` (or ``.damaged-k``)."""
    p = Path(p)
    k, target = 0, p.parent / f"{p.name}{DAMAGED}"
    while target.exists() or target.is_symlink():
        k += 1
        target = p.parent / f"{p.name}{DAMAGED}-{k}"
    return target


def ledger_backup(project, pid: int) -> Path:
    """The hidden hard link that keeps the ledger of before a teach (``PROJECT/.ledger.jsonl.PID.old``)."""
    return Path(project) / f".{LEDGER}.{pid}.old"


def is_project(folder) -> bool:
    """Whether ``folder`` is a project folder (it holds config.json and ledger.jsonl)."""
    folder = Path(folder)
    return (folder / CONFIG).is_file() and (folder / LEDGER).exists()


def project_above(path: Path) -> Optional[Path]:
    """The project folder ``path`` is (or lies in), else None: a folder holding config.json and ledger.jsonl."""
    for a in (path, *path.parents):
        if is_project(a):
            return a
    return None
