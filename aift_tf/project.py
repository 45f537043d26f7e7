"""An annotation project: the folder behind the ``aift`` command
(init / query / teach / adjudicate / status / export / recover).

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
import csv
import datetime
import json
import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from aift_tf.files import (atomic_dir, clean_temporaries, fsync_dir, remove_folder, write_bytes_atomic,
                           write_json_atomic, write_text_atomic)
from aift_tf.annotation.checks import (MAX_BATCH_SIZE, MAX_EPOCHS, MAX_LEARNING_RATE, MAX_SEED, check_name,
                                       printable, quoted)
from aift_tf.annotation.labels_csv import problems_error, read_label_csv
from aift_tf.annotation.ledger import (ADJUDICATED, LEDGER_VERSION, UNNAMED, annotator_agreement, consensus,
                                       missing_classes, read_ledger, trained_by_round)
from aift_tf.annotation.records import check_project_config, check_query_info, check_state, read_json_file
from aift_tf import checkpoint
from aift_tf.checks import check_choice, check_number
from aift_tf.zoo.pretrained import M0_CHOICES
from aift_tf.errors import AiftError
from aift_tf.zoo.pretrained import parse_weights  # noqa: F401 (re-exported: the one weights vocabulary)
# the one round-folder name (also the run folder's) and its parser
from aift_tf.files import round_name, round_number  # noqa: F401 (round_name re-exported)

from aift_tf.annotation import layout
# the project's file and folder names (re-exported; their one owner is aift_tf.annotation.layout)
from aift_tf.annotation.layout import (ADJUDICATION, CHECKPOINTS, CONFIG, GALLERY, LEDGER, LOCK,  # noqa: F401
                                       QUERIES, QUERY_INFO)

PROJECT_FORMAT = 1
QUERY_COLUMNS = ("id", "group", "score", "probability", "label")
KEEP_CHECKPOINTS = 2  # besides M0
CRASH_HOOK = "AIFT_TEST_CRASH_AFTER_LEDGER"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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


# ------------------------------------------------------------------------------------------------
# locking
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path, write: bool = True):
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


def _check_parent_folder(path: Path, what: str) -> None:
    """One line if ``path``'s parent is missing or not a folder (a path under a regular file)."""
    parent = path.parent
    if not parent.exists():
        raise AiftError(f"{path}: parent folder {parent} does not exist (create it first, or choose another "
                        f"place for {what})")
    if not parent.is_dir():
        raise AiftError(f"{path}: {parent} is not a folder (choose another place for {what})")


# ------------------------------------------------------------------------------------------------
# init
# ------------------------------------------------------------------------------------------------


