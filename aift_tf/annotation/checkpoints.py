"""A project's learner checkpoints (``checkpoints/round-TTT``, :mod:`aift_tf.annotation.layout`): list, load,
save (keeping M0 and the two most recent), the one-line error of a damaged one, crash replay of ledger rounds
newer than the newest checkpoint, and ``aift recover``'s repair. The files inside a checkpoint folder are
:mod:`aift_tf.checkpoint`'s (the learner's ``save``/``load``).

:class:`Checkpoints` is given everything it needs (the project folder, its checked config, a way to open the
store and to read the ledger); it never imports :mod:`aift_tf.annotation.project`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from aift_tf import checkpoint
from aift_tf.annotation import layout
from aift_tf.annotation.checks import printable, quoted
from aift_tf.annotation.layout import CONFIG, LEDGER
from aift_tf.annotation.ledger import trained_by_round
from aift_tf.annotation.records import check_state, read_json_file
from aift_tf.errors import AiftError
from aift_tf.files import fsync_dir, remove_folder, round_name, round_number

KEEP_CHECKPOINTS = 2  # besides M0


class DamagedCheckpoint(AiftError):
    """A checkpoint folder that cannot be read; the message names ``aift recover PROJECT``."""


class LedgerMismatch(AiftError):
    """The newest checkpoint was not trained on what the ledger says (e.g. two commands wrote at once without a
    lock): ``aift recover`` sets the checkpoint aside and re-trains the ledger's labels."""


def cause_line(text) -> str:
    """The readable part of an error message that spans lines (Keras, h5py): its first line in full, and the
    line Keras starts with ``Exception encountered`` (the real cause of a failed deserialisation).

    Example:
    >>> cause_line("TypeError: could not be deserialized properly.\\n\\nconfig={...}\\n\\nException encountered: boom")
    'TypeError: could not be deserialized properly. … Exception encountered: boom'
    """
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if not lines:
        return "no reason given"
    out = lines[0]
    extra = next((ln for ln in lines[1:] if ln.startswith("Exception encountered")), None)
    if extra:
        out += " … " + extra
    return out if len(out) <= 2000 else out[:2000] + " …"


def _not_curable_by_recover(reason: str) -> Optional[str]:
    """What to do instead of ``aift recover`` when loading failed for a reason outside the checkpoint."""
    low = reason.lower()
    if "permission denied" in low or "[errno 13]" in low or "operation not permitted" in low:
        return "give this user permission to read it"
    if "memoryerror" in low or "unable to allocate" in low or "out of memory" in low:
        return "free some memory and retry"
    if "could not locate class" in low or "modulenotfounderror" in low or "no module named" in low:
        return ("it needs a layer or module this installation of aift_tf does not have (written by another "
                "version? install that version)")
    return None


