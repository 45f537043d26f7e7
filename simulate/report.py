"""Summary, verdict, figures and report of an `aift-sim` run folder — read from the folder alone.

Re-run on a finished (or partial) run folder with::

    python -m simulate.report RUN_DIR

Definitions (learning curve = test AUC vs labels of one (strategy, seed); round 0 = M0, 0 labels):

* **target**: ``target.json``, fixed from full training alone (no strategy's result enters it): mean full-training test AUC − delta.
* **labels needed** (per seed): the first crossing of the target by the isotonic-regression fit of the
  curve (:func:`aift_tf.metrics.labels_to_target` with ``smooth=True``). Random baselines' curves are
  anchored at (pool size, mean full-training AUC), so they always reach the target; any other
  strategy that does not reach it within its budget is **censored**: it needs more than its last
  label count, which is used as a lower bound (its saving is then an upper bound).
* **saving** vs a reference (a random baseline): ``1 − mean(labels needed) / mean(labels needed by the
  reference)`` over the paired seeds, with a 95% percentile interval from a paired bootstrap over
  seeds (:func:`aift_tf.metrics.paired_bootstrap`, 4,000 resamples, seeded); no interval (and no
  verdict) with fewer than :data:`MIN_SEEDS_FOR_INTERVAL` paired seeds.
* **AUC / ALC differences** vs the reference: per seed (same initial set, M0 head and test set), at
  the rounds closest to 25%, 50% and 100% of the queries, and of the area under the curve; mean and
  paired-bootstrap interval.
* **unstable rounds**: the share of rounds whose test AUC fell by more than 0.05 from the round before.
* **ceiling check**: the difference "mean final AUC − mean full-training AUC" (full training runs on the
  first seeds only: an unpaired bootstrap); a strategy whose interval lies above 0 beats the ceiling,
  and the target is then unreliable.
* The verdict is a list of sentences generated only from these fields (:func:`verdict_lines`).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from aift_tf._io import atomic_path, write_json_atomic, write_text_atomic
from simulate import run_folder as rf
from simulate.run_folder import FULL, SCRATCH

#: a round whose test AUC falls by more than this from the round before counts as unstable
UNSTABLE_DROP = 0.05
#: fractions of the queried labels at which AUC differences are reported
CHECKPOINTS = (0.25, 0.5, 1.0)
N_RESAMPLES = 4000
BOOTSTRAP_SEED = 20170721  # fixed: the same run folder always gives the same intervals
RANDOM_REFERENCES = ("random", "random-rft")
#: fewer paired seeds than this give no interval (a bootstrap over 2-4 seeds has a handful of distinct
#: resamples and badly under-covers), hence no verdict
MIN_SEEDS_FOR_INTERVAL = 5


def _finite(x):
    return x is not None and isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _mean_std(values):
    a = np.asarray([v for v in values if _finite(v)], dtype=np.float64)
    if a.size == 0:
        return None, None
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def _interval(samples, statistic, paired=True, min_n=MIN_SEEDS_FOR_INTERVAL):
    """(estimate, ci95) from a bootstrap over seeds; ci95 is None with fewer than `min_n` seeds."""
    from aift_tf.metrics import paired_bootstrap

    r = paired_bootstrap(samples, statistic, n_resamples=N_RESAMPLES, seed=BOOTSTRAP_SEED, paired=paired)
    return r["estimate"], (r["ci95"] if r["n"] >= min_n else None)


def _mean_stat(a, axis=-1):
    return np.mean(a, axis=axis)


def _diff_stat(a, b, axis=-1):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _saving_stat(a, b, axis=-1):
    return 1.0 - np.mean(a, axis=axis) / np.mean(b, axis=axis)


# ----------------------------------------------------------------------------------------------
# curves


def _curves(rows, job, seeds):
    """{seed: rows sorted by round} for the seeds that have rows."""
    out = {}
    for s in seeds:
        rs = sorted((r for r in rows if r["strategy"] == job and r["seed"] == s), key=lambda r: r["round"])
        if rs:
            out[s] = rs
    return out


def _labels_needed(rows_k, target, anchor=None):
    """(labels needed, censored) of one seed's curve; censored = the target was not reached by the
    last point, whose label count is then returned as a lower bound."""
    from aift_tf.metrics import labels_to_target

    x = [r["labels"] for r in rows_k]
    y = [r["test_auc"] for r in rows_k]
    if len(x) < 2 or not all(_finite(v) for v in y):
        return None, False
    need = labels_to_target(x, y, float(target), smooth=True, anchor=anchor)
    if need is None:
        return float(x[-1]), True
    return float(need), False


def _unstable_share(by_seed):
    drops = [b["test_auc"] < a["test_auc"] - UNSTABLE_DROP
             for rs in by_seed.values() for a, b in zip(rs, rs[1:])
             if _finite(a["test_auc"]) and _finite(b["test_auc"])]
    return float(np.mean(drops)) if drops else None


# ----------------------------------------------------------------------------------------------
# the summary


def _one_shot(rows, job, seeds, plan, curves):
    by = _curves(rows, job, seeds)
    if not by:
        return None
    aucs = {s: rs[-1]["test_auc"] for s, rs in by.items()}
    vals = [aucs[s] for s in sorted(aucs)]
    m, sd = _mean_std(vals)
    ci = _interval([vals], _mean_stat)[1] if all(_finite(v) for v in vals) else None
    epochs = [max((c["epoch"] for c in curves if c["job"] == job and c["seed"] == s), default=0) for s in by]
    return {"auc_mean": m, "auc_std": sd, "ci95": ci, "labels": plan["pool_size"], "max_epochs": plan["full_epochs"],
            "epochs_run_mean": float(np.mean(epochs)) if epochs else None,
            "early_stopping_split": plan["early_stopping_split"], "seeds_done": sorted(by),
            "per_seed": {str(k): v for k, v in sorted(aucs.items())}}


def _savings(mine, ref, target, budget_note, pool_size, full_mean, ref_name, target_rule):
    """The savings block of one strategy against one random reference, over their common seeds."""
    common = sorted(set(mine) & set(ref))
    per_seed, need_s, need_r, censored = {}, [], [], []
    for s in common:
        n_s, c_s = _labels_needed(mine[s], target)
        n_r, _ = _labels_needed(ref[s], target, anchor=(pool_size, full_mean))  # random always gets there
        if n_s is None or n_r is None or n_r <= 0:
            per_seed[str(s)] = None  # M0 already at the target (or no curve): no labels needed, undefined
            continue
        per_seed[str(s)] = 1.0 - n_s / n_r
        need_s.append(n_s)
        need_r.append(n_r)
        censored.append(c_s)
    out = {"reference": ref_name, "target_auc": target, "target_rule": target_rule, "labels_needed": None,
           "labels_needed_random": None, "estimate": None, "ci95": None, "censored": bool(any(censored)),
           "censored_seeds": int(sum(censored)), "seeds_used": len(need_s), "per_seed": per_seed,
           "budget": budget_note}
    if need_s:
        est, ci = _interval([need_s, need_r], _saving_stat)
        out.update(labels_needed=float(np.mean(need_s)), labels_needed_random=float(np.mean(need_r)),
                   estimate=float(est), ci95=ci)
    return out


def _paired_diffs(mine, ref, n_rounds, labels_axis):
    """AUC differences at the checkpoints, ALC difference (over common seeds)."""
    from aift_tf.metrics import alc

    common = sorted(s for s in set(mine) & set(ref) if len(mine[s]) >= n_rounds and len(ref[s]) >= n_rounds)
    auc_diff, alc_diff = {}, None
    if not common:
        return auc_diff, alc_diff
    R = n_rounds - 2  # query rounds after the initial set (rounds 0 = M0, 1 = initial)
    for f in CHECKPOINTS:
        i = min(n_rounds - 1, 1 + max(1, int(round(f * R)))) if R > 0 else n_rounds - 1
        d = [mine[s][i]["test_auc"] - ref[s][i]["test_auc"] for s in common]
        if not all(_finite(v) for v in d):
            continue
        est, ci = _interval([d], _mean_stat)
        auc_diff[str(int(round(labels_axis[i])))] = {"mean": float(est), "ci95": ci, "round": i,
                                                     "fraction_of_queries": f}
    a = [alc([r["labels"] for r in mine[s][:n_rounds]], [r["test_auc"] for r in mine[s][:n_rounds]]) for s in common]
    b = [alc([r["labels"] for r in ref[s][:n_rounds]], [r["test_auc"] for r in ref[s][:n_rounds]]) for s in common]
    est, ci = _interval([a, b], _diff_stat)
    alc_diff = {"mean": float(est), "ci95": ci}
    return auc_diff, alc_diff


def summarize(rows: list, config: dict, target: dict | None, curves=(), runtime=None) -> dict:
    """The summary dict (see the module docstring) from the run folder's files."""
    from aift_tf.metrics import alc as _alc
    from aift_tf.metrics import labels_to_target

    settings, plan, data = config["settings"], config["plan"], config["data"]
    seeds = list(range(int(plan["seeds"])))
    strategies = list(settings["strategies"])
    n_rounds = 2 + int(plan["rounds"])  # M0, the initial set, the query rounds
    curves = list(curves)
    full = _one_shot(rows, FULL, seeds, plan, curves) or {
        "auc_mean": None, "auc_std": None, "ci95": None, "labels": plan["pool_size"], "max_epochs": plan["full_epochs"],
        "epochs_run_mean": None, "early_stopping_split": plan["early_stopping_split"], "seeds_done": [],
        "per_seed": {}}
    scratch = _one_shot(rows, SCRATCH, seeds, plan, curves) if settings.get("scratch") else None
    t_auc = target["target_auc"] if target else None
    full_mean = target["full_auc_mean"] if target else None

    by_strategy = {st: _curves(rows, st, seeds) for st in strategies}
    refs = [r for r in RANDOM_REFERENCES if by_strategy.get(r)]
    primary = refs[0] if refs else None
    out_strats = {}
    for st, by in by_strategy.items():
        if not by:
            continue
        n = min(len(v) for v in by.values())
        A = np.array([[r["test_auc"] for r in by[s][:n]] for s in by], dtype=np.float64)
        Lb = np.array([[r["labels"] for r in by[s][:n]] for s in by], dtype=np.float64)
        P = np.array([[r["positives_found"] for r in by[s][:n]] for s in by], dtype=np.float64)
        mean, labels_axis = A.mean(axis=0), Lb.mean(axis=0)
        std = A.std(axis=0, ddof=1) if A.shape[0] > 1 else np.zeros_like(mean)
        ok = bool(np.all(np.isfinite(mean))) and n >= 2
        entry = {
            "learning": settings["learning"] if st not in RANDOM_REFERENCES else
            ("RFT" if st == "random-rft" else (settings.get("random_learning") or settings["learning"])),
            "seeds_done": sorted(int(s) for s in by),
            "labels": [float(v) for v in labels_axis],
            "auc_mean": [float(v) for v in mean],
            "auc_std": [float(v) for v in std],
            "final_auc_mean": float(mean[-1]),
            "final_auc_std": float(std[-1]),
            "positives_found_mean": [float(v) for v in P.mean(axis=0)],
            "alc": float(_alc(labels_axis.tolist(), mean.tolist())) if ok and np.all(np.diff(labels_axis) > 0) else None,
            "unstable_rounds": _unstable_share({s: by[s][:n] for s in by}),
            "per_seed_auc": {str(s): [float(r["test_auc"]) for r in by[s][:n]] for s in by},
            "per_seed_labels": {str(s): [int(r["labels"]) for r in by[s][:n]] for s in by},
            "savings": None,
            "savings_vs": {},
            "auc_diff_vs_random": {},
            "alc_diff_vs_random": None,
            "final_auc_diff_vs_full": None,
        }
        if t_auc is not None and st not in RANDOM_REFERENCES:  # strategies vs each random baseline
            for ref in refs:
                entry["savings_vs"][ref] = _savings(by, by_strategy[ref], t_auc, plan["budget"], plan["pool_size"],
                                                    full_mean, ref, target["rule"])
            entry["savings"] = entry["savings_vs"].get(primary)
            need = labels_to_target(labels_axis.tolist(), mean.tolist(), t_auc, smooth=True) if ok and \
                np.all(np.diff(labels_axis) > 0) else None
            entry["labels_to_target_mean_curve"] = need
        if primary is not None and st != primary:
            entry["auc_diff_vs_random"], entry["alc_diff_vs_random"] = _paired_diffs(
                by, by_strategy[primary], n_rounds, labels_axis)
        fulls = [v for v in full["per_seed"].values() if _finite(v)]
        finals = [by[s][n_rounds - 1]["test_auc"] for s in sorted(by) if len(by[s]) >= n_rounds]
        if fulls and finals and all(_finite(v) for v in finals):
            # full training runs on the first seeds only: an unpaired bootstrap of the difference of means
            est, ci = _interval([finals, fulls], _diff_stat, paired=False, min_n=2)
            if len(finals) < MIN_SEEDS_FOR_INTERVAL:
                ci = None
            entry["final_auc_diff_vs_full"] = {"mean": float(est), "ci95": ci, "seeds": len(finals),
                                               "full_seeds": len(fulls)}
        out_strats[st] = entry

    # secondary (the old definition): labels to reach random's final mean AUC, on the mean curves
    rnd = out_strats.get(primary) if primary else None
    random_final = rnd["final_auc_mean"] if rnd else None
    for st, e in out_strats.items():
        ok = random_final is not None and all(_finite(v) for v in e["auc_mean"]) and np.all(np.diff(e["labels"]) > 0)
        e["labels_to_random_final"] = labels_to_target(e["labels"], e["auc_mean"], random_final) if ok else None

    above = [st for st, e in out_strats.items()
             if e["final_auc_diff_vs_full"] and e["final_auc_diff_vs_full"]["ci95"]
             and e["final_auc_diff_vs_full"]["ci95"][0] > 0]
    complete = all(
        st in out_strats and len(out_strats[st]["seeds_done"]) == len(seeds) and len(out_strats[st]["labels"]) == n_rounds
        for st in strategies) and len(full["seeds_done"]) == int(plan.get("full_seeds", len(seeds)))
    summary = {
        "app": data.get("app") if settings.get("app") is None else settings["app"],
        "data": data["path"],
        "data_sha256": data["sha256"],
        "pool_size": plan["pool_size"],
        "test_size": plan["test_size"],
        "seeds": len(seeds),
        "seed_values": seeds,
        "query_size": plan["query_size"],
        "max_per_group": settings.get("max_per_group"),
        "rounds": plan["rounds"],
        "budget": plan["budget"],
        "initial": plan["initial"],
        "fine_tuning": {"steps": plan["steps"], "epochs": plan["epochs"], "lr": plan["lr"],
                        "train_batch_size": settings["train_batch_size"],
                        "early_stopping": bool(settings.get("early_stopping")), "batchnorm": "inference mode"},
        "learning": settings["learning"],
        "model": settings["model"],
        "trainable": settings["trainable"],
        "m0": config["m0"],
        "complete": complete,
        "target": target,
        "reference": primary,
        "full_training": full,
        "scratch": scratch,
        "ceiling": {"reliable": not above, "exceeded_by": above},
        "random_final_auc": random_final,
        "strategies": out_strats,
        "froc": _froc_summary(rows, strategies, data.get("froc")),
        "stopping": _stopping_summary(by_strategy, plan.get("stop"), full_mean),
        "verdict": None,
        "definitions": "see simulate/report.py",
    }
    summary["verdict"] = verdict_lines(summary)
    if runtime is not None:
        summary["runtime"] = runtime
    return summary


