"""Feature-space gap between two domains (synthetic vs real) on any feature matrices `(n, d)`, `(m, d)`.

Written here (numpy / scipy only; no sklearn, no torch):
- Unbiased MMD^2 (Gretton et al., "A Kernel Two-Sample Test", JMLR 2012, eq. 3):
  1/(n(n-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j) - 2/(nm) sum_ij k(x_i, y_j), with a
  Gaussian kernel exp(-|a - b|^2 / (2 s^2)) (s: median pairwise distance of the pooled sample, the median
  heuristic) or the KID polynomial kernel; p-value from label permutations, (1 + #{null >= observed}) /
  (1 + n_permutations) (Phipson & Smyth 2010), all permutations evaluated at once from one kernel matrix.
- KID (Binkowski et al., "Demystifying MMD GANs", ICLR 2018): unbiased MMD^2 with the kernel
  (a . b / d + 1)^3 on `n_subsets` random subsets of `subset_size` rows of each set; mean and standard
  deviation (ddof=0, as the authors' code and torchmetrics) over subsets.
- Proxy A-distance (Ben-David et al., "Analysis of representations for domain adaptation", NIPS 2007):
  2 (1 - 2 e) with e the held-out error of a linear domain classifier (L2-regularised logistic regression
  on standardised features, fitted by damped Newton / IRLS) over stratified k folds; e is the balanced error (mean
  of the two domains' error rates) so unequal set sizes do not pass for a gap. The interval is a t interval
  over the per-fold values (folds share training data, so it is approximate, a spread rather than a
  guarantee). Near 0: domains indistinguishable; 2: perfectly separable; below 0: worse than chance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as _st
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from ._checks import StatsInputError, as_generator, check_confidence

__all__ = ["MMDResult", "KIDResult", "PADResult", "mmd2_unbiased", "kid", "proxy_a_distance", "KERNELS"]

KERNELS = ("rbf", "polynomial")
_PERM_ELEMENTS = 1 << 23


def _features(x: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsInputError(f"{name} must be a numeric feature matrix: {exc}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise StatsInputError(f"{name} must be a (n, d) feature matrix, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise StatsInputError(f"{name} is empty")
    if arr.shape[1] == 0:
        raise StatsInputError(f"{name} has no feature columns")
    bad = ~np.isfinite(arr)
    if bad.any():
        all_nan = np.flatnonzero(bad.all(axis=0))
        if all_nan.size:
            raise StatsInputError(f"{name} has all-NaN feature column(s) {all_nan[:10].tolist()}")
        rows = np.flatnonzero(bad.any(axis=1))
        raise StatsInputError(f"{name} has non-finite values in {rows.size} row(s) (first: row {int(rows[0])})")
    return arr


def _pair(x: Any, y: Any, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    xs = _features(x, "x")
    ys = _features(y, "y")
    if xs.shape[1] != ys.shape[1]:
        raise StatsInputError(f"x and y must have the same number of features, got {xs.shape[1]} and {ys.shape[1]}")
    for name, a in (("x", xs), ("y", ys)):
        if a.shape[0] < min_rows:
            raise StatsInputError(f"{name} needs at least {min_rows} rows, got {a.shape[0]}")
    return xs, ys


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def _polynomial(a: np.ndarray, b: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    return (a @ b.T / a.shape[1] + coef0) ** degree


def _mmd2_from_blocks(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    n, m = kxx.shape[0], kyy.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def _permutation_mmd2(k0: np.ndarray, n: int, assign: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 for each row of `assign` `(P, N)` bool (True = first sample, n of them), from the
    pooled kernel matrix `k0` `(N, N)` with a zero diagonal."""
    m = k0.shape[0] - n
    a = assign.astype(np.float64)
    ak = a @ k0
    s_xx = np.einsum("pi,pi->p", ak, a)
    s_xy = ak.sum(axis=1) - s_xx
    s_yy = k0.sum() - s_xx - 2.0 * s_xy
    return s_xx / (n * (n - 1)) + s_yy / (m * (m - 1)) - 2.0 * s_xy / (n * m)


