"""An `aift-sim` run's configuration as one typed object: built and validated once, written once, read back once.

:class:`RunConfig` is what a run folder's config.json holds: the validated settings (:class:`simulate.config.SimConfig`,
checked by :func:`simulate.config.check_config`, the one validation function, which the command line and the
Python API both pass through), the plan (:class:`RunPlan`, from :func:`simulate.config.plan_run`), M0, the data,
versions and the command line. A new run builds it in :func:`new_run` (and writes it through
:func:`simulate.run_folder.write_config`); a resumed run or a worker process reads it back in :func:`read_run`.
Both are frozen: nothing changes a run's configuration after it is written. The JSON is the same as the dicts
these objects replace (``to_dict``), so run folders written before them resume.

Example::

    from simulate.plan import read_run
    run = read_run("runs/demo")
    run.plan.query_size, run.settings.strategies, run.data["path"]
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import shlex
from pathlib import Path
from typing import Optional

from aift_tf.errors import AiftError, check_known_fields
from simulate import run_folder as rf
from simulate.config import SimConfig, check_config, plan_run, resume_conflicts
from simulate.m0 import resolve_m0


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunPlan:
    """The plan of a run (:func:`simulate.config.plan_run` resolves it from the settings and the store; its
    docstring says what each field means). Fields that runs written by older versions lack are ``None``."""

    seeds: int
    query_size: int
    rounds: int
    budget: int
    initial: dict
    num_classes: Optional[int] = None
    class_names: Optional[list] = None
    pool_class_counts: Optional[list] = None
    test_class_counts: Optional[list] = None
    test_classes_missing: Optional[list] = None
    steps: Optional[int]
    epochs: Optional[int]
    lr: float
    full_epochs: int
    full_patience: int
    full_seeds: int
    early_stopping_split: Optional[str]
    target_delta: float
    pool_size: int
    test_size: int
    stop: Optional[dict] = None
    max_labels: Optional[int] = None  # None: a run from before the rounds past the budget (it stops at the planned)
    extra_growth: Optional[float] = None
    round_passes: Optional[float] = None  # None: exactly `steps` per round
    until_target: Optional[str] = None

    def to_dict(self) -> dict:
        """config.json's ``plan`` (the keys in :func:`simulate.config.plan_run`'s order)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunPlan":
        check_known_fields(cls, d, "plan field")
        return cls(**d)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything a run folder's config.json holds (see :mod:`simulate.run_folder`), typed; the record-only
    fields (when, how, where) may be missing from a run folder written by hand."""

    format: int
    created: Optional[str] = None
    command: Optional[list] = None
    command_line: Optional[str] = None
    settings: SimConfig
    plan: RunPlan
    m0: dict
    data: dict
    versions: Optional[dict] = None
    machine: Optional[dict] = None
    notes: Optional[dict] = None

    def to_dict(self) -> dict:
        """config.json's content (key order as written since format 2)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dict(d, settings=self.settings.to_dict(), plan=self.plan.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        check_known_fields(cls, d, "run configuration field")
        return cls(**dict(d, settings=SimConfig.from_dict(d["settings"]), plan=RunPlan.from_dict(d["plan"])))


NOTES = {
    "seeds": "seed k (0..seeds-1) builds M0's head, draws the initial random set, seeds the learner's "
             "query RNG and fine-tuning (seed + 1000*round); every strategy of a seed shares them",
    "full_training": "M0 fine-tuned on the whole labeled pool with the rounds' recipe until the validation "
                     "AUC stops improving (at most plan.full_epochs epochs); it may use validation labels",
    "rounds": "plan.rounds query rounds after the initial set (plan.budget labels); past them every strategy "
              "x seed keeps querying until its curve crosses target.json's target (plan.until_target) or "
              "has plan.max_labels labels; each round trains max(plan.steps, plan.round_passes passes over "
              "the labeled patches) gradient steps",
}


def froc_applies(store) -> bool:
    """FROC (sensitivity at FPs per volume) is reported for binary PE-like stores (candidates grouped by volume)."""
    attrs = store.attrs or {}
    if int(store.num_classes) != 2:  # positives vs false positives: binary stores only
        return False
    return store.app == "pulmonary-embolism" or attrs.get("group_kind") == "volume"


def _versions() -> dict:
    import numpy as np

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