def _stopping_summary(by_strategy, stop, full_mean):
    """Where the --stop rule would have stopped each (strategy, seed): labels, test AUC and the gap to
    full training's mean AUC there (None when the rule never fired within the budget)."""
    if not stop:
        return None
    from aift_tf.stopping import stop_round

    out = {"rule": stop["rule"], "threshold": stop["threshold"], "rounds": stop["rounds"],
           "stop_set_size": stop["stop_set_size"], "full_auc_mean": full_mean, "strategies": {}}
    for st, by in by_strategy.items():
        per_seed = {}
        for s, rs in by.items():
            i = stop_round([r.get("stop_kappa") for r in rs], stop["threshold"], stop["rounds"])
            if i is None:
                per_seed[str(s)] = None
                continue
            r = rs[i]
            gap = full_mean - r["test_auc"] if _finite(full_mean) and _finite(r["test_auc"]) else None
            per_seed[str(s)] = {"round": int(r["round"]), "labels": int(r["labels"]), "test_auc": r["test_auc"],
                                "auc_gap_to_full": gap, "final_labels": int(rs[-1]["labels"])}
        hit = [v for v in per_seed.values() if v]
        gaps = [v["auc_gap_to_full"] for v in hit if _finite(v["auc_gap_to_full"])]
        last = [rs[-1].get("stop_kappa") for rs in by.values() if _finite(rs[-1].get("stop_kappa"))]
        out["strategies"][st] = {
            "per_seed": per_seed, "stopped_seeds": len(hit), "seeds": len(per_seed),
            "last_kappa_mean": float(np.mean(last)) if last else None,
            "labels_mean": float(np.mean([v["labels"] for v in hit])) if hit else None,
            "auc_gap_mean": float(np.mean(gaps)) if gaps else None,
            "auc_gap_max": float(np.max(gaps)) if gaps else None,
        }
    return out


