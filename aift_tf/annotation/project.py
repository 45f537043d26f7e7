"""An annotation project: the folder behind the ``aift`` command
(init / query / teach / adjudicate / status / export / recover). :class:`Project` holds the verbs; the pieces
they use are modules of their own: the names of every file and folder (:mod:`aift_tf.annotation.layout`),
``init`` and the config schema (:mod:`~aift_tf.annotation.create`), the lock (:mod:`~aift_tf.annotation.lock`),
the ledger (:mod:`~aift_tf.annotation.ledger`), the checkpoints, crash replay and repair
(:mod:`~aift_tf.annotation.checkpoints`), round folders and annotators (:mod:`~aift_tf.annotation.rounds`),
what a label CSV will change (:mod:`~aift_tf.annotation.label_plan`), the status report
(:mod:`~aift_tf.annotation.status`) and where an export may write (:mod:`~aift_tf.annotation.export_target`).

Layout of a project folder ``PROJECT/``::

    config.json                 settings (model, weights, trainable, strategy, learning, omega, fine-tuning),
                                store path + sha256, classes; written once by ``init``
    ledger.jsonl                the label ledger: append-only, one JSON object per label (format 2, see
                                :mod:`aift_tf.annotation.ledger`; format-1 ledgers of older projects are read)
    checkpoints/round-000/      M0: the initial learner state (``ActiveLearner.save``)
    checkpoints/round-TTT/      the learner state after teach round TTT (the latest is the current model;
                                M0 and the two most recent are kept)
    round-NNN/                  one query round: queries.csv + gallery.html (or, for several annotators,
                                queries-NAME.csv + gallery-NAME.html each), patches/<id>.png, query.json
    adjudication-NNN/           the disagreements listed by ``aift adjudicate``: queries.csv, gallery.html, ...

Labels and training. Every label is appended to the ledger with who gave it (``--annotator``, the CSV's
``annotator`` column, or the ``queries-NAME.csv`` it answers). An id's label is the consensus of its annotators'
latest labels; ids they disagree on stay out of training until ``aift adjudicate`` lists them and the
adjudication is taught. No fine-tuning runs while the labels lack a class (the learner refuses a one-class
set): such labels are recorded with ``"round": null`` and trained, with everything else, by the first teach
after which every class has a label. Teach round T trains the consensus of the ledger up to its last entry
marked ``round: T`` (:func:`aift_tf.annotation.ledger.trained_by_round`).

Crash safety of ``teach`` (the order is what matters)::

    1. validate the CSV and config.json against the store (nothing is written if anything is bad)
    2. if it will fine-tune: load the latest checkpoint and check its model's classes (a damaged checkpoint is
       refused here, naming ``aift recover PROJECT``; the ledger is untouched)
    3. append the new entries to the ledger, marked with round T = checkpoint round + 1 (or null)
    4. fine-tune (ActiveLearner.teach)
    5. save checkpoints/round-T atomically (temporary folder renamed into place)

If 4 or 5 fails with an error (a full disk, no permission, ...), the ledger is put back as it was (a hard link
to the old file, renamed back: no space needed), so a failed command changes nothing. If the process is killed
between 3 and 5, every command starts by comparing the ledger with the latest checkpoint and re-applies
ledger rounds newer than it, one teach per round, in order: an imported label is never lost. ``aift recover``
(:meth:`Project.repair`) sets a damaged latest checkpoint aside and re-applies the ledger from the previous one.
``aift status`` only reads: it works on a full or read-only disk and reports rounds still to re-train.

Nothing of the user's is ever replaced: a query round is numbered past every ``round-NNN`` name present
and its folder is renamed into place with a rename that refuses to overwrite; ``init`` likewise. Every
file read back (config.json, ledger, query.json, state.json) is checked field by field and refused with its
file (and ledger line, and field) named (:mod:`aift_tf.annotation.records`).

Test hook: with ``AIFT_TEST_CRASH_AFTER_LEDGER=1`` in the environment, ``teach`` kills its own process
(``os._exit(137)``) right after step 3, to test the recovery. Never set it otherwise.

TensorFlow is imported only when a model is built, loaded or trained (not for validation or ``--help``).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from aift_tf import checkpoint
from aift_tf.annotation import layout
from aift_tf.annotation import rounds as rounds_
from aift_tf.annotation.checks import check_name, printable, quoted
from aift_tf.annotation.checkpoints import (KEEP_CHECKPOINTS, Checkpoints, DamagedCheckpoint,  # noqa: F401
                                            LedgerMismatch, cause_line)
from aift_tf.annotation.create import PROJECT_FORMAT, init_project  # noqa: F401
from aift_tf.annotation.export_target import check_export_target
from aift_tf.annotation.label_plan import plan_labels
from aift_tf.annotation.labels_csv import read_label_csv
from aift_tf.annotation.layout import (ADJUDICATION, CHECKPOINTS, CONFIG, GALLERY, LEDGER, LOCK,  # noqa: F401
                                       QUERIES, QUERY_INFO)
from aift_tf.annotation.ledger import (LEDGER_VERSION, append_ledger, consensus, drop_backup, missing_classes,
                                       read_ledger, restore_ledger, unlabeled_ids)
from aift_tf.annotation.lock import locked
from aift_tf.annotation.records import check_project_config, now, read_json_file
from aift_tf.annotation.status import project_status
from aift_tf.annotation.rounds import QUERY_COLUMNS, assign_annotators, parse_annotators  # noqa: F401
from aift_tf.checks import check_number
from aift_tf.errors import AiftError
from aift_tf.files import clean_temporaries

CRASH_HOOK = "AIFT_TEST_CRASH_AFTER_LEDGER"


class Project:
    """An open project folder (read-only until a verb runs). Use as ``with Project(path) as p:``."""

    def __init__(self, path, progress: Optional[Callable] = None, echo: Callable = print,
                 fit_callbacks: Optional[Callable] = None, read_only: bool = False):
        """progress: ``(stage, done, total)`` for scoring; fit_callbacks: ``round -> [keras callbacks]``;
        read_only: the command only reads (``aift status``): it answers even when the project cannot be locked,
        and leaves temporaries alone."""
        self.path = Path(path)
        self.read_only = read_only
        self.progress = progress
        self.fit_callbacks = fit_callbacks
        self.echo = echo
        cfg = self.path / CONFIG
        if not self.path.is_dir():
            raise AiftError(f"{self.path}: no such project folder (create one with `aift init`)")
        if not cfg.is_file():
            raise AiftError(f"{self.path}: not an aift project (no {CONFIG})")
        self.config = check_project_config(read_json_file(cfg), cfg)  # every field checked, one line naming it
        names = self.config["class_names"]
        self.class_names = list(names)
        self._store = None
        self._stack = contextlib.ExitStack()
        self.cps = Checkpoints(self.path, self.config, lambda: self.store, self.ledger, progress=progress, echo=echo,
                               fit_callbacks=fit_callbacks)

    # -- context: lock + store
    def __enter__(self):
        self._stack.enter_context(locked(self.path, write=not self.read_only))
        if not self.read_only:
            self._cleanup_temporaries()
        return self

    def __exit__(self, *exc):
        if self._store is not None:
            self._store.close()
        self._stack.close()
        return False

    @property
    def store(self):
        if self._store is None:
            from aift_tf.store import open_store

            sp = Path(self.config["store"])
            if not sp.is_file():
                raise AiftError(f"{sp}: the project's store is missing (moved? fix \"store\" in {self.path / CONFIG})")
            store = open_store(sp)
            if store.sha256 != self.config["store_sha256"]:
                store.close()
                raise AiftError(f"{sp}: the store has changed since `aift init` (sha256 "
                                f"{self.config['store_sha256'][:12]}… expected)")
            try:
                self.check_config_against_store(store)
            except AiftError:
                store.close()
                raise
            self._store = store
        return self._store

    def check_config_against_store(self, store) -> None:
        """Refuse a config.json whose classes / sizes differ from its store (a hand edit): one-line AiftError."""
        cfg = self.path / CONFIG
        mine = {"class_names": self.class_names, "n": self.config["n"], "m": self.config["m"],
                "patch_shape": self.config.get("patch_shape")}
        theirs = {"class_names": list(store.class_names), "n": int(store.n), "m": int(store.m),
                  "patch_shape": [int(x) for x in store.patch_shape]}
        for key, want in theirs.items():
            if mine[key] != want:
                raise AiftError(f"{cfg}: \"{key}\" is {printable(json.dumps(mine[key]))} but the project's store "
                                f"has {printable(json.dumps(want))} ({CONFIG} was edited? put the value back)")

    def _cleanup_temporaries(self) -> None:
        """Remove temporaries left by an interrupted atomic write (never a complete file/folder)."""
        for folder in (self.path, layout.checkpoints_folder(self.path)):
            clean_temporaries(folder)

    # -- ledger
    def ledger(self) -> list:
        """Ledger entries in order, each validated (see :func:`aift_tf.annotation.ledger.read_ledger`)."""
        return read_ledger(self.path / LEDGER, int(self.config["n"]), self.class_names)

    def consensus(self, ledger=None):
        """The ledger folded into trainable labels, disagreements and each annotator's labels."""
        return consensus(self.ledger() if ledger is None else ledger)

    def labels(self, ledger=None) -> dict:
        """Effective (agreed or adjudicated) labels {id: label}; disagreements are left out."""
        return dict(self.consensus(ledger).labels)

    def _append_ledger(self, entries: list, keep_old: bool = False):
        """Append ``entries`` to the ledger atomically (:func:`aift_tf.annotation.ledger.append_ledger`); with
        ``keep_old``, return the backup that :meth:`_restore_ledger` puts back if the command fails later."""
        backup = layout.ledger_backup(self.path, os.getpid()) if keep_old else None
        return append_ledger(self.path / LEDGER, entries, backup)

    def _restore_ledger(self, backup) -> None:
        """Put the ledger of before :meth:`_append_ledger` back (a rename: works on a full disk)."""
        restore_ledger(self.path / LEDGER, backup)

    def _drop_backup(self, backup) -> None:
        drop_backup(backup)

    # -- checkpoints
    def checkpoints(self) -> list:
        """Complete checkpoint folders as [(round, path)] in round order."""
        return self.cps.list()

    def damaged_checkpoint(self, p: Path, reason: str) -> AiftError:
        """The one-line error for a checkpoint folder that cannot be read (:meth:`Checkpoints.damaged`)."""
        return self.cps.damaged(p, reason)

    def state(self) -> dict:
        """state.json of the latest checkpoint (no TensorFlow)."""
        return self.cps.state()

    def learner(self):
        """The learner of the latest checkpoint (loaded once); a damaged one → AiftError naming ``aift recover``."""
        return self.cps.learner()

    def repair(self) -> dict:
        """``aift recover``: what ``Checkpoints.repair`` does (damaged newest checkpoints set aside, never
        deleted; the ledger's newer rounds fine-tuned again; the ledger never touched), for this project.

        Returns:
            {"set_aside": [paths], "rebuilt_m0": bool, "records": [teach records], "round": int}

        Example:
        >>> with Project("pe-project") as p:
        ...     p.repair()["set_aside"]
        """
        return self.cps.repair()

    # -- pool
    def pool_ids(self) -> np.ndarray:
        return self.store.ids(self.config.get("pool_split", "train"))

    def unlabeled_ids(self, cons=None) -> np.ndarray:
        """Pool ids nobody has labeled yet (held-out and not-yet-trained labels count as labeled)."""
        return unlabeled_ids(self.pool_ids(), self.consensus() if cons is None else cons)

    # -- recovery
    def trained(self) -> dict:
        """{id: label} the latest checkpoint was trained with (state.json; no TensorFlow)."""
        return self.cps.trained()

    def pending_rounds(self, ledger=None) -> list:
        """Ledger teach rounds newer than the latest checkpoint (an interrupted teach), in order."""
        return self.cps.pending_rounds(ledger)

    def replay_pending(self) -> list:
        """Re-apply ledger rounds that the latest checkpoint lacks (an interrupted teach), silently, as every
        command does first. Returns records. (``aift recover`` is :meth:`repair`.)"""
        return self.cps.replay()

    def recover(self) -> list:
        """Deprecated alias of :meth:`replay_pending`, kept for one release: the name collided with
        ``aift recover``, which is :meth:`repair`."""
        import warnings

        warnings.warn("Project.recover() is deprecated; use Project.replay_pending() (`aift recover` is "
                      "Project.repair())", DeprecationWarning, stacklevel=2)
        return self.replay_pending()

    # -- query
    def round_names(self, kind: str = "round") -> list:
        """Every ``round-NNN`` (or ``adjudication-NNN``) entry of the project folder [(k, path)] in order."""
        return rounds_.round_names(self.path, kind)

    def rounds(self, kind: str = "round") -> list:
        """Complete query rounds (folders with a query.json) [(k, path)] in order."""
        return rounds_.rounds(self.path, kind)

    def incomplete_rounds(self) -> list:
        """``round-NNN`` names that are not complete query rounds (no query.json; maybe the user's own)."""
        return rounds_.incomplete_rounds(self.path)

    def next_round(self, kind: str = "round") -> int:
        """The number of the next query round: one more than every ``round-NNN`` name present."""
        return rounds_.next_round(self.path, kind)

    def round_info(self, p: Path) -> dict:
        """query.json of round folder ``p``, every field the project relies on checked."""
        return rounds_.round_info(p, int(self.config["n"]))

    def check_round_records(self) -> None:
        """Refuse a project whose round records were tampered with (:func:`rounds.check_round_records`)."""
        rounds_.check_round_records(self.path, int(self.config["n"]))

    def round_answered(self, k: int, p: Path, ledger, cons) -> bool:
        return rounds_.round_answered(k, p, ledger, cons, int(self.config["n"]))

    def query(self, n: int, strategy=None, omega=None, force=False, annotators=None, overlap=None) -> dict:
        """A new query round: the ``n`` most worthy unlabeled candidates, a CSV + labeling page each.

        Args:
            annotators: names (e.g. ``["alice", "bob"]``): one ``queries-NAME.csv`` / ``gallery-NAME.html`` per
                annotator; the candidates are dealt out in rank order, except a shared subset every annotator
                labels (for agreement / kappa).
            overlap: the shared fraction of ``n`` (0..1; default 0.2 with two or more annotators).

        Example:
        >>> with Project("pe-project") as p:
        ...     p.query(20, annotators=["alice", "bob"], overlap=0.2)["shared"]
        """
        from aift_tf.checks import check_int as check_integer
        from aift_tf.selection import as_strategy

        # the CLI's boundary: checked before anything is loaded; the learner takes the parsed object
        n = check_integer(n, "query_size", 1, coerce=True)
        parsed = None if strategy is None else as_strategy(strategy)
        omega = check_number(omega, "omega", low=1, optional=True, coerce=True)
        names = parse_annotators(annotators)
        if overlap is not None and not names:
            raise AiftError(f"overlap {overlap!r} needs annotators (the annotators who share the subset)")
        overlap = check_number(overlap, "overlap", 0, 1, optional=True, coerce=True)
        overlap = (0.2 if len(names) > 1 else 0.0) if overlap is None else overlap
        self.check_round_records()
        ledger = self.ledger()
        cons = consensus(ledger)
        rounds = self.rounds()
        if rounds and not force:
            k, p = rounds[-1]
            if not self.round_answered(k, p, ledger, cons):
                what = (f"fill the label column of {p / QUERIES} (or label it in {p / GALLERY})"
                        if (p / QUERIES).exists() else f"label its candidates ({layout.gallery_name('NAME')} in {p})")
                raise AiftError(f"{p.name} has not been answered yet: {what} and run `aift teach {quoted(self.path)} "
                                f"CSV`, or pass --force to query a new round anyway")
        left = self.unlabeled_ids(cons)
        if n > left.size:
            raise AiftError(f"-n {n} is larger than the {left.size} unlabeled candidates left in the pool")
        self.replay_pending()
        learner = self.learner()
        k = self.next_round()  # never the number of an existing round-NNN (complete or not)
        # The pool is `left`: labels recorded but not trained (held out, a class missing) are not
        # re-queried. Query randomness depends on (seed, query round) only: re-running a query is
        # repeatable and no checkpoint has to be rewritten for the RNG.
        q = learner.query(n, strategy=parsed, omega=omega, pool=left, rng_seed=[int(learner.seed), k])
        ids, scores = q.ids, q.scores
        probs = learner.predict(ids)  # (n, m, K)
        mean = probs.mean(axis=1)
        K = mean.shape[1]
        prob = mean[:, 1] if K == 2 else mean.max(axis=1)
        pred = mean.argmax(axis=1)
        order = np.argsort(-scores, kind="stable")
        ids, scores, prob, pred = ids[order], scores[order], prob[order], pred[order]
        groups = self.store.groups[ids]
        rows = [{"id": int(i), "group": int(g), "score": float(s), "probability": float(q),
                 "predicted": self.class_names[int(c)]}
                for i, g, s, q, c in zip(ids, groups, scores, prob, pred)]
        shares, shared = assign_annotators([r["id"] for r in rows], names, overlap, seed=[int(learner.seed), k, 7])
        info = {"round": k, "created": now(), "model_round": int(learner.round), "strategy": strategy or learner.strategy,
                "omega": q.omega, "n": n, "pool_left": int(left.size), "ids": [int(i) for i in ids],
                "class_names": self.class_names,
                "probability": "P(positive)" if K == 2 else "max-class probability"}
        if names:
            info.update(annotators=shares, shared=shared, overlap=overlap)
        target = layout.round_folder(self.path, k)
        self._write_round(target, rows, info, shares)
        info["path"] = target
        return info

    def _write_round(self, target: Path, rows, info, shares=None, kind: str = "query") -> None:
        """Write a round (or adjudication) folder atomically, never replacing one: CSV(s), page(s), patches."""
        rounds_.write_round(target, rows, info, self.store, self.path, shares, kind)

    # -- adjudication
    def adjudicate(self) -> dict:
        """List the ids annotators disagree on in a new ``adjudication-NNN/`` (queries.csv + labeling page).

        Teaching that folder's CSV (or the page's download) records adjudications, which settle the ids: they
        are trained from then on. Returns ``{"ids", "votes", "path"}`` (``path`` None when nothing disagrees;
        an unanswered earlier list of the same ids is returned instead of a new one).

        Example:
        >>> with Project("pe-project") as p:
        ...     p.adjudicate()["path"]
        PosixPath('pe-project/adjudication-001')
        """
        self.check_round_records()
        ledger = self.ledger()
        cons = consensus(ledger)
        dis = cons.disagreements
        ids = sorted(dis)
        votes = {str(i): dict(sorted(dis[i].items())) for i in ids}
        if not ids:
            return {"ids": [], "votes": {}, "path": None, "existing": False}
        prev = self.rounds(ADJUDICATION)
        if prev:
            k, p = prev[-1]
            info = self.round_info(p)
            if sorted(info["ids"]) == ids:
                return {"ids": ids, "votes": votes, "path": p, "existing": True}
        k = self.next_round(ADJUDICATION)
        groups = self.store.groups[np.array(ids, dtype=np.int64)]
        rows = [{"id": i, "group": int(g), "score": None, "probability": None, "predicted": "",
                 "votes": [(a, self.class_names[lab]) for a, lab in sorted(dis[i].items())]}
                for i, g in zip(ids, groups)]
        info = {"kind": "adjudication", "round": k, "created": now(), "n": len(ids), "ids": ids, "votes": votes,
                "class_names": self.class_names, "model_round": int(self.state()["round"]),
                "pool_left": int(self.unlabeled_ids(cons).size)}
        target = layout.round_folder(self.path, k, ADJUDICATION)
        self._write_round(target, rows, info, kind="adjudication")
        return {"ids": ids, "votes": votes, "path": target, "existing": False}

    # -- teach
    def csv_context(self, csv_path: Path, annotator=None, warn: Callable = print) -> dict:
        """What a label CSV answers: a query round (its ``queries[-NAME].csv`` or the page's download
        ``round-NNN[-NAME]-labels.csv``), an adjudication list, or nothing (a free-form CSV).

        Returns ``{"kind": "query"|"adjudication"|None, "k", "folder", "annotator", "ids"}``; ``ids`` is the
        set the CSV's ids must come from (None: the pool).
        """
        return rounds_.csv_context(self.path, csv_path, int(self.config["n"]), annotator, warn)

    def resolve_csv(self, csv_arg) -> Path:
        p = Path(csv_arg).expanduser()
        if not p.exists() and not p.is_absolute() and (self.path / p).exists():
            p = self.path / p
        if not p.exists():
            raise AiftError(f"{csv_arg}: no such file")
        if not p.is_file():
            raise AiftError(f"{csv_arg}: not a file")
        return p

    def validate_csv(self, csv_path: Path, relabel=False, annotator=None, warn: Callable = print) -> dict:
        """Parse and check a label CSV against the project (no writes). Returns the plan
        (:func:`aift_tf.annotation.label_plan.plan_labels`)."""
        self.check_round_records()
        cons = self.consensus()
        ctx = self.csv_context(csv_path, annotator, warn)
        pool = set(self.pool_ids().tolist())  # also checks config.json against the store
        parsed = read_label_csv(csv_path, int(self.config["n"]), self.class_names)
        return plan_labels(parsed, ctx, cons, pool, self.class_names, relabel=relabel, annotator=annotator,
                           pool_split=self.config.get("pool_split", "train"), where=str(csv_path))

    def teach(self, csv_arg, relabel=False, annotator=None, warn: Callable = print) -> dict:
        """Record a label CSV in the ledger and fine-tune on it (when every class has a label).

        Returns a dict: ``nothing_new``, ``plan``, ``trained`` (bool), ``record`` (when trained), ``round``,
        ``missing`` (classes without a label: no fine-tuning), ``held`` (new ids in disagreement).

        Example:
        >>> with Project("pe-project") as p:
        ...     p.teach("round-001/queries-alice.csv")["round"]
        1
        """
        if annotator is not None:
            check_name(annotator, "--annotator")
        csv_path = self.resolve_csv(csv_arg)
        plan = self.validate_csv(csv_path, relabel=relabel, annotator=annotator, warn=warn)
        if plan["empty"]:
            shown_ids = ", ".join(map(str, plan["empty"][:10])) + (" …" if len(plan["empty"]) > 10 else "")
            warn(f"warning: {csv_path}: {len(plan['empty'])} row(s) with an empty label skipped (ids {shown_ids}); "
                 f"they stay in the pool")
        recovered = self.replay_pending()
        todo = plan["new"]
        out = {"nothing_new": not todo, "plan": plan, "recovered": recovered, "csv": csv_path, "trained": False,
               "missing": [], "held": []}
        if not todo:
            return out
        ledger = self.ledger()
        try:
            source = str(csv_path.resolve().relative_to(self.path.resolve()))
        except ValueError:
            source = str(csv_path.resolve())
        t = now()
        entries = [{"v": LEDGER_VERSION, "id": int(s["id"]), "label": int(s["label"]),
                    "class": self.class_names[s["label"]], "annotator": s["annotator"], "note": s["note"],
                    "adjudication": s["adjudication"], "round": None, "query_round": plan["query_round"],
                    "relabel": s["relabel"], "time": t, "source": source, "line": int(s["line"])}
                   for s in sorted(todo, key=lambda s: s["line"])]
        after = consensus(ledger + entries)
        target, trained = after.labels, self.trained()
        behind = [i for i in target if trained.get(i) != target[i]]
        missing = missing_classes(target, len(self.class_names))
        out["held"] = sorted({e["id"] for e in entries} & set(after.disagreements))
        out["missing"] = missing
        train = bool(behind) and not missing
        if train:
            # Everything the fine-tune needs is loaded and checked BEFORE the ledger is touched: config.json
            # against the store (validate_csv opened it), the checkpoint, and the model's classes.
            r = int(self.learner().round) + 1
            for e in entries:
                e["round"] = r
        backup = self._append_ledger(entries, keep_old=train)  # the labels are safe from here on
        out["round"] = int(self.state()["round"])
        if not train:
            return out
        if os.environ.get(CRASH_HOOK) == "1":  # test hook: die between the ledger and the checkpoint
            os._exit(137)
        try:
            record = self.cps.apply(target, r)  # fine-tune, then the checkpoint
        except Exception:
            # a failed command changes nothing: unless the checkpoint already exists, put the ledger back
            if checkpoint.state_file(layout.checkpoint_folder(self.path, r)).is_file():
                self._drop_backup(backup)
            else:
                self._restore_ledger(backup)
            raise
        self._drop_backup(backup)
        out.update(trained=True, record=record, round=r)
        return out

    # -- status
    def status(self) -> dict:
        """Everything ``aift status`` shows (:func:`aift_tf.annotation.status.project_status`). Read-only."""
        return project_status(self.path, self.cps, self.ledger(), self.pool_ids(), self.class_names,
                              int(self.config["n"]))

    # -- export
    def export(self, out, force=False) -> Path:
        """Export the current model to ``out`` (see :func:`aift_tf.export.export_model`), written atomically.

        ``out`` must be new, or (with ``force``) an earlier export written by aift_tf
        (:func:`aift_tf.export.is_export`), which is then replaced as a whole. Anything else is refused with one
        line and left as it is: a folder holding other files, a regular file, a symbolic link, the store, and
        any path in (or containing) a project folder.

        Example:
        >>> with Project("pe-project") as p:
        ...     p.export("pe-model", force=True)
        PosixPath('pe-model')
        """
        from aift_tf.export import export_model

        out = Path(out).expanduser()
        check_export_target(out, force, self.path, Path(self.config["store"]))
        self.check_round_records()
        self.replay_pending()
        learner = self.learner()
        c = self.config
        prov = {"project": str(self.path.resolve()), "strategy": learner.strategy, "learning": learner.learning,
                "omega": learner.omega, "round": int(learner.round), "seed": int(learner.seed),
                "labeled": int(learner.labeled_ids.size), "data": c["store"], "data_sha256": c["store_sha256"],
                "class_names": self.class_names, "model": c["model"], "weights": c["weights"],
                "trainable": c["trainable"], "finetune": learner.finetune.to_dict()}
        return export_model(learner.model, out, patches_per_candidate=self.store.m, provenance=prov)
