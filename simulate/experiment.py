"""The simulation loop behind `aift-sim`: active, incremental fine-tuning against an oracle.

A run compares selection strategies (AIFT, random, baselines) on one candidate store whose pool
labels are known: every round each strategy queries `batch_size` candidates, the oracle reveals
their labels, the model is fine-tuned (learning strategy RFT/AFT/ACFT-*) and evaluated on the test
split. Each (strategy, seed) starts from the same M0. Full training (M0 fine-tuned on the whole
labeled pool) is always run once per seed as the ceiling; `scratch=True` adds training from random
initialisation on the whole pool.

Python API::

    from simulate.experiment import SimConfig, run_experiment
    summary = run_experiment(SimConfig(data="pool.h5", strategies=("aift", "random"), rounds=3),
                             out="runs/demo")
    summary = run_experiment(None, out="runs/demo", resume=True)      # continue / rebuild

Run folder (see docs of :func:`run_experiment`)::

    config.json     every setting, versions, data path + sha256, M0 used, command line (written first)
    rounds.csv      one row per (strategy, seed, round); rewritten atomically after every round
    summary.json    learning-curve summary, savings vs random (simulate.report)
    report.md, learning_curves.png, positives_found.png, froc.png (PE-like stores)
    models/<strategy>/seed<k>/[round<r>/]   exported models (aift_tf.export)
    tb/<strategy>/seed<k>/                  TensorBoard logs of fine-tuning and test AUC
    state/<strategy>/seed<k>/round<r>/      resume point: ActiveLearner state + rows + test predictions

Crash safety: a round's state folder is written atomically (temporary sibling renamed into place)
before the next round begins and only then are older round folders removed, so at any moment at
least one complete resume point exists. Every random choice depends only on (seed, round): queries
on the learner's saved RNG, fine-tuning on `seed + 1000 * round`, the optional initial random set on
the seed. A resumed run therefore reproduces the uninterrupted one.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import json
import math
import os
import platform
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from aift_tf._io import atomic_dir, file_sha256, read_json, write_json_atomic, write_text_atomic
from aift_tf.errors import AiftError

CONFIG_FORMAT = 1
FULL = "full"
SCRATCH = "scratch"
ROUND_FIELDS = (
    "strategy", "seed", "round", "labels", "positives_found", "test_auc",
    "sens_fp1", "sens_fp2", "sens_fp3", "finetune_seconds", "scoring_seconds",
)
FROC_RATES = (1, 2, 3)
DEFAULT_STRATEGIES = ("aift", "random")
#: Defaults per scale (used when the option is not given). quick is sized for a CPU laptop: with
#: the quick apps, 2 strategies x 3 seeds + full training take a few minutes on 2 cores.
SCALE_DEFAULTS = {
    # quick: 6 rounds of 20 (120 labels, ~10-20% of a quick pool) with the top block fine-tuned on cached
    # trunk features; a whole 3-seed run takes minutes on a 2-core CPU. paper: the GPU-sized counterpart.
    "quick": dict(batch_size=20, rounds=6, epochs=10, full_epochs=5),
    "paper": dict(batch_size=100, rounds=10, epochs=5, full_epochs=10),
}
#: Full training (and scratch) passes over the whole pool `full_epochs` times (override with
#: `--full-epochs`): an epoch there is many more steps than a round's epoch on the labeled set. 5 at
#: quick scale: `python -m simulate.app_check` measured more epochs over-fitting the train volumes.

#: No per-epoch validation AUC during fine-tuning: without early stopping it would only be logged,
#: and scoring the val split every epoch costs more than the fine-tuning itself on a CPU.
VAL_SPLIT = None

#: settings that may be given again with --resume without conflicting (they do not change results)
RESUME_NEUTRAL = ("quiet", "out", "resume", "cache_dir")


# ----------------------------------------------------------------------------------------------
# configuration


@dataclasses.dataclass
class SimConfig:
    """Every setting of a simulation run (see `aift-sim --help` for their meaning).

    `None` means "the default for the scale / store" and is resolved by :func:`plan_run`.
    """

    app: Optional[str] = "pulmonary-embolism"
    data: Optional[str] = None
    scale: str = "quick"
    app_seed: int = 0
    strategies: tuple = DEFAULT_STRATEGIES
    learning: str = "ACFT-LQ"
    random_learning: Optional[str] = None
    omega: float = 1.0
    batch_size: Optional[int] = None
    rounds: Optional[int] = None
    budget: Optional[int] = None
    seeds: int = 3
    model: str = "small_cnn"
    weights: Optional[str] = None  # None = default M0 if one exists, else none
    trainable: str = "top"
    epochs: Optional[int] = None
    full_epochs: Optional[int] = None
    lr: float = 1e-3
    train_batch_size: int = 64
    initial: int = 0
    export: bool = True
    export_every_round: bool = False
    scratch: bool = False
    cache_trunk: Optional[bool] = None  # None = on whenever trainable is top/head
    distribute: str = "none"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["strategies"] = list(self.strategies)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SimConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise AiftError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        d = dict(d)
        if isinstance(d.get("strategies"), list):
            d["strategies"] = tuple(d["strategies"])
        return cls(**d)


def canonical_strategy(text: str) -> str:
    """Validate a strategy string and return its canonical, path-safe spelling."""
    from aift_tf.selection import BASELINES, parse_strategy

    method, alpha = parse_strategy(text)
    s = str(text).strip().lower()
    if s == "aift" or method in BASELINES:
        return s
    if "@" in s:
        return f"{method}@{alpha:g}"
    return method


def parse_strategies(value) -> tuple:
    """`"aift, random"` or a list -> canonical tuple; unknown names and bad alpha raise AiftError."""
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [str(x).strip() for x in items if str(x).strip()]
    if not items:
        raise AiftError("no strategy given; e.g. --strategies aift,random")
    out = []
    for item in items:
        c = canonical_strategy(item)
        if c in (FULL, SCRATCH):
            raise AiftError(f"strategy name {c!r} is reserved")
        if c in out:
            raise AiftError(f"strategy {item!r} is given twice")
        out.append(c)
    return tuple(out)


def _int_opt(name, v, minimum, allow_none=True):
    if v is None and allow_none:
        return None
    if isinstance(v, bool):
        raise AiftError(f"{name} must be an integer, got {v!r}")
    try:
        iv = int(v)
    except (TypeError, ValueError):
        raise AiftError(f"{name} must be an integer, got {v!r}") from None
    if iv != v and not isinstance(v, str):
        raise AiftError(f"{name} must be an integer, got {v!r}")
    if iv < minimum:
        raise AiftError(f"{name} must be >= {minimum}, got {iv}")
    return iv


def check_config(cfg: SimConfig) -> SimConfig:
    """Validate and canonicalise the settings that do not need the store. Returns a new config."""
    from aift_tf.finetune import check_learning
    from simulate.apps import APP_NAMES, SCALES

    c = dataclasses.replace(cfg)
    if c.data is not None:
        c.app = None
        c.data = str(Path(c.data).expanduser().resolve())
    else:
        if c.app is None:
            raise AiftError("give --app NAME or --data STORE.h5")
        if c.app not in APP_NAMES:
            raise AiftError(f"unknown app {c.app!r}; valid apps: {', '.join(APP_NAMES)}")
    if c.scale not in SCALES:
        raise AiftError(f"unknown scale {c.scale!r}; valid scales: {', '.join(SCALES)}")
    c.app_seed = _int_opt("app seed", c.app_seed, 0, allow_none=False)
    c.strategies = parse_strategies(c.strategies)
    c.learning = check_learning(c.learning)
    if c.random_learning is not None:
        c.random_learning = check_learning(c.random_learning)
    try:
        c.omega = float(c.omega)
    except (TypeError, ValueError):
        raise AiftError(f"omega must be a number >= 1, got {c.omega!r}") from None
    if not math.isfinite(c.omega) or c.omega < 1:
        raise AiftError(f"omega must be a number >= 1, got {cfg.omega!r}")
    if c.batch_size is not None and not isinstance(c.batch_size, bool) and int(c.batch_size) < 1:
        raise AiftError(f"batch size must be >= 1, got {c.batch_size}")
    c.batch_size = _int_opt("batch size", c.batch_size, 1)
    c.rounds = _int_opt("rounds", c.rounds, 1)
    c.budget = _int_opt("budget", c.budget, 1)
    if c.rounds is not None and c.budget is not None:
        raise AiftError(f"give --rounds or --budget, not both (got rounds {c.rounds}, budget {c.budget})")
    c.seeds = _int_opt("seeds", c.seeds, 1, allow_none=False)
    from aift_tf.zoo import MODEL_NAMES, POLICIES

    if c.model not in MODEL_NAMES:
        raise AiftError(f"unknown model {c.model!r}; valid models: {', '.join(MODEL_NAMES)}")
    if c.trainable not in POLICIES:
        raise AiftError(f"unknown trainable policy {c.trainable!r}; valid: {', '.join(POLICIES)}")
    if c.weights is not None:
        w = str(c.weights)
        if w.lower() in ("none", "imagenet", "m0", "default"):
            c.weights = w.lower()
        else:
            p = Path(w).expanduser()
            if not p.is_file():
                raise AiftError(f"weights {w!r}: no such file (expected none, imagenet, m0 or a "
                                f".weights.h5/.keras path)")
            c.weights = str(p.resolve())
    c.epochs = _int_opt("epochs", c.epochs, 1)
    c.full_epochs = _int_opt("full-training epochs", c.full_epochs, 1)
    try:
        c.lr = float(c.lr)
    except (TypeError, ValueError):
        raise AiftError(f"learning rate must be a positive number, got {c.lr!r}") from None
    if not math.isfinite(c.lr) or c.lr <= 0:
        raise AiftError(f"learning rate must be a positive number, got {cfg.lr!r}")
    c.train_batch_size = _int_opt("training batch size", c.train_batch_size, 1, allow_none=False)
    c.initial = _int_opt("initial", c.initial, 0, allow_none=False)
    c.export = bool(c.export)
    c.export_every_round = bool(c.export_every_round)
    c.scratch = bool(c.scratch)
    from aift_tf.distribute import canonical_name
    from aift_tf.trunk_cache import check_cacheable

    c.distribute = canonical_name(c.distribute)
    if c.cache_trunk is None:
        c.cache_trunk = c.trainable != "all"
    c.cache_trunk = bool(c.cache_trunk)
    if c.cache_trunk:
        check_cacheable(c.trainable, augment=False)
    return c


# ----------------------------------------------------------------------------------------------
# data, M0 and the round plan


def store_path_for(cfg: SimConfig, cache_dir=None, progress=None) -> Path:
    """The candidate store of the run: `--data`, or the (cached, generated once) app store."""
    if cfg.data is not None:
        return Path(cfg.data)
    from simulate.apps import cached_store

    return Path(cached_store(cfg.app, scale=cfg.scale, seed=cfg.app_seed, cache_dir=cache_dir,
                             progress=progress)).resolve()


def resolve_m0(cfg: SimConfig, patch_shape) -> dict:
    """Which M0 the run starts from: `{"weights": str|None, "source": ..., "path", "sha256", "card"}`."""
    from simulate import pretrain

    shape = tuple(int(v) for v in patch_shape)
    w = cfg.weights
    if w in (None, "default", "m0"):
        path = pretrain.default_m0(cfg.model, shape)
        if path is None:
            if w == "m0":
                raise AiftError(f"--weights m0: there is no offline pre-trained M0 for model {cfg.model!r} and "
                                f"patch shape {'x'.join(map(str, shape))} (build one with python -m simulate.pretrain)")
            return {"weights": None, "source": "none",
                    "note": f"no offline pre-trained M0 for {cfg.model} {'x'.join(map(str, shape))}; "
                            f"random initialisation"}
        path = Path(path).resolve()
        return {"weights": str(path), "source": "default-m0", "path": str(path),
                "sha256": file_sha256(path), "card": pretrain.m0_card(path)}
    if w == "none":
        return {"weights": None, "source": "none", "note": "random initialisation (--weights none)"}
    if w == "imagenet":
        # fail before the run folder exists: unsupported model, or weights not in the offline Keras cache
        from aift_tf.zoo import weights as zoo_weights

        zoo_weights.check_imagenet_supported(cfg.model, shape)
        cached = zoo_weights.keras_cache_dir() / zoo_weights.imagenet_filename(cfg.model, shape)
        if not cached.exists():
            raise AiftError(f"--weights imagenet: {cached} is not in the Keras cache (offline); "
                            f"use --weights m0, none or a weights file")
        return {"weights": "imagenet", "source": "imagenet", "path": str(cached)}
    path = Path(w)
    card = None
    try:
        card = pretrain.m0_card(path)
    except AiftError:
        card = None
    return {"weights": str(path), "source": "file", "path": str(path), "sha256": file_sha256(path), "card": card}


def plan_run(cfg: SimConfig, store) -> dict:
    """Resolve the defaults that depend on the store and check the label budget against the pool.

    Returns a dict: batch_size, rounds (queried rounds), budget (total labels incl. `initial`),
    sizes (candidates labeled in each learner round, the first being the initial random set when
    `initial > 0`), epochs, full_epochs, pool_size, test_size.
    """
    pool = store.ids("train")
    test = store.ids("test")
    n_pool = int(pool.size)
    if n_pool == 0:
        raise AiftError(f"{store.path}: the 'train' split (the pool) is empty")
    unknown = pool[store.labels[pool] < 0]
    if unknown.size:
        raise AiftError(f"{store.path}: pool candidate {int(unknown[0])} has no label (-1); a simulation needs "
                        f"every pool label")
    test_labeled = test[store.labels[test] >= 0]
    if test_labeled.size == 0 or np.unique(store.labels[test_labeled]).size < 2:
        raise AiftError(f"{store.path}: the 'test' split needs labeled candidates of at least two classes")
    if store.num_classes != 2:
        raise AiftError(f"{store.path}: aift-sim supports binary stores (K=2), this one has {store.num_classes} classes")
    d = SCALE_DEFAULTS["paper" if cfg.scale == "paper" and cfg.data is None else "quick"]
    initial = cfg.initial
    if initial >= n_pool:
        raise AiftError(f"initial {initial} random labels is not less than the pool of {n_pool} candidates")
    b = cfg.batch_size
    if cfg.budget is not None:
        budget = cfg.budget
        if budget > n_pool:
            raise AiftError(f"budget {budget} labels is larger than the pool of {n_pool} candidates")
        if budget <= initial:
            raise AiftError(f"budget {budget} leaves nothing to query after the initial {initial} random labels")
        if b is None:
            b = min(d["batch_size"], budget - initial)
        rounds = math.ceil((budget - initial) / b)
    elif cfg.rounds is not None:
        rounds = cfg.rounds
        if b is None:
            b = d["batch_size"]
        budget = initial + rounds * b
        if budget > n_pool:
            raise AiftError(f"budget {budget} labels ({rounds} rounds x {b}"
                            f"{f' + {initial} initial' if initial else ''}) is larger than the pool of "
                            f"{n_pool} candidates")
    else:
        rounds = d["rounds"]
        avail = n_pool - initial
        if b is None:
            b = min(d["batch_size"], avail)
        elif b > avail:
            raise AiftError(f"batch size {b}{f' + {initial} initial' if initial else ''} is larger than the "
                            f"pool of {n_pool} candidates")
        rounds = max(1, min(rounds, avail // b))  # a small --data pool shrinks the default number of rounds
        budget = initial + rounds * b
    sizes = ([initial] if initial else []) + [b] * rounds
    if cfg.budget is not None:
        sizes[-1] = budget - initial - b * (rounds - 1)
    epochs = cfg.epochs if cfg.epochs is not None else d["epochs"]
    full_epochs = cfg.full_epochs if cfg.full_epochs is not None else d["full_epochs"]
    return dict(batch_size=int(b), rounds=int(rounds), budget=int(sum(sizes)), sizes=[int(s) for s in sizes],
                initial=int(initial), epochs=int(epochs), full_epochs=int(full_epochs), pool_size=n_pool,
                test_size=int(test_labeled.size))


def froc_applies(store) -> bool:
    """FROC (sensitivity at FPs per volume) is reported for PE-like stores (candidates grouped by volume)."""
    attrs = store.attrs or {}
    return store.app == "pulmonary-embolism" or attrs.get("group_kind") == "volume"


# ----------------------------------------------------------------------------------------------
# run folder


def check_new_out_dir(out) -> Path:
    """`out` must not be an existing non-empty folder and must be creatable; nothing is created here."""
    out = Path(out).expanduser()
    if out.exists():
        if not out.is_dir():
            raise AiftError(f"--out {out}: exists and is not a folder")
        if any(out.iterdir()):
            raise AiftError(f"--out {out}: folder exists and is not empty (use --resume to continue a run, "
                            f"or choose another folder)")
    anc = out if out.exists() else out.parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise AiftError(f"--out {out}: cannot create it, {anc} is not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".aift-sim-probe.", dir=anc)
        os.rmdir(probe)
    except OSError as e:
        raise AiftError(f"--out {out}: folder {anc} is not writable ({e.strerror or e})") from None
    return out.resolve()


def load_run_config(out) -> dict:
    """The saved config.json of a run folder (raises AiftError if `out` is not a run)."""
    out = Path(out).expanduser()
    if not out.is_dir():
        raise AiftError(f"--resume: {out} is not a folder")
    f = out / "config.json"
    saved = read_json(f, f"--resume: {out} is not an aift-sim run (no config.json)")
    if not isinstance(saved, dict) or saved.get("format") != CONFIG_FORMAT or "settings" not in saved:
        raise AiftError(f"--resume: {f} is not an aift-sim run configuration")
    return saved


def resume_conflicts(saved_settings: dict, explicit: dict) -> list:
    """Explicitly given settings that differ from the run's (after canonicalisation)."""
    base = SimConfig.from_dict(saved_settings)
    conflicts = []
    for key, value in explicit.items():
        if key in RESUME_NEUTRAL:
            continue
        if key not in saved_settings:
            conflicts.append((key, value, None))
            continue
        try:
            trial = check_config(dataclasses.replace(base, **{key: value}))
            theirs = getattr(trial, key)
        except AiftError:
            theirs = value
        if key == "app" and base.data is not None:
            conflicts.append((key, value, f"--data {base.data}"))
            continue
        if theirs != getattr(base, key):
            conflicts.append((key, value, getattr(base, key)))
    return conflicts