def stopping_line(summary) -> str | None:
    """One sentence: where the stopping rule would have stopped each strategy."""
    sp = summary.get("stopping")
    if not sp or not sp["strategies"]:
        return None
    parts = []
    for name, e in sp["strategies"].items():
        if not e["stopped_seeds"]:
            last = "" if e.get("last_kappa_mean") is None else f", kappa at the last round {e['last_kappa_mean']:.3f}"
            parts.append(f"{name} never within its budget ({e['seeds']} seeds{last})")
            continue
        gap = "" if e["auc_gap_mean"] is None else \
            f", test AUC {e['auc_gap_mean']:+.3f} below full training on average (worst {e['auc_gap_max']:+.3f})"
        parts.append(f"{name} at {e['labels_mean']:.0f} labels on average on {e['stopped_seeds']} of {e['seeds']} "
                     f"seeds{gap}")
    return (f"Stopping rule {sp['rule']} (Cohen's kappa of consecutive models on a stop set of {sp['stop_set_size']} "
            f"pool candidates >= {sp['threshold']:g} for {sp['rounds']} rounds) would stop: " + "; ".join(parts) + ".")


def _froc_summary(rows, strategies, applies):
    if not applies:
        return None
    out = {}
    for st in list(strategies) + [FULL, SCRATCH]:
        rs = [r for r in rows if r["strategy"] == st]
        if not rs:
            continue
        last = max(r["round"] for r in rs)
        finals = [r for r in rs if r["round"] == last]
        out[st] = {f"sens_fp{k}": _mean_std([r.get(f"sens_fp{k}") for r in finals])[0] for k in (1, 2, 3)}
    return out


