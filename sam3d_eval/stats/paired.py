"""Paired comparison of two checkpoints on the same samples, and multiple-testing corrections.

- Wilcoxon signed-rank test of d = b - a (Wilcoxon 1945), computed by `scipy.stats.wilcoxon(d)` (zero
  differences dropped, "wilcox"; exact null distribution for small n without ties, normal approximation
  otherwise: scipy's method="auto"). alternative="greater" means b tends to exceed a.
- Exact McNemar test of paired binary outcomes (McNemar 1947; exact form: a two-sided binomial test of the
  discordant pairs at 1/2), as `statsmodels.stats.contingency_tables.mcnemar(exact=True)`.
- Sign-flip (paired permutation) test of per-unit differences (Fisher 1935): exact over every sign pattern
  up to 20 non-zero units, Monte Carlo beyond; McNemar's test when the differences are -1, 0, +1.
- Holm (1979) step-down family-wise correction and Benjamini-Hochberg (1995) false-discovery-rate
  correction, computed by `statsmodels.stats.multitest.multipletests`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import binom, wilcoxon
from statsmodels.stats.multitest import multipletests

from ._checks import StatsInputError, as_generator, as_sample

__all__ = [
    "WilcoxonResult",
    "McNemarResult",
    "SignFlipResult",
    "Adjusted",
    "wilcoxon_signed_rank",
    "mcnemar_exact",
    "sign_flip_test",
    "holm",
    "benjamini_hochberg",
]


@dataclass(frozen=True)
class WilcoxonResult:
    """`statistic`: scipy's signed-rank statistic (smaller rank sum for two-sided); `pvalue`; `n`: pairs
    with a non-zero difference; `mean_diff`, `median_diff`: of b - a over all pairs.

    Attributes:
        statistic: scipy's signed-rank statistic (for two-sided, the smaller of the positive and negative rank
            sums; for one-sided, the positive rank sum).
        pvalue: p-value for `alternative`, in [0, 1].
        n: number of pairs with a non-zero difference (the ones ranked).
        mean_diff: mean of b - a over all pairs, zeros included, in the units of the scores.
        median_diff: median of b - a over all pairs, zeros included.
    """

    statistic: float
    pvalue: float
    n: int
    mean_diff: float
    median_diff: float


def wilcoxon_signed_rank(
    a: Any, b: Any, *, alternative: str = "two-sided", method: str = "auto"
) -> WilcoxonResult:
    """Wilcoxon signed-rank test that the differences d = b - a `(n,)` are symmetric about 0
    (`scipy.stats.wilcoxon(b - a, alternative=alternative, method=method)`; zero differences dropped).

    alternative: "two-sided", "greater" (b tends to be larger than a: d > 0) or "less" (d < 0), the same
    direction as `mean_diff` and `paired_bootstrap`.

    Args:
        a: `(n,)` finite scores of the first side (read as float64).
        b: `(n,)` finite scores of the second side, row i paired with `a[i]`.
        alternative: "two-sided" (default), "greater" or "less", as above.
        method: scipy's p-value method ("auto" (default), "exact", "asymptotic"...), passed through.

    Returns:
        A `WilcoxonResult`.

    Raises:
        StatsInputError: `a` or `b` is not 1-D, is empty or holds NaN/inf; their lengths differ; every
            difference is zero; or `alternative` is unknown.
        ValueError: scipy rejects `method`.
    """
    av = as_sample(a, "a")
    bv = as_sample(b, "b")
    if av.size != bv.size:
        raise StatsInputError(f"a and b must be paired (same length), got {av.size} and {bv.size}")
    d = bv - av
    n = int(np.count_nonzero(d))
    if n == 0:
        raise StatsInputError("every difference b - a is zero: the signed-rank test is undefined")
    if alternative not in ("two-sided", "greater", "less"):
        raise StatsInputError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    res = wilcoxon(d, alternative=alternative, method=method)
    return WilcoxonResult(float(res.statistic), float(res.pvalue), n, float(d.mean()), float(np.median(d)))


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test. `only_a`, `only_b`: discordant samples (the event on side A only, on side B only);
    `n_discordant` = only_a + only_b; `pvalue`: two-sided exact p; `min_attainable_p`: the smallest p the
    exact test can give with `n_discordant` samples, min(1, 2 * 0.5**n_discordant) (when it is above the
    test level, no outcome could be significant: collect more samples).

    Attributes:
        only_a: samples with the event on side A only.
        only_b: samples with the event on side B only.
        n_discordant: only_a + only_b.
        pvalue: two-sided exact p-value in (0, 1]; 1.0 when there are no discordant samples.
        min_attainable_p: min(1, 2 * 0.5**n_discordant).
    """

    only_a: int
    only_b: int
    n_discordant: int
    pvalue: float
    min_attainable_p: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields.

        Returns:
            Dict of every field by name (`dataclasses.asdict`), values as stored.
        """
        return asdict(self)


def _whole_count(x: Any, name: str) -> int:
    """`x` as an int when it is a whole number >= 0 (int, or a float without a fraction), else an error."""
    ok = isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))
    if not ok or not np.isfinite(x) or x < 0 or x != np.floor(x):
        raise StatsInputError(f"{name} must be a whole number >= 0, got {x!r}")
    return int(x)


def mcnemar_exact(only_a: int, only_b: int) -> McNemarResult:
    """Exact McNemar test from the discordant counts of a paired binary outcome: `only_a` samples failed (or
    were positive) on side A only, `only_b` on side B only (concordant samples carry no information).

    Two-sided p = binomial test of min(only_a, only_b) successes in only_a + only_b trials at 1/2:
    min(1, 2 P(X <= min)), X ~ Binomial(n, 1/2); 1.0 without discordant samples. Equals
    `statsmodels.stats.contingency_tables.mcnemar([[0, only_a], [only_b, 0]], exact=True).pvalue`
    (McNemar 1947; Fagerland, Lydersen & Laake 2013 for the exact form).

    Args:
        only_a: samples with the event on side A only, a whole number >= 0 (int or integral float; not bool).
        only_b: samples with the event on side B only, same type.

    Returns:
        A `McNemarResult`.

    Raises:
        StatsInputError: a count is not a whole number >= 0 (or is a bool, NaN or inf).
    """
    na = _whole_count(only_a, "only_a")
    nb = _whole_count(only_b, "only_b")
    n = na + nb
    pvalue = 1.0 if n == 0 else float(min(1.0, 2.0 * binom.cdf(min(na, nb), n, 0.5)))
    return McNemarResult(na, nb, n, pvalue, float(min(1.0, 2.0 * 0.5**n)))


@dataclass(frozen=True)
class SignFlipResult:
    """Sign-flip test. `statistic`: T = sum of the differences; `pvalue`: two-sided, P(|T*| >= |T|);
    `n_nonzero`: units with a non-zero difference (the others cannot change T); `exact`: every sign pattern
    enumerated (else `n_resamples` random patterns, p = (1 + count) / (n_resamples + 1));
    `min_attainable_p`: the smallest exact p with this many non-zero units, min(1, 2 * 0.5**n_nonzero).

    Attributes:
        statistic: T = sum of the differences, in their units.
        pvalue: two-sided p-value in (0, 1]; 1.0 when every difference is 0.
        n_nonzero: units with a non-zero difference.
        exact: True when every sign pattern was enumerated (also when every difference is 0).
        n_resamples: random sign patterns drawn; 0 for the exact test.
        min_attainable_p: min(1, 2 * 0.5**n_nonzero).
    """

    statistic: float
    pvalue: float
    n_nonzero: int
    exact: bool
    n_resamples: int
    min_attainable_p: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields.

        Returns:
            Dict of every field by name (`dataclasses.asdict`), values as stored.
        """
        return asdict(self)


