"""Worth of candidates for active selection (AIFT / ACFT) and randomised top-b query.

A *candidate* is a set of ``m`` patches (augmented views) that share one label. The current model
predicts every patch, giving ``probs`` of shape ``(n, m, K)`` (softmax over K classes) or ``(n, m)``
(P(positive) of a binary task). A candidate's *worth* follows Zhou et al., CVPR 2017 (AIFT), in
the multi-class form of the journal version (ACFT, Medical Image Analysis 2021):

1. **Majority selection** (noisy-label handling, ratio ``alpha``): find the dominant class
   ``ŷ = argmax_k mean_j p_jk`` (ties → the lower class), sort the patches by ``p_jŷ`` descending
   (stable sort: ties keep patch order) and keep the first ``k = round(alpha · m)`` (half away from
   zero, at least 1). For K = 2 (and for ``(n, m)`` input) the paper's rule is applied literally:
   if ``mean(P(1)) > 0.5`` sort P(1) descending, otherwise (including exactly 0.5) ascending —
   the same order as the argmax rule, but immune to the rounding of ``1 − p``, so that ``(n, m)``
   and ``(n, m, 2)`` inputs always keep the same patches.
2. **Matrix R** over the kept patches: ``R_jj = λ1 · entropy_j`` with
   ``entropy_j = −Σ_k p_jk log(p_jk + ε)`` and, off the diagonal,
   ``R_jl = λ2 · Σ_k (p_jk − p_lk) log((p_jk + ε) / (p_lk + ε))`` (symmetric KL divergence),
   ``ε`` = float64 machine epsilon as in the authors' reference code.
3. **Worth** = sum of every entry of R (both triangles).

``score_candidates`` never builds R: for one class the pairwise sum
``Σ_{j,l} (p_j − p_l)(L_j − L_l)`` with ``L = log(p + ε)`` equals ``2 [k Σ_j p_j L_j − Σ_j p_j Σ_j L_j]``,
so the worth of every candidate is computed in O(m) with array operations. ``worth_matrix``
builds R explicitly for one candidate (documentation, tests).

Beyond the paper (issue 13), the same module holds the standard baselines a reviewer asks for,
each a pure function of arrays:

* ``bald@T`` / ``mc-entropy@T`` (Gal, Islam & Ghahramani, ICML 2017): ``T`` stochastic passes with
  dropout on give ``mc_probs`` ``(T, n, m, K)``; the candidate prediction of pass t is the mean over its
  patches ``q_t``; ``mc-entropy`` = H(mean_t q_t), ``bald`` = H(mean_t q_t) − mean_t H(q_t)
  (:func:`mc_scores`).
* ``coreset`` (Sener & Savarese, ICLR 2018): k-center greedy on candidate features, the labeled set as
  the initial centers (:func:`kcenter_greedy`).
* ``aift+coreset[@W]``: the top ``W·b`` unlabeled candidates by AIFT worth, then k-center greedy
  among them (batch-aware AIFT, :func:`select_batch`).
* a group cap (``max_per_group``): no query takes more than K candidates of one group (video, volume,
  patient) — :func:`select` and :func:`kcenter_greedy` skip a group once it has K.

This module imports numpy only.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from fractions import Fraction
from typing import Optional

import numpy as np

from aift_tf.checks import check_int, check_number
from aift_tf.errors import AiftError

__all__ = [
    "METHODS",
    "BASELINES",
    "STRATEGIES",
    "EPS",
    "score_candidates",
    "worth_matrix",
    "majority",
    "baseline_scores",
    "Strategy",
    "AIFT",
    "as_strategy",
    "parse_strategy",
    "strategy_scores",
    "select",
    "cold_start",
    "MC_METHODS",
    "BATCH_METHODS",
    "DEFAULT_MC_PASSES",
    "DEFAULT_PREFILTER",
    "strategy_needs",
    "mc_scores",
    "kcenter_greedy",
    "select_batch",
]

METHODS = ("entropy", "diversity", "entropy+diversity")
BASELINES = ("random", "least-confidence", "margin", "mean-entropy")
# Base names accepted by ``parse_strategy``; the AIFT methods may carry "@ALPHA".
#: MC-dropout strategies ("@T" = stochastic passes) and batch (k-center) strategies
MC_METHODS = ("bald", "mc-entropy")
BATCH_METHODS = ("coreset", "aift+coreset")
STRATEGIES = ("random", "entropy", "diversity", "entropy+diversity", "aift",
              "least-confidence", "margin", "mean-entropy") + MC_METHODS + BATCH_METHODS
AIFT_ALIAS = ("entropy+diversity", 0.25)
#: T of ``bald`` / ``mc-entropy`` without "@T" (Gal et al. used 20 on MNIST; 10 halves the cost)
DEFAULT_MC_PASSES = 10
#: W of ``aift+coreset`` without "@W": k-center runs among the top W·b candidates by AIFT worth
DEFAULT_PREFILTER = 3.0

EPS = float(np.finfo(np.float64).eps)
_LAMBDAS = {"entropy": (1.0, 0.0), "diversity": (0.0, 1.0), "entropy+diversity": (1.0, 1.0)}
_RANGE_TOL = 1e-6  # probabilities may stray this far outside [0, 1] (float32 softmax)
_SUM_TOL = 1e-3  # multi-class rows must sum to 1 within this


# ----------------------------------------------------------------------------- validation


def as_probs(probs, name: str = "probs") -> tuple[np.ndarray, bool]:
    """Validate ``probs`` and return ``(P, binary)`` with P float64 ``(n, m, K)`` clipped to [0, 1].

    ``binary`` is True when the input was ``(n, m)`` P(positive); it is then expanded to
    ``[1 − p, p]`` so that both forms go through the same arithmetic.
    """
    try:
        a = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise AiftError(f"{name} must be a numeric array, got {type(probs).__name__} ({e})") from None
    if a.ndim not in (2, 3):
        raise AiftError(f"{name} must have shape (n, m) or (n, m, K), got shape {a.shape}")
    if a.shape[1] < 1:
        raise AiftError(f"{name} must have at least one patch per candidate, got shape {a.shape}")
    if a.ndim == 3 and a.shape[2] < 2:
        raise AiftError(f"{name} must have K >= 2 classes in shape (n, m, K), got shape {a.shape}")
    if a.size:
        # Two reductions check everything (NaN propagates through min/max); locate only on failure.
        lo, hi = float(a.min()), float(a.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
            raise AiftError(f"{name} contain non-finite value {a[idx]} at index {idx}")
        if lo < -_RANGE_TOL or hi > 1.0 + _RANGE_TOL:
            idx = tuple(int(i) for i in np.argwhere((a < -_RANGE_TOL) | (a > 1.0 + _RANGE_TOL))[0])
            raise AiftError(f"{name} value {a[idx]:g} at index {idx} is outside [0, 1]")
        if lo < 0.0 or hi > 1.0:
            a = np.clip(a, 0.0, 1.0)
    if a.ndim == 3:
        if a.size:
            s = a.sum(axis=2)
            if float(np.abs(s - 1.0).max()) > _SUM_TOL:
                idx = tuple(int(i) for i in np.argwhere(np.abs(s - 1.0) > _SUM_TOL)[0])
                raise AiftError(f"{name} must sum to 1 over the {a.shape[2]} classes; "
                                f"(candidate, patch) {idx} sums to {s[idx]:.6g}")
        return a, False
    out = np.empty(a.shape + (2,), dtype=np.float64)
    out[..., 1] = a
    np.subtract(1.0, a, out=out[..., 0])
    return out, True


def _check_alpha(alpha) -> float:
    return check_number(alpha, "alpha", 0, 1, low_open=True)


def _check_method(method) -> tuple[float, float]:
    if not isinstance(method, str) or method not in _LAMBDAS:
        raise AiftError(f"unknown selection method {method!r}; valid methods: {', '.join(METHODS)}")
    return _LAMBDAS[method]


def _kept_count(m: int, alpha: float) -> int:
    """round(alpha·m), half away from zero, at least 1.

    A 1e-9 slack makes decimal alphas behave as written (0.15 · 10 = 1.4999999999999998 → 2).
    """
    return max(1, min(m, int(math.floor(alpha * m + 0.5 + 1e-9))))


# ----------------------------------------------------------------------------- core


def _majority(P: np.ndarray, alpha: float) -> np.ndarray:
    """Kept patches ``(n, k, K)`` in majority order (see module docstring)."""
    n, m, _ = P.shape
    k = _kept_count(m, alpha)
    if k == m and alpha == 1.0:
        return P
    if P.shape[2] == 2:
        # The paper's binary rule, exactly: mean P(1) > 0.5 -> P(1) descending, else ascending
        # (≡ argmax with ties to class 0 -> P(0) descending, without the rounding of 1 − p).
        p1 = P[:, :, 1]
        key = np.where(p1.mean(axis=1, keepdims=True) > 0.5, p1, -p1)
    else:
        dominant = np.argmax(P.mean(axis=1), axis=1)  # (n,), ties -> lower class
        key = np.take_along_axis(P, dominant[:, None, None], axis=2)[:, :, 0]  # (n, m) P(ŷ)
    order = np.argsort(-key, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(P, order[:, :, None], axis=1)


def _worth(Pk: np.ndarray, lambda1: float, lambda2: float) -> np.ndarray:
    """Sum of R for every candidate of kept patches ``Pk`` (n, k, K), without building R."""
    n, k, _ = Pk.shape
    L = np.log(Pk + EPS)
    s_pl = np.einsum("nkc,nkc->n", Pk, L)  # Σ_j Σ_c p_jc L_jc
    total = np.zeros(n, dtype=np.float64)
    if lambda1:
        total -= lambda1 * s_pl
    if lambda2 and k > 1:
        # Σ_{j,l} Σ_c (p_jc − p_lc)(L_jc − L_lc) = 2 Σ_c [k Σ_j p_jc L_jc − (Σ_j p_jc)(Σ_j L_jc)]
        cross = np.einsum("nc,nc->n", np.einsum("nkc->nc", Pk), np.einsum("nkc->nc", L))
        div = 2.0 * (k * s_pl - cross)
        total += lambda2 * np.maximum(div, 0.0)  # ≥ 0 mathematically; clip rounding noise
    return total


def score_candidates(probs, method: str = "entropy+diversity", alpha: float = 1.0) -> np.ndarray:
    """Worth of every candidate (larger = more worth annotating).

    Args:
        probs: patch predictions, ``(n, m, K)`` softmax probabilities or ``(n, m)`` P(positive).
        method: one of ``METHODS``: ``"entropy"`` (λ1=1, λ2=0), ``"diversity"`` (0, 1) or
            ``"entropy+diversity"`` (1, 1).
        alpha: majority-selection ratio in (0, 1]; ``round(alpha · m)`` patches are kept.
            ``alpha=1`` and ``alpha=0.25`` give the paper's six methods.

    Returns:
        float64 array ``(n,)``.

    Example:
    >>> score_candidates([[0.4, 0.4, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6]]).round(2)
    array([11.9])
    """
    lambda1, lambda2 = _check_method(method)
    alpha = _check_alpha(alpha)
    P, _ = as_probs(probs)
    if P.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    return _worth(_majority(P, alpha), lambda1, lambda2)


def majority(probs, alpha: float = 1.0) -> np.ndarray:
    """Patch probabilities kept by majority selection, in majority order.

    Args:
        probs: ``(n, m, K)`` or ``(n, m)`` (P(positive)).
        alpha: ratio in (0, 1]; ``k = round(alpha · m)`` (half away from zero, at least 1).

    Returns:
        ``(n, k, K)`` for multi-class input, ``(n, k)`` P(positive) for binary input.

    Example:
    >>> majority([[0.9, 0.2, 0.8, 0.7]], alpha=0.5)   # mean 0.65 > 0.5: largest first
    array([[0.9, 0.8]])
    """
    alpha = _check_alpha(alpha)
    P, binary = as_probs(probs)
    kept = _majority(P, alpha)
    return kept[:, :, 1].copy() if binary else kept.copy()


def worth_matrix(p, lambda1: float = 1.0, lambda2: float = 1.0, alpha: float = 1.0) -> np.ndarray:
    """The explicit matrix R (Eq. 3 of the paper) of ONE candidate after majority selection.

    Args:
        p: one candidate's predictions, ``(m,)`` P(positive) or ``(m, K)``.
        lambda1: weight of the entropy (diagonal).
        lambda2: weight of the diversity (off-diagonal).
        alpha: majority-selection ratio in (0, 1].

    Returns:
        symmetric float64 ``(k, k)``; ``worth_matrix(p, ...).sum()`` is the candidate's worth.

    Example:
    >>> R = worth_matrix([0.0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.6, 0.7, 0.8, 1.0, 1.0], 1, 1, 0.25)
    >>> R.shape, round(float(R.sum()), 2)
    ((3, 3), 21.62)
    """
    check_number(lambda1, "lambda1")
    check_number(lambda2, "lambda2")
    alpha = _check_alpha(alpha)
    try:
        a = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise AiftError(f"p must be a numeric array, got {type(p).__name__} ({e})") from None
    if a.ndim not in (1, 2):
        raise AiftError(f"p must have shape (m,) or (m, K) for one candidate, got shape {a.shape}")
    P, _ = as_probs(a[None], name="p")
    Pk = _majority(P, alpha)[0]  # (k, K)
    L = np.log(Pk + EPS)
    # R_jl = Σ_c (p_jc − p_lc)(L_jc − L_lc) = Σ_c (p_jc − p_lc) log((p_jc+ε)/(p_lc+ε))
    R = lambda2 * ((Pk[:, None, :] - Pk[None, :, :]) * (L[:, None, :] - L[None, :, :])).sum(axis=2)
    np.fill_diagonal(R, lambda1 * -(Pk * L).sum(axis=1))
    return R


# ----------------------------------------------------------------------------- baselines


def baseline_scores(probs, method: str, seed: int | None = None) -> np.ndarray:
    """Classic active-learning scores on the candidate's mean prediction (larger = query first).

    Args:
        probs: ``(n, m, K)`` or ``(n, m)`` (P(positive)); the candidate prediction is the mean
            over its patches.
        method: one of ``BASELINES``: ``"random"`` (uniform draws from
            ``numpy.random.default_rng(seed)``), ``"least-confidence"`` (1 − max_k q_k),
            ``"margin"`` (−(top1 − top2): a small margin scores high) or ``"mean-entropy"``
            (−Σ_k q_k log q_k, natural log).
        seed: int or None, used by ``"random"`` only.

    Returns:
        float64 array ``(n,)``.

    Example:
    >>> baseline_scores([[0.5, 0.7], [0.9, 1.0]], "least-confidence").round(2)
    array([0.4 , 0.05])
    """
    if not isinstance(method, str) or method not in BASELINES:
        raise AiftError(f"unknown baseline {method!r}; valid baselines: {', '.join(BASELINES)}")
    P, _ = as_probs(probs)
    n = P.shape[0]
    if method == "random":
        return np.random.default_rng(seed).random(n)
    q = P.mean(axis=1)  # (n, K)
    if method == "least-confidence":
        return 1.0 - q.max(axis=1)
    if method == "margin":
        top2 = np.sort(q, axis=1)[:, -2:]
        return -(top2[:, 1] - top2[:, 0])
    safe = np.where(q > 0, q, 1.0)
    return -(q * np.log(safe)).sum(axis=1)


# ----------------------------------------------------------------------------- strategies


def _parse_number(strategy, text, what):
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError, OverflowError):  # OverflowError: 1e400
        raise AiftError(f"strategy {strategy!r}: {what} {text!r} is not a number") from None


def _parse_fields(strategy) -> tuple:
    """The grammar of a strategy string, once: ``(name, alpha, passes, prefilter)`` or a one-line AiftError."""
    if not isinstance(strategy, str):
        raise AiftError(f"strategy must be a string, got {strategy!r}")
    s = strategy.strip().lower()
    base, sep, param = s.partition("@")
    base = base.strip()
    valid = ", ".join(STRATEGIES)
    if base not in STRATEGIES:
        raise AiftError(f"unknown strategy {strategy!r}; valid strategies: {valid} "
                        f"(entropy/diversity methods may add @ALPHA, e.g. entropy+diversity@0.25; "
                        f"bald/mc-entropy @T passes, e.g. bald@10; aift+coreset @W, e.g. aift+coreset@3)")
    if base == "aift":
        if sep:
            raise AiftError(f"strategy {strategy!r}: aift is entropy+diversity@0.25 and takes no @ALPHA; "
                            f"write entropy+diversity@ALPHA instead")
        return base, AIFT_ALIAS[1], None, None
    if base in BASELINES or base == "coreset":
        if sep:
            raise AiftError(f"strategy {strategy!r}: {base} takes no @ parameter (@ALPHA applies only to "
                            f"{', '.join(METHODS)}, @T to {', '.join(MC_METHODS)}, @W to aift+coreset)")
        return base, None, None, None
    if base in MC_METHODS:
        if not sep:
            return base, None, DEFAULT_MC_PASSES, None
        t = _parse_number(strategy, param, "passes T")
        if t != int(t) or t < 2:
            raise AiftError(f"strategy {strategy!r}: passes T {param.strip()} must be an integer >= 2")
        return base, None, int(t), None
    if base == "aift+coreset":
        if not sep:
            return base, None, None, DEFAULT_PREFILTER
        w = _parse_number(strategy, param, "factor W")
        if not (math.isfinite(w) and w >= 1):
            raise AiftError(f"strategy {strategy!r}: factor W {param.strip()} must be >= 1")
        return base, None, None, w
    if not sep:
        return base, 1.0, None, None
    alpha = _parse_number(strategy, param, "alpha")
    if not 0.0 < alpha <= 1.0:
        raise AiftError(f"strategy {strategy!r}: alpha {param.strip()} is outside (0, 1]")
    return base, alpha, None, None


def _number_text(x) -> str:
    """A float as the shortest text that parses back to it exactly (``0.25``, ``3``, ``0.3333333333333333``)."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