# ----------------------------------------------------------------------------------------------
# the verdict: sentences generated from the summary's fields only


def _pct(x):
    return "—" if x is None else f"{100 * x:.0f}%"


def _ci_pct(ci):
    return "no interval" if ci is None else f"95% CI {_pct(ci[0])} to {_pct(ci[1])}"


def _ci_num(ci, nd=3):
    return "no interval" if ci is None else f"95% CI {ci[0]:+.{nd}f} to {ci[1]:+.{nd}f}"


def m0_line(summary) -> str | None:
    """A loud sentence when the run did not start from a pre-trained M0 (AIFT's premise)."""
    m0 = summary["m0"]
    if m0.get("source") == "none":
        return (f"NO PRE-TRAINED M0: the CNN started from random initialisation ({m0.get('note', 'weights none')}); "
                f"AIFT fine-tunes a pre-trained CNN, so this run does not measure AIFT as published.")
    return None


def ceiling_line(summary) -> str | None:
    c, full = summary["ceiling"], summary["full_training"]
    if c["reliable"] or not _finite(full.get("auc_mean")):
        return None
    ci = full.get("ci95")
    stopped = (f" It stopped after {full['epochs_run_mean']:.1f} epochs on average (at most {full['max_epochs']}), "
               f"when the validation AUC stopped improving." if _finite(full.get("epochs_run_mean")) else "")
    return (f"Full training (AUC {full['auc_mean']:.4f}" + (f", 95% CI {ci[0]:.4f} to {ci[1]:.4f}" if ci else "")
            + f") is not a ceiling here: {', '.join(c['exceeded_by'])} ended above it beyond the interval, so "
              f"the savings target is unreliable.{stopped} Train full training longer (--full-epochs, "
              f"--full-patience) or check that the store's validation split represents its test split.")


