"""The savings statistics and the verdict templates of `aift-sim`'s report, on fixture run folders.

No training here: each test writes a run folder by hand (config.json, target.json, rounds.csv) with the
curves it needs and checks what simulate.report derives from it.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from aift_tf.errors import AiftError


def _fake_run(tmp_path, curves, full_aucs, *, initial=(10,), query=10, pool=200, delta=0.01, m0_source="m0",
              scratch=None, rounds=None, max_labels=None):
    """A run folder: curves = {strategy: [per-seed AUC lists, round 0 (M0) first]}; full_aucs per seed.

    rounds: the planned query rounds (default: every curve's length − 2); a curve longer than that holds the rounds
    its seed ran past the budget (ragged across seeds). max_labels: the cap (plan.max_labels; None = a run made
    before the cap existed)."""
    from simulate import run_folder as rf

    seeds = max(len(v) for v in curves.values())
    n_rounds = len(next(iter(curves.values()))[0]) if rounds is None else rounds + 2  # M0 + initial + query rounds
    initial = list(initial) * seeds if len(initial) == 1 else list(initial)
    config = {
        "format": rf.CONFIG_FORMAT, "command_line": "aift-sim test",
        "settings": {"app": None, "data": "x.h5", "seeds": seeds, "strategies": list(curves), "learning": "ACFT-LQ",
                     "random_learning": None, "model": "small_cnn", "trainable": "top", "scratch": scratch is not None,
                     "train_batch_size": 64, "early_stopping": False},
        "plan": {"seeds": seeds, "pool_size": pool, "test_size": 50, "query_size": query, "rounds": n_rounds - 2,
                 "budget": int(np.mean(initial)) + query * (n_rounds - 2),
                 "initial": {"rule": "test rule", "minimum": 0, "per_class": 2,
                             "sizes": {str(s): initial[s] for s in range(seeds)}, "mean": float(np.mean(initial))},
                 "steps": 40, "epochs": None, "lr": 1e-4, "full_epochs": 40, "full_patience": 4,
                 "full_seeds": len(full_aucs),
                 "early_stopping_split": "val", "target_delta": delta,
                 **({} if max_labels is None else {"max_labels": max_labels})},
        "m0": ({"weights": None, "source": "none", "note": "random initialisation (--weights none)"}
               if m0_source == "none" else {"weights": "m0.weights.h5", "source": "default-m0", "path": "m0.weights.h5"}),
        "data": {"path": "x.h5", "sha256": "0" * 64, "app": "fake", "froc": False},
    }
    rows = []
    for st, per_seed in curves.items():
        for s, aucs in enumerate(per_seed):
            for r, a in enumerate(aucs):
                labels = 0 if r == 0 else initial[s] + query * (r - 1)
                rows.append(dict(strategy=st, seed=s, round=r, labels=labels, positives_found=r, test_auc=float(a),
                                 finetune_seconds=1.0, scoring_seconds=0.5))
    for s, a in enumerate(full_aucs):
        rows.append(dict(strategy="full", seed=s, round=1, labels=pool, positives_found=30, test_auc=float(a),
                         finetune_seconds=2.0, scoring_seconds=0.0))
    for s, a in enumerate(scratch or []):
        rows.append(dict(strategy="scratch", seed=s, round=1, labels=pool, positives_found=30, test_auc=float(a),
                         finetune_seconds=2.0, scoring_seconds=0.0))
    rf.write_config(tmp_path, config)
    rf.write_rounds(tmp_path, rows)
    rf.write_training_curves(tmp_path, [{"job": "full", "seed": s, "epoch": e, "loss": 1.0 / e, "val_auc": 0.8}
                                        for s in range(len(full_aucs)) for e in (1, 2, 3)])
    full_mean = float(np.mean(full_aucs))
    rf.write_target(tmp_path, {"target_auc": full_mean - delta, "full_auc_mean": full_mean, "delta": delta,
                               "seeds": len(full_aucs),
                               "rule": f"mean full-training test AUC over {len(full_aucs)} seeds − {delta:g}"})
    return tmp_path


def _noisy(rng, start, end, n_rounds, noise):
    x = np.linspace(0, 1, n_rounds - 1)
    base = start + (end - start) * (1 - np.exp(-4 * x))
    return [0.5] + list(np.clip(base + rng.normal(0, noise, x.size), 0, 1))


def _intervals(summary):
    """Every (estimate, ci95) pair in the summary."""
    out = []
    for e in summary["strategies"].values():
        for sv in e["savings_vs"].values():
            if sv["ci95"] is not None:
                out.append((sv["estimate"], sv["ci95"]))
        for d in e["auc_diff_vs_random"].values():
            out.append((d["mean"], d["ci95"]))
        for d in (e["alc_diff_vs_random"], e["final_auc_diff_vs_full"]):
            if d and d["ci95"] is not None:
                out.append((d["mean"], d["ci95"]))
    return out


# ----------------------------------------------------------------------------------------------- library maths


def test_isotonic_crossing_ignores_a_noisy_touch_of_the_target():
    from aift_tf.metrics import labels_to_target, smooth_curve

    x, y = [0, 10, 20, 30, 40], [0.5, 0.8, 0.93, 0.90, 0.94]
    assert labels_to_target(x, y, 0.92) == pytest.approx(10 + 10 * 0.12 / 0.13)  # raw: the noisy touch at 20
    assert smooth_curve(x, y).tolist() == pytest.approx([0.5, 0.8, 0.915, 0.915, 0.94])
    assert labels_to_target(x, y, 0.92, smooth=True) == pytest.approx(30 + 10 * 0.005 / 0.025)
    assert labels_to_target(x, [0.5, 0.6, 0.6, 0.6, 0.6], 0.92, smooth=True) is None
    assert labels_to_target(x, [0.5, 0.6, 0.6, 0.6, 0.6], 0.92, smooth=True, anchor=(200, 0.93)) == \
        pytest.approx(40 + 160 * 0.32 / 0.33)
    with pytest.raises(AiftError, match="anchor"):
        labels_to_target(x, y, 0.92, anchor=(40, 0.95))


def test_paired_bootstrap_is_seeded_contains_its_estimate_and_is_paired():
    from aift_tf.metrics import paired_bootstrap

    rng = np.random.default_rng(1)
    shared = rng.normal(0, 1.0, 12)  # a large per-seed effect shared by both arms: pairing removes it
    a, b = shared + 0.3 + rng.normal(0, 0.05, 12), shared + rng.normal(0, 0.05, 12)
    diff = lambda u, v, axis=-1: np.mean(u, axis=axis) - np.mean(v, axis=axis)  # noqa: E731
    r1 = paired_bootstrap([a, b], diff, seed=3)
    assert r1 == paired_bootstrap([a, b], diff, seed=3)
    lo, hi = r1["ci95"]
    assert lo <= r1["estimate"] <= hi and lo > 0.2 and hi < 0.4  # unpaired, the interval would span 0
    same = paired_bootstrap([[0.7, 0.8, 0.9], [0.7, 0.8, 0.9]], diff)
    assert same["estimate"] == 0 and same["ci95"] == [0.0, 0.0]
    one = paired_bootstrap([[0.7], [0.6]], diff)
    assert one["ci95"] == [pytest.approx(0.1)] * 2 and one["n"] == 1
    with pytest.raises(AiftError, match="non-finite"):
        paired_bootstrap([[0.7, np.nan], [0.6, 0.5]], diff)
    with pytest.raises(AiftError, match="equally long"):
        paired_bootstrap([[0.7, 0.1], [0.6]], diff)


# ----------------------------------------------------------------------------------------------- savings


def test_rising_random_curve_aift_saves_with_an_interval(tmp_path):
    from simulate.report import build_report

    rng = np.random.default_rng(0)
    curves = {"aift": [], "random": []}
    for _ in range(8):
        curves["aift"].append(_noisy(rng, 0.7, 0.95, 12, 0.004))
        curves["random"].append([0.5, 0.7, 0.74, 0.78, 0.81, 0.84, 0.86, 0.88, 0.9, 0.91, 0.92, 0.925])
    s = build_report(_fake_run(tmp_path, curves, [0.95] * 8))
    sv = s["strategies"]["aift"]["savings"]
    assert sv["reference"] == "random" and sv["target_auc"] == pytest.approx(0.94)
    assert not sv["censored"] and sv["seeds_used"] == 8 and sv["ci95"][0] > 0.3
    # random never reaches 0.94 within 110 labels: its crossing lies on the segment to the anchor (200, 0.95)
    assert 110 < sv["labels_needed_random"] < 200
    assert sv["ci95"][0] <= sv["estimate"] <= sv["ci95"][1]
    assert s["verdict"][0] == (f"aift saves {100 * sv['estimate']:.0f}% of the labels random needs to reach AUC "
                               f"0.9400 (95% CI {100 * sv['ci95'][0]:.0f}% to {100 * sv['ci95'][1]:.0f}% over 8 "
                               f"paired seeds, aift reaching it within its budget on every seed). random does not "
                               f"reach it within its budget on 8 of 8 seeds; there "
                               f"its labels needed are read off the line to full training on the whole pool (200 "
                               f"labels).")
    assert set(s["strategies"]["aift"]["auc_diff_vs_random"]) == {"30", "60", "110"}  # 25%, 50%, 100% of queries
    for est, (lo, hi) in _intervals(s):
        assert lo <= est <= hi
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("savings", "auc_diff_vs_random", "alc_diff_vs_random", "unstable_rounds"):
        assert key in summary["strategies"]["aift"]
    for key in ("seeds", "m0", "verdict", "initial"):
        assert key in summary
    assert set(summary["strategies"]["aift"]["savings"]) >= {
        "target_auc", "target_rule", "labels_needed", "labels_needed_random", "estimate", "ci95", "censored",
        "per_seed"}


def test_identical_strategies_give_no_detectable_difference(tmp_path):
    from simulate.report import build_report

    rng = np.random.default_rng(2)
    seeds = [_noisy(rng, 0.7, 0.93, 8, 0.01) for _ in range(6)]
    s = build_report(_fake_run(tmp_path, {"entropy": seeds, "random": seeds}, [0.935] * 6, delta=0.03))
    sv = s["strategies"]["entropy"]["savings"]
    assert sv["estimate"] == pytest.approx(0) and sv["ci95"] == pytest.approx([0, 0])
    assert s["verdict"][0].startswith("No detectable difference between entropy and random")
    for d in s["strategies"]["entropy"]["auc_diff_vs_random"].values():
        assert d["mean"] == 0 and d["ci95"] == [0.0, 0.0]


def test_censored_strategy_is_kept_as_a_bound_not_dropped(tmp_path):
    from simulate.report import build_report

    rng = np.random.default_rng(3)
    rnd = [_noisy(rng, 0.7, 0.93, 8, 0.003) for _ in range(5)]
    bad = [[0.5, 0.7, 0.72, 0.74, 0.75, 0.76, 0.77, 0.78] for _ in range(5)]  # never reaches 0.93
    s = build_report(_fake_run(tmp_path, {"margin": bad, "random": rnd}, [0.92] * 5))
    sv = s["strategies"]["margin"]["savings"]
    assert sv["censored"] and sv["censored_seeds"] == 5 and sv["seeds_used"] == 5
    assert all(v is not None for v in sv["per_seed"].values())
    assert sv["labels_needed"] == pytest.approx(70)  # its budget: a lower bound
    assert sv["ci95"][1] < 0
    line = next(v for v in s["verdict"] if v.startswith("margin"))
    assert line.startswith("margin needs more labels than random") and "misses the target" in line
    text = (tmp_path / "report.md").read_text()
    assert "| margin | random | ≥ 70 |" in text and "5 of 5" in text


def test_partly_censored_positive_bound_claims_no_saving(tmp_path):
    from simulate.report import build_report

    rnd = [[0.5, 0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.91]] * 5
    good = [[0.5, 0.8, 0.93, 0.95, 0.95, 0.95, 0.95, 0.95]] * 4 + [[0.5, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9]]
    s = build_report(_fake_run(tmp_path, {"aift": good, "random": rnd}, [0.94] * 5))
    sv = s["strategies"]["aift"]["savings"]
    assert sv["censored_seeds"] == 1 and sv["ci95"][0] > 0
    line = s["verdict"][0]
    assert "within its budget on only 4 of 5 seeds" in line and "no saving is demonstrated" in line


def test_flat_random_curve_sentence_cites_only_measured_quantities(tmp_path):
    """Random labels barely move the model: the verdict must not invent 'reached with 0 labels'."""
    from simulate.report import build_report

    rng = np.random.default_rng(4)
    flat = [[0.6] + [0.6 + rng.normal(0, 0.002) for _ in range(7)] for _ in range(5)]
    aift = [_noisy(rng, 0.65, 0.9, 8, 0.003) for _ in range(5)]
    s = build_report(_fake_run(tmp_path, {"aift": aift, "random": flat}, [0.9] * 5))
    text = " ".join(s["verdict"])
    assert not re.search(r"\b0 labels", text) and "undefined" not in text and "no better than M0" not in text
    sv = s["strategies"]["aift"]["savings"]
    assert sv["labels_needed_random"] > 70  # random only gets there on the segment to the whole pool
    # every number in the verdict's savings sentence is formatted from the summary
    assert f"{100 * sv['estimate']:.0f}%" in s["verdict"][0] and f"{sv['target_auc']:.4f}" in s["verdict"][0]


def test_strategy_above_the_ceiling_is_flagged_first(tmp_path):
    from simulate.report import build_report

    rnd = [[0.5, 0.7, 0.8, 0.85, 0.9, 0.9]] * 5
    aift = [[0.5, 0.8, 0.9, 0.92, 0.93, 0.93]] * 5
    s = build_report(_fake_run(tmp_path, {"aift": aift, "random": rnd}, [0.86, 0.85, 0.87, 0.86, 0.86]))
    assert s["ceiling"] == {"reliable": False, "exceeded_by": ["aift", "random"]}
    assert s["verdict"][0].startswith("Full training (AUC 0.8600") and "not a ceiling" in s["verdict"][0]
    text = (tmp_path / "report.md").read_text()
    first = text.split("## Answer")[0]
    assert "not a ceiling here" in first and "--full-epochs" in first
    assert "Unreliable: a strategy ends above full training" in text


def test_no_m0_is_said_loudly_and_few_seeds_give_no_verdict(tmp_path):
    from simulate.report import build_report

    s = build_report(_fake_run(tmp_path, {"aift": [[0.5, 0.7, 0.8, 0.9], [0.5, 0.75, 0.85, 0.9]] * 2,
                                          "random": [[0.5, 0.6, 0.7, 0.8], [0.5, 0.6, 0.75, 0.8]] * 2},
                               [0.9] * 4, m0_source="none"))
    assert s["verdict"][0].startswith("NO PRE-TRAINED M0")
    assert s["strategies"]["aift"]["savings"]["ci95"] is None
    assert any("no interval and no verdict" in v for v in s["verdict"])
    first = (tmp_path / "report.md").read_text().split("## Answer")[0]
    assert "NO PRE-TRAINED M0" in first


def test_unstable_rounds_share(tmp_path):
    from simulate.report import build_report

    curves = {"aift": [[0.7, 0.6, 0.8, 0.85], [0.7, 0.75, 0.7, 0.9]], "random": [[0.7, 0.72, 0.8, 0.85]] * 2}
    s = build_report(_fake_run(tmp_path, curves, [0.9, 0.9]))
    assert s["strategies"]["aift"]["unstable_rounds"] == pytest.approx(1 / 6)  # one drop > 0.05 in 6 transitions
    assert s["strategies"]["random"]["unstable_rounds"] == 0
    assert any(v.startswith("Share of rounds whose test AUC fell") and "aift 17%" in v for v in s["verdict"])


def test_every_verdict_number_comes_from_the_summary(tmp_path):
    """Each percentage / AUC in the verdict appears, formatted, among the summary's values."""
    from simulate.report import build_report

    rng = np.random.default_rng(5)
    curves = {st: [_noisy(rng, 0.65, end, 10, 0.01) for _ in range(6)]
              for st, end in (("aift", 0.93), ("random", 0.9), ("random-rft", 0.88))}
    s = build_report(_fake_run(tmp_path, curves, [0.93] * 6))
    values = set()

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                values.add(str(k))
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, float):
            values.update({f"{100 * o:.0f}%".replace("-0%", "0%"), f"{o:.4f}", f"{o:+.3f}", f"{o:+.4f}", f"{o:.3f}",
                           f"{o:.0f}"})
        elif isinstance(o, int):
            values.add(str(o))

    walk({k: v for k, v in s.items() if k != "verdict"})
    for line in s["verdict"]:
        for tok in re.findall(r"[+-]?\d+(?:\.\d+)?%?", line):
            assert tok in values or tok.lstrip("+") in values or tok in ("95%", "0.05"), (tok, line)


