"""Sizing a preference study before paying for it: votes needed for a win-rate claim.

Claim: "the lower end of the two-sided `confidence` Wilson interval of the win rate is above `threshold`".
The Wilson interval inverts the score test, so its lower end exceeds t exactly when
p_hat - t > z sqrt(t (1 - t) / n) (Wilson 1927), i.e. when the wins k >= k_min(n) = floor(n t + z
sqrt(n t (1 - t))) + 1. With k ~ Binomial(n, true_rate) the exact power is P(k >= k_min(n)) (scipy
binomial tail). Exact power saw-tooths in n (Chernick & Liu 2002), so the answer is the smallest n from
which on the power stays at or above the target (checked over a range beyond it), not a lucky dip.

Votes that share items are not independent: with m votes per item and intra-item correlation rho the
design effect is 1 + (m - 1) rho (Kish 1965), and the study needs design_effect times the independent-vote
count (then votes / m items). Written here; statsmodels' power classes use normal approximations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri
from scipy.stats import binom

from ._checks import StatsInputError, check_confidence

__all__ = ["StudySize", "votes_needed", "win_rate_claim_power"]


@dataclass(frozen=True)
class StudySize:
    """`votes`: total votes to collect (design effect included); `effective_votes`: independent votes the
    claim needs; `items`: items to show (when votes_per_item is known, else None); `power`: exact power
    at `effective_votes`.

    Attributes:
        votes: total votes to collect, ceil(effective_votes * design_effect).
        effective_votes: independent votes the claim needs.
        items: items to show, ceil(votes / votes_per_item); None when votes_per_item was not given.
        design_effect: the design effect applied (1.0 for independent votes).
        power: exact power, in [0, 1], at `effective_votes` independent votes.
    """

    votes: int
    effective_votes: int
    items: int | None
    design_effect: float
    power: float


def win_rate_claim_power(n: int | np.ndarray, true_rate: float, threshold: float, confidence: float = 0.95) -> np.ndarray:
    """Exact probability that the Wilson lower bound of n independent votes exceeds `threshold` when the
    true win rate is `true_rate` (module docstring). Vectorised over n: a positive whole number or an array
    of them; true_rate in [0, 1], threshold in (0, 1).

    Args:
        n: number of independent votes, a whole number >= 1 or an array of them (any shape; bool refused).
        true_rate: the win rate assumed true, in [0, 1].
        threshold: the win rate the Wilson lower bound must exceed, in (0, 1).
        confidence: two-sided level of the Wilson interval, in (0, 1). Default 0.95.

    Returns:
        float64 array of the shape of `n` (a numpy float64 scalar for a scalar `n`) with the power in [0, 1]
        at each n.

    Raises:
        StatsInputError: `n` is not numeric, is empty, or holds a value that is not a finite whole number
            >= 1; `true_rate` lies outside [0, 1]; `threshold` outside (0, 1); or `confidence` outside (0, 1).
    """
    try:
        nn = np.asarray(n, dtype=np.float64)
    except (TypeError, ValueError):
        raise StatsInputError(f"n must be a positive whole number of votes (or an array of them), got {n!r}") from None
    if np.asarray(n).dtype == bool or nn.size == 0 or not np.all(np.isfinite(nn)) or np.any(nn < 1) \
            or np.any(nn != np.floor(nn)):
        raise StatsInputError(f"n must be a positive whole number of votes (or an array of them), got {n!r}")
    if not (0.0 <= float(true_rate) <= 1.0):
        raise StatsInputError(f"true_rate must lie in [0, 1], got {true_rate}")
    if not (0.0 < float(threshold) < 1.0):
        raise StatsInputError(f"threshold must lie in (0, 1), got {threshold}")
    z = ndtri(0.5 + check_confidence(confidence) / 2.0)
    k_min = np.floor(nn * threshold + z * np.sqrt(nn * threshold * (1.0 - threshold))) + 1.0
    return binom.sf(k_min - 1.0, nn, true_rate)


def votes_needed(
    true_rate: float,
    threshold: float,
    *,
    confidence: float = 0.95,
    power: float = 0.8,
    design_effect: float | None = None,
    votes_per_item: int | None = None,
    icc: float | None = None,
    max_votes: int = 10_000_000,
) -> StudySize:
    """Votes needed so that, with probability `power`, the Wilson lower bound (two-sided `confidence`) of
    the win rate exceeds `threshold` when the true rate is `true_rate` (e.g. 0.83 vs 0.75).

    design_effect: given directly, or computed as 1 + (votes_per_item - 1) * icc when both are given
    (default 1: independent votes). Definitions and references: module docstring.

    Args:
        true_rate: the win rate assumed true, in (threshold, 1).
        threshold: the win rate the claim's Wilson lower bound must exceed, in (0, true_rate).
        confidence: two-sided level of the Wilson interval, in (0, 1). Default 0.95.
        power: target probability that the claim holds, in (0, 1). Default 0.8.
        design_effect: variance inflation from votes that share items, >= 1; None (default) computes it from
            `votes_per_item` and `icc`, or uses 1.0 without `icc`. Not together with `icc`.
        votes_per_item: votes collected per item, a whole number >= 1; also sets `StudySize.items`. Default
            None (items unknown).
        icc: intra-item correlation of votes, in [0, 1]; needs `votes_per_item`. Default None.
        max_votes: largest number of independent votes scanned. Default 10,000,000.

    Returns:
        A `StudySize`.

    Raises:
        StatsInputError: `confidence` or `power` is outside (0, 1); not 0 < threshold < true_rate < 1; `icc`
            without `votes_per_item`, together with `design_effect`, or outside [0, 1]; `votes_per_item` is not
            a whole number >= 1; `design_effect` is below 1 or not finite; or the target power is not reached
            within the scan (up to min(max_votes, about 3 times the normal-approximation guess) votes).
    """
    confidence = check_confidence(confidence)
    if not (0.0 < threshold < true_rate < 1.0):
        raise StatsInputError(
            f"need 0 < threshold < true_rate < 1 (a claim above the threshold), got threshold={threshold}, true_rate={true_rate}"
        )
    if not (0.0 < power < 1.0):
        raise StatsInputError(f"power must lie in (0, 1), got {power}")
    if icc is not None:
        if votes_per_item is None:
            raise StatsInputError("icc needs votes_per_item to give a design effect")
        if design_effect is not None:
            raise StatsInputError("give design_effect or (votes_per_item, icc), not both")
        if not (0.0 <= icc <= 1.0):
            raise StatsInputError(f"icc must lie in [0, 1], got {icc}")
    if votes_per_item is not None and (int(votes_per_item) != votes_per_item or votes_per_item < 1):
        raise StatsInputError(f"votes_per_item must be a whole number >= 1, got {votes_per_item}")
    if design_effect is None:
        design_effect = 1.0 + (votes_per_item - 1) * icc if icc is not None else 1.0
    if not (design_effect >= 1.0 and math.isfinite(design_effect)):
        raise StatsInputError(f"design_effect must be >= 1, got {design_effect}")

    # normal-approximation guess to bound the scan (score test, Fleiss et al. 2003 eq. 2.5)
    z_a = ndtri(0.5 + confidence / 2.0)
    z_b = ndtri(power)
    guess = ((z_a * math.sqrt(threshold * (1 - threshold)) + z_b * math.sqrt(true_rate * (1 - true_rate)))
             / (true_rate - threshold)) ** 2
    hi = int(min(max_votes, max(50, 3 * guess + 100)))
    n = np.arange(1, hi + 1)
    pw = win_rate_claim_power(n, true_rate, threshold, confidence)
    ok = pw >= power
    if not ok[-1]:
        raise StatsInputError(f"the claim needs more than {hi} votes (max_votes={max_votes})")
    # smallest n from which on every larger n in the scan also reaches the target power
    bad = np.flatnonzero(~ok)
    n_eff = int(n[bad[-1] + 1]) if bad.size else 1
    votes = int(math.ceil(n_eff * design_effect - 1e-9))
    items = int(math.ceil(votes / votes_per_item)) if votes_per_item is not None else None
    return StudySize(votes, n_eff, items, float(design_effect), float(pw[n_eff - 1]))
