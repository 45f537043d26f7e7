"""The jobs of an `aift-sim` run and what each one trains with.

A job is a ``(name, seed)`` pair: full training (:data:`simulate.run_folder.FULL`, the ceiling) and, with
``--scratch``, training from scratch (:data:`simulate.run_folder.SCRATCH`) on the first ``plan.full_seeds``
seeds, then every strategy on every seed. A job's results depend only on its pair, the run's configuration
(:class:`simulate.plan.RunConfig`) and M0, so jobs may run in any order and side by side
(:mod:`simulate.parallel`); :func:`job_list` is the sequential order (the ceiling first: the target is fixed from it).

A strategy's rounds fine-tune with :func:`round_finetune`, full training and scratch with :func:`full_finetune`.

Example::

    job_list(run.settings, run.plan)   # [("full", 0), ("full", 1), ..., ("aift", 0), ("random", 0), ...]
"""

from __future__ import annotations

from simulate.config import RANDOM_BASELINES
from simulate.run_folder import FULL, SCRATCH

#: rounds with --early-stopping: the round's steps are split into this many checks of the validation AUC
EARLY_STOPPING_CHECKS = 5
EARLY_STOPPING_PATIENCE = 2
#: what full training's early stopping watches on the validation split
FULL_MONITOR = "val_auc"


def is_full_training(name: str) -> bool:
    """Whether job ``name`` trains on the whole pool at once (full training or scratch), not in rounds."""
    return name in (FULL, SCRATCH)


def job_names(settings) -> list:
    """Every job name of a run: full training, scratch (with ``--scratch``), then the strategies."""
    return [FULL] + ([SCRATCH] if settings.scratch else []) + list(settings.strategies)


def job_list(settings, seeds, full_seeds) -> list:
    """Every (job, seed) of the run in the sequential order: full training (and scratch) first."""
    jobs = []
    for seed in full_seeds:
        jobs += [(FULL, seed)] + ([(SCRATCH, seed)] if settings.scratch else [])
    return jobs + [(strategy, seed) for seed in seeds for strategy in settings.strategies]


def planned_rounds(plan) -> int:
    """Planned learner rounds of a strategy: the initial set, then ``plan.rounds`` queries (more follow until
    the target is crossed)."""
    return 1 + int(plan.rounds)


def job_units(name: str, plan) -> int:
    """Progress units (rounds) a job is planned to take."""
    return 1 if is_full_training(name) else planned_rounds(plan)


def total_units(settings, plan, seeds, full_seeds) -> int:
    """Progress units of the whole run as planned (rounds past the planned ones raise it as they come)."""
    return (len(seeds) * len(settings.strategies) * planned_rounds(plan)
            + len(full_seeds) * (1 + bool(settings.scratch)))


def learning_for(settings, strategy: str) -> str:
    """The learning strategy of a strategy's rounds (random-rft: RFT; random: --random-learning if given)."""
    fixed = RANDOM_BASELINES.get(strategy)
    if fixed is not None:
        return fixed
    if strategy == "random" and settings.random_learning is not None:
        return settings.random_learning
    return settings.learning


def round_finetune(settings, plan, seed):
    """The rounds' recipe: `steps` gradient steps (or `epochs` passes) at the run's rate, at least
    plan.round_passes passes over the labeled patches.

    With --early-stopping the round is split into EARLY_STOPPING_CHECKS checks of the validation AUC (the best
    check's weights kept) and has no pass floor, unless --round-passes was given explicitly: then each check
    takes at least round_passes / EARLY_STOPPING_CHECKS passes, so the round trains at most
    max(steps, round_passes passes) steps with validation selection (the default floor kept, the selection
    added)."""
    from aift_tf.finetune import FineTuneConfig

    kw = dict(batch_size=settings.train_batch_size, learning_rate=plan.lr, seed=int(seed))
    passes = plan.round_passes  # a plan written before the recipe grew with the labeled set: None
    if plan.steps is None:
        return FineTuneConfig(epochs=plan.epochs, patience=EARLY_STOPPING_PATIENCE if settings.early_stopping
                              else None, **kw)
    if settings.early_stopping:
        per = max(1, -(-plan.steps // EARLY_STOPPING_CHECKS))
        if passes is not None and settings.round_passes is not None:
            kw["min_passes"] = float(passes) / EARLY_STOPPING_CHECKS
        return FineTuneConfig(epochs=EARLY_STOPPING_CHECKS, steps_per_epoch=per,
                              patience=EARLY_STOPPING_PATIENCE, **kw)
    if passes is not None:
        kw["min_passes"] = float(passes)
    return FineTuneConfig(epochs=1, steps_per_epoch=plan.steps, **kw)


def full_finetune(settings, plan, seed):
    """Full training's recipe: the rounds' rate and batch size, passes over the whole pool until the
    validation AUC stops improving (at most full_epochs). The validation loss was tried too and
    stopped PE's full training after ~7 epochs, far below its AUC peak (docs/results/PROTOCOL.md)."""
    from aift_tf.finetune import FineTuneConfig

    return FineTuneConfig(epochs=plan.full_epochs, batch_size=settings.train_batch_size, learning_rate=plan.lr,
                          patience=plan.full_patience if plan.early_stopping_split else None,
                          monitor=FULL_MONITOR, seed=int(seed))
