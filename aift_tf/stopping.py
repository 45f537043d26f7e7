"""When to stop annotating: agreement between consecutive models on a fixed unlabeled stop set.

Bloodgood & Vijay-Shanker (CoNLL 2009, "stabilizing predictions"): draw a *stop set* of unlabeled
candidates once; after every round compare the predicted classes of M_t and M_{t−1} on it with Cohen's
kappa; when the model has stopped changing its mind, more labels are unlikely to change it much.

The rule here: **stop is suggested once the last K kappas are all at or above a threshold** (the
default ``kappa:0.99:3``: three consecutive rounds with κ ≥ 0.99). References for the variants:

* Bloodgood & Vijay-Shanker stop when the *mean* of the last three kappas exceeds 0.99;
* small-text's ``KappaAverage`` (``small_text.stopping_criteria.kappa``) stops when the mean absolute
  change between consecutive kappas in a window of K falls below ``1 − kappa`` (a *stable* kappa), and
  counts a perfect agreement that makes kappa undefined (both models predict one class everywhere) as
  1.0 — as :func:`agreement` does here.

"K consecutive rounds at or above the threshold" is stricter than both (every kappa of the window must
pass), and says plainly what a user can check in ``aift status``.

Functions are numpy/scikit-learn only; :func:`checkpoint_agreement` loads saved learners (TensorFlow).

Example:
>>> from aift_tf.stopping import agreement, stop_round, parse_stop_rule
>>> agreement([0, 1, 1, 0], [0, 1, 1, 0])
1.0
>>> stop_round([0.5, 0.995, 0.999, 1.0], 0.99, 3)     # index of the kappa at which stop is suggested
3
>>> parse_stop_rule("kappa:0.99:3")
{'method': 'kappa', 'threshold': 0.99, 'rounds': 3, 'text': 'kappa:0.99:3'}
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from aift_tf import checkpoint
from aift_tf.checks import check_int
from aift_tf.errors import AiftError

__all__ = ["DEFAULT_THRESHOLD", "DEFAULT_ROUNDS", "DEFAULT_STOP_SET", "parse_stop_rule", "agreement",
           "kappa_curve", "stop_round", "consecutive_at_or_above", "draw_stop_set", "predicted_classes",
           "checkpoint_agreement", "prediction_cache_dir"]

DEFAULT_THRESHOLD = 0.99
DEFAULT_ROUNDS = 3
#: candidates in the stop set (the whole pool if smaller); Bloodgood & Vijay-Shanker used ~2,000
DEFAULT_STOP_SET = 1000


def prediction_cache_dir() -> Path:
    """Where :func:`checkpoint_agreement` keeps stop-set predictions by default: ``$AIFT_CACHE/stopping`` (or
    ``~/.cache/aift-tf/stopping``), outside any project folder (``aift status`` writes nothing there)."""
    from aift_tf.files import default_cache_dir

    return default_cache_dir() / "stopping"


def parse_stop_rule(text) -> dict:
    """``"kappa:THRESHOLD:K"`` (or ``"kappa"`` = ``kappa:0.99:3``) → ``{"method", "threshold", "rounds", "text"}``.

    THRESHOLD in (0, 1], K an integer >= 1; ``text`` is the canonical spelling.

    Example: ``parse_stop_rule("kappa:0.95:2")["rounds"] == 2``.
    """
    if not isinstance(text, str):
        raise AiftError(f"stop rule must be a string like kappa:0.99:3, got {text!r}")
    parts = [p.strip() for p in text.strip().lower().split(":")]
    if parts[0] != "kappa" or len(parts) not in (1, 3):
        raise AiftError(f"stop rule {text!r}: expected kappa:THRESHOLD:K, e.g. kappa:0.99:3")
    threshold, rounds = DEFAULT_THRESHOLD, DEFAULT_ROUNDS
    if len(parts) == 3:
        try:
            threshold = float(parts[1])
        except ValueError:
            raise AiftError(f"stop rule {text!r}: threshold {parts[1]!r} is not a number") from None
        try:
            rounds = int(parts[2])
        except ValueError:
            raise AiftError(f"stop rule {text!r}: K {parts[2]!r} is not an integer") from None
    if not (math.isfinite(threshold) and 0.0 < threshold <= 1.0):
        raise AiftError(f"stop rule {text!r}: threshold {threshold:g} is outside (0, 1]")
    if rounds < 1:
        raise AiftError(f"stop rule {text!r}: K {rounds} must be >= 1")
    return {"method": "kappa", "threshold": threshold, "rounds": rounds, "text": f"kappa:{threshold:g}:{rounds}"}


def agreement(pred_a, pred_b, num_classes: int = 2) -> float:
    """Cohen's kappa between two predictions of the same candidates (``sklearn.metrics.cohen_kappa_score``).

    Identical predictions give 1.0 even when kappa is undefined (both constant: 0/0), as in small-text.

    Args:
        pred_a, pred_b: ``(n,)`` predicted classes.
        num_classes: K (the label set of the kappa).

    Returns:
        kappa in [-1, 1].
    """
    from sklearn.metrics import cohen_kappa_score

    a = np.asarray(pred_a).ravel()
    b = np.asarray(pred_b).ravel()
    if a.shape != b.shape:
        raise AiftError(f"predictions differ in length: {a.size} and {b.size}")
    if a.size == 0:
        raise AiftError("agreement needs at least one prediction")
    if np.array_equal(a, b):
        return 1.0
    return float(cohen_kappa_score(a, b, labels=np.arange(int(num_classes))))


def kappa_curve(predictions, num_classes: int = 2) -> list:
    """Kappas of consecutive predictions: ``[κ(P1, P0), κ(P2, P1), ...]`` (one fewer than rounds)."""
    preds = list(predictions)
    return [agreement(b, a, num_classes) for a, b in zip(preds, preds[1:])]


def consecutive_at_or_above(kappas, threshold: float) -> int:
    """How many of the latest kappas in a row are >= ``threshold`` (``None`` entries break the run)."""
    n = 0
    for k in reversed(list(kappas)):
        if k is None or not np.isfinite(k) or k < threshold:
            break
        n += 1
    return n


def stop_round(kappas, threshold: float = DEFAULT_THRESHOLD, rounds: int = DEFAULT_ROUNDS):
    """Index (into ``kappas``) of the first kappa that completes ``rounds`` consecutive kappas >= ``threshold``,
    or ``None`` if that never happens. ``None`` entries (no previous model) break a run."""
    run = 0
    for i, k in enumerate(kappas):
        run = run + 1 if (k is not None and np.isfinite(k) and k >= threshold) else 0
        if run >= rounds:
            return i
    return None


def draw_stop_set(pool_ids, seed: int = 0, size: int = DEFAULT_STOP_SET) -> np.ndarray:
    """The fixed stop set: ``min(size, len(pool_ids))`` pool ids drawn without replacement
    (``numpy.random.default_rng([seed, 4242])``), sorted."""
    pool = np.asarray(pool_ids, dtype=np.int64).ravel()
    size = check_int(size, "size", 1, coerce=True)
    k = min(int(size), pool.size)
    if k == pool.size:
        return np.sort(pool)
    return np.sort(np.random.default_rng([int(seed), 4242]).choice(pool, size=k, replace=False))


def predicted_classes(probs) -> np.ndarray:
    """Candidate classes from patch probabilities ``(n, m, K)``: argmax of the mean over patches."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 3:
        raise AiftError(f"probs must have shape (n, m, K), got {p.shape}")
    return p.mean(axis=1).argmax(axis=1).astype(np.int64)


