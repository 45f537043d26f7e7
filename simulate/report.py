"""Summary, figures and report of an `aift-sim` run folder, built from its rounds.csv.

Re-run on a finished (or partial) run folder with::

    python -m simulate.report RUN_DIR

Definitions (all on the learning curves "test AUC vs labels", round 0 = M0 with 0 labels):

* mean curve: the mean over seeds of the test AUC at each round (every seed labels the same number
  of candidates per round); `auc_std` is the sample standard deviation over seeds (0 with one seed).
* `alc`: area under the mean curve divided by the label range (`aift_tf.metrics.alc`).
* `labels_to_random_final`: labels at which the mean curve first reaches random's final mean AUC
  (`aift_tf.metrics.labels_to_target`, linear interpolation between rounds; null if never).
* `labels_to_full_training`: labels to reach full training's mean AUC − 0.01 (null if never).
* `savings_vs_random`: 1 − labels_to_random_final(strategy) / labels_to_random_final(random), on the
  mean curves (null if either never reaches the target or random needs 0 labels).
* `savings_vs_random_ci95`: per seed, the same savings with seed k's random final AUC as the target and
  seed k's curves; a Student-t 95% interval of their mean over the seeds where it is defined (null if
  fewer than two seeds give a value). `savings_vs_random_per_seed` lists the per-seed values.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from aift_tf._io import atomic_path, write_json_atomic, write_text_atomic
from aift_tf.errors import AiftError

FULL = "full"
SCRATCH = "scratch"
FULL_MARGIN = 0.01


def _finite(x):
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _mean_std(values):
    a = np.asarray([v for v in values if _finite(v)], dtype=np.float64)
    if a.size == 0:
        return None, None
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def _labels_to(labels, aucs, target):
    from aift_tf.metrics import labels_to_target

    if target is None or not all(_finite(v) for v in aucs) or len(labels) < 2:
        return None
    return labels_to_target(labels, aucs, float(target))


def _savings(need, need_ref):
    from aift_tf.metrics import savings

    if need is None or need_ref is None or need_ref <= 0:
        return None
    return savings(need, need_ref)


def _t_interval(values):
    vals = [v for v in values if _finite(v)]
    if len(vals) < 2:
        return None
    from scipy import stats

    a = np.asarray(vals, dtype=np.float64)
    half = float(stats.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))
    return [float(a.mean() - half), float(a.mean() + half)]


def _curves(rows, strategy, seeds):
    """{seed: (labels list, auc list, positives list)} for the seeds with rows, and the common rounds."""
    by_seed = {}
    for s in seeds:
        rs = sorted((r for r in rows if r["strategy"] == strategy and r["seed"] == s), key=lambda r: r["round"])
        if rs:
            by_seed[s] = rs
    if not by_seed:
        return {}, 0
    n = min(len(v) for v in by_seed.values())
    return by_seed, n


def summarize(rows: list, config: dict, runtime=None) -> dict:
    """The summary dict (see module docstring) from the rows of rounds.csv and the run's config."""
    settings, plan, data = config["settings"], config["plan"], config["data"]
    seeds = list(range(int(settings["seeds"])))
    strategies = list(settings["strategies"])

    def one_shot(name):
        aucs = {r["seed"]: r["test_auc"] for r in rows if r["strategy"] == name}
        if not aucs:
            return None
        m, sd = _mean_std(aucs.values())
        return {"auc_mean": m, "auc_std": sd, "labels": plan["pool_size"], "epochs": plan["full_epochs"],
                "seeds_done": sorted(aucs), "per_seed": {str(k): v for k, v in sorted(aucs.items())}}

    full = one_shot(FULL) or {"auc_mean": None, "auc_std": None, "labels": plan["pool_size"],
                               "epochs": plan["full_epochs"], "seeds_done": [], "per_seed": {}}
    scratch = one_shot(SCRATCH) if settings.get("scratch") else None

    curves = {}
    for st in strategies:
        by_seed, n = _curves(rows, st, seeds)
        if not by_seed or n < 1:
            continue
        labels = [by_seed[next(iter(by_seed))][i]["labels"] for i in range(n)]
        A = np.array([[by_seed[s][i]["test_auc"] for i in range(n)] for s in by_seed], dtype=np.float64)
        P = np.array([[by_seed[s][i]["positives_found"] for i in range(n)] for s in by_seed], dtype=np.float64)
        curves[st] = dict(by_seed=by_seed, n=n, labels=labels, A=A, P=P)

    rnd = curves.get("random")
    random_final = float(np.nanmean(rnd["A"][:, -1])) if rnd is not None else None
    random_need = _labels_to(rnd["labels"], rnd["A"].mean(axis=0).tolist(), random_final) if rnd else None
    full_target = full["auc_mean"] - FULL_MARGIN if _finite(full["auc_mean"]) else None

    out_strats = {}
    for st, c in curves.items():
        mean = c["A"].mean(axis=0)
        std = c["A"].std(axis=0, ddof=1) if c["A"].shape[0] > 1 else np.zeros_like(mean)
        labels = c["labels"]
        ok = bool(np.all(np.isfinite(mean)))
        alc = None
        if ok and len(labels) >= 2:
            from aift_tf.metrics import alc as _alc

            alc = float(_alc(labels, mean.tolist()))
        need = _labels_to(labels, mean.tolist(), random_final) if ok else None
        per_seed_sav = {}
        if rnd is not None:
            for s in c["by_seed"]:
                if s not in rnd["by_seed"] or len(rnd["by_seed"][s]) < rnd["n"]:
                    continue
                r_curve = rnd["by_seed"][s][: rnd["n"]]
                target = r_curve[-1]["test_auc"]
                mine = c["by_seed"][s][: c["n"]]
                n_s = _labels_to([r["labels"] for r in mine], [r["test_auc"] for r in mine], target)
                n_r = _labels_to([r["labels"] for r in r_curve], [r["test_auc"] for r in r_curve], target)
                per_seed_sav[str(s)] = _savings(n_s, n_r)
        out_strats[st] = {
            "learning": (settings.get("random_learning") or settings["learning"]) if st == "random"
            else settings["learning"],
            "seeds_done": sorted(int(s) for s in c["by_seed"]),
            "labels": [int(v) for v in labels],
            "auc_mean": [float(v) for v in mean],
            "auc_std": [float(v) for v in std],
            "final_auc_mean": float(mean[-1]),
            "final_auc_std": float(std[-1]),
            "positives_found_mean": [float(v) for v in c["P"].mean(axis=0)],
            "alc": alc,
            "labels_to_random_final": need,
            "labels_to_full_training": _labels_to(labels, mean.tolist(), full_target) if ok else None,
            "savings_vs_random": _savings(need, random_need),
            "savings_vs_random_ci95": _t_interval(per_seed_sav.values()),
            "savings_vs_random_per_seed": per_seed_sav,
            "per_seed_auc": {str(s): [float(r["test_auc"]) for r in c["by_seed"][s][: c["n"]]] for s in c["by_seed"]},
        }

    complete = all(
        st in out_strats and len(out_strats[st]["seeds_done"]) == len(seeds)
        and len(out_strats[st]["labels"]) == len(plan["sizes"]) + 1 for st in strategies
    ) and len(full["seeds_done"]) == len(seeds)
    summary = {
        "app": data.get("app") if settings.get("app") is None else settings["app"],
        "data": data["path"],
        "data_sha256": data["sha256"],
        "pool_size": plan["pool_size"],
        "test_size": plan["test_size"],
        "seeds": len(seeds),
        "seed_values": seeds,
        "batch_size": plan["batch_size"],
        "rounds": plan["rounds"],
        "budget": plan["budget"],
        "initial": plan["initial"],
        "epochs": plan["epochs"],
        "learning": settings["learning"],
        "model": settings["model"],
        "m0": config["m0"],
        "complete": complete,
        "random_final_auc": random_final,
        "full_training": full,
        "scratch": scratch,
        "strategies": out_strats,
        "froc": _froc_summary(rows, strategies, data.get("froc")),
        "verdict": None,
        "definitions": "see simulate/report.py: mean over seeds; std ddof=1; savings on mean curves; "
                       "ci95 = Student-t interval of per-seed savings",
    }
    summary["verdict"] = verdict_lines(summary)
    best = max((st["final_auc_mean"] for st in out_strats.values()), default=None)
    if _finite(full["auc_mean"]) and best is not None and full["auc_mean"] < best:
        summary["verdict"].append(
            f"Caution: full training (AUC {full['auc_mean']:.4f} with all {plan['pool_size']} labels, "
            f"{plan['full_epochs']} epochs) scores below the best strategy ({best:.4f}), so it is no ceiling here; "
            f"the fine-tuning budget is too small or unstable for this data (try more --epochs/--full-epochs "
            f"or seeds).")
    if runtime is not None:
        summary["runtime"] = runtime
    return summary


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


