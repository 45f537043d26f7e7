"""Evaluation metrics: candidate predictions, ROC AUC, learning-curve summaries, FROC.

Learning curves are ``(labels_curve, auc_curve)`` pairs: the number of labelled candidates after
each round and the test AUC of the model fine-tuned on them. This module imports numpy and
scikit-learn only.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from aift_tf.errors import AiftError
from aift_tf.selection import as_probs, as_scores

__all__ = [
    "candidate_probability",
    "candidate_prediction",
    "auc",
    "class_recall",
    "alc",
    "labels_to_target",
    "smooth_curve",
    "savings",
    "paired_bootstrap",
    "froc",
]


# ----------------------------------------------------------------------------- candidates


def candidate_prediction(probs) -> np.ndarray:
    """Candidate-level prediction: the mean of its patch predictions.

    Args:
        probs: ``(n, m, K)`` softmax probabilities or ``(n, m)`` P(positive).

    Returns:
        float64 ``(n, K)`` (``K = 2`` for ``(n, m)`` input: ``[1 − p̄, p̄]``).

    Example:
    >>> candidate_prediction([[0.2, 0.6]])
    array([[0.6, 0.4]])
    """
    P, _ = as_probs(probs)
    return P.mean(axis=1)


def candidate_probability(probs) -> np.ndarray:
    """P(positive) of every candidate: the mean over its patches of P(class 1).

    Args:
        probs: ``(n, m, K)`` or ``(n, m)`` (already P(positive)).

    Returns:
        float64 ``(n,)``.

    Example:
    >>> candidate_probability([[[0.8, 0.2], [0.4, 0.6]]])
    array([0.4])
    """
    P, _ = as_probs(probs)
    return P[:, :, 1].mean(axis=1)


# ----------------------------------------------------------------------------- AUC


def auc(labels, scores) -> float:
    """ROC AUC (``sklearn.metrics.roc_auc_score``).

    Binary: ``labels`` in {0, 1} and ``scores`` ``(n,)`` (P(positive)) or ``(n, 2)`` (column 1
    is used). Multi-class: ``scores`` ``(n, K)`` and labels in 0 … K−1; the result is the
    one-vs-rest macro average over the classes present in ``labels`` (a class with no example
    has no defined AUC and is left out).

    Returns ``float('nan')`` when fewer than two classes are present in ``labels`` (AUC is
    undefined) instead of raising.

    Args:
        labels: ``(n,)`` integer class labels.
        scores: ``(n,)`` or ``(n, K)`` finite scores.

    Returns:
        float in [0, 1], or nan.

    Example:
    >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    from sklearn.metrics import roc_auc_score

    y = _int_labels(labels, "labels")
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise AiftError(f"scores must be a numeric array, got {type(scores).__name__}") from None
    if s.ndim not in (1, 2) or s.shape[0] != y.shape[0]:
        raise AiftError(f"scores must have shape ({y.shape[0]},) or ({y.shape[0]}, K) to match labels, "
                        f"got shape {s.shape}")
    _check_finite(s, "scores")
    if s.ndim == 2 and s.shape[1] < 2:
        raise AiftError(f"scores of shape {s.shape} need K >= 2 columns; pass (n,) for one score")
    num_classes = 2 if s.ndim == 1 else s.shape[1]
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y[(y < 0) | (y >= num_classes)][0])
        raise AiftError(f"label {bad} is outside 0..{num_classes - 1} for scores of shape {s.shape}")
    present = np.unique(y)
    if present.size < 2:
        return float("nan")
    if num_classes == 2:
        return float(roc_auc_score(y, s if s.ndim == 1 else s[:, 1]))
    per_class = [roc_auc_score(y == c, s[:, c]) for c in present]
    return float(np.mean(per_class))


