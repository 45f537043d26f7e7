"""An annotation project: the folder behind the ``aift`` command (init / query / teach / status / export).

Layout of a project folder ``PROJECT/``::

    config.json                 settings (model, weights, trainable, strategy, learning, omega, fine-tuning),
                                store path + sha256, classes; written once by ``init``
    ledger.jsonl                the label ledger: append-only, one JSON object per label (see below)
    checkpoints/round-000/      M0: the initial learner state (``ActiveLearner.save``)
    checkpoints/round-TTT/      the learner state after teach round TTT (the latest is the current model;
                                M0 and the two most recent are kept)
    round-NNN/                  one query round: queries.csv, gallery.html, patches/<id>.png, query.json

Ledger entries (``ledger.jsonl``)::

    {"id": 17, "label": 1, "class": "positive", "round": 2, "query_round": 2, "relabel": false,
     "time": "2025-01-01T12:00:00+00:00", "source": "round-002/queries.csv", "line": 4}

``round`` is the teach round the label was trained in (the learner goes M_{round-1} → M_round);
``query_round`` is the ``round-NNN`` folder it answers (null for a free-form CSV). The effective label of
an id is its last entry. The ledger is never edited: a teach rewrites it as old bytes + new lines into a
temporary sibling, fsyncs it and renames it over the old file (so it is always complete).

Crash safety of ``teach`` (the order is what matters)::

    1. validate the CSV and config.json against the store (nothing is written if anything is bad)
    2. load the latest checkpoint and check its model's classes (a damaged checkpoint is refused here,
       naming ``aift recover PROJECT``; the ledger is untouched)
    3. append the new entries to the ledger, marked with round T = checkpoint round + 1
    4. fine-tune (ActiveLearner.teach)
    5. save checkpoints/round-T atomically (temporary folder renamed into place)

Every command starts by comparing the ledger with the latest checkpoint: ledger rounds newer than the
checkpoint (a crash between 3 and 5) are re-applied from that checkpoint, one teach per round, in order.
So an imported label is never lost and the model always ends up trained on it. ``aift recover``
(:meth:`Project.repair`) sets a damaged latest checkpoint aside and re-applies the ledger from the
previous one the same way.

Nothing of the user's is ever replaced: a query round is numbered past every ``round-NNN`` name present
and its folder is renamed into place with a rename that refuses to overwrite; ``init`` likewise. Every
value read back (ledger, query.json, state.json, config.json against the store) is checked and refused
with its file (and ledger line) named.

Test hook: with ``AIFT_TEST_CRASH_AFTER_LEDGER=1`` in the environment, ``teach`` kills its own process
(``os._exit(137)``) right after step 2, to test the recovery. Never set it otherwise.

TensorFlow is imported only when a model is built, loaded or trained (not for validation or ``--help``).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from aift_tf._io import atomic_dir, fsync_dir, write_json_atomic, write_text_atomic
from aift_tf.errors import AiftError

PROJECT_FORMAT = 1
CONFIG = "config.json"
LEDGER = "ledger.jsonl"
CHECKPOINTS = "checkpoints"
QUERIES = "queries.csv"
GALLERY = "gallery.html"
QUERY_INFO = "query.json"
QUERY_COLUMNS = ("id", "group", "score", "probability", "label")
KEEP_CHECKPOINTS = 2  # besides M0
CRASH_HOOK = "AIFT_TEST_CRASH_AFTER_LEDGER"
_ROUND_RE = re.compile(r"^round-(\d{3,})$")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def round_name(k: int) -> str:
    return f"round-{int(k):03d}"


def printable(text) -> str:
    """``text`` with every non-printable character (terminal controls, bidi overrides) escaped.

    Strings read back from a project or a store (class names, app, paths) are shown through this, so
    that a class name cannot retitle, clear or rewrite the terminal.

    Example:
    >>> printable("PE\x1b]0;owned\x07")
    'PE\\x1b]0;owned\\x07'
    """
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


class DamagedCheckpoint(AiftError):
    """A checkpoint folder that cannot be read; the message names ``aift recover PROJECT``."""


def check_int(value, what: str, where: str, lo: int = 0, hi: Optional[int] = None) -> int:
    """``value`` (as parsed from a project's JSON) if it is an integer in ``lo..hi``; else a one-line AiftError.

    A float (``5.7``, ``5.0``, ``Infinity``, ``1e30``), a bool or a string is refused: the project's
    files are written by ``aift`` with plain integers, so anything else is damage or a hand edit.

    Example:
    >>> check_int(3, "id", "ledger.jsonl line 2", 0, 47)
    3
    """
    if isinstance(value, bool) or not isinstance(value, int):
        shown = json.dumps(value) if isinstance(value, (int, float, str, type(None))) else type(value).__name__
        raise AiftError(f"{where}: {what} {printable(shown)} is not an integer")
    if value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise AiftError(f"{where}: {what} {value} is out of range ({rng})")
    return value


def parse_weights(value):
    """``none`` → None, ``imagenet``/``m0`` → themselves, anything else → an existing file path (absolute)."""
    if value is None or str(value).lower() == "none":
        return None
    if str(value).lower() in ("imagenet", "m0"):
        return str(value).lower()
    p = Path(value).expanduser()
    if not p.is_file():
        raise AiftError(f"--weights {value}: no such file (expected m0, none, imagenet or a .keras/.weights.h5 path)")
    return str(p.resolve())


# ------------------------------------------------------------------------------------------------
# locking
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path):
    """Exclusive, non-blocking lock on the project folder itself (no lock file is left behind)."""
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise AiftError(f"{path}: another aift command is working on this project; try again when it ends") from None
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------
# init
# ------------------------------------------------------------------------------------------------


def init_project(path, data, *, model="small_cnn", weights="m0", trainable="all", strategy="aift",
                 learning="ACFT-LQ", omega=1.0, epochs=5, learning_rate=1e-3, batch_size=64, seed=0,
                 progress: Optional[Callable] = None, m0_fallback: bool = True,
                 warn: Optional[Callable] = None) -> Path:
    """Create PROJECT with config.json, checkpoints/round-000 (M0) and an empty ledger.

    ``weights="m0"``: the offline pre-trained M0 shipped with aift_tf that fits the store's patch shape
    (``aift_tf.zoo.pretrained.resolve_m0``); if none fits, ``m0_fallback`` starts from random
    initialisation and calls ``warn`` (default ``warnings.warn``) with a loud one-line warning, else raises.
    config.json records the resolved ``weights`` and an ``m0`` record (source, path, sha256, card summary).
    """
    from aift_tf.finetune import FineTuneConfig, check_learning
    from aift_tf.selection import parse_strategy
    from aift_tf.store import open_store
    from aift_tf.zoo import MODEL_NAMES, POLICIES

    path = Path(path)
    if path.exists() or path.is_symlink():
        raise AiftError(f"{path}: already exists (choose a new project folder)")
    if model not in MODEL_NAMES:
        raise AiftError(f"--model {model!r}: choose one of {', '.join(MODEL_NAMES)}")
    if trainable not in POLICIES:
        raise AiftError(f"--trainable {trainable!r}: choose one of {', '.join(POLICIES)}")
    parse_strategy(strategy)
    learning = check_learning(learning)
    if not np.isfinite(float(omega)) or float(omega) < 1:
        raise AiftError(f"--omega {omega}: must be >= 1")
    weights = parse_weights(weights)
    ft = FineTuneConfig(epochs=int(epochs), batch_size=int(batch_size), learning_rate=float(learning_rate),
                        seed=int(seed))
    data = Path(data).expanduser()
    with open_store(data) as store:
        pool = store.ids("train")
        if pool.size == 0:
            raise AiftError(f"{data}: the 'train' split (the pool to annotate) is empty")
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
            (tmp / CHECKPOINTS).mkdir()
            learner.save(tmp / CHECKPOINTS / round_name(0))
    return path


# ------------------------------------------------------------------------------------------------
# the project
# ------------------------------------------------------------------------------------------------


class Project:
    """An open project folder (read-only until a verb runs). Use as ``with Project(path) as p:``."""

    def __init__(self, path, progress: Optional[Callable] = None, echo: Callable = print,
                 fit_callbacks: Optional[Callable] = None):
        """progress: ``(stage, done, total)`` for scoring; fit_callbacks: ``round -> [keras callbacks]``."""
        self.path = Path(path)
        self.progress = progress
        self.fit_callbacks = fit_callbacks
        self.echo = echo
        cfg = self.path / CONFIG
        if not self.path.is_dir():
            raise AiftError(f"{self.path}: no such project folder (create one with `aift init`)")
        if not cfg.is_file():
            raise AiftError(f"{self.path}: not an aift project (no {CONFIG})")
        try:
            self.config = json.loads(cfg.read_text())
        except (OSError, ValueError) as e:
            raise AiftError(f"{cfg}: unreadable ({e})") from None
        if not isinstance(self.config, dict) or self.config.get("format") != PROJECT_FORMAT:
            got = self.config.get("format") if isinstance(self.config, dict) else self.config
            raise AiftError(f"{cfg}: unsupported project format {got!r}")
        names = self.config.get("class_names")
        if (not isinstance(names, list) or len(names) < 2 or not all(isinstance(c, str) and c for c in names)
                or len(set(names)) != len(names)):
            raise AiftError(f"{cfg}: \"class_names\" must be a list of >= 2 distinct names, got "
                            f"{printable(json.dumps(names))}")
        for key in ("n", "m"):
            check_int(self.config.get(key), f"\"{key}\"", str(cfg), 1)
        for key in ("store", "store_sha256"):
            if not isinstance(self.config.get(key), str):
                raise AiftError(f"{cfg}: \"{key}\" must be a string, got {printable(json.dumps(self.config.get(key)))}")
        self.class_names = list(names)
        self._store = None
        self._learner = None
        self._stack = contextlib.ExitStack()

    # -- context: lock + store
    def __enter__(self):
        self._stack.enter_context(_locked(self.path))
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
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                if p.name.startswith(".") and (p.name.endswith(".tmp") or p.name.endswith(".old")
                                               or p.name.endswith(".trash")):
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        with contextlib.suppress(OSError):
                            p.unlink()

    # -- ledger
    def ledger(self) -> list:
        """Ledger entries in order. Raises on a malformed line (the ledger is written atomically)."""
        f = self.path / LEDGER
        if not f.is_file():
            raise AiftError(f"{f}: the label ledger is missing")
        out = []
        n, K = int(self.config["n"]), len(self.class_names)
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise AiftError(f"{f}: unreadable ({e})") from None
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{f} line {i}"
            try:
                e = json.loads(line)
            except ValueError:
                raise AiftError(f"{where}: not a ledger entry: {line[:80]!r}") from None
            if not isinstance(e, dict) or not {"id", "label", "round"} <= set(e):
                raise AiftError(f"{where}: not a ledger entry (needs id, label, round): {line[:80]!r}")
            check_int(e["id"], "id", where, 0, n - 1)
            if isinstance(e["label"], int) and not isinstance(e["label"], bool) and not 0 <= e["label"] < K:
                classes = ", ".join(f"{k}={printable(c)}" for k, c in enumerate(self.class_names))
                raise AiftError(f"{where}: label {e['label']} of id {e['id']} is not a class ({classes})")
            check_int(e["label"], "label", where, 0, K - 1)
            check_int(e["round"], "round", where, 1)
            if e.get("query_round") is not None:
                check_int(e["query_round"], "query_round", where, 1)
            out.append(e)
        return out

    def labels(self, ledger=None) -> dict:
        """Effective labels {id: (label, round)} (last entry wins)."""
        out = {}
        for e in self.ledger() if ledger is None else ledger:
            out[int(e["id"])] = (int(e["label"]), int(e["round"]))
        return out

    def _append_ledger(self, entries: list) -> None:
        f = self.path / LEDGER
        old = f.read_bytes()
        if old and not old.endswith(b"\n"):
            old += b"\n"
        new = "".join(json.dumps(e, sort_keys=False) + "\n" for e in entries).encode("utf-8")
        from aift_tf._io import write_bytes_atomic

        write_bytes_atomic(f, old + new)

    # -- checkpoints
    def checkpoints(self) -> list:
        """Complete checkpoint folders as [(round, path)] in round order."""
        d = self.path / CHECKPOINTS
        out = []
        if d.is_dir():
            for p in d.iterdir():
                mt = _ROUND_RE.match(p.name)
                if mt and (p / "state.json").is_file() and (p / "model.keras").is_file():
                    out.append((int(mt.group(1)), p))
        if not out:
            raise AiftError(f"{d}: no learner checkpoint (the project is damaged; re-create it with `aift init`)")
        return sorted(out)

    def damaged_checkpoint(self, p: Path, reason: str) -> DamagedCheckpoint:
        """The one-line error for a checkpoint folder that cannot be read, naming the recovery command."""
        reason = " ".join(str(reason).split())  # Keras/h5py messages span lines
        if len(reason) > 200:
            reason = reason[:200] + "…"
        earlier = [r for r, q in self.checkpoints() if q != p]
        back = (f"go back to checkpoint {round_name(earlier[-1])}" if earlier
                else f"rebuild M0 from {CONFIG} (same settings and seed)")
        return DamagedCheckpoint(f"{p}: damaged checkpoint ({reason}); run `aift recover {self.path}` to set it "
                                 f"aside and {back}: the ledger's labels are re-trained from there, none is lost")

    def _read_state(self, p: Path) -> dict:
        """state.json of checkpoint folder ``p``, with the fields the project relies on checked."""
        f = p / "state.json"
        try:
            st = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise self.damaged_checkpoint(p, f"state.json unreadable: {e}") from None
        try:
            if not isinstance(st, dict):
                raise AiftError(f"{f}: not a learner state")
            check_int(st.get("round"), "round", str(f), 0)
            n, K = int(self.config["n"]), len(self.class_names)
            ids, labels = st.get("labeled_ids"), st.get("labeled_labels")
            if not isinstance(ids, list) or not isinstance(labels, list) or len(ids) != len(labels):
                raise AiftError(f"{f}: labeled_ids / labeled_labels are not two lists of the same length")
            for i, lab in zip(ids, labels):
                check_int(i, "labeled id", str(f), 0, n - 1)
                check_int(lab, f"label of id {i}", str(f), 0, K - 1)
        except AiftError as e:
            raise self.damaged_checkpoint(p, str(e)) from None
        return st

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
            model_file = p / "model.keras"
            if not zipfile.is_zipfile(model_file):  # Keras would say "File not found" for a truncated file
                raise self.damaged_checkpoint(p, f"model.keras is truncated or not a .keras (zip) file, "
                                                 f"{model_file.stat().st_size} bytes")
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
                break
            except DamagedCheckpoint:
                pass
            k, target = 0, d / f"{p.name}.damaged"
            while target.exists() or target.is_symlink():
                k += 1
                target = d / f"{p.name}.damaged-{k}"
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
        (self.path / CHECKPOINTS).mkdir(exist_ok=True)
        learner.save(self.path / CHECKPOINTS / round_name(0))
        self._learner = None

    def _save_checkpoint(self, learner) -> Path:
        d = self.path / CHECKPOINTS
        target = d / round_name(learner.round)
        if target.exists():  # a stale checkpoint of the same round (cannot normally happen)
            trash = d / f".{target.name}.trash"
            os.replace(target, trash)
            shutil.rmtree(trash, ignore_errors=True)
        learner.save(target)
        cps = self.checkpoints()
        for r, p in cps[:-KEEP_CHECKPOINTS]:
            if r == 0:
                continue
            trash = d / f".{p.name}.trash"
            os.replace(p, trash)
            shutil.rmtree(trash, ignore_errors=True)
        return target

    # -- pool
    def pool_ids(self) -> np.ndarray:
        return self.store.ids(self.config.get("pool_split", "train"))

    def unlabeled_ids(self, labels=None) -> np.ndarray:
        labels = self.labels() if labels is None else labels
        pool = self.pool_ids()
        return pool[~np.isin(pool, np.fromiter(labels.keys(), dtype=np.int64, count=len(labels)))]

    # -- recovery
    def pending_rounds(self, ledger=None) -> dict:
        """Ledger entries of teach rounds newer than the latest checkpoint: {round: [entries]}."""
        ledger = self.ledger() if ledger is None else ledger
        st = self.state()
        done = int(st["round"])
        pending = {}
        for e in ledger:
            if int(e["round"]) > done:
                pending.setdefault(int(e["round"]), []).append(e)
        # consistency: labels trained so far == ledger labels of rounds <= done
        trained = dict(zip(map(int, st["labeled_ids"]), map(int, st["labeled_labels"])))
        expected = {int(e["id"]): int(e["label"]) for e in ledger if int(e["round"]) <= done}
        if trained != expected:
            diff = sorted(set(trained.items()) ^ set(expected.items()))[:1]
            raise AiftError(f"{self.path}: the ledger and checkpoint round {done} disagree (first difference: "
                            f"id {diff[0][0]}); the project is damaged")
        want = list(range(done + 1, done + 1 + len(pending)))
        if sorted(pending) != want:
            raise AiftError(f"{self.path / LEDGER}: teach rounds {sorted(pending)} follow checkpoint round {done} "
                            f"with a gap; the project is damaged")
        return pending

    def recover(self) -> list:
        """Re-apply ledger rounds that the latest checkpoint lacks (an interrupted teach). Returns records."""
        pending = self.pending_rounds()
        records = []
        for r in sorted(pending):
            entries = pending[r]
            self.echo(f"recovering: round {r} ({len(entries)} labels from {entries[0].get('source')}) is in the "
                      f"ledger but not in the model; fine-tuning it now")
            records.append(self._apply(entries, r))
        return records

    def _apply(self, entries, r) -> dict:
        learner = self.learner()
        if learner.round != r - 1:
            raise AiftError(f"{self.path}: cannot apply teach round {r} on checkpoint round {learner.round}")
        ids = np.array([int(e["id"]) for e in entries], dtype=np.int64)
        labels = np.array([int(e["label"]) for e in entries], dtype=np.int64)
        again = np.isin(learner.labeled_ids, ids)
        if again.any():
            # Relabel workaround (ActiveLearner.teach refuses labeled ids): forget the old labels of these
            # ids so that they are taught again, with their new labels, in this round.
            keep = ~again
            learner.labeled_ids = learner.labeled_ids[keep]
            learner.labeled_labels = learner.labeled_labels[keep]
            learner.labeled_round = learner.labeled_round[keep]
        callbacks = list(self.fit_callbacks(r)) if self.fit_callbacks is not None else []
        record = learner.teach(ids, labels, callbacks=callbacks)
        self._save_checkpoint(learner)
        return record

    # -- query
    def round_names(self) -> list:
        """Every ``round-NNN`` entry of the project folder [(k, path)] in order, complete or not (any file type)."""
        out = []
        for p in self.path.iterdir():
            mt = _ROUND_RE.match(p.name)
            if mt:
                out.append((int(mt.group(1)), p))
        return sorted(out)

    def rounds(self) -> list:
        """Complete query rounds (folders with a query.json) [(k, path)] in order."""
        return [(k, p) for k, p in self.round_names() if p.is_dir() and (p / QUERY_INFO).is_file()]

    def incomplete_rounds(self) -> list:
        """``round-NNN`` names that are not complete query rounds (no query.json; maybe the user's own)."""
        done = {k for k, _ in self.rounds()}
        return [(k, p) for k, p in self.round_names() if k not in done]

    def next_round(self) -> int:
        """The number of the next query round: one more than every ``round-NNN`` name present."""
        names = self.round_names()
        return names[-1][0] + 1 if names else 1

    def round_info(self, p: Path) -> dict:
        """query.json of round folder ``p``, with the fields the project relies on checked."""
        f = p / QUERY_INFO
        try:
            info = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise AiftError(f"{f}: unreadable ({e})") from None
        if not isinstance(info, dict) or not isinstance(info.get("ids"), list):
            raise AiftError(f"{f}: not a query round (no list of \"ids\")")
        n = int(self.config["n"])
        for i in info["ids"]:
            check_int(i, "queried id", str(f), 0, n - 1)
        check_int(info.get("n"), "\"n\"", str(f), 1)
        return info

    def round_answered(self, k: int, p: Path, ledger, labels) -> bool:
        info = self.round_info(p)
        if any(e.get("query_round") == k for e in ledger):
            return True
        return any(int(i) in labels for i in info["ids"])

    def query(self, n: int, strategy=None, omega=None, force=False) -> dict:
        from aift_tf.selection import parse_strategy

        n = int(n)
        if n < 1:
            raise AiftError(f"-n {n}: must be >= 1")
        if strategy is not None:
            parse_strategy(strategy)
        if omega is not None and (not np.isfinite(float(omega)) or float(omega) < 1):
            raise AiftError(f"--omega {omega}: must be >= 1")
        ledger = self.ledger()
        labels = self.labels(ledger)
        rounds = self.rounds()
        if rounds and not force:
            k, p = rounds[-1]
            if not self.round_answered(k, p, ledger, labels):
                raise AiftError(f"{p.name} has not been answered yet: fill the label column of {p / QUERIES} and run "
                                f"`aift teach {self.path} {p / QUERIES}`, or pass --force to query a new round anyway")
        left = self.unlabeled_ids(labels)
        if n > left.size:
            raise AiftError(f"-n {n} is larger than the {left.size} unlabeled candidates left in the pool")
        self.recover()
        learner = self.learner()
        k = self.next_round()  # never the number of an existing round-NNN (complete or not)
        strategy = strategy or learner.strategy
        omega = float(omega) if omega is not None else learner.omega
        saved = (learner.strategy, learner.omega, learner.rng)
        learner.strategy, learner.omega = strategy, omega
        # Query randomness depends on (seed, query round) only: re-running a query is repeatable and
        # no checkpoint has to be rewritten for the RNG.
        learner.rng = np.random.default_rng([int(learner.seed), k])
        try:
            ids, scores = learner.query(n)
        finally:
            learner.strategy, learner.omega, learner.rng = saved
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
        info = {"round": k, "created": _now(), "model_round": int(learner.round), "strategy": strategy,
                "omega": omega, "n": n, "pool_left": int(left.size), "ids": [int(i) for i in ids],
                "class_names": self.class_names,
                "probability": "P(positive)" if K == 2 else "max-class probability"}
        target = self.path / round_name(k)
        from aift_tf.gallery import write_gallery

        with atomic_dir(target, replace=False) as tmp:  # never replaces a folder (an annotator's work)
            write_text_atomic(tmp / QUERIES, _queries_csv(rows))
            write_json_atomic(tmp / QUERY_INFO, info)
            write_gallery(tmp, self.store, rows, info, project_name=self.path.name,
                          group_names=self.store.attrs.get("group_names"))
        info["path"] = target
        return info

    # -- teach
    def is_round_csv(self, csv_path: Path):
        """The query round number if ``csv_path`` is PROJECT/round-NNN/queries.csv, else None."""
        try:
            rp = csv_path.resolve()
        except OSError:
            return None
        mt = _ROUND_RE.match(rp.parent.name)
        if rp.name == QUERIES and mt and rp.parent.parent == self.path.resolve():
            return int(mt.group(1))
        return None

    def resolve_csv(self, csv_arg) -> Path:
        p = Path(csv_arg).expanduser()
        if not p.exists() and not p.is_absolute() and (self.path / p).exists():
            p = self.path / p
        if not p.exists():
            raise AiftError(f"{csv_arg}: no such file")
        if not p.is_file():
            raise AiftError(f"{csv_arg}: not a file")
        return p

    def validate_csv(self, csv_path: Path, relabel=False) -> dict:
        """Parse and check a label CSV against the project (no writes). Returns the plan."""
        ledger = self.ledger()
        labels = self.labels(ledger)
        qround = self.is_round_csv(csv_path)
        queried = None
        if qround is not None and (csv_path.parent / QUERY_INFO).is_file():
            queried = set(int(i) for i in self.round_info(csv_path.parent)["ids"])
        n = int(self.config["n"])
        pool = set(self.pool_ids().tolist())
        K = len(self.class_names)
        names = {c: i for i, c in enumerate(self.class_names)}
        lower = {}
        for i, c in enumerate(self.class_names):
            lower.setdefault(c.strip().lower(), []).append(i)
        classes_txt = ", ".join(f"{i}={printable(c)}" for i, c in enumerate(self.class_names))
        where = str(csv_path)
        try:
            text = csv_path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as e:
            raise AiftError(f"{where}: not UTF-8 text (byte {e.start})") from None
        except OSError as e:
            raise AiftError(f"{where}: cannot read ({e.strerror or e})") from None
        reader = csv.reader(text.splitlines(keepends=True))
        try:
            header = next(reader)
        except StopIteration:
            raise AiftError(f"{where}: empty file (expected a header with columns id,label)") from None
        except csv.Error as e:
            raise AiftError(f"{where} line 1: malformed CSV ({e})") from None
        cols = [h.strip().lower() for h in header]
        for need in ("id", "label"):
            if need not in cols:
                raise AiftError(f"{where} line 1: no {need!r} column in the header {','.join(header)!r} "
                                f"(expected columns id,label)")
            if cols.count(need) > 1:
                raise AiftError(f"{where} line 1: column {need!r} appears twice in the header")
        ci, cl = cols.index("id"), cols.index("label")
        problems = []
        seen = {}
        new, relabels, same, empty = [], [], [], []
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                problems.append(f"{where} line {reader.line_num}: malformed CSV ({e})")
                break
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue

            def bad(msg):
                problems.append(f"{where} line {line}: {msg}")

            raw_id = row[ci].strip() if ci < len(row) else ""
            raw_label = row[cl].strip() if cl < len(row) else ""
            if not raw_id:
                bad("empty id")
                continue
            try:
                cid = int(raw_id)
            except ValueError:
                try:
                    f = float(raw_id)
                    cid = int(f) if f.is_integer() else None
                except ValueError:
                    cid = None
                if cid is None:
                    bad(f"id {raw_id!r} is not an integer candidate id")
                    continue
            if not 0 <= cid < n:
                bad(f"id {raw_id!r} is not a candidate of the store (ids are 0..{n - 1})")
                continue
            if queried is not None and cid not in queried:
                bad(f"id {cid} was not queried in {round_name(qround)}")
                continue
            if queried is None and cid not in pool:
                bad(f"id {cid} is not in the {self.config.get('pool_split', 'train')!r} pool (it belongs to the "
                    f"store's evaluation splits)")
                continue
            if cid in seen:
                bad(f"id {cid} appears twice (first on line {seen[cid]})")
                continue
            seen[cid] = line
            if not raw_label:
                empty.append(cid)
                continue
            lab = None
            if raw_label in names:
                lab = names[raw_label]
            elif re.fullmatch(r"[+-]?\d+(\.0*)?", raw_label):
                v = int(float(raw_label))
                if 0 <= v < K:
                    lab = v
            elif len(lower.get(raw_label.lower(), [])) == 1:
                lab = lower[raw_label.lower()][0]
            if lab is None:
                bad(f"label {raw_label!r} of id {cid} is not a class ({classes_txt})")
                continue
            if cid in labels:
                old, old_round = labels[cid]
                if old == lab:
                    same.append(cid)
                    continue
                if not relabel:
                    bad(f"id {cid} is already labeled {self.class_names[old]!r} (teach round {old_round}), "
                        f"not {raw_label!r}; pass --relabel to change it")
                    continue
                relabels.append((cid, lab, line))
                continue
            new.append((cid, lab, line))
        if problems:
            more = f" (+{len(problems) - 1} more problem{'s' if len(problems) > 2 else ''}; nothing was changed)" \
                if len(problems) > 1 else " (nothing was changed)"
            raise AiftError(problems[0] + more)
        return {"new": new, "relabel": relabels, "same": same, "empty": empty, "query_round": qround,
                "rows": len(seen)}

    def teach(self, csv_arg, relabel=False, warn: Callable = print) -> dict:
        csv_path = self.resolve_csv(csv_arg)
        plan = self.validate_csv(csv_path, relabel=relabel)  # also checks config.json against the store
        if plan["query_round"] is not None and not (csv_path.parent / QUERY_INFO).is_file():
            warn(f"warning: {csv_path.parent / QUERY_INFO} is missing: the ids of {csv_path} were checked against "
                 f"the pool instead of the round's queried ids")
        if plan["empty"]:
            shown = ", ".join(map(str, plan["empty"][:10])) + (" …" if len(plan["empty"]) > 10 else "")
            warn(f"warning: {csv_path}: {len(plan['empty'])} row(s) with an empty label skipped (ids {shown}); "
                 f"they stay in the pool")
        recovered = self.recover()
        todo = plan["new"] + plan["relabel"]
        if not todo:
            return {"nothing_new": True, "plan": plan, "recovered": recovered, "csv": csv_path}
        # Everything the fine-tune needs is loaded and checked BEFORE the ledger is touched: config.json against
        # the store (validate_csv opened it), the checkpoint, and the model's classes against the project's
        # (learner()), so the labels, checked against the project's classes, are classes of the model too.
        learner = self.learner()
        r = int(learner.round) + 1
        try:
            source = str(csv_path.resolve().relative_to(self.path.resolve()))
        except ValueError:
            source = str(csv_path.resolve())
        t = _now()
        relabeled = {c for c, _, _ in plan["relabel"]}
        entries = [{"id": int(c), "label": int(lab), "class": self.class_names[lab], "round": r,
                    "query_round": plan["query_round"], "relabel": c in relabeled, "time": t,
                    "source": source, "line": int(line)}
                   for c, lab, line in sorted(todo, key=lambda x: x[2])]
        self._append_ledger(entries)  # 1. the labels are safe from here on
        if os.environ.get(CRASH_HOOK) == "1":  # test hook: die between the ledger and the checkpoint
            os._exit(137)
        record = self._apply(entries, r)  # 2. fine-tune  3. checkpoint
        return {"nothing_new": False, "plan": plan, "record": record, "recovered": recovered, "csv": csv_path,
                "round": r}

    # -- status
    def status(self) -> dict:
        self.recover()
        ledger = self.ledger()
        labels = self.labels(ledger)
        st = self.state()
        counts = [0] * len(self.class_names)
        for lab, _ in labels.values():
            counts[lab] += 1
        rounds = []
        for k, p in self.rounds():
            info = self.round_info(p)
            rounds.append({"round": k, "n": info["n"], "answered": self.round_answered(k, p, ledger, labels),
                           "labeled": sum(int(i) in labels for i in info["ids"])})
        incomplete = [p.name for _, p in self.incomplete_rounds()]
        return {"incomplete_rounds": incomplete, "teach_rounds": int(st["round"]), "labels": len(labels),
                "per_class": dict(zip(self.class_names, counts)), "pool": int(self.pool_ids().size),
                "pool_left": int(self.unlabeled_ids(labels).size), "query_rounds": rounds,
                "history": st.get("history", []), "checkpoint": self.checkpoints()[-1][1]}

    # -- export
    def export(self, out, force=False) -> Path:
        from aift_tf.export import export_model

        out = Path(out).expanduser()
        if out.exists() and not force:
            raise AiftError(f"--out {out}: already exists (pass --force to replace it)")
        if not out.parent.exists():
            raise AiftError(f"--out {out}: parent folder {out.parent} does not exist")
        self.recover()
        learner = self.learner()
        c = self.config
        prov = {"project": str(self.path.resolve()), "strategy": learner.strategy, "learning": learner.learning,
                "omega": learner.omega, "round": int(learner.round), "seed": int(learner.seed),
                "labeled": int(learner.labeled_ids.size), "data": c["store"], "data_sha256": c["store_sha256"],
                "class_names": self.class_names, "model": c["model"], "weights": c["weights"],
                "trainable": c["trainable"], "finetune": learner.config.to_dict()}
        return export_model(learner.model, out, patches_per_candidate=self.store.m, provenance=prov)


def _queries_csv(rows) -> str:
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(QUERY_COLUMNS)
    for r in rows:
        w.writerow([r["id"], r["group"], f"{r['score']:.6g}", f"{r['probability']:.4f}", ""])
    return buf.getvalue()
