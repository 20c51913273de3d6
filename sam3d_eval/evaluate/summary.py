"""Summaries of stored per-sample results (DESIGN.md section 5): strata means, occlusion accuracy, domain gap.

Every summary takes the results frame of `io.read_results` and counts what it could not use, never
dropping it silently:

- ``n``: rows in the group; ``n_failed``: rows with status "failed" (no metric values; left out of means);
  ``n_nan``: ok rows whose value of this metric is NaN (unavailable for that input, e.g. normal consistency
  of a point cloud without normals; left out of means); ``n_used`` = n - n_failed - n_nan.
- `summarize`: per stratum (all, domain, occlusion bin, category, and any other column asked for) the mean of
  each metric with a bootstrap percentile interval (`stats.bootstrap_ci`, seeded).
- `occlusion_accuracy`: the share of *accurate* samples (F-score@0.05 >= 0.5 by default) per occlusion bin
  [0, .1), [.1, .3), [.3, .6), [.6, 1], overall and per domain, with Wilson intervals. A failed sample counts
  as not accurate (the model gave nothing usable); so does an ok sample whose F-score is NaN; both are
  also counted in ``n_failed`` / ``n_nan``.
- `domain_gap`: synthetic-vs-real figures with two-sample bootstrap intervals (each domain resampled on its
  own): ``gap_ratio`` = m(real) / m(synthetic) for lower-is-better metrics, ``relative_drop`` =
  1 - m(real) / m(synthetic) for higher-is-better ones (and the occlusion accuracy), and
  ``texture_degradation`` = LPIPS(real) / LPIPS(synthetic) - 1.

Pure pandas / numpy on top of `stats`; no torch.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..io.results import metric_columns
from ..stats import StatsInputError, bootstrap_ci, two_sample_bootstrap, wilson_interval

__all__ = [
    "OCCLUSION_BINS",
    "direction",
    "domain_gap",
    "occlusion_accuracy",
    "occlusion_bin",
    "summarize",
]

OCCLUSION_BINS = ((0.0, 0.1), (0.1, 0.3), (0.3, 0.6), (0.6, 1.0))  # the last bin is closed: [0.6, 1]
OCCLUSION_LABELS = ("[0,0.1)", "[0.1,0.3)", "[0.3,0.6)", "[0.6,1]")
_LOWER_IS_BETTER = ("chamfer", "emd", "lpips")


def direction(metric: str) -> str:
    """"lower" for distances (Chamfer variants, EMD, LPIPS), else "higher" (F-score, precision, recall,
    normal consistency, volume IoU, PSNR, SSIM, silhouette IoU)."""
    return "lower" if metric.startswith(_LOWER_IS_BETTER) else "higher"


def occlusion_bin(occlusion) -> np.ndarray:
    """The bin label of each occlusion value (`OCCLUSION_LABELS`; None for NaN or values outside [0, 1])."""
    x = np.asarray(occlusion, dtype=np.float64)
    out = np.full(x.shape, None, dtype=object)
    for (lo, hi), label in zip(OCCLUSION_BINS, OCCLUSION_LABELS):
        inside = (x >= lo) & ((x <= hi) if hi == 1.0 else (x < hi))
        out[inside] = label
    return out


def _with_bins(frame):
    frame = frame.copy()
    if "occlusion" in frame.columns:
        frame["occlusion_bin"] = occlusion_bin(frame["occlusion"].astype("float64"))
    return frame


def _interval(values: np.ndarray, confidence: float, n_resamples: int, seed: int) -> tuple[float, float]:
    if values.size < 2 or np.all(values == values[0]):
        same = float(values[0]) if values.size else math.nan
        return (same, same) if values.size >= 2 else (math.nan, math.nan)
    res = bootstrap_ci(values, np.mean, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return float(res.low), float(res.high)


def _counts(group, metric: str) -> tuple[int, int, int, np.ndarray]:
    ok = (group["status"] == "ok").to_numpy()
    vals = group[metric].to_numpy(dtype=np.float64) if metric in group.columns else np.full(len(group), np.nan)
    finite = ok & ~np.isnan(vals)
    return len(group), int((~ok).sum()), int((ok & np.isnan(vals)).sum()), vals[finite]


def summarize(
    frame,
    metrics: Sequence[str] | None = None,
    *,
    by: Sequence[str] = ("domain", "occlusion_bin", "category"),
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
):
    """Mean of each metric per stratum with a bootstrap interval; one row per (stratum, level, metric).

    frame: a results frame (`io.read_results`); metrics: default every metric column; by: strata columns
    (``occlusion_bin`` is derived from ``occlusion``); absent or all-empty columns are skipped. The
    ``stratum`` "all" (level "all") covers every row. Columns: stratum, level, metric, n, n_failed, n_nan,
    n_used, mean, low, high (NaN when nothing is left; the interval is NaN below two values).
    """
    import pandas as pd

    metrics = list(metrics) if metrics is not None else metric_columns(frame)
    data = _with_bins(frame)
    groups: list[tuple[str, str, object]] = [("all", "all", data)]
    for col in by:
        if col not in data.columns or data[col].isna().all():
            continue
        for level, g in data.groupby(data[col].astype(object).where(data[col].notna(), "(none)"), sort=True):
            groups.append((col, str(level), g))
    rows = []
    for stratum, level, g in groups:
        for m in metrics:
            n, n_failed, n_nan, vals = _counts(g, m)
            mean = float(vals.mean()) if vals.size else math.nan
            low, high = _interval(vals, confidence, n_resamples, seed)
            rows.append(dict(stratum=stratum, level=level, metric=m, n=n, n_failed=n_failed, n_nan=n_nan,
                             n_used=int(vals.size), mean=mean, low=low, high=high))
    out = pd.DataFrame(rows, columns=["stratum", "level", "metric", "n", "n_failed", "n_nan", "n_used", "mean", "low", "high"])
    out.attrs["confidence"] = confidence
    return out


def occlusion_accuracy(frame, *, metric: str = "fscore@0.05", threshold: float = 0.5, confidence: float = 0.95):
    """Share of accurate samples (``metric >= threshold``) per occlusion bin, overall and per domain.

    Columns: domain ("all" or a domain), occlusion_bin, n, n_failed, n_nan, n_accurate, accuracy, low, high
    (Wilson interval; NaN for an empty bin). Failed rows and NaN values count as not accurate (module
    docstring). Raises `ValueError` when the frame has no ``occlusion`` column or lacks `metric`.
    """
    import pandas as pd

    if "occlusion" not in frame.columns:
        raise ValueError("occlusion accuracy needs an occlusion column (from the manifest)")
    if metric not in frame.columns:
        raise ValueError(f"occlusion accuracy needs the metric {metric!r}; the results have {metric_columns(frame)}")
    data = _with_bins(frame)
    domains = [("all", data)]
    if "domain" in data.columns and data["domain"].notna().any():
        domains += [(str(d), g) for d, g in data.groupby("domain", sort=True)]
    rows = []
    for dom, g in domains:
        for label in OCCLUSION_LABELS:
            b = g[g["occlusion_bin"] == label]
            n, n_failed, n_nan, _ = _counts(b, metric)
            ok = (b["status"] == "ok").to_numpy()
            acc = ok & (b[metric].to_numpy(dtype=np.float64) >= threshold)
            k = int(acc.sum())
            lo, hi = wilson_interval(k, n, confidence) if n else (math.nan, math.nan)
            rows.append(dict(domain=dom, occlusion_bin=label, n=n, n_failed=n_failed, n_nan=n_nan, n_accurate=k,
                             accuracy=k / n if n else math.nan, low=lo, high=hi))
    out = pd.DataFrame(rows)
    out.attrs.update(metric=metric, threshold=threshold, confidence=confidence)
    return out


def _ratio(s, r, axis=-1):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mean(r, axis=axis) / np.mean(s, axis=axis)


def domain_gap(
    frame,
    metrics: Sequence[str] | None = None,
    *,
    accuracy_metric: str = "fscore@0.05",
    threshold: float = 0.5,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
):
    """Synthetic-vs-real gap per metric with a two-sample bootstrap interval (module docstring).

    Columns: metric, figure ("gap_ratio" | "relative_drop" | "texture_degradation"), direction,
    mean_synthetic, mean_real, estimate, low, high, and per domain n, n_failed, n_nan (suffixes
    ``_synthetic``, ``_real``), note (why an estimate or interval is missing, else None). The row ``accuracy`` is the relative drop of the occlusion accuracy (all bins;
    failed rows count as not accurate). Empty when the frame lacks either domain.
    """
    import pandas as pd

    metrics = list(metrics) if metrics is not None else metric_columns(frame)
    cols = ["metric", "figure", "direction", "mean_synthetic", "mean_real", "estimate", "low", "high",
            "n_synthetic", "n_failed_synthetic", "n_nan_synthetic", "n_real", "n_failed_real", "n_nan_real", "note"]
    if "domain" not in frame.columns:
        return pd.DataFrame(columns=cols)
    syn, real = frame[frame["domain"] == "synthetic"], frame[frame["domain"] == "real"]
    if not len(syn) or not len(real):
        return pd.DataFrame(columns=cols)

    def figure_row(name, fig, dirn, xs, xr, counts_s, counts_r, transform):
        est = low = high = math.nan
        note = None
        if not (xs.size and xr.size):
            note = "no values in one domain"
        elif xs.mean() == 0:
            note = "synthetic mean is 0: the ratio is undefined"
        else:
            est = transform(float(_ratio(xs, xr)))
            if xs.size >= 2 and xr.size >= 2:
                try:
                    res = two_sample_bootstrap(xs, xr, _ratio, confidence=confidence, n_resamples=n_resamples, seed=seed)
                    a, b = transform(float(res.low)), transform(float(res.high))
                    low, high = min(a, b), max(a, b)
                except StatsInputError as err:  # e.g. resamples whose synthetic mean is 0
                    note = f"no interval: {err}"
            else:
                note = "no interval: fewer than 2 values in a domain"
        return dict(metric=name, figure=fig, direction=dirn,
                    mean_synthetic=float(xs.mean()) if xs.size else math.nan,
                    mean_real=float(xr.mean()) if xr.size else math.nan, estimate=est, low=low, high=high,
                    n_synthetic=counts_s[0], n_failed_synthetic=counts_s[1], n_nan_synthetic=counts_s[2],
                    n_real=counts_r[0], n_failed_real=counts_r[1], n_nan_real=counts_r[2], note=note)

    rows = []
    for m in metrics:
        ns, fs, nans, xs = _counts(syn, m)
        nr, fr, nanr, xr = _counts(real, m)
        dirn = direction(m)
        if m == "lpips":
            fig, tf = "texture_degradation", lambda v: v - 1.0
        elif dirn == "lower":
            fig, tf = "gap_ratio", lambda v: v
        else:
            fig, tf = "relative_drop", lambda v: 1.0 - v
        rows.append(figure_row(m, fig, dirn, xs, xr, (ns, fs, nans), (nr, fr, nanr), tf))
    if accuracy_metric in frame.columns:
        def accurate(g):
            return ((g["status"] == "ok").to_numpy() & (g[accuracy_metric].to_numpy(dtype=np.float64) >= threshold)).astype(np.float64)

        cs, cr = _counts(syn, accuracy_metric)[:3], _counts(real, accuracy_metric)[:3]
        rows.append(figure_row("accuracy", "relative_drop", "higher", accurate(syn), accurate(real), cs, cr,
                               lambda v: 1.0 - v))
    out = pd.DataFrame(rows, columns=cols)
    out.attrs.update(confidence=confidence, accuracy_metric=accuracy_metric, threshold=threshold)
    return out