def class_recall(labels, scores, num_classes: int) -> list:
    """Recall of every class when each candidate is given its most probable class (argmax).

    Shows which classes a model neglects, beside the (macro) AUC that averages them away.

    Args:
        labels: ``(n,)`` integer class labels in 0 … K−1.
        scores: ``(n,)`` P(class 1) (binary) or ``(n, K)`` class probabilities.
        num_classes: K.

    Returns:
        K floats: the share of class k's candidates predicted as k; ``nan`` for a class with no candidate.

    Example:
    >>> class_recall([0, 1, 1, 2], [[.8, .1, .1], [.1, .8, .1], [.6, .3, .1], [.1, .1, .8]], 3)
    [1.0, 0.5, 1.0]
    """
    y = _int_labels(labels, "labels")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = np.stack([1.0 - s, s], axis=1)
    K = int(num_classes)
    if s.ndim != 2 or s.shape != (y.size, K):
        raise AiftError(f"scores of shape {np.shape(scores)} do not match {y.size} labels of {K} classes")
    if y.size and (y.min() < 0 or y.max() >= K):
        bad = int(y[(y < 0) | (y >= K)][0])
        raise AiftError(f"label {bad} is outside 0..{K - 1}")
    pred = np.argmax(s, axis=1)
    return [float(np.mean(pred[y == k] == k)) if (y == k).any() else float("nan") for k in range(K)]


# ----------------------------------------------------------------------------- learning curves


def _curve(labels_curve, auc_curve) -> tuple[np.ndarray, np.ndarray]:
    try:
        x = np.asarray(labels_curve, dtype=np.float64)
        y = np.asarray(auc_curve, dtype=np.float64)
    except (TypeError, ValueError):
        raise AiftError("labels_curve and auc_curve must be numeric sequences") from None
    if x.ndim != 1 or y.ndim != 1:
        raise AiftError(f"labels_curve and auc_curve must be 1-D, got shapes {x.shape} and {y.shape}")
    if x.shape != y.shape:
        raise AiftError(f"labels_curve has {x.size} points but auc_curve has {y.size}")
    if x.size < 2:
        raise AiftError(f"a learning curve needs at least 2 points, got {x.size}")
    _check_finite(x, "labels_curve")
    _check_finite(y, "auc_curve")
    d = np.diff(x)
    if (d <= 0).any():
        i = int(np.argmax(d <= 0))
        raise AiftError(f"labels_curve must be strictly increasing; {x[i]:g} at index {i} "
                        f"is followed by {x[i + 1]:g}")
    return x, y


def alc(labels_curve, auc_curve) -> float:
    """Area under the learning curve (AUC vs number of labels), normalised by the label range.

    Trapezoid rule divided by ``max(labels) − min(labels)``: a curve constant at 0.9 has ALC 0.9.

    Args:
        labels_curve: strictly increasing label counts, at least 2 points.
        auc_curve: the AUC at each point (finite).

    Returns:
        float.

    Example:
    >>> alc([0, 100, 200], [0.5, 0.9, 0.9])
    0.8
    """
    x, y = _curve(labels_curve, auc_curve)
    area = float(np.sum((y[1:] + y[:-1]) * 0.5 * np.diff(x)))
    return area / float(x[-1] - x[0])


def smooth_curve(labels_curve, auc_curve) -> np.ndarray:
    """The non-decreasing least-squares fit of a learning curve (isotonic regression).

    A learning curve measured on a finite test set wobbles from round to round; the first crossing of
    a target by the raw curve is then partly noise (a curve that touches the target once and falls
    back "reaches" it). The isotonic fit (``sklearn.isotonic.IsotonicRegression``) pools adjacent
    rounds that go down, so the first crossing of the fitted curve is where the curve reaches the
    target for good, in the least-squares sense.

    Args:
        labels_curve: strictly increasing label counts, at least 2 points.
        auc_curve: the AUC at each point (finite).

    Returns:
        float64 ``(n,)``: the fitted AUC at each label count.

    Example:
    >>> smooth_curve([0, 10, 20, 30], [0.5, 0.8, 0.7, 0.9]).round(2).tolist()
    [0.5, 0.75, 0.75, 0.9]
    """
    from sklearn.isotonic import IsotonicRegression

    x, y = _curve(labels_curve, auc_curve)
    return IsotonicRegression(increasing=True).fit_transform(x, y).astype(np.float64)


