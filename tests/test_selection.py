"""Tests for aift_tf.selection: AIFT worth, majority selection, baselines, strategies, query."""

import doctest
import math

import numpy as np
import pytest

from aift_tf import selection
from aift_tf.errors import AiftError
from aift_tf.selection import (
    BASELINES,
    EPS,
    METHODS,
    STRATEGIES,
    baseline_scores,
    majority,
    parse_strategy,
    score_candidates,
    select,
    strategy_scores,
    worth_matrix,
)

# ----------------------------------------------------------------------------- references


def reference_worth_binary(p, lambda1, lambda2, alpha):
    """Line-by-line port of ``compute_matrix`` + ``Majority`` from the authors' reference code
    (MrGiovanni/Active-Learning, active_select_demo.m). Loops, no vectorisation."""
    p = list(map(float, p))
    top = max(1, int(math.floor(len(p) * alpha + 0.5)))  # MATLAB round: half away from zero
    mean = sum(p) / len(p)
    p = sorted(p, reverse=True) if mean > 0.5 else sorted(p)
    p = p[:top]
    R = np.zeros((top, top))
    for i in range(top):
        for j in range(i + 1):
            if i == j:
                R[i, i] = -lambda1 * (p[i] * math.log(p[i] + EPS) + (1 - p[i]) * math.log(1 - p[i] + EPS))
            else:
                R[i, j] = lambda2 * ((p[i] - p[j]) * math.log((p[i] + EPS) / (p[j] + EPS))
                                     + (1 - p[i] - 1 + p[j]) * math.log((1 - p[i] + EPS) / (1 - p[j] + EPS)))
                R[j, i] = R[i, j]
    return R.sum()


def reference_worth_multiclass(P, lambda1, lambda2, alpha):
    """Direct loop implementation of the journal (multi-class) worth for one candidate (m, K)."""
    P = np.asarray(P, dtype=np.float64)
    m, K = P.shape
    top = max(1, int(math.floor(m * alpha + 0.5)))
    mean = P.mean(axis=0)
    if K == 2:
        desc = mean[1] > 0.5
        order = sorted(range(m), key=(lambda j: -P[j, 1]) if desc else (lambda j: P[j, 1]))
    else:
        y = int(np.argmax(mean))
        order = sorted(range(m), key=lambda j: -P[j, y])  # Python's sort is stable
    Q = P[order[:top]]
    total = 0.0
    for j in range(top):
        for l in range(top):
            if j == l:
                total += -lambda1 * sum(Q[j, c] * math.log(Q[j, c] + EPS) for c in range(K))
            else:
                total += lambda2 * sum((Q[j, c] - Q[l, c]) * math.log((Q[j, c] + EPS) / (Q[l, c] + EPS))
                                       for c in range(K))
    return total


LAMBDAS = {"entropy": (1, 0), "diversity": (0, 1), "entropy+diversity": (1, 1)}

# ----------------------------------------------------------------------------- Table 1

# Patterns of Table 1 (Zhou et al., CVPR 2017): 11 patch probabilities of one candidate.
# A and B with the values printed in the paper (columns: Entropy, Entropy^1/4, Diversity,
# Diversity^1/4, (Entropy+Diversity), (Entropy+Diversity)^1/4).
TABLE1_PRINTED = {
    "A": ([0.4, 0.4, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6],
          [7.52, 2.02, 4.38, 0.00, 11.90, 2.02]),
    "B": ([0.0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.6, 0.7, 0.8, 1.0, 1.0],
          [4.57, 0.83, 1237.21, 20.79, 1241.77, 21.62]),
}
# Patterns C–G as listed in the authors' reference code (MrGiovanni/Active-Learning,
# active_select_demo.m, "Table 1. examples of seven different patterns"). The table's printed
# values for C–G could not be located in the searchable sources, so they are NOT transcribed here;
# these patterns are checked against the port of the authors' code above and by symmetry.
TABLE1_PATTERNS_CG = {
    "C": [0.0, 0.0, 0.0, 0.1, 0.1, 0.9, 0.9, 1.0, 1.0, 1.0, 1.0],
    "D": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.9, 0.9, 0.9],
    "E": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.1, 0.1, 0.1],
    "F": [0.0, 0.0, 0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.3, 0.9, 1.0],
    "G": [0.0, 0.1, 0.7, 0.8, 0.8, 0.9, 0.9, 0.9, 0.9, 1.0, 1.0],
}
COLUMNS = [(m, a) for m in METHODS for a in (1.0, 0.25)]