def test_ceiling_check_with_full_training_on_fewer_seeds(tmp_path):
    """Full training runs on the first 3 seeds: the ceiling check compares means without pairing."""
    from simulate.report import build_report

    rng = np.random.default_rng(6)
    aift = [_noisy(rng, 0.7, 0.93, 6, 0.003) for _ in range(10)]
    rnd = [_noisy(rng, 0.7, 0.85, 6, 0.003) for _ in range(10)]
    s = build_report(_fake_run(tmp_path, {"aift": aift, "random": rnd}, [0.88, 0.885, 0.875]))
    assert s["complete"] and s["full_training"]["seeds_done"] == [0, 1, 2]
    d = s["strategies"]["aift"]["final_auc_diff_vs_full"]
    assert d["seeds"] == 10 and d["full_seeds"] == 3 and d["ci95"][0] > 0
    assert s["ceiling"]["exceeded_by"] == ["aift"] and s["verdict"][0].startswith("Full training")
    assert s["strategies"]["random"]["final_auc_diff_vs_full"]["ci95"][1] < 0


def test_never_reaching_the_target_on_any_seed_is_said_so(tmp_path):
    from simulate.report import build_report

    rnd = [[0.5, 0.7, 0.75, 0.78, 0.8, 0.81]] * 5
    aift = [[0.5, 0.7, 0.8, 0.84, 0.86, 0.87]] * 5  # target 0.89: neither reaches it; aift is closer
    s = build_report(_fake_run(tmp_path, {"aift": aift, "random": rnd}, [0.9] * 5))
    sv = s["strategies"]["aift"]["savings"]
    assert sv["censored_seeds"] == sv["seeds_used"] == 5 and sv["ci95"][0] > 0
    assert s["verdict"][0].startswith("aift does not reach AUC 0.8900 within its budget on any of the 5 seeds")
    assert "no saving is demonstrated" in s["verdict"][0]