def labels_to_target(labels_curve, auc_curve, target: float, *, smooth: bool = False,
                     anchor=None) -> float | None:
    """Number of labels at which the learning curve first reaches ``target``.

    Linear interpolation between the last point below the target and the first point at or above
    it. If the first point already reaches the target, its label count is returned; if the curve
    never reaches it, ``None`` (censored: more labels than the curve's last point are needed).

    With ``smooth=True`` this is *the* crossing rule of `aift-sim` (the isotonic first crossing),
    and its only implementation: the report reads labels needed with it, and the experiment calls
    it on a seed's curve so far (``labels_to_target(labels, aucs, target, smooth=True) is not None``)
    to decide that the seed has crossed and stops querying. A curve stopped that way gives the report
    the same crossing the run saw (the fit of the stopped curve is the one the run computed).

    Args:
        labels_curve: strictly increasing label counts, at least 2 points.
        auc_curve: the AUC at each point (finite).
        target: the AUC to reach.
        smooth: find the crossing on :func:`smooth_curve` (isotonic fit) instead of the raw curve.
        anchor: optional ``(labels, auc)`` point appended after the (smoothed) curve, e.g. full
            training on the whole pool: a curve that has not reached the target by its last point
            then crosses it on the segment to the anchor. ``labels`` must exceed the last label count.

    Returns:
        float or None.

    Example:
    >>> labels_to_target([100, 200, 300], [0.5, 0.75, 1.0], 0.625)
    150.0
    >>> labels_to_target([0, 100], [0.5, 0.75], 0.875, anchor=(1100, 1.0))
    600.0
    """
    x, y = _curve(labels_curve, auc_curve)
    if smooth:
        y = smooth_curve(x, y)
    if anchor is not None:
        ax, ay = (float(v) for v in anchor)
        if not (math.isfinite(ax) and math.isfinite(ay)) or ax <= x[-1]:
            raise AiftError(f"anchor {tuple(anchor)!r} must be a finite point after the last label count {x[-1]:g}")
        x, y = np.r_[x, ax], np.r_[y, ay]
    if isinstance(target, bool) or not isinstance(target, numbers.Real) or not math.isfinite(target):
        raise AiftError(f"target must be a finite number, got {target!r}")
    hit = np.flatnonzero(y >= target)
    if hit.size == 0:
        return None
    i = int(hit[0])
    if i == 0:
        return float(x[0])
    x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))