def init_project(path, data, *, model="small_cnn", weights="m0", trainable="all", strategy="aift",
                 learning="ACFT-LQ", omega=1.0, epochs=5, learning_rate=1e-3, batch_size=64, seed=0,
                 progress: Optional[Callable] = None, m0_fallback: bool = True,
                 warn: Optional[Callable] = None, m0: str = "offline", cache_dir=None) -> Path:
    """Create PROJECT with config.json, checkpoints/round-000 (M0) and an empty ledger.

    ``weights="m0"``: the offline pre-trained M0 shipped with aift_tf that fits the store's patch shape
    (``aift_tf.zoo.pretrained.resolve_m0``); if none fits, ``m0_fallback`` starts from random
    initialisation and calls ``warn`` (default ``warnings.warn``) with a loud one-line warning, else raises.
    config.json records the resolved ``weights`` and an ``m0`` record (source, path, sha256, card summary).

    ``m0="self-supervised"``: M0 is instead pre-trained without labels on the store's own pool (SimCLR over each
    candidate's patches, :func:`aift_tf.ssl.self_supervised_m0`; once per store and model, cached in
    ``cache_dir/m0``, default ``$AIFT_CACHE``); ``weights`` must then be left at ``"m0"``.
    """
    from aift_tf.finetune import FineTuneConfig, check_learning
    from aift_tf.selection import parse_strategy
    from aift_tf.store import open_store
    from aift_tf.zoo import MODEL_NAMES, POLICIES

    from aift_tf.checks import check_int as check_integer

    path = Path(path)
    if path.exists() or path.is_symlink():
        raise AiftError(f"{path}: already exists (choose a new project folder)")
    _check_parent_folder(path, "the project folder")
    inside = _project_above(path.parent.resolve())
    if inside is not None:  # a project in a project: its folder would read as the outer one's round or checkpoint
        raise AiftError(f"{path}: lies inside the project {printable(inside)}; choose a folder outside it")
    epochs = check_integer(epochs, "epochs", 1, MAX_EPOCHS, coerce=True)
    batch_size = check_integer(batch_size, "batch_size", 1, MAX_BATCH_SIZE, coerce=True)
    seed = check_integer(seed, "seed", 0, MAX_SEED, coerce=True)
    learning_rate = check_number(learning_rate, "learning_rate", 0, MAX_LEARNING_RATE, low_open=True, coerce=True)
    check_choice(model, "model", MODEL_NAMES)
    check_choice(trainable, "trainable", POLICIES)
    parse_strategy(strategy)
    learning = check_learning(learning)
    omega = check_number(omega, "omega", low=1, coerce=True)
    m0 = check_choice("offline" if m0 is None else m0, "m0", M0_CHOICES)
    if m0 == "self-supervised" and weights != "m0":
        raise AiftError(f"weights must be 'm0' with m0='self-supervised' (the pre-trained weights are the "
                        f"self-supervised M0); got {weights!r}")
    weights = parse_weights(weights)
    ft = FineTuneConfig(epochs=int(epochs), batch_size=int(batch_size), learning_rate=float(learning_rate),
                        seed=int(seed))
    data = Path(data).expanduser()
    with open_store(data) as store:
        pool = store.ids("train")
        if pool.size == 0:
            raise AiftError(f"{data}: the 'train' split (the pool to annotate) is empty")
        m0_choice = m0
        if m0_choice == "self-supervised":
            from aift_tf.ssl import self_supervised_m0

            weights, m0 = self_supervised_m0(store, model, cache_dir=cache_dir, seed=int(seed),
                                             progress=progress is not None)
        else:
            from aift_tf.zoo.pretrained import resolve_m0

            weights, m0 = resolve_m0(weights, model, store.patch_shape, fallback=m0_fallback)
        if m0.get("warning"):
            import warnings

            (warn or warnings.warn)(m0["warning"])
        config = {
            "format": PROJECT_FORMAT,
            "created": _now(),
            "store": str(data.resolve()),
            "store_sha256": store.sha256,
            "app": store.app,
            "class_names": list(store.class_names),
            "n": int(store.n),
            "m": int(store.m),
            "patch_shape": list(store.patch_shape),
            "pool_split": "train",
            "val_split": "val",
            "model": model,
            "weights": weights,
            "m0": m0,
            "trainable": trainable,
            "strategy": strategy,
            "learning": learning,
            "omega": float(omega),
            "seed": int(seed),
            "finetune": ft.to_dict(),
        }
        from aift_tf.learner import ActiveLearner

        learner = ActiveLearner(store, model_name=model, weights=weights, trainable=trainable, strategy=strategy,
                                learning=learning, omega=float(omega), finetune=ft, seed=int(seed),
                                pool_split="train", val_split="val", progress=progress)
        # replace=False: the final rename refuses to replace a folder that appeared meanwhile (a concurrent
        # `aift init` of the same path): the first one to finish keeps the project, the other exits 2.
        with atomic_dir(path, replace=False) as tmp:
            write_json_atomic(tmp / CONFIG, config)
            write_text_atomic(tmp / LEDGER, "")
            write_text_atomic(tmp / LOCK, "")
            (tmp / CHECKPOINTS).mkdir()
            learner.save(layout.checkpoint_folder(tmp, 0))
    return path


