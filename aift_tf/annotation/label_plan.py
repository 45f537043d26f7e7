"""What a label CSV will change: the plan ``aift teach`` records (no writes, no TensorFlow).

:func:`plan_labels` checks every parsed row of a label CSV against what it answers (a query round, an
adjudication list, or the pool) and against the labels already in the ledger, and returns the new entries to
record. Every problem is collected and refused at once, ``FILE line N: ...``, so nothing of a bad file is taught.
"""

from __future__ import annotations

from aift_tf.annotation.labels_csv import Parsed, problems_error
from aift_tf.annotation.layout import ADJUDICATION
from aift_tf.annotation.ledger import ADJUDICATED, UNNAMED
from aift_tf.files import round_name


def plan_labels(parsed: Parsed, context: dict, cons, pool: set, class_names, *, relabel: bool = False,
                annotator=None, pool_split: str = "train", where: str = "labels.csv") -> dict:
    """Check a parsed label CSV against the project and return what teaching it records.

    Args:
        parsed: the CSV read by :func:`aift_tf.annotation.labels_csv.read_label_csv`.
        context: what the CSV answers (:func:`aift_tf.annotation.rounds.csv_context`).
        cons: the ledger's consensus (:func:`aift_tf.annotation.ledger.consensus`).
        pool: the ids of the pool split (a free-form CSV may label any of them).
        class_names: the project's classes, in index order.
        relabel: allow changing an annotator's earlier label.
        annotator: ``--annotator`` (every row's own annotator must agree with it).
        pool_split: the pool's split name (for the message about an evaluation id).
        where: the CSV's name in the one-line error.

    Returns:
        ``{"new", "relabel", "same", "empty", "query_round", "kind", "rows", "annotators", "context"}``.

    Raises:
        AiftError: one message listing every problem, ``FILE line N: ...``.

    Example:
    >>> plan = plan_labels(read_label_csv(path, n, names), ctx, consensus(ledger), pool, names)
    >>> [s["id"] for s in plan["new"]]
    """
    problems = list(parsed.problems)
    new, same, annotators = [], [], set()
    adjudicating = context["kind"] == "adjudication"
    where_round = (round_name(context["k"]) if context["kind"] == "query" else
                   round_name(context["k"], ADJUDICATION) if adjudicating else None)
    for row in parsed.rows:
        def bad(msg, line=row.line):
            problems.append((line, msg))

        if context["ids"] is not None and row.id not in context["ids"]:
            bad(f"id {row.id} was not queried in {where_round}" if not adjudicating else
                f"id {row.id} is not listed in {where_round}")
            continue
        if context["ids"] is None and row.id not in pool:
            bad(f"id {row.id} is not in the {pool_split!r} pool (it belongs to the store's evaluation splits)")
            continue
        who = context["annotator"]
        if row.annotator is not None:
            if annotator is not None and row.annotator != annotator:
                bad(f"annotator {row.annotator!r} of id {row.id} differs from --annotator {annotator}")
                continue
            who = row.annotator
        if context["dealt"]:  # a round dealt to several annotators: each label from one who was dealt the id
            names = ", ".join(context["dealt"])
            if who is None:
                bad(f"{where_round} was dealt to {names}: say who labeled id {row.id} (--annotator NAME or an "
                    f"annotator column)")
                continue
            if who not in context["dealt"]:
                bad(f"annotator {who!r} was not dealt {where_round} (dealt to {names})")
                continue
            if row.id not in context["dealt"][who]:
                bad(f"id {row.id} was not dealt to {who} in {where_round}")
                continue
        seed = {"id": row.id, "label": row.label, "line": row.line, "annotator": who, "note": row.note,
                "adjudication": adjudicating, "relabel": False}
        if adjudicating:
            if cons.votes.get(row.id) == {ADJUDICATED: row.label}:
                same.append(row.id)
            else:
                new.append(seed)
            continue
        prev = cons.annotated.get(who or UNNAMED, {}).get(row.id)
        if prev == row.label:
            same.append(row.id)
            continue
        if prev is not None:
            if not relabel:
                by = f" by {who}" if who else ""
                bad(f"id {row.id} is already labeled {class_names[prev]!r}{by}, not "
                    f"{class_names[row.label]!r}; pass --relabel to change it")
                continue
            seed["relabel"] = True
        new.append(seed)
        annotators.add(who)
    if problems:
        raise problems_error(where, problems, parsed.truncated)
    return {"new": new, "relabel": [s for s in new if s["relabel"]], "same": same, "empty": parsed.empty,
            "query_round": context["k"] if context["kind"] == "query" else None, "kind": context["kind"],
            "rows": len(parsed.rows) + len(parsed.empty), "annotators": annotators, "context": context}