@dataclasses.dataclass(frozen=True)
class Strategy:
    """A selection strategy, parsed once (:meth:`parse`) and then passed around as this object.

    Attributes:
        name: the strategy's name, one of :data:`STRATEGIES` (``"aift"`` stays ``"aift"``).
        alpha: majority-selection ratio in (0, 1] of ``entropy`` / ``diversity`` / ``entropy+diversity``
            (1 without ``@ALPHA``) and of ``aift`` (0.25); ``None`` for the others.
        passes: ``T`` of ``bald`` / ``mc-entropy`` (default :data:`DEFAULT_MC_PASSES`); else ``None``.
        prefilter: ``W`` of ``aift+coreset`` (default :data:`DEFAULT_PREFILTER`); else ``None``.

    ``str(strategy)`` is the canonical string (lower case, the parameter only where it differs from
    the default: ``"aift"``, ``"entropy@0.25"``, ``"bald"``, ``"aift+coreset@2"``), and
    ``Strategy.parse(str(s)) == s``. ω (randomised top-b) and the query size are not part of a
    strategy: they are arguments of the query.

    Example:
    >>> s = Strategy.parse("Entropy+Diversity@1/4")
    >>> s.method, s.alpha, s.needs_probs, str(s)
    ('entropy+diversity', 0.25, True, 'entropy+diversity@0.25')
    >>> Strategy.from_config(Strategy.parse("bald@20").get_config())
    Strategy(name='bald', alpha=None, passes=20, prefilter=None)
    """

    name: str
    alpha: Optional[float] = None
    passes: Optional[int] = None
    prefilter: Optional[float] = None

    def __post_init__(self):
        # A Strategy built field by field is checked through its canonical string: same grammar, same messages.
        name = self.name.strip().lower() if isinstance(self.name, str) else self.name
        if not isinstance(name, str) or name not in STRATEGIES:
            raise AiftError(f"unknown strategy {self.name!r}; valid strategies: {', '.join(STRATEGIES)}")
        defaults = _parse_fields(name)[1:]
        given = (self.alpha, self.passes, self.prefilter)
        for what, value, default in zip(("alpha", "passes", "prefilter"), given, defaults):
            if value is not None and default is None:
                raise AiftError(f"strategy {name!r} takes no {what}")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))):
                raise AiftError(f"strategy {name!r}: {what} {value!r} is not a number")
        want = tuple(d if v is None else v for v, d in zip(given, defaults))
        if name == "aift" and float(want[0]) != AIFT_ALIAS[1]:
            raise AiftError(f"strategy 'aift' is entropy+diversity@0.25 and takes no other alpha; got {want[0]!r} "
                            f"(use entropy+diversity@ALPHA)")
        for field, value in zip(("name", "alpha", "passes", "prefilter"), _parse_fields(_canonical(name, *want))):
            object.__setattr__(self, field, value)

    @classmethod
    def parse(cls, text) -> "Strategy":
        """The Strategy of a strategy string (case and surrounding spaces are ignored).

        Raises:
            AiftError: the string is not a strategy (the message names the valid ones).
        """
        fields = _parse_fields(text)
        self = object.__new__(cls)  # the fields are already checked: no second parse in __post_init__
        for field, value in zip(("name", "alpha", "passes", "prefilter"), fields):
            object.__setattr__(self, field, value)
        return self

    def __str__(self) -> str:
        return _canonical(self.name, self.alpha, self.passes, self.prefilter)

    # ------------------------------------------------------------------ what it is, what it needs
    @property
    def method(self) -> str:
        """The scoring method: ``"entropy+diversity"`` for ``aift``, else :attr:`name`."""
        return AIFT_ALIAS[0] if self.name == "aift" else self.name

    @property
    def parameter(self):
        """The one parameter (alpha, T, W) or None: the second item of :func:`parse_strategy`."""
        return next((v for v in (self.alpha, self.passes, self.prefilter) if v is not None), None)

    @property
    def needs(self) -> frozenset:
        """What a query needs from the model: a subset of ``{"probs", "mc", "features"}``
        (see :func:`strategy_needs`)."""
        if self.name == "random":
            return frozenset()
        if self.name in MC_METHODS:
            return frozenset({"mc"})
        if self.name == "coreset":
            return frozenset({"features"})
        if self.name == "aift+coreset":
            return frozenset({"probs", "features"})
        return frozenset({"probs"})

    @property
    def needs_probs(self) -> bool:
        """Whether the query needs the model's patch probabilities over the pool."""
        return "probs" in self.needs

    @property
    def needs_mc(self) -> bool:
        """Whether the query needs :attr:`passes` stochastic (MC-dropout) passes over the pool."""
        return self.name in MC_METHODS

    @property
    def needs_features(self) -> bool:
        """Whether the query needs candidate features (k-center strategies)."""
        return self.name in BATCH_METHODS

    @property
    def is_random(self) -> bool:
        """Whether the strategy ranks by a seeded uniform draw (``random``), not by the model."""
        return self.name == "random"

    @property
    def is_batch(self) -> bool:
        """Whether the strategy is a batch rule (k-center greedy), not a score per candidate."""
        return self.name in BATCH_METHODS

    # ------------------------------------------------------------------ configuration
    def get_config(self) -> dict:
        """The fields as a JSON-able dict; :meth:`from_config` builds the same Strategy."""
        return {"name": self.name, "alpha": self.alpha, "passes": self.passes, "prefilter": self.prefilter}

    @classmethod
    def from_config(cls, config: dict) -> "Strategy":
        """The Strategy of :meth:`get_config`'s dict (checked as a parsed string is)."""
        if not isinstance(config, dict):
            raise AiftError(f"a strategy config must be a dict, got {type(config).__name__}")
        known = ("name", "alpha", "passes", "prefilter")
        for key in config:
            if key not in known:
                raise AiftError(f"unknown strategy config key {key!r}; valid: {', '.join(known)}")
        if "name" not in config:
            raise AiftError("a strategy config needs a 'name'")
        return cls(**config)