def _pct(x):
    return "—" if x is None else f"{100 * x:.0f}%"


def verdict_lines(summary) -> list:
    """Plain-language conclusions, honest when a strategy does not beat random."""
    lines = []
    st = summary["strategies"]
    if "random" not in st:
        return ["random was not run, so no savings versus random can be computed."]
    n = summary["seeds"]
    for name, s in st.items():
        if name == "random":
            continue
        sav, ci = s["savings_vs_random"], s["savings_vs_random_ci95"]
        rf = summary["random_final_auc"]
        if sav is None:
            if s["labels_to_random_final"] is None:
                lines.append(f"{name} does NOT beat random: its mean curve never reaches random's final AUC "
                             f"{rf:.4f} within {s['labels'][-1]} labels.")
            else:
                lines.append(f"{name}: savings vs random are undefined: random's final AUC {rf:.4f} is no better "
                             f"than M0's (reached with 0 labels), i.e. random labels did not improve the model.")
            continue
        if sav <= 0:
            lines.append(f"{name} does NOT beat random: it needs {s['labels_to_random_final']:.0f} labels to reach "
                         f"random's final AUC {rf:.4f} (savings {_pct(sav)}).")
        elif ci is None:
            lines.append(f"{name} reaches random's final AUC {rf:.4f} with {s['labels_to_random_final']:.0f} labels "
                         f"(savings {_pct(sav)}); no confidence interval with {n} seed(s).")
        elif ci[0] > 0:
            lines.append(f"{name} saves {_pct(sav)} of the labels random needs (95% CI {_pct(ci[0])} to {_pct(ci[1])} "
                         f"over {n} seeds).")
        else:
            lines.append(f"{name} nominally saves {_pct(sav)} of the labels, but the 95% CI ({_pct(ci[0])} to "
                         f"{_pct(ci[1])}) includes 0: not a clear win over random with {n} seeds.")
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
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, s in summary["strategies"].items():
        x = np.asarray(s["labels"])
        m, sd = np.asarray(s["auc_mean"]), np.asarray(s["auc_std"])
        ax.plot(x, m, marker="o", ms=3, label=f"{name} ({len(s['seeds_done'])} seeds)")
        ax.fill_between(x, m - sd, m + sd, alpha=0.2)
    full = summary["full_training"]
    if _finite(full.get("auc_mean")):
        ax.axhline(full["auc_mean"], color="k", ls="--", lw=1,
                   label=f"full training ({summary['pool_size']} labels)")
    sc = summary.get("scratch")
    if sc and _finite(sc.get("auc_mean")):
        ax.axhline(sc["auc_mean"], color="gray", ls=":", lw=1.2, label="from scratch (whole pool)")
    ax.set_xlabel("labeled candidates")
    ax.set_ylabel("test AUC (candidate level)")
    ax.set_title(f"{summary['app']}: learning curves (mean ± std over seeds)")
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