def run_config(cfg: SimConfig, store_path: Path, store, plan: RunPlan, m0: dict, argv=None) -> RunConfig:
    """The :class:`RunConfig` of a new run (``cfg`` validated, ``plan`` planned on ``store``)."""
    return RunConfig(
        format=rf.CONFIG_FORMAT,
        created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        command=list(argv) if argv is not None else None,
        command_line=" ".join(shlex.quote(str(a)) for a in argv) if argv is not None else None,
        settings=cfg, plan=plan, m0=m0,
        data={
            "path": str(store_path), "sha256": store.sha256, "app": store.app, "n": int(store.n),
            "m": int(store.m), "patch_shape": list(store.patch_shape), "class_names": list(store.class_names),
            "split_counts": {k: int(v) for k, v in store.split_counts().items()},
            "froc": froc_applies(store), "attrs": store.attrs,
        },
        versions=_versions(),
        machine={"node": platform.node(), "platform": platform.platform(), "cpu_count": os.cpu_count()},
        notes=dict(NOTES),
    )


def new_run_config(cfg: SimConfig, store_path: Path, store, plan, m0: dict, argv=None) -> dict:
    """config.json's content of a new run (:func:`run_config` as a dict)."""
    plan = plan if isinstance(plan, RunPlan) else RunPlan.from_dict(plan)
    return run_config(cfg, store_path, store, plan, m0, argv).to_dict()


def store_path_for(cfg: SimConfig, cache_dir=None, progress=None) -> Path:
    """The candidate store of the run: `--data`, or the (cached, generated once) app store."""
    if cfg.data is not None:
        return Path(cfg.data)
    from simulate.apps import cached_store

    return Path(cached_store(cfg.app, scale=cfg.scale, seed=cfg.app_seed, cache_dir=cache_dir,
                             progress=progress)).resolve()


def default_out_dir(cfg: SimConfig) -> Path:
    """`runs/<YYYYmmdd-HHMMSS>-<app or store name>` under the current folder."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{cfg.app or Path(cfg.data).stem}"


def read_run(out) -> RunConfig:
    """The run folder's configuration, read back (raises AiftError if `out` is not a run)."""
    return RunConfig.from_dict(rf.load_config(out))


def new_run(config: Optional[SimConfig], out, quiet, argv, cache_dir):
    """Validate the settings (:func:`simulate.config.check_config`), open the store, plan the run, resolve M0 and
    write config.json into the new run folder `out`: ``(out, RunConfig, open store)``."""
    from aift_tf.progress import Progress
    from aift_tf.store import open_store

    cfg = check_config(config if config is not None else SimConfig())
    out = rf.check_new_out_dir(out if out is not None else default_out_dir(cfg))

    bars = Progress(quiet=quiet or cfg.data is not None)
    try:
        store_path = store_path_for(cfg, cache_dir=cache_dir,
                                    progress=None if bars.quiet else bars.counter(f"generating {cfg.app} ({cfg.scale})",
                                                                                  "item"))
    finally:
        bars.close()
    store = open_store(store_path)
    try:
        plan = RunPlan.from_dict(plan_run(cfg, store))
        if cfg.m0 == "self-supervised" and cache_dir is None:
            from aift_tf.files import default_cache_dir

            cache_dir = default_cache_dir()
        m0 = resolve_m0(cfg, store.patch_shape, store=store, cache_dir=cache_dir, progress=not quiet)
    except BaseException:
        store.close()
        raise
    run = run_config(cfg, store_path, store, plan, m0, argv)
    rf.write_config(out, run.to_dict())
    return out, run, store


def resumed_run(out, cache_dir, explicit):
    """Read back the run in `out` and open its store (unchanged since the run started): ``(out, RunConfig, store)``.

    ``explicit``: settings the user gave again; one that differs from the run's raises AiftError."""
    from aift_tf.store import open_store

    if out is None:
        raise AiftError("--resume needs --out DIR (the run to continue)")
    out = Path(out).expanduser().resolve()
    try:
        saved = rf.load_config(out)
    except AiftError as e:
        raise AiftError(f"--resume: {e}") from None
    if explicit:
        bad = resume_conflicts(saved["settings"], explicit)
        if bad:
            k, mine, theirs = bad[0]
            raise AiftError(f"--resume: --{k.replace('_', '-')} {mine} conflicts with the run's setting "
                            f"{theirs!r} in {rf.config_path(out)} (drop the option or start a new run)")
    run = RunConfig.from_dict(saved)
    store_path = Path(run.data["path"])
    if not store_path.exists() and run.settings.app:
        store_path = store_path_for(run.settings, cache_dir=cache_dir)
    store = open_store(store_path)
    if store.sha256 != run.data["sha256"]:
        store.close()
        raise AiftError(f"--resume: {store_path} has changed since the run started (sha256 "
                        f"{store.sha256[:12]}…, run has {run.data['sha256'][:12]}…)")
    return out, run, store