def _canonical(name, alpha, passes, prefilter) -> str:
    """The canonical string of a strategy's fields (see :class:`Strategy`)."""
    if name in METHODS and alpha is not None and float(alpha) != 1.0:
        return f"{name}@{_number_text(alpha)}"
    if name in MC_METHODS and passes is not None and passes != DEFAULT_MC_PASSES:
        return f"{name}@{passes}" if isinstance(passes, (int, np.integer)) else f"{name}@{_number_text(passes)}"
    if name == "aift+coreset" and prefilter is not None and float(prefilter) != DEFAULT_PREFILTER:
        return f"{name}@{_number_text(prefilter)}"
    return name


#: the AIFT strategy (``entropy+diversity@0.25``), e.g. the worth that ``aift+coreset`` prefilters by
AIFT = Strategy.parse("aift")


def as_strategy(strategy) -> Strategy:
    """``strategy`` as a :class:`Strategy`: a Strategy is returned as it is, a string is parsed (once).

    Example:
    >>> as_strategy("aift") is not None and as_strategy(AIFT) is AIFT
    True
    """
    if isinstance(strategy, Strategy):
        return strategy
    return Strategy.parse(strategy)


def parse_strategy(strategy) -> tuple[str, float | int | None]:
    """Split a strategy string into ``(method, parameter)`` (the tuple form of :class:`Strategy`).

    * ``"entropy"``, ``"diversity"`` and ``"entropy+diversity"`` may carry ``"@ALPHA"`` (a decimal or a
      fraction: ``"entropy@0.25"``, ``"diversity@1/4"``); without it alpha is 1. ``"aift"`` is
      ``"entropy+diversity@0.25"``.
    * ``"bald"`` and ``"mc-entropy"`` may carry ``"@T"``, the number of stochastic (MC-dropout) passes,
      an integer >= 2 (default :data:`DEFAULT_MC_PASSES`).
    * ``"aift+coreset"`` may carry ``"@W"`` >= 1: k-center greedy runs among the top ``W·query_size``
      candidates by AIFT worth (default :data:`DEFAULT_PREFILTER`).
    * Baselines (``BASELINES``) and ``"coreset"`` take no parameter and return ``None``.

    Args:
        strategy: the strategy string (case and surrounding spaces are ignored), or a :class:`Strategy`.

    Returns:
        ``(method, parameter)``: alpha (float), T (int), W (float) or None.

    Example:
    >>> parse_strategy("entropy+diversity@1/4"), parse_strategy("bald@20")
    (('entropy+diversity', 0.25), ('bald', 20))
    """
    s = as_strategy(strategy)
    return s.method, s.parameter