@pytest.mark.parametrize("name", sorted(TABLE1_PRINTED))
def test_table1_printed_values(name):
    p, printed = TABLE1_PRINTED[name]
    got = [score_candidates([p], m, a)[0] for m, a in COLUMNS]
    np.testing.assert_allclose(np.round(got, 2), printed, atol=1e-9)
    # The explicit matrix agrees too.
    got_R = [worth_matrix(p, *LAMBDAS[m], a).sum() for m, a in COLUMNS]
    np.testing.assert_allclose(np.round(got_R, 2), printed, atol=1e-9)


def test_table1_all_patterns_batch_matches_reference_code():
    pats = [TABLE1_PRINTED[k][0] for k in sorted(TABLE1_PRINTED)] + \
        [TABLE1_PATTERNS_CG[k] for k in sorted(TABLE1_PATTERNS_CG)]
    probs = np.array(pats)
    for m, a in COLUMNS:
        got = score_candidates(probs, m, a)
        want = [reference_worth_binary(p, *LAMBDAS[m], a) for p in pats]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_table1_mirror_patterns_agree():
    # D and E are mirror images (p -> 1 - p), and so are F and G: majority selection picks the
    # dominant side, and entropy / symmetric KL are invariant to swapping the two classes.
    P = TABLE1_PATTERNS_CG
    for a, b in (("D", "E"), ("F", "G")):
        np.testing.assert_allclose(1 - np.sort(P[a]), np.sort(P[b])[::-1], atol=1e-12)
        for m, al in COLUMNS:
            np.testing.assert_allclose(score_candidates([P[a]], m, al), score_candidates([P[b]], m, al),
                                       atol=1e-9)
    # C (a confident split 0/1) is maximally diverse overall but uniform after majority selection.
    c = {(m, al): score_candidates([P["C"]], m, al)[0] for m, al in COLUMNS}
    assert c["diversity", 1.0] > score_candidates([TABLE1_PRINTED["B"][0]], "diversity")[0]
    assert abs(c["diversity", 0.25]) < 1e-9 and abs(c["entropy+diversity", 0.25]) < 1e-9


# ----------------------------------------------------------------------------- majority


def test_majority_descending_when_mean_above_half():
    p = [0.9, 0.2, 0.8, 0.7, 0.6]  # mean 0.64
    np.testing.assert_allclose(majority([p], alpha=0.4), [[0.9, 0.8]])


def test_majority_ascending_when_mean_below_half():
    p = [0.1, 0.9, 0.3, 0.2, 0.4]  # mean 0.38
    np.testing.assert_allclose(majority([p], alpha=0.6), [[0.1, 0.2, 0.3]])


def test_majority_ascending_when_mean_exactly_half_both_forms():
    p = np.array([0.25, 0.75, 0.5, 0.5])
    assert p.mean() == 0.5
    np.testing.assert_allclose(majority([p], alpha=0.5), [[0.25, 0.5]])
    P2 = np.stack([1 - p, p], axis=-1)[None]
    np.testing.assert_allclose(majority(P2, alpha=0.5)[0, :, 1], [0.25, 0.5])


@pytest.mark.parametrize("m, alpha, k", [(10, 0.25, 3), (11, 0.25, 3), (6, 0.25, 2), (2, 0.25, 1),
                                         (1, 0.25, 1), (3, 0.1, 1), (10, 0.15, 2), (8, 1.0, 8),
                                         (24, 0.25, 6), (10, 0.05, 1)])
def test_majority_count_round_half_away_from_zero(m, alpha, k):
    p = np.linspace(0.6, 0.9, m)[None]
    assert majority(p, alpha).shape == (1, k)
    assert majority(np.stack([1 - p, p], -1), alpha).shape == (1, k, 2)


def test_majority_multiclass_dominant_class():
    # Class 2 dominates on average; patches are ranked by P(class 2) descending, ties stable.
    P = np.array([[[0.1, 0.1, 0.8], [0.6, 0.2, 0.2], [0.2, 0.1, 0.7], [0.0, 0.2, 0.8], [0.3, 0.3, 0.4]]])
    kept = majority(P, alpha=0.6)
    np.testing.assert_allclose(kept[0], P[0, [0, 3, 2]])


