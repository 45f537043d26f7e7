"""Strategies beyond the paper (issue 13): BALD / MC entropy, k-center greedy (core-set), batch-aware
AIFT (aift+coreset) and the group cap, each against a plain-numpy reference on fixed arrays; then
through the learner (MC dropout on the cached trunk, pooled trunk features) and the harness' parser."""

import itertools
import json
import math

import numpy as np
import pytest

from aift_tf.errors import AiftError
from aift_tf.selection import (
    DEFAULT_MC_PASSES,
    DEFAULT_PREFILTER,
    kcenter_greedy,
    mc_scores,
    parse_strategy,
    score_candidates,
    select,
    select_batch,
    strategy_needs,
    strategy_scores,
)

# ----------------------------------------------------------------------------- references (loops)


def ref_entropy(q):
    return -sum(v * math.log(v) for v in q if v > 0)


def ref_mc(mc, method):
    """BALD / MC entropy with loops: candidate prediction per pass = mean over patches."""
    mc = np.asarray(mc, dtype=np.float64)
    if mc.ndim == 3:
        mc = np.stack([1 - mc, mc], axis=-1)
    T, n, m, K = mc.shape
    out = []
    for i in range(n):
        qs = [[sum(mc[t, i, j, k] for j in range(m)) / m for k in range(K)] for t in range(T)]
        mean = [sum(q[k] for q in qs) / T for k in range(K)]
        h = ref_entropy(mean)
        out.append(h if method == "mc-entropy" else h - sum(ref_entropy(q) for q in qs) / T)
    return np.array(out)


def ref_kcenter(X, b, centers, groups=None, cap=None):
    """k-center greedy with loops: farthest point from its nearest center, ties -> lower index."""
    X = [list(map(float, x)) for x in X]
    C = [list(map(float, c)) for c in centers]
    picks, counts = [], {}

    def d(a, c):
        return math.sqrt(sum((u - v) ** 2 for u, v in zip(a, c)))

    for _ in range(b):
        best, best_d = None, -1.0
        for i, x in enumerate(X):
            if i in picks or (cap is not None and counts.get(groups[i], 0) >= cap):
                continue
            di = min(d(x, c) for c in C)
            if di > best_d + 1e-12:
                best, best_d = i, di
        picks.append(best)
        C.append(X[best])
        if cap is not None:
            counts[groups[best]] = counts.get(groups[best], 0) + 1
    return picks


