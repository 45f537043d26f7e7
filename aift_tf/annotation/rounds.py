"""A project's query rounds and adjudication lists (``round-NNN/``, ``adjudication-NNN/``, named by
:mod:`aift_tf.annotation.layout`): finding and numbering them, their ``query.json``, writing one (CSV sheets,
labeling pages, patches), dealing a round's candidates out to several annotators, and what round a label CSV
answers (:func:`csv_context`).

Every function takes the project folder (and the store, the ledger, ... it needs) as arguments.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import numpy as np

from aift_tf.annotation import layout
from aift_tf.annotation.checks import check_name, printable, quoted
from aift_tf.annotation.layout import ADJUDICATION, QUERY_INFO, ROUND
from aift_tf.annotation.records import check_query_info, read_json_file
from aift_tf.errors import AiftError
from aift_tf.files import atomic_dir, write_json_atomic, write_text_atomic

#: the columns of a query round's sheet (queries.csv)
QUERY_COLUMNS = ("id", "group", "score", "probability", "label")


def round_names(project: Path, kind: str = ROUND) -> list:
    """Every ``round-NNN`` (or ``adjudication-NNN``) entry of the project folder [(k, path)] in order, complete
    or not (any file type)."""
    out = []
    for p in Path(project).iterdir():
        k = layout.round_folder_number(p.name, kind)
        if k is not None:
            out.append((k, p))
    return sorted(out)


def rounds(project: Path, kind: str = ROUND) -> list:
    """Complete query rounds (folders with a query.json) [(k, path)] in order."""
    return [(k, p) for k, p in round_names(project, kind) if p.is_dir() and (p / QUERY_INFO).is_file()]


def incomplete_rounds(project: Path) -> list:
    """``round-NNN`` names that are not complete query rounds (no query.json; maybe the user's own)."""
    done = {k for k, _ in rounds(project)}
    return [(k, p) for k, p in round_names(project) if k not in done]


def next_round(project: Path, kind: str = ROUND) -> int:
    """The number of the next query round: one more than every ``round-NNN`` name present."""
    names = round_names(project, kind)
    return names[-1][0] + 1 if names else 1


def round_info(p: Path, n: int) -> dict:
    """query.json of round folder ``p`` (of a store of ``n`` candidates), every field the project relies on
    checked."""
    f = p / QUERY_INFO
    return check_query_info(read_json_file(f), f, int(n))


def check_round_records(project: Path, n: int) -> None:
    """Read every round's and adjudication list's query.json (one line naming the first bad one): commands
    that write refuse a project whose round records were tampered with (float, string, out-of-range ids)."""
    for kind in (ROUND, ADJUDICATION):
        for _, p in rounds(project, kind):
            round_info(p, n)


def round_answered(k: int, p: Path, ledger, cons, n: int) -> bool:
    """Whether query round ``k`` (folder ``p``) has been answered: a ledger entry names it, or one of its ids
    has a label."""
    info = round_info(p, n)
    if any(e.get("query_round") == k for e in ledger):
        return True
    return any(int(i) in cons.ids for i in info["ids"])


def write_round(target: Path, rows, info, store, project: Path, shares=None, kind: str = "query") -> None:
    """Write a round (or adjudication) folder atomically, never replacing one: CSV(s), page(s), patches."""
    from aift_tf.annotation.gallery import write_page, write_patches

    stem = target.name
    with atomic_dir(target, replace=False) as tmp:  # never replaces a folder (an annotator's work)
        write_patches(tmp, store, [r["id"] for r in rows])
        sheets = ([(None, rows)] if not shares else
                  [(name, [r for r in rows if r["id"] in set(mine)]) for name, mine in shares.items()])
        for name, sub in sheets:
            write_text_atomic(tmp / layout.queries_name(name), queries_csv(sub, votes=(kind != "query")))
            write_page(tmp / layout.gallery_name(name), sub, info, store, project=project,
                       annotator=name, kind=kind, download=layout.download_name(stem, name))
        write_json_atomic(tmp / QUERY_INFO, info)


def queries_csv(rows, votes: bool = False) -> str:
    """The text of a round's sheet (``QUERY_COLUMNS``), or of an adjudication list's (``votes``)."""
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if votes:  # an adjudication list: who said what instead of the model's score
        w.writerow(("id", "group", "votes", "label"))
        for r in rows:
            w.writerow([r["id"], r["group"], " | ".join(f"{a}: {c}" for a, c in r["votes"]), ""])
        return buf.getvalue()
    w.writerow(QUERY_COLUMNS)
    for r in rows:
        w.writerow([r["id"], r["group"], f"{r['score']:.6g}", f"{r['probability']:.4f}", ""])
    return buf.getvalue()


def parse_annotators(value) -> list:
    """``"alice,bob"`` or ``["alice", "bob"]`` → checked, distinct names (``[]`` for None / empty).

    Example:
    >>> parse_annotators("alice, bob")
    ['alice', 'bob']
    """
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(x).strip() for x in items]
    if not names or any(not x for x in names):
        raise AiftError(f"--annotators {printable(value if isinstance(value, str) else ','.join(names))!r}: "
                        f"an empty name (list names separated by single commas, e.g. alice,bob)")
    for name in names:
        check_name(name, "--annotators")
    dup = [x for x in names if names.count(x) > 1]
    if dup:
        raise AiftError(f"--annotators: {dup[0]!r} is listed twice")
    return names


