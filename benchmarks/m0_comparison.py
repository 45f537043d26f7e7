"""Small-CNN offline M0 vs EfficientNet-Lite0 ImageNet M0: full training per store, and the default-M0 rule.

Reads two run folders per store (the small-CNN run and the EfficientNet-Lite0 run, both made by `aift-sim` with
the harness's defaults) and prints a markdown table of each M0's full-training test AUC (the ceiling: the first
`--full-seeds` seeds, the same seeds, test set and recipe for both), what the run measured of the strategies, and
rule 1 of docs/results/m0-comparison/README.md (written before any EfficientNet-Lite0 result):

    a store counts for the M0 whose mean full-training AUC is higher, unless the difference lies inside the
    spread of full training over its seeds (|difference| <= the larger of the two standard deviations): then
    it counts for neither.

A run folder may be stopped once full training has fixed target.json (the strategies then have no rows): the
table says so instead of a number. ``--jobs RUN`` prints what each job of a (stopped) run spent, from its state/.
The EfficientNet-Lite0 run folders of docs/results/m0-comparison/ were made by benchmarks/m0_full_training.sh.

    PYTHONPATH=. python benchmarks/m0_comparison.py \\
        pulmonary-embolism=docs/results/pulmonary-embolism,docs/results/m0-comparison/pulmonary-embolism ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from simulate import run_folder as rf
from simulate.run_folder import FULL


def full_training(out: Path) -> dict:
    """Full training's per-seed test AUC, epochs and seconds (rounds.csv and full_training.csv)."""
    rows = [r for r in rf.read_rounds(out) if r["strategy"] == FULL]
    curves = rf.read_training_curves(out)
    per_seed = {int(r["seed"]): float(r["test_auc"]) for r in rows}
    seconds = {int(r["seed"]): float(r["finetune_seconds"]) for r in rows}
    epochs = {s: max((int(c["epoch"]) for c in curves if c["job"] == FULL and int(c["seed"]) == s), default=0)
              for s in per_seed}
    v = np.array([per_seed[s] for s in sorted(per_seed)])
    return {"per_seed": per_seed, "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "epochs": float(np.mean(list(epochs.values()))), "seconds": float(np.mean(list(seconds.values())))}


def strategy_finals(out: Path) -> dict:
    """Mean test AUC at the planned budget of each strategy (summary.json; empty when the run has none)."""
    summary = rf.read_summary(out)
    if isinstance(summary, dict) and summary.get("strategies"):
        return {st: e.get("final_auc_mean") for st, e in summary["strategies"].items()}
    return {}


def finals_cell(out: Path) -> str:
    f = strategy_finals(out)
    if not f:
        return "not run"
    return " / ".join("—" if f.get(s) is None else f"{f[s]:.3f}" for s in ("aift", "random"))


def job_seconds(out: Path) -> list:
    """Each (job, seed) saved in a run folder's state, finished or not: its last round, labels, test AUC and the
    seconds it spent fine-tuning and scoring (the rows every round checkpoint holds)."""
    lines = []
    for job_dir in sorted(p for p in (Path(out) / "state").iterdir() if p.is_dir()):
        for seed_dir in sorted(job_dir.iterdir()):
            r, latest = rf.latest_round(seed_dir)
            if latest is None:
                continue
            rows = rf.read_rows(latest)
            lines.append(f"{job_dir.name} {seed_dir.name}: round {r}, {rows[-1]['labels']} labels, AUC "
                         f"{rows[-1]['test_auc']:.3f}, fine-tuning {sum(x['finetune_seconds'] for x in rows):.0f} s, "
                         f"scoring {sum(x['scoring_seconds'] for x in rows):.0f} s")
    return lines


def verdict(small: dict, eff: dict) -> str:
    diff = eff["mean"] - small["mean"]
    if abs(diff) <= max(small["sd"], eff["sd"]):
        return "neither"
    return "efficientnet_lite0" if diff > 0 else "small_cnn"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="*", help="STORE=SMALL_CNN_RUN,EFFICIENTNET_RUN")
    ap.add_argument("--jobs", metavar="RUN", help="instead: each job's seconds in RUN's state/ (a run stopped early)")
    args = ap.parse_args(argv)
    if args.jobs:
        print("\n".join(job_seconds(Path(args.jobs))))
        return 0
    lines = ["| store | full training, small CNN (3 seeds) | full training, EfficientNet-Lite0 (3 seeds) | "
             "difference | rule 1 counts for | EfficientNet full training: epochs, s per seed | "
             "small CNN: AIFT / random at the budget | EfficientNet: AIFT / random at the budget |",
             "|---|---|---|---|---|---|---|---|"]
    wins = {"small_cnn": 0, "efficientnet_lite0": 0, "neither": 0}
    for pair in args.pairs:
        store, folders = pair.split("=", 1)
        a, b = (Path(p) for p in folders.split(","))
        small, eff = full_training(a), full_training(b)
        who = verdict(small, eff)
        wins[who] += 1
        lines.append(f"| {store} | {small['mean']:.3f} ± {small['sd']:.3f} | {eff['mean']:.3f} ± {eff['sd']:.3f} | "
                     f"{eff['mean'] - small['mean']:+.3f} | {who} | {eff['epochs']:.1f}, {eff['seconds']:.0f} | "
                     f"{finals_cell(a)} | {finals_cell(b)} |")
    print("\n".join(lines))
    print()
    print(f"Rule 1: EfficientNet-Lite0 higher on {wins['efficientnet_lite0']} store(s), small CNN higher on "
          f"{wins['small_cnn']}, neither on {wins['neither']}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