def strategy_needs(strategy) -> frozenset:
    """What a strategy's query needs from the model: a subset of ``{"probs", "mc", "features"}``.

    ``"probs"``: patch probabilities ``(n, m, K)`` of the unlabeled pool; ``"mc"``: ``T`` stochastic
    passes ``(T, n, m, K)``; ``"features"``: candidate features ``(n, d)`` of the pool and of the labeled
    set (the k-center's initial centers). ``random`` needs nothing. (:attr:`Strategy.needs`.)

    Example:
    >>> sorted(strategy_needs("aift+coreset"))
    ['features', 'probs']
    """
    return as_strategy(strategy).needs


def strategy_scores(probs, strategy, seed: int | None = None) -> np.ndarray:
    """Scores for a strategy (a string or a :class:`Strategy`) as used by the harness.

    Args:
        probs: ``(n, m, K)`` or ``(n, m)``.
        strategy: e.g. ``"aift"``, ``"entropy@0.25"``, ``"entropy+diversity"``, ``"margin"``.
        seed: used by ``"random"``.

    Returns:
        float64 ``(n,)``, larger = more worth querying.

    Example:
    >>> strategy_scores([[0.4, 0.4, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6]], "aift").round(2)
    array([2.02])
    """
    return _strategy_scores(probs, as_strategy(strategy), seed)


