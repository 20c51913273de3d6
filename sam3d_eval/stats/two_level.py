"""Two-level bootstrap for comparing two sides, each with several runs, on shared test samples.

Each side (A, B) holds scores of `R` runs (training seeds) on the same `N` samples: `(R_a, N)` and
`(R_b, N)`. One resample draws, independently,

1. `R_a` runs of A and `R_b` runs of B with replacement (run-to-run variation; a side with one run keeps it);
2. the samples' clusters with replacement (test-set variation), the SAME draw for both sides, because the
   samples are shared: a cluster is a unit whose samples are not independent (the two twins of a pair,
   the views of one object); every sample of a drawn cluster enters with the cluster's multiplicity.
   With `strata`, clusters are drawn within each stratum (e.g. domain), so every resample keeps the
   strata's sizes in clusters.

A statistic of a resample is a function of the drawn run indices and the sample weights, evaluated for a
chunk of resamples at once: `statistic(runs_a (c, R_a), runs_b (c, R_b), weights (c, N)) -> (c,)`. The
estimate is the statistic of the data itself (every run once, every weight 1), and the interval is the
percentile interval of the replicates (`bootstrap.bootstrap_interval`). The reducers below build the usual
statistics: the mean over drawn runs of each run's weighted mean (`run_means`) or weighted median
(`run_medians`), and the probability of improvement over runs, weighted over samples
(`run_probability_of_improvement`). Several statistics are evaluated on the same draws, so differences
and ratios of them are consistent.

This pairs what rliable's stratified bootstrap (Agarwal et al. 2021) leaves unpaired: rliable resamples
each algorithm's runs within each task; here the tasks (samples) are shared by both sides and resampled
together, as a paired bootstrap does for one run per side (Efron & Tibshirani 1993, ch. 6; clusters:
Davison & Hinkley 1997, section 3.8). `bootstrap_pvalue` turns replicates into the two-sided p-value
obtained by inverting the percentile interval (with the Monte Carlo correction that keeps it above 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ._checks import StatsInputError, as_generator, check_confidence
from .bootstrap import BootstrapResult, bootstrap_interval

__all__ = [
    "TwoLevelResult",
    "bootstrap_pvalue",
    "run_means",
    "run_medians",
    "run_probability_of_improvement",
    "two_level_bootstrap",
]

# Sample weights drawn at once (float64 elements): bounds memory at any N x n_resamples.
_CHUNK_ELEMENTS = 1 << 20

Statistic = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TwoLevelResult:
    """Results of `two_level_bootstrap`, by statistic name.

    estimates: the statistic on the data; intervals: a `BootstrapResult` (percentile) per statistic whose
    replicates are all finite; undefined: why a statistic has no interval (e.g. a ratio whose denominator is 0
    on some resamples); n_runs: (R_a, R_b); n_clusters: the units resampled.

    Attributes:
        estimates: `{name: value}` of each statistic on the data (every run once, unit weights); may be NaN or
            inf when the statistic is undefined on the data.
        intervals: `{name: BootstrapResult}` percentile intervals, only for statistics whose estimate and every
            replicate are finite.
        undefined: `{name: reason}` for the statistics left out of `intervals` ("undefined on the data" or
            "undefined on k of B resamples").
        n_runs: `(R_a, R_b)` runs per side.
        n_clusters: K, the number of resampled units (clusters, or samples without clusters).
        replicates: `{name: (B,) float64}` replicates of every statistic, undefined ones included (they may hold
            NaN/inf); left out of repr.
    """

    estimates: dict[str, float]
    intervals: dict[str, BootstrapResult]
    undefined: dict[str, str]
    n_runs: tuple[int, int]
    n_clusters: int
    replicates: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    def interval(self, name: str) -> tuple[float, float]:
        """(low, high) of one statistic, NaN when undefined.

        Args:
            name: a key of the `statistics` mapping given to `two_level_bootstrap`.

        Returns:
            `(low, high)` floats in the statistic's units; `(NaN, NaN)` when `name` has no interval (undefined
            or unknown).
        """
        r = self.intervals.get(name)
        return (r.low, r.high) if r is not None else (float("nan"), float("nan"))

    def pvalue(self, name: str, null: float = 0.0) -> float:
        """Two-sided bootstrap p-value of one statistic against `null` (`bootstrap_pvalue`); NaN when undefined.

        Args:
            name: a key of the `statistics` mapping given to `two_level_bootstrap`.
            null: the value tested, in the statistic's units. Default 0.0.

        Returns:
            The p-value as a float in (0, 1]; NaN when `name` has no interval (undefined or unknown).
        """
        reps = self.replicates.get(name)
        return bootstrap_pvalue(reps, null) if reps is not None and name in self.intervals else float("nan")


def bootstrap_pvalue(replicates: Any, null: float = 0.0) -> float:
    """Two-sided p-value from bootstrap replicates `(B,)`:
    ``min(1, 2 (1 + min(#(T* <= null), #(T* >= null))) / (B + 1))``.

    Up to the Monte Carlo correction (1 + count) / (B + 1) (Davison & Hinkley 1997, section 4.2.1: never 0,
    at least 2 / (B + 1)), it is the smallest alpha at which the (1 - alpha) percentile interval excludes
    `null` (the interval inversion of Efron & Tibshirani 1993, section 15.4), so "p < alpha" and "the
    percentile interval at 1 - alpha excludes the null" agree up to about 2 / B.

    Args:
        replicates: `(B,)` finite bootstrap replicates (any shape; flattened, read as float64), B >= 1.
        null: the value tested, in the statistic's units. Default 0.0.

    Returns:
        The p-value as a float in [2 / (B + 1), 1].

    Raises:
        StatsInputError: `replicates` is empty or holds NaN/inf.
    """
    reps = np.asarray(replicates, dtype=np.float64).ravel()
    if reps.size == 0 or not np.all(np.isfinite(reps)):
        raise StatsInputError("bootstrap_pvalue needs finite replicates")
    below = int(np.count_nonzero(reps <= null))
    above = int(np.count_nonzero(reps >= null))
    return min(1.0, 2.0 * (1 + min(below, above)) / (reps.size + 1))


def _run_pick(per_run: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Mean over the drawn runs: per_run `(c, R)`, runs `(c, R')` -> `(c,)`."""
    return np.take_along_axis(per_run, runs, axis=1).mean(axis=1)


def run_means(values: np.ndarray, weights: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Per resample, the mean over the drawn runs of each run's weighted mean over samples.

    values `(R, N)` finite; weights `(c, N)` sample multiplicities; runs `(c, R')` drawn run indices. -> `(c,)`.

    Args:
        values: `(R, N)` float scores, row = run, column = sample; finite (not checked).
        weights: `(c, N)` float sample multiplicities, row = resample; each row must have a positive sum (a
            zero-sum row gives NaN).
        runs: `(c, R')` int indices into the rows of `values`, the runs drawn for each resample.

    Returns:
        `(c,)` float64, one value per resample, in the units of `values`.
    """
    totals = weights.sum(axis=1, keepdims=True)
    per_run = (weights @ values.T) / totals
    return _run_pick(per_run, runs)


def _weighted_median_rows(x_sorted: np.ndarray, w_sorted: np.ndarray) -> np.ndarray:
    """Median of each resample's multiset: `x_sorted` `(N,)` ascending, `w_sorted` `(c, N)` integer counts in
    that order. With an even total count the mean of the two middle values, so that weights of 1 give
    `np.median` exactly."""
    cum = np.cumsum(w_sorted, axis=1)
    total = cum[:, -1]
    lo_pos = np.floor((total + 1) / 2.0)  # 1-based positions of the middle value(s)
    hi_pos = np.floor(total / 2.0) + 1
    lo = (cum < lo_pos[:, None]).sum(axis=1)  # first index whose cumulative count reaches the position
    hi = (cum < hi_pos[:, None]).sum(axis=1)
    return 0.5 * (x_sorted[lo] + x_sorted[hi])


def run_medians(values: np.ndarray, weights: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Per resample, the mean over the drawn runs of each run's median over samples, each sample counted
    with its multiplicity (integer weights). values `(R, N)` finite; weights `(c, N)`; runs `(c, R')` -> `(c,)`.

    Args:
        values: `(R, N)` float scores, row = run, column = sample; finite (not checked).
        weights: `(c, N)` whole-number sample multiplicities (any numeric dtype), row = resample; each row must
            have a positive sum.
        runs: `(c, R')` int indices into the rows of `values`, the runs drawn for each resample.

    Returns:
        `(c,)` float64, one value per resample, in the units of `values`; with an even total count a run's
        median is the mean of the two middle values.
    """
    per_run = np.empty((weights.shape[0], values.shape[0]))
    for r in range(values.shape[0]):
        order = np.argsort(values[r], kind="stable")
        per_run[:, r] = _weighted_median_rows(values[r][order], weights[:, order])
    return _run_pick(per_run, runs)


def run_probability_of_improvement(x: np.ndarray, y: np.ndarray, weights: np.ndarray, runs_x: np.ndarray,
                                   runs_y: np.ndarray) -> np.ndarray:
    """Per resample, P(X > Y): for each sample the share of (drawn run of X, drawn run of Y) pairs in which
    X's score is higher, ties counted half, averaged over samples with their weights. With every run drawn
    once and unit weights this is `runs.probability_of_improvement(x, y)` (samples as tasks). For
    lower-is-better scores pass them negated.

    x `(R_x, N)`, y `(R_y, N)`, weights `(c, N)`, runs_x `(c, R_x')`, runs_y `(c, R_y')` -> `(c,)`.

    Args:
        x: `(R_x, N)` float scores of X, row = run, column = sample.
        y: `(R_y, N)` float scores of Y on the same samples.
        weights: `(c, N)` float sample multiplicities, row = resample; each row must have a positive sum.
        runs_x: `(c, R_x')` int indices of the X runs drawn per resample.
        runs_y: `(c, R_y')` int indices of the Y runs drawn per resample.

    Returns:
        `(c,)` float64 P(X > Y) in [0, 1], one per resample.
    """
    rx, ry = x.shape[0], y.shape[0]
    # wins[j, i, n]: run j of X against run i of Y on sample n
    wins = (x[:, None, :] > y[None, :, :]) + 0.5 * (x[:, None, :] == y[None, :, :])
    per_pair = np.einsum("cn,jin->cji", weights, wins) / weights.sum(axis=1)[:, None, None]
    cx = np.stack([np.bincount(r, minlength=rx) for r in runs_x]).astype(np.float64) / runs_x.shape[1]
    cy = np.stack([np.bincount(r, minlength=ry) for r in runs_y]).astype(np.float64) / runs_y.shape[1]
    return np.einsum("cj,cji,ci->c", cx, per_pair, cy)


def _cluster_codes(clusters: Any, n: int) -> np.ndarray:
    if clusters is None:
        return np.arange(n, dtype=np.int64)
    labels = np.asarray(clusters, dtype=object)
    if labels.shape != (n,):
        raise StatsInputError(f"clusters must have one label per sample ({n}), got shape {labels.shape}")
    codes = pd.factorize(pd.Series(labels), sort=True)[0].astype(np.int64)
    if np.any(codes < 0):
        raise StatsInputError("clusters has missing labels")
    return codes


def _strata_of_clusters(strata: Any, codes: np.ndarray, n: int) -> list[np.ndarray]:
    """The cluster codes of each stratum (every cluster in exactly one)."""
    k = int(codes.max()) + 1
    if strata is None:
        return [np.arange(k)]
    labels = np.asarray(strata, dtype=object)
    if labels.shape != (n,):
        raise StatsInputError(f"strata must have one label per sample ({n}), got shape {labels.shape}")
    s_codes = pd.factorize(pd.Series(labels), sort=True)[0]
    if np.any(s_codes < 0):
        raise StatsInputError("strata has missing labels")
    per_cluster = np.full(k, -1)
    for c, s in zip(codes, s_codes):
        if per_cluster[c] not in (-1, s):
            raise StatsInputError("a cluster spans two strata; clusters must lie within one stratum")
        per_cluster[c] = s
    return [np.flatnonzero(per_cluster == s) for s in range(int(s_codes.max()) + 1)]


def two_level_bootstrap(
    statistics: Mapping[str, Statistic],
    n_runs: tuple[int, int],
    n_samples: int,
    *,
    clusters: Sequence[Any] | None = None,
    strata: Sequence[Any] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int | np.random.Generator = 0,
) -> TwoLevelResult:
    """Percentile intervals of several statistics over one set of two-level resamples (module docstring).

    Random draws, per chunk of c resamples: the run indices of A `(c, R_a)`, then of B `(c, R_b)`, then the
    unit indices of each stratum in turn `(c, K_s)` (`Generator.integers`).

    Args:
        statistics: ``{name: f(runs_a (c, R_a), runs_b (c, R_b), weights (c, N)) -> (c,)}``; run indices are
            int64, weights float64 sample multiplicities. A side with one run always gets `(c, 1)` zeros.
        n_runs: (R_a, R_b), each >= 1; a side with one run is not resampled over runs.
        n_samples: N, the shared samples.
        clusters: `(N,)` labels of the resampled units, no missing label (None: every sample is its own unit).
        strata: `(N,)` labels, no missing label; units are drawn within each stratum (None: one stratum).
        confidence: two-sided interval level in (0, 1). Default 0.95.
        n_resamples: number of resamples B, an integer >= 2. Default 2000.
        seed: integer seed or a `np.random.Generator` (used as is, so its state advances). Default 0.

    Returns:
        `TwoLevelResult`; a statistic that is NaN/inf on the data or on any resample is listed in `undefined`
        instead of `intervals`.

    Raises:
        StatsInputError: `confidence` outside (0, 1); `n_resamples` not an integer >= 2; a side with fewer than
            one run; fewer than 2 units (no interval); `clusters` or `strata` of the wrong shape or with missing
            labels; clusters that span strata; a bad `seed`; or a statistic returning the wrong shape.
    """
    confidence = check_confidence(confidence)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 2:
        raise StatsInputError(f"n_resamples must be an integer >= 2, got {n_resamples!r}")
    ra, rb = (int(r) for r in n_runs)
    if ra < 1 or rb < 1:
        raise StatsInputError(f"each side needs at least one run, got {n_runs}")
    n = int(n_samples)
    codes = _cluster_codes(clusters, n) if n else np.zeros(0, dtype=np.int64)
    k = int(codes.max()) + 1 if n else 0
    if k < 2:
        raise StatsInputError(f"an interval needs at least 2 resampled units, got {k}")
    groups = _strata_of_clusters(strata, codes, n)
    rng = as_generator(seed)

    ones = np.ones((1, n))
    estimates: dict[str, float] = {}
    for name, f in statistics.items():
        v = np.asarray(f(np.arange(ra)[None, :], np.arange(rb)[None, :], ones), dtype=np.float64)
        if v.shape != (1,):
            raise StatsInputError(f"statistic {name!r} must return one value per resample, got shape {v.shape}")
        estimates[name] = float(v[0])

    reps = {name: np.empty(n_resamples) for name in statistics}
    per = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, n_resamples, per):
        c = min(per, n_resamples - start)
        runs_a = rng.integers(0, ra, (c, ra)) if ra > 1 else np.zeros((c, 1), dtype=np.int64)
        runs_b = rng.integers(0, rb, (c, rb)) if rb > 1 else np.zeros((c, 1), dtype=np.int64)
        counts = np.zeros(c * k)
        offsets = (np.arange(c) * k)[:, None]
        for g in groups:
            drawn = g[rng.integers(0, g.size, (c, g.size))]
            counts += np.bincount((drawn + offsets).ravel(), minlength=c * k)
        weights = counts.reshape(c, k)[:, codes]
        for name, f in statistics.items():
            v = np.asarray(f(runs_a, runs_b, weights), dtype=np.float64)
            if v.shape != (c,):
                raise StatsInputError(f"statistic {name!r} must return one value per resample, got shape {v.shape}")
            reps[name][start:start + c] = v

    intervals: dict[str, BootstrapResult] = {}
    undefined: dict[str, str] = {}
    for name, r in reps.items():
        bad = int(np.count_nonzero(~np.isfinite(r)))
        if bad or not np.isfinite(estimates[name]):
            undefined[name] = (f"undefined on {bad} of {r.size} resamples" if bad else "undefined on the data")
            continue
        intervals[name] = bootstrap_interval(r, estimates[name], confidence=confidence)
    return TwoLevelResult(estimates, intervals, undefined, (ra, rb), k, reps)