def sign_flip_test(d: Any, *, max_exact: int = 20, n_resamples: int = 20_000,
                   seed: int | np.random.Generator = 0) -> SignFlipResult:
    """Two-sided sign-flip (paired permutation) test that per-unit differences `d` `(n,)` are symmetric about
    0 (Fisher 1935; Good 2005, section 3.1): T = sum d; under the null every non-zero d_i keeps or flips its
    sign with probability 1/2, independently; p = P(|T*| >= |T|).

    Exact (all 2^m sign patterns of the m non-zero units) when m <= `max_exact`, else `n_resamples` random
    patterns from `seed` with p = (1 + count) / (n_resamples + 1). For differences in {-1, 0, +1} (one unit
    failed on one side only) it is the exact McNemar test, and for any d it is exact whatever their
    distribution, so it suits per-unit shares (a unit's failures averaged over runs) where no binomial model
    holds. Ties |T*| = |T| are decided to the rounding of the sums (1e-9 relative).

    Args:
        d: `(n,)` finite per-unit differences (read as float64), e.g. b - a.
        max_exact: largest number of non-zero differences enumerated exactly (2^m patterns). Default 20.
        n_resamples: random sign patterns for the Monte Carlo test, a positive integer; only checked and used
            when there are more than `max_exact` non-zero differences. Default 20,000.
        seed: integer seed or a `np.random.Generator` for the Monte Carlo patterns. Default 0.

    Returns:
        A `SignFlipResult`.

    Raises:
        StatsInputError: `d` is not 1-D, is empty or holds NaN/inf; or, on the Monte Carlo path, `n_resamples`
            is not a positive integer or `seed` is invalid.
    """
    x = as_sample(d, "d")
    nz = x[x != 0]
    m = int(nz.size)
    t = float(x.sum())
    if m == 0:
        return SignFlipResult(t, 1.0, 0, True, 0, 1.0)
    tol = 1e-9 * float(np.abs(nz).sum())
    if m <= max_exact:
        sums = np.zeros(1)
        for v in nz:  # all 2^m signed sums, doubling the array once per unit
            sums = np.concatenate([sums + v, sums - v])
        p = float(np.mean(np.abs(sums) >= abs(t) - tol))
        return SignFlipResult(t, min(1.0, p), m, True, 0, float(min(1.0, 2.0 * 0.5**m)))
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise StatsInputError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    rng = as_generator(seed)
    count = 0
    per = max(1, (1 << 20) // m)
    for start in range(0, n_resamples, per):
        c = min(per, n_resamples - start)
        signs = rng.integers(0, 2, (c, m)) * 2.0 - 1.0
        count += int(np.count_nonzero(np.abs(signs @ nz) >= abs(t) - tol))
    return SignFlipResult(t, (1 + count) / (n_resamples + 1), m, False, int(n_resamples),
                          float(min(1.0, 2.0 * 0.5**m)))


class Adjusted(NamedTuple):
    """Adjusted p-values `(m,)` in the input order and which hypotheses are rejected at `alpha`.

    Attributes:
        pvalues: `(m,)` float64 adjusted p-values in [0, 1], in the input order.
        reject: `(m,)` bool, True where the hypothesis is rejected at `alpha`.
    """

    pvalues: np.ndarray
    reject: np.ndarray


def _adjust(pvalues: Any, alpha: float, method: str) -> Adjusted:
    p = as_sample(pvalues, "pvalues")
    if np.any((p < 0) | (p > 1)):
        raise StatsInputError("pvalues must lie in [0, 1]")
    if not (0.0 < alpha < 1.0):
        raise StatsInputError(f"alpha must lie in (0, 1), got {alpha}")
    reject, adjusted, _, _ = multipletests(p, alpha=alpha, method=method)
    return Adjusted(np.asarray(adjusted, dtype=np.float64), np.asarray(reject, dtype=bool))


def holm(pvalues: Any, alpha: float = 0.05) -> Adjusted:
    """Holm-Bonferroni step-down adjusted p-values (family-wise error rate `alpha`; Holm 1979).

    Args:
        pvalues: `(m,)` raw p-values in [0, 1] (read as float64), no NaN.
        alpha: family-wise error rate for `reject`, in (0, 1). Default 0.05.

    Returns:
        An `Adjusted` with `(m,)` float64 adjusted p-values and `(m,)` bool rejections, in the input order.

    Raises:
        StatsInputError: `pvalues` is not 1-D, is empty, holds NaN/inf or a value outside [0, 1]; or `alpha`
            lies outside (0, 1).
    """
    return _adjust(pvalues, alpha, "holm")


def benjamini_hochberg(pvalues: Any, alpha: float = 0.05) -> Adjusted:
    """Benjamini-Hochberg step-up adjusted p-values (false discovery rate `alpha`; Benjamini & Hochberg 1995).

    Args:
        pvalues: `(m,)` raw p-values in [0, 1] (read as float64), no NaN.
        alpha: false discovery rate for `reject`, in (0, 1). Default 0.05.

    Returns:
        An `Adjusted` with `(m,)` float64 adjusted p-values and `(m,)` bool rejections, in the input order.

    Raises:
        StatsInputError: `pvalues` is not 1-D, is empty, holds NaN/inf or a value outside [0, 1]; or `alpha`
            lies outside (0, 1).
    """
    return _adjust(pvalues, alpha, "fdr_bh")
