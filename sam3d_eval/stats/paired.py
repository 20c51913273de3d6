"""Paired comparison of two checkpoints on the same samples, and multiple-testing corrections.

- Wilcoxon signed-rank test of b - a (Wilcoxon 1945), computed by `scipy.stats.wilcoxon` (zero
  differences dropped, "wilcox"; exact null distribution for small n without ties, normal approximation
  otherwise: scipy's method="auto").
- Holm (1979) step-down family-wise correction and Benjamini-Hochberg (1995) false-discovery-rate
  correction, computed by `statsmodels.stats.multitest.multipletests`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import wilcoxon
from statsmodels.stats.multitest import multipletests

from ._checks import StatsInputError, as_sample

__all__ = ["WilcoxonResult", "Adjusted", "wilcoxon_signed_rank", "holm", "benjamini_hochberg"]


@dataclass(frozen=True)
class WilcoxonResult:
    """`statistic`: scipy's signed-rank statistic (smaller rank sum for two-sided); `pvalue`; `n`: pairs
    with a non-zero difference; `mean_diff`, `median_diff`: of b - a over all pairs."""

    statistic: float
    pvalue: float
    n: int
    mean_diff: float
    median_diff: float


def wilcoxon_signed_rank(
    a: Any, b: Any, *, alternative: str = "two-sided", method: str = "auto"
) -> WilcoxonResult:
    """Wilcoxon signed-rank test that the differences b - a `(n,)` are symmetric about 0
    (`scipy.stats.wilcoxon(a, b, alternative=alternative, method=method)`; zero differences dropped)."""
    av = as_sample(a, "a")
    bv = as_sample(b, "b")
    if av.size != bv.size:
        raise StatsInputError(f"a and b must be paired (same length), got {av.size} and {bv.size}")
    d = bv - av
    n = int(np.count_nonzero(d))
    if n == 0:
        raise StatsInputError("every difference b - a is zero: the signed-rank test is undefined")
    res = wilcoxon(av, bv, alternative=alternative, method=method)
    return WilcoxonResult(float(res.statistic), float(res.pvalue), n, float(d.mean()), float(np.median(d)))


class Adjusted(NamedTuple):
    """Adjusted p-values `(m,)` in the input order and which hypotheses are rejected at `alpha`."""

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
    """Holm-Bonferroni step-down adjusted p-values (family-wise error rate `alpha`; Holm 1979)."""
    return _adjust(pvalues, alpha, "holm")


def benjamini_hochberg(pvalues: Any, alpha: float = 0.05) -> Adjusted:
    """Benjamini-Hochberg step-up adjusted p-values (false discovery rate `alpha`; Benjamini & Hochberg 1995)."""
    return _adjust(pvalues, alpha, "fdr_bh")