def savings_line(name, sv, n_seeds) -> str:
    """One sentence for one strategy's savings block against its reference."""
    ref, t = sv["reference"], sv["target_auc"]
    if sv["estimate"] is None:
        return (f"{name} vs {ref}: savings are undefined: M0 already reaches the target AUC {t:.4f} on every "
                f"seed, so no labels are needed.")
    used = sv["seeds_used"]
    if sv["ci95"] is None:
        return (f"{name} vs {ref}: saving {_pct(sv['estimate'])} to reach AUC {t:.4f} on {used} paired seed(s); "
                f"no interval and no verdict with fewer than {MIN_SEEDS_FOR_INTERVAL} paired seeds (the default is "
                f"10).")
    lo, hi = sv["ci95"]
    c = sv["censored_seeds"]
    cens = (f"; it misses the target within its budget on {c} of {used} seeds, so its true saving is lower still"
            if c else "")
    base = f"saving {_pct(sv['estimate'])} ({_ci_pct(sv['ci95'])} over {used} paired seeds)"
    if hi < 0:
        return f"{name} needs more labels than {ref} to reach AUC {t:.4f}: {base}{cens}."
    if lo > 0 and not c:
        return f"{name} saves {_pct(sv['estimate'])} of the labels {ref} needs to reach AUC {t:.4f} " \
               f"({_ci_pct(sv['ci95'])} over {used} paired seeds)."
    if lo > 0 and c == used:
        return (f"{name} does not reach AUC {t:.4f} within its budget on any of the {used} seeds: its saving over "
                f"{ref} is at most {_pct(sv['estimate'])} ({_ci_pct(sv['ci95'])} of that bound), so no saving is "
                f"demonstrated.")
    if lo > 0:
        return (f"{name} reaches AUC {t:.4f} within its budget on only {used - c} of {used} seeds: its saving over "
                f"{ref} is at most {_pct(sv['estimate'])} ({_ci_pct(sv['ci95'])} of that bound), so no saving is "
                f"demonstrated.")
    return f"No detectable difference between {name} and {ref} in labels needed to reach AUC {t:.4f}: {base}{cens}."


