"""Aggregate statistics over several training runs (seeds) scored on the same tasks.

Agarwal, Schwarzer, Castro, Courville & Bellemare 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice" (NeurIPS), as implemented by their `rliable` library:

- IQM: the interquartile mean, the 25% trimmed mean of all num_runs x num_tasks scores pooled
  (`rliable.metrics.aggregate_iqm` = `scipy.stats.trim_mean(scores, 0.25, axis=None)`);
- probability of improvement P(X > Y): per task, the Mann-Whitney U statistic of x > y over the runs (ties
  counted half) divided by n_x * n_y, averaged over tasks (`rliable.metrics.probability_of_improvement`);
- stratified bootstrap: the tasks stay fixed and the runs are resampled with replacement within each task
  (`rliable.library.StratifiedBootstrap`); several arrays (X and Y for the probability of improvement) are
  each resampled on their own (`StratifiedIndependentBootstrap`). Percentile interval of the replicates.

Scores are `(num_runs, num_tasks)` float arrays: row = run (seed), column = task (a test sample or any unit
scored by every run).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import trim_mean

from ._checks import StatsInputError, as_generator
from .bootstrap import _CHUNK_ELEMENTS, BootstrapResult, _check_setup, bootstrap_interval

__all__ = ["iqm", "probability_of_improvement", "stratified_bootstrap_ci"]


def _as_scores(values: Any, name: str, *, min_runs: int = 1) -> np.ndarray:
    """`values` as a finite `(num_runs, num_tasks)` float64 array, or a StatsInputError naming `name`."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsInputError(f"{name} must be a numeric (num_runs, num_tasks) array: {exc}") from None
    if arr.ndim != 2:
        raise StatsInputError(f"{name} must be 2-D (num_runs, num_tasks), got shape {arr.shape}")
    if arr.size == 0:
        raise StatsInputError(f"{name} is empty (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))
        raise StatsInputError(
            f"{name} has {bad.shape[0]} non-finite value(s) (first at run {int(bad[0, 0])}, "
            f"task {int(bad[0, 1])}); drop failed runs or tasks first"
        )
    if arr.shape[0] < min_runs:
        raise StatsInputError(
            f"{name} needs at least {min_runs} runs (rows) for a bootstrap interval, got {arr.shape[0]}: "
            "with one run there is nothing to resample"
        )
    return arr


def _check_same_tasks(arrays: Sequence[np.ndarray], names: Sequence[str]) -> None:
    tasks = arrays[0].shape[1]
    for arr, name in zip(arrays[1:], names[1:]):
        if arr.shape[1] != tasks:
            raise StatsInputError(
                f"{name} has {arr.shape[1]} tasks (columns) but {names[0]} has {tasks}: every array must "
                "score the same tasks"
            )


def iqm(scores: Any) -> float:
    """Interquartile mean of `scores` `(num_runs, num_tasks)` (units of the scores): the mean of the entries
    left after dropping the lowest and the highest 25% of all num_runs * num_tasks entries pooled.

    Exactly rliable's `aggregate_iqm`, `scipy.stats.trim_mean(scores, proportiontocut=0.25, axis=None)`
    (int(0.25 * N) entries cut at each end). Agarwal et al. 2021.

    Args:
        scores: `(num_runs, num_tasks)` finite scores (read as float64), row = run (seed), column = task.

    Returns:
        The interquartile mean as a float, in the units of the scores.

    Raises:
        StatsInputError: `scores` is not numeric, not 2-D, empty or holds NaN/inf.
    """
    arr = _as_scores(scores, "scores")
    return float(trim_mean(arr, proportiontocut=0.25, axis=None))


def probability_of_improvement(scores_x: Any, scores_y: Any) -> float:
    """P(X > Y) in [0, 1] for `scores_x` `(n_x, num_tasks)` and `scores_y` `(n_y, num_tasks)` (n_x, n_y may
    differ): per task j, the Mann-Whitney U statistic #{(a, b): x[a, j] > y[b, j]} + 0.5 #{ties}, divided by
    n_x * n_y, then the mean over tasks. A task whose two columns are identical gives exactly 0.5.

    Higher means X is better when higher scores are better. For a lower-is-better metric (Chamfer distance)
    pass negated scores, `probability_of_improvement(-x, -y)`: the probability that X scores lower (the
    same number as `probability_of_improvement(y, x)`). P(X > Y) + P(Y > X) = 1.
    rliable's `probability_of_improvement` (scipy `mannwhitneyu(x, y, alternative="greater").statistic /
    (n_x * n_y)` per task); Agarwal et al. 2021.

    Args:
        scores_x: `(n_x, num_tasks)` finite scores of X (read as float64), row = run, column = task.
        scores_y: `(n_y, num_tasks)` finite scores of Y on the same tasks in the same column order.

    Returns:
        P(X > Y) as a float in [0, 1].

    Raises:
        StatsInputError: an array is not numeric, not 2-D, empty or holds NaN/inf; or their task counts differ.
    """
    x = _as_scores(scores_x, "scores_x")
    y = _as_scores(scores_y, "scores_y")
    _check_same_tasks([x, y], ["scores_x", "scores_y"])
    n_x, n_y, tasks = x.shape[0], y.shape[0], x.shape[1]
    u = np.empty(tasks)
    per = max(1, _CHUNK_ELEMENTS // (n_x * n_y))
    for start in range(0, tasks, per):
        cols = slice(start, min(tasks, start + per))
        xa, yb = x[:, None, cols], y[None, :, cols]  # (n_x, 1, c) against (1, n_y, c)
        u[cols] = np.count_nonzero(xa > yb, axis=(0, 1)) + 0.5 * np.count_nonzero(xa == yb, axis=(0, 1))
    # Identical columns already give n^2 / 2 exactly (each pair (a, b) is mirrored by (b, a)); kept explicit.
    if n_x == n_y:
        u[np.all(x == y, axis=0)] = 0.5 * n_x * n_y
    return float(np.mean(u / (n_x * n_y)))


def _split_samples(scores: Any) -> tuple[list[np.ndarray], bool]:
    """(arrays, several): a tuple is always several arrays; a list is several arrays when every entry is
    2-D, else the rows of one array."""
    if isinstance(scores, tuple) or (
        isinstance(scores, list) and len(scores) > 0 and all(_is_2d(e) for e in scores)
    ):
        if len(scores) == 0:
            raise StatsInputError("scores is an empty tuple: pass one (num_runs, num_tasks) array or several")
        names = [f"scores[{k}]" for k in range(len(scores))]
        arrays = [_as_scores(s, n, min_runs=2) for s, n in zip(scores, names)]
        _check_same_tasks(arrays, names)
        return arrays, True
    return [_as_scores(scores, "scores", min_runs=2)], False


def _is_2d(value: Any) -> bool:
    try:
        return np.ndim(value) == 2
    except ValueError:  # ragged nested lists
        return False


def _as_float(value: Any, what: str) -> float:
    out = np.asarray(value, dtype=np.float64)
    if out.size != 1:
        raise StatsInputError(f"statistic must return one number, got shape {out.shape} on {what}")
    return float(out.reshape(()))


def stratified_bootstrap_ci(
    scores: Any,
    statistic: Callable[..., float],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> BootstrapResult:
    """Stratified-bootstrap percentile interval of `statistic(scores)` (rliable's `StratifiedBootstrap`).

    `scores`: one `(num_runs, num_tasks)` array, with `statistic(array) -> float` (e.g. `iqm`); or a tuple
    (or a list of 2-D arrays) of arrays `(n_k, num_tasks)` scoring the same tasks, with
    `statistic(*arrays) -> float` (e.g. `probability_of_improvement` on `(scores_x, scores_y)`). Each
    resample draws, independently within each task (column) and for each array on its own, n_k run indices
    with replacement, so every task keeps n_k entries and a column's values only come from that column;
    tasks are never resampled. `statistic` is called once per resample (no `axis` argument). Every array
    needs at least 2 runs.

    Random draws, in this order: resamples are taken in chunks of
    `c = max(1, _CHUNK_ELEMENTS // sum_k(n_k * num_tasks))` (`_CHUNK_ELEMENTS` = 2**18: about 2 MiB of int64
    indices per chunk); per chunk, for each array k in order, one `rng.integers(0, n_k, size=(c, n_k,
    num_tasks))` `idx_k`, and resample b of array k is `array_k[idx_k[b], arange(num_tasks)]`
    (entry (i, j) = array_k[idx_k[b, i, j], j]). `rng = as_generator(seed)`.

    Agarwal et al. 2021.

    Args:
        scores: one `(num_runs, num_tasks)` finite array, or a tuple / list of 2-D arrays `(n_k, num_tasks)`, as
            above; at least 2 runs in every array.
        statistic: callable taking the array(s) (one resample each) and returning one number.
        n_resamples: number of bootstrap replicates B, an integer >= 2. Default 2000.
        confidence: two-sided confidence level in (0, 1). Default 0.95.
        seed: integer seed or a `np.random.Generator` (used as is, so its state advances). Default 0.

    Returns:
        A `BootstrapResult` (method "percentile": linear quantiles of the replicates; se, drift and the
        replicates as every bootstrap of the package), in the units of `statistic`.

    Raises:
        StatsInputError: bad `confidence`, `n_resamples` or `seed`; `statistic` is not callable; an array is
            not numeric, not 2-D, empty, holds NaN/inf or has fewer than 2 runs; arrays differ in task count;
            an empty tuple; `statistic` returns more than one number; or a replicate is not finite.
    """
    confidence, n_resamples = _check_setup(confidence, n_resamples, "percentile")
    if not callable(statistic):
        raise StatsInputError(f"statistic must be a callable, got {type(statistic).__name__}")
    arrays, several = _split_samples(scores)
    rng = as_generator(seed)
    estimate = _as_float(statistic(*arrays) if several else statistic(arrays[0]), "the data")

    tasks = arrays[0].shape[1]
    cols = np.arange(tasks)
    per = max(1, _CHUNK_ELEMENTS // sum(a.shape[0] * tasks for a in arrays))
    reps = np.empty(n_resamples)
    for start in range(0, n_resamples, per):
        c = min(per, n_resamples - start)
        idx = [rng.integers(0, a.shape[0], size=(c, a.shape[0], tasks)) for a in arrays]
        resampled = [a[i, cols] for a, i in zip(arrays, idx)]  # (c, n_k, num_tasks) each
        for b in range(c):
            reps[start + b] = _as_float(statistic(*(r[b] for r in resampled)), "a resample")
    return bootstrap_interval(reps, estimate, confidence=confidence, method="percentile")
