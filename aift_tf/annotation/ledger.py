"""The label ledger (``ledger.jsonl``): its versioned format, validation, consensus of several annotators,
the labels each teach round trained, and Cohen's kappa between annotators.

Format 2 (written by this version), one JSON object per line, append-only::

    {"v": 2, "id": 17, "label": 1, "class": "positive", "annotator": "alice", "note": "small, distal",
     "adjudication": false, "round": 2, "query_round": 2, "relabel": false,
     "time": "2025-01-01T12:00:00+00:00", "source": "round-002/queries-alice.csv", "line": 4}

- ``annotator``: who gave the label (``null``: nobody named; format-1 entries are read this way).
- ``adjudication``: true for a decision taken with ``aift adjudicate`` (it settles a disagreement).
- ``round``: the teach round whose fine-tune this entry's command ran (the learner went M_{round-1} → M_round);
  ``null``: recorded without fine-tuning (a class had no label yet, or only held-out labels came in). Such an
  entry is trained by the next round that fine-tunes.

Format 1 (older projects; still read): the same without ``v``, ``annotator``, ``note``, ``adjudication``, and
``round`` is always an integer.

**Consensus** (which label an id is trained with): per id, each annotator's latest label counts; an
adjudication replaces every vote before it. If the votes agree, that is the id's label; if they differ, the id
is a *disagreement*: it stays out of training until ``aift adjudicate`` settles it.

**What a teach round trained** is a function of the ledger alone: teach round T trained the consensus of the
ledger up to its last entry marked ``round: T``. So a crash after the ledger was appended is repaired by
re-training from the newest checkpoint, and nothing in the ledger is ever edited.

Reading (:func:`read_ledger`) and writing (:func:`append_ledger`, with :func:`restore_ledger` to put back the
ledger of before a command that failed) are both here.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from aift_tf.annotation.checks import MAX_NOTE, NAME_RE, printable, shown
from aift_tf.checks import check_int
from aift_tf.errors import AiftError
from aift_tf.files import fsync_dir, write_bytes_atomic

LEDGER_VERSION = 2
LEDGER_VERSIONS = (1, 2)
ADJUDICATED = "\x00adjudicated"  # the vote key of an adjudication (never a valid annotator name)
UNNAMED = "(unnamed)"


def _bool(e, key, where):
    v = e.get(key, False)
    if not isinstance(v, bool):
        raise AiftError(f"{where}: field \"{key}\" {shown(v)} is not true or false")
    return v


def parse_entry(line: str, where: str, n: int, class_names) -> Optional[dict]:
    """One ledger line → a normalized entry (every format-2 field present), or None for a blank line.

    Raises a one-line AiftError naming ``where`` (file and line) and the field for anything malformed.

    Example:
    >>> parse_entry('{"id": 3, "label": 1, "round": 1}', "ledger.jsonl line 1", 10, ["a", "b"])["annotator"]
    """
    if not line.strip():
        return None
    K = len(class_names)
    try:
        e = json.loads(line, parse_constant=lambda c: float(c))
    except ValueError:
        raise AiftError(f"{where}: not a ledger entry: {printable(line[:80])!r}") from None
    if not isinstance(e, dict) or not {"id", "label", "round"} <= set(e):
        raise AiftError(f"{where}: not a ledger entry (needs id, label, round): {printable(line[:80])!r}")
    v = e.get("v", 1)
    if isinstance(v, bool) or v not in LEDGER_VERSIONS:
        newer = " (written by a newer aift?)" if isinstance(v, int) and not isinstance(v, bool) and v > 2 else ""
        raise AiftError(f"{where}: unsupported ledger format {shown(v)}{newer}")
    check_int(e["id"], "id", 0, n - 1, where=where)
    if isinstance(e["label"], int) and not isinstance(e["label"], bool) and not 0 <= e["label"] < K:
        classes = ", ".join(f"{k}={printable(c)}" for k, c in enumerate(class_names))
        raise AiftError(f"{where}: label {e['label']} of id {e['id']} is not a class ({classes})")
    check_int(e["label"], "label", 0, K - 1, where=where)
    if v == 1 or e["round"] is not None:
        check_int(e["round"], "round", 1, where=where)
    if e.get("query_round") is not None:
        check_int(e["query_round"], "query_round", 1, where=where)
    ann = e.get("annotator")
    if ann is not None and (not isinstance(ann, str) or not NAME_RE.match(ann)):
        raise AiftError(f"{where}: field \"annotator\" {shown(ann)} is not an annotator name")
    note = e.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        raise AiftError(f"{where}: field \"note\" must be a string of at most {MAX_NOTE} characters")
    out = dict(e)
    out.update(v=v, annotator=ann, note=note, adjudication=_bool(e, "adjudication", where),
               relabel=_bool(e, "relabel", where), query_round=e.get("query_round"))
    return out


def read_ledger(path: Path, n: int, class_names) -> list:
    """Every entry of ``ledger.jsonl`` in order, streamed line by line and validated (see :func:`parse_entry`).

    Teach rounds must not go backwards along the file (a hand edit or a damaged file otherwise).

    Example:
    >>> len(read_ledger(Path("PROJECT/ledger.jsonl"), 56, ["negative", "positive"]))
    12
    """
    path = Path(path)
    if not path.is_file():
        raise AiftError(f"{path}: the label ledger is missing")
    out = []
    last_round = 0
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                e = parse_entry(line, f"{path} line {i}", n, class_names)
                if e is None:
                    continue
                if e["round"] is not None:
                    if e["round"] < last_round:
                        raise AiftError(f"{path} line {i}: teach round {e['round']} after round {last_round} "
                                        f"(rounds never go backwards; the ledger was edited?)")
                    last_round = e["round"]
                out.append(e)
    except UnicodeDecodeError as e:
        raise AiftError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start} of a line)") from None
    except OSError as e:
        raise AiftError(f"{path}: unreadable ({e.strerror or e})") from None
    return out


def append_ledger(path: Path, entries: list, backup: Optional[Path] = None) -> Optional[Path]:
    """Append ``entries`` to the ledger ``path`` atomically (old bytes + new lines into a temporary, fsync,
    rename).

    With ``backup`` (a hidden sibling, :func:`aift_tf.annotation.layout.ledger_backup`), the old ledger is first
    hard-linked there (no space needed) and that path returned, so that :func:`restore_ledger` can put it back if
    the command fails later; None is returned where hard links cannot be made.
    """
    f = Path(path)
    try:
        old = f.read_bytes()
    except OSError as e:
        raise AiftError(f"{f}: unreadable ({e.strerror or e})") from None
    if old and not old.endswith(b"\n"):
        old += b"\n"
    new = "".join(json.dumps(e, sort_keys=False) + "\n" for e in entries).encode("utf-8")
    if backup is not None:
        try:
            with contextlib.suppress(FileNotFoundError):
                backup.unlink()
            os.link(f, backup)
        except OSError:
            backup = None  # no hard links here: a failed fine-tune then keeps the labels (re-trained later)
    try:
        write_bytes_atomic(f, old + new)
    except BaseException:
        if backup is not None:
            with contextlib.suppress(OSError):
                backup.unlink()
        raise
    return backup


def restore_ledger(path: Path, backup: Optional[Path]) -> None:
    """Put the ledger of before :func:`append_ledger` back (a rename: works on a full disk)."""
    if backup is None:
        return
    path = Path(path)
    os.replace(backup, path)
    fsync_dir(path.parent)


def drop_backup(backup: Optional[Path]) -> None:
    """Remove the backup :func:`append_ledger` made (best effort)."""
    if backup is not None:
        with contextlib.suppress(OSError):
            backup.unlink()


def voter(e: dict) -> str:
    """The key an entry votes under: the annotator's name, ``(unnamed)``, or the adjudication key."""
    if e.get("adjudication"):
        return ADJUDICATED
    return e.get("annotator") or UNNAMED


