"""Stopping by agreement (issue 13): Cohen's kappa of consecutive models on fixture predictions, the
"K rounds at or above T" rule against a loop reference, the rule parser, the stop set, where a run
would have stopped (report, on a hand-written run folder) and kappa between saved learners."""

from __future__ import annotations

import numpy as np
import pytest

from aift_tf.errors import AiftError
from aift_tf.stopping import (
    agreement,
    checkpoint_agreement,
    consecutive_at_or_above,
    draw_stop_set,
    kappa_curve,
    parse_stop_rule,
    predicted_classes,
    stop_round,
)


def ref_kappa(a, b, k=2):
    """Cohen's kappa by hand: (p_o − p_e) / (1 − p_e)."""
    a, b = list(a), list(b)
    n = len(a)
    po = sum(x == y for x, y in zip(a, b)) / n
    pe = sum((a.count(c) / n) * (b.count(c) / n) for c in range(k))
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def ref_stop(kappas, t, k):
    for i in range(len(kappas)):
        window = kappas[max(0, i - k + 1): i + 1]
        if len(window) == k and all(v is not None and v >= t for v in window):
            return i
    return None


def test_agreement_matches_sklearn_and_hand_formula():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 2, 50)
        b = np.where(rng.random(50) < 0.2, 1 - a, a)
        assert agreement(a, b) == pytest.approx(cohen_kappa_score(a, b))
        assert agreement(a, b) == pytest.approx(ref_kappa(a, b))
    a3, b3 = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
    assert agreement(a3, b3, 3) == pytest.approx(ref_kappa(a3, b3, 3))
    # both models predict one class everywhere: kappa is 0/0 in sklearn; identical predictions agree fully
    assert agreement([0, 0, 0], [0, 0, 0]) == 1.0
    assert agreement([0, 0, 0, 0], [0, 0, 1, 1]) == pytest.approx(0.0)
    with pytest.raises(AiftError, match="differ in length"):
        agreement([0, 1], [0])


def test_kappa_curve_and_stop_rule_on_fixture_predictions():
    P = [np.array([0, 0, 1, 1, 0, 1, 0, 0]), np.array([0, 1, 1, 1, 0, 1, 0, 0]),
         np.array([0, 1, 1, 1, 0, 1, 0, 0]), np.array([0, 1, 1, 1, 0, 1, 0, 0]),
         np.array([0, 1, 1, 1, 0, 1, 1, 0]), np.array([0, 1, 1, 1, 0, 1, 1, 0])]
    k = kappa_curve(P)
    assert k == pytest.approx([ref_kappa(a, b) for a, b in zip(P, P[1:])])
    assert k[1] == k[2] == 1.0 and k[0] < 0.99 and k[3] < 0.99
    assert stop_round(k, 0.99, 2) == 2 == ref_stop(k, 0.99, 2)
    assert stop_round(k, 0.99, 3) is None
    assert consecutive_at_or_above(k, 0.99) == 1
    rng = np.random.default_rng(1)
    for _ in range(200):
        ks = [None if rng.random() < 0.1 else float(v) for v in rng.choice([0.5, 0.98, 0.99, 1.0], 8)]
        for t, kk in ((0.99, 1), (0.99, 3), (0.98, 2)):
            assert stop_round(ks, t, kk) == ref_stop(ks, t, kk)


def test_parse_rule_stop_set_and_classes():
    assert parse_stop_rule("kappa") == {"method": "kappa", "threshold": 0.99, "rounds": 3, "text": "kappa:0.99:3"}
    assert parse_stop_rule(" Kappa:0.95:2 ")["text"] == "kappa:0.95:2"
    for bad, frag in (("kappa:1.5:3", "outside"), ("kappa:0.9:0", ">= 1"), ("delta:0.9:3", "expected"),
                      ("kappa:x:3", "'x'"), ("kappa:0.9", "expected"), (3, "string")):
        with pytest.raises(AiftError, match=frag):
            parse_stop_rule(bad)
    pool = np.arange(100, 3100)
    s = draw_stop_set(pool, seed=3)
    assert s.size == 1000 and np.array_equal(s, draw_stop_set(pool, seed=3)) and np.all(np.diff(s) > 0)
    assert not np.array_equal(s, draw_stop_set(pool, seed=4))
    assert np.array_equal(draw_stop_set(pool[:10], seed=0), pool[:10])
    assert predicted_classes([[[0.6, 0.4], [0.3, 0.7], [0.3, 0.7]]]).tolist() == [1]


