"""Bootstrap confidence intervals: one-sample, two-sample, paired and clustered; vectorised and seeded.

Definitions (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993):
- percentile interval: the alpha/2 and 1-alpha/2 quantiles (linear interpolation) of the B resampled
  statistics (chapter 13);
- BCa: the quantiles at ndtr(z0 + (z0 + z)/(1 - a (z0 + z))) with z0 = ndtri(share of replicates below the
  estimate, ties counted half) and the acceleration a from the jackknife (eq. 14.15; several samples:
  eq. 15.36). For the same Generator and sizes the draws and the numbers equal `scipy.stats.bootstrap`'s
  (tests check this), which is what the hand-written code here is held to.
- studentized (bootstrap-t, Efron & Tibshirani ch. 12; Davison & Hinkley 1997, section 5.2.1): with
  t* = (est* - est) / se* over the resamples, [est - q(1 - alpha/2) se, est - q(alpha/2) se] with q the
  quantiles (linear) of t* and se the standard error on the data. It corrects most of the undercoverage
  that skewness causes in percentile intervals of a mean at small n (docs/statistics.md, "Coverage");
  `paired_bootstrap` uses it for means of fewer than 50 units.
- clustered: whole clusters are resampled, not rows (Davison & Hinkley 1997, section 3.8); two crossed
  cluster columns (items x raters) use the pigeonhole bootstrap (Owen 2007, Ann. Appl. Stat. 1(2)): items
  and raters are resampled independently and a row's weight is the product of its item's and rater's counts.

Every result reports the number of resamples and `drift`: the largest change of an interval end between the
interval computed from the first half of the resamples and from the second half. A drift that is large next
to the interval width means more resamples are needed.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from ._checks import StatsInputError, as_generator, as_sample, check_confidence, check_frame, check_units

__all__ = [
    "BootstrapResult",
    "bootstrap_ci",
    "two_sample_bootstrap",
    "paired_bootstrap",
    "clustered_bootstrap",
    "bootstrap_interval",
    "studentized_interval",
    "resample_counts",
]

METHODS = ("percentile", "bca")
PAIRED_METHODS = ("percentile", "bca", "studentized", "auto")
# "auto" in paired_bootstrap: the studentized interval of a mean below this many resampled units.
STUDENTIZED_BELOW = 50
# Elements of the index matrices drawn at once (int64, 2 MiB): bounds memory at any n x n_resamples, and
# cache-sized chunks ran faster than larger ones (these draws are memory-bound).
_CHUNK_ELEMENTS = 1 << 18


@dataclass(frozen=True)
class BootstrapResult:
    """A bootstrap interval. `estimate` is the statistic on the data; `low`/`high` the interval ends at
    `confidence`; `se` the standard deviation (ddof=1) of the replicates; `drift` how far the ends moved
    between the intervals of the first and the second half of the `n_resamples` replicates.

    Attributes:
        estimate: the statistic on the original data, in the statistic's units.
        low: lower interval end, same units as `estimate`.
        high: upper interval end, same units as `estimate`.
        confidence: two-sided confidence level in (0, 1), e.g. 0.95.
        method: the interval actually computed: "percentile", "bca" or "studentized".
        n_resamples: number of bootstrap replicates B.
        drift: largest absolute change of an interval end between the intervals from the first and the second
            half of the replicates; NaN when B < 4 (halves too small), +inf when a studentized half-interval is
            unbounded.
        se: standard deviation (ddof=1) of the estimate replicates, in the statistic's units.
        replicates: `(B,)` float64 estimate replicates (empty when not kept); left out of repr, equality and
            `as_dict`.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    n_resamples: int
    drift: float
    se: float
    replicates: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty(0))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (without the replicates).

        Returns:
            Dict with keys estimate, low, high, confidence, drift, se (Python floats, NaN/inf kept as such),
            method (str) and n_resamples (int).
        """
        return {
            "estimate": float(self.estimate),
            "low": float(self.low),
            "high": float(self.high),
            "confidence": float(self.confidence),
            "method": self.method,
            "n_resamples": int(self.n_resamples),
            "drift": float(self.drift),
            "se": float(self.se),
        }


# --------------------------------------------------------------------------------------------- interval core
def _quantile_sorted(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """np.quantile(method="linear") of an already sorted 1-D array (one sort serves several calls)."""
    h = (x.size - 1) * np.asarray(q, dtype=np.float64)
    lo = np.clip(np.floor(h).astype(np.int64), 0, x.size - 1)
    hi = np.minimum(lo + 1, x.size - 1)
    t = h - lo
    a, b = x[lo], x[hi]
    return np.where(t < 0.5, a + (b - a) * t, b - (b - a) * (1.0 - t))


def _interval_from(reps: np.ndarray, estimate: float, confidence: float, method: str, accel: float) -> tuple[float, float]:
    """Interval ends from replicates `reps` (sorted ascending)."""
    alpha = (1.0 - confidence) / 2.0
    if method == "percentile":
        q = np.array([alpha, 1.0 - alpha])
    else:
        below = np.searchsorted(reps, estimate, side="left") + np.searchsorted(reps, estimate, side="right")
        share = below / (2.0 * reps.size)
        z0 = ndtri(share)
        if not np.isfinite(z0):
            raise StatsInputError(
                "the BCa interval is undefined: every replicate lies on one side of the estimate "
                "(a degenerate bootstrap distribution); use method='percentile'"
            )
        z = ndtri(np.array([alpha, 1.0 - alpha]))
        num = z0 + z
        q = ndtr(z0 + num / (1.0 - accel * num))
        if not np.all(np.isfinite(q)):
            raise StatsInputError(
                "the BCa interval is undefined: every replicate lies on one side of the estimate "
                "(a degenerate bootstrap distribution); use method='percentile'"
            )
    lo, hi = _quantile_sorted(reps, q)
    return float(lo), float(hi)


def bootstrap_interval(
    replicates: np.ndarray,
    estimate: float,
    *,
    confidence: float = 0.95,
    method: str = "percentile",
    acceleration: float = 0.0,
) -> BootstrapResult:
    """A `BootstrapResult` from precomputed replicates `(B,)` (B >= 2) and the estimate on the data.

    For method="bca" pass the jackknife `acceleration` (see module docstring). Used by every bootstrap of the
    package (Bradley-Terry intervals included), so all report interval, se and drift the same way.

    Args:
        replicates: `(B,)` statistic values on the bootstrap resamples (any shape; flattened, read as float64),
            all finite, B >= 2.
        estimate: the statistic on the original data.
        confidence: two-sided confidence level in (0, 1). Default 0.95.
        method: "percentile" (default) or "bca".
        acceleration: BCa acceleration a; ignored by "percentile". Default 0.0 (bias correction only).

    Returns:
        A `BootstrapResult` holding the flattened replicates; its `drift` is NaN when B < 4.

    Raises:
        StatsInputError: `confidence` is outside (0, 1); `method` is unknown; fewer than 2 replicates; a
            replicate is not finite; or (BCa) every replicate lies on one side of the estimate.
    """
    confidence = check_confidence(confidence)
    if method not in METHODS:
        raise StatsInputError(f"method must be one of {METHODS}, got {method!r}")
    reps = np.asarray(replicates, dtype=np.float64).ravel()
    if reps.size < 2:
        raise StatsInputError(f"need at least 2 bootstrap replicates, got {reps.size}")
    if not np.all(np.isfinite(reps)):
        raise StatsInputError(
            f"{int(np.count_nonzero(~np.isfinite(reps)))} of {reps.size} bootstrap replicates are not finite "
            "(the statistic is undefined on some resamples)"
        )
    estimate = float(estimate)
    lo, hi = _interval_from(np.sort(reps), estimate, confidence, method, acceleration)
    half = reps.size // 2
    if half >= 2:
        a = _interval_from(np.sort(reps[:half]), estimate, confidence, method, acceleration)
        b = _interval_from(np.sort(reps[half:]), estimate, confidence, method, acceleration)
        drift = max(abs(a[0] - b[0]), abs(a[1] - b[1]))
    else:
        drift = float("nan")
    return BootstrapResult(
        estimate=estimate,
        low=lo,
        high=hi,
        confidence=confidence,
        method=method,
        n_resamples=int(reps.size),
        drift=float(drift),
        se=float(np.std(reps, ddof=1)),
        replicates=reps,
    )


def _t_quantiles(t_sorted: np.ndarray, q: np.ndarray) -> np.ndarray:
    """`_quantile_sorted` for t-replicates that may hold +-inf: an end whose interpolation touches an
    infinite replicate with non-zero weight is infinite."""
    h = (t_sorted.size - 1) * np.asarray(q, dtype=np.float64)
    lo = np.clip(np.floor(h).astype(np.int64), 0, t_sorted.size - 1)
    hi = np.minimum(lo + 1, t_sorted.size - 1)
    frac = h - lo
    a, b = t_sorted[lo], t_sorted[hi]
    with np.errstate(invalid="ignore"):
        inner = np.where(frac < 0.5, a + (b - a) * frac, b - (b - a) * (1.0 - frac))
    out = np.where(frac == 0.0, a, inner)
    return np.where(np.isnan(out), np.where(frac < 0.5, a, b), out)


def studentized_interval(
    t_replicates: np.ndarray, estimate: float, se: float, *, confidence: float = 0.95
) -> tuple[float, float]:
    """Studentized (bootstrap-t) interval `(low, high)` = [estimate - q(1 - a/2) se, estimate - q(a/2) se],
    with a = 1 - confidence, `se` the standard error of `estimate` on the data and q the quantiles (linear
    interpolation, as `np.quantile`) of `t_replicates` `(B,)`, t* = (est* - est) / se* per resample
    (Efron & Tibshirani 1993, ch. 12; Davison & Hinkley 1997, section 5.2.1).

    A t-replicate may be +-inf (a resample with se* = 0 whose estimate differs from `estimate`); an end that
    falls on such replicates is unbounded and raises `StatsInputError`. se = 0 gives the zero-width interval.

    Args:
        t_replicates: `(B,)` t-statistics of the resamples (flattened, read as float64), B >= 2; +-inf allowed,
            NaN not.
        estimate: the statistic on the original data; finite.
        se: its standard error on the data; finite and >= 0.
        confidence: two-sided confidence level in (0, 1). Default 0.95.

    Returns:
        `(low, high)` as Python floats, in the units of `estimate`.

    Raises:
        StatsInputError: `confidence` is outside (0, 1); fewer than 2 t-replicates; a t-replicate is NaN;
            `estimate` is not finite; `se` is negative or not finite; or an interval end falls on infinite
            t-replicates (unbounded interval).
    """
    confidence = check_confidence(confidence)
    t = np.asarray(t_replicates, dtype=np.float64).ravel()
    if t.size < 2:
        raise StatsInputError(f"t_replicates: need at least 2 bootstrap replicates, got {t.size}")
    if np.isnan(t).any():
        raise StatsInputError(f"t_replicates has {int(np.isnan(t).sum())} NaN value(s)")
    estimate, se = float(estimate), float(se)
    if not np.isfinite(estimate):
        raise StatsInputError(f"estimate must be finite, got {estimate}")
    if not (se >= 0.0 and np.isfinite(se)):
        raise StatsInputError(f"se must be finite and >= 0, got {se}")
    if se == 0.0:
        return estimate, estimate
    alpha = 1.0 - confidence
    q_lo, q_hi = _t_quantiles(np.sort(t), np.array([alpha / 2.0, 1.0 - alpha / 2.0]))
    if not (np.isfinite(q_lo) and np.isfinite(q_hi)):
        n_inf = int(np.isinf(t).sum())
        raise StatsInputError(
            f"the studentized interval is unbounded: {n_inf} of {t.size} t-replicates are infinite (resamples "
            "whose units all share one value, se* = 0), more than the interval's tail; too few distinct values "
            "for a bootstrap-t, use method='percentile'"
        )
    return float(estimate - q_hi * se), float(estimate - q_lo * se)


def _studentized_result(
    reps: np.ndarray, t_reps: np.ndarray, estimate: float, se: float, confidence: float
) -> BootstrapResult:
    """A `BootstrapResult` (method "studentized") from the estimate replicates, the t-replicates and the
    standard error on the data; drift compares the intervals of the two halves of the t-replicates."""
    lo, hi = studentized_interval(t_reps, estimate, se, confidence=confidence)
    half = t_reps.size // 2
    drift = float("nan")
    if half >= 2:
        try:
            a = studentized_interval(t_reps[:half], estimate, se, confidence=confidence)
            b = studentized_interval(t_reps[half:], estimate, se, confidence=confidence)
            drift = max(abs(a[0] - b[0]), abs(a[1] - b[1]))
        except StatsInputError:  # one half's end is unbounded: the whole interval is not settled
            drift = float("inf")
    return BootstrapResult(
        estimate=float(estimate),
        low=lo,
        high=hi,
        confidence=confidence,
        method="studentized",
        n_resamples=int(reps.size),
        drift=float(drift),
        se=float(np.std(reps, ddof=1)),
        replicates=reps,
    )


def _acceleration(jackknife_groups: Sequence[np.ndarray]) -> float:
    """BCa acceleration from leave-one-out statistics, one array per independent sample (Efron & Tibshirani
    eq. 14.15, several samples as in eq. 15.36 / scipy.stats.bootstrap)."""
    num = 0.0
    den = 0.0
    for theta_i in jackknife_groups:
        n = float(theta_i.size)
        u = (n - 1.0) * (theta_i.mean() - theta_i)
        num += np.sum(u**3) / n**3
        den += np.sum(u**2) / n**2
    if den == 0.0:
        return 0.0
    return float(num / (6.0 * den**1.5))


# ------------------------------------------------------------------------------------------------- helpers
def _is_vectorized(statistic: Callable, vectorized: bool | None) -> bool:
    if vectorized is not None:
        return bool(vectorized)
    try:
        return "axis" in inspect.signature(statistic).parameters
    except (TypeError, ValueError):
        return False


def _check_setup(confidence: float, n_resamples: int, method: str) -> tuple[float, int]:
    confidence = check_confidence(confidence)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 2:
        raise StatsInputError(f"n_resamples must be an integer >= 2, got {n_resamples!r}")
    if method not in METHODS:
        raise StatsInputError(f"method must be one of {METHODS}, got {method!r}")
    return confidence, int(n_resamples)


def _index_chunks(rng: np.random.Generator, sizes: Sequence[int], n_resamples: int) -> Iterator[list[np.ndarray]]:
    """Resampling indices, one `(chunk, n)` int64 matrix per sample, in chunks of resamples.

    Drawn sample after sample within a chunk, as `scipy.stats.bootstrap` draws one batch, so for a single
    chunk the draws equal scipy's for the same Generator.
    """
    per = max(1, _CHUNK_ELEMENTS // max(1, sum(sizes)))
    for start in range(0, n_resamples, per):
        c = min(per, n_resamples - start)
        yield [rng.integers(0, n, (c, n)) for n in sizes]


def _eval(statistic: Callable, vectorized: bool, samples: Sequence[np.ndarray]) -> np.ndarray:
    """Statistic of each row of the `(c, n_k)` resample matrices -> `(c,)`."""
    if vectorized:
        out = np.asarray(statistic(*samples, axis=-1), dtype=np.float64)
        if out.shape != (samples[0].shape[0],):
            raise StatsInputError(
                f"a vectorised statistic must return one value per resample: expected shape "
                f"({samples[0].shape[0]},), got {out.shape}"
            )
        return out
    return np.array([float(statistic(*(s[i] for s in samples))) for i in range(samples[0].shape[0])])


def _jackknife(statistic: Callable, vectorized: bool, samples: Sequence[np.ndarray], which: int) -> np.ndarray:
    """Leave-one-out statistics over sample `which` (the others kept whole) -> `(n_which,)`."""
    data = samples[which]
    n = data.size
    if n < 2:
        raise StatsInputError("BCa needs at least 2 values in every sample (jackknife)")
    out = np.empty(n)
    per = max(1, _CHUNK_ELEMENTS // n)
    base = np.arange(n - 1)
    for start in range(0, n, per):
        rows = np.arange(start, min(n, start + per))
        idx = base[None, :] + (base[None, :] >= rows[:, None])
        loo = data[idx]
        if vectorized:
            args = [np.broadcast_to(s, (rows.size, s.size)) if k != which else loo for k, s in enumerate(samples)]
            out[rows] = np.asarray(statistic(*args, axis=-1), dtype=np.float64)
        else:
            for r, row in enumerate(rows):
                args = [s if k != which else loo[r] for k, s in enumerate(samples)]
                out[row] = float(statistic(*args))
    return out


def _multi_sample_bootstrap(
    samples: Sequence[np.ndarray],
    statistic: Callable,
    confidence: float,
    n_resamples: int,
    method: str,
    seed: int | np.random.Generator,
    vectorized: bool | None,
) -> BootstrapResult:
    confidence, n_resamples = _check_setup(confidence, n_resamples, method)
    vec = _is_vectorized(statistic, vectorized)
    rng = as_generator(seed)
    estimate = float(statistic(*samples, axis=-1) if vec else statistic(*samples))
    reps = np.empty(n_resamples)
    pos = 0
    for idx in _index_chunks(rng, [s.size for s in samples], n_resamples):
        c = idx[0].shape[0]
        reps[pos : pos + c] = _eval(statistic, vec, [s[i] for s, i in zip(samples, idx)])
        pos += c
    accel = 0.0
    if method == "bca":
        accel = _acceleration([_jackknife(statistic, vec, samples, k) for k in range(len(samples))])
    return bootstrap_interval(reps, estimate, confidence=confidence, method=method, acceleration=accel)


# ---------------------------------------------------------------------------------------------- public API
def bootstrap_ci(
    values: Any,
    statistic: Callable = np.mean,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    method: str = "percentile",
    seed: int | np.random.Generator = 0,
    vectorized: bool | None = None,
) -> BootstrapResult:
    """Bootstrap interval of `statistic(values)` for a 1-D sample `values` `(n,)`.

    `statistic` is vectorised when it takes an `axis` argument (np.mean, np.median, ...): it then gets a
    `(chunk, n)` matrix of resamples and `axis=-1`; otherwise it is called once per resample. method is
    "percentile" or "bca" (module docstring). Matches `scipy.stats.bootstrap(..., method=...)` with the same
    Generator when all resamples fit in one chunk. At least 2 values (fewer give a zero-width interval).

    Args:
        values: `(n,)` finite sample (read as float64), n >= 2.
        statistic: callable mapping the sample to a float (vectorised: `(chunk, n)` and `axis=-1` to
            `(chunk,)`). Default `np.mean`.
        confidence: two-sided confidence level in (0, 1). Default 0.95.
        n_resamples: number of bootstrap replicates B, an integer >= 2. Default 2000.
        method: "percentile" (default) or "bca".
        seed: integer seed or a `np.random.Generator` (used as is, so its state advances). Default 0.
        vectorized: True/False to force how `statistic` is called; None (default) decides from whether it takes
            an `axis` parameter.

    Returns:
        A `BootstrapResult` with the `(B,)` replicates, in the units of `statistic`.

    Raises:
        StatsInputError: `values` is not 1-D, holds NaN/inf or has fewer than 2 entries; bad `confidence`,
            `n_resamples`, `method` or `seed`; a vectorised statistic returns the wrong shape; a replicate is not
            finite; or BCa is undefined (degenerate replicates).
    """
    x = as_sample(values, "values")
    check_units(x.size, "values")
    return _multi_sample_bootstrap([x], statistic, confidence, n_resamples, method, seed, vectorized)


def two_sample_bootstrap(
    x: Any,
    y: Any,
    statistic: Callable,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    method: str = "percentile",
    seed: int | np.random.Generator = 0,
    vectorized: bool | None = None,
) -> BootstrapResult:
    """Bootstrap interval of `statistic(x, y)` for two independent samples `x` `(n,)` and `y` `(m,)`, each
    resampled on its own (e.g. the gap ratio `lambda s, r, axis=-1: r.mean(axis) / s.mean(axis)`).

    Vectorised when `statistic` takes `axis` (then called with `(chunk, n)`, `(chunk, m)` and `axis=-1`).
    BCa uses the multi-sample jackknife acceleration (Efron & Tibshirani eq. 15.36), as scipy does. At
    least 2 values in each sample (a single value is redrawn unchanged and adds no sampling variation).

    Args:
        x: `(n,)` finite first sample (read as float64), n >= 2.
        y: `(m,)` finite second sample, m >= 2; independent of `x` (lengths may differ).
        statistic: callable `statistic(x, y) -> float` (vectorised: `statistic(xs, ys, axis=-1) -> (chunk,)`).
        confidence: two-sided confidence level in (0, 1). Default 0.95.
        n_resamples: number of bootstrap replicates B, an integer >= 2. Default 2000.
        method: "percentile" (default) or "bca".
        seed: integer seed or a `np.random.Generator` (used as is, so its state advances). Default 0.
        vectorized: True/False to force how `statistic` is called; None (default) decides from whether it takes
            an `axis` parameter.

    Returns:
        A `BootstrapResult` with the `(B,)` replicates, in the units of `statistic`.

    Raises:
        StatsInputError: a sample is not 1-D, holds NaN/inf or has fewer than 2 entries; bad `confidence`,
            `n_resamples`, `method` or `seed`; a vectorised statistic returns the wrong shape; a replicate is not
            finite; or BCa is undefined (degenerate replicates).
    """
    xs = as_sample(x, "x")
    ys = as_sample(y, "y")
    check_units(xs.size, "x")
    check_units(ys.size, "y")
    return _multi_sample_bootstrap([xs, ys], statistic, confidence, n_resamples, method, seed, vectorized)


class _Unbounded(StatsInputError):
    """The studentized interval is unbounded; carries the estimate replicates for a percentile fallback."""

    def __init__(self, message: str, reps: np.ndarray, estimate: float) -> None:
        super().__init__(message)
        self.reps = reps
        self.estimate = estimate


def _pooled_mean_bootstrap(
    d: np.ndarray,
    codes: np.ndarray,
    confidence: float,
    n_resamples: int,
    method: str,
    rng: np.random.Generator,
    rounding: float = 0.0,
) -> BootstrapResult:
    """Bootstrap of the pooled mean of `d` `(n,)` resampling the K clusters of `codes` `(n,)` (0..K-1).

    rounding: a standard error at or below this is 0 (differences below the float rounding of the inputs
    that `d` was computed from cannot be told from 0; without this a resample of values equal up to
    rounding gets se* ~ 1e-17 and a t* of 1e15).

    A resample draws K cluster indices (the draws of `bootstrap_ci` when every cluster is one row); its
    estimate is sum D_k / sum n_k over the drawn clusters (D_k: the cluster's sum of d, n_k its size, each
    drawn cluster counted as often as drawn). For the studentized interval se* is the cluster-robust
    (linearisation) standard error sqrt(K / (K - 1) sum (D_k - est* n_k)^2) / sum n_k over the same draws;
    with singleton clusters it is sd(ddof=1) / sqrt(n), the ordinary bootstrap-t of a mean.
    """
    k = int(codes.max()) + 1
    big_d = np.bincount(codes, weights=d, minlength=k)
    sizes = np.bincount(codes, minlength=k).astype(np.float64)
    total = float(sizes.sum())
    estimate = float(big_d.sum() / total)
    means = big_d / sizes
    if np.all(d == d[0]) or np.all(means == means[0]):
        # every cluster has the same mean: every resample has the same estimate and se* = 0
        estimate = float(d[0]) if np.all(d == d[0]) else estimate
        reps = np.full(n_resamples, estimate)
        return BootstrapResult(estimate, estimate, estimate, confidence, method, n_resamples, 0.0, 0.0, reps)
    studentized = method == "studentized"
    equal = bool(np.all(sizes == sizes[0]))
    size = float(sizes[0])
    scale = k / (k - 1.0)
    reps = np.empty(n_resamples)
    t_reps = np.empty(n_resamples) if studentized else None
    per = max(1, _CHUNK_ELEMENTS // k)
    for start in range(0, n_resamples, per):
        c = min(per, n_resamples - start)
        idx = rng.integers(0, k, (c, k))
        g = big_d[idx]
        if equal:
            tot = size * k
            est = g.sum(axis=1) / tot
        else:
            w = sizes[idx]
            tot = w.sum(axis=1)
            est = g.sum(axis=1) / tot
        reps[start : start + c] = est
        if studentized:
            r = g - est[:, None] * (size if equal else w)
            se_b = np.sqrt(scale * np.einsum("ij,ij->i", r, r)) / tot
            diff = est - estimate
            with np.errstate(divide="ignore", invalid="ignore"):
                t = diff / se_b
            # se* = 0: every drawn cluster has one mean; t* = 0 when it is the estimate, else +-inf
            zero = se_b <= rounding
            t[zero] = np.where(diff[zero] == 0.0, 0.0, np.copysign(np.inf, diff[zero]))
            t_reps[start : start + c] = t
    if studentized:
        r0 = big_d - estimate * sizes
        se = float(np.sqrt(scale * (r0 @ r0)) / total)
        try:
            return _studentized_result(reps, t_reps, estimate, se, confidence)
        except StatsInputError as err:
            raise _Unbounded(str(err), reps, estimate) from None
    accel = 0.0
    if method == "bca":
        theta = (big_d.sum() - big_d) / (total - sizes)  # leave-one-cluster-out pooled means
        accel = _acceleration([theta])
    return bootstrap_interval(reps, estimate, confidence=confidence, method=method, acceleration=accel)


def paired_bootstrap(
    a: Any,
    b: Any,
    *,
    statistic: Callable = np.mean,
    clusters: Any = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    method: str = "auto",
    seed: int | np.random.Generator = 0,
) -> BootstrapResult:
    """Bootstrap interval of `statistic(b - a)` (default: the mean paired difference) for paired samples
    `a`, `b` `(n,)` (the same samples scored by two checkpoints): pairs are resampled together.

    clusters: None, or `(n,)` labels (e.g. twin-pair ids): whole clusters are resampled, every row of a
    drawn cluster as often as it is drawn, and the estimate is the pooled mean of b - a over the rows drawn
    (statistic must be np.mean). K = the number of resampled units (clusters, else pairs), at least 2.

    method: "percentile", "bca", "studentized" (bootstrap-t, `studentized_interval`; statistic np.mean,
    standard error sd / sqrt(n), or the cluster-robust one with clusters) or "auto": "studentized" when
    statistic is np.mean and K < 50 (percentile intervals of a mean undercover at small n on skewed or
    heavy-tailed differences), "percentile" otherwise. When the bootstrap-t is unbounded (more than a tail's
    share of resamples draw units of one value only) "auto" gives the percentile interval of the same
    replicates; `method` of the result records what was used. Without clusters, percentile and BCa match
    `scipy.stats.bootstrap(paired=True)` for the same Generator.

    Args:
        a: `(n,)` finite scores of the first side (read as float64), e.g. the baseline checkpoint.
        b: `(n,)` finite scores of the second side, row i paired with `a[i]`.
        statistic: callable applied to the `(n,)` differences b - a (vectorised when it takes `axis`).
            Default `np.mean`; `clusters` and "studentized" need exactly `np.mean`.
        clusters: None (default: every pair is its own unit) or `(n,)` cluster labels, no missing label.
        confidence: two-sided confidence level in (0, 1). Default 0.95.
        n_resamples: number of bootstrap replicates B, an integer >= 2. Default 2000.
        method: "percentile", "bca", "studentized" or "auto" (default), as above.
        seed: integer seed or a `np.random.Generator` (used as is, so its state advances). Default 0.

    Returns:
        A `BootstrapResult` of b - a (in the units of the scores) whose `method` is the interval computed
        ("auto" resolved, "percentile" after a fallback).

    Raises:
        StatsInputError: `a` or `b` is not 1-D, holds NaN/inf or their lengths differ; `method` is unknown;
            bad `confidence`, `n_resamples` or `seed`; fewer than 2 pairs or clusters; `clusters` has the wrong
            shape or a missing label; `clusters` or "studentized" with a statistic other than `np.mean`; an
            explicitly requested studentized interval is unbounded; or BCa is undefined.
    """
    av = as_sample(a, "a")
    bv = as_sample(b, "b")
    if av.size != bv.size:
        raise StatsInputError(f"a and b must be paired (same length), got {av.size} and {bv.size}")
    if method not in PAIRED_METHODS:
        raise StatsInputError(f"method must be one of {PAIRED_METHODS}, got {method!r}")
    confidence, n_resamples = _check_setup(confidence, n_resamples, "percentile")
    is_mean = statistic is np.mean
    d = bv - av
    if clusters is None:
        codes = np.arange(d.size, dtype=np.int64)
        check_units(d.size, "a and b", "pairs")
    else:
        if not is_mean:
            raise StatsInputError("clusters needs statistic=np.mean (the pooled mean over the rows drawn)")
        labels = np.asarray(clusters, dtype=object) if not isinstance(clusters, np.ndarray) else clusters
        if labels.ndim != 1 or labels.shape[0] != d.size:
            raise StatsInputError(f"clusters must be one label per pair, shape ({d.size},), got shape {labels.shape}")
        if np.any(pd.isna(labels)):
            raise StatsInputError(f"clusters has {int(np.sum(pd.isna(labels)))} missing label(s)")
        codes = pd.factorize(labels, sort=False)[0].astype(np.int64)
        check_units(int(codes.max()) + 1, "clusters", "clusters")
    units = int(codes.max()) + 1
    if method == "auto":
        method = "studentized" if is_mean and units < STUDENTIZED_BELOW else "percentile"
        fallback = True
    else:
        fallback = False
    if method == "studentized" and not is_mean:
        raise StatsInputError("method='studentized' needs statistic=np.mean (its standard error is the mean's)")
    if not is_mean or (clusters is None and method != "studentized"):
        return _multi_sample_bootstrap([d], statistic, confidence, n_resamples, method, seed, None)
    rng = as_generator(seed)
    try:
        # b - a carries the rounding of a and b: a few ulps of their largest magnitude
        rounding = 64.0 * np.finfo(np.float64).eps * float(max(np.abs(av).max(), np.abs(bv).max()))
        return _pooled_mean_bootstrap(d, codes, confidence, n_resamples, method, rng, rounding)
    except _Unbounded as err:
        if not fallback:
            raise
        return bootstrap_interval(err.reps, err.estimate, confidence=confidence, method="percentile")


def resample_counts(rng: np.random.Generator, n: int, n_resamples: int) -> np.ndarray:
    """How often each of `n` units is drawn in each of `n_resamples` resamples of size n: `(n_resamples, n)`
    int64 (one multinomial(n, 1/n) row per resample).

    Args:
        rng: the Generator to draw from (its state advances).
        n: number of units (>= 1); each resample has size n.
        n_resamples: number of resamples (rows).

    Returns:
        `(n_resamples, n)` int64 counts, row = resample, column = unit; every row sums to n.
    """
    idx = rng.integers(0, n, (n_resamples, n))
    flat = idx + (np.arange(n_resamples) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=n_resamples * n).reshape(n_resamples, n)


def _cluster_codes(frame: pd.DataFrame, cluster: Sequence[str]) -> list[np.ndarray]:
    codes = []
    for col in cluster:
        if col not in frame.columns:
            raise StatsInputError(f"cluster column {col!r} is not in the frame (columns: {list(frame.columns)})")
        code = pd.factorize(frame[col].to_numpy(), sort=True)[0].astype(np.int64)
        if np.any(code < 0):  # factorize codes missing values as -1
            raise StatsInputError(f"cluster column {col!r} has missing values")
        codes.append(code)
    return codes


def _weighted_stat(statistic: Any, frame: pd.DataFrame) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """Normalise `statistic` into f(weights (c, n_rows)) -> (c,) when it can be vectorised.

    Returns (f, kind) with kind "weights" or "loop" (f is then the plain frame -> float callable)."""
    if isinstance(statistic, str):
        if statistic not in frame.columns:
            raise StatsInputError(f"statistic column {statistic!r} is not in the frame")
        x = as_sample(frame[statistic].to_numpy(dtype=np.float64), f"column {statistic!r}")

        def mean_of_column(w: np.ndarray) -> np.ndarray:
            return (w @ x) / w.sum(axis=1)

        return mean_of_column, "weights"
    if not callable(statistic):
        raise StatsInputError("statistic must be a column name or a callable")
    try:
        takes_weights = "weights" in inspect.signature(statistic).parameters
    except (TypeError, ValueError):
        takes_weights = False
    if takes_weights:
        return (lambda w: np.asarray(statistic(frame, weights=w), dtype=np.float64)), "weights"
    return statistic, "loop"


def clustered_bootstrap(
    frame: pd.DataFrame,
    statistic: str | Callable,
    cluster: Sequence[str] | str | None = ("item_id",),
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    method: str = "percentile",
    seed: int | np.random.Generator = 0,
) -> BootstrapResult:
    """Bootstrap interval of a statistic of `frame` resampling whole clusters, not rows.

    `statistic` is one of: a column name (the mean of that column); a callable `f(frame, weights)` taking a
    `(chunk, n_rows)` float array of row multiplicities and returning `(chunk,)` (vectorised: e.g. a weighted
    win rate); or a callable `f(frame) -> float` called on each resampled frame (rows repeated by their
    multiplicity; slow, any statistic).

    `cluster`: one column (e.g. "item_id": every vote on an item is resampled together), two columns
    ("item_id", "rater_id": crossed items and raters, the pigeonhole bootstrap, a row's weight is the product
    of its item's and its rater's counts, Owen 2007), or None (rows resampled one by one: the naive
    bootstrap that public arenas use, which overstates certainty when votes share items). Every cluster
    column needs at least 2 clusters (rows, without one): a single cluster gives a zero-width interval.
    BCa needs at most one cluster column (jackknife over its clusters).

    Args:
        frame: non-empty DataFrame, one row per observation (e.g. one vote).
        statistic: a column name (mean of that numeric column, which must hold no NaN/inf), a callable
            `f(frame, weights)` -> `(chunk,)` float, or a callable `f(frame) -> float`, as above.
        cluster: column name(s) to resample by (at most two), or None for rows. Default `("item_id",)`.
        confidence: two-sided confidence level in (0, 1). Default 0.95.
        n_resamples: number of bootstrap replicates B, an integer >= 2. Default 2000.
        method: "percentile" (default) or "bca" (one cluster column at most).
        seed: integer seed or a `np.random.Generator` (used as is, so its state advances). Default 0.

    Returns:
        A `BootstrapResult` with the `(B,)` replicates, in the units of the statistic.

    Raises:
        StatsInputError: `frame` is not a non-empty DataFrame; bad `confidence`, `n_resamples`, `method` or
            `seed`; more than two cluster columns, or BCa with two; a cluster column is absent or has a missing
            value; fewer than 2 clusters (or rows); `statistic` is neither a column of `frame` nor a callable,
            or names a column with NaN/inf; a replicate is not finite; or BCa is undefined.
    """
    check_frame(frame, (), "frame")
    confidence, n_resamples = _check_setup(confidence, n_resamples, method)
    if cluster is None:
        cluster = []
    elif isinstance(cluster, str):
        cluster = [cluster]
    cluster = list(cluster)
    if len(cluster) > 2:
        raise StatsInputError(f"at most two crossed cluster columns are supported, got {cluster}")
    if method == "bca" and len(cluster) > 1:
        raise StatsInputError("method='bca' needs at most one cluster column; use method='percentile'")
    n_rows = len(frame)
    codes = _cluster_codes(frame, cluster) if cluster else [np.arange(n_rows, dtype=np.int64)]
    sizes = [int(c.max()) + 1 for c in codes]
    for col, k in zip(cluster or ["frame"], sizes):
        check_units(k, f"cluster column {col!r}" if cluster else "frame", "clusters" if cluster else "rows")
    fn, kind = _weighted_stat(statistic, frame)
    rng = as_generator(seed)

    ones = np.ones((1, n_rows))
    estimate = float(fn(ones)[0]) if kind == "weights" else float(fn(frame))

    reps = np.empty(n_resamples)
    per = max(1, _CHUNK_ELEMENTS // max(n_rows, sum(sizes)))
    rows = np.arange(n_rows)
    # The mean of a column over one cluster level needs only per-cluster sums and sizes, not row weights.
    # Clusters with equal (sum, size) are interchangeable, so when few such types exist (binary votes,
    # equal cluster sizes) resampling K clusters is one multinomial(K, type shares) draw per resample: the
    # same distribution as drawing K cluster indices, at a fraction of the random numbers.
    aggregate = isinstance(statistic, str) and len(codes) == 1
    if aggregate:
        col = frame[statistic].to_numpy(dtype=np.float64)
        sums = np.bincount(codes[0], weights=col, minlength=sizes[0])
        counts = np.bincount(codes[0], minlength=sizes[0]).astype(np.float64)
        types, type_of = np.unique(np.stack([sums, counts], axis=1), axis=0, return_inverse=True)
        by_type = types.shape[0] * 4 <= sizes[0]
        if by_type:
            shares = np.bincount(type_of.ravel(), minlength=types.shape[0]) / sizes[0]
            sums, counts = types[:, 0], types[:, 1]
    for start in range(0, n_resamples, per):
        c = min(per, n_resamples - start)
        if aggregate:
            if by_type:
                draws = rng.multinomial(sizes[0], shares, size=c).astype(np.float64)
            else:
                draws = resample_counts(rng, sizes[0], c)
            reps[start : start + c] = (draws @ sums) / (draws @ counts)
            continue
        w = resample_counts(rng, sizes[0], c)[:, codes[0]].astype(np.float64)
        for code, k in zip(codes[1:], sizes[1:]):
            w *= resample_counts(rng, k, c)[:, code]
        if kind == "weights":
            reps[start : start + c] = fn(w)
        else:
            for r in range(c):
                take = np.repeat(rows, w[r].astype(np.int64))
                reps[start + r] = float(fn(frame.iloc[take]))

    accel = 0.0
    if method == "bca":
        code, k = codes[0], sizes[0]
        theta = np.empty(k)
        if kind == "weights":
            per_j = max(1, _CHUNK_ELEMENTS // n_rows)
            for start in range(0, k, per_j):
                left = np.arange(start, min(k, start + per_j))
                w = (code[None, :] != left[:, None]).astype(np.float64)
                theta[left] = fn(w)
        else:
            for j in range(k):
                theta[j] = float(fn(frame.iloc[np.flatnonzero(code != j)]))
        accel = _acceleration([theta])
    return bootstrap_interval(reps, estimate, confidence=confidence, method=method, acceleration=accel)
