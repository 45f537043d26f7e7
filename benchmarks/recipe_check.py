"""Whole pool vs full training: does a round recipe let a learner that labels the whole pool reach full training?

Reads `aift-sim` run folders that share a store, seeds and target (for example random alone, 3 seeds, one folder
per round recipe: the default, `--round-passes 0`, `--early-stopping --round-passes 4`) and prints one markdown
row per folder and strategy: per seed, the AUC at the planned budget, whether the isotonic fit of the curve crosses
the run's target (aift_tf.metrics.labels_to_target, smooth=True: the harness's own rule) and where, the labels
and AUC of the last round, and full training's AUC on the same seed. Only seeds present in every folder are read,
so a 10-seed run can serve as the reference of a 3-seed check. The recipe of each row is read off the folder's
config.json by simulate.report.round_recipe (what the jobs ran, as the report's Setup states it).

    PYTHONPATH=. python benchmarks/recipe_check.py --strategy random \\
        docs/results/m0-comparison/pe-aift-vs-random-10seeds docs/results/m0-comparison/pe-random-recipes-3seeds/*
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from aift_tf.metrics import labels_to_target
from simulate import run_folder as rf
from simulate.plan import read_run
from simulate.report import round_recipe
from simulate.run_folder import FULL


def _passes(n) -> str:
    return f"{n:g} pass" + ("" if n == 1 else "es")


def _recipe(run) -> str:
    """The round recipe the run's jobs ran (simulate.report.round_recipe, what the report's Setup states)."""
    ft = round_recipe(run.settings, run.plan)
    if ft["steps"] is None:
        if not ft["early_stopping"]:
            return f"{_passes(ft['epochs'])}, no validation"
        return f"≤ {_passes(ft['epochs'])}, one validation check each (patience {ft['early_stopping_patience']}), best kept"
    checks = ft["early_stopping_checks"]
    steps = checks * ft["steps_per_check"] if checks else ft["steps"]
    cap = f"max({steps} steps, {_passes(ft['round_passes'])})" if ft["round_passes"] else f"{steps} steps"
    return f"≤ {cap} in {checks} validation checks, best kept" if checks else f"{cap}, no validation"


def seed_rows(out: Path, run, strategy: str, seeds) -> dict:
    """Per seed: budget AUC, isotonic crossing of the target (or None), last labels and AUC, full training AUC
    (``run``: the folder's configuration, simulate.plan.read_run)."""
    rows = rf.read_rounds(out)
    target = rf.read_target(out)["target_auc"]
    res = {}
    for s in seeds:
        curve = sorted((int(r["round"]), int(r["labels"]), float(r["test_auc"])) for r in rows
                       if r["strategy"] == strategy and int(r["seed"]) == s)
        full = [float(r["test_auc"]) for r in rows if r["strategy"] == FULL and int(r["seed"]) == s]
        labels = [c[1] for c in curve]
        aucs = [c[2] for c in curve]
        # round 0 is M0, round 1 the initial set, so the planned budget is round plan.rounds + 1
        budget = next((a for rnd, _, a in curve if rnd == run.plan.rounds + 1), float("nan"))
        res[s] = {"budget_auc": budget, "crossing": labels_to_target(labels, aucs, target, smooth=True),
                  "last_labels": labels[-1], "last_auc": aucs[-1], "full": full[0] if full else float("nan")}
    return {"target": target, "pool": run.plan.pool_size, "seeds": res}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="aift-sim run folders (same store, seeds and target)")
    ap.add_argument("--strategy", default="random")
    a = ap.parse_args(argv)
    seed_sets = []
    for out in a.runs:
        seed_sets.append({int(r["seed"]) for r in rf.read_rounds(out) if r["strategy"] == a.strategy})
    seeds = sorted(set.intersection(*seed_sets))
    if not seeds:
        print(f"no seed of {a.strategy!r} is in every folder", file=sys.stderr)
        return 2
    runs = {out: read_run(out) for out in a.runs}
    results = {out: seed_rows(out, runs[out], a.strategy, seeds) for out in a.runs}
    targets = {round(r["target"], 6) for r in results.values()}
    print(f"seeds {seeds}; target(s) {sorted(targets)}; pool {next(iter(results.values()))['pool']}")
    print()
    print(f"| {a.strategy}, seeds {' / '.join(map(str, seeds))} | recipe | AUC at the budget | crosses the target "
          f"| last round: labels, AUC | full training (same seed) | last − full |")
    print("|---|---|---|---|---|---|---|")
    for out, r in results.items():
        ss = [r["seeds"][s] for s in seeds]
        crossed = [x["crossing"] for x in ss if x["crossing"] is not None]
        cross = (f"on {len(crossed)} of {len(ss)}" + (f" (at {', '.join(f'{c:.0f}' for c in crossed)} labels)"
                                                     if crossed else ""))
        fmt = lambda v: " / ".join("—" if np.isnan(x) else f"{x:.3f}" for x in v)  # noqa: E731
        budget = [x["budget_auc"] for x in ss]
        last = [x["last_auc"] for x in ss]
        full = [x["full"] for x in ss]
        gap = np.array(last) - np.array(full)  # full training runs on its first seeds only (--full-seeds)
        print(f"| {out.name} | {_recipe(runs[out])} | {fmt(budget)} (mean {np.mean(budget):.3f}) | {cross} | "
              f"{' / '.join(str(x['last_labels']) for x in ss)}: {fmt(last)} (mean {np.mean(last):.3f}) | "
              f"{fmt(full)} (mean {np.nanmean(full):.3f}) | {np.nanmean(gap):+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