class Checkpoints:
    """The checkpoints of the project folder ``path``.

    Args:
        path: the project folder.
        config: its config.json, checked (:func:`aift_tf.annotation.records.check_project_config`).
        store: ``() -> CandidateStore``: the project's store (opened and checked on first use).
        ledger: ``() -> [entries]``: the ledger, read and validated.
        progress, echo, fit_callbacks: as for :class:`aift_tf.annotation.project.Project`.
    """

    def __init__(self, path: Path, config: dict, store: Callable, ledger: Callable,
                 progress: Optional[Callable] = None, echo: Callable = print,
                 fit_callbacks: Optional[Callable] = None):
        self.path = Path(path)
        self.config = config
        self.class_names = list(config["class_names"])
        self._store = store
        self._ledger = ledger
        self.progress = progress
        self.echo = echo
        self.fit_callbacks = fit_callbacks
        self.loaded = None  # the learner of the newest checkpoint, once loaded

    def list(self) -> list:
        """Complete checkpoint folders as [(round, path)] in round order."""
        d = layout.checkpoints_folder(self.path)
        out = []
        if d.is_dir():
            for p in d.iterdir():
                r = round_number(p.name)
                if r is not None and checkpoint.is_complete(p):
                    out.append((r, p))
        if not out:
            raise AiftError(f"{d}: no learner checkpoint; run `aift recover {quoted(self.path)}` to rebuild M0 from "
                            f"{CONFIG} and re-train the ledger's labels (none is lost)")
        return sorted(out)

    def damaged(self, p: Path, reason: str) -> AiftError:
        """The one-line error for a checkpoint folder that cannot be read, naming the recovery command.

        The cause is kept whole (its first line, plus the line Keras starts with "Exception encountered"). A
        cause that ``aift recover`` cannot cure (no permission to read, not enough memory, a layer this version
        cannot build) is a plain AiftError that says so instead of recommending it.
        """
        reason = cause_line(reason)
        cure = _not_curable_by_recover(reason)
        if cure:
            return AiftError(f"{p}: cannot load the checkpoint ({reason}); {cure} (the checkpoint itself may be "
                             f"sound, so `aift recover` would not help)")
        earlier = [r for r, q in self.list() if q != p]
        back = (f"go back to checkpoint {round_name(earlier[-1])}" if earlier
                else f"rebuild M0 from {CONFIG} (same settings and seed)")
        return DamagedCheckpoint(f"{p}: damaged checkpoint ({reason}); run `aift recover {quoted(self.path)}` to set "
                                 f"it aside and {back}: the ledger's labels are re-trained from there, none is lost")

    def read_state(self, p: Path) -> dict:
        """state.json of checkpoint folder ``p``, with the fields the project relies on checked."""
        f = checkpoint.state_file(p)
        try:
            return check_state(read_json_file(f), f, int(self.config["n"]), len(self.class_names))
        except AiftError as e:
            raise self.damaged(p, str(e)) from None

    def state(self) -> dict:
        """state.json of the latest checkpoint (no TensorFlow)."""
        _, p = self.list()[-1]
        return self.read_state(p)

    def trained(self) -> dict:
        """{id: label} the latest checkpoint was trained with (state.json; no TensorFlow)."""
        st = self.state()
        return dict(zip(map(int, st["labeled_ids"]), map(int, st["labeled_labels"])))

    def learner(self):
        """The learner of the latest checkpoint (loaded once); a damaged one → AiftError naming ``aift recover``."""
        if self.loaded is None:
            from aift_tf.learner import ActiveLearner

            import zipfile

            _, p = self.list()[-1]
            self.read_state(p)
            store = self._store()
            model_file = checkpoint.model_file(p)
            if not zipfile.is_zipfile(model_file):  # Keras would say "File not found" for a truncated file
                raise self.damaged(p, f"{checkpoint.MODEL_FILE} is truncated or not a .keras (zip) "
                                      f"file, {model_file.stat().st_size} bytes")
            try:
                learner = ActiveLearner.load(p, store, progress=self.progress)
            except AiftError as e:
                raise self.damaged(p, str(e)) from None
            except Exception as e:  # noqa: BLE001 - m0.weights.h5 / state fields: anything unreadable
                raise self.damaged(p, f"{type(e).__name__}: {e}") from None
            K = int(learner.model.output_shape[-1])
            if K != len(self.class_names):
                names = ", ".join(map(printable, self.class_names))
                raise self.damaged(p, f"its model has {K} output classes, the project "
                                      f"{len(self.class_names)} ({names})")
            self.loaded = learner
        return self.loaded

    def save(self, learner) -> Path:
        """Save ``learner`` as checkpoints/round-T (T = its round), then prune all but M0 and the newest two."""
        target = layout.checkpoint_folder(self.path, learner.round)
        if target.exists():  # a stale checkpoint of the same round (cannot normally happen)
            remove_folder(target)
        learner.save(target)
        cps = self.list()
        for r, p in cps[:-KEEP_CHECKPOINTS]:
            if r == 0:
                continue
            with contextlib.suppress(OSError):  # best effort: an old checkpoint left now goes at a later teach
                remove_folder(p)
        return target

    def rebuild_m0(self) -> None:
        """checkpoints/round-000 rebuilt from config.json (same model, weights, settings and seed)."""
        from aift_tf.finetune import FineTuneConfig
        from aift_tf.learner import ActiveLearner

        c = self.config
        self.echo(f"no sound checkpoint left: rebuilding M0 from {self.path / CONFIG}")
        try:
            ft = FineTuneConfig.from_dict(c["finetune"])
            learner = ActiveLearner(self._store(), model_name=c["model"], weights=c["weights"],
                                    trainable=c["trainable"], strategy=c["strategy"], learning=c["learning"],
                                    omega=float(c["omega"]), finetune=ft, seed=int(c["seed"]),
                                    pool_split=c.get("pool_split", "train"), val_split=c.get("val_split", "val"),
                                    progress=self.progress)
        except (KeyError, TypeError, ValueError) as e:
            raise AiftError(f"{self.path / CONFIG}: cannot rebuild M0 ({type(e).__name__}: {e})") from None
        layout.checkpoints_folder(self.path).mkdir(exist_ok=True)
        learner.save(layout.checkpoint_folder(self.path, 0))
        self.loaded = None

    # -- crash replay
    def pending_rounds(self, ledger=None) -> list:
        """Ledger teach rounds newer than the latest checkpoint (an interrupted teach), in order."""
        ledger = self._ledger() if ledger is None else ledger
        done = int(self.state()["round"])
        rounds = sorted({int(e["round"]) for e in ledger if e["round"] is not None})
        fix = (f"; run `aift recover {quoted(self.path)}` to set the checkpoint aside and re-train the ledger's "
               f"labels (none is lost)")
        if done and done not in rounds:
            raise LedgerMismatch(f"{self.path / LEDGER}: has no entry of teach round {done}, which checkpoint "
                                 f"{round_name(done)} was trained on{fix}")
        # consistency: the checkpoint was trained on exactly what the ledger says round `done` trained
        trained, expected = self.trained(), trained_by_round(ledger, done)
        if trained != expected:
            diff = sorted(set(trained.items()) ^ set(expected.items()))[:1]
            raise LedgerMismatch(f"{self.path}: the ledger and checkpoint round {done} disagree (first difference: "
                                 f"id {diff[0][0]}){fix}")
        pending = [r for r in rounds if r > done]
        if pending != list(range(done + 1, done + 1 + len(pending))):
            raise AiftError(f"{self.path / LEDGER}: teach rounds {pending} follow checkpoint round {done} "
                            f"with a gap; the project is damaged")
        return pending

    def replay(self) -> list:
        """Re-apply ledger rounds that the latest checkpoint lacks (an interrupted teach). Returns records."""
        ledger = self._ledger()
        records = []
        for r in self.pending_rounds(ledger):
            target = trained_by_round(ledger, r)
            src = next((e.get("source") for e in ledger if e["round"] == r), None)
            self.echo(f"recovering: round {r} ({len(target)} labels, last from {src}) is in the "
                      f"ledger but not in the model; fine-tuning it now")
            records.append(self.apply(target, r))
        return records

    def apply(self, target: dict, r: int) -> dict:
        """Fine-tune the current learner from its labeled set to ``target`` ({id: label}) as teach round ``r``,
        and save checkpoint round ``r``. Ids whose label changed or that left ``target`` (a disagreement)
        are dropped from the labeled set; new and changed ones are taught."""
        learner = self.learner()
        if learner.round != r - 1:
            raise AiftError(f"{self.path}: cannot apply teach round {r} on checkpoint round {learner.round}")
        current = dict(zip(learner.labeled_ids.tolist(), learner.labeled_labels.tolist()))
        drop = np.array([i for i, lab in current.items() if target.get(i) != lab], dtype=np.int64)
        if drop.size:
            # forget the old labels of relabeled / disputed ids so that they are taught again with their
            # new labels (or stay out while disputed)
            learner.forget(drop)
        have = set(learner.labeled_ids.tolist())
        add = sorted(i for i in target if i not in have)
        ids = np.array(add, dtype=np.int64)
        labels = np.array([target[i] for i in add], dtype=np.int64)
        callbacks = list(self.fit_callbacks(r)) if self.fit_callbacks is not None else []
        record = learner.teach(ids, labels, callbacks=callbacks)
        self.save(learner)
        return record

    # -- aift recover
    def repair(self) -> dict:
        """``aift recover``: set damaged newest checkpoints aside, go back to the newest sound one, re-train.

        The newest checkpoint is loaded; while it cannot be, it is renamed to ``checkpoints/round-TTT.damaged``
        (kept for inspection, never deleted) and the previous one is tried. If M0 itself is damaged and no
        other checkpoint is left, M0 is rebuilt from config.json (same model, weights, settings and seed).
        Then the ledger's rounds newer than the sound checkpoint are fine-tuned again, in order (as after a
        crash), so every label in the ledger ends up in the model. The ledger is never touched.

        Returns:
            {"set_aside": [paths], "rebuilt_m0": bool, "records": [teach records], "round": int}
        """
        d = layout.checkpoints_folder(self.path)
        set_aside, rebuilt = [], False
        while True:
            try:
                cps = self.list()
            except AiftError:
                cps = []
            if not cps:
                if rebuilt:
                    raise AiftError(f"{d}: the rebuilt M0 cannot be loaded either; re-create the project with "
                                    f"`aift init` and teach {self.path / LEDGER}'s labels again")
                self.rebuild_m0()
                rebuilt = True
                continue
            r, p = cps[-1]
            try:
                self.learner()
                self.pending_rounds()  # trained on what the ledger says (else set aside too)
                break
            except (DamagedCheckpoint, LedgerMismatch):
                pass
            target = layout.damaged_folder(p)
            os.rename(p, target)
            fsync_dir(d)
            self.echo(f"set aside the damaged checkpoint {p.name} as {target}")
            set_aside.append(target)
            self.loaded = None
        records = self.replay()
        return {"set_aside": set_aside, "rebuilt_m0": rebuilt, "records": records, "round": int(self.learner().round)}