# ----------------------------------------------------------------------------------------------- ragged curves
# Seeds query on past the planned budget until their isotonic curve crosses the target or the cap is reached
# (plan.max_labels); rounds.csv is then ragged across seeds. These run folders are built the way the run writes
# them, with the same crossing rule (aift_tf.metrics.labels_to_target, smooth=True) deciding when a seed stops.


def _ragged(rng, a_inf, scale, *, rounds, target, cap, a1=0.7, initial=10, query=10, noise=0.003, m0=0.5):
    """One seed's AUCs as the run writes them: M0, the initial set, the planned rounds, then rounds until the
    isotonic curve crosses `target` or the next query would pass `cap`."""
    from aift_tf.metrics import labels_to_target

    labels, aucs, r = [0], [m0], 1
    while True:
        n = initial + query * (r - 1)
        if r > rounds + 1 and (labels_to_target(labels, aucs, target, smooth=True) is not None or n > cap):
            return aucs
        labels.append(n)
        aucs.append(a_inf - (a_inf - a1) * np.exp(-(n - initial) / scale) + rng.normal(0, noise))
        r += 1


def _estimates_and_intervals(o, where="summary"):
    """Every (where, estimate, ci95) in a summary: any block with a ci95 and an estimate / mean / saving."""
    if isinstance(o, dict):
        if o.get("ci95") is not None:
            est = next((o[k] for k in ("estimate", "mean", "saving", "auc_mean") if k in o), None)
            if isinstance(est, list):  # a curve: one interval per point
                yield from ((f"{where}[{i}]", e, ci) for i, (e, ci) in enumerate(zip(est, o["ci95"])))
            else:
                yield where, est, o["ci95"]
        for k, v in o.items():
            yield from _estimates_and_intervals(v, f"{where}.{k}")
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from _estimates_and_intervals(v, f"{where}[{i}]")