def ref_capped_topb(scores, b, groups, cap):
    """Walk the worth order (ties -> lower index) and skip groups that already have `cap`."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    out, counts = [], {}
    for i in order:
        if counts.get(groups[i], 0) < cap:
            out.append(i)
            counts[groups[i]] = counts.get(groups[i], 0) + 1
        if len(out) == b:
            break
    return out


# ----------------------------------------------------------------------------- BALD / MC entropy


def test_mc_scores_match_loop_reference_on_fixed_arrays():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 7, 4, 3))
    mc = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)  # (T, n, m, K)
    for method in ("bald", "mc-entropy"):
        np.testing.assert_allclose(mc_scores(mc, method), ref_mc(mc, method), rtol=0, atol=1e-12)
    p1 = rng.random((4, 6, 3))  # (T, n, m) P(positive)
    np.testing.assert_allclose(mc_scores(p1, "bald"), ref_mc(p1, "bald"), atol=1e-12)
    np.testing.assert_allclose(strategy_scores(p1, "mc-entropy@4"), ref_mc(p1, "mc-entropy"), atol=1e-12)


def test_bald_printed_values():
    # passes that agree carry no information about the weights; full disagreement carries the most
    agree = [[[0.8, 0.8]], [[0.8, 0.8]], [[0.8, 0.8]]]
    assert mc_scores(agree, "bald")[0] == pytest.approx(0.0, abs=1e-15)
    assert mc_scores(agree, "mc-entropy")[0] == pytest.approx(ref_entropy([0.2, 0.8]))
    split = [[[1.0]], [[0.0]]]
    assert mc_scores(split, "bald")[0] == pytest.approx(math.log(2))
    assert mc_scores(split, "mc-entropy")[0] == pytest.approx(math.log(2))


def test_mc_scores_bad_input():
    with pytest.raises(AiftError, match="shape"):
        mc_scores(np.zeros((4, 3)), "bald")
    with pytest.raises(AiftError, match="outside"):
        mc_scores(np.full((2, 1, 2), 1.5), "bald")
    with pytest.raises(AiftError, match="unknown MC method"):
        mc_scores(np.zeros((2, 1, 2)), "margin")


# ----------------------------------------------------------------------------- k-center greedy


def test_kcenter_matches_loop_reference():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    C = rng.normal(size=(3, 5))
    idx, radius = kcenter_greedy(X, 8, centers=C)
    assert idx.tolist() == ref_kcenter(X, 8, C)
    assert np.all(np.diff(radius) <= 1e-12)  # the covering radius never grows
    groups = np.arange(40) % 4
    idx, _ = kcenter_greedy(X, 8, centers=C, groups=groups, max_per_group=2)
    assert idx.tolist() == ref_kcenter(X, 8, C, groups=groups.tolist(), cap=2)
    assert np.bincount(groups[idx]).max() <= 2


def test_kcenter_without_centers_is_seeded_and_ties_take_lower_index():
    X = np.array([[0.0], [2.0], [4.0], [6.0]])
    a, r = kcenter_greedy(X, 3, seed=5)
    b, _ = kcenter_greedy(X, 3, seed=5)
    assert a.tolist() == b.tolist() and math.isnan(r[0])
    assert kcenter_greedy([[0.0], [1.0], [-1.0]], 1, centers=[[0.0]])[0].tolist() == [1]


def test_kcenter_cap_that_cannot_be_met_raises():
    with pytest.raises(AiftError, match="max_per_group 1: only 2 of the 3"):
        kcenter_greedy(np.eye(4), 3, centers=np.zeros((1, 4)), groups=[0, 0, 1, 1], max_per_group=1)


# ----------------------------------------------------------------------------- group cap


def test_group_cap_topb_matches_reference_and_never_binds_identically():
    rng = np.random.default_rng(1)
    s = rng.random(30).round(2)  # ties included
    g = rng.integers(0, 5, size=30)
    for cap in (1, 2, 3):
        assert select(s, 5, groups=g, max_per_group=cap).tolist() == ref_capped_topb(s.tolist(), 5, g.tolist(), cap)
    # a cap that binds nowhere gives the uncapped selection, also with the randomised omega draw
    for omega, seed in itertools.product((1.0, 2.0, 3.5), range(5)):
        assert select(s, 4, omega, seed, groups=np.arange(30), max_per_group=1).tolist() == \
            select(s, 4, omega, seed).tolist()


def test_group_cap_with_omega_respects_cap_and_is_seeded():
    s = np.linspace(1, 0, 20)
    g = np.repeat(np.arange(4), 5)  # the top 5 are one group
    for seed in range(10):
        a = select(s, 6, omega=2.0, seed=seed, groups=g, max_per_group=2)
        assert len(set(a.tolist())) == 6 and np.bincount(g[a]).max() <= 2
        assert a.tolist() == select(s, 6, omega=2.0, seed=seed, groups=g, max_per_group=2).tolist()
        assert np.all(np.diff(s[a]) <= 0)  # worth order
    with pytest.raises(AiftError, match="max_per_group 1: only 4 of the 6"):
        select(s, 6, groups=g, max_per_group=1)
    with pytest.raises(AiftError, match="needs the candidates' groups"):
        select(s, 2, max_per_group=1)
    with pytest.raises(AiftError, match="shape"):
        select(s, 2, groups=[0, 1], max_per_group=1)


# ----------------------------------------------------------------------------- batch selection


def test_select_batch_dispatch_and_aift_coreset_reference():
    rng = np.random.default_rng(2)
    n, b = 30, 4
    probs = rng.random((n, 8))
    X = rng.normal(size=(n, 6))
    C = rng.normal(size=(2, 6))
    worth = score_candidates(probs, "entropy+diversity", 0.25)
    top = sorted(range(n), key=lambda i: (-worth[i], i))[: math.ceil(DEFAULT_PREFILTER * b)]
    want = [top[j] for j in ref_kcenter(X[top], b, C)]
    idx, sc = select_batch("aift+coreset", b, probs=probs, features=X, centers=C)
    assert idx.tolist() == want
    np.testing.assert_array_equal(sc, worth[idx])
    idx2, _ = select_batch("aift+coreset@2", b, probs=probs, features=X, centers=C)
    top2 = sorted(range(n), key=lambda i: (-worth[i], i))[: 2 * b]
    assert idx2.tolist() == [top2[j] for j in ref_kcenter(X[top2], b, C)]
    # plain strategies: the same picks as strategy_scores + select
    idx, sc = select_batch("aift", b, probs=probs, omega=2.0, seed=3)
    np.testing.assert_array_equal(idx, select(worth, b, 2.0, 3))
    idx, _ = select_batch("random", b, n=n, seed=4)
    np.testing.assert_array_equal(idx, select(np.random.default_rng(4).random(n), b))
    mc = rng.random((3, n, 8))
    idx, _ = select_batch("bald@3", b, mc_probs=mc)
    np.testing.assert_array_equal(idx, select(ref_mc(mc, "bald"), b))
    idx, _ = select_batch("coreset", b, features=X, centers=C)
    assert idx.tolist() == ref_kcenter(X, b, C)
    with pytest.raises(AiftError, match="needs features"):
        select_batch("coreset", b, probs=probs)
    with pytest.raises(AiftError, match="batch rule"):
        strategy_scores(probs, "coreset")


def test_parse_new_strategies():
    assert parse_strategy("bald") == ("bald", DEFAULT_MC_PASSES)
    assert parse_strategy("MC-Entropy@20") == ("mc-entropy", 20)
    assert parse_strategy("coreset") == ("coreset", None)
    assert parse_strategy("aift+coreset@2.5") == ("aift+coreset", 2.5)
    assert strategy_needs("bald@5") == {"mc"} and strategy_needs("random") == set()
    for bad, frag in (("bald@1", "integer >= 2"), ("bald@2.5", "integer >= 2"), ("coreset@2", "no @"),
                      ("aift+coreset@0.5", ">= 1"), ("mc-entropy@x", "'x'")):
        with pytest.raises(AiftError, match=frag):
            parse_strategy(bad)


def test_harness_parser_accepts_new_strategies():
    from simulate.config import parse_strategies

    assert parse_strategies("aift,bald@10,coreset,aift+coreset,mc-entropy,aift+coreset@2") == (
        "aift", "bald@10", "coreset", "aift+coreset", "mc-entropy", "aift+coreset@2")
    with pytest.raises(AiftError, match="passes T '' is not a number"):
        parse_strategies("aift,bald@")
    with pytest.raises(AiftError, match="valid strategies"):
        parse_strategies("aift,badl")


# ----------------------------------------------------------------------------- through the learner


@pytest.fixture(scope="module")
def learner_store(tmp_path_factory):
    from aift_tf.store import open_store, write_store
    from conftest import make_separable_arrays

    a = make_separable_arrays(n=40, m=4, size=16, groups=8)
    path = tmp_path_factory.mktemp("beyond") / "s.h5"
    write_store(path, a["patches"], a["labels"], a["groups"], a["split"], app="t", class_names=["n", "p"])
    with open_store(path) as st:
        yield st


def _learner(store, strategy, **kw):
    from aift_tf.finetune import FineTuneConfig
    from aift_tf.learner import ActiveLearner

    return ActiveLearner(store, model_name="small_cnn", strategy=strategy, trainable="top", cache_trunk=True,
                         finetune=FineTuneConfig(epochs=1, steps_per_epoch=2, seed=0), seed=0, **kw)


def test_learner_mc_dropout_features_and_cap(learner_store):
    st = learner_store
    lr = _learner(st, "bald@4", max_per_group=2)
    pool = lr.unlabeled_ids()
    first = pool[st.labels[pool] == 0][:2].tolist() + pool[st.labels[pool] == 1][:2].tolist()
    lr.teach(first, st.labels[first])
    mc = lr.predict_stochastic(pool[:6], 4, seed=1)
    assert mc.shape == (4, 6, st.m, 2)
    np.testing.assert_array_equal(mc, lr.predict_stochastic(pool[:6], 4, seed=1))  # seeded masks
    assert not np.allclose(mc[0], mc[1])  # dropout is on
    det = lr.predict(pool[:6])
    assert np.abs(mc.mean(axis=0) - det).max() < 0.25  # around the deterministic prediction
    ids, scores = lr.query(5)
    assert np.bincount(st.groups[ids]).max() <= 2 and len(set(ids.tolist())) == 5
    f = lr.candidate_features(pool[:3])
    assert f.shape == (3, 128) and f.dtype == np.float32
    from aift_tf.zoo import split_frozen

    trunk, _ = split_frozen(lr.model)  # reference: the trunk on the patches, mean over patches and space
    raw = np.asarray(trunk(st.read_float(pool[:3]).reshape((-1,) + tuple(st.patch_shape))))
    np.testing.assert_allclose(f, raw.reshape(3, st.m, -1, raw.shape[-1]).mean(axis=(1, 2)), rtol=1e-4, atol=1e-6)
    for strategy in ("coreset", "aift+coreset", "mc-entropy@3"):
        lr.strategy = strategy
        ids, _ = lr.query(4)
        assert len(set(ids.tolist())) == 4 and not np.isin(ids, lr.labeled_ids).any()


def test_aift_coreset_with_cap_widens_when_the_prefilter_cannot_fill_the_round():
    probs = np.linspace(0.05, 0.5, 12)[:, None].repeat(4, axis=1)  # worth rises with the index
    X = np.arange(12, dtype=float)[:, None]
    groups = np.array([0] * 9 + [1, 2, 3])
    # b = 3, W = 1: the prefilter is indices 11, 10, 9 (groups 3, 2, 1), which the cap of 1 allows
    idx, _ = select_batch("aift+coreset@1", 3, probs=probs, features=X, centers=X[:1], groups=groups, max_per_group=1)
    assert sorted(idx.tolist()) == [9, 10, 11]
    # b = 4: the prefilter 11, 10, 9, 8 has one candidate of each of the four groups
    idx, _ = select_batch("aift+coreset@1", 4, probs=probs, features=X, centers=X[:1], groups=groups, max_per_group=1)
    assert sorted(groups[idx].tolist()) == [0, 1, 2, 3]
    # b = 2: the prefilter 11, 10 is one group, which a cap of 1 cannot fill: widened to the whole pool
    idx, _ = select_batch("aift+coreset@1", 2, probs=probs, features=X, centers=X[:1],
                          groups=np.array([0] * 10 + [1, 1]), max_per_group=1)
    assert sorted(np.array([0] * 10 + [1, 1])[idx].tolist()) == [0, 1]


@pytest.mark.slow
def test_aift_sim_new_strategies_stop_and_cap_are_deterministic(tmp_path):
    """Two identical aift-sim runs with the new strategies, a group cap and --stop give the same rows."""
    import csv
    import subprocess
    import sys

    from test_sim import ENV, _write_tiny

    data = _write_tiny(tmp_path / "tiny.h5")
    args = ["--data", data, "--rounds", "2", "--query-size", "4", "--seeds", "2", "--steps", "3", "--full-epochs", "2",
            "--lr", "0.003", "--weights", "none", "--strategies", "bald@3,coreset,aift+coreset", "--max-per-group",
            "2", "--stop", "kappa:0.9:1", "--no-export", "-q"]
    rows = []
    for k in (1, 2):
        r = subprocess.run([sys.executable, "-m", "simulate.sim_cli", *map(str, args), "--out", tmp_path / f"r{k}"],
                           capture_output=True, text=True, env=ENV, timeout=900)
        assert r.returncode == 0, r.stderr
        with open(tmp_path / f"r{k}" / "rounds.csv") as f:
            rows.append([{c: v for c, v in row.items() if not c.endswith("_seconds")} for row in csv.DictReader(f)])
    assert rows[0] == rows[1]
    kappas = [row["stop_kappa"] for row in rows[0] if row["strategy"] != "full" and row["round"] != "0"]
    assert kappas and all(k != "" for k in kappas)
    summary = json.loads((tmp_path / "r1" / "summary.json").read_text())
    assert set(summary["stopping"]["strategies"]) == {"bald@3", "coreset", "aift+coreset"}
    assert summary["max_per_group"] == 2