@dataclass
class Consensus:
    """The ledger summarized: trainable labels, disagreements, each annotator's latest labels."""

    labels: dict = field(default_factory=dict)         # id -> label (agreed or adjudicated): trained
    disagreements: dict = field(default_factory=dict)  # id -> {annotator: label} (held out of training)
    votes: dict = field(default_factory=dict)          # id -> {voter: label} since the last adjudication
    annotated: dict = field(default_factory=dict)      # annotator -> {id: latest label} (adjudications excluded)
    adjudicated: dict = field(default_factory=dict)    # id -> latest adjudicated label

    @property
    def ids(self) -> set:
        """Every id with a label of anybody (taken out of the pool)."""
        return set(self.votes)


def consensus(entries) -> Consensus:
    """Fold ledger entries (in order) into a :class:`Consensus`.

    Example:
    >>> c = consensus([{"id": 1, "label": 0, "annotator": "a"}, {"id": 1, "label": 1, "annotator": "b"}])
    >>> c.labels, c.disagreements
    ({}, {1: {'a': 0, 'b': 1}})
    """
    c = Consensus()
    for e in entries:
        i, lab = int(e["id"]), int(e["label"])
        if e.get("adjudication"):
            c.votes[i] = {ADJUDICATED: lab}
            c.adjudicated[i] = lab
        else:
            c.votes.setdefault(i, {})[voter(e)] = lab
            c.annotated.setdefault(voter(e), {})[i] = lab
    for i, v in c.votes.items():
        if len(set(v.values())) == 1:
            c.labels[i] = next(iter(v.values()))
        else:
            c.disagreements[i] = {("adjudication" if k == ADJUDICATED else k): lab for k, lab in v.items()}
    return c