def assign_annotators(ids, names, overlap: float, seed) -> tuple:
    """Deal ranked ``ids`` out to annotators: a shared subset (``overlap`` of them, drawn with ``seed``) goes to
    everybody, the rest round-robin in rank order (so every annotator gets as many hard cases).

    Returns:
        ``({name: [ids in rank order]}, [shared ids in rank order])``; ``({}, [])`` without names.

    Example:
    >>> assign_annotators([5, 3, 8, 1, 9], ["a", "b"], 0.2, seed=0)
    ({'a': [5, 8, 9], 'b': [5, 3, 1]}, [5])
    """
    ids = [int(i) for i in ids]
    if not names:
        return {}, []
    n = len(ids)
    n_shared = 0
    if len(names) > 1 and overlap > 0:
        n_shared = min(n, max(1, int(round(overlap * n))))
    rng = np.random.default_rng(seed)
    pos = set(rng.choice(n, n_shared, replace=False).tolist()) if n_shared else set()
    shared = [i for p, i in enumerate(ids) if p in pos]
    rest = [i for p, i in enumerate(ids) if p not in pos]
    own = {name: set() for name in names}
    for j, i in enumerate(rest):
        own[names[j % len(names)]].add(i)
    shares = {name: [i for i in ids if i in own[name] or i in pos_ids] for name, pos_ids in
              ((name, set(shared)) for name in names)}
    return shares, shared


def csv_context(project: Path, csv_path: Path, n: int, annotator=None, warn: Callable = print) -> dict:
    """What a label CSV answers: a query round (its ``queries[-NAME].csv`` or the page's download
    ``round-NNN[-NAME]-labels.csv``), an adjudication list, or nothing (a free-form CSV).

    Returns ``{"kind": "query"|"adjudication"|None, "k", "folder", "annotator", "ids"}``; ``ids`` is the
    set the CSV's ids must come from (None: the pool).
    """
    project = Path(project)
    ctx = {"kind": None, "k": None, "folder": None, "annotator": annotator, "ids": None, "dealt": {},
           "name": None}
    try:
        rp = csv_path.resolve()
    except OSError:
        return ctx
    inside = rp.parent.parent == project.resolve()
    (is_sheet, sheet_name), md = layout.parse_queries_name(rp.name), layout.parse_download_name(rp.name)
    kr, ka = layout.round_folder_number(rp.parent.name), layout.round_folder_number(rp.parent.name, ADJUDICATION)
    if inside and is_sheet and (kr is not None or ka is not None):
        kind, k = ("query", kr) if kr is not None else ("adjudication", ka)
        name, folder = sheet_name, rp.parent
    elif md:
        kind, k, name = md
        folder = layout.round_folder(project, k, kind)
    else:
        return ctx
    ctx.update(kind=kind, k=k, folder=folder, annotator=annotator or name, name=name)
    if not (folder / QUERY_INFO).is_file():
        if kind == "adjudication":
            raise AiftError(f"{csv_path}: answers {folder.name}, but {folder / QUERY_INFO} is missing (run "
                            f"`aift adjudicate {quoted(project)}` again)")
        warn(f"warning: {folder / QUERY_INFO} is missing: the ids of {csv_path} were checked against "
             f"the pool instead of the round's queried ids")
        if not inside:
            ctx.update(kind=None, k=None, folder=None)
        return ctx
    info = round_info(folder, n)
    dealt = info.get("annotators") or {}
    if not dealt:
        # a round for one annotator: a suffix is the user's own (queries-filled.csv), not an annotator
        ctx["annotator"] = annotator
    elif name is not None and name not in dealt and annotator is None:  # --annotator says who it was
        raise AiftError(f"{csv_path}: {folder.name} was dealt to {', '.join(map(printable, dealt))}, not to "
                        f"{printable(name)!r} (rename the file after the annotator who labeled it, or pass "
                        f"--annotator NAME); nothing was changed")
    ctx["ids"] = set(info["ids"])
    ctx["dealt"] = {a: set(v) for a, v in dealt.items()}
    ctx["info"] = info
    return ctx
