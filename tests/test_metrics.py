"""Tests for aift_tf.metrics."""

import doctest
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aift_tf import metrics
from aift_tf.errors import AiftError
from aift_tf.metrics import (
    alc,
    auc,
    candidate_prediction,
    candidate_probability,
    froc,
    labels_to_target,
    savings,
)

# ----------------------------------------------------------------------------- candidates


def test_candidate_probability_binary_and_multiclass():
    p = np.array([[0.2, 0.4, 0.9], [1.0, 1.0, 0.7]])
    np.testing.assert_allclose(candidate_probability(p), [0.5, 0.9])
    P = np.stack([1 - p, p], axis=-1)
    np.testing.assert_allclose(candidate_probability(P), [0.5, 0.9])
    Q = np.array([[[0.2, 0.5, 0.3], [0.4, 0.3, 0.3]]])
    np.testing.assert_allclose(candidate_probability(Q), [0.4])  # class 1
    np.testing.assert_allclose(candidate_prediction(Q), [[0.3, 0.4, 0.3]])
    np.testing.assert_allclose(candidate_prediction(p), [[0.5, 0.5], [0.1, 0.9]])
    assert candidate_probability(p).dtype == np.float64


def test_candidate_probability_validation():
    with pytest.raises(AiftError, match="1.2"):
        candidate_probability([[0.5, 1.2]])
    with pytest.raises(AiftError, match=r"shape \(3,\)"):
        candidate_prediction([0.1, 0.2, 0.3])


# ----------------------------------------------------------------------------- AUC


def test_auc_binary_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.random(200) + 0.3 * y
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75  # hand: 3 of 4 pairs ordered
    assert auc([0, 1], [0.9, 0.1]) == 0.0
    # (n, 2) scores: column 1 is P(positive)
    S2 = np.stack([1 - s, s], axis=1)
    assert auc(y, S2) == pytest.approx(roc_auc_score(y, s))
    assert auc(y.astype(bool), s) == pytest.approx(roc_auc_score(y, s))