@dataclass(frozen=True)
class MMDResult:
    """`mmd2`: unbiased MMD^2 (can be slightly negative); `pvalue`: permutation p (NaN without
    permutations); `bandwidth`: the Gaussian kernel's s (NaN for the polynomial kernel).

    Attributes:
        mmd2: unbiased MMD^2 estimate (squared kernel-feature units; can be slightly negative).
        pvalue: permutation p-value in (0, 1]; NaN when `n_permutations` is 0.
        n_permutations: number of label permutations evaluated (0 = no test).
        kernel: "rbf" or "polynomial".
        bandwidth: the Gaussian kernel's s in feature units; NaN for the polynomial kernel.
        null: `(n_permutations,)` float64 MMD^2 under permuted labels (empty without permutations); left out of
            repr and equality.
    """

    mmd2: float
    pvalue: float
    n_permutations: int
    kernel: str
    bandwidth: float
    null: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty(0))


def mmd2_unbiased(
    x: Any,
    y: Any,
    *,
    kernel: str = "rbf",
    bandwidth: float | None = None,
    n_permutations: int = 1000,
    seed: int | np.random.Generator = 0,
) -> MMDResult:
    """Unbiased MMD^2 between feature sets `x` `(n, d)` and `y` `(m, d)` (n, m >= 2) with a permutation
    p-value (module docstring). kernel "rbf" (bandwidth s, default the pooled median distance) or
    "polynomial" (the KID kernel). n_permutations=0 skips the test. Memory: one (n+m)^2 kernel matrix.

    Args:
        x: `(n, d)` numeric features of the first domain (e.g. synthetic), read as float64; a 1-D `(n,)` array
            is one feature column. No NaN/inf.
        y: `(m, d)` features of the second domain (e.g. real), same d.
        kernel: "rbf" (default, Gaussian) or "polynomial" ((a . b / d + 1)^3).
        bandwidth: Gaussian kernel s in feature units (> 0, finite); None (default) uses the median pairwise
            distance of the pooled rows. Ignored by the polynomial kernel.
        n_permutations: number of label permutations for the p-value, an integer >= 0; 0 skips the test.
            Default 1000.
        seed: integer seed or a `np.random.Generator` for the permutations. Default 0.

    Returns:
        An `MMDResult`; `pvalue` is NaN and `null` empty when `n_permutations` is 0.

    Raises:
        StatsInputError: `x` or `y` is not numeric, not 1-D/2-D, empty, has no columns, holds NaN/inf or has
            fewer than 2 rows; their feature counts differ; `kernel` is unknown; `n_permutations` is not an
            integer >= 0; `bandwidth` is not > 0; the median pairwise distance is 0; or `seed` is invalid.
    """
    xs, ys = _pair(x, y, 2)
    if kernel not in KERNELS:
        raise StatsInputError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) or n_permutations < 0:
        raise StatsInputError(f"n_permutations must be an integer >= 0, got {n_permutations!r}")
    pooled = np.concatenate([xs, ys])
    n, total = xs.shape[0], pooled.shape[0]
    if kernel == "rbf":
        d2 = _sqdist(pooled, pooled)
        if bandwidth is None:
            iu = np.triu_indices(total, 1)
            s = float(np.median(np.sqrt(d2[iu])))
            if s == 0.0:
                raise StatsInputError("median pairwise distance is 0 (more than half the rows coincide); pass bandwidth")
        else:
            s = float(bandwidth)
            if not (s > 0 and np.isfinite(s)):
                raise StatsInputError(f"bandwidth must be > 0, got {bandwidth}")
        k = np.exp(-d2 / (2.0 * s * s))
    else:
        s = float("nan")
        k = _polynomial(pooled, pooled)
    value = _mmd2_from_blocks(k[:n, :n], k[n:, n:], k[:n, n:])
    if n_permutations == 0:
        return MMDResult(value, float("nan"), 0, kernel, s)
    np.fill_diagonal(k, 0.0)
    rng = as_generator(seed)
    null = np.empty(n_permutations)
    per = max(1, _PERM_ELEMENTS // total)
    for start in range(0, n_permutations, per):
        c = min(per, n_permutations - start)
        order = rng.permuted(np.broadcast_to(np.arange(total), (c, total)), axis=1)
        assign = order < n
        null[start : start + c] = _permutation_mmd2(k, n, assign)
    # tolerance: the permuted statistics are sums in a different order than the observed one
    exceed = np.count_nonzero(null >= value - 1e-12 * max(1.0, abs(value)))
    pvalue = (1.0 + exceed) / (1.0 + n_permutations)
    return MMDResult(value, float(pvalue), int(n_permutations), kernel, s, null)


@dataclass(frozen=True)
class KIDResult:
    """Kernel Inception Distance: mean and std (ddof=0) of the unbiased polynomial-kernel MMD^2 over subsets.

    Attributes:
        mean: mean of the per-subset MMD^2 values (the KID).
        std: their standard deviation (ddof=0).
        n_subsets: number of subsets drawn.
        subset_size: rows per subset actually used, min(requested subset_size, n, m).
        values: `(n_subsets,)` float64 per-subset MMD^2; left out of repr and equality.
    """

    mean: float
    std: float
    n_subsets: int
    subset_size: int
    values: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty(0))