def test_report_says_where_each_strategy_would_stop(tmp_path):
    from simulate import run_folder as rf
    from simulate.report import build_report

    from test_report import _fake_run

    run = _fake_run(tmp_path, {"aift": [[0.5, 0.6, 0.7, 0.8, 0.82, 0.83]] * 2,
                               "random": [[0.5, 0.6, 0.65, 0.7, 0.75, 0.8]] * 2}, [0.85, 0.85])
    rows = rf.read_rounds(run)
    kap = {("aift", 0): [None, 0.2, 0.995, 0.999, 1.0, 1.0], ("aift", 1): [None, 0.2, 0.5, 0.995, 0.999, 1.0],
           ("random", 0): [None, 0.1, 0.5, 0.6, 0.99, 0.7], ("random", 1): [None] + [0.5] * 5}
    for r in rows:
        if (r["strategy"], r["seed"]) in kap:
            r["stop_kappa"] = kap[(r["strategy"], r["seed"])][r["round"]]
    rf.write_rounds(run, rows)
    import json

    cfg = json.loads((run / "config.json").read_text())
    cfg["plan"]["stop"] = {"rule": "kappa:0.99:3", "threshold": 0.99, "rounds": 3, "stop_set_size": 200}
    rf.write_config(run, cfg)
    s = build_report(run)
    sp = s["stopping"]["strategies"]
    assert sp["aift"]["per_seed"]["0"]["round"] == 4 and sp["aift"]["per_seed"]["1"]["round"] == 5
    assert sp["aift"]["per_seed"]["0"]["auc_gap_to_full"] == pytest.approx(0.85 - 0.82)
    assert sp["aift"]["labels_mean"] == pytest.approx(np.mean([10 + 30, 10 + 40]))
    assert sp["random"]["stopped_seeds"] == 0 and sp["random"]["labels_mean"] is None
    line = [x for x in s["verdict"] if x.startswith("Stopping rule kappa:0.99:3")]
    assert line and "aift at 45 labels on average on 2 of 2 seeds" in line[0] and "random never" in line[0]
    assert line[0] in (run / "report.md").read_text()


def test_prediction_cache_dir_is_outside_projects(tmp_path, monkeypatch):
    from aift_tf.stopping import prediction_cache_dir

    monkeypatch.setenv("AIFT_CACHE", str(tmp_path))
    assert prediction_cache_dir() == tmp_path / "stopping"


def test_checkpoint_agreement_between_saved_learners(tiny_store_path, tmp_path):
    from aift_tf.finetune import FineTuneConfig
    from aift_tf.learner import ActiveLearner
    from aift_tf.store import open_store

    with open_store(tiny_store_path) as st:
        lr = ActiveLearner(st, model_name="small_cnn", trainable="head", seed=0,
                           finetune=FineTuneConfig(epochs=1, steps_per_epoch=2, seed=0))
        dirs = [lr.save(tmp_path / "c0")]
        pool = lr.unlabeled_ids()
        first = np.concatenate([pool[st.labels[pool] == 0][:2], pool[st.labels[pool] == 1][:2]])
        lr.teach(first, st.labels[first])
        dirs.append(lr.save(tmp_path / "c1"))
        dirs.append(lr.save(tmp_path / "c2"))  # the same model again: kappa 1
        r = checkpoint_agreement(st, dirs, threshold=0.99, rounds=2, cache_dir=tmp_path / "cache")
        stop_ids = draw_stop_set(st.ids("train"), seed=0)
        p0 = predicted_classes(ActiveLearner.load(dirs[0], st).predict(stop_ids))
        p1 = predicted_classes(lr.predict(stop_ids))
        assert r["kappas"] == pytest.approx([agreement(p1, p0), 1.0])
        assert r["consecutive"] == 1 + (r["kappas"][0] >= 0.99)
        n_models = len({(d / "model.keras").read_bytes() for d in dirs})  # c1 and c2 hold the same model
        assert len(list((tmp_path / "cache").glob("*.npy"))) == n_models
        last = checkpoint_agreement(st, dirs, threshold=0.99, rounds=1, cache_dir=tmp_path / "cache")
        assert last["kappas"] == [1.0] and last["suggest_stop"] and "stop suggested" in last["line"]
        assert len(list((tmp_path / "cache").glob("*.npy"))) == n_models  # read back, not recomputed
        one = checkpoint_agreement(st, dirs[:1])
        assert one["kappa"] is None and "n/a" in one["line"]
