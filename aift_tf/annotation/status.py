"""What ``aift status`` reports: labels per class and annotator, rounds, checkpoints, what is not trained yet.

Read-only (works on a full or read-only disk). A damaged checkpoint does not stop the report: it is named (with
``aift recover``) and the rest still answers. Ledger rounds newer than the latest checkpoint are reported as
``pending`` (the next query / teach / export re-trains them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aift_tf.annotation import rounds as rounds_
from aift_tf.annotation.ledger import annotator_agreement, consensus, missing_classes, unlabeled_ids
from aift_tf.errors import AiftError


def _per_class(labels, K: int) -> list:
    counts = [0] * K
    for lab in labels:
        counts[lab] += 1
    return counts


def project_status(project: Path, checkpoints, ledger: list, pool_ids: np.ndarray, class_names, n: int) -> dict:
    """Everything ``aift status`` shows.

    Args:
        project: the project folder (its round folders are read).
        checkpoints: the project's :class:`aift_tf.annotation.checkpoints.Checkpoints`.
        ledger: the ledger's entries (:func:`aift_tf.annotation.ledger.read_ledger`).
        pool_ids: the ids of the pool split.
        class_names: the project's classes, in index order.
        n: candidates in the store (round records are checked against it).

    Returns:
        a dict of plain values (``labels``, ``per_class``, ``pool``, ``pool_left``, ``query_rounds``,
        ``pending_rounds``, ``not_trained``, ``damaged``, ``agreement``, ...), as ``aift status --json`` prints it.

    Example:
    >>> project_status(path, Checkpoints(path, config, store, ledger), read_ledger(...), store.ids("train"),
    ...                ["negative", "positive"], store.n)["labels"]
    """
    cons = consensus(ledger)
    damaged = None
    try:
        st = checkpoints.state()
        pending = checkpoints.pending_rounds(ledger)
        trained = checkpoints.trained()
        newest = checkpoints.list()[-1][1]
    except AiftError as e:  # the checkpoints: the rest of the report still answers, naming `aift recover`
        damaged = str(e)
        st, pending, trained, newest = {"round": None, "history": []}, [], {}, None
    K = len(class_names)
    behind = sorted(set(i for i in cons.labels if trained.get(i) != cons.labels[i])
                    | set(i for i in trained if i not in cons.labels))
    query_rounds = []
    for k, p in rounds_.rounds(project):
        info = rounds_.round_info(p, n)
        query_rounds.append({"round": k, "n": info["n"], "answered": rounds_.round_answered(k, p, ledger, cons, n),
                             "labeled": sum(int(i) in cons.ids for i in info["ids"]),
                             "annotators": sorted((info.get("annotators") or {}).keys()),
                             "shared": len(info.get("shared", []))})
    per_annotator = {name: {"labels": len(labs), "per_class": dict(zip(class_names, _per_class(labs.values(), K)))}
                     for name, labs in sorted(cons.annotated.items())}
    return {"incomplete_rounds": [p.name for _, p in rounds_.incomplete_rounds(project)], "labels": len(cons.labels),
            "damaged": damaged, "teach_rounds": None if st["round"] is None else int(st["round"]),
            "per_class": dict(zip(class_names, _per_class(cons.labels.values(), K))), "pool": int(pool_ids.size),
            "pool_left": int(unlabeled_ids(pool_ids, cons).size), "query_rounds": query_rounds,
            "history": st.get("history", []), "checkpoint": newest,
            "pending_rounds": pending, "not_trained": behind if not (pending or damaged) else [],
            "missing": missing_classes(cons.labels, K) if cons.labels or cons.ids else [],
            "disagreements": {i: dict(v) for i, v in sorted(cons.disagreements.items())},
            "adjudicated": len(cons.adjudicated), "annotators": per_annotator,
            "agreement": annotator_agreement(cons, K)}
