"""One validated `aift-sim` configuration and the plan of a run (rounds, round size, seeds, initial sets).

:class:`SimConfig` holds every setting as the user gave it (``None`` = "the default for this store");
:func:`check_config` validates it once, at the boundary; :func:`plan_run` resolves the defaults that
depend on the store. Nothing here imports TensorFlow.

The protocol (the defaults and why, docs/results/PROTOCOL.md):

* **paired seeds**: seed k fixes M0's new head, the initial random set, the queries' RNG and the
  fine-tuning order; every strategy of seed k shares them and the test set;
* **cold start**: before round 1 candidates are drawn at random from the pool until every class has
  at least :data:`INITIAL_PER_CLASS` labels and at least ``initial`` candidates are drawn (default: one
  round's worth, so the new head is not fitted on 4 labels); every draw is a label spent; M0's new head
  is fitted on that set in round 1;
* **budget**: :data:`DEFAULT_BUDGET_FRACTION` of the pool (at most :data:`DEFAULT_BUDGET_CAP` labels) in
  :data:`DEFAULT_ROUNDS` rounds after the initial set, so each curve has 10 points (M0, the initial set, 8 rounds);
* **rounds until the target**: past the planned rounds, every strategy x seed keeps querying until the
  isotonic fit of its curve crosses the fixed target (:func:`crossed`), or it has ``max_labels`` labels
  (default: the whole pool, at most :data:`DEFAULT_MAX_LABELS_FACTOR` x the planned budget); each extra round queries :func:`extra_round_size` candidates (the planned
  query size, growing geometrically with the labels so far: the same schedule for every strategy of a seed);
* **fine-tuning**: gradient steps per round at a low learning rate, BatchNorm in inference mode (Keras's
  transfer-learning recipe): at least ``steps``, and at least ``round_passes`` passes over the labeled
  patches, so a round's training grows with the labeled set; full training (the ceiling) uses the same
  rate, trained until the validation AUC stops improving.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np

from aift_tf.checks import check_choice, check_int, check_number, invalid
from aift_tf.errors import AiftError, check_known_fields
from aift_tf.zoo.pretrained import M0_CHOICES
from simulate.run_folder import RESERVED

#: the two random baselines (issue: journal's RFT restarts from M0 each round; continual isolates selection)
RANDOM_BASELINES = {"random": None, "random-rft": "RFT"}
DEFAULT_STRATEGIES = ("aift", "random", "random-rft")
DEFAULT_SEEDS = 10
#: full training (the ceiling) runs on the first seeds only: it costs as much as a whole strategy's run on a CPU
DEFAULT_FULL_SEEDS = 3
DEFAULT_ROUNDS = 8
DEFAULT_BUDGET_FRACTION = 0.45
DEFAULT_BUDGET_CAP = 2000
INITIAL_PER_CLASS = 2
#: a class under this share of the pool is rare: the report says how many draws the initial set took
RARE_CLASS_SHARE = 0.05
#: fine-tuning recipe per scale: gradient steps per round, learning rate, full-training epoch cap and patience
#: (protocol tuning on the simulated PE app only, written down in docs/results/PROTOCOL.md)
SCALE_DEFAULTS = {
    "quick": dict(steps=80, lr=5e-4, full_epochs=30, full_patience=3),
    "paper": dict(steps=200, lr=5e-4, full_epochs=30, full_patience=3),
}
#: each round trains at least this many passes over its labeled patches (the step count is the floor)
DEFAULT_ROUND_PASSES = 4.0
#: past the planned rounds a round queries max(query size, ceil(EXTRA_GROWTH x labels so far))
EXTRA_GROWTH = 0.25
#: default cap on a strategy x seed's labels: the whole pool, at most this many times the planned budget
DEFAULT_MAX_LABELS_FACTOR = 4
#: settings that may be given again with --resume without conflicting (they do not change results)
RESUME_NEUTRAL = ("quiet", "out", "resume", "cache_dir")


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Every setting of a simulation run (see `aift-sim --help` for their meaning); frozen: :func:`check_config`
    returns a validated copy, which a run keeps unchanged (config.json's ``settings``).

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
    max_per_group: Optional[int] = None  # no query takes more than K candidates of one group (every strategy)
    query_size: Optional[int] = None
    rounds: Optional[int] = None
    budget: Optional[int] = None
    seeds: Optional[int] = None
    model: str = "small_cnn"
    weights: Optional[str] = None  # None = default M0 if one exists, else none
    m0: Optional[str] = None  # None/"offline" = --weights decides; "self-supervised" = SimCLR on this store's pool
    trainable: str = "top"
    steps: Optional[int] = None
    epochs: Optional[int] = None
    early_stopping: bool = False
    full_epochs: Optional[int] = None
    full_patience: Optional[int] = None
    full_seeds: Optional[int] = None
    lr: Optional[float] = None
    train_batch_size: int = 64
    initial: Optional[int] = None  # None = one round's worth (see plan_run)
    target_delta: float = 0.01
    max_labels: Optional[int] = None  # None = the whole pool: rounds past the budget stop there at the latest
    round_passes: Optional[float] = None  # None = DEFAULT_ROUND_PASSES; 0 = exactly `steps` per round
    export: bool = True
    export_every_round: bool = False
    scratch: bool = False
    cache_trunk: Optional[bool] = None  # None = on whenever trainable is top/head
    distribute: str = "none"
    stop: Optional[str] = None  # a stopping rule to evaluate, "kappa:THRESHOLD:K" (aift_tf.stopping)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["strategies"] = list(self.strategies)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SimConfig":
        check_known_fields(cls, d, "setting")
        d = dict(d)
        if isinstance(d.get("strategies"), list):
            d["strategies"] = tuple(d["strategies"])
        return cls(**d)


def canonical_strategy(text: str) -> str:
    """Validate a strategy string and return its canonical, path-safe spelling."""
    from aift_tf.selection import BASELINES, parse_strategy

    s = str(text).strip().lower()
    if s in RANDOM_BASELINES:
        return s
    method, alpha = parse_strategy(text)
    if s == "aift" or method in BASELINES:
        return s
    if "@" in s:
        return f"{method}@{alpha:g}"
    return method


def selection_of(strategy: str) -> str:
    """The selection method behind a strategy name (both random baselines select at random)."""
    return "random" if strategy in RANDOM_BASELINES else strategy


def is_random_baseline(strategy: str) -> bool:
    return strategy in RANDOM_BASELINES


def parse_strategies(value) -> tuple:
    """`"aift, random"` or a list -> canonical tuple; unknown names and bad alpha raise AiftError."""
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [str(x).strip() for x in items if str(x).strip()]
    if not items:
        raise AiftError("no strategy given; e.g. --strategies aift,random")
    out = []
    for item in items:
        c = canonical_strategy(item)
        if c in RESERVED:
            raise AiftError(f"strategy name {c!r} is reserved")
        if c in out:
            raise AiftError(f"strategy {item!r} is given twice")
        out.append(c)
    return tuple(out)


def check_config(cfg: SimConfig) -> SimConfig:
    """Validate and canonicalise the settings that do not need the store. Returns a new config."""
    from aift_tf.finetune import check_learning
    from simulate.apps import APP_NAMES, SCALES

    c = SimpleNamespace(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})  # checked, then frozen
    if c.data is not None:
        c.app = None
        c.data = str(Path(c.data).expanduser().resolve())
    else:
        if c.app is None:
            raise AiftError("give --app NAME or --data STORE.h5")
        check_choice(c.app, "app", APP_NAMES)
    check_choice(c.scale, "scale", SCALES)
    c.app_seed = check_int(c.app_seed, "app_seed", 0, coerce=True)
    c.strategies = parse_strategies(c.strategies)
    c.learning = check_learning(c.learning)
    if c.random_learning is not None:
        c.random_learning = check_learning(c.random_learning)
    c.omega = check_number(c.omega, "omega", low=1, coerce=True)
    c.max_per_group = check_int(c.max_per_group, "max_per_group", 1, optional=True, coerce=True)
    c.query_size = check_int(c.query_size, "query_size", 1, optional=True, coerce=True)
    c.rounds = check_int(c.rounds, "rounds", 1, optional=True, coerce=True)
    c.budget = check_int(c.budget, "budget", 1, optional=True, coerce=True)
    if c.rounds is not None and c.budget is not None and c.query_size is not None:
        raise AiftError(f"give at most two of --rounds, --budget and --query-size (got rounds {c.rounds}, "
                        f"budget {c.budget}, query size {c.query_size})")
    c.seeds = check_int(c.seeds, "seeds", 1, optional=True, coerce=True)
    from aift_tf.zoo import MODEL_NAMES, POLICIES

    check_choice(c.model, "model", MODEL_NAMES)
    check_choice(c.trainable, "trainable", POLICIES)
    if c.weights is not None:
        from aift_tf.zoo.pretrained import WEIGHTS_CHOICES, parse_weights

        w = str(c.weights)
        # "default" (deprecated, hidden): the same as not giving weights (the offline M0, else random init)
        c.weights = w.lower() if w.lower() in WEIGHTS_CHOICES + ("default",) else parse_weights(w)
    if c.m0 is not None:
        c.m0 = str(c.m0).strip().lower()
        if c.m0 not in M0_CHOICES:
            raise invalid("m0", f"one of {', '.join(M0_CHOICES)}", cfg.m0)
        if c.m0 == "offline":
            c.m0 = None
        elif c.weights not in (None, "default"):
            raise AiftError(f"give --m0 self-supervised or --weights {c.weights}, not both")
    c.steps = check_int(c.steps, "steps", 1, optional=True, coerce=True)
    c.epochs = check_int(c.epochs, "epochs", 1, optional=True, coerce=True)
    if c.steps is not None and c.epochs is not None:
        raise AiftError(f"give --steps or --epochs per round, not both (got steps {c.steps}, epochs {c.epochs})")
    c.early_stopping = bool(c.early_stopping)
    c.full_epochs = check_int(c.full_epochs, "full_epochs", 1, optional=True, coerce=True)
    c.full_patience = check_int(c.full_patience, "full_patience", 1, optional=True, coerce=True)
    c.full_seeds = check_int(c.full_seeds, "full_seeds", 1, optional=True, coerce=True)
    c.lr = check_number(c.lr, "lr", low=0, low_open=True, optional=True, coerce=True)
    c.train_batch_size = check_int(c.train_batch_size, "train_batch_size", 1, coerce=True)
    c.initial = check_int(c.initial, "initial", 0, optional=True, coerce=True)
    c.target_delta = check_number(c.target_delta, "target_delta", low=0, high=0.5, coerce=True)
    c.max_labels = check_int(c.max_labels, "max_labels", 1, optional=True, coerce=True)
    c.round_passes = check_number(c.round_passes, "round_passes", low=0, optional=True, coerce=True)
    c.export = bool(c.export)
    c.export_every_round = bool(c.export_every_round)
    c.scratch = bool(c.scratch)
    from aift_tf.distribute import canonical_name
    from aift_tf.trunk_cache import check_cacheable

    c.distribute = canonical_name(c.distribute)
    if c.stop is not None:
        from aift_tf.stopping import parse_stop_rule

        c.stop = parse_stop_rule(c.stop)["text"]
    if c.cache_trunk is None:
        c.cache_trunk = c.trainable != "all"
    c.cache_trunk = bool(c.cache_trunk)
    if c.cache_trunk:
        check_cacheable(c.trainable, augment=False)
    return SimConfig(**vars(c))


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


# ----------------------------------------------------------------------------------------------
# the plan


def draw_initial(pool_ids, pool_labels, seed: int, minimum: int = 0, per_class: int = INITIAL_PER_CLASS,
                 num_classes: int = 2) -> np.ndarray:
    """The cold-start set of seed `seed` (:func:`aift_tf.selection.cold_start` with the pool's true labels
    as the oracle): shared by every strategy of the seed."""
    from aift_tf.selection import cold_start

    return cold_start(pool_ids, pool_labels, seed, minimum=minimum, per_class=per_class, num_classes=num_classes)


def plan_run(cfg: SimConfig, store) -> dict:
    """Resolve the defaults that depend on the store and check the label budget against the pool.

    Any K >= 2 classes: for K > 2 every AUC of the run is the macro one-vs-rest AUC (:func:`aift_tf.metrics.auc`);
    a class the test split lacks is left out of it (listed in ``test_classes_missing``).

    Returns a dict (config.json's ``plan``; a run holds it as :class:`simulate.plan.RunPlan`): seeds, query_size (candidates per round), rounds, budget (nominal labels: mean
    initial set + rounds x query size), initial (the rule and each seed's size), steps / epochs per
    round, lr, full_epochs, full_patience, full_seeds (the first seeds get full training), early_stopping_split, target_delta, pool_size, test_size;
    num_classes, class_names, pool_class_counts, test_class_counts, test_classes_missing; initial.rare_classes
    (classes under :data:`RARE_CLASS_SHARE` of the pool) and initial.draws_min / draws_max (draws over the seeds);
    max_labels (the cap of the rounds past the budget), extra_growth (:func:`extra_round_size`), round_passes
    (each round trains at least that many passes over its labeled patches; None = exactly ``steps``),
    until_target (the rule, in words).
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
    d = SCALE_DEFAULTS["paper" if cfg.scale == "paper" and cfg.data is None else "quick"]
    seeds = cfg.seeds if cfg.seeds is not None else DEFAULT_SEEDS
    labels = store.labels[pool]
    R, b, B = cfg.rounds, cfg.query_size, cfg.budget
    if B is not None and B > n_pool:
        raise AiftError(f"budget {B} labels is larger than the pool of {n_pool} candidates")
    minimum = cfg.initial
    if minimum is None:  # one round's worth: the budget split into the initial set + the query rounds
        R0 = R if R is not None else DEFAULT_ROUNDS
        B0 = B if B is not None else min(int(round(DEFAULT_BUDGET_FRACTION * n_pool)), DEFAULT_BUDGET_CAP)
        minimum = b if b is not None else B0 // (R0 + 1)
    if minimum >= n_pool:
        raise AiftError(f"initial {minimum} random labels is not less than the pool of {n_pool} candidates")
    K = int(store.num_classes)
    short = [k for k in range(K) if int(np.sum(labels == k)) < INITIAL_PER_CLASS]
    if short:
        k = short[0]
        raise AiftError(f"{store.path}: class {k} ({store.class_names[k]!r}) of the {K} class names has "
                        f"{int(np.sum(labels == k))} pool candidate(s); the cold start needs {INITIAL_PER_CLASS} of "
                        f"every class (are the class names right?)")
    sizes = {str(s): int(draw_initial(pool, labels, s, minimum, num_classes=K).size) for s in range(seeds)}
    init_max = max(sizes.values())
    init_mean = float(np.mean(list(sizes.values())))
    avail = n_pool - init_max
    if avail < 1:
        raise AiftError(f"the initial random set takes the whole pool of {n_pool} candidates")
    if B is not None:  # B <= n_pool: checked above
        if B <= init_max:
            raise AiftError(f"budget {B} leaves nothing to query after the initial random set "
                            f"(up to {init_max} labels on these seeds)")
        q = B - round(init_mean)
        if b is None:
            R = R if R is not None else min(DEFAULT_ROUNDS, q)
            b = max(1, math.ceil(q / R))
        else:
            R = max(1, math.ceil(q / b))
    else:
        if b is None:
            q = max(1, min(int(round(DEFAULT_BUDGET_FRACTION * n_pool)), DEFAULT_BUDGET_CAP) - round(init_mean))
            R = R if R is not None else min(DEFAULT_ROUNDS, q)  # a tiny pool gets fewer rounds of >= 1
            b = max(1, q // R)
        elif R is None:
            R = DEFAULT_ROUNDS
    if R * b > avail:
        raise AiftError(f"budget {init_max + R * b} labels ({R} rounds x {b} after an initial set of up to "
                        f"{init_max}) is larger than the pool of {n_pool} candidates")
    planned_max = init_max + R * b  # the most labels a seed has after the planned rounds
    cap = cfg.max_labels if cfg.max_labels is not None else min(n_pool, DEFAULT_MAX_LABELS_FACTOR * planned_max)
    if cap > n_pool:
        raise AiftError(f"max_labels {cap} is larger than the pool of {n_pool} candidates")
    if cap < planned_max:
        raise AiftError(f"max_labels {cap} is below the planned budget ({planned_max} labels: {R} rounds x {b} "
                        f"after an initial set of up to {init_max}); give at least {planned_max}")
    passes = DEFAULT_ROUND_PASSES if cfg.round_passes is None else float(cfg.round_passes)
    pool_counts = np.bincount(labels, minlength=K)
    rare = [{"class": int(k), "name": str(store.class_names[k]), "share": float(pool_counts[k] / n_pool)}
            for k in range(K) if pool_counts[k] / n_pool < RARE_CLASS_SHARE]
    test_counts = np.bincount(store.labels[test_labeled], minlength=K)
    val = store.ids("val")
    val_labeled = val[store.labels[val] >= 0]
    has_val = val_labeled.size > 0 and np.unique(store.labels[val_labeled]).size >= 2
    steps = cfg.steps if cfg.steps is not None else (None if cfg.epochs is not None else d["steps"])
    return dict(
        seeds=int(seeds), query_size=int(b), rounds=int(R), budget=int(round(init_mean) + R * b),
        initial={"rule": f"random draws until every class has >= {INITIAL_PER_CLASS} labels, at least "
                         f"{minimum} draws", "minimum": int(minimum), "per_class": INITIAL_PER_CLASS,
                 "sizes": sizes, "mean": init_mean, "draws_min": int(min(sizes.values())), "draws_max": init_max,
                 "rare_classes": rare},
        num_classes=K, class_names=[str(c) for c in store.class_names],
        pool_class_counts=[int(v) for v in pool_counts], test_class_counts=[int(v) for v in test_counts],
        test_classes_missing=[int(k) for k in range(K) if test_counts[k] == 0],
        steps=None if steps is None else int(steps), epochs=None if cfg.epochs is None else int(cfg.epochs),
        lr=float(cfg.lr if cfg.lr is not None else d["lr"]),
        full_epochs=int(cfg.full_epochs if cfg.full_epochs is not None else d["full_epochs"]),
        full_patience=int(cfg.full_patience if cfg.full_patience is not None else d["full_patience"]),
        full_seeds=int(min(seeds, cfg.full_seeds if cfg.full_seeds is not None else DEFAULT_FULL_SEEDS)),
        early_stopping_split="val" if has_val else None,
        target_delta=float(cfg.target_delta), pool_size=n_pool, test_size=int(test_labeled.size),
        stop=None if cfg.stop is None else _stop_plan(cfg.stop, n_pool),
        max_labels=int(cap), extra_growth=EXTRA_GROWTH,
        round_passes=None if steps is None or passes == 0 else passes,
        until_target=("past the planned rounds each strategy x seed queries until the isotonic fit of its curve "
                      "crosses target.json's target (aift_tf.metrics.labels_to_target, smooth=True) or it has "
                      f"max_labels labels; an extra round queries max(query_size, ceil({EXTRA_GROWTH:g} x labels so "
                      f"far)), at most max_labels − labels"),
    )


def extra_round_size(plan: dict, labels: int) -> int:
    """Candidates queried by a round past the planned ones, after ``labels`` labels (0 = the cap is reached).

    The planned query size, or ``ceil(extra_growth x labels)`` once that is larger (a geometric schedule:
    a few rounds reach the cap; every strategy of a seed has the same label counts, so the same
    schedule), never past ``max_labels``. A plan written before rounds past the budget existed
    (no ``max_labels``) gets 0: its runs stop at the planned rounds.

    Args:
        plan: the run's plan (:class:`simulate.plan.RunPlan`, or :func:`plan_run`'s dict).
        labels: labels the strategy x seed has so far.

    Example:
    >>> extra_round_size({"query_size": 53, "max_labels": 1074, "extra_growth": 0.25}, 477)
    120
    >>> extra_round_size({"query_size": 53, "max_labels": 1074, "extra_growth": 0.25}, 1000)
    74
    """
    if not isinstance(plan, Mapping):
        plan = plan.to_dict()
    cap = plan.get("max_labels")
    if cap is None:
        return 0
    size = max(int(plan["query_size"]), math.ceil(float(plan.get("extra_growth", 0.0)) * int(labels)))
    return int(max(0, min(size, int(cap) - int(labels))))


def crossed(rows: list, target: float) -> bool:
    """Whether one strategy x seed's curve (its rows.csv rows, round 0 = M0 first) has crossed ``target``:
    the first crossing of the isotonic fit that the report reads (:func:`aift_tf.metrics.labels_to_target`
    with ``smooth=True``) exists.

    Args:
        rows: the job's rows in round order (``labels``, ``test_auc``).
        target: target.json's ``target_auc``.

    Example:
    >>> crossed([{"labels": 0, "test_auc": 0.6}, {"labels": 10, "test_auc": 0.8}], 0.75)
    True
    """
    from aift_tf.metrics import labels_to_target

    x = [int(r["labels"]) for r in rows]
    y = [float(r["test_auc"]) for r in rows]
    if len(x) < 2 or not all(math.isfinite(v) for v in y):
        return False
    return labels_to_target(x, y, float(target), smooth=True) is not None


def _stop_plan(rule: str, n_pool: int) -> dict:
    """The stopping rule a run evaluates: the rule and the stop set (per seed, drawn from the pool)."""
    from aift_tf.stopping import DEFAULT_STOP_SET, parse_stop_rule

    r = parse_stop_rule(rule)
    return {"rule": r["text"], "threshold": r["threshold"], "rounds": r["rounds"],
            "stop_set_size": int(min(DEFAULT_STOP_SET, n_pool)),
            "stop_set": "per seed k: aift_tf.stopping.draw_stop_set(pool, seed=k) (shared by the strategies)"}