def diff_line(name, ref, entry) -> str | None:
    parts = [f"{v['mean']:+.3f} at {k} labels ({_ci_num(v['ci95'])})" for k, v in entry["auc_diff_vs_random"].items()]
    if not parts:
        return None
    alc = entry["alc_diff_vs_random"]
    tail = f"; ALC {alc['mean']:+.4f} ({_ci_num(alc['ci95'], 4)})" if alc else ""
    return f"Paired test-AUC difference {name} − {ref}: " + "; ".join(parts) + tail + "."


def stability_line(summary) -> str | None:
    parts = [f"{name} {_pct(e['unstable_rounds'])}" for name, e in summary["strategies"].items()
             if e["unstable_rounds"] is not None]
    if not parts:
        return None
    return f"Share of rounds whose test AUC fell by more than {UNSTABLE_DROP} (unstable fine-tuning): " + \
        ", ".join(parts) + "."


def verdict_lines(summary) -> list:
    """Plain-language conclusions, each generated from fields of the summary (no other numbers)."""
    lines = [x for x in (m0_line(summary), ceiling_line(summary)) if x]
    st, ref = summary["strategies"], summary["reference"]
    if summary["target"] is None:
        return lines + ["No savings target yet: full training has not finished on every seed."]
    if ref is None:
        return lines + ["No random baseline was run, so no savings versus random can be computed."]
    for name, e in st.items():
        for sv in e["savings_vs"].values():
            lines.append(savings_line(name, sv, summary["seeds"]))
    for name, e in st.items():
        if name != ref:
            d = diff_line(name, ref, e)
            if d:
                lines.append(d)
    for s in (stability_line(summary), stopping_line(summary)):
        if s:
            lines.append(s)
    return lines


# ----------------------------------------------------------------------------------------------
# figures


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save_fig(fig, path: Path):
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)


