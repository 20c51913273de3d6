"""Binomial proportions: Wilson score interval, exact binomial test, pairwise win rates.

- Wilson (1927) score interval, computed by `statsmodels.stats.proportion.proportion_confint(method="wilson")`.
- Exact two-sided binomial test (Clopper-Pearson style: sum of outcome probabilities not above the observed
  one), computed by `scipy.stats.binomtest`.
- Win rate of A over B (docs/definitions.md): wins / (wins + losses) with ties reported separately, and the
  ties-as-half variant (wins + ties/2) / (wins + losses + ties).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest
from statsmodels.stats.proportion import proportion_confint

from ._checks import StatsInputError, check_confidence

__all__ = ["wilson_interval", "binomial_test", "win_rate", "WinRate"]


def _count(x: Any, name: str, *, integer: bool = True) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise StatsInputError(f"{name} must be finite and >= 0, got {x!r}")
    if integer and np.any(arr != np.round(arr)):
        raise StatsInputError(f"{name} must be a whole number, got {x!r}")
    return arr


def wilson_interval(successes: Any, n: Any, confidence: float = 0.95) -> tuple[Any, Any]:
    """Wilson score interval `(lo, hi)` for `successes` out of `n` (scalars or broadcastable arrays).

    successes may be fractional (ties counted as half). Computed by statsmodels `proportion_confint`
    (method="wilson"); Wilson, JASA 22 (1927). The lower end is exactly 0 at successes = 0 and the upper
    end exactly 1 at successes = n (the closed form's values).

    Args:
        successes: success count(s), finite and >= 0 (fractional allowed), scalar or array.
        n: trial count(s), whole numbers > 0, broadcastable against `successes`.
        confidence: two-sided confidence level in (0, 1). Default 0.95.

    Returns:
        `(lo, hi)` proportions in [0, 1]: Python floats when both inputs are scalars, else float64 arrays of the
        broadcast shape.

    Raises:
        StatsInputError: `confidence` is outside (0, 1); a count is negative or not finite; `n` is not whole or
            is 0; or `successes` exceeds `n`.
    """
    confidence = check_confidence(confidence)
    k = _count(successes, "successes", integer=False)
    nn = _count(n, "n")
    if np.any(nn == 0):
        raise StatsInputError("n must be > 0 (no trials: the proportion is undefined)")
    if np.any(k > nn):
        raise StatsInputError(f"successes ({successes!r}) exceed n ({n!r})")
    lo, hi = proportion_confint(k, nn, alpha=1.0 - confidence, method="wilson")
    # The closed form's ends at k = 0 and k = n are exactly 0 and 1; statsmodels' rounding leaves
    # 1e-17-sized residues there (2.8e-17 at k=0, n=7), which would read as "above 0".
    lo = np.where(k == 0, 0.0, lo)
    hi = np.where(k == nn, 1.0, hi)
    if np.ndim(lo) == 0:
        return float(lo), float(hi)
    return np.asarray(lo), np.asarray(hi)


def binomial_test(k: int, n: int, p: float = 0.5) -> float:
    """Two-sided exact binomial test p-value of `k` successes in `n` trials against success probability
    `p` (`scipy.stats.binomtest(k, n, p).pvalue`).

    Args:
        k: number of successes, a scalar whole number >= 0.
        n: number of trials, a scalar whole number > 0, at least `k`.
        p: success probability under the null, in [0, 1]. Default 0.5.

    Returns:
        The two-sided p-value as a float in (0, 1].

    Raises:
        StatsInputError: `k` or `n` is negative, not finite, not whole or not a scalar; `n` is 0; `k` exceeds
            `n`; or `p` lies outside [0, 1].
    """
    kk = _count(k, "k")
    nn = _count(n, "n")
    if kk.ndim or nn.ndim:
        raise StatsInputError("binomial_test takes scalar k and n")
    if nn == 0:
        raise StatsInputError("n must be > 0")
    if kk > nn:
        raise StatsInputError(f"k ({k}) exceeds n ({n})")
    if not (0.0 <= p <= 1.0):
        raise StatsInputError(f"p must lie in [0, 1], got {p}")
    return float(binomtest(int(kk), int(nn), p).pvalue)


@dataclass(frozen=True)
class WinRate:
    """Win rate of A over B under both tie conventions (docs/definitions.md).

    `rate`, `interval`, `pvalue`: ties excluded, wins / (wins + losses), Wilson interval, two-sided exact
    binomial p against 0.5. `rate_ties_half`, `interval_ties_half`, `pvalue_ties_half`: ties as half a win
    and half a loss, (wins + ties/2) / (wins + losses + ties); when ties is odd the count wins + ties/2 is
    not whole and the p-value is the larger (conservative) of the exact tests at its floor and ceiling.
    NaN where the denominator is 0.

    Attributes:
        wins: number of comparisons A won.
        losses: number A lost.
        ties: number tied.
        rate: wins / (wins + losses); NaN when wins + losses is 0.
        interval: Wilson `(low, high)` of `rate`; `(NaN, NaN)` when wins + losses is 0.
        pvalue: two-sided exact binomial p of wins against 0.5 with ties dropped; NaN when wins + losses is 0.
        rate_ties_half: (wins + ties/2) / (wins + losses + ties).
        interval_ties_half: Wilson `(low, high)` of `rate_ties_half` over all comparisons.
        pvalue_ties_half: two-sided exact binomial p with ties as half (conservative for odd ties).
        confidence: two-sided confidence level of both intervals.
    """

    wins: int
    losses: int
    ties: int
    rate: float
    interval: tuple[float, float]
    pvalue: float
    rate_ties_half: float
    interval_ties_half: tuple[float, float]
    pvalue_ties_half: float
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        """Flat dict of the fields, each interval split into two keys.

        Returns:
            Dict with keys wins, losses, ties, rate, low, high, pvalue, rate_ties_half, low_ties_half,
            high_ties_half, pvalue_ties_half and confidence; NaN entries are kept as NaN.
        """
        return {
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
            "rate": self.rate,
            "low": self.interval[0],
            "high": self.interval[1],
            "pvalue": self.pvalue,
            "rate_ties_half": self.rate_ties_half,
            "low_ties_half": self.interval_ties_half[0],
            "high_ties_half": self.interval_ties_half[1],
            "pvalue_ties_half": self.pvalue_ties_half,
            "confidence": self.confidence,
        }


def win_rate(wins: int, losses: int, ties: int = 0, *, confidence: float = 0.95) -> WinRate:
    """Win rate of A over B from counts of wins, losses and ties, both conventions (see `WinRate`).

    Args:
        wins: number of comparisons A won, a whole number >= 0.
        losses: number A lost, a whole number >= 0.
        ties: number tied, a whole number >= 0. Default 0.
        confidence: two-sided confidence level of the Wilson intervals, in (0, 1). Default 0.95.

    Returns:
        A `WinRate`; its ties-excluded rate, interval and p-value are NaN when wins + losses is 0.

    Raises:
        StatsInputError: a count is negative, not finite or not whole; all three counts are 0; or
            `confidence` is outside (0, 1).
    """
    w, l, t = (int(_count(v, name)) for v, name in ((wins, "wins"), (losses, "losses"), (ties, "ties")))
    if w + l + t == 0:
        raise StatsInputError("win_rate needs at least one comparison (wins + losses + ties == 0)")
    nan = float("nan")
    if w + l > 0:
        rate = w / (w + l)
        interval = wilson_interval(w, w + l, confidence)
        pvalue = binomial_test(w, w + l)
    else:
        rate, interval, pvalue = nan, (nan, nan), nan
    n = w + l + t
    k = w + t / 2.0
    rate_half = k / n
    interval_half = wilson_interval(k, n, confidence)
    pvalue_half = max(binomial_test(int(np.floor(k)), n), binomial_test(int(np.ceil(k)), n))
    return WinRate(w, l, t, rate, interval, pvalue, rate_half, interval_half, pvalue_half, float(confidence))