# ----------------------------------------------------------------------------- vectorised == loops


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("alpha", [1.0, 0.25, 0.5, 0.1])
def test_vectorised_matches_loop_reference_binary(method, alpha):
    rng = np.random.default_rng(0)
    continuous = rng.random((15, 9))
    coarse = rng.integers(0, 11, size=(15, 9)) / 10.0  # exact 0 and 1, many ties
    probs = np.concatenate([continuous, coarse])
    got = score_candidates(probs, method, alpha)
    want = [reference_worth_binary(p, *LAMBDAS[method], alpha) for p in probs]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-8)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("alpha", [1.0, 0.25, 0.6])
@pytest.mark.parametrize("K", [2, 3, 5])
def test_vectorised_matches_loop_reference_multiclass(method, alpha, K):
    rng = np.random.default_rng(K)
    P = rng.dirichlet(np.full(K, 0.5), size=(20, 7))
    P[:3] = np.round(P[:3], 1)  # some ties and exact zeros
    P[:3] /= P[:3].sum(-1, keepdims=True)
    got = score_candidates(P, method, alpha)
    want = [reference_worth_multiclass(c, *LAMBDAS[method], alpha) for c in P]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-8)
    for c in P[:4]:
        np.testing.assert_allclose(worth_matrix(c, *LAMBDAS[method], alpha).sum(),
                                   reference_worth_multiclass(c, *LAMBDAS[method], alpha), rtol=1e-9, atol=1e-8)


def test_worth_matrix_is_symmetric_with_entropy_diagonal():
    p = [0.0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.6, 0.7, 0.8, 1.0, 1.0]
    R = worth_matrix(p, 1, 1, 1.0)
    assert R.shape == (11, 11)
    np.testing.assert_allclose(R, R.T)
    q = np.sort(p)  # mean 0.5 -> ascending
    np.testing.assert_allclose(np.diag(R), -(q * np.log(q + EPS) + (1 - q) * np.log(1 - q + EPS)))
    assert (R >= -1e-12).all()
    np.testing.assert_allclose(np.diag(worth_matrix(p, 0, 1)), 0)
    assert np.count_nonzero(worth_matrix(p, 1, 0) - np.diag(np.diag(worth_matrix(p, 1, 0)))) == 0


@pytest.mark.parametrize("alpha", [1.0, 0.25, 0.5])
def test_binary_form_equals_two_class_form(alpha):
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.random((30, 8)), rng.integers(0, 11, (30, 8)) / 10, np.full((1, 8), 0.5),
                        np.tile([1e-20, 2e-20, 3e-20, 0.9], (1, 2))])
    P2 = np.stack([1 - p, p], axis=-1)
    for method in METHODS:
        np.testing.assert_array_equal(score_candidates(p, method, alpha), score_candidates(P2, method, alpha))
    np.testing.assert_array_equal(majority(p, alpha), majority(P2, alpha)[..., 1])


def test_float32_and_tolerance_inputs_accepted():
    p = np.array([[0.3, 0.7, 1.0 + 5e-7, -5e-7]], dtype=np.float32)
    s = score_candidates(p)
    assert s.dtype == np.float64 and s.shape == (1,) and np.isfinite(s).all()
    assert score_candidates(np.zeros((0, 5))).shape == (0,)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("probs, fragment", [
    (np.array([[0.2, np.nan]]), "nan"),
    (np.array([[0.2, np.inf]]), "inf"),
    (np.array([[0.2, 1.5]]), "1.5"),
    (np.array([[-0.1, 0.5]]), "-0.1"),
    (np.zeros(4), "shape (4,)"),
    (np.zeros((2, 3, 4, 5)), "shape (2, 3, 4, 5)"),
    (np.zeros((2, 3, 1)), "K >= 2"),
    (np.zeros((2, 0)), "at least one patch"),
    (np.full((1, 2, 3), 0.5), "sums to 1.5"),
    ([["a", "b"]], "numeric"),
])
def test_probs_validation(probs, fragment):
    with pytest.raises(AiftError, match=None) as e:
        score_candidates(probs)
    msg = str(e.value)
    assert fragment in msg and "\n" not in msg


