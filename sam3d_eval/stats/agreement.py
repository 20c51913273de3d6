"""Inter-rater agreement: Cohen's kappa (two raters), Fleiss' kappa (many), Krippendorff's alpha (missing data).

- Cohen (1960) kappa and its weighted form (Cohen 1968; linear or quadratic disagreement weights on the
  categories' positions in `categories`, as sklearn's `labels`): computed by
  `statsmodels.stats.inter_rater.cohens_kappa` on the contingency table built here.
- Fleiss (1971) kappa on a subjects x categories count table: `statsmodels.stats.inter_rater.fleiss_kappa`.
- Krippendorff's alpha (Krippendorff 2011, "Computing Krippendorff's alpha-reliability", Univ. of
  Pennsylvania, sections A-E): written here from the coincidence matrix, since statsmodels lacks it.
  alpha = 1 - D_o / D_e with o_ck = sum over units u of (pairs of values c, k in u) / (m_u - 1),
  n_c = sum_k o_ck, n = sum_c n_c, D_o = sum o_ck d_ck / n and D_e = sum n_c n_k d_ck / (n (n - 1)); units
  with fewer than two ratings are not pairable and drop out. Squared differences d_ck: nominal [c != k];
  ordinal (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2; interval (c - k)^2; ratio ((c - k) / (c + k))^2.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from statsmodels.stats.inter_rater import cohens_kappa as _sm_cohens_kappa
from statsmodels.stats.inter_rater import fleiss_kappa as _sm_fleiss_kappa

from ._checks import StatsInputError

__all__ = ["cohens_kappa", "fleiss_kappa", "krippendorff_alpha", "LEVELS"]

LEVELS = ("nominal", "ordinal", "interval", "ratio")


def _ratings(r: Any, name: str) -> np.ndarray:
    arr = np.asarray(r)
    if arr.ndim != 1:
        raise StatsInputError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise StatsInputError(f"{name} is empty")
    # None / NaN / pd.NA in float or object arrays (a plain list with None becomes an object array)
    missing = pd.isna(arr) if arr.dtype.kind in "fcOmM" else np.zeros(arr.size, dtype=bool)
    if missing.any():
        if missing.all():
            raise StatsInputError(f"{name} is all NaN (no ratings)")
        raise StatsInputError(
            f"{name} has {int(missing.sum())} missing rating(s) (None or NaN, first at index "
            f"{int(np.flatnonzero(missing)[0])}); Cohen's kappa needs complete pairs "
            "(use krippendorff_alpha for missing ratings)"
        )
    return arr


def _sorted_unique(values: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.unique(values)
    except TypeError:  # e.g. numbers and strings mixed in an object array
        kinds = sorted({type(v).__name__ for v in values})
        raise StatsInputError(
            f"{what} mix rating types that cannot be ordered ({', '.join(kinds)}); use one type for every rating"
        ) from None


def cohens_kappa(
    r1: Any,
    r2: Any,
    weights: str | None = None,
    *,
    categories: Sequence[Any] | None = None,
) -> float:
    """Cohen's kappa between two raters' ratings `r1`, `r2` `(n,)` of the same n subjects.

    weights: None (unweighted), "linear" or "quadratic" disagreement weights |i - j| or (i - j)^2 on the
    categories' positions i, j in `categories` (default: the sorted values seen), as sklearn's
    `cohen_kappa_score(labels=categories)`. For scores on a scale pass the whole scale, e.g.
    `categories=range(11)` for 0-10 scores: the weights are then the score distance, while the default
    (values seen) weights by rank and a score that nobody gave shrinks the distances around it. Ratings
    outside `categories` and missing ratings (None, NaN) are errors. (Cohen 1960, 1968; computed by
    statsmodels `cohens_kappa` on the k x k table over `categories`.)

    Args:
        r1: `(n,)` ratings by the first rater (numbers or labels of one type), entry i for subject i; no missing
            entries.
        r2: `(n,)` ratings by the second rater of the same subjects in the same order.
        weights: None (default, unweighted), "linear" or "quadratic" disagreement weights, as above.
        categories: the ordered rating scale; None (default) uses the sorted distinct values in `r1` and `r2`.

    Returns:
        Kappa as a float: 1 for perfect agreement, 0 for chance-level agreement, negative below chance.

    Raises:
        StatsInputError: a rating array is not 1-D, is empty or holds None/NaN; `r1` and `r2` differ in length;
            `weights` is not one of the three choices; `categories` is not flat, holds a missing value or a
            duplicate; a rating lies outside `categories`; ratings mix types that cannot be sorted; there is only
            one category, or every rating is the same value (kappa is 0 / 0).
    """
    a = _ratings(r1, "r1")
    b = _ratings(r2, "r2")
    if a.size != b.size:
        raise StatsInputError(f"r1 and r2 must rate the same subjects (same length), got {a.size} and {b.size}")
    if weights not in (None, "linear", "quadratic"):
        raise StatsInputError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    if categories is None:
        cats = _sorted_unique(np.concatenate([a, b]), "r1 and r2")
    else:
        cats = np.asarray(list(categories))
        if cats.ndim != 1 or np.any(pd.isna(cats)):
            raise StatsInputError("categories must be a flat sequence of rating values without missing values")
    if cats.size != _sorted_unique(cats, "categories").size:
        raise StatsInputError("categories has duplicates")
    lookup = {v.item() if hasattr(v, "item") else v: i for i, v in enumerate(cats)}
    for name, arr in (("r1", a), ("r2", b)):
        bad = sorted({v.item() if hasattr(v, "item") else v for v in arr} - set(lookup), key=str)
        if bad:
            raise StatsInputError(f"{name} has ratings outside the categories {list(lookup)}: {bad}")
    ia = np.array([lookup[v.item() if hasattr(v, "item") else v] for v in a])
    ib = np.array([lookup[v.item() if hasattr(v, "item") else v] for v in b])
    k = cats.size
    if k < 2:
        raise StatsInputError("kappa is undefined with a single category (no disagreement is possible)")
    table = np.bincount(ia * k + ib, minlength=k * k).reshape(k, k).astype(np.float64)
    used = np.flatnonzero(table.sum(axis=0) + table.sum(axis=1) > 0)
    if used.size < 2:
        only = cats[used[0]].item() if hasattr(cats[used[0]], "item") else cats[used[0]]
        raise StatsInputError(f"every rating is {only!r}: chance agreement is 1 and kappa is undefined (0 / 0)")
    # statsmodels also computes a z statistic, whose variance is 0 at perfect agreement (a harmless 0/0)
    with np.errstate(divide="ignore", invalid="ignore"):
        res = _sm_cohens_kappa(table) if weights is None else _sm_cohens_kappa(table, wt=weights)
    return float(res.kappa)


def fleiss_kappa(counts: Any) -> float:
    """Fleiss' kappa from a subjects x categories table `(N, k)` int: how many of the n raters put subject i
    in category j (every row sums to the same n >= 2). Fleiss (1971); statsmodels `fleiss_kappa`.

    Args:
        counts: `(N, k)` table of whole-number counts (any numeric dtype; read as float64), row = subject,
            column = category, entry = number of raters who put that subject in that category. k >= 2.

    Returns:
        Fleiss' kappa as a float: 1 for perfect agreement, 0 for chance level, negative below chance.

    Raises:
        StatsInputError: `counts` is not 2-D with at least one row and two columns; holds a negative,
            fractional or non-finite entry; its rows sum to different rater counts; fewer than 2 raters per
            subject; or every rating falls in one category (kappa is 0 / 0).
    """
    t = np.asarray(counts, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] < 2:
        raise StatsInputError(f"counts must be a subjects x categories table with >= 2 categories, got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(t != np.round(t)):
        raise StatsInputError("counts must be whole numbers >= 0 (rater counts per subject and category)")
    n = t.sum(axis=1)
    if np.any(n != n[0]):
        bad = int(np.flatnonzero(n != n[0])[0])
        raise StatsInputError(
            f"every subject needs the same number of raters: row 0 has {n[0]:g}, row {bad} has {n[bad]:g}"
        )
    if n[0] < 2:
        raise StatsInputError("Fleiss' kappa needs at least 2 raters per subject")
    used = np.flatnonzero(t.sum(axis=0) > 0)
    if used.size < 2:
        raise StatsInputError(
            f"every rating is in one category (column {int(used[0])}): chance agreement is 1 and Fleiss' kappa "
            "is undefined (0 / 0)"
        )
    return float(_sm_fleiss_kappa(t, method="fleiss"))


def _delta2(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    c = values[:, None]
    k = values[None, :]
    if level == "nominal":
        return (c != k).astype(np.float64)
    if level == "interval":
        return (c - k) ** 2
    if level == "ratio":
        s = c + k
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.where(s == 0, 0.0, (c - k) / np.where(s == 0, 1.0, s))
        return d**2
    # ordinal: values sorted ascending; cumulative frequencies between ranks g <= h
    cum = np.concatenate([[0.0], np.cumsum(n_c)])
    g = np.arange(values.size)
    lo = np.minimum(g[:, None], g[None, :])
    hi = np.maximum(g[:, None], g[None, :])
    between = cum[hi + 1] - cum[lo]
    return (between - (n_c[:, None] + n_c[None, :]) / 2.0) ** 2


def krippendorff_alpha(reliability_data: Any, level: str = "nominal") -> float:
    """Krippendorff's alpha for a raters x units matrix `(R, U)` of numeric ratings, NaN = missing.

    Definition in the module docstring (Krippendorff 2011); reproduces that paper's 4 x 12 example
    (0.743 / 0.815 / 0.849 / 0.797 for nominal / ordinal / interval / ratio).

    Args:
        reliability_data: `(R, U)` numeric ratings (read as float64), row = rater, column = unit; NaN marks a
            rating that rater did not give. Units with fewer than two ratings drop out (not pairable).
        level: measurement level of the ratings, which sets the squared difference d_ck: "nominal" (default),
            "ordinal", "interval" or "ratio" (ratio needs ratings >= 0).

    Returns:
        Alpha as a float: 1 for perfect reliability, 0 at chance level, negative for systematic disagreement.

    Raises:
        StatsInputError: `level` is unknown; the data are not numeric, not a non-empty 2-D matrix, hold +-inf or
            are all NaN; a ratio-level rating is negative; no unit has two ratings; or every pairable rating has
            the same value (alpha is undefined).
    """
    if level not in LEVELS:
        raise StatsInputError(f"level must be one of {LEVELS}, got {level!r}")
    try:
        data = np.asarray(reliability_data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsInputError(f"reliability_data must be numeric (NaN for missing): {exc}") from None
    if data.ndim != 2 or data.size == 0:
        raise StatsInputError(f"reliability_data must be a non-empty raters x units matrix, got shape {data.shape}")
    if np.isinf(data).any():
        raise StatsInputError("reliability_data has infinite ratings")
    present = ~np.isnan(data)
    if not present.any():
        raise StatsInputError("reliability_data is all NaN (no ratings)")
    if level == "ratio" and np.any(data[present] < 0):
        raise StatsInputError("ratio-level ratings must be >= 0 (a ratio scale has an absolute zero)")
    m_u = present.sum(axis=0)
    pairable = m_u >= 2
    if not pairable.any():
        raise StatsInputError("no unit has two or more ratings: nothing is pairable")
    sub = data[:, pairable]
    m = m_u[pairable].astype(np.float64)
    values, inv = np.unique(sub[~np.isnan(sub)], return_inverse=True)
    v = values.size
    unit_of = np.broadcast_to(np.arange(sub.shape[1]), sub.shape)[~np.isnan(sub)]
    counts = np.zeros((sub.shape[1], v))
    np.add.at(counts, (unit_of, inv), 1.0)
    # coincidences: ordered pairs of ratings from different raters within a unit, weighted 1 / (m_u - 1)
    o = np.einsum("uc,uk,u->ck", counts, counts, 1.0 / (m - 1.0)) - np.diag((counts / (m - 1.0)[:, None]).sum(0))
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if v < 2:
        raise StatsInputError("alpha is undefined when every pairable rating has the same value (no variation)")
    d2 = _delta2(values, n_c, level)
    d_o = np.sum(o * d2)
    d_e = np.sum(np.outer(n_c, n_c) * d2) / (n - 1.0)
    return float(1.0 - d_o / d_e)
