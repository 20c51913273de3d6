"""Attribute a synthetic-vs-real gap to the recorded real-side shifts: what a gap is made of, and what closed it.

`shift_attribution` fits, on the target-domain rows only (the real samples, whose manifest records each
shift's intensity in ``shift_<name>``; 0 = not applied), the OLS regression

    y = b0 + sum_k b_k x_k + e,        y = log(metric) (default) or the metric itself,

where the x_k are the shift intensities, numeric covariates (e.g. ``occlusion``) and the dummies of
categorical columns (e.g. ``category``, first level dropped). Because OLS passes through the means, the
gap in mean y between the target and the reference domain (for log Chamfer: the log of the geometric-mean
gap ratio) splits exactly into

    mean_t(y) - mean_r(y) = sum_k b_k (mean_t(x_k) - mean_r(x_k))            (one term per regressor)
                          + [b0 + sum_k b_k mean_r(x_k) - mean_r(y)]          ("residual").

The residual is the gap the model predicts for a target sample with the reference domain's covariate means
(shifts at the reference's value, 0 for synthetic samples): the part no recorded shift explains. Intervals
of coefficients and contributions use the HC3 sandwich covariance (statsmodels; MacKinnon & White 1985) and
the normal quantile; they are conditional on the observed covariate means. The residual's interval adds
the sampling variance of mean_r(y); the total's is the Welch normal interval of the difference in means.
A shift's intensity is identified only by its variation *within* the target domain, so its contribution
extrapolates the fitted line to the reference value (say so when reporting it).

On a paired benchmark (`pairs="pair_id"`: each real sample the twin of a synthetic one, same object and
camera) the response is the per-pair difference d = y(target twin) - y(reference twin), regressed on the
target twin's shift intensities and the twins' covariate differences:

    d = b0 + sum_k b_k x_k + e,        mean(d) = b0 + sum_k b_k mean(x_k)   (exactly).

The object's own difficulty cancels inside each pair, so category and other shared properties need no term
(categorical columns are refused), contribution_k = b_k mean(x_k), and the residual is b0: the gap left at
no shift and no covariate difference. With `shift_prob` < 1 every shift has twins where it is off, and
nothing is extrapolated.

`gap_attribution` runs it on a results frame the way the report shows it: every ``shift_*`` column that varies
among the real samples, the headline gap metrics (log scale for a positive lower-is-better metric, the metric
itself otherwise), paired on ``pair_id`` when both domains carry ids that meet, and returns a JSON-ready record
(None when the frame records no shift).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.special import ndtri

__all__ = ["AttributionError", "SHIFT_PREFIX", "gap_attribution", "shift_attribution"]

SHIFT_PREFIX = "shift_"  # the built-in benchmark records each real-side shift's intensity as shift_<name>

_COLUMNS = ["term", "kind", "coef", "low", "high", "pvalue", "mean_target", "mean_reference",
            "contribution", "contribution_low", "contribution_high", "share"]


class AttributionError(ValueError):
    """Unusable input to `shift_attribution` (missing columns, too few rows, non-positive metric under log)."""


def _design(frame: pd.DataFrame, numeric: list[str], categorical: Sequence[str],
            levels: dict[str, list]) -> pd.DataFrame:
    parts = [frame[numeric].astype(np.float64)]
    for col in categorical:
        cats = pd.Categorical(frame[col], categories=levels[col])
        dummies = pd.get_dummies(cats, prefix=col, prefix_sep="=", drop_first=True, dtype=np.float64)
        dummies.index = frame.index
        parts.append(dummies)
    x = pd.concat(parts, axis=1)
    x.insert(0, "intercept", 1.0)
    return x


def _fit(y: np.ndarray, x: pd.DataFrame, what: str):
    """OLS of `y` on the design `x` with HC3 covariance; refuses too few rows and collinear regressors."""
    if len(y) <= x.shape[1]:
        raise AttributionError(f"{len(y)} {what} for {x.shape[1]} parameters: too few to fit")
    if np.linalg.matrix_rank(x.to_numpy()) < x.shape[1]:
        raise AttributionError(f"the regressors are collinear over the {what} (a constant shift column? every "
                               "shift at the same intensity?): drop or merge columns")
    return sm.OLS(y, x).fit(cov_type="HC3")


def shift_attribution(
    frame: pd.DataFrame,
    metric: str,
    shift_columns: Sequence[str],
    *,
    covariates: Sequence[str] = (),
    categorical: Sequence[str] = (),
    domain_column: str = "domain",
    target: str = "real",
    reference: str = "synthetic",
    log: bool = True,
    confidence: float = 0.95,
    pairs: str | None = None,
) -> pd.DataFrame:
    """Regress `metric` of the `target` rows on `shift_columns` + `covariates` + `categorical` and split the
    target-vs-reference gap in mean (log) metric into one contribution per term (module docstring).

    Args:
        frame: one row per (sample, checkpoint) result with `metric`, `domain_column` and every named column;
            reference rows need the same columns (shift intensities of synthetic samples are 0). Rows of other
            domains are ignored; the used rows may hold no NaN in the named columns.
        metric: the response column, e.g. "chamfer_l2"; must be > 0 when `log`.
        shift_columns: columns of shift intensities (0 = not applied), e.g. ``shift_<name>``.
        covariates: further numeric columns (e.g. "occlusion"). Default none.
        categorical: columns entered as dummies, first sorted level dropped (unpaired only). Default none.
        domain_column: the column naming each row's domain. Default "domain".
        target: the domain whose rows are regressed. Default "real".
        reference: the domain compared against. Default "synthetic".
        log: regress log(metric) (True, default) or the metric itself.
        confidence: two-sided level of every interval, in (0, 1). Default 0.95.
        pairs: the column matching target and reference twins (module docstring); then ``mean_target`` of a
            covariate is the mean twin difference and ``mean_reference`` is 0. Rows without a pair id or
            without a twin in the other domain are left out. None (default): unpaired.

    Returns:
        A tidy frame, one row per term: ``term, kind`` (shift / covariate / categorical / intercept / residual
        / total), ``coef, low, high, pvalue`` (a categorical's coef is NaN and its p the joint Wald test of its
        dummies), ``mean_target, mean_reference`` of the regressor, ``contribution`` (to the gap in mean y;
        with log=True exp(total) is the geometric-mean gap ratio) with its interval (``contribution_low``,
        ``contribution_high``), and ``share`` (of total; NaN when the total is 0). Unpaired, the intercept row
        has means 1.0 and NaN contribution; paired, there is no intercept row and the residual row carries
        b0's coef, interval and p. Entries a term does not have are NaN. `attrs` holds n_target,
        n_reference, metric, log, r_squared, cov_type ("HC3") and confidence (paired also n_pairs and
        design="paired").

    Raises:
        AttributionError: `confidence` outside (0, 1); a named column missing from `frame` or named twice;
            fewer than 2 rows in a domain (unpaired); missing values among the used rows; a metric value <= 0
            with `log`; no more rows (or pairs) than parameters; collinear regressors; with `pairs`, a
            categorical column or a pair id repeated within a domain.
    """
    if not 0.0 < confidence < 1.0:
        raise AttributionError(f"confidence must lie in (0, 1), got {confidence}")
    if pairs is not None:
        return _paired_attribution(frame, metric, list(shift_columns), list(covariates), list(categorical),
                                   domain_column, target, reference, log, confidence, pairs)
    numeric = list(shift_columns) + list(covariates)
    needed = [metric, domain_column, *numeric, *categorical]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise AttributionError(f"frame lacks the column(s) {missing}")
    if len(set(numeric) | set(categorical)) != len(numeric) + len(categorical):
        raise AttributionError("a column is named twice among shift_columns, covariates and categorical")
    tgt = frame[frame[domain_column] == target]
    ref = frame[frame[domain_column] == reference]
    for name, part in ((target, tgt), (reference, ref)):
        if len(part) < 2:
            raise AttributionError(f"domain {name!r} has {len(part)} rows in column {domain_column!r}; need >= 2")
    rows = pd.concat([tgt, ref])
    if rows[needed].isna().any().any():
        bad = rows[needed].columns[rows[needed].isna().any()].tolist()
        raise AttributionError(f"missing values in {bad} (drop failed or NaN rows first)")
    y_all = rows[metric].to_numpy(np.float64)
    if log:
        if np.any(y_all <= 0):
            raise AttributionError(f"log=True needs a positive {metric!r}; found values <= 0")
        y_all = np.log(y_all)
    y_t, y_r = y_all[: len(tgt)], y_all[len(tgt):]

    levels = {c: sorted(rows[c].unique().tolist()) for c in categorical}
    x_t = _design(tgt, numeric, categorical, levels)
    x_r = _design(ref, numeric, categorical, levels)
    fit = _fit(y_t, x_t, f"{target} rows")
    beta = fit.params.to_numpy()
    cov = fit.cov_params().to_numpy()
    z = float(ndtri(0.5 + confidence / 2.0))
    mt, mr = x_t.mean().to_numpy(), x_r.mean().to_numpy()
    delta = mt - mr
    names = list(x_t.columns)

    total = float(y_t.mean() - y_r.mean())
    total_se = float(np.sqrt(y_t.var(ddof=1) / len(y_t) + y_r.var(ddof=1) / len(y_r)))

    def combo(mask: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
        w = np.where(mask, weights, 0.0)
        return float(w @ beta), float(np.sqrt(max(w @ cov @ w, 0.0)))

    out = []

    def add(term, kind, coef, lo, hi, p, m_t, m_r, contrib, se):
        out.append(dict(term=term, kind=kind, coef=coef, low=lo, high=hi, pvalue=p, mean_target=m_t,
                        mean_reference=m_r, contribution=contrib, contribution_low=contrib - z * se,
                        contribution_high=contrib + z * se, share=contrib / total if total != 0 else np.nan))

    ci = fit.conf_int(alpha=1.0 - confidence).to_numpy()
    for i, name in enumerate(names):
        if name == "intercept":
            add(name, "intercept", beta[i], ci[i, 0], ci[i, 1], float(fit.pvalues.iloc[i]), 1.0, 1.0,
                np.nan, np.nan)
            continue
        if name not in numeric:
            continue
        contrib, se = combo(np.arange(len(names)) == i, delta)
        add(name, "shift" if name in shift_columns else "covariate", beta[i], ci[i, 0], ci[i, 1],
            float(fit.pvalues.iloc[i]), mt[i], mr[i], contrib, se)
    for col in categorical:
        mask = np.array([n.startswith(f"{col}=") for n in names])
        contrib, se = combo(mask, delta)
        if mask.any():
            r = np.zeros((int(mask.sum()), len(names)))
            r[np.arange(int(mask.sum())), np.flatnonzero(mask)] = 1.0
            p = float(fit.wald_test(r, scalar=True).pvalue)
        else:  # one level only: nothing to attribute
            p = np.nan
        add(col, "categorical", np.nan, np.nan, np.nan, p, np.nan, np.nan, contrib, se)
    # residual = b0 + sum_k b_k mean_r(x_k) - mean_r(y): a linear combination of beta plus a reference mean
    resid, resid_se = combo(np.ones(len(names), bool), mr)
    resid -= float(y_r.mean())
    resid_se = float(np.sqrt(resid_se**2 + y_r.var(ddof=1) / len(y_r)))
    add("residual", "residual", np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, resid, resid_se)
    add("total", "total", np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, total, total_se)
    result = pd.DataFrame(out, columns=_COLUMNS)
    result.attrs.update(n_target=len(tgt), n_reference=len(ref), metric=metric, log=log,
                        r_squared=float(fit.rsquared), cov_type="HC3", confidence=confidence)
    return result


def _paired_attribution(frame: pd.DataFrame, metric: str, shifts: list[str], covariates: list[str],
                        categorical: list[str], domain_column: str, target: str, reference: str, log: bool,
                        confidence: float, pairs: str) -> pd.DataFrame:
    """`shift_attribution` on twin pairs: per-pair differences regressed on the target twin's shifts."""
    if categorical:
        raise AttributionError(f"with pairs, twins share {categorical}: their effect cancels in each pair; "
                               "leave categorical empty")
    numeric = shifts + covariates
    needed = [pairs, metric, domain_column, *numeric]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise AttributionError(f"frame lacks the column(s) {missing}")
    if len(set(numeric)) != len(numeric):
        raise AttributionError("a column is named twice among shift_columns and covariates")
    sides = []
    for name in (target, reference):
        part = frame[frame[domain_column] == name].dropna(subset=[pairs])
        if part[pairs].duplicated().any():
            raise AttributionError(f"a {pairs} appears twice among the {name!r} rows; a pair is one sample per domain")
        sides.append(part.set_index(pairs))
    tgt, ref = sides
    keys = tgt.index.intersection(ref.index).sort_values()
    tgt, ref = tgt.loc[keys], ref.loc[keys]
    if tgt[[metric, *numeric]].isna().any().any() or ref[[metric, *covariates]].isna().any().any():
        raise AttributionError(f"missing values among {[metric, *numeric]} (drop failed or NaN rows first)")
    y_t, y_r = tgt[metric].to_numpy(np.float64), ref[metric].to_numpy(np.float64)
    if log:
        if np.any(y_t <= 0) or np.any(y_r <= 0):
            raise AttributionError(f"log=True needs a positive {metric!r}; found values <= 0")
        y_t, y_r = np.log(y_t), np.log(y_r)
    d = y_t - y_r
    x = pd.concat([tgt[shifts].astype(np.float64),
                   tgt[covariates].astype(np.float64) - ref[covariates].astype(np.float64)], axis=1)
    x.insert(0, "intercept", 1.0)
    fit = _fit(d, x, "pairs")
    beta, cov = fit.params.to_numpy(), fit.cov_params().to_numpy()
    ci = fit.conf_int(alpha=1.0 - confidence).to_numpy()
    z = float(ndtri(0.5 + confidence / 2.0))
    means = x.mean().to_numpy()
    total = float(d.mean())
    out = []

    def add(term, kind, i, m_t, contrib, se):
        coef, lo, hi, p = (beta[i], ci[i, 0], ci[i, 1], float(fit.pvalues.iloc[i])) if i is not None else (np.nan,) * 4
        out.append(dict(term=term, kind=kind, coef=coef, low=lo, high=hi, pvalue=p, mean_target=m_t,
                        mean_reference=0.0 if m_t == m_t else np.nan, contribution=contrib,
                        contribution_low=contrib - z * se, contribution_high=contrib + z * se,
                        share=contrib / total if total != 0 else np.nan))

    for i, name in enumerate(x.columns):
        if name == "intercept":
            continue
        w = np.zeros(len(beta))
        w[i] = means[i]
        add(name, "shift" if name in shifts else "covariate", i, means[i], float(w @ beta),
            float(np.sqrt(max(w @ cov @ w, 0.0))))
    add("residual", "residual", 0, np.nan, float(beta[0]), float(np.sqrt(cov[0, 0])))
    add("total", "total", None, np.nan, total, float(d.std(ddof=1) / np.sqrt(len(d))))
    result = pd.DataFrame(out, columns=_COLUMNS)
    result.attrs.update(n_target=len(d), n_reference=len(d), n_pairs=len(d), metric=metric, log=log,
                        r_squared=float(fit.rsquared), cov_type="HC3", confidence=confidence, design="paired")
    return result