def _final_predictions(out: Path, strategy: str, seed: int):
    sdir = out / "state" / strategy / f"seed{seed}"
    best = None
    if sdir.is_dir():
        for p in sdir.iterdir():
            if p.name.startswith("round") and p.name[5:].isdigit() and (p / "test_predictions.npz").is_file():
                r = int(p.name[5:])
                if best is None or r > best[0]:
                    best = (r, p / "test_predictions.npz")
    if best is None:
        return None
    with np.load(best[1]) as z:
        return {k: z[k] for k in z.files}


def plot_froc(out: Path, summary, path: Path) -> bool:
    from aift_tf.metrics import froc

    plt = _plt()
    grid = np.linspace(0, 4, 81)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for name in list(summary["strategies"]) + [FULL, SCRATCH]:
        curves = []
        for s in summary["seed_values"]:
            d = _final_predictions(out, name, s)
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


def _n(x):
    return "never" if x is None else f"{x:.0f}"


def render_markdown(summary, config, figures) -> str:
    s = summary
    m0 = s["m0"]
    L = [f"# aift-sim report: {s['app']}", ""]
    if not s["complete"]:
        L += ["> **Partial run**: not every (strategy, seed) has finished; numbers use what exists. "
              "Continue with `aift-sim --out DIR --resume`.", ""]
    L += ["## Answer", ""]
    L += [f"- {line}" for line in s["verdict"]]
    full = s["full_training"]
    L += [f"- Full training (all {s['pool_size']} pool labels, {full['epochs']} epoch(s)): AUC "
          f"{_f(full['auc_mean'])} ± {_f(full['auc_std'])}."]
    if s.get("scratch"):
        L += [f"- Learning from scratch (no pre-training, whole pool): AUC {_f(s['scratch']['auc_mean'])} ± "
              f"{_f(s['scratch']['auc_std'])}."]
    L += ["", "## Savings", "",
          "| strategy | final AUC (mean ± std) | ALC | labels to random's final AUC | labels to full training − 0.01 "
          "| savings vs random | 95% CI |",
          "|---|---|---|---|---|---|---|"]
    for name, st in s["strategies"].items():
        ci = st["savings_vs_random_ci95"]
        L.append(f"| {name} | {_f(st['final_auc_mean'])} ± {_f(st['final_auc_std'])} | {_f(st['alc'])} | "
                 f"{_n(st['labels_to_random_final'])} | {_n(st['labels_to_full_training'])} | "
                 f"{_pct(st['savings_vs_random'])} | "
                 f"{'—' if ci is None else f'{_pct(ci[0])} to {_pct(ci[1])}'} |")
    L += ["", f"Random's final mean AUC (the target): {_f(s['random_final_auc'])}. Savings = 1 − labels the "
          f"strategy needs ÷ labels random needs to reach it (mean curves, linear interpolation between rounds); "
          f"the 95% CI is a Student-t interval over per-seed savings (none with one seed).", ""]
    if s.get("froc"):
        L += ["## FROC (final round, mean over seeds)", "", "| strategy | sens @1 FP/vol | @2 | @3 |", "|---|---|---|---|"]
        for name, v in s["froc"].items():
            L.append(f"| {name} | {_f(v['sens_fp1'], 3)} | {_f(v['sens_fp2'], 3)} | {_f(v['sens_fp3'], 3)} |")
        L.append("")
    L += ["## Figures", ""]
    for title, fname in figures:
        L += [f"### {title}", "", f"![{title}]({fname})", ""]
    L += ["## Setup", "",
          f"- data: `{s['data']}` (sha256 `{s['data_sha256'][:16]}…`), pool {s['pool_size']} candidates, "
          f"test {s['test_size']}",
          f"- model `{s['model']}`, learning strategy {s['learning']}"
          + (f" (random: {config['settings']['random_learning']})" if config['settings'].get('random_learning') else ""),
          f"- {s['rounds']} rounds × {s['batch_size']} candidates"
          + (f" after {s['initial']} initial random labels" if s["initial"] else " from an empty labeled set")
          + f" (budget {s['budget']}), {s['epochs']} epoch(s) per round, {s['seeds']} seed(s)",
          f"- M0: {m0.get('path') or m0.get('source')}" + (f" — {m0['note']}" if m0.get("note") else ""),
          f"- command: `{config.get('command_line') or ''}`", ""]
    if s.get("runtime"):
        L += [f"Run time of the last invocation: {s['runtime'].get('this_invocation_seconds', '?')} s.", ""]
    L += ["Per-round numbers: `rounds.csv`; all numbers above: `summary.json`.", ""]
    return "\n".join(L)


def build_report(out, runtime=None) -> dict:
    """(Re)build summary.json, the figures and report.md of run folder `out` from its rounds.csv."""
    from simulate.experiment import load_run_config, read_rounds_csv

    out = Path(out)
    try:
        config = load_run_config(out)
    except AiftError as e:
        raise AiftError(str(e).replace("--resume: ", "")) from None
    csv_path = out / "rounds.csv"
    if not csv_path.is_file():
        raise AiftError(f"{out}: no rounds.csv yet (the run has not finished a round)")
    rows = read_rounds_csv(csv_path)
    if runtime is None and (out / "summary.json").is_file():
        try:
            runtime = json.loads((out / "summary.json").read_text()).get("runtime")
        except (OSError, ValueError):
            runtime = None
    summary = summarize(rows, config, runtime=runtime)
    figures = []
    if summary["strategies"]:
        plot_learning_curves(summary, out / "learning_curves.png")
        figures.append(("Learning curves", "learning_curves.png"))
        plot_positives(summary, out / "positives_found.png")
        figures.append(("Positives found", "positives_found.png"))
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