def checkpoint_agreement(store, checkpoints, *, threshold: float = DEFAULT_THRESHOLD,
                         rounds: int = DEFAULT_ROUNDS, seed: int = 0, size: int = DEFAULT_STOP_SET,
                         pool_split: str = "train", cache_dir=None) -> dict:
    """Kappa between consecutive saved learners (e.g. an ``aift`` project's checkpoints) and the suggestion.

    Only the last ``rounds + 1`` checkpoints are read. Each one's stop-set predictions are computed
    once (``ActiveLearner.load`` + ``predict``) and, with ``cache_dir``, kept in
    ``cache_dir/<key>.npy`` (key: the store, the stop set and the checkpoint's ``model.keras`` sha256,
    so one folder serves every project), and a second call reads no model.

    Args:
        store: the open candidate store.
        checkpoints: folders written by ``ActiveLearner.save``, oldest first.
        threshold, rounds: the rule (see the module docstring).
        seed, size, pool_split: the stop set (:func:`draw_stop_set` over the pool split).
        cache_dir: where predictions are cached (created), or None.

    Returns:
        ``{"kappas": [...], "kappa": latest or None, "consecutive": int, "suggest_stop": bool,
        "stop_set": int, "rule": "kappa:T:K", "line": one line for people}``.
    """
    import hashlib

    from aift_tf.files import atomic_path, file_sha256

    rule = parse_stop_rule(f"kappa:{threshold}:{rounds}")
    dirs = [Path(d) for d in checkpoints][-(rule["rounds"] + 1):]
    stop_ids = draw_stop_set(store.ids(pool_split), seed=seed, size=size)
    tag = hashlib.sha256(stop_ids.tobytes() + store.sha256.encode()).hexdigest()[:12]
    preds = []
    for d in dirs:
        cached = None
        if cache_dir is not None:
            cached = Path(cache_dir) / f"{tag}-{file_sha256(checkpoint.model_file(d))[:16]}.npy"
            if cached.is_file():
                preds.append(np.load(cached))
                continue
        from aift_tf.learner import ActiveLearner

        learner = ActiveLearner.load(d, store)
        p = predicted_classes(learner.predict(stop_ids))
        preds.append(p)
        if cached is not None:  # best effort: `aift status` only reads, and must work on a full or read-only disk
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(cached, suffix=".npy") as tmp:
                    np.save(tmp, p)
            except (OSError, AiftError):
                pass
    kappas = kappa_curve(preds, store.num_classes)
    run = consecutive_at_or_above(kappas, rule["threshold"])
    suggest = run >= rule["rounds"]
    if not kappas:
        line = (f"agreement: n/a (needs two models; stop rule {rule['text']}: Cohen's kappa of consecutive models "
                f"on {stop_ids.size} pool candidates)")
    else:
        line = (f"agreement (Cohen's kappa, last model vs the one before, {stop_ids.size} pool candidates): "
                f"{kappas[-1]:.4f}; {run} consecutive round(s) >= {rule['threshold']:g}: "
                + ("stop suggested" if suggest else f"keep annotating (stop after {rule['rounds']})"))
    return {"kappas": kappas, "kappa": kappas[-1] if kappas else None, "consecutive": run, "suggest_stop": suggest,
            "stop_set": int(stop_ids.size), "rule": rule["text"], "line": line}