def gap_attribution(
    frame: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
    pairs: str | None = "auto",
    categorical: Sequence[str] = ("category",),
) -> dict | None:
    """The per-shift attribution of the synthetic-vs-real gap of each headline metric, for a report section.

    Per metric, `shift_attribution` on the ok rows with a finite value (positive too when on the log scale)
    of the ``shift_*`` columns that vary among those real rows (a shift switched off, or always at one
    intensity, cannot be told from the intercept and is listed in ``constant_shifts``). Paired (design
    "paired") on `pairs` when both domains carry ids that meet, else unpaired with `categorical` as dummies
    (those present with two levels or more). A fit the data cannot support (too few rows, collinear shifts) is
    a ``note`` instead of rows.

    Args:
        frame: a results frame (`io.read_results`) with ``status``, ``domain``, the metrics and ``shift_*``
            intensities (0 = not applied; 0 on synthetic rows).
        metrics: metric columns; None (default): those of `io.results.GAP_METRICS` present.
        confidence: two-sided level of the intervals, in (0, 1). Default 0.95.
        pairs: "auto" (``pair_id`` when both domains carry ids that meet), a column name, or None (unpaired).
        categorical: columns entered as dummies in the unpaired fit. Default ("category",).

    Returns:
        None when the frame has no ``shift_*`` column or no "real" and "synthetic" rows; else ``{"shifts":
        [columns], "design": "paired" | "two-sample", "confidence", "metrics": [{"metric", "log", "design",
        "n_target", "n_reference", "n_pairs", "r_squared", "shifts" (used), "constant_shifts", "rows"
        (`shift_attribution` records), "note"}]}``, JSON-ready (NaN as None).

    Raises:
        AttributionError: `confidence` outside (0, 1).
    """
    from ..io.results import GAP_METRICS, direction
    from ..jsonable import to_jsonable

    if not 0.0 < confidence < 1.0:
        raise AttributionError(f"confidence must lie in (0, 1), got {confidence}")
    shifts = [c for c in frame.columns if str(c).startswith(SHIFT_PREFIX) and pd.api.types.is_numeric_dtype(frame[c])]
    if not shifts or "domain" not in frame.columns:
        return None
    real, syn = frame[frame["domain"] == "real"], frame[frame["domain"] == "synthetic"]
    if not len(real) or not len(syn):
        return None
    metrics = [m for m in (GAP_METRICS if metrics is None else metrics) if m in frame.columns]
    pair_col = None
    if pairs == "auto":
        if "pair_id" in frame.columns and (set(real["pair_id"].dropna().astype(str))
                                           & set(syn["pair_id"].dropna().astype(str))):
            pair_col = "pair_id"
    elif pairs is not None:
        if pairs not in frame.columns:
            raise AttributionError(f"pairs column {pairs!r} is not in the results")
        pair_col = pairs
    design = "paired" if pair_col else "two-sample"
    out = []
    for m in metrics:
        ok = (frame["status"] == "ok") & np.isfinite(frame[m].to_numpy(np.float64))
        log = direction(m) == "lower" and bool((frame.loc[ok, m] > 0).all())
        rows = frame[ok & frame["domain"].isin(["real", "synthetic"])]
        tgt = rows[rows["domain"] == "real"]
        varying = [c for c in shifts if tgt[c].notna().all() and tgt[c].nunique() > 1]
        rec = {"metric": m, "log": log, "design": design, "shifts": varying,
               "constant_shifts": [c for c in shifts if c not in varying], "rows": [], "note": None}
        cats = [] if pair_col else [c for c in categorical if c in rows.columns and rows[c].nunique() > 1]
        if not varying:
            rec["note"] = "no shift varies among the real samples"
        else:
            try:
                res = shift_attribution(rows, m, varying, categorical=cats, log=log, confidence=confidence,
                                        pairs=pair_col)
                rec.update(rows=res.to_dict("records"), n_target=res.attrs["n_target"],
                           n_reference=res.attrs["n_reference"], n_pairs=res.attrs.get("n_pairs"),
                           r_squared=res.attrs["r_squared"], categorical=cats)
            except AttributionError as err:
                rec["note"] = str(err)
        out.append(rec)
    return to_jsonable({"shifts": shifts, "design": design, "confidence": confidence, "metrics": out})