def savings(labels_needed, labels_needed_reference) -> float | None:
    """Fraction of annotation saved relative to a reference: ``1 − labels_needed / reference``.

    Args:
        labels_needed: labels the method needs to reach a target (``None`` = never reached).
        labels_needed_reference: labels the reference (e.g. random selection) needs
            (``None`` = never reached).

    Returns:
        float (negative when the method needs more), or ``None`` if either input is ``None``.

    Example:
    >>> savings(250, 1000)
    0.75
    """
    if labels_needed is None or labels_needed_reference is None:
        return None
    for name, v in (("labels_needed", labels_needed), ("labels_needed_reference", labels_needed_reference)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
            raise AiftError(f"{name} must be a finite number >= 0 or None, got {v!r}")
    if labels_needed_reference == 0:
        raise AiftError("labels_needed_reference 0 must be positive")
    return 1.0 - float(labels_needed) / float(labels_needed_reference)


def paired_bootstrap(samples, statistic, *, n_resamples: int = 4000, confidence: float = 0.95,
                     seed: int = 0, paired: bool = True) -> dict:
    """A statistic of paired samples and its percentile bootstrap interval (``scipy.stats.bootstrap``).

    The samples are paired by position (index ``k`` = seed ``k`` of a simulation: every strategy of a
    seed shares M0's head, the initial labels and the test set), so the resampling draws whole seeds
    (``paired=True``). With ``paired=False`` the samples are independent (they may differ in length)
    and each is resampled on its own.

    The interval is the percentile interval of the bootstrap distribution, widened where needed so
    that it always contains the estimate (with very few distinct values a percentile interval can
    miss it). With a single pair, or when the statistic does not vary over resamples, the interval is
    the estimate itself.

    Args:
        samples: a sequence of equally long 1-D arrays (one per variable, e.g. labels needed by a
            strategy and by random), finite.
        statistic: ``f(*samples, axis=-1)`` returning the statistic along ``axis`` (vectorised, as
            ``scipy.stats.bootstrap`` calls it).
        n_resamples: bootstrap resamples (>= 2000 for a 95% interval).
        confidence: interval level in (0, 1).
        seed: seeds the resampling.

    Returns:
        ``{"estimate": float, "ci95": [lo, hi], "n": pairs (the smallest sample's size when unpaired),
        "n_resamples": int, "method": "percentile"}``.

    Example:
    >>> diff = lambda a, b, axis=-1: np.mean(a - b, axis=axis)
    >>> r = paired_bootstrap([[0.8, 0.9, 0.85], [0.7, 0.8, 0.8]], diff, seed=0)
    >>> round(r["estimate"], 3), r["ci95"][0] > 0
    (0.083, True)
    """
    from scipy import stats

    arrays = [np.asarray(a, dtype=np.float64) for a in samples]
    if not arrays or any(a.ndim != 1 for a in arrays) or (paired and len({a.size for a in arrays}) != 1):
        raise AiftError(f"samples must be equally long 1-D arrays, got shapes {[a.shape for a in arrays]}")
    n = int(min(a.size for a in arrays))
    if n == 0:
        raise AiftError("paired_bootstrap needs at least one pair, got 0")
    for k, a in enumerate(arrays):
        _check_finite(a, f"samples[{k}]")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral) or n_resamples < 100:
        raise AiftError(f"n_resamples must be an integer >= 100, got {n_resamples!r}")
    if not (isinstance(confidence, numbers.Real) and 0 < confidence < 1):
        raise AiftError(f"confidence must be a number in (0, 1), got {confidence!r}")
    est = float(statistic(*arrays, axis=-1))
    if not math.isfinite(est):
        raise AiftError(f"the statistic of the samples is not finite ({est})")
    lo = hi = est
    if n > 1 and any(np.ptp(a) > 0 for a in arrays):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate resamples: handled below
            res = stats.bootstrap(tuple(arrays), statistic, paired=bool(paired), vectorized=True,
                                  n_resamples=int(n_resamples),
                                  confidence_level=float(confidence), method="percentile",
                                  random_state=np.random.default_rng(int(seed)))
        lo_b, hi_b = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo_b) and math.isfinite(hi_b):
            lo, hi = min(lo_b, est), max(hi_b, est)
    return {"estimate": est, "ci95": [lo, hi], "n": n, "n_resamples": int(n_resamples), "method": "percentile"}


# ----------------------------------------------------------------------------- FROC