def test_method_and_alpha_validation():
    with pytest.raises(AiftError) as e:
        score_candidates([[0.5]], method="uncertainty")
    assert "'uncertainty'" in str(e.value) and all(m in str(e.value) for m in METHODS)
    for bad in (0, 0.0, -0.5, 1.5, float("nan"), "0.5", True):
        with pytest.raises(AiftError) as e:
            score_candidates([[0.5]], alpha=bad)
        assert repr(bad) in str(e.value)
    with pytest.raises(AiftError, match="lambda1"):
        worth_matrix([0.5, 0.6], lambda1=float("inf"))
    with pytest.raises(AiftError, match=r"shape \(1, 1, 2\)"):
        worth_matrix(np.full((1, 1, 2), 0.5))


# ----------------------------------------------------------------------------- baselines


def test_baselines_values():
    P = np.array([
        [[0.2, 0.8], [0.4, 0.6]],  # mean [0.3, 0.7]
        [[0.5, 0.5], [0.5, 0.5]],  # mean [0.5, 0.5]
        [[1.0, 0.0], [1.0, 0.0]],  # mean [1, 0]
    ])
    np.testing.assert_allclose(baseline_scores(P, "least-confidence"), [0.3, 0.5, 0.0])
    np.testing.assert_allclose(baseline_scores(P, "margin"), [-0.4, 0.0, -1.0])
    np.testing.assert_allclose(baseline_scores(P, "mean-entropy"),
                               [-(0.3 * np.log(0.3) + 0.7 * np.log(0.7)), np.log(2), 0.0])
    # binary (n, m) input gives the same numbers
    for method in BASELINES[1:]:
        np.testing.assert_allclose(baseline_scores(P[..., 1], method), baseline_scores(P, method))
    # multi-class margin: top1 − top2 of the mean prediction
    Q = np.array([[[0.5, 0.3, 0.2]], [[0.4, 0.35, 0.25]]])
    np.testing.assert_allclose(baseline_scores(Q, "margin"), [-0.2, -0.05])
    assert np.argmax(baseline_scores(Q, "margin")) == 1


def test_baseline_random_is_seeded_uniform():
    P = np.full((500, 3), 0.5)
    a, b = baseline_scores(P, "random", seed=7), baseline_scores(P, "random", seed=7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, baseline_scores(P, "random", seed=8))
    assert a.shape == (500,) and a.min() >= 0 and a.max() < 1 and 0.4 < a.mean() < 0.6
    with pytest.raises(AiftError, match="'bald'"):
        baseline_scores(P, "bald")


# ----------------------------------------------------------------------------- strategies


@pytest.mark.parametrize("s, want", [
    ("entropy", ("entropy", 1.0)),
    ("diversity@0.25", ("diversity", 0.25)),
    ("entropy+diversity@1/4", ("entropy+diversity", 0.25)),
    (" Entropy+Diversity@0.5 ", ("entropy+diversity", 0.5)),
    ("aift", ("entropy+diversity", 0.25)),
    ("random", ("random", None)),
    ("margin", ("margin", None)),
    ("least-confidence", ("least-confidence", None)),
    ("mean-entropy", ("mean-entropy", None)),
])
def test_parse_strategy(s, want):
    assert parse_strategy(s) == want


@pytest.mark.parametrize("s, fragment", [
    ("bogus", "'bogus'"), ("entropy@0", "outside (0, 1]"), ("entropy@1.5", "outside (0, 1]"),
    ("entropy@x", "'x'"), ("margin@0.5", "@ALPHA"), ("aift@0.5", "aift"), (3, "3"),
])
def test_parse_strategy_errors(s, fragment):
    with pytest.raises(AiftError) as e:
        parse_strategy(s)
    assert fragment in str(e.value)
    if s == "bogus":
        assert all(name in str(e.value) for name in STRATEGIES)


def test_strategy_scores_dispatch():
    rng = np.random.default_rng(1)
    P = rng.random((12, 8))
    np.testing.assert_array_equal(strategy_scores(P, "aift"), score_candidates(P, "entropy+diversity", 0.25))
    np.testing.assert_array_equal(strategy_scores(P, "entropy@0.5"), score_candidates(P, "entropy", 0.5))
    np.testing.assert_array_equal(strategy_scores(P, "diversity"), score_candidates(P, "diversity", 1.0))
    np.testing.assert_array_equal(strategy_scores(P, "margin"), baseline_scores(P, "margin"))
    np.testing.assert_array_equal(strategy_scores(P, "random", seed=3), baseline_scores(P, "random", seed=3))