# ------------------------------------------------------------------------------------------------
# the project
# ------------------------------------------------------------------------------------------------


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
        self._learner = None
        self._stack = contextlib.ExitStack()

    # -- context: lock + store
    def __enter__(self):
        self._stack.enter_context(_locked(self.path, write=not self.read_only))
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
                                f"has {printable(json.dumps(want))} (config.json was edited? put the value back)")

    def _cleanup_temporaries(self) -> None:
        """Remove temporaries left by an interrupted atomic write (never a complete file/folder)."""
        for folder in (self.path, self.path / CHECKPOINTS):
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
        """Append ``entries`` atomically (old bytes + new lines into a temporary, fsync, rename).

        With ``keep_old``, the old ledger is first hard-linked to a hidden sibling (no space needed) and that
        path returned, so that :meth:`_restore_ledger` can put it back if the command fails later.
        """
        f = self.path / LEDGER
        try:
            old = f.read_bytes()
        except OSError as e:
            raise AiftError(f"{f}: unreadable ({e.strerror or e})") from None
        if old and not old.endswith(b"\n"):
            old += b"\n"
        new = "".join(json.dumps(e, sort_keys=False) + "\n" for e in entries).encode("utf-8")
        backup = None
        if keep_old:
            backup = layout.ledger_backup(self.path, os.getpid())
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

    def _restore_ledger(self, backup) -> None:
        """Put the ledger of before :meth:`_append_ledger` back (a rename: works on a full disk)."""
        if backup is None:
            return
        os.replace(backup, self.path / LEDGER)
        fsync_dir(self.path)

    def _drop_backup(self, backup) -> None:
        if backup is not None:
            with contextlib.suppress(OSError):
                backup.unlink()

    # -- checkpoints
    def checkpoints(self) -> list:
        """Complete checkpoint folders as [(round, path)] in round order."""
        d = self.path / CHECKPOINTS
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

    def damaged_checkpoint(self, p: Path, reason: str) -> AiftError:
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
        earlier = [r for r, q in self.checkpoints() if q != p]
        back = (f"go back to checkpoint {round_name(earlier[-1])}" if earlier
                else f"rebuild M0 from {CONFIG} (same settings and seed)")
        return DamagedCheckpoint(f"{p}: damaged checkpoint ({reason}); run `aift recover {quoted(self.path)}` to set "
                                 f"it aside and {back}: the ledger's labels are re-trained from there, none is lost")

    def _read_state(self, p: Path) -> dict:
        """state.json of checkpoint folder ``p``, with the fields the project relies on checked."""
        f = checkpoint.state_file(p)
        try:
            return check_state(read_json_file(f), f, int(self.config["n"]), len(self.class_names))
        except AiftError as e:
            raise self.damaged_checkpoint(p, str(e)) from None

    def state(self) -> dict:
        """state.json of the latest checkpoint (no TensorFlow)."""
        _, p = self.checkpoints()[-1]
        return self._read_state(p)

    def learner(self):
        """The learner of the latest checkpoint (loaded once); a damaged one → AiftError naming ``aift recover``."""
        if self._learner is None:
            from aift_tf.learner import ActiveLearner

            import zipfile

            _, p = self.checkpoints()[-1]
            self._read_state(p)
            store = self.store
            model_file = checkpoint.model_file(p)
            if not zipfile.is_zipfile(model_file):  # Keras would say "File not found" for a truncated file
                raise self.damaged_checkpoint(p, f"{checkpoint.MODEL_FILE} is truncated or not a .keras (zip) "
                                                 f"file, {model_file.stat().st_size} bytes")
            try:
                learner = ActiveLearner.load(p, store, progress=self.progress)
            except AiftError as e:
                raise self.damaged_checkpoint(p, str(e)) from None
            except Exception as e:  # noqa: BLE001 - m0.weights.h5 / state fields: anything unreadable
                raise self.damaged_checkpoint(p, f"{type(e).__name__}: {e}") from None
            K = int(learner.model.output_shape[-1])
            if K != len(self.class_names):
                names = ", ".join(map(printable, self.class_names))
                raise self.damaged_checkpoint(p, f"its model has {K} output classes, the project "
                                                 f"{len(self.class_names)} ({names})")
            self._learner = learner
        return self._learner

    def repair(self) -> dict:
        """``aift recover``: set damaged newest checkpoints aside, go back to the newest sound one, re-train.

        The newest checkpoint is loaded; while it cannot be, it is renamed to ``checkpoints/round-TTT.damaged``
        (kept for inspection, never deleted) and the previous one is tried. If M0 itself is damaged and no
        other checkpoint is left, M0 is rebuilt from config.json (same model, weights, settings and seed).
        Then the ledger's rounds newer than the sound checkpoint are fine-tuned again, in order (as after a
        crash), so every label in the ledger ends up in the model. The ledger is never touched.

        Returns:
            {"set_aside": [paths], "rebuilt_m0": bool, "records": [teach records], "round": int}

        Example:
        >>> with Project("pe-project") as p:
        ...     p.repair()["set_aside"]
        """
        d = self.path / CHECKPOINTS
        set_aside, rebuilt = [], False
        while True:
            try:
                cps = self.checkpoints()
            except AiftError:
                cps = []
            if not cps:
                if rebuilt:
                    raise AiftError(f"{d}: the rebuilt M0 cannot be loaded either; re-create the project with "
                                    f"`aift init` and teach {self.path / LEDGER}'s labels again")
                self._rebuild_m0()
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
            self._learner = None
        records = self.recover()
        return {"set_aside": set_aside, "rebuilt_m0": rebuilt, "records": records, "round": int(self.learner().round)}

    def _rebuild_m0(self) -> None:
        from aift_tf.finetune import FineTuneConfig
        from aift_tf.learner import ActiveLearner

        c = self.config
        self.echo(f"no sound checkpoint left: rebuilding M0 from {self.path / CONFIG}")
        try:
            ft = FineTuneConfig.from_dict(c["finetune"])
            learner = ActiveLearner(self.store, model_name=c["model"], weights=c["weights"], trainable=c["trainable"],
                                    strategy=c["strategy"], learning=c["learning"], omega=float(c["omega"]),
                                    finetune=ft, seed=int(c["seed"]), pool_split=c.get("pool_split", "train"),
                                    val_split=c.get("val_split", "val"), progress=self.progress)
        except (KeyError, TypeError, ValueError) as e:
            raise AiftError(f"{self.path / CONFIG}: cannot rebuild M0 ({type(e).__name__}: {e})") from None
        layout.checkpoints_folder(self.path).mkdir(exist_ok=True)
        learner.save(layout.checkpoint_folder(self.path, 0))
        self._learner = None

    def _save_checkpoint(self, learner) -> Path:
        target = layout.checkpoint_folder(self.path, learner.round)
        if target.exists():  # a stale checkpoint of the same round (cannot normally happen)
            remove_folder(target)
        learner.save(target)
        cps = self.checkpoints()
        for r, p in cps[:-KEEP_CHECKPOINTS]:
            if r == 0:
                continue
            with contextlib.suppress(OSError):  # best effort: an old checkpoint left now goes at a later teach
                remove_folder(p)
        return target

    # -- pool
    def pool_ids(self) -> np.ndarray:
        return self.store.ids(self.config.get("pool_split", "train"))

    def unlabeled_ids(self, cons=None) -> np.ndarray:
        """Pool ids nobody has labeled yet (held-out and not-yet-trained labels count as labeled)."""
        taken = (self.consensus() if cons is None else cons).ids
        pool = self.pool_ids()
        return pool[~np.isin(pool, np.fromiter(taken, dtype=np.int64, count=len(taken)))]

    # -- recovery
    def trained(self) -> dict:
        """{id: label} the latest checkpoint was trained with (state.json; no TensorFlow)."""
        st = self.state()
        return dict(zip(map(int, st["labeled_ids"]), map(int, st["labeled_labels"])))

    def pending_rounds(self, ledger=None) -> list:
        """Ledger teach rounds newer than the latest checkpoint (an interrupted teach), in order."""
        ledger = self.ledger() if ledger is None else ledger
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

    def recover(self) -> list:
        """Re-apply ledger rounds that the latest checkpoint lacks (an interrupted teach). Returns records."""
        ledger = self.ledger()
        records = []
        for r in self.pending_rounds(ledger):
            target = trained_by_round(ledger, r)
            src = next((e.get("source") for e in ledger if e["round"] == r), None)
            self.echo(f"recovering: round {r} ({len(target)} labels, last from {src}) is in the "
                      f"ledger but not in the model; fine-tuning it now")
            records.append(self._apply(target, r))
        return records

    def _apply(self, target: dict, r: int) -> dict:
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
        self._save_checkpoint(learner)
        return record

    # -- query
    def round_names(self, kind: str = "round") -> list:
        """Every ``round-NNN`` (or ``adjudication-NNN``) entry of the project folder [(k, path)] in order, complete
        or not (any file type)."""
        out = []
        for p in self.path.iterdir():
            k = layout.round_folder_number(p.name, kind)
            if k is not None:
                out.append((k, p))
        return sorted(out)

    def rounds(self, kind: str = "round") -> list:
        """Complete query rounds (folders with a query.json) [(k, path)] in order."""
        return [(k, p) for k, p in self.round_names(kind) if p.is_dir() and (p / QUERY_INFO).is_file()]

    def incomplete_rounds(self) -> list:
        """``round-NNN`` names that are not complete query rounds (no query.json; maybe the user's own)."""
        done = {k for k, _ in self.rounds()}
        return [(k, p) for k, p in self.round_names() if k not in done]

    def next_round(self, kind: str = "round") -> int:
        """The number of the next query round: one more than every ``round-NNN`` name present."""
        names = self.round_names(kind)
        return names[-1][0] + 1 if names else 1

    def round_info(self, p: Path) -> dict:
        """query.json of round folder ``p``, every field the project relies on checked."""
        f = p / QUERY_INFO
        return check_query_info(read_json_file(f), f, int(self.config["n"]))

    def check_round_records(self) -> None:
        """Read every round's and adjudication list's query.json (one line naming the first bad one): commands
        that write refuse a project whose round records were tampered with (float, string, out-of-range ids)."""
        for kind in ("round", ADJUDICATION):
            for _, p in self.rounds(kind):
                self.round_info(p)

    def round_answered(self, k: int, p: Path, ledger, cons) -> bool:
        info = self.round_info(p)
        if any(e.get("query_round") == k for e in ledger):
            return True
        return any(int(i) in cons.ids for i in info["ids"])

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
        from aift_tf.selection import parse_strategy

        from aift_tf.checks import check_int as check_integer

        n = check_integer(n, "query_size", 1, coerce=True)
        if strategy is not None:
            parse_strategy(strategy)
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
                        if (p / QUERIES).exists() else f"label its candidates (gallery-NAME.html in {p})")
                raise AiftError(f"{p.name} has not been answered yet: {what} and run `aift teach {quoted(self.path)} "
                                f"CSV`, or pass --force to query a new round anyway")
        left = self.unlabeled_ids(cons)
        if n > left.size:
            raise AiftError(f"-n {n} is larger than the {left.size} unlabeled candidates left in the pool")
        self.recover()
        learner = self.learner()
        k = self.next_round()  # never the number of an existing round-NNN (complete or not)
        strategy = strategy or learner.strategy
        omega = float(omega) if omega is not None else learner.omega
        # The pool is `left`: labels recorded but not trained (held out, a class missing) are not
        # re-queried. Query randomness depends on (seed, query round) only: re-running a query is
        # repeatable and no checkpoint has to be rewritten for the RNG.
        q = learner.query(n, strategy=strategy, omega=omega, pool=left, rng_seed=[int(learner.seed), k])
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
        info = {"round": k, "created": _now(), "model_round": int(learner.round), "strategy": strategy,
                "omega": omega, "n": n, "pool_left": int(left.size), "ids": [int(i) for i in ids],
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
        from aift_tf.gallery import write_page, write_patches

        stem = target.name
        with atomic_dir(target, replace=False) as tmp:  # never replaces a folder (an annotator's work)
            write_patches(tmp, self.store, [r["id"] for r in rows])
            sheets = ([(None, rows)] if not shares else
                      [(name, [r for r in rows if r["id"] in set(mine)]) for name, mine in shares.items()])
            for name, sub in sheets:
                write_text_atomic(tmp / layout.queries_name(name), _queries_csv(sub, votes=(kind != "query")))
                write_page(tmp / layout.gallery_name(name), sub, info, self.store, project=self.path,
                           annotator=name, kind=kind, download=layout.download_name(stem, name))
            write_json_atomic(tmp / QUERY_INFO, info)

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
        info = {"kind": "adjudication", "round": k, "created": _now(), "n": len(ids), "ids": ids, "votes": votes,
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
        ctx = {"kind": None, "k": None, "folder": None, "annotator": annotator, "ids": None, "dealt": {},
               "name": None}
        try:
            rp = csv_path.resolve()
        except OSError:
            return ctx
        inside = rp.parent.parent == self.path.resolve()
        (is_sheet, sheet_name), md = layout.parse_queries_name(rp.name), layout.parse_download_name(rp.name)
        kr, ka = layout.round_folder_number(rp.parent.name), layout.round_folder_number(rp.parent.name, ADJUDICATION)
        if inside and is_sheet and (kr is not None or ka is not None):
            kind, k = ("query", kr) if kr is not None else ("adjudication", ka)
            name, folder = sheet_name, rp.parent
        elif md:
            kind, k, name = md
            folder = layout.round_folder(self.path, k, kind)
        else:
            return ctx
        ctx.update(kind=kind, k=k, folder=folder, annotator=annotator or name, name=name)
        if not (folder / QUERY_INFO).is_file():
            if kind == "adjudication":
                raise AiftError(f"{csv_path}: answers {folder.name}, but {folder / QUERY_INFO} is missing (run "
                                f"`aift adjudicate {quoted(self.path)}` again)")
            warn(f"warning: {folder / QUERY_INFO} is missing: the ids of {csv_path} were checked against "
                 f"the pool instead of the round's queried ids")
            if not inside:
                ctx.update(kind=None, k=None, folder=None)
            return ctx
        info = self.round_info(folder)
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
        """Parse and check a label CSV against the project (no writes). Returns the plan."""
        self.check_round_records()
        cons = self.consensus()
        ctx = self.csv_context(csv_path, annotator, warn)
        pool = set(self.pool_ids().tolist())  # also checks config.json against the store
        parsed = read_label_csv(csv_path, int(self.config["n"]), self.class_names)
        problems = list(parsed.problems)
        new, same, annotators = [], [], set()
        adjudicating = ctx["kind"] == "adjudication"
        where_round = (round_name(ctx["k"]) if ctx["kind"] == "query" else
                       round_name(ctx["k"], ADJUDICATION) if adjudicating else None)
        for row in parsed.rows:
            def bad(msg, line=row.line):
                problems.append((line, msg))

            if ctx["ids"] is not None and row.id not in ctx["ids"]:
                bad(f"id {row.id} was not queried in {where_round}" if not adjudicating else
                    f"id {row.id} is not listed in {where_round}")
                continue
            if ctx["ids"] is None and row.id not in pool:
                bad(f"id {row.id} is not in the {self.config.get('pool_split', 'train')!r} pool (it belongs to the "
                    f"store's evaluation splits)")
                continue
            who = ctx["annotator"]
            if row.annotator is not None:
                if annotator is not None and row.annotator != annotator:
                    bad(f"annotator {row.annotator!r} of id {row.id} differs from --annotator {annotator}")
                    continue
                who = row.annotator
            if ctx["dealt"]:  # a round dealt to several annotators: each label from one who was dealt the id
                names = ", ".join(ctx["dealt"])
                if who is None:
                    bad(f"{where_round} was dealt to {names}: say who labeled id {row.id} (--annotator NAME or an "
                        f"annotator column)")
                    continue
                if who not in ctx["dealt"]:
                    bad(f"annotator {who!r} was not dealt {where_round} (dealt to {names})")
                    continue
                if row.id not in ctx["dealt"][who]:
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
                    bad(f"id {row.id} is already labeled {self.class_names[prev]!r}{by}, not "
                        f"{self.class_names[row.label]!r}; pass --relabel to change it")
                    continue
                seed["relabel"] = True
            new.append(seed)
            annotators.add(who)
        if problems:
            raise problems_error(str(csv_path), problems, parsed.truncated)
        return {"new": new, "relabel": [s for s in new if s["relabel"]], "same": same, "empty": parsed.empty,
                "query_round": ctx["k"] if ctx["kind"] == "query" else None, "kind": ctx["kind"],
                "rows": len(parsed.rows) + len(parsed.empty), "annotators": annotators, "context": ctx}

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
        recovered = self.recover()
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
        t = _now()
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
            record = self._apply(target, r)  # fine-tune, then the checkpoint
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
        """Everything ``aift status`` shows. Read-only (works on a full or read-only disk); rounds in the ledger
        but not in the model yet are reported as ``pending`` (the next query/teach/export re-trains them)."""
        ledger = self.ledger()
        cons = consensus(ledger)
        damaged = None
        try:
            st = self.state()
            pending = self.pending_rounds(ledger)
            trained = self.trained()
            newest = self.checkpoints()[-1][1]
        except AiftError as e:  # the checkpoints: the rest of the report still answers, naming `aift recover`
            damaged = str(e)
            st, pending, trained, newest = {"round": None, "history": []}, [], {}, None
        K = len(self.class_names)
        counts = [0] * K
        for lab in cons.labels.values():
            counts[lab] += 1
        behind = sorted(set(i for i in cons.labels if trained.get(i) != cons.labels[i])
                        | set(i for i in trained if i not in cons.labels))
        rounds = []
        for k, p in self.rounds():
            info = self.round_info(p)
            rounds.append({"round": k, "n": info["n"], "answered": self.round_answered(k, p, ledger, cons),
                           "labeled": sum(int(i) in cons.ids for i in info["ids"]),
                           "annotators": sorted((info.get("annotators") or {}).keys()),
                           "shared": len(info.get("shared", []))})
        per_annotator = {}
        for name, labs in sorted(cons.annotated.items()):
            c = [0] * K
            for lab in labs.values():
                c[lab] += 1
            per_annotator[name] = {"labels": len(labs), "per_class": dict(zip(self.class_names, c))}
        incomplete = [p.name for _, p in self.incomplete_rounds()]
        return {"incomplete_rounds": incomplete, "labels": len(cons.labels), "damaged": damaged,
                "teach_rounds": None if st["round"] is None else int(st["round"]),
                "per_class": dict(zip(self.class_names, counts)), "pool": int(self.pool_ids().size),
                "pool_left": int(self.unlabeled_ids(cons).size), "query_rounds": rounds,
                "history": st.get("history", []), "checkpoint": newest,
                "pending_rounds": pending, "not_trained": behind if not (pending or damaged) else [],
                "missing": missing_classes(cons.labels, K) if cons.labels or cons.ids else [],
                "disagreements": {i: dict(v) for i, v in sorted(cons.disagreements.items())},
                "adjudicated": len(cons.adjudicated), "annotators": per_annotator,
                "agreement": annotator_agreement(cons, K)}

    # -- export
    def _check_export_target(self, out: Path, force: bool) -> None:
        """Refuse an ``--out`` that is not a new path or (with ``force``) an earlier export; see :meth:`export`."""
        from aift_tf.export import is_export

        where = f"--out {printable(out)}"
        if out.is_symlink():
            raise AiftError(f"{where}: is a symbolic link (give the folder itself); nothing was changed")
        _check_parent_folder(out, "the export")
        rp = out.resolve()
        store = Path(self.config["store"]).resolve()
        if rp == store:
            raise AiftError(f"{where}: is the project's store; choose a new folder for the export")
        inside = _project_above(rp)
        if inside is not None:
            raise AiftError(f"{where}: lies inside the project {printable(inside)} (its files would be replaced or "
                            f"mixed with the export); choose a folder outside it")
        if rp.is_dir() and (rp == self.path.resolve().parent or self.path.resolve().is_relative_to(rp)
                            or store.is_relative_to(rp)):
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
        self._check_export_target(out, force)
        self.check_round_records()
        self.recover()
        learner = self.learner()
        c = self.config
        prov = {"project": str(self.path.resolve()), "strategy": learner.strategy, "learning": learner.learning,
                "omega": learner.omega, "round": int(learner.round), "seed": int(learner.seed),
                "labeled": int(learner.labeled_ids.size), "data": c["store"], "data_sha256": c["store_sha256"],
                "class_names": self.class_names, "model": c["model"], "weights": c["weights"],
                "trainable": c["trainable"], "finetune": learner.config.to_dict()}
        return export_model(learner.model, out, patches_per_candidate=self.store.m, provenance=prov)


def _project_above(path: Path) -> Optional[Path]:
    """The project folder ``path`` is (or lies in), else None: a folder holding config.json and ledger.jsonl."""
    for a in (path, *path.parents):
        if layout.is_project(a):
            return a
    return None


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


def _queries_csv(rows, votes: bool = False) -> str:
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