def test_auc_one_class_is_nan():
    assert math.isnan(auc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert math.isnan(auc([0, 0], [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    assert math.isnan(auc([], []))


def test_auc_multiclass_ovr_macro():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    S = rng.dirichlet(np.ones(4), 300)
    S[np.arange(300), y] += 0.5
    S /= S.sum(1, keepdims=True)
    want = roc_auc_score(y, S, multi_class="ovr", average="macro")
    assert auc(y, S) == pytest.approx(want)
    # class 3 absent from the labels: macro over the classes present
    mask = y != 3
    got = auc(y[mask], S[mask])
    per = [roc_auc_score(y[mask] == c, S[mask, c]) for c in range(3)]
    assert got == pytest.approx(np.mean(per))


@pytest.mark.parametrize("labels, scores, fragment", [
    ([0, 1, 2], [0.1, 0.2, 0.3], "label 2"),
    ([0, -1], [0.1, 0.2], "label -1"),
    ([0, 1, 5], [[0.3, 0.3, 0.4]] * 3, "label 5"),
    ([0, 0.5], [0.1, 0.2], "0.5"),
    ([0, 1], [0.1, 0.2, 0.3], "shape (3,)"),
    ([0, 1], [0.1, np.nan], "nan"),
    ([0, 1], [[0.1], [0.2]], "K >= 2"),
    ([[0, 1]], [0.1, 0.2], "shape (1, 2)"),
])
def test_auc_validation(labels, scores, fragment):
    with pytest.raises(AiftError) as e:
        auc(labels, scores)
    assert fragment in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- ALC


def test_alc_values():
    assert alc([0, 100, 200], [0.5, 0.9, 0.9]) == pytest.approx(0.8)
    assert alc([10, 20, 50], [0.9, 0.9, 0.9]) == pytest.approx(0.9)
    # uneven spacing: trapezoids (0.6+0.8)/2*10 + (0.8+1.0)/2*30 = 7 + 27 = 34 over 40
    assert alc([10, 20, 50], [0.6, 0.8, 1.0]) == pytest.approx(34 / 40)
    assert alc(np.array([1, 2]), np.array([0.0, 1.0])) == pytest.approx(0.5)


@pytest.mark.parametrize("x, y, fragment", [
    ([0, 100, 100], [0.5, 0.6, 0.7], "strictly increasing"),
    ([0, 200, 100], [0.5, 0.6, 0.7], "200 at index 1"),
    ([0, 100], [0.5, 0.6, 0.7], "2 points but auc_curve has 3"),
    ([0], [0.5], "at least 2 points"),
    ([0, 100], [0.5, np.nan], "nan"),
    ([[0, 1]], [[0.5, 0.6]], "1-D"),
])
def test_alc_validation(x, y, fragment):
    with pytest.raises(AiftError) as e:
        alc(x, y)
    assert fragment in str(e.value)
    with pytest.raises(AiftError):
        labels_to_target(x, y, 0.5)


# ----------------------------------------------------------------------------- labels to target


def test_labels_to_target():
    x, y = [100, 200, 300, 400], [0.6, 0.7, 0.9, 0.95]
    # crossing between (200, 0.7) and (300, 0.9): 200 + (0.8 - 0.7) / 0.2 * 100 = 250
    assert labels_to_target(x, y, 0.8) == pytest.approx(250.0)
    assert labels_to_target(x, y, 0.9) == pytest.approx(300.0)  # reached exactly at a point
    assert labels_to_target(x, y, 0.5) == 100.0  # first point already reaches it
    assert labels_to_target(x, y, 0.6) == 100.0
    assert labels_to_target(x, y, 0.96) is None
    # non-monotone curve: the FIRST crossing counts
    assert labels_to_target([0, 10, 20, 30], [0.5, 0.9, 0.7, 0.95], 0.8) == pytest.approx(7.5)
    with pytest.raises(AiftError, match="nan"):
        labels_to_target(x, y, float("nan"))
    with pytest.raises(AiftError, match="'0.8'"):
        labels_to_target(x, y, "0.8")


# ----------------------------------------------------------------------------- savings


def test_savings():
    assert savings(250, 1000) == pytest.approx(0.75)
    assert savings(1000, 1000) == 0.0
    assert savings(1500.0, 1000) == pytest.approx(-0.5)
    assert savings(None, 1000) is None
    assert savings(250, None) is None
    with pytest.raises(AiftError, match="labels_needed_reference 0"):
        savings(10, 0)
    with pytest.raises(AiftError, match="-5"):
        savings(-5, 100)
    with pytest.raises(AiftError, match="True"):
        savings(True, 100)


# ----------------------------------------------------------------------------- FROC

# Hand-computed example: 7 candidates in 3 groups (scans), 3 positive candidates.
#   score  0.9  0.8  0.8  0.6  0.5  0.4  0.3
#   label   1    0    1    0    1    0    0
#   group   0    0    1    1    2    2    2
# Thresholds at each distinct score (the tied 0.8 pair passes together):
#   thr  inf: TP 0 FP 0 -> (FP/group 0,   sens 0)
#   thr  0.9: TP 1 FP 0 -> (0,   1/3)
#   thr  0.8: TP 2 FP 1 -> (1/3, 2/3)
#   thr  0.6: TP 2 FP 2 -> (2/3, 2/3)
#   thr  0.5: TP 3 FP 2 -> (2/3, 1)
#   thr  0.4: TP 3 FP 3 -> (1,   1)
#   thr  0.3: TP 3 FP 4 -> (4/3, 1)
# Sensitivity at 0.25 FP/group: best point with FP/group <= 0.25 is (0, 1/3) -> 1/3;
# at 0.5 -> (1/3, 2/3) -> 2/3; at 1 -> (2/3, 1) -> 1; at 2 -> 1.
SCORES = [0.9, 0.8, 0.8, 0.6, 0.5, 0.4, 0.3]
LABELS = [1, 0, 1, 0, 1, 0, 0]
GROUPS = [0, 0, 1, 1, 2, 2, 2]


def test_froc_hand_example():
    r = froc(SCORES, LABELS, GROUPS, fps_per_group=(0.25, 0.5, 1, 2))
    np.testing.assert_allclose(r["fps"], [0.25, 0.5, 1, 2])
    np.testing.assert_allclose(r["sensitivity"], [1 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(r["curve_fp_per_group"], [0, 0, 1 / 3, 2 / 3, 2 / 3, 1, 4 / 3])
    np.testing.assert_allclose(r["curve_sensitivity"], [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(r["curve_thresholds"], [np.inf, 0.9, 0.8, 0.6, 0.5, 0.4, 0.3])
    # a rate exactly on a curve point counts that point
    assert froc(SCORES, LABELS, GROUPS, fps_per_group=(1 / 3,))["sensitivity"][0] == pytest.approx(2 / 3)
    # input order does not matter
    perm = [6, 2, 0, 5, 1, 4, 3]
    r2 = froc(np.array(SCORES)[perm], np.array(LABELS)[perm], np.array(GROUPS)[perm], (0.25, 0.5, 1, 2))
    np.testing.assert_allclose(r2["sensitivity"], r["sensitivity"])


def test_froc_num_groups_and_num_true():
    # 6 scans (3 without candidates): FP/group halves -> at 0.25 the (1/6, 2/3) point counts.
    r = froc(SCORES, LABELS, GROUPS, fps_per_group=(0.25, 1), num_groups=6)
    np.testing.assert_allclose(r["sensitivity"], [2 / 3, 1])
    # 6 true objects (emboli) of which the candidates hit 3: sensitivities halve
    r = froc(SCORES, LABELS, GROUPS, fps_per_group=(0.25, 0.5, 1), num_true=6)
    np.testing.assert_allclose(r["sensitivity"], [1 / 6, 1 / 3, 1 / 2])
    # default fps_per_group
    np.testing.assert_allclose(froc(SCORES, LABELS, GROUPS)["fps"], [1, 2, 3])
    # string group ids work
    r = froc(SCORES, LABELS, ["a", "a", "b", "b", "c", "c", "c"], fps_per_group=(0.5,))
    np.testing.assert_allclose(r["sensitivity"], [2 / 3])


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(labels=[1, 0, 2, 0, 1, 0, 0]), "label 2"),
    (dict(labels=[0] * 7), "no positive candidates"),
    (dict(groups=[0, 0, 1]), "groups must have shape (7,)"),
    (dict(scores=[0.9] * 6 + [np.nan]), "nan at index 6"),
    (dict(fps_per_group=(0, 1)), "fps_per_group"),
    (dict(num_groups=2), "num_groups 2 is less than the 3"),
    (dict(num_true=0), "num_true"),
    (dict(labels=[1, 0, 1]), "labels has 3 entries"),
])
def test_froc_validation(kwargs, fragment):
    args = dict(scores=SCORES, labels=LABELS, groups=GROUPS)
    args.update(kwargs)
    with pytest.raises(AiftError) as e:
        froc(**args)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_docstring_examples():
    result = doctest.testmod(metrics)
    assert result.attempted >= 7 and result.failed == 0


def test_isotonic_crossing_is_a_stopping_rule_the_report_reads_back():
    """The run stops a seed at the first round where labels_to_target(..., smooth=True) is not None;
    the crossing read from the stopped curve is then the one the run saw, and no earlier prefix crossed."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = np.r_[0, np.cumsum(rng.integers(5, 60, 19))].astype(float)
        y = np.r_[0.5, 0.6 + 0.3 * (1 - np.exp(-x[1:] / 300)) + rng.normal(0, 0.02, 19)]
        target = 0.8
        stop = next((k for k in range(2, x.size + 1)
                     if labels_to_target(x[:k], y[:k], target, smooth=True) is not None), None)
        if stop is None:
            assert labels_to_target(x, y, target, smooth=True) is None
            continue
        seen = labels_to_target(x[:stop], y[:stop], target, smooth=True)
        assert labels_to_target(x[:stop], y[:stop], target, smooth=True) == seen
        assert x[stop - 2] < seen <= x[stop - 1]  # it crossed on the last segment, not before