def _strategy_scores(probs, strategy: Strategy, seed) -> np.ndarray:
    """:func:`strategy_scores` of a parsed Strategy."""
    if strategy.needs_mc:
        return mc_scores(probs, strategy.method)
    if strategy.is_batch:
        raise AiftError(f"strategy {str(strategy)!r} is a batch rule (k-center greedy on candidate features), not "
                        f"a score per candidate; use select_batch")
    if strategy.alpha is None:
        return baseline_scores(probs, strategy.method, seed=seed)
    return score_candidates(probs, strategy.method, strategy.alpha)

# ----------------------------------------------------------------------------- MC dropout


def _entropy(q: np.ndarray) -> np.ndarray:
    """Natural-log entropy over the last axis, 0·log 0 = 0."""
    return -(q * np.log(np.where(q > 0, q, 1.0))).sum(axis=-1)


def mc_scores(mc_probs, method: str = "bald") -> np.ndarray:
    """BALD or MC-dropout entropy of every candidate from ``T`` stochastic passes.

    The candidate prediction of pass t is the mean of its patches' probabilities, ``q_t`` (n, K) (the
    candidate prediction used everywhere in aift_tf); ``p̄ = mean_t q_t``.

    * ``"mc-entropy"``: ``H(p̄)``, the entropy of the MC-averaged prediction (max-entropy);
    * ``"bald"``: ``H(p̄) − mean_t H(q_t)``, the mutual information between the prediction and the
      model's weights (Houlsby et al. 2011; Gal, Islam & Ghahramani, ICML 2017).

    Natural logarithm, ``0 · log 0 = 0``.

    Args:
        mc_probs: ``(T, n, m, K)`` softmax probabilities or ``(T, n, m)`` P(positive), T >= 1.
        method: ``"bald"`` or ``"mc-entropy"``.

    Returns:
        float64 ``(n,)``, larger = query first.

    Example:
    >>> mc = [[[0.9]], [[0.1]]]            # two passes that disagree completely on one candidate
    >>> mc_scores(mc, "bald").round(3), mc_scores(mc, "mc-entropy").round(3)
    (array([0.368]), array([0.693]))
    """
    if not isinstance(method, str) or method not in MC_METHODS:
        raise AiftError(f"unknown MC method {method!r}; valid: {', '.join(MC_METHODS)}")
    try:
        a = np.asarray(mc_probs, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise AiftError(f"mc_probs must be a numeric array, got {type(mc_probs).__name__} ({e})") from None
    if a.ndim not in (3, 4) or a.shape[0] < 1:
        raise AiftError(f"mc_probs must have shape (T, n, m) or (T, n, m, K), got shape {a.shape}")
    T, n = a.shape[0], a.shape[1]
    P, _ = as_probs(a.reshape((T * n,) + a.shape[2:]), name="mc_probs")
    q = P.mean(axis=1).reshape(T, n, -1)  # (T, n, K) candidate predictions per pass
    h_mean = _entropy(q.mean(axis=0))
    if method == "mc-entropy":
        return h_mean
    return np.maximum(h_mean - _entropy(q).mean(axis=0), 0.0)  # >= 0 (Jensen); clip rounding noise


# ----------------------------------------------------------------------------- query


def as_scores(scores) -> np.ndarray:
    """``scores`` as a float64 (n,) array; a one-line AiftError for non-numeric or non-1-D input."""
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise AiftError(f"scores must be a numeric array, got {type(scores).__name__}") from None
    if s.ndim != 1:
        raise AiftError(f"scores must have shape (n,), got shape {s.shape}")
    return s


def _finite_scores(scores) -> np.ndarray:
    """:func:`as_scores`, refusing a non-finite score with its value and index."""
    s = as_scores(scores)
    bad = ~np.isfinite(s)
    if bad.any():
        i = int(np.argmax(bad))
        raise AiftError(f"scores contain non-finite value {s[i]} at index {i}")
    return s


def _check_cap(groups, max_per_group, n: int):
    """Validated ``(groups (n,) int64, K)`` or ``(None, None)`` without a cap."""
    if max_per_group is None:
        return None, None
    k = check_int(max_per_group, "max_per_group", 1)
    if groups is None:
        raise AiftError("max_per_group needs the candidates' groups")
    try:
        g = np.asarray(groups)
        if not np.issubdtype(g.dtype, np.integer):
            raise TypeError
    except TypeError:
        raise AiftError(f"groups must be integers, got {np.asarray(groups).dtype}") from None
    if g.shape != (n,):
        raise AiftError(f"groups has shape {g.shape}, expected ({n},) (one per candidate)")
    return g.astype(np.int64), k


def _cap_short(query_size, k, groups, taken) -> AiftError:
    return AiftError(f"max_per_group {k}: only {taken} of the {query_size} candidates asked can be taken from the "
                     f"{np.unique(groups).size} groups of the pool")


def _weighted_positions(weight, k, rng, uniform: bool) -> np.ndarray:
    """``k`` positions drawn without replacement ∝ ``weight`` (the journal's rule, see :func:`select`)."""
    w = weight.shape[0]
    if uniform:
        return rng.choice(w, size=k, replace=False)
    nonzero = np.flatnonzero(weight > 0)
    if nonzero.size >= k:
        return rng.choice(w, size=k, replace=False, p=weight / weight.sum())
    rest = np.flatnonzero(weight <= 0)
    fill = rng.choice(rest, size=k - nonzero.size, replace=False)
    return np.concatenate([nonzero, fill])


def select(scores, query_size: int | None = None, omega: float = 1.0, seed: int | None = None, groups=None,
           max_per_group: int | None = None, *, b: int | None = None) -> np.ndarray:
    """Indices of the ``query_size`` candidates to query.

    ``omega = 1``: the top ``query_size`` (b) by worth (stable: equal worth → lower index first).

    ``omega > 1`` (journal randomisation): keep the top ``w = min(ceil(omega · b), n)``;
    rescale their worth ``a' = (a − a_w) / (a_1 − a_w)`` (``a_1`` the largest, ``a_w`` the
    smallest kept) and draw ``b`` of them without replacement with probability ∝ ``a'``
    (``numpy.random.default_rng(seed)``). Degenerate cases: if all kept worths are equal the draw
    is uniform; the smallest kept items have ``a' = 0`` and so are never drawn by the weighted
    draw — when fewer than ``b`` kept items have ``a' > 0``, all of those are taken and the rest
    are drawn uniformly from the remaining kept items.

    ``max_per_group = K`` (with ``groups``): no more than K candidates of one group. With ``omega = 1``
    the worth order is walked and a candidate whose group already has K is skipped. With ``omega > 1``
    the draw above is made; drawn candidates beyond a group's K are dropped (in worth order) and the
    missing ones drawn again from the kept candidates of the other groups, then, if the kept ones run
    out, taken from the rest of the pool in worth order. A cap that binds nowhere returns exactly
    the uncapped selection.

    Args:
        scores: ``(n,)`` finite worth, larger = better.
        query_size: how many to pick (b of the papers), 1 ≤ query_size ≤ n. ``b=`` is a deprecated alias.
        omega: randomisation factor ≥ 1.
        seed: int or None.
        groups: ``(n,)`` integer group of every candidate (video, volume, patient); needed with a cap.
        max_per_group: K ≥ 1, or None (no cap).

    Returns:
        int64 ``(query_size,)`` indices into ``scores``, ordered by decreasing worth.

    Raises:
        AiftError: bad input, or the cap cannot be met (fewer than ``query_size`` candidates allowed).

    Example:
    >>> select([0.1, 0.9, 0.5, 0.9], 2)
    array([1, 3])
    >>> select([0.1, 0.9, 0.5, 0.9], 2, groups=[0, 1, 0, 1], max_per_group=1)
    array([1, 2])
    """
    s = _finite_scores(scores)
    n = s.shape[0]
    query_size = check_int(_query_size(query_size, b, "select"), "budget", 1)
    if query_size > n:
        raise AiftError(f"budget {query_size} is larger than the pool of {n} candidates")
    check_number(omega, "omega", low=1)
    return _select(s, query_size, omega, seed, groups, max_per_group)


def _select(scores, query_size: int, omega: float, seed, groups, max_per_group) -> np.ndarray:
    """:func:`select` with ``query_size`` (1..n) and ``omega`` (>= 1) already checked by the caller."""
    s = _finite_scores(scores)
    n = s.shape[0]
    groups, cap = _check_cap(groups, max_per_group, n)
    order = np.argsort(-s, kind="stable")
    w = min(n, math.ceil(float(omega) * query_size - 1e-9))
    if w <= query_size:
        if cap is None:
            return order[:query_size].astype(np.int64)
        return _cap_walk(order, groups, cap, query_size, np.zeros(0, np.int64))

    rng = np.random.default_rng(seed)
    kept = order[:w]
    a = s[kept]
    a1, aw = a[0], a[-1]
    uniform = bool(a1 == aw)
    weight = np.ones(w) if uniform else (a - aw) / (a1 - aw)
    pos = _weighted_positions(weight, query_size, rng, uniform)
    if cap is None:
        return kept[np.sort(pos)].astype(np.int64)
    # capped: keep the drawn ones that fit (in worth order), draw again among the kept ones still allowed
    taken = []
    counts: dict = {}
    avail = np.ones(w, dtype=bool)
    while True:
        for p in np.sort(pos):
            avail[p] = False
            g = int(groups[kept[p]])
            if counts.get(g, 0) < cap and len(taken) < query_size:
                taken.append(p)
                counts[g] = counts.get(g, 0) + 1
        full = np.array([counts.get(int(g), 0) >= cap for g in groups[kept]])
        avail &= ~full
        cand = np.flatnonzero(avail)
        if len(taken) >= query_size or cand.size == 0:
            break
        k = min(query_size - len(taken), cand.size)
        pos = cand[_weighted_positions(weight[cand], k, rng, uniform)]
    picked = kept[np.sort(np.asarray(taken, dtype=np.int64))]
    if picked.size < query_size:  # the kept set ran out: the rest of the pool in worth order
        picked = _cap_walk(order[w:], groups, cap, query_size, picked)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        picked = picked[np.argsort(rank[picked])]
    return picked.astype(np.int64)


def _cap_walk(order, groups, cap, query_size, already) -> np.ndarray:
    """``already`` plus candidates of ``order`` (a priority order) whose group has fewer than ``cap``
    picks, until ``query_size`` are taken (AiftError when the order runs out)."""
    counts: dict = {}
    for i in already.tolist():
        counts[int(groups[i])] = counts.get(int(groups[i]), 0) + 1
    out = list(already.tolist())
    for i in order.tolist():
        if len(out) >= query_size:
            break
        g = int(groups[i])
        if counts.get(g, 0) < cap:
            out.append(i)
            counts[g] = counts.get(g, 0) + 1
    if len(out) < query_size:
        raise _cap_short(query_size, cap, groups, len(out))
    return np.asarray(out, dtype=np.int64)


# ----------------------------------------------------------------------------- k-center (core-set)


def _as_features(x, name: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise AiftError(f"{name} must be a numeric array, got {type(x).__name__}") from None
    if a.ndim != 2:
        raise AiftError(f"{name} must have shape (n, d), got shape {a.shape}")
    if a.size and not np.all(np.isfinite(a)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise AiftError(f"{name} contain non-finite value {a[idx]} at index {idx}")
    return a


def _min_sq_dist(x: np.ndarray, centers: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Squared Euclidean distance of every row of ``x`` to its nearest row of ``centers`` (inf if none)."""
    out = np.full(x.shape[0], np.inf)
    xx = np.einsum("nd,nd->n", x, x)
    for a in range(0, centers.shape[0], chunk):
        c = centers[a:a + chunk]
        d = xx[:, None] - 2.0 * x @ c.T + np.einsum("kd,kd->k", c, c)[None, :]
        np.minimum(out, d.min(axis=1), out=out)
    return np.maximum(out, 0.0)


def kcenter_greedy(features, query_size: int | None = None, centers=None, seed: int | None = None, groups=None,
                   max_per_group: int | None = None, *, b: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """k-center greedy (Sener & Savarese, ICLR 2018): ``query_size`` candidates that cover ``features`` best.

    Start from ``centers`` (the labeled set); repeatedly take the candidate farthest (Euclidean) from
    its nearest center and make it a center. Ties → the lower index. Without centers, the first pick is
    drawn uniformly with ``numpy.random.default_rng(seed)``. With ``max_per_group = K``, a candidate
    whose group already has K picks is no longer eligible.

    Args:
        features: ``(n, d)`` candidate features (e.g. trunk features pooled per candidate).
        query_size: picks, 1 ≤ query_size ≤ n (``b=`` is a deprecated alias).
        centers: ``(l, d)`` features of the already labeled candidates, or None.
        seed: seeds the first pick when there is no center.
        groups, max_per_group: optional group cap (see :func:`select`).

    Returns:
        ``(indices, radius)``: int64 ``(query_size,)`` indices into ``features`` in pick order, and float64
        ``(query_size,)`` the distance of each pick to its nearest center when picked (non-increasing but for
        the cap; ``nan`` for a seeded first pick).

    Example:
    >>> kcenter_greedy([[0.0], [1.0], [5.0], [9.0]], 2, centers=[[0.0]])[0]
    array([3, 2])
    """
    x = _as_features(features, "features")
    query_size = check_int(_query_size(query_size, b, "kcenter_greedy"), "budget", 1, x.shape[0])
    return _kcenter_greedy(x, query_size, centers, seed, groups, max_per_group)


def _kcenter_greedy(x: np.ndarray, query_size: int, centers, seed, groups, max_per_group):
    """:func:`kcenter_greedy` of checked features ``x`` (n, d) and a checked ``query_size`` (1..n)."""
    n = x.shape[0]
    groups, cap = _check_cap(groups, max_per_group, n)
    if centers is not None:
        c = _as_features(centers, "centers")
        if c.shape[0] and c.shape[1] != x.shape[1]:
            raise AiftError(f"centers have {c.shape[1]} features, candidates {x.shape[1]}")
        dist = _min_sq_dist(x, c)
    else:
        dist = np.full(n, np.inf)
    eligible = np.ones(n, dtype=bool)
    counts: dict = {}
    picks, radius = [], []
    for _ in range(query_size):
        cand = np.flatnonzero(eligible)
        if cand.size == 0:
            raise _cap_short(query_size, cap, groups, len(picks))
        if np.isinf(dist[cand]).all():
            i = int(cand[np.random.default_rng(seed).integers(cand.size)])
            r = float("nan")
        else:
            i = int(cand[np.argmax(dist[cand])])  # argmax: first of the ties = lower index
            r = float(np.sqrt(dist[i]))
        picks.append(i)
        radius.append(r)
        eligible[i] = False
        dist = np.minimum(dist, _min_sq_dist(x, x[i:i + 1]))
        if cap is not None:
            g = int(groups[i])
            counts[g] = counts.get(g, 0) + 1
            if counts[g] >= cap:
                eligible &= groups != g
    return np.asarray(picks, dtype=np.int64), np.asarray(radius, dtype=np.float64)


def select_batch(strategy, query_size: int | None = None, *, n: int | None = None, probs=None, mc_probs=None,
                 features=None, centers=None, omega: float = 1.0, seed: int | None = None, groups=None,
                 max_per_group: int | None = None, checked: bool = False,
                 b: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One query of any strategy: ``(indices, scores)`` of the ``query_size`` candidates to label.

    Give what :attr:`Strategy.needs` names: ``probs`` ``(n, m, K)``, ``mc_probs`` ``(T, n, m, K)`` or
    ``features`` ``(n, d)`` with ``centers`` ``(l, d)`` (the labeled set). Score strategies rank by
    :func:`strategy_scores` and pick with :func:`select` (ω, group cap); ``coreset`` is
    :func:`kcenter_greedy` over the pool (scores = the pick's distance to its nearest center);
    ``aift+coreset@W`` keeps the top ``min(n, ceil(W·query_size))`` by AIFT worth and runs k-center greedy
    among them (scores = their AIFT worth). ω does not apply to the k-center strategies (a greedy batch
    rule, not a ranking). ``random`` needs only ``n``.

    Args:
        strategy: a :class:`Strategy`, or a strategy string (parsed here, once).
        query_size: candidates to pick (``b=`` is a deprecated alias).
        n: pool size (for ``random``; otherwise taken from the arrays).
        probs, mc_probs, features, centers: the model's outputs on the pool (see above).
        omega, seed: randomised top-b (score strategies) and the random draws.
        groups, max_per_group: optional group cap.
        checked: True when the caller has already checked ``query_size`` (an int in 1..n) and ``omega``
            (>= 1), as ``ActiveLearner.query`` does: they are then not checked again.

    Returns:
        ``(indices, scores)``: int64 indices into the pool arrays and float64 scores of the picks.

    Example:
    >>> idx, _ = select_batch("coreset", 1, features=[[0.0], [3.0]], centers=[[0.0]])
    >>> idx
    array([1])
    """
    return _select_batch(as_strategy(strategy), _query_size(query_size, b, "select_batch"), n=n, probs=probs,
                         mc_probs=mc_probs, features=features, centers=centers, omega=omega, seed=seed,
                         groups=groups, max_per_group=max_per_group, checked=checked)


def _select_batch(strategy: Strategy, query_size, *, n=None, probs=None, mc_probs=None, features=None,
                  centers=None, omega=1.0, seed=None, groups=None, max_per_group=None,
                  checked: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`select_batch` of a parsed Strategy (``checked``: see there)."""
    for key, value in (("probs", probs), ("mc", mc_probs), ("features", features)):
        if key in strategy.needs and value is None:
            raise AiftError(f"strategy {str(strategy)!r} needs {'mc_probs' if key == 'mc' else key}")
    if strategy.name == "coreset":
        if not checked:
            return kcenter_greedy(features, query_size, centers=centers, seed=seed, groups=groups,
                                  max_per_group=max_per_group)
        return _kcenter_greedy(_as_features(features, "features"), query_size, centers, seed, groups, max_per_group)
    if strategy.name == "aift+coreset":
        worth = _strategy_scores(probs, AIFT, None)
        x = _as_features(features, "features")
        if x.shape[0] != worth.shape[0]:
            raise AiftError(f"features have {x.shape[0]} rows for {worth.shape[0]} candidates")
        if not checked:
            query_size = check_int(query_size, "budget", 1, worth.shape[0])
        order = np.argsort(-worth, kind="stable")
        top = order[:min(worth.shape[0], math.ceil(float(strategy.prefilter) * query_size - 1e-9))]
        g, cap = _check_cap(groups, max_per_group, worth.shape[0])
        if cap is not None and _allowed(g[top], cap) < query_size:
            top = order  # the top W·query_size cannot fill query_size under the cap: widen to the whole pool
        sub, _ = _kcenter_greedy(x[top], query_size, centers, seed, None if cap is None else g[top], cap)
        idx = top[sub]
        return idx.astype(np.int64), worth[idx]
    if strategy.is_random:
        size = n if n is not None else next((np.asarray(a).shape[0] for a in (probs, features) if a is not None), None)
        if size is None:
            raise AiftError("strategy 'random' needs the pool size n")
        scores = _strategy_scores(np.zeros((int(size), 1)), strategy, seed)
    elif strategy.needs_mc:
        scores = mc_scores(mc_probs, strategy.method)
    else:
        scores = _strategy_scores(probs, strategy, seed)
    if checked:
        idx = _select(scores, query_size, omega, seed, groups, max_per_group)
    else:
        idx = select(scores, query_size, omega=omega, seed=seed, groups=groups, max_per_group=max_per_group)
    return idx, scores[idx]


def _query_size(query_size, b, where: str):
    """``query_size``, or the value of its deprecated alias ``b`` (with a DeprecationWarning)."""
    if b is None:
        return query_size
    if query_size is not None:
        raise TypeError(f"{where}() got both query_size and its deprecated alias b")
    warnings.warn(f"{where}(b=...) is deprecated; use query_size=...", DeprecationWarning, stacklevel=3)
    return b


def _allowed(groups, cap) -> int:
    """How many candidates a cap of ``cap`` per group allows at most."""
    _, counts = np.unique(groups, return_counts=True)
    return int(np.minimum(counts, cap).sum())


# ----------------------------------------------------------------------------- cold start


def cold_start(pool_ids, oracle, seed: int, minimum: int = 0, per_class: int = 2, num_classes: int = 2) -> np.ndarray:
    """The first labels of an AIFT run: candidates drawn at random until every class has labels.

    A pre-trained M0 comes with a *new* classification head; fine-tuned on a labeled set that lacks a
    class, that head learns one class and ranks the pool arbitrarily (or inversely). So the run starts
    with random draws, in a seeded order, until every class has ``per_class`` labels and at least
    ``minimum`` candidates are drawn; every draw counts as a label spent.

    Args:
        pool_ids: ``(n,)`` candidate ids of the unlabeled pool.
        oracle: ``(n,)`` their labels (the annotator's answers, read one draw at a time), or a
            callable ``id -> label`` asked in draw order.
        seed: seeds the draw order (a simulation's paired seed: every strategy shares the set).
        minimum: draw at least this many.
        per_class: labels every class needs.
        num_classes: K.

    Returns:
        int64 ids in draw order.

    Raises:
        AiftError: the pool cannot satisfy the rule (a class with fewer than ``per_class`` candidates).

    Example:
    >>> ids = cold_start([10, 11, 12, 13, 14, 15], [0, 1, 0, 1, 0, 1], seed=0)
    >>> len(ids) >= 4
    True
    """
    pool_ids = np.asarray(pool_ids, dtype=np.int64).ravel()
    order = np.random.default_rng([int(seed), 7919]).permutation(pool_ids.size)
    ask = oracle if callable(oracle) else None
    labels = None if ask is not None else np.asarray(oracle, dtype=np.int64).ravel()
    if labels is not None and labels.shape != pool_ids.shape:
        raise AiftError(f"oracle has {labels.size} labels for {pool_ids.size} pool ids")
    seen = np.zeros(int(num_classes), dtype=np.int64)
    need = None
    for k, i in enumerate(order, start=1):
        y = int(ask(int(pool_ids[i])) if ask is not None else labels[i])
        if not 0 <= y < num_classes:
            raise AiftError(f"label {y} of candidate {int(pool_ids[i])} is outside the classes 0..{num_classes - 1}")
        seen[y] += 1
        if k >= minimum and seen.min() >= per_class:
            need = k
            break
    if need is None:
        short = int(np.argmin(seen))
        raise AiftError(f"the pool has {int(seen[short])} candidate(s) of class {short}; the cold start needs "
                        f"{per_class} of every class")
    return pool_ids[order[:need]]