def kid(
    x: Any,
    y: Any,
    *,
    n_subsets: int = 100,
    subset_size: int = 1000,
    seed: int | np.random.Generator = 0,
) -> KIDResult:
    """KID between `x` `(n, d)` and `y` `(m, d)` (Binkowski et al. 2018): unbiased MMD^2 with kernel
    (a . b / d + 1)^3 on `n_subsets` subsets of min(subset_size, n, m) rows drawn without replacement.
    n_subsets: an integer >= 1; subset_size: an integer >= 2.

    Args:
        x: `(n, d)` numeric features of the first domain (e.g. synthetic), read as float64; a 1-D `(n,)` array
            is one feature column. No NaN/inf.
        y: `(m, d)` features of the second domain (e.g. real), same d.
        n_subsets: number of random subsets, an integer >= 1. Default 100.
        subset_size: rows drawn from each set per subset, an integer >= 2, capped at n and m. Default 1000.
        seed: integer seed or a `np.random.Generator` for the subsets. Default 0.

    Returns:
        A `KIDResult` with the per-subset values.

    Raises:
        StatsInputError: `x` or `y` is not numeric, not 1-D/2-D, empty, has no columns, holds NaN/inf or has
            fewer than 2 rows; their feature counts differ; `n_subsets` or `subset_size` is not an integer of
            at least 1 or 2; or `seed` is invalid.
    """
    xs, ys = _pair(x, y, 2)
    for name, value, least in (("n_subsets", n_subsets, 1), ("subset_size", subset_size, 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise StatsInputError(f"{name} must be an integer >= {least}, got {value!r}")
    size = int(min(subset_size, xs.shape[0], ys.shape[0]))
    rng = as_generator(seed)
    vals = np.empty(int(n_subsets))
    for i in range(int(n_subsets)):
        a = xs[rng.choice(xs.shape[0], size, replace=False)]
        b = ys[rng.choice(ys.shape[0], size, replace=False)]
        vals[i] = _mmd2_from_blocks(_polynomial(a, a), _polynomial(b, b), _polynomial(a, b))
    return KIDResult(float(vals.mean()), float(vals.std()), int(n_subsets), size, vals)


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, max_iter: int = 100) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression: minimise mean log-loss + l2 / 2 |w|^2 (intercept unpenalised);
    returns (w (d,), b). Damped Newton (IRLS) for d <= 512 (a (d+1)^2 system per step), scipy L-BFGS above."""
    n, d = x.shape
    sign = 2.0 * y - 1.0
    xb = np.concatenate([x, np.ones((n, 1))], axis=1)
    pen = np.full(d + 1, l2)
    pen[d] = 0.0

    def loss(p: np.ndarray) -> float:
        return float(-log_expit(sign * (xb @ p)).mean() + 0.5 * np.sum(pen * p * p))

    def grad(p: np.ndarray) -> np.ndarray:
        return xb.T @ (-sign * expit(-sign * (xb @ p))) / n + pen * p

    p = np.zeros(d + 1)
    if d > 512:
        res = minimize(lambda q: (loss(q), grad(q)), p, jac=True, method="L-BFGS-B",
                       options={"maxiter": 5000, "ftol": 1e-12, "gtol": 1e-8})
        return res.x[:d], float(res.x[d])
    f = loss(p)
    for _ in range(max_iter):
        g = grad(p)
        prob = expit(xb @ p)
        h = (xb * (prob * (1.0 - prob))[:, None]).T @ xb / n + np.diag(pen) + 1e-12 * np.eye(d + 1)
        step = np.linalg.solve(h, g)
        if g @ step < 1e-20:
            break
        t = 1.0
        while t > 1e-10:
            cand = p - t * step
            fc = loss(cand)
            if fc <= f:
                break
            t *= 0.5
        p, f = cand, fc
    return p[:d], float(p[d])


@dataclass(frozen=True)
class PADResult:
    """Proxy A-distance `pad` = 2 (1 - 2 `error`) with `error` the mean held-out balanced error over folds;
    `low`, `high`: t interval over the per-fold values `fold_values` at `confidence`.

    Attributes:
        pad: proxy A-distance, at most 2 (0: indistinguishable, 2: separable, below 0: worse than chance).
        low: lower end of the t interval (n_folds - 1 degrees of freedom) over the per-fold values.
        high: upper end of that interval.
        error: mean held-out balanced error over the folds, in [0, 1].
        confidence: two-sided confidence level of `low`/`high`.
        fold_values: `(n_folds,)` float64 per-fold proxy A-distances; left out of repr and equality.
    """

    pad: float
    low: float
    high: float
    error: float
    confidence: float
    fold_values: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty(0))


def proxy_a_distance(
    x: Any,
    y: Any,
    *,
    n_folds: int = 5,
    l2: float = 1e-3,
    confidence: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> PADResult:
    """Proxy A-distance between `x` `(n, d)` and `y` `(m, d)` (Ben-David et al. 2007; module docstring):
    a linear domain classifier is trained on k-1 folds and scored on the held-out fold, k = `n_folds`.

    Args:
        x: `(n, d)` numeric features of the first domain (e.g. synthetic), read as float64; a 1-D `(n,)` array
            is one feature column. No NaN/inf.
        y: `(m, d)` features of the second domain (e.g. real), same d.
        n_folds: number of stratified folds k, an integer >= 2; each set needs at least k rows. Default 5.
        l2: L2 penalty on the classifier weights (intercept unpenalised), >= 0. Default 1e-3.
        confidence: two-sided level of the t interval over folds, in (0, 1). Default 0.95.
        seed: integer seed or a `np.random.Generator` for the fold assignment. Default 0.

    Returns:
        A `PADResult`.

    Raises:
        StatsInputError: `confidence` is outside (0, 1); `n_folds` is not an integer >= 2; `x` or `y` is not
            numeric, not 1-D/2-D, empty, has no columns, holds NaN/inf or has fewer than `n_folds` rows; their
            feature counts differ; `l2` is negative; or `seed` is invalid.
    """
    confidence = check_confidence(confidence)
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise StatsInputError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    xs, ys = _pair(x, y, n_folds)
    if l2 < 0:
        raise StatsInputError(f"l2 must be >= 0, got {l2}")
    rng = as_generator(seed)
    feats = np.concatenate([xs, ys])
    label = np.concatenate([np.zeros(xs.shape[0]), np.ones(ys.shape[0])])
    fold = np.empty(feats.shape[0], dtype=np.int64)
    for cls in (0.0, 1.0):  # stratified: each domain is split evenly over the folds
        idx = np.flatnonzero(label == cls)
        fold[rng.permutation(idx)] = np.arange(idx.size) % n_folds
    errors = np.empty(n_folds)
    for k in range(n_folds):
        train, test = fold != k, fold == k
        mu = feats[train].mean(0)
        sd = feats[train].std(0)
        sd[sd == 0] = 1.0
        w, b = _fit_logistic((feats[train] - mu) / sd, label[train], l2)
        pred = ((feats[test] - mu) / sd @ w + b) > 0
        truth = label[test] == 1.0
        errors[k] = 0.5 * (np.mean(pred[~truth]) + np.mean(~pred[truth]))
    folds = 2.0 * (1.0 - 2.0 * errors)
    err = float(errors.mean())
    pad = 2.0 * (1.0 - 2.0 * err)
    half = _st.t.ppf(0.5 + confidence / 2.0, n_folds - 1) * folds.std(ddof=1) / np.sqrt(n_folds)
    return PADResult(pad, float(pad - half), float(pad + half), err, confidence, folds)