# ----------------------------------------------------------------------------- select


def test_select_top_b_stable():
    s = np.array([0.1, 0.9, 0.5, 0.9, 0.7])
    np.testing.assert_array_equal(select(s, 2), [1, 3])
    np.testing.assert_array_equal(select(s, 3), [1, 3, 4])
    out = select(s, 5)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [1, 3, 4, 2, 0])
    # omega = 1 ignores the seed; omega large but b = n returns everything
    np.testing.assert_array_equal(select(s, 2, omega=1.0, seed=5), select(s, 2))
    assert sorted(select(s, 5, omega=3.0, seed=1)) == [0, 1, 2, 3, 4]


def test_select_randomised_seeded_and_within_top_omega_b():
    rng = np.random.default_rng(0)
    s = rng.random(100)
    a = select(s, 10, omega=2.0, seed=42)
    np.testing.assert_array_equal(a, select(s, 10, omega=2.0, seed=42))
    assert len(set(a.tolist())) == 10
    top20 = set(np.argsort(-s)[:20].tolist())
    assert set(a.tolist()) <= top20
    assert np.all(np.diff(s[a]) <= 0)  # returned in decreasing worth
    assert any(not np.array_equal(a, select(s, 10, omega=2.0, seed=k)) for k in range(5))


def test_select_randomised_frequency_increases_with_score():
    s = np.arange(20, dtype=float)  # candidate i has worth i; b=5, omega=2 keeps 10..19
    counts = np.zeros(20)
    for seed in range(400):
        counts[select(s, 5, omega=2.0, seed=seed)] += 1
    assert counts[:10].sum() == 0  # outside the top omega*b
    assert counts[10] == 0  # smallest kept: a' = 0, never drawn while b items have a' > 0
    assert counts.sum() == 400 * 5
    # expected frequency ∝ a' (sampling without replacement flattens it, but keeps the order)
    top = counts[11:]
    assert np.corrcoef(np.arange(11, 20), top)[0, 1] > 0.9
    assert top[-1] > 2 * top[0]


def test_select_degenerate_equal_scores_uniform():
    s = np.ones(10)
    counts = np.zeros(10)
    for seed in range(300):
        out = select(s, 2, omega=3.0, seed=seed)  # keeps indices 0..5, all a' equal
        counts[out] += 1
    assert counts[6:].sum() == 0 and counts[:6].min() > 50


def test_select_fills_uniformly_when_too_few_positive_weights():
    # top ceil(2*3)=6 are [10, 5, 5, 5, 5, 5]: only one item has a' > 0, two more drawn uniformly
    s = np.array([10, 5, 5, 5, 5, 5, 1, 0], dtype=float)
    seen = set()
    for seed in range(50):
        out = select(s, 3, omega=2.0, seed=seed)
        assert out[0] == 0 and len(set(out.tolist())) == 3 and set(out.tolist()) <= {0, 1, 2, 3, 4, 5}
        seen.update(out.tolist())
    assert seen == {0, 1, 2, 3, 4, 5}


def test_select_omega_ceil_and_clip():
    s = np.arange(10, dtype=float)
    for seed in range(30):
        out = select(s, 3, omega=1.5, seed=seed)  # ceil(4.5) = 5 kept: indices 5..9
        assert set(out.tolist()) <= {6, 7, 8, 9}  # 5 is the smallest kept (a' = 0)
        assert set(select(s, 4, omega=100.0, seed=seed).tolist()) <= set(range(1, 10))


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(scores=np.ones(40), b=50), "budget 50 is larger than the pool of 40 candidates"),
    (dict(scores=np.ones(40), b=0), "budget must be an integer >= 1; got 0"),
    (dict(scores=np.ones(40), b=2.5), "2.5"),
    (dict(scores=np.ones(40), b=2, omega=0.5), "omega must be a number >= 1; got 0.5"),
    (dict(scores=np.ones(40), b=2, omega=float("nan")), "nan"),
    (dict(scores=np.array([1.0, np.nan]), b=1), "nan at index 1"),
    (dict(scores=np.ones((2, 2)), b=1), "shape (2, 2)"),
])
def test_select_validation(kwargs, fragment):
    with pytest.raises(AiftError) as e:
        select(**kwargs)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_docstring_examples():
    result = doctest.testmod(selection, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 7 and result.failed == 0