def plot_learning_curves(summary, path: Path):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for name, s in summary["strategies"].items():
        x = np.asarray(s["labels"])
        m, sd = np.asarray(s["auc_mean"]), np.asarray(s["auc_std"])
        ax.plot(x, m, marker="o", ms=3, label=f"{name} ({len(s['seeds_done'])} seeds)")
        ax.fill_between(x, m - sd, m + sd, alpha=0.15)
    full = summary["full_training"]
    if _finite(full.get("auc_mean")):
        ax.axhline(full["auc_mean"], color="k", ls="--", lw=1,
                   label=f"full training ({summary['pool_size']} labels)")
    t = summary.get("target")
    if t:
        ax.axhline(t["target_auc"], color="tab:red", ls=":", lw=1.2, label=f"target (full − {t['delta']:g})")
    sc = summary.get("scratch")
    if sc and _finite(sc.get("auc_mean")):
        ax.axhline(sc["auc_mean"], color="gray", ls=":", lw=1.2, label="from scratch (whole pool)")
    ax.set_xlabel("labeled candidates (mean over seeds; the initial random set varies by seed)")
    ax.set_ylabel("test AUC (candidate level)")
    ax.set_title(f"{summary['app']}: learning curves (mean ± std over paired seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save_fig(fig, path)


def plot_positives(summary, path: Path):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, s in summary["strategies"].items():
        ax.plot(s["labels"], s["positives_found_mean"], marker="o", ms=3, label=name)
    ax.set_xlabel("labeled candidates")
    ax.set_ylabel("positive candidates among them (mean over seeds)")
    ax.set_title(f"{summary['app']}: positives found")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save_fig(fig, path)


def plot_full_training(curves, path: Path) -> bool:
    rows = [c for c in curves if c["job"] == FULL and _finite(c.get("val_auc"))]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for s in sorted({c["seed"] for c in rows}):
        rs = [c for c in rows if c["seed"] == s]
        ax.plot([c["epoch"] for c in rs], [c["val_auc"] for c in rs], marker=".", lw=1, label=f"seed {s}")
    ax.set_xlabel("epoch over the whole pool")
    ax.set_ylabel("validation AUC")
    ax.set_title("full training (the ceiling): validation AUC per epoch")
    ax.grid(alpha=0.3)
    if len({c["seed"] for c in rows}) <= 10:
        ax.legend(fontsize=7, ncol=2)
    _save_fig(fig, path)
    return True


def plot_froc(out: Path, summary, path: Path) -> bool:
    from aift_tf.metrics import froc

    plt = _plt()
    grid = np.linspace(0, 4, 81)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for name in list(summary["strategies"]) + [FULL, SCRATCH]:
        curves = []
        for s in summary["seed_values"]:
            d = rf.final_predictions(out, name, s)
            if d is None or d["labels"].sum() == 0:
                continue
            r = froc(d["probability"], d["labels"], d["groups"], fps_per_group=(1, 2, 3))
            fp, sens = r["curve_fp_per_group"], r["curve_sensitivity"]
            idx = np.searchsorted(fp, grid * (1 + 1e-12), side="right") - 1
            curves.append(sens[np.clip(idx, 0, None)])
        if not curves:
            continue
        ls = "--" if name == FULL else (":" if name == SCRATCH else "-")
        ax.plot(grid, np.mean(curves, axis=0), ls=ls, label=f"{name} ({len(curves)} seeds)")
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    for k in (1, 2, 3):
        ax.axvline(k, color="gray", lw=0.5)
    ax.set_xlabel("false positives per volume")
    ax.set_ylabel("sensitivity (candidates)")
    ax.set_title(f"{summary['app']}: FROC at the final round (mean over seeds)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save_fig(fig, path)
    return True




# ----------------------------------------------------------------------------------------------
# report


def _f(x, nd=4):
    return "—" if x is None else f"{x:.{nd}f}"


def _n(x, censored=False):
    if x is None:
        return "never"
    return f"≥ {x:.0f}" if censored else f"{x:.0f}"


def render_markdown(summary, config, figures) -> str:
    s = summary
    m0 = s["m0"]
    L = [f"# aift-sim report: {s['app']}", ""]
    loud = [x for x in (m0_line(s), ceiling_line(s)) if x]
    for x in loud:
        L += [f"> **{x}**", ""]
    if not s["complete"]:
        L += ["> **Partial run**: not every (strategy, seed) has finished; numbers use what exists. "
              "Continue with `aift-sim --out DIR --resume`.", ""]
    t = s["target"]
    L += ["## Answer", ""]
    L += [f"- {line}" for line in s["verdict"] if line not in loud]
    full = s["full_training"]
    ci = full.get("ci95")
    L += [f"- Full training (M0 fine-tuned on all {s['pool_size']} pool labels until the validation AUC stopped "
          f"improving, {_f(full.get('epochs_run_mean'), 1)} epochs on average, at most {full['max_epochs']}): AUC "
          f"{_f(full['auc_mean'])} ± {_f(full['auc_std'])} over {len(full['seeds_done'])} seed(s)"
          + (f" (95% CI {ci[0]:.4f} to {ci[1]:.4f})" if ci else "")
          + ". It is the reference, not a strategy: it may use the validation labels."]
    if s.get("scratch"):
        L += [f"- Learning from scratch (no pre-training, whole pool): AUC {_f(s['scratch']['auc_mean'])} ± "
              f"{_f(s['scratch']['auc_std'])}."]
    L += ["", "## Savings", ""]
    if t:
        L += [f"Target: test AUC {t['target_auc']:.4f} = {t['rule']}."
              + ("" if s["ceiling"]["reliable"] else " **Unreliable: a strategy ends above full training.**"), ""]
    L += ["| strategy | reference | labels needed (mean) | reference needs | saving | 95% CI | censored seeds |",
          "|---|---|---|---|---|---|---|"]
    for name, st in s["strategies"].items():
        for sv in st["savings_vs"].values():
            ci = sv["ci95"]
            L.append(f"| {name} | {sv['reference']} | {_n(sv['labels_needed'], sv['censored'])} | "
                     f"{_n(sv['labels_needed_random'])} | {('≤ ' if sv['censored'] else '') + _pct(sv['estimate'])} | "
                     f"{'—' if ci is None else f'{_pct(ci[0])} to {_pct(ci[1])}'} | {sv['censored_seeds']} of "
                     f"{sv['seeds_used']} |")
    L += ["", "Labels needed = first crossing of the target by the isotonic fit of each seed's learning curve; the "
          "random baselines' curves are anchored at (pool, full training's mean AUC); a strategy that misses the "
          "target within its budget is censored at its budget (\"≥\"; its saving is an upper bound \"≤\"). Saving "
          "= 1 − mean labels needed ÷ the reference's; intervals: paired bootstrap over seeds "
          f"({N_RESAMPLES} resamples).", ""]
    L += ["## Learning curves", "",
          "| strategy | learning | final AUC (mean ± std) | ALC | final − full training (95% CI) | unstable rounds "
          "| labels to random's final AUC (secondary) |",
          "|---|---|---|---|---|---|---|"]
    for name, st in s["strategies"].items():
        dv = st["final_auc_diff_vs_full"]
        dv_txt = "—" if not dv else f"{dv['mean']:+.4f} ({_ci_num(dv['ci95'], 4)})"
        L.append(f"| {name} | {st['learning']} | {_f(st['final_auc_mean'])} ± {_f(st['final_auc_std'])} | "
                 f"{_f(st['alc'])} | {dv_txt} | {_pct(st['unstable_rounds'])} | {_n(st['labels_to_random_final'])} |")
    L += [""]
    if s.get("froc"):
        L += ["## FROC (final round, mean over seeds)", "", "| strategy | sens @1 FP/vol | @2 | @3 |", "|---|---|---|---|"]
        for name, v in s["froc"].items():
            L.append(f"| {name} | {_f(v['sens_fp1'], 3)} | {_f(v['sens_fp2'], 3)} | {_f(v['sens_fp3'], 3)} |")
        L.append("")
    L += ["## Figures", ""]
    for title, fname in figures:
        L += [f"### {title}", "", f"![{title}]({fname})", ""]
    ft, ini = s["fine_tuning"], s["initial"]
    recipe = (f"{ft['steps']} gradient steps" if ft["steps"] is not None else f"{ft['epochs']} epoch(s)") + \
        f" of {ft['train_batch_size']} patches per round, Adam lr {ft['lr']:g}, BatchNorm in inference mode, " + \
        ("early stopping on the validation split (its labels are labels too)" if ft["early_stopping"]
         else "no early stopping in the rounds (validation labels would be labels too)")
    L += ["## Setup", "",
          f"- data: `{s['data']}` (sha256 `{s['data_sha256'][:16]}…`), pool {s['pool_size']} candidates, "
          f"test {s['test_size']}",
          f"- M0 ({m0.get('source')}): {m0.get('path') or 'none'}" + (f" — {m0['summary']}" if m0.get("summary") else ""),
          f"- model `{s['model']}` (trainable: {s['trainable']}), learning strategy {s['learning']} "
          f"(random: {s['strategies'].get('random', {}).get('learning', '—')}; random-rft: RFT)",
          f"- {s['seeds']} paired seeds; initial set: {ini['rule']} (mean {ini['mean']:.1f} labels); then "
          f"{s['rounds']} rounds × {s['query_size']} candidates (budget ~{s['budget']} labels)"
          + (f"; at most {s['max_per_group']} candidates of one group per round (every strategy)"
             if s.get("max_per_group") else ""),
          f"- fine-tuning: {recipe}",
          f"- command: `{config.get('command_line') or ''}`", ""]
    if s.get("runtime"):
        L += [f"Run time of the last invocation: {s['runtime'].get('this_invocation_seconds', '?')} s.", ""]
    L += ["Per-round numbers: `rounds.csv`; full training's curves: `full_training.csv`; all numbers above: "
          "`summary.json`.", ""]
    return "\n".join(L)


def build_report(out, runtime=None) -> dict:
    """(Re)build summary.json, the figures and report.md of run folder `out` from its files."""
    out = Path(out)
    config = rf.load_config(out)
    rows = rf.read_rounds(out)
    curves = rf.read_training_curves(out)
    target = rf.read_target(out)
    if runtime is None and (out / "summary.json").is_file():
        try:
            runtime = json.loads((out / "summary.json").read_text()).get("runtime")
        except (OSError, ValueError):
            runtime = None
    summary = summarize(rows, config, target, curves, runtime=runtime)
    figures = []
    if summary["strategies"]:
        plot_learning_curves(summary, out / "learning_curves.png")
        figures.append(("Learning curves", "learning_curves.png"))
        plot_positives(summary, out / "positives_found.png")
        figures.append(("Positives found", "positives_found.png"))
    if plot_full_training(curves, out / "full_training.png"):
        figures.append(("Full training (validation AUC per epoch)", "full_training.png"))
    if summary["froc"] and plot_froc(out, summary, out / "froc.png"):
        figures.append(("FROC at the final round", "froc.png"))
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "report.md", render_markdown(summary, config, figures))
    return summary


def main(argv=None):
    import click

    from aift_tf._cli import run_cli

    @click.command(context_settings={"help_option_names": ["-h", "--help"]})
    @click.argument("run_dir", type=click.Path(file_okay=False))
    def cli(run_dir):
        """Rebuild summary.json, figures and report.md of an aift-sim run folder."""
        build_report(run_dir)
        click.echo(f"{Path(run_dir) / 'report.md'}")

    run_cli(cli, argv, prog_name="python -m simulate.report")


if __name__ == "__main__":
    main(sys.argv[1:])
