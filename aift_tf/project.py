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

    1. validate the CSV (nothing is written if any row is bad)
    2. append the new entries to the ledger, marked with round T = checkpoint round + 1
    3. fine-tune (ActiveLearner.teach)
    4. save checkpoints/round-T atomically (temporary folder renamed into place)

Every command starts by comparing the ledger with the latest checkpoint: ledger rounds newer than the
checkpoint (a crash between 2 and 4) are re-applied from that checkpoint, one teach per round, in order.
So an imported label is never lost and the model always ends up trained on it.

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

from aift_tf._io import atomic_dir, write_json_atomic, write_text_atomic
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
        with atomic_dir(path) as tmp:
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
        if self.config.get("format") != PROJECT_FORMAT:
            raise AiftError(f"{cfg}: unsupported project format {self.config.get('format')!r}")
        self.class_names = list(self.config["class_names"])
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
            self._store = store
        return self._store

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
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
                int(e["id"]), int(e["label"]), int(e["round"])
            except (ValueError, KeyError, TypeError):
                raise AiftError(f"{f} line {i}: not a ledger entry: {line[:80]!r}") from None
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

    def state(self) -> dict:
        """state.json of the latest checkpoint (no TensorFlow)."""
        _, p = self.checkpoints()[-1]
        try:
            return json.loads((p / "state.json").read_text())
        except (OSError, ValueError) as e:
            raise AiftError(f"{p / 'state.json'}: unreadable ({e})") from None

    def learner(self):
        if self._learner is None:
            from aift_tf.learner import ActiveLearner

            _, p = self.checkpoints()[-1]
            self._learner = ActiveLearner.load(p, self.store, progress=self.progress)
        return self._learner

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
    def rounds(self) -> list:
        """Query rounds [(k, path)] in order."""
        out = []
        for p in self.path.iterdir():
            mt = _ROUND_RE.match(p.name)
            if mt and p.is_dir() and (p / QUERY_INFO).is_file():
                out.append((int(mt.group(1)), p))
        return sorted(out)

    def round_info(self, p: Path) -> dict:
        try:
            return json.loads((p / QUERY_INFO).read_text())
        except (OSError, ValueError) as e:
            raise AiftError(f"{p / QUERY_INFO}: unreadable ({e})") from None

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
        k = rounds[-1][0] + 1 if rounds else 1
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

        with atomic_dir(target) as tmp:
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
        if qround is not None:
            queried = set(int(i) for i in self.round_info(csv_path.parent)["ids"])
        n = int(self.config["n"])
        pool = set(self.pool_ids().tolist())
        K = len(self.class_names)
        names = {c: i for i, c in enumerate(self.class_names)}
        lower = {}
        for i, c in enumerate(self.class_names):
            lower.setdefault(c.strip().lower(), []).append(i)
        classes_txt = ", ".join(f"{i}={c}" for i, c in enumerate(self.class_names))
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
        plan = self.validate_csv(csv_path, relabel=relabel)
        if plan["empty"]:
            shown = ", ".join(map(str, plan["empty"][:10])) + (" …" if len(plan["empty"]) > 10 else "")
            warn(f"warning: {csv_path}: {len(plan['empty'])} row(s) with an empty label skipped (ids {shown}); "
                 f"they stay in the pool")
        recovered = self.recover()
        todo = plan["new"] + plan["relabel"]
        if not todo:
            return {"nothing_new": True, "plan": plan, "recovered": recovered, "csv": csv_path}
        st = self.state()
        r = int(st["round"]) + 1
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
        return {"teach_rounds": int(st["round"]), "labels": len(labels),
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
