"""Table of the issue-13 comparison from the aift-sim run folders that docs/results/beyond/run.sh wrote.

    python docs/results/beyond/compare.py RUNS_DIR > docs/results/beyond/table.md

Per app it reads ``<app>-offline/summary.json`` and ``<app>-ssl/summary.json`` (numbers exactly as each
run's report computed them: paired bootstrap over seeds within a run) and adds one cross-run line: the
final test AUC of aift with the self-supervised M0 minus aift with the offline M0, paired by seed (the
same seed draws the same initial labels and shares the test set in both runs; the M0 heads differ), with
the same bootstrap (aift_tf.metrics.paired_bootstrap, 4,000 resamples).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from aift_tf.metrics import paired_bootstrap

APPS = ("pulmonary-embolism", "colonoscopy-frames", "polyp-detection")


def _pct(x):
    return "—" if x is None else f"{100 * x:.0f}%"


def _ci(ci, pct=False, nd=3):
    if ci is None:
        return "no interval"
    return f"{_pct(ci[0])} to {_pct(ci[1])}" if pct else f"{ci[0]:+.{nd}f} to {ci[1]:+.{nd}f}"


def _final_aucs(run: Path, strategy: str) -> dict:
    rows = list(csv.DictReader(open(run / "rounds.csv")))
    out = {}
    for r in rows:
        if r["strategy"] == strategy:
            s, k = int(r["seed"]), int(r["round"])
            if s not in out or k > out[s][0]:
                out[s] = (k, float(r["test_auc"]))
    return {s: v[1] for s, v in out.items()}


def rows_for(runs: Path, app: str) -> list:
    lines = []
    for m0 in ("offline", "ssl"):
        run = runs / f"{app}-{m0}"
        f = run / "summary.json"
        if not f.is_file():
            lines.append(f"| {app} | {m0} | (not run) | | | | | | |")
            continue
        s = json.loads(f.read_text())
        full = s["full_training"]
        stop = (s.get("stopping") or {}).get("strategies", {})
        for name, e in s["strategies"].items():
            sv = e.get("savings") or {}
            dv = e.get("final_auc_diff_vs_full") or {}
            st = stop.get(name) or {}
            last = st.get("last_kappa_mean")
            stop_txt = ("never" + ("" if last is None else f" (last κ {last:.2f})")) if not st.get("stopped_seeds") else \
                f"{st['labels_mean']:.0f} ({st['stopped_seeds']}/{st['seeds']} seeds, gap {st['auc_gap_mean']:+.3f})"
            saving = "—" if name == s.get("reference") or not sv else \
                f"{('≤ ' if sv.get('censored') else '') + _pct(sv.get('estimate'))} ({_ci(sv.get('ci95'), pct=True)})"
            fin = [d for d in (e.get("auc_diff_vs_random") or {}).values() if d.get("fraction_of_queries") == 1.0]
            vs_random = "—" if not fin else f"{fin[0]['mean']:+.3f} ({_ci(fin[0]['ci95'])})"
            lines.append(f"| {app} | {m0} (full {full['auc_mean']:.3f}) | {name} | {e['final_auc_mean']:.3f} ± "
                         f"{e['final_auc_std']:.3f} | {vs_random} | {dv.get('mean', float('nan')):+.3f} | "
                         f"{saving} | {stop_txt} | {len(e['seeds_done'])} |")
    return lines


def cross_m0(runs: Path, app: str):
    a, b = runs / f"{app}-ssl", runs / f"{app}-offline"
    if not ((a / "rounds.csv").is_file() and (b / "rounds.csv").is_file()):
        return None
    ssl, off = _final_aucs(a, "aift"), _final_aucs(b, "aift")
    rs, ro = _final_aucs(a, "random"), _final_aucs(b, "random")
    seeds = sorted(set(ssl) & set(off))
    out = []
    for what, x, y in (("aift", ssl, off), ("random", rs, ro)):
        common = [s for s in seeds if s in x and s in y]
        if not common:
            continue
        r = paired_bootstrap([[x[s] for s in common], [y[s] for s in common]],
                             lambda p, q, axis=-1: np.mean(p, axis=axis) - np.mean(q, axis=axis),
                             n_resamples=4000, seed=20170721)
        ci = r["ci95"] if len(common) >= 5 else None
        out.append(f"{what}: self-supervised M0 − offline M0 final AUC {r['estimate']:+.3f} ({_ci(ci)}, "
                   f"{len(common)} paired seeds)")
    return f"- {app}: " + "; ".join(out)


def main(argv):
    runs = Path(argv[0]) if argv else Path("runs/beyond")
    print("| app | M0 (full-training AUC) | strategy | final AUC (mean ± std) | final AUC − random, paired (95% CI) "
          "| final − full training | saving vs random (95% CI) | labels at kappa stop (0.99 × 3) | seeds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for app in APPS:
        for line in rows_for(runs, app):
            print(line)
    print()
    print("Cross-run, paired by seed (final test AUC):")
    print()
    for app in APPS:
        line = cross_m0(runs, app)
        if line:
            print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