def froc(scores, labels, groups, fps_per_group=(1, 2, 3), num_groups=None, num_true=None) -> dict:
    """Free-response ROC for detection: sensitivity vs false positives per group (e.g. per scan).

    Every distinct score is a threshold; a candidate is reported when ``score >= threshold``.
    At a threshold, sensitivity = reported positive candidates / ``num_true`` and
    FP/group = reported negative candidates / ``num_groups``. The curve starts at (0, 0)
    (threshold above every score). Sensitivity at a requested rate ``r`` is the best sensitivity
    among curve points with FP/group ≤ r (step interpolation).

    Candidate-level by default: ``num_true`` defaults to the number of positive candidates.
    Pass the number of true objects (e.g. emboli) when several candidates may hit one object;
    sensitivity then counts positive *candidates* over ``num_true`` (deduplicate hits upstream
    if one object must count once).

    Args:
        scores: ``(n,)`` finite candidate scores (larger = more likely positive).
        labels: ``(n,)`` in {0, 1}.
        groups: ``(n,)`` group id of each candidate (e.g. scan / patient id).
        fps_per_group: the FP/group rates to report (each > 0).
        num_groups: number of groups, defaults to the number of distinct ``groups``
            (pass it when some groups have no candidates).
        num_true: number of true objects, defaults to the number of positive candidates.

    Returns:
        dict with ``"fps"`` (float64, the requested rates), ``"sensitivity"`` (at each rate),
        ``"curve_fp_per_group"``, ``"curve_sensitivity"`` and ``"curve_thresholds"``
        (``inf`` for the origin).

    Example:
    >>> r = froc([0.9, 0.8, 0.7], [1, 0, 1], [0, 0, 1], fps_per_group=(0.5,))
    >>> r["sensitivity"].tolist(), r["curve_fp_per_group"].tolist()
    ([1.0], [0.0, 0.0, 0.5, 0.5])
    """
    s = as_scores(scores)
    _check_finite(s, "scores")
    y = _int_labels(labels, "labels")
    if y.shape != s.shape:
        raise AiftError(f"labels has {y.size} entries but scores has {s.size}")
    if y.size and (y.min() < 0 or y.max() > 1):
        bad = int(y[(y < 0) | (y > 1)][0])
        raise AiftError(f"label {bad} is not 0 or 1")
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape != s.shape:
        raise AiftError(f"groups must have shape {s.shape} to match scores, got shape {g.shape}")
    if s.size == 0:
        raise AiftError("froc needs at least one candidate, got 0")

    if num_groups is None:
        num_groups = int(np.unique(g).size)
    else:
        num_groups = _positive_int("num_groups", num_groups)
        if num_groups < np.unique(g).size:
            raise AiftError(f"num_groups {num_groups} is less than the {np.unique(g).size} distinct groups")
    if num_true is None:
        num_true = int(y.sum())
        if num_true == 0:
            raise AiftError("froc: no positive candidates; pass num_true to define sensitivity")
    else:
        num_true = _positive_int("num_true", num_true)

    fps = np.asarray(fps_per_group, dtype=np.float64).reshape(-1)
    if fps.size == 0 or not np.isfinite(fps).all() or (fps <= 0).any():
        raise AiftError(f"fps_per_group must be positive finite rates, got {tuple(fps_per_group)!r}")

    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(1 - y_sorted)
    # Keep the last index of each run of equal scores: all tied candidates pass together.
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    curve_fp = np.r_[0.0, fp[last] / num_groups]
    curve_sens = np.r_[0.0, tp[last] / num_true]
    curve_thr = np.r_[np.inf, s_sorted[last]]
    # Step interpolation: the curve is non-decreasing in both coordinates, so the best
    # sensitivity with FP/group <= r is at the last such point.
    idx = np.searchsorted(curve_fp, fps * (1 + 1e-12), side="right") - 1
    return {
        "fps": fps,
        "sensitivity": curve_sens[idx],
        "curve_fp_per_group": curve_fp,
        "curve_sensitivity": curve_sens,
        "curve_thresholds": curve_thr,
    }


# ----------------------------------------------------------------------------- helpers


def _check_finite(a: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        idx_text = idx[0] if len(idx) == 1 else idx
        raise AiftError(f"{name} contain non-finite value {a[idx]} at index {idx_text}")


def _int_labels(labels, name: str) -> np.ndarray:
    a = np.asarray(labels)
    if a.ndim != 1:
        raise AiftError(f"{name} must have shape (n,), got shape {a.shape}")
    if a.dtype == bool:
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.number):
        raise AiftError(f"{name} must be integers, got dtype {a.dtype}")
    if a.size and not np.all(np.isfinite(a) & (a == np.round(a))):
        bad = a[~(np.isfinite(a) & (a == np.round(a)))][0]
        raise AiftError(f"{name} must be integers, got {float(bad):g}")
    return a.astype(np.int64)


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise AiftError(f"{name} must be a positive integer, got {v!r}")
    return int(v)
