"""The label CSV an annotator hands to ``aift teach``: ``id,label[,note,annotator]`` (other columns ignored).

The file is streamed row by row (a huge or hostile file never sits in memory) and every problem is reported
as ``FILE line N: ...``; reading stops after ``MAX_PROBLEMS`` problems. Labels may be a class index or a class
name (case-insensitive when unambiguous); an empty label means "not labeled" (unsure / skipped: the candidate
stays in the pool). A malformed file (an unclosed quote, a row with more or fewer fields than the header) is
refused whole: nothing of it is taught.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from aift_tf.annotation.checks import MAX_NOTE, NAME_RE, printable
from aift_tf.errors import AiftError

MAX_PROBLEMS = 100
COLUMNS = ("id", "label", "note", "annotator")


@dataclass
class Row:
    """One labeled row: ``label`` is a class index, ``annotator`` the row's own (None if the column is empty)."""

    line: int
    id: int
    label: int
    note: Optional[str]
    annotator: Optional[str]


@dataclass
class Parsed:
    rows: list          # [Row] with a label, in file order
    empty: list         # ids whose label is empty (stay in the pool)
    problems: list      # [(line, message)]
    truncated: bool     # reading stopped after MAX_PROBLEMS problems
    columns: tuple      # the optional columns present


def label_lookup(class_names):
    """``text -> class index or None`` for a label cell: an index, a class name, or a name in any case.

    Example:
    >>> label_lookup(["non-PE", "PE"])("pe")
    1
    """
    K = len(class_names)
    names = {c: i for i, c in enumerate(class_names)}
    lower = {}
    for i, c in enumerate(class_names):
        lower.setdefault(c.strip().lower(), []).append(i)

    def lookup(raw: str):
        if raw in names:
            return names[raw]
        if re.fullmatch(r"[+-]?[0-9]{1,30}(\.0*)?", raw):  # 30 digits: a huge number is simply not a class
            v = int(raw.split(".")[0])
            return v if 0 <= v < K else None
        hit = lower.get(raw.lower(), [])
        return hit[0] if len(hit) == 1 else None

    return lookup


def parse_id(raw: str, n: int):
    """``(id, None)`` or ``(None, problem)`` for an id cell (an integer 0..n-1; ``5.0`` is accepted)."""
    if not raw:
        return None, "empty id"
    if len(raw) > 40 or not raw.isascii() or "_" in raw:  # no id is that long; int() takes "1_0" and "٣"
        return None, f"id {printable(raw[:40])!r} is not an integer candidate id"
    try:
        cid = int(raw)
    except ValueError:
        try:
            f = float(raw)
            cid = int(f) if f.is_integer() else None
        except (ValueError, OverflowError):
            cid = None
        if cid is None:
            return None, f"id {printable(raw[:40])!r} is not an integer candidate id"
    if not 0 <= cid < n:
        return None, f"id {printable(raw[:40])!r} is not a candidate of the store (ids are 0..{n - 1})"
    return cid, None


def read_label_csv(path, n: int, class_names) -> Parsed:
    """Stream and parse a label CSV (syntax, ids in 0..n-1, labels, notes, annotator names, duplicates).

    Checks that need the project (queried ids, the pool, earlier labels) are left to the caller, which gets
    every labeled row with its line number.

    Example:
    >>> p = read_label_csv("round-001/queries.csv", 56, ["negative", "positive"])
    >>> [(r.id, r.label) for r in p.rows][:2]
    [(17, 1), (3, 0)]
    """
    path = Path(path)
    where = str(path)
    lookup = label_lookup(class_names)
    classes_txt = ", ".join(f"{i}={printable(c)}" for i, c in enumerate(class_names))
    rows, empty, problems, seen = [], [], [], {}
    truncated = False
    try:
        f = open(path, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise AiftError(f"{where}: cannot read ({e.strerror or e})") from None
    with f:
        # strict: an unclosed quote or a stray character after a closing quote is an error, never a
        # silently swallowed rest of the file
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise AiftError(f"{where}: empty file (expected a header with columns id,label)") from None
        except csv.Error as e:
            raise AiftError(f"{where} line 1: malformed CSV ({e})") from None
        except UnicodeDecodeError as e:
            raise AiftError(f"{where}: not UTF-8 text (byte {e.start} of line 1)") from None
        cols = [h.strip().lower() for h in header]
        for need in ("id", "label"):
            if need not in cols:
                raise AiftError(f"{where} line 1: no {need!r} column in the header "
                                f"{printable(','.join(header)[:120])!r} (expected columns id,label)")
        for name in COLUMNS:
            if cols.count(name) > 1:
                raise AiftError(f"{where} line 1: column {name!r} appears twice in the header")
        idx = {name: cols.index(name) for name in COLUMNS if name in cols}

        def cell(row, name):
            k = idx.get(name)
            return row[k].strip() if k is not None and k < len(row) else ""

        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                problems.append((reader.line_num, f"malformed CSV ({e})"))
                break
            except UnicodeDecodeError as e:
                problems.append((reader.line_num + 1, f"not UTF-8 text (byte {e.start} of the block read)"))
                break
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(problems) >= MAX_PROBLEMS:
                truncated = True
                break
            if len(row) != len(header):  # a ragged row: a shifted or merged line, never guessed at
                problems.append((line, f"{len(row)} field(s) but the header has {len(header)} (a ragged row: a "
                                       f"missing or extra comma?)"))
                continue
            cid, problem = parse_id(cell(row, "id"), n)
            if problem:
                problems.append((line, problem))
                continue
            if cid in seen:
                problems.append((line, f"id {cid} appears twice (first on line {seen[cid]})"))
                continue
            seen[cid] = line
            raw_label = cell(row, "label")
            if not raw_label:
                empty.append(cid)
                continue
            lab = lookup(raw_label)
            if lab is None:
                problems.append((line, f"label {printable(raw_label[:40])!r} of id {cid} is not a class "
                                       f"({classes_txt})"))
                continue
            note = cell(row, "note") or None
            if note is not None and len(note) > MAX_NOTE:
                problems.append((line, f"the note of id {cid} is longer than {MAX_NOTE} characters"))
                continue
            ann = cell(row, "annotator") or None
            if ann is not None and not NAME_RE.match(ann):
                problems.append((line, f"annotator {printable(ann[:70])!r} of id {cid} is not an annotator name "
                                       f"(letters, digits, '.', '_', '-')"))
                continue
            rows.append(Row(line, cid, lab, note, ann))
    return Parsed(rows, empty, problems, truncated, tuple(k for k in ("note", "annotator") if k in idx))


def problems_error(where: str, problems: list, truncated: bool) -> AiftError:
    """The one-line error for a CSV's problems: the first (by line) and how many more."""
    problems = sorted(problems, key=lambda p: p[0])
    line, msg = problems[0]
    more = len(problems) - 1
    if truncated:
        tail = f" (+{more} more problems; stopped reading after {MAX_PROBLEMS}; nothing was changed)"
    elif more:
        tail = f" (+{more} more problem{'s' if more > 1 else ''}; nothing was changed)"
    else:
        tail = " (nothing was changed)"
    return AiftError(f"{where} line {line}: {msg}{tail}")