def _versions() -> dict:
    import aift_tf

    v = {"aift_tf": aift_tf.__version__, "numpy": np.__version__, "python": platform.python_version()}
    try:
        import tensorflow as tf

        v["tensorflow"] = tf.__version__
    except ImportError:
        v["tensorflow"] = None
    try:
        import keras

        v["keras"] = keras.__version__
    except ImportError:
        v["keras"] = None
    return v


def slug(name: str) -> str:
    """Folder name of a strategy (canonical names are already path-safe)."""
    return re.sub(r"[^A-Za-z0-9+@._-]", "_", name)


# ----------------------------------------------------------------------------------------------
# progress


class Progress:
    """tqdm bars (rounds overall, each scoring / fine-tuning pass) and per-round lines; silent if quiet."""

    def __init__(self, quiet: bool = False, total: int = 0):
        self.quiet = quiet
        self._bars = {}
        self.outer = None
        if not quiet:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self.outer = tqdm(total=total, desc="rounds", unit="round", dynamic_ncols=True, position=0)

    def advance(self, n=1):
        if self.outer is not None:
            self.outer.update(n)

    def line(self, msg: str):
        if self.quiet:
            return
        if self.outer is not None:
            self.outer.write(msg)
        else:
            print(msg, flush=True)

    def stage(self, label):
        """A `(stage, done, total)` callback for ActiveLearner.progress."""
        if self.quiet:
            return None

        def cb(stage, done, total):
            key = stage
            bar = self._bars.get(key)
            if bar is None or bar.total != total or done < bar.n:
                if bar is not None:
                    bar.close()
                bar = self._tqdm(total=total, desc=f"{label} {stage}", unit="cand", leave=False,
                                 dynamic_ncols=True, position=1)
                self._bars[key] = bar
            bar.update(max(0, done - bar.n))
            if done >= total:
                bar.close()
                self._bars.pop(key, None)

        return cb

    def epochs_callback(self, label):
        """Keras callback: one bar per epoch over its steps (with ETA)."""
        import keras

        if self.quiet:
            return None
        tq = self._tqdm

        class EpochBar(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                steps = (self.params or {}).get("steps")
                total_e = (self.params or {}).get("epochs")
                self.bar = tq(total=steps, desc=f"{label} fine-tune epoch {epoch + 1}/{total_e}", unit="batch",
                              leave=False, dynamic_ncols=True, position=1)

            def on_train_batch_end(self, batch, logs=None):
                self.bar.update(1)

            def on_epoch_end(self, epoch, logs=None):
                self.bar.close()

        return EpochBar()

    def close(self):
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        if self.outer is not None:
            self.outer.close()


# ----------------------------------------------------------------------------------------------
# TensorBoard


def _quiet_tf_python_logs() -> None:
    """TensorFlow's Python logger warns about tf.function retracing when a new model is fitted for
    every (strategy, seed): expected here, and it would break the progress bars."""
    import logging

    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass


def _have_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def tensorboard_callback(log_dir: Path):
    """keras.callbacks.TensorBoard when the `tensorboard` package is installed; otherwise a minimal
    callback writing the same per-epoch scalars (`epoch_loss`, `epoch_accuracy`, `epoch_val_auc`) as
    TensorBoard event files with the low-level `tf.summary.write` (works without the package)."""
    import keras

    log_dir = Path(log_dir)
    if _have_tensorboard():
        return keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False, profile_batch=0,
                                           histogram_freq=0, update_freq="epoch")

    class ScalarTensorBoard(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.writer = _scalar_writer(log_dir / "train")

        def on_epoch_end(self, epoch, logs=None):
            for k, v in (logs or {}).items():
                try:
                    value = float(v)
                except (TypeError, ValueError):
                    continue
                _write_scalar(self.writer, f"epoch_{k}", value, epoch)
            self.writer.flush()

        def on_train_end(self, logs=None):
            self.writer.close()

    return ScalarTensorBoard()


def _scalar_writer(path: Path):
    import tensorflow as tf

    path.mkdir(parents=True, exist_ok=True)
    return tf.summary.create_file_writer(str(path))


def _write_scalar(writer, tag, value, step):
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    md = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    with writer.as_default():
        tf.summary.write(tag, tf.constant(float(value), dtype=tf.float32), step=int(step), metadata=md)


# ----------------------------------------------------------------------------------------------
# state folders


_ROUND_RE = re.compile(r"^round(\d+)$")


def _round_dirs(sdir: Path) -> dict:
    out = {}
    if sdir.is_dir():
        for p in sdir.iterdir():
            m = _ROUND_RE.match(p.name)
            if m and p.is_dir() and (p / "rows.json").is_file():
                out[int(m.group(1))] = p
    return out


def _latest(sdir: Path):
    dirs = _round_dirs(sdir)
    if not dirs:
        return None, None
    r = max(dirs)
    return r, dirs[r]


def _clean_temporaries(sdir: Path) -> None:
    if not sdir.is_dir():
        return
    for p in sdir.iterdir():
        if p.name.startswith(".") and (p.name.endswith(".tmp") or p.name.endswith(".old") or p.name.endswith(".trash")):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _prune(sdir: Path, keep: int) -> None:
    for r, p in _round_dirs(sdir).items():
        if r != keep:
            trash = p.with_name(f".{p.name}.trash")
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(p, trash)
            shutil.rmtree(trash, ignore_errors=True)


def _save_round(sdir: Path, r: int, rows: list, learner=None, evaluation=None, extra=None) -> Path:
    sdir.mkdir(parents=True, exist_ok=True)
    target = sdir / f"round{r}"
    with atomic_dir(target) as tmp:
        if learner is not None:
            learner.save(tmp / "learner")
        if evaluation is not None:
            np.savez(tmp / "test_predictions.npz", ids=evaluation["ids"], probability=evaluation["probability"],
                     labels=evaluation["labels"], groups=evaluation["groups"])
        if extra is not None:
            write_json_atomic(tmp / "info.json", extra)
        write_json_atomic(tmp / "rows.json", rows)
    _prune(sdir, r)
    return target


def _read_rows(path: Path) -> list:
    return json.loads((path / "rows.json").read_text())


# ----------------------------------------------------------------------------------------------
# rounds.csv


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return "nan"
        return repr(v)
    return str(v)


def write_rounds_csv(path: Path, rows: list) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(ROUND_FIELDS)
    for row in rows:
        w.writerow([_fmt(row.get(k)) for k in ROUND_FIELDS])
    write_text_atomic(path, buf.getvalue())


def read_rounds_csv(path: Path) -> list:
    ints = {"seed", "round", "labels", "positives_found"}
    rows = []
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            row = {}
            for k in ROUND_FIELDS:
                v = rec.get(k, "")
                if k == "strategy":
                    row[k] = v
                elif v == "" or v is None:
                    row[k] = None
                elif k in ints:
                    row[k] = int(v)
                else:
                    row[k] = float(v)
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------
# the experiment


class Experiment:
    """One run folder: the jobs (strategy x seed, full training, scratch) and their state."""

    def __init__(self, out: Path, saved: dict, store, progress: Progress, trunk_cache_dir=None):
        self.out = Path(out)
        self.saved = saved
        self.cfg = SimConfig.from_dict(saved["settings"])
        self.plan = saved["plan"]
        self.m0 = saved["m0"]
        self.store = store
        self.progress = progress
        self.froc = bool(saved["data"]["froc"])
        self.seeds = list(range(self.cfg.seeds))
        self.rows = {}  # (strategy, seed) -> rows
        self._m0_eval = {}  # seed -> evaluation of M0 (shared by the strategies)
        self.trunk_cache_dir = trunk_cache_dir
        self.strategy = None
        if self.cfg.distribute != "none":  # created before any other TensorFlow work (multi-worker needs it)
            from aift_tf.distribute import get_strategy

            self.strategy = get_strategy(self.cfg.distribute)

    # -------------------------------------------------------------- helpers
    def _finetune_config(self, seed, epochs):
        from aift_tf.finetune import FineTuneConfig

        return FineTuneConfig(epochs=int(epochs), batch_size=self.cfg.train_batch_size,
                              learning_rate=self.cfg.lr, seed=int(seed))

    def _speed_options(self, trainable) -> dict:
        """ActiveLearner options that change speed only: frozen-trunk cache (one side file per store
        and trunk, shared by every strategy and seed) and the tf.distribute strategy."""
        cache = False
        if self.cfg.cache_trunk and trainable != "all":
            cache = str(self.trunk_cache_dir) if self.trunk_cache_dir is not None else True
        return {"cache_trunk": cache, "distribute": self.strategy}

    def _learning_for(self, strategy):
        if strategy == "random" and self.cfg.random_learning is not None:
            return self.cfg.random_learning
        return self.cfg.learning

    def _evaluate(self, learner) -> dict:
        from aift_tf.metrics import froc

        ev = learner.evaluate("test")
        ids = ev["ids"]
        labels = self.store.labels[ids]
        groups = self.store.groups[ids]
        out = {"auc": float(ev["auc"]), "ids": ids, "probability": np.asarray(ev["probability"], np.float64),
               "labels": labels, "groups": groups, "sens": [None] * len(FROC_RATES)}
        if self.froc and labels.sum() > 0:
            r = froc(out["probability"], labels, groups, fps_per_group=FROC_RATES)
            out["sens"] = [float(x) for x in r["sensitivity"]]
        return out

    def _row(self, strategy, seed, rnd, labels, positives, ev, finetune_s, scoring_s):
        return {
            "strategy": strategy, "seed": int(seed), "round": int(rnd), "labels": int(labels),
            "positives_found": int(positives), "test_auc": float(ev["auc"]),
            "sens_fp1": ev["sens"][0], "sens_fp2": ev["sens"][1], "sens_fp3": ev["sens"][2],
            "finetune_seconds": round(float(finetune_s), 3), "scoring_seconds": round(float(scoring_s), 3),
        }

    def all_rows(self) -> list:
        order = list(self.cfg.strategies) + [FULL, SCRATCH]
        keys = sorted(self.rows, key=lambda k: (order.index(k[0]), k[1]))
        return [row for k in keys for row in sorted(self.rows[k], key=lambda r: r["round"])]

    def flush_csv(self):
        write_rounds_csv(self.out / "rounds.csv", self.all_rows())

    def _initial_ids(self, seed):
        """The same `initial` random pool candidates for every strategy of a seed."""
        pool = self.store.ids("train")
        rng = np.random.default_rng([int(seed), 7919])
        return np.sort(rng.choice(pool, size=self.plan["initial"], replace=False)).astype(np.int64)

    def _label(self, strategy, seed):
        return f"{strategy} s{seed}"

    # -------------------------------------------------------------- jobs
    def load_existing(self):
        """Read every job's rows from its latest state (for resume and for the progress total)."""
        done = 0
        for seed in self.seeds:
            for strategy in list(self.cfg.strategies) + [FULL] + ([SCRATCH] if self.cfg.scratch else []):
                sdir = self.out / "state" / slug(strategy) / f"seed{seed}"
                _clean_temporaries(sdir)
                r, p = _latest(sdir)
                if p is not None:
                    self.rows[(strategy, seed)] = _read_rows(p)
                    done += r
        return done

    def total_units(self):
        per = len(self.plan["sizes"])
        return self.cfg.seeds * (len(self.cfg.strategies) * per + 1 + (1 if self.cfg.scratch else 0))

    def run(self):
        import warnings

        # model.fit on a tf.data.Dataset warns that its default shuffle=True is ignored (the training
        # dataset is shuffled by aift_tf.pipelines); it is noise for every round
        warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
        _quiet_tf_python_logs()
        if self.progress.quiet:
            warnings.simplefilter("ignore")
        for seed in self.seeds:
            for strategy in self.cfg.strategies:
                self.run_active(strategy, seed)
            self.run_full(FULL, seed)
            if self.cfg.scratch:
                self.run_full(SCRATCH, seed)

    def _tb_eval(self, strategy, seed, row):
        w = _scalar_writer(self.out / "tb" / slug(strategy) / f"seed{seed}" / "eval")
        _write_scalar(w, "test_auc", row["test_auc"], row["labels"])
        _write_scalar(w, "positives_found", row["positives_found"], row["labels"])
        w.flush()
        w.close()

    def _export(self, learner, strategy, seed, target: Path, rnd):
        from aift_tf.export import export_model

        provenance = {
            "strategy": strategy, "learning": learner.learning, "round": int(rnd), "seed": int(seed),
            "labeled": int(learner.labeled_ids.size), "data": self.saved["data"]["path"],
            "data_sha256": self.saved["data"]["sha256"], "model": self.cfg.model,
            "m0": self.m0.get("path") or self.m0.get("source"), "run": str(self.out),
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        export_model(learner.model, target, patches_per_candidate=int(self.store.m), provenance=provenance)

    def _final_export_dir(self, strategy, seed):
        return self.out / "models" / slug(strategy) / f"seed{seed}"

    def _final_export_done(self, strategy, seed):
        d = self._final_export_dir(strategy, seed)
        return (d / ".final").is_file()

    def _do_final_export(self, learner, strategy, seed):
        """Export the final model into models/<strategy>/seed<k>/ (next to any round<r>/ exports)."""
        d = self._final_export_dir(strategy, seed)
        d.mkdir(parents=True, exist_ok=True)
        staging = d / ".final-export"
        shutil.rmtree(staging, ignore_errors=True)
        self._export(learner, strategy, seed, staging / "model", learner.round)
        for item in (staging / "model").iterdir():
            dest = d / item.name
            if dest.exists():
                shutil.rmtree(dest) if dest.is_dir() and not dest.is_symlink() else dest.unlink()
            os.replace(item, dest)
        shutil.rmtree(staging, ignore_errors=True)
        write_text_atomic(d / ".final", f"round {learner.round}\n")

    def run_active(self, strategy, seed):
        from aift_tf.learner import ActiveLearner

        cfg, sizes = self.cfg, self.plan["sizes"]
        n_rounds = len(sizes)
        sdir = self.out / "state" / slug(strategy) / f"seed{seed}"
        r, latest = _latest(sdir)
        label = self._label(strategy, seed)
        need_export = cfg.export and not self._final_export_done(strategy, seed)
        if r == n_rounds and not need_export:
            self.rows[(strategy, seed)] = _read_rows(latest)
            return
        cb = self.progress.stage(label)
        if latest is not None:
            learner = ActiveLearner.load(latest / "learner", self.store, progress=cb,
                                         **self._speed_options(cfg.trainable))
            rows = _read_rows(latest)
        else:
            learner = ActiveLearner(
                self.store, model_name=cfg.model, weights=self.m0["weights"], trainable=cfg.trainable,
                strategy=strategy, learning=self._learning_for(strategy), omega=cfg.omega,
                finetune=self._finetune_config(seed, self.plan["epochs"]), seed=seed, progress=cb,
                val_split=VAL_SPLIT, **self._speed_options(cfg.trainable),
            )
            # every strategy of a seed starts from the same M0: evaluate it once per seed
            ev = self._m0_eval.get(seed)
            if ev is None:
                ev = self._m0_eval[seed] = self._evaluate(learner)
            rows = [self._row(strategy, seed, 0, 0, 0, ev, 0.0, 0.0)]
            _save_round(sdir, 0, rows, learner, ev)
            self.rows[(strategy, seed)] = rows
            self.flush_csv()
            self._tb_eval(strategy, seed, rows[-1])
            self.progress.line(f"{strategy:>24} seed {seed} round 0: {0:5d} labels  AUC {ev['auc']:.4f}  (M0)")
        while learner.round < n_rounds:
            rnd = learner.round + 1
            b = sizes[rnd - 1]
            if rnd == 1 and self.plan["initial"] > 0:
                ids, scoring = self._initial_ids(seed), 0.0
            else:
                ids, _ = learner.query(b)
                scoring = float(getattr(learner, "last_query_seconds", 0.0))
            cbs = [tensorboard_callback(self.out / "tb" / slug(strategy) / f"seed{seed}" / f"round{rnd}")]
            bar = self.progress.epochs_callback(f"{label} r{rnd}")
            if bar is not None:
                cbs.append(bar)
            rec = learner.teach(ids, self.store.labels[ids], callbacks=cbs, verbose=0)
            ev = self._evaluate(learner)
            row = self._row(strategy, seed, rnd, rec["labels"], rec["positives"], ev,
                            rec["finetune"].get("seconds", 0.0), scoring)
            rows = rows + [row]
            if cfg.export_every_round:  # before the state: a crash in between re-does (and re-exports) the round
                self._export(learner, strategy, seed, self._final_export_dir(strategy, seed) / f"round{rnd}", rnd)
            self._tb_eval(strategy, seed, row)
            _save_round(sdir, rnd, rows, learner, ev)
            self.rows[(strategy, seed)] = rows
            self.flush_csv()
            self.progress.advance()
            self.progress.line(f"{strategy:>24} seed {seed} round {rnd}: {row['labels']:5d} labels  "
                               f"AUC {row['test_auc']:.4f}  positives {row['positives_found']}")
        if cfg.export and not self._final_export_done(strategy, seed):
            self._do_final_export(learner, strategy, seed)

    def run_full(self, name, seed):
        """Full training (M0 fine-tuned on the whole pool) or training from scratch; one row."""
        from aift_tf.learner import ActiveLearner

        sdir = self.out / "state" / name / f"seed{seed}"
        r, latest = _latest(sdir)
        if latest is not None:
            self.rows[(name, seed)] = _read_rows(latest)
            return
        cfg = self.cfg
        label = self._label(name, seed)
        weights = self.m0["weights"] if name == FULL else None
        trainable = cfg.trainable if name == FULL else "all"
        learner = ActiveLearner(
            self.store, model_name=cfg.model, weights=weights, trainable=trainable, strategy="random",
            learning="RFT", finetune=self._finetune_config(seed, self.plan["full_epochs"]), seed=seed, val_split=VAL_SPLIT,
            progress=self.progress.stage(label), **self._speed_options(trainable),
        )
        pool = self.store.ids("train")
        cbs = [tensorboard_callback(self.out / "tb" / name / f"seed{seed}" / "round1")]
        bar = self.progress.epochs_callback(label)
        if bar is not None:
            cbs.append(bar)
        rec = learner.teach(pool, self.store.labels[pool], callbacks=cbs, verbose=0)
        ev = self._evaluate(learner)
        row = self._row(name, seed, 1, rec["labels"], rec["positives"], ev, rec["finetune"].get("seconds", 0.0), 0.0)
        _save_round(sdir, 1, [row], None, ev, extra={"epochs": self.plan["full_epochs"], "weights": weights})
        self.rows[(name, seed)] = [row]
        self.flush_csv()
        self._tb_eval(name, seed, row)
        self.progress.advance()
        what = "full training" if name == FULL else "from scratch"
        self.progress.line(f"{name:>24} seed {seed} ({what}): {row['labels']:5d} labels  AUC {row['test_auc']:.4f}")


# ----------------------------------------------------------------------------------------------
# entry point


def new_run_config(cfg: SimConfig, store_path: Path, store, plan: dict, m0: dict, argv=None) -> dict:
    return {
        "format": CONFIG_FORMAT,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": list(argv) if argv is not None else None,
        "command_line": " ".join(_quote(a) for a in argv) if argv is not None else None,
        "settings": cfg.to_dict(),
        "plan": plan,
        "m0": m0,
        "data": {
            "path": str(store_path), "sha256": store.sha256, "app": store.app, "n": int(store.n),
            "m": int(store.m), "patch_shape": list(store.patch_shape), "class_names": list(store.class_names),
            "split_counts": {k: int(v) for k, v in store.split_counts().items()},
            "froc": froc_applies(store), "attrs": store.attrs,
        },
        "versions": _versions(),
        "machine": {"node": platform.node(), "platform": platform.platform(), "cpu_count": os.cpu_count()},
        "notes": {
            "seeds": "seed k (0..seeds-1) builds M0's head/initialisation, seeds the learner's query RNG and "
                     "fine-tuning (seed + 1000*round); every strategy of a seed starts from the same M0",
            "full_training": "M0 fine-tuned once on the whole labeled pool for plan.full_epochs epochs",
        },
    }


def _quote(a: str) -> str:
    import shlex

    return shlex.quote(str(a))


def default_out_dir(cfg: SimConfig) -> Path:
    """`runs/<YYYYmmdd-HHMMSS>-<app or store name>` under the current folder."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{cfg.app or Path(cfg.data).stem}"


def run_experiment(config: Optional[SimConfig], out=None, *, resume: bool = False, quiet: bool = True,
                   argv=None, cache_dir=None, explicit: Optional[dict] = None) -> dict:
    """Run (or resume) a simulation and write the run folder; returns the summary dict.

    Args:
        config: the settings; ignored with `resume=True` (the run's config.json is used).
        out: run folder; default `runs/<timestamp>-<app>` under the current folder.
        resume: continue the run in `out` (finished jobs are kept; the report is rebuilt).
        quiet: no progress bars or lines.
        argv: the command line, recorded in config.json.
        cache_dir: where app stores are generated/cached (default $AIFT_CACHE or ~/.cache/aift-tf).
        explicit: with `resume`, settings given explicitly by the user; any that differs from the
            run's raises AiftError.
    """
    from aift_tf.store import open_store

    t_start = time.perf_counter()
    if resume:
        if out is None:
            raise AiftError("--resume needs --out DIR (the run to continue)")
        out = Path(out).expanduser().resolve()
        saved = load_run_config(out)
        if explicit:
            bad = resume_conflicts(saved["settings"], explicit)
            if bad:
                k, mine, theirs = bad[0]
                raise AiftError(f"--resume: --{k.replace('_', '-')} {mine} conflicts with the run's setting "
                                f"{theirs!r} in {out / 'config.json'} (drop the option or start a new run)")
        store_path = Path(saved["data"]["path"])
        if not store_path.exists() and saved["settings"].get("app"):
            cfg0 = SimConfig.from_dict(saved["settings"])
            store_path = store_path_for(cfg0, cache_dir=cache_dir)
        store = open_store(store_path)
        if store.sha256 != saved["data"]["sha256"]:
            store.close()
            raise AiftError(f"--resume: {store_path} has changed since the run started (sha256 "
                            f"{store.sha256[:12]}…, run has {saved['data']['sha256'][:12]}…)")
    else:
        cfg = check_config(config if config is not None else SimConfig())
        if out is None:
            out = default_out_dir(cfg)
        out = check_new_out_dir(out)
        gen_bar = None
        if cfg.data is None and not quiet:
            from tqdm.auto import tqdm

            gen_bar = tqdm(desc=f"generating {cfg.app} ({cfg.scale})", unit="item", leave=False)

            def gen_progress(done, total):
                gen_bar.total = total
                gen_bar.n = done
                gen_bar.refresh()
        else:
            gen_progress = None
        try:
            store_path = store_path_for(cfg, cache_dir=cache_dir, progress=gen_progress)
        finally:
            if gen_bar is not None:
                gen_bar.close()
        store = open_store(store_path)
        try:
            plan = plan_run(cfg, store)
            m0 = resolve_m0(cfg, store.patch_shape)
        except BaseException:
            store.close()
            raise
        saved = new_run_config(cfg, store_path, store, plan, m0, argv)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "config.json", saved)

    try:
        from aift_tf._cli import quiet_tensorflow

        quiet_tensorflow()
        prog = Progress(quiet=quiet)
        from simulate.apps import default_cache_dir

        trunk_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        trunk_dir = trunk_dir / "trunk"
        trunk_dir.mkdir(parents=True, exist_ok=True)
        exp = Experiment(out, saved, store, prog, trunk_cache_dir=trunk_dir)
        done = exp.load_existing()
        if prog.outer is not None:
            prog.outer.total = exp.total_units()
            prog.outer.n = min(done, exp.total_units())
            prog.outer.refresh()
        m0 = saved["m0"]
        prog.line(f"run folder: {out}")
        prog.line(f"data: {saved['data']['path']} (pool {saved['plan']['pool_size']}, test {saved['plan']['test_size']})")
        prog.line(f"M0: {m0.get('path') or m0.get('source')}" + (f" — {m0['note']}" if m0.get("note") else ""))
        if resume and done:
            prog.line(f"resuming: {done} finished round(s) found")
        t_loop = time.perf_counter()
        try:
            exp.run()
        finally:
            prog.close()
        exp.flush_csv()
        from simulate.report import build_report

        runtime = {"this_invocation_seconds": round(time.perf_counter() - t_start, 2),
                   "loop_seconds": round(time.perf_counter() - t_loop, 2), "resumed": bool(resume)}
        summary = build_report(out, runtime=runtime)
        if not quiet:
            print(f"report: {out / 'report.md'}", flush=True)
        return summary
    finally:
        store.close()