def trained_by_round(entries, r: int) -> dict:
    """The labels teach round ``r`` trained: the consensus of the ledger up to its last entry of round ``r``
    ({} for r = 0, M0).

    Example:
    >>> trained_by_round([{"id": 1, "label": 0, "round": None}, {"id": 2, "label": 1, "round": 1}], 1)
    {1: 0, 2: 1}
    """
    if r <= 0:
        return {}
    cut = max((k for k, e in enumerate(entries) if e.get("round") == r), default=None)
    if cut is None:
        raise AiftError(f"the ledger has no entry of teach round {r}")
    return consensus(entries[: cut + 1]).labels


def unlabeled_ids(pool_ids, cons: Consensus):
    """The ids of ``pool_ids`` nobody has labeled yet (held-out and not-yet-trained labels count as labeled)."""
    import numpy as np

    pool = np.asarray(pool_ids)
    return pool[~np.isin(pool, np.fromiter(cons.ids, dtype=np.int64, count=len(cons.ids)))]


def missing_classes(labels: dict, K: int) -> list:
    """Classes (0..K-1) that no label of ``labels`` ({id: label}) has."""
    have = set(labels.values())
    return [k for k in range(K) if k not in have]


def class_list(ks, class_names) -> str:
    """``"class 1 (positive)"`` / ``"classes 0 (a), 2 (c)"`` for an error or status line."""
    text = ", ".join(f"{k} ({printable(class_names[k])})" for k in ks)
    return ("class " if len(ks) == 1 else "classes ") + text


def annotator_agreement(c: Consensus, K: int) -> list:
    """Cohen's kappa (``sklearn.metrics.cohen_kappa_score``) for every pair of annotators with shared ids.

    (The kappa of two models' predictions, for the stopping rule, is :func:`aift_tf.stopping.agreement`.)

    Returns:
        [{"pair": (a, b), "n": shared ids, "agree": ids with the same label, "kappa": float or None}]
        in name order; kappa is None when it is undefined (fewer than 2 shared ids, or both always gave the
        same single class).

    Example:
    >>> annotator_agreement(consensus(entries), 2)[0]["kappa"]
    0.62
    """
    from sklearn.metrics import cohen_kappa_score

    out = []
    names = sorted(c.annotated)
    for a, b in itertools.combinations(names, 2):
        shared = sorted(set(c.annotated[a]) & set(c.annotated[b]))
        if not shared:
            continue
        la = [c.annotated[a][i] for i in shared]
        lb = [c.annotated[b][i] for i in shared]
        agree = sum(x == y for x, y in zip(la, lb))
        kappa = None
        if len(shared) >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                k = float(cohen_kappa_score(la, lb, labels=list(range(K))))
            kappa = None if k != k else k  # NaN: undefined (one class only on both sides)
        out.append({"pair": (a, b), "n": len(shared), "agree": agree, "kappa": kappa})
    return out