def _assert_estimates_inside(summary):
    found = list(_estimates_and_intervals(summary))
    assert found
    for where, est, (lo, hi) in found:
        assert est is not None and lo <= est <= hi, (where, est, lo, hi)


def _lines(s):
    """(a), (b), (c) of the first strategy: the verdict lines after the loud ones."""
    return [v for v in s["verdict"] if not v.startswith(("NO PRE-TRAINED", "Full training"))][:3]


def test_seeds_querying_past_the_budget_are_measured_where_they_cross(tmp_path):
    from simulate.report import build_report

    rng = np.random.default_rng(10)
    kw = dict(rounds=6, target=0.94, cap=300)
    curves = {"aift": [_ragged(rng, 0.97, 40, **kw) for _ in range(8)],
              "random": [_ragged(rng, 0.97, 80, **kw) for _ in range(8)]}
    assert len({len(c) for c in curves["aift"] + curves["random"]}) > 1  # ragged
    assert all(len(c) > 8 for c in curves["random"])  # random crosses past the budget (70 labels)
    s = build_report(_fake_run(tmp_path, curves, [0.95] * 8, pool=400, rounds=6, max_labels=300))
    assert s["budget"] == 70 and s["max_labels"] == 300 and s["complete"]
    e, sv = s["strategies"]["aift"], s["strategies"]["aift"]["savings"]
    # "at the budget" numbers are read at the planned budget, not at each seed's last row
    assert len(e["labels"]) == len(e["auc_mean"]) == 8 and e["labels"][-1] == 70
    assert e["final_auc_mean"] == pytest.approx(np.mean([c[7] for c in curves["aift"]]))
    assert s["strategies"]["random"]["final_auc_mean"] == pytest.approx(np.mean([c[7] for c in curves["random"]]))
    assert set(e["auc_diff_vs_random"]) == {"30", "40", "70"}
    assert [len(v) for v in e["per_seed_auc"].values()] == [len(c) for c in curves["aift"]]
    # the fixed target: both measured within the cap, nothing anchored or censored
    assert sv["censored_seeds"] == 0 and sv["anchored_seeds"] == 0 and sv["seeds_used"] == 8
    assert 70 < sv["labels_needed"] < sv["labels_needed_random"] < 300
    assert sv["labels_needed_random"] == pytest.approx(np.mean(
        [_crossing(c, 0.94) for c in curves["random"]]))
    # the label-efficiency curve: 20 levels from the initial set's AUC to the target
    le = e["label_efficiency"]
    assert len(le) == 20 and le[-1]["auc"] == pytest.approx(0.94)
    assert le[0]["auc"] == pytest.approx(np.mean([c[1] for c in curves["aift"] + curves["random"]]))
    assert le[-1]["saving"] == pytest.approx(sv["estimate"]) and le[-1]["ci95"] == pytest.approx(sv["ci95"])
    assert set(le[0]) >= {"auc", "labels_needed", "labels_needed_random", "saving", "ci95", "censored_seeds"}
    sb = e["saving_at_random_budget"]
    assert set(sb) >= {"auc", "labels_needed", "labels_needed_random", "estimate", "ci95"}
    assert sb["auc"] == pytest.approx(s["strategies"]["random"]["final_auc_mean"]) and sb["ci95"][1] < 1
    _assert_estimates_inside(s)
    a, b, c = _lines(s)
    assert a == (f"aift saves {100 * sv['estimate']:.0f}% of the labels random needs to reach AUC 0.9400 (95% CI "
                 f"{100 * sv['ci95'][0]:.0f}% to {100 * sv['ci95'][1]:.0f}% over 8 paired seeds, aift reaching it "
                 f"within the cap of 300 labels on every seed).")
    assert b.startswith(f"aift reaches the AUC random reaches with its planned budget ({sb['auc']:.4f} at 70 labels) "
                        f"using {100 * sb['estimate']:.0f}% of the labels random needs for it")
    assert c.startswith("aift vs random over 20 AUC levels from the initial set's")
    assert "the saving is largest at AUC" in c
    best = max(le, key=lambda r: r["saving"])
    assert f"largest at AUC {best['auc']:.4f}, {100 * best['saving']:.0f}%" in c
    text = (tmp_path / "report.md").read_text()
    assert "## Label efficiency" in text and "label_efficiency.png" in text and "the cap of 300 labels" in text
    for png in ("learning_curves.png", "label_efficiency.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def _crossing(aucs, target, query=10, initial=10):
    from aift_tf.metrics import labels_to_target

    labels = [0] + [initial + query * (r - 1) for r in range(1, len(aucs))]
    return labels_to_target(labels, aucs, target, smooth=True)


def test_random_never_crossing_within_the_cap_is_anchored_and_said_so(tmp_path):
    from simulate.report import build_report

    rng = np.random.default_rng(11)
    kw = dict(rounds=6, target=0.94, cap=150)
    aift = [_ragged(rng, 0.97, 40, **kw) for _ in range(5)] + [_ragged(rng, 0.93, 40, **kw)]  # one never crosses
    rnd = [_ragged(rng, 0.97, 150, **kw) for _ in range(6)]  # crosses near 330 labels: past the cap
    s = build_report(_fake_run(tmp_path, {"aift": aift, "random": rnd}, [0.95] * 6, pool=400, rounds=6,
                               max_labels=150))
    sv = s["strategies"]["aift"]["savings"]
    assert sv["anchored_seeds"] == 6 and sv["censored_seeds"] == 1 and sv["ci95"][0] > 0
    assert 150 < sv["labels_needed_random"] < 400
    assert sv["per_seed"]["5"] < sv["per_seed"]["0"]  # the censored seed: its saving is only a bound
    a = _lines(s)[0]
    assert a.startswith("aift reaches AUC 0.9400 within the cap of 150 labels on only 5 of 6 seeds: its saving over "
                        "random is at most") and "so no saving is demonstrated" in a
    assert a.endswith("random does not reach it within the cap of 150 labels on 6 of 6 seeds; there its labels needed "
                      "are read off the line to full training on the whole pool (400 labels).")
    assert "| 6 of 6 |" in (tmp_path / "report.md").read_text()
    _assert_estimates_inside(s)


def test_aift_worse_than_random_and_censored_at_the_cap(tmp_path):
    from simulate.report import build_report

    rng = np.random.default_rng(12)
    kw = dict(rounds=6, target=0.94, cap=150)
    aift = [_ragged(rng, 0.93, 60, **kw) for _ in range(6)]  # never reaches 0.94: runs to the cap
    rnd = [_ragged(rng, 0.97, 30, **kw) for _ in range(6)]  # crosses one round past the planned budget
    assert all(len(c) == 9 for c in rnd) and all(len(c) == 16 for c in aift)  # 150 labels = round 15
    s = build_report(_fake_run(tmp_path, {"aift": aift, "random": rnd}, [0.95] * 6, pool=400, rounds=6,
                               max_labels=150))
    assert s["complete"]
    e = s["strategies"]["aift"]
    sv, sb = e["savings"], e["saving_at_random_budget"]
    assert sv["censored_seeds"] == 6 and sv["labels_needed"] == 150 and sv["ci95"][1] < 0
    assert sb["censored_seeds"] == 6 and sb["ci95"][0] > 1
    a, b, c = _lines(s)
    assert a.startswith("aift needs more labels than random to reach AUC 0.9400") and \
        "misses the target within the cap of 150 labels on 6 of 6 seeds, so its true saving is lower still." in a
    assert b.startswith("aift needs more labels than random to reach the AUC random reaches with its planned budget")
    assert b.endswith("it does not reach it within the cap of 150 labels on 6 of 6 seeds, so it needs more still.")
    k = sum(r["ci95"][1] < 0 and r["censored_seeds_random"] == 0 for r in e["label_efficiency"])
    k_fewer = sum(r["ci95"][0] > 0 and r["censored_seeds"] == 0 for r in e["label_efficiency"])
    assert k >= 15 and k_fewer <= 1  # the seeds' initial sets differ here (independent noise): the lowest level
    assert c.endswith(f"saves labels (interval above 0) at {k_fewer} of the 20 levels and needs more (interval below "
                      f"0) at {k}.")
    _assert_estimates_inside(s)


def test_identical_strategies_tie_on_every_line(tmp_path):
    from simulate.report import build_report

    rng = np.random.default_rng(13)
    kw = dict(rounds=6, target=0.94, cap=200)
    seeds = [_ragged(rng, 0.97, 60, **kw) for _ in range(6)]
    s = build_report(_fake_run(tmp_path, {"entropy": seeds, "random": seeds}, [0.95] * 6, pool=400, rounds=6,
                               max_labels=200))
    a, b, c = _lines(s)
    assert a.startswith("No detectable difference between entropy and random in labels needed to reach AUC 0.9400: "
                        "saving 0% (95% CI 0% to 0% over 6 paired seeds, entropy reaching it within the cap of 200 "
                        "labels on every seed).")
    assert b.startswith("No detectable difference between entropy and random in the labels needed to reach the AUC "
                        "random reaches with its planned budget") and "100% of the labels random needs" in b
    assert "an interval that includes 0" in c and c.endswith("at 0 of the 20 levels and needs more (interval below "
                                                             "0) at 0.")
    for r in s["strategies"]["entropy"]["label_efficiency"]:
        assert r["saving"] == 0 and r["ci95"] == [0.0, 0.0]
    _assert_estimates_inside(s)


def test_a_seed_still_below_the_target_and_the_cap_makes_the_run_partial(tmp_path):
    from simulate.report import build_report

    rng = np.random.default_rng(14)
    kw = dict(rounds=6, target=0.94, cap=300)
    rnd = [_ragged(rng, 0.97, 80, **kw) for _ in range(5)]
    rnd[2] = rnd[2][:10]  # stopped at 90 labels: neither crossed nor at the cap
    s = build_report(_fake_run(tmp_path, {"aift": [_ragged(rng, 0.97, 40, **kw) for _ in range(5)], "random": rnd},
                               [0.95] * 5, pool=400, rounds=6, max_labels=300))
    assert not s["complete"] and "Partial run" in (tmp_path / "report.md").read_text()


def test_runs_without_a_cap_report_at_their_budget(tmp_path):
    """Runs made before plan.max_labels: the cap is the planned budget and the sentences say "its budget"."""
    from simulate.report import build_report

    rnd = [[0.5, 0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.91]] * 5
    good = [[0.5, 0.8, 0.93, 0.95, 0.95, 0.95, 0.95, 0.95]] * 4 + [[0.5, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9]]
    s = build_report(_fake_run(tmp_path, {"aift": good, "random": rnd}, [0.94] * 5))
    assert s["max_labels"] == s["budget"] == 70
    assert s["strategies"]["aift"]["savings"]["cap"] == 70
    assert "within its budget on only 4 of 5 seeds" in s["verdict"][0]
    assert "the cap of" not in (tmp_path / "report.md").read_text()
    _assert_estimates_inside(s)


# ----------------------------------------------------------------------------------------------- verdict wording
# The sentences are generated from the intervals (and the censoring counts) only, never from a point estimate:
# constructed blocks with the same estimate and different intervals get different verdicts.


def _block(ci, censored=0, censored_random=0, anchored=0, estimate=0.3, cap=300, budget=100):
    return {"reference": "random", "target_auc": 0.9, "estimate": estimate, "ci95": ci, "seeds_used": 10,
            "censored_seeds": censored, "censored_seeds_random": censored_random, "anchored_seeds": anchored,
            "labels_needed": 140.0, "labels_needed_random": 200.0, "cap": cap, "budget": budget, "pool_size": 1000,
            "auc": 0.85}


@pytest.mark.parametrize("ci, censored, start", [
    ([0.1, 0.5], 0, "aift saves 30% of the labels random needs"),
    ([-0.1, 0.5], 0, "No detectable difference between aift and random"),
    ([-0.5, -0.1], 0, "aift needs more labels than random"),
    ([0.1, 0.5], 2, "aift reaches AUC 0.9000 within the cap of 300 labels on only 8 of 10 seeds"),
    ([0.1, 0.5], 10, "aift does not reach AUC 0.9000 within the cap of 300 labels on any of the 10 seeds"),
    ([-0.5, -0.1], 3, "aift needs more labels than random"),
])
def test_savings_sentence_follows_the_interval(ci, censored, start):
    from simulate.report import savings_line

    assert savings_line("aift", _block(ci, censored), 10).startswith(start)


@pytest.mark.parametrize("share_ci, censored, censored_random, start", [
    ([0.5, 0.9], 0, 0, "aift reaches the AUC random reaches with its planned budget (0.8500 at 100 labels) using 70%"),
    ([0.5, 1.2], 0, 0, "No detectable difference between aift and random in the labels needed to reach the AUC"),
    ([1.1, 1.4], 0, 0, "aift needs more labels than random to reach the AUC random reaches"),
    ([1.1, 1.4], 0, 2, "random itself does not reach the AUC random reaches with its planned budget"),
    ([0.5, 0.9], 1, 0, ("aift does not reach the AUC random reaches with its planned budget (0.8500 at 100 labels) "
                        "within the cap of 300 labels on 1 of 10 seeds: it needs at least 70%")),
    ([0.5, 0.9], 0, 2, "aift reaches the AUC random reaches"),  # a censored reference only makes the saving larger
])
def test_budget_sentence_follows_the_interval(share_ci, censored, censored_random, start):
    from simulate.report import budget_line

    b = _block(share_ci, censored, censored_random, estimate=0.7)
    assert budget_line("aift", b, b).startswith(start)


def test_budget_sentence_above_the_target_says_the_rule_cut_the_curves():
    """Random's planned-budget AUC can lie above the fixed target; seeds stop querying once they cross the target,
    so a curve that ends below that level was cut by the rule, not by the cap (polyp-detection, 2026-12-05)."""
    from simulate.report import budget_line

    b = _block([0.8, 1.8], censored=5, censored_random=0, estimate=1.17)
    b["auc"] = 0.95  # above the target 0.9
    line = budget_line("aift", b, b)
    assert "before its rounds stopped on 5 of 10 seeds" in line, line
    assert "crosses the fixed target 0.9000, which lies below this level" in line
    assert "within the cap" not in line
    below = _block([0.8, 1.8], censored=5, estimate=1.17)  # level below the target: the cap is the limit
    assert "within the cap of 300 labels on 5 of 10 seeds" in budget_line("aift", below, below)
    assert "crosses the fixed target" not in budget_line("aift", below, below)


def test_largest_saving_skips_bounds_and_counts_levels_by_interval():
    from simulate.report import largest_saving_line

    def row(auc, saving, ci, censored=0):
        return {"auc": auc, "saving": saving, "ci95": ci, "censored_seeds": censored, "censored_seeds_random": 0,
                "anchored_seeds": 0, "labels_needed": 100.0, "labels_needed_random": 150.0, "seeds_used": 10}

    levels = {"initial_auc": 0.7, "target_auc": 0.9}
    rows = [row(0.7, -0.2, [-0.4, -0.05]), row(0.8, 0.3, [-0.02, 0.5]), row(0.85, 0.25, [0.1, 0.4]),
            row(0.9, 0.6, [0.5, 0.7], censored=2)]  # the largest point is a bound: not chosen
    line = largest_saving_line("aift", rows, levels, _block([0, 0]))
    assert "the saving is largest at AUC 0.8000, 30%" in line and "an interval that includes 0" in line
    assert line.endswith("saves labels (interval above 0) at 1 of the 4 levels and needs more (interval below 0) at 1.")
    only_bounds = largest_saving_line("aift", [rows[-1]], levels, _block([0, 0]))
    assert "no largest saving is given" in only_bounds


def test_no_random_baseline_or_no_target_still_reports(tmp_path):
    """Without a random baseline there is no saving but a label-efficiency figure; without target.json, no levels."""
    from simulate.report import build_report

    rng = np.random.default_rng(15)
    kw = dict(rounds=6, target=0.94, cap=200)
    s = build_report(_fake_run(tmp_path / "a", {"aift": [_ragged(rng, 0.97, 40, **kw) for _ in range(5)]}, [0.95] * 5,
                               pool=400, rounds=6, max_labels=200))
    e = s["strategies"]["aift"]
    assert e["savings"] is None and e["label_efficiency"] is None and len(e["labels_needed_by_level"]) == 20
    assert "No random baseline was run" in s["verdict"][0] and (tmp_path / "a" / "label_efficiency.png").is_file()
    run = _fake_run(tmp_path / "b", {"aift": [[0.5, 0.7, 0.8, 0.9]] * 5, "random": [[0.5, 0.7, 0.75, 0.8]] * 5},
                    [0.9] * 5)
    (run / "target.json").unlink()
    s = build_report(run)
    assert s["efficiency_levels"]["levels"] == [] and s["strategies"]["aift"]["label_efficiency"] is None
    assert "No savings target yet" in s["verdict"][0] and not (run / "label_efficiency.png").exists()


@pytest.mark.parametrize("early_stopping,explicit_passes", [(False, False), (True, False), (True, True)])
def test_setup_states_the_round_recipe_that_ran(tmp_path, early_stopping, explicit_passes):
    """--early-stopping rounds take at most `steps` steps in checks of the validation AUC and no pass floor
    (simulate.jobs.round_finetune): the summary and the report's Setup say so, not the floor of max(steps, passes);
    with --round-passes given too, the floor is kept (split among the checks) and the Setup says so."""
    from simulate import run_folder as rf
    from simulate.jobs import EARLY_STOPPING_CHECKS, EARLY_STOPPING_PATIENCE
    from simulate.report import build_report

    rng = np.random.default_rng(0)
    seeds = [_noisy(rng, 0.7, 0.9, 6, 0.01) for _ in range(5)]
    run = _fake_run(tmp_path, {"aift": seeds, "random": seeds}, [0.92] * 3)
    config = json.loads((run / "config.json").read_text())
    config["settings"]["early_stopping"] = early_stopping
    config["settings"]["round_passes"] = 4.0 if explicit_passes else None
    config["plan"]["round_passes"] = 4.0
    rf.write_config(run, config)
    ft = build_report(run)["fine_tuning"]
    line = next(x for x in (run / "report.md").read_text().splitlines() if x.startswith("- fine-tuning:"))
    if explicit_passes:
        assert ft["round_passes"] == 4.0 and ft["early_stopping_checks"] == EARLY_STOPPING_CHECKS
        assert line.startswith("- fine-tuning: at most max(40, 4 passes over the labeled patches) gradient steps")
        assert f"checked {EARLY_STOPPING_CHECKS} times a round" in line
    elif early_stopping:
        assert ft["round_passes"] == 0 and ft["early_stopping_checks"] == EARLY_STOPPING_CHECKS
        assert ft["early_stopping_patience"] == EARLY_STOPPING_PATIENCE
        assert line.startswith("- fine-tuning: at most 40 gradient steps") and "passes" not in line
        assert f"checked {EARLY_STOPPING_CHECKS} times a round" in line
    else:
        assert ft["round_passes"] == 4.0 and ft["early_stopping_checks"] is None
        assert "max(40, 4.0 passes over the labeled patches)" in line and "no early stopping" in line


def test_learning_curves_of_random_alone_have_no_empty_difference_panel(tmp_path):
    """A run of random alone has no paired difference: its figure is the curves panel only (with its x axis),
    not the curves above an empty panel; a paired run keeps both panels."""
    import matplotlib.image as mpimg

    from simulate.report import build_report

    rng = np.random.default_rng(1)
    seeds = [_noisy(rng, 0.7, 0.9, 6, 0.01) for _ in range(5)]
    heights = {}
    for name, curves in {"alone": {"random": seeds}, "paired": {"aift": seeds, "random": seeds}}.items():
        run = _fake_run(tmp_path / name, curves, [0.92] * 3)
        build_report(run)
        heights[name] = mpimg.imread(run / "learning_curves.png").shape[0]
    assert heights["alone"] < 0.8 * heights["paired"]
