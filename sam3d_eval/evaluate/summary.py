"""Summaries of stored per-sample results (docs/definitions.md): strata means, occlusion accuracy, domain gap.

Every summary takes the results frame of `io.read_results` and counts what it could not use, never
dropping it silently:

- ``n``: rows in the group; ``n_failed``: rows with status "failed" (no metric values; left out of means);
  ``n_nan``: ok rows whose value of this metric is NaN (unavailable for that input, e.g. normal consistency
  of a point cloud without normals; left out of means); ``n_used`` = n - n_failed - n_nan.
- `summarize`: per stratum (all, domain, occlusion bin, category, and any other column asked for) the mean of
  each metric with a bootstrap percentile interval (`stats.bootstrap_ci`, seeded); on a paired benchmark
  (``pair_id``) the twins of a pair are resampled as one unit (`stats.clustered_bootstrap`), since they
  share their object.
- `occlusion_accuracy`: the share of *accurate* samples (F-score@0.05 >= 0.5 by default) per occlusion bin
  [0, .1), [.1, .3), [.3, .6), [.6, 1], overall and per domain, with Wilson intervals. A failed sample counts
  as not accurate (the model gave nothing usable); so does an ok sample whose F-score is NaN; both are
  also counted in ``n_failed`` / ``n_nan``.
- `domain_gap`: synthetic-vs-real figures with bootstrap intervals: ``gap_ratio`` = m(real) / m(synthetic)
  for lower-is-better metrics, ``relative_drop`` = 1 - m(real) / m(synthetic) for higher-is-better ones (and
  the occlusion accuracy), and ``texture_degradation`` = LPIPS(real) / LPIPS(synthetic) - 1. Intervals resample
  whole twin pairs on a paired benchmark (``pair_id``), else each domain on its own (two-sample). Beside each
  figure, what it is made of: the *covariate-matched* figure (the synthetic side reweighted to the real side's
  occlusion-bin x category cells) and the *covariate part* = raw - matched; with the real samples scored
  against their unworn ground truth, the *wear-free* figure and the *wear part* = raw - wear-free; all on the
  raw figure's resamples.
- `domain_gap_runs`: the same figures for several runs of one model (training seeds): each run's figure,
  their mean, and a two-level interval (runs resampled, and the same pairs or samples for every run).
- `gap_change`: how those figures moved between two checkpoints scored on the same samples, and the share of
  the first one's gap the second closed; `gap_change_runs`: the same with several runs per checkpoint
  (two-level intervals).
- `run_summary`: all of the above for one stored run, as the JSON-ready record `evaluate` writes to
  summary.json and the report shows.

Pure pandas / numpy on top of `stats`; no torch.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..io.results import GAP_METRICS, direction, metric_columns
from ..stats import StatsInputError, bootstrap_ci, clustered_bootstrap, two_level_bootstrap, two_sample_bootstrap, wilson_interval

__all__ = [
    "OCCLUSION_BINS",
    "MATCHING_COVARIATES",
    "PAIR_COLUMN",
    "domain_gap",
    "domain_gap_runs",
    "gap_change",
    "gap_change_runs",
    "gap_unavailable",
    "matching_covariates",
    "run_summary",
    "occlusion_accuracy",
    "occlusion_bin",
    "summarize",
]

OCCLUSION_BINS = ((0.0, 0.1), (0.1, 0.3), (0.3, 0.6), (0.6, 1.0))  # the last bin is closed: [0.6, 1]
OCCLUSION_LABELS = ("[0,0.1)", "[0.1,0.3)", "[0.3,0.6)", "[0.6,1]")
def occlusion_bin(occlusion) -> np.ndarray:
    """The bin label of each occlusion value (`OCCLUSION_LABELS`; None for NaN or values outside [0, 1]).

    Args:
        occlusion: occlusion fractions in [0, 1] (hidden share of the object), any array-like read as float64.

    Returns:
        object array of the input's shape holding "[0,0.1)", "[0.1,0.3)", "[0.3,0.6)", "[0.6,1]" or None.
    """
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


def _clustered_interval(values: np.ndarray, clusters: np.ndarray, confidence: float, n_resamples: int,
                        seed: int) -> tuple[float, float]:
    """Percentile interval of the mean resampling whole clusters (NaN below two clusters)."""
    import pandas as pd

    if np.unique(clusters).size < 2:
        return math.nan, math.nan
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    res = clustered_bootstrap(pd.DataFrame({"v": values, "c": clusters}), "v", "c", confidence=confidence,
                              n_resamples=n_resamples, seed=seed)
    return float(res.low), float(res.high)


def _units_of(group) -> np.ndarray | None:
    """Cluster labels of a group's rows (its pair ids; rows without one are their own unit), or None when
    the rows carry no pair ids."""
    if PAIR_COLUMN not in group.columns or not group[PAIR_COLUMN].notna().any():
        return None
    return np.array([f"p:{p}" if p is not None and p == p else f"s:{sid}"
                     for p, sid in zip(group[PAIR_COLUMN], group["sample_id"])], dtype=object)


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
    n_used, n_units, mean, low, high (NaN when nothing is left; the interval is NaN below two units). With
    ``pair_id`` in the frame, the interval resamples pairs (n_units of them), not rows.

    Args:
        frame: a results frame (`io.read_results`) with `status` and the metric columns (and `sample_id` when
            it has ``pair_id``).
        metrics: metric columns to summarise; None (default) uses every metric column (`metric_columns`). A
            metric absent from the frame counts every ok row as NaN.
        by: strata columns, as above. Default ("domain", "occlusion_bin", "category"). Missing values of a
            stratum form the level "(none)".
        confidence: two-sided level of the bootstrap intervals, in (0, 1). Default 0.95.
        n_resamples: bootstrap resamples per interval, >= 2. Default 2000.
        seed: bootstrap seed (the same for every group). Default 0.

    Returns:
        The frame above, rows in order "all", then each `by` column's levels sorted, metrics in the given
        order; the mean and interval are in the metric's units; an interval of values that are all equal is
        that value at both ends. `attrs["confidence"]` records the level.

    Raises:
        StatsInputError: `confidence` outside (0, 1) or `n_resamples` below 2 (when an interval is computed).
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
        units = _units_of(g)
        for m in metrics:
            n, n_failed, n_nan, vals = _counts(g, m)
            mean = float(vals.mean()) if vals.size else math.nan
            if units is None:
                low, high = _interval(vals, confidence, n_resamples, seed)
                n_units = int(vals.size)
            else:
                ok = (g["status"] == "ok").to_numpy()
                raw = g[m].to_numpy(dtype=np.float64) if m in g.columns else np.full(len(g), np.nan)
                used = units[ok & ~np.isnan(raw)]
                n_units = int(np.unique(used).size)
                low, high = _clustered_interval(vals, used, confidence, n_resamples, seed) if vals.size else (math.nan, math.nan)
            rows.append(dict(stratum=stratum, level=level, metric=m, n=n, n_failed=n_failed, n_nan=n_nan,
                             n_used=int(vals.size), n_units=n_units, mean=mean, low=low, high=high))
    out = pd.DataFrame(rows, columns=["stratum", "level", "metric", "n", "n_failed", "n_nan", "n_used", "n_units",
                                      "mean", "low", "high"])
    out.attrs["confidence"] = confidence
    return out


def occlusion_accuracy(frame, *, metric: str = "fscore@0.05", threshold: float = 0.5, confidence: float = 0.95):
    """Share of accurate samples (``metric >= threshold``) per occlusion bin, overall and per domain.

    Columns: domain ("all" or a domain), occlusion_bin, n, n_failed, n_nan, n_accurate, accuracy, low, high
    (Wilson interval; NaN for an empty bin). Failed rows and NaN values count as not accurate (module
    docstring). Raises `ValueError` when the frame has no ``occlusion`` column or lacks `metric`.

    Args:
        frame: a results frame with `status`, ``occlusion`` (fraction in [0, 1]; rows with NaN or values
            outside it fall in no bin) and `metric`; per-domain rows when it has a ``domain`` column.
        metric: the accuracy metric. Default "fscore@0.05".
        threshold: a sample is accurate when ok and `metric` >= threshold (metric units). Default 0.5.
        confidence: two-sided level of the Wilson intervals, in (0, 1). Default 0.95.

    Returns:
        The frame above: four rows (one per bin, in `OCCLUSION_LABELS` order) for "all" and for each domain
        sorted; accuracy, low and high are shares in [0, 1]. `attrs` records metric, threshold and confidence.

    Raises:
        ValueError: the frame has no ``occlusion`` column or lacks `metric`.
        StatsInputError: `confidence` outside (0, 1).
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


def gap_unavailable(frame) -> str | None:
    """Why a results frame has no synthetic-vs-real gap table (one line), or None when it holds both domains.

    Args:
        frame: a results frame; its ``domain`` column is read (values compared as `str`).

    Returns:
        None when both "synthetic" and "real" rows are present, else a line starting "no gap table: " (no
        results, no domain column, or only the domains present).
    """
    if not len(frame):
        return "no gap table: no results"
    if "domain" not in frame.columns or not frame["domain"].notna().any():
        return "no gap table: the manifest has no domain column"
    present = sorted(set(frame["domain"].dropna().astype(str)))
    if {"synthetic", "real"} <= set(present):
        return None
    return f"no gap table: the manifest has only the {' and '.join(map(repr, present))} domain"


def _ratio(s, r, axis=-1):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mean(r, axis=axis) / np.mean(s, axis=axis)


PAIR_COLUMN = "pair_id"
_GAP_COLUMNS = ["metric", "figure", "direction", "mean_synthetic", "mean_real", "estimate", "low", "high",
                "n_synthetic", "n_failed_synthetic", "n_nan_synthetic", "n_real", "n_failed_real", "n_nan_real",
                "design", "n_pairs", "note"]


def _pairing(frame, pairs: str | None) -> str | None:
    """The column that matches synthetic and real rows: `pairs`, or with "auto" ``pair_id`` when present."""
    if pairs == "auto":
        return PAIR_COLUMN if PAIR_COLUMN in frame.columns and frame[PAIR_COLUMN].notna().any() else None
    if pairs is not None and pairs not in frame.columns:
        raise ValueError(f"pairs column {pairs!r} is not in the results (columns: {sorted(frame.columns)})")
    return pairs


def _keyed(group, key: str, values: np.ndarray):
    """`values` of `group` indexed by its `key` column, rows without a key left out (unpaired samples); a key
    twice in one domain is refused."""
    import pandas as pd

    has = group[key].notna().to_numpy()
    group, values = group[has], np.asarray(values)[has]
    keys = pd.Index(group[key].astype(str).to_numpy())
    dup = keys[keys.duplicated()]
    if len(dup):
        raise ValueError(f"{key} {dup[0]!r} appears twice in one domain (a pair is one synthetic and one real "
                         f"sample; a run scores each sample once)")
    return pd.Series(values, index=keys)


def _matched(syn, real, pairs: str, vs: np.ndarray, vr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of the pairs present in both domains whose two values are finite, in key order."""
    a, b = _keyed(syn, pairs, vs), _keyed(real, pairs, vr)
    keys = a.index.intersection(b.index).sort_values()
    xs, xr = a.loc[keys].to_numpy(np.float64), b.loc[keys].to_numpy(np.float64)
    keep = np.isfinite(xs) & np.isfinite(xr)
    return xs[keep], xr[keep]


def _usable(group, metric: str) -> np.ndarray:
    """The metric's values with NaN for failed rows (so pairing sees every row)."""
    ok = (group["status"] == "ok").to_numpy()
    vals = group[metric].to_numpy(dtype=np.float64) if metric in group.columns else np.full(len(group), np.nan)
    return np.where(ok, vals, np.nan)


def _figure(metric: str) -> tuple[str, Callable[[np.ndarray], np.ndarray], float]:
    """(figure name, transform of the real/synthetic ratio, value of "no gap") for `metric`."""
    if metric == "lpips":
        return "texture_degradation", lambda v: v - 1.0, 0.0
    if direction(metric) == "lower":
        return "gap_ratio", lambda v: v, 1.0
    return "relative_drop", lambda v: 1.0 - v, 0.0


def _over_units(statistic, *columns: np.ndarray):
    """`statistic` of the resampled units for `stats` bootstraps of unit indices: the bootstrap draws rows of
    `arange(n)` (one row per resample) and this looks every column up with them, so values that belong to one
    unit (a pair's two domains, a sample's two checkpoints) are resampled together."""
    def stat(idx, axis=-1):
        i = np.asarray(idx).astype(np.int64)
        return statistic(*(c[i] for c in columns), axis=axis)
    return stat


# ---- what the gap is made of: the covariate-matched and the wear-free figure --------------------------------
# The default cells of the matched figure: the occlusion bins of `occlusion_bin` crossed with the category.
MATCHING_COVARIATES = ("occlusion_bin", "category")
_DECOMPOSITION_COLUMNS = ["matching", "matched", "matched_low", "matched_high", "covariate", "covariate_low",
                          "covariate_high", "matched_coverage", "matched_cells", "unmatched_cells", "wear_free",
                          "wear_free_low", "wear_free_high", "wear", "wear_low", "wear_high", "n_unworn",
                          "decomposition_note"]


def matching_covariates(frame, covariates: Sequence[str] | None = MATCHING_COVARIATES) -> list[str]:
    """The covariates of `covariates` that a results frame can supply, in the given order.

    Args:
        frame: a results frame.
        covariates: cell columns; ``occlusion_bin`` is derived from ``occlusion`` (the bins of `occlusion_bin`),
            any other name is read as a categorical column. None or empty: no matching.

    Returns:
        The names kept: ``occlusion_bin`` when the frame has an ``occlusion`` (or ``occlusion_bin``) column with
        a value, another name when it is a column with a value.
    """
    out = []
    for c in covariates or ():
        source = "occlusion" if c == "occlusion_bin" and "occlusion_bin" not in frame.columns else c
        if source in frame.columns and frame[source].notna().any() and c not in out:
            out.append(c)
    return out


def _cells(group, covariates: Sequence[str]) -> np.ndarray:
    """The cell label of each row, ``level x level`` over `covariates` (a missing value is the level "(none)")."""
    import pandas as pd

    parts = []
    for c in covariates:
        if c == "occlusion_bin" and "occlusion_bin" not in group.columns:
            col = occlusion_bin(group["occlusion"].to_numpy(dtype=np.float64))
        else:
            col = group[c].to_numpy(dtype=object)
        parts.append(["(none)" if v is None or pd.isna(v) else str(v) for v in col])
    return np.array([" x ".join(t) for t in zip(*parts)], dtype=object)


def _unit_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """Multiplicities `(c, n)` float64 of the drawn unit indices `idx` `(c, k)` (one row per resample)."""
    idx = np.asarray(idx).astype(np.int64)
    c = idx.shape[0]
    return np.bincount((idx + (np.arange(c) * n)[:, None]).ravel(), minlength=c * n).reshape(c, n).astype(np.float64)


class _GapParts:
    """Per-run gap figures of weighted units: the raw one, the covariate-matched one and the wear-free one.

    A unit is a twin pair (paired design) or one sample of one domain (two-sample design: the synthetic units
    first, then the real ones). Every figure is a function of the units' multiplicities `w` `(c, N)` (1 for the
    data, bootstrap counts for a resample), so that all of them are evaluated on the same resamples.

    Args:
        xs: `(R, n_s)` synthetic values per run (paired: one per pair, n_s = n_r = N).
        xr: `(R, n_r)` real values per run.
        cells_s, cells_r: `(n_s,)`, `(n_r,)` cell labels of the synthetic and real samples, or None (no matching).
        xu: `(R, n_r)` the real values scored against the unworn GT (NaN where unknown), or None.
        paired: whether the units are pairs.
        transform: the figure of a real/synthetic ratio (`_figure`).
    """

    def __init__(self, xs: np.ndarray, xr: np.ndarray, cells_s: np.ndarray | None, cells_r: np.ndarray | None,
                 xu: np.ndarray | None, paired: bool, transform: Callable[[np.ndarray], np.ndarray]) -> None:
        runs, ns, nr = xs.shape[0], xs.shape[1], xr.shape[1]
        self.transform, self.paired, self.runs = transform, paired, runs
        if paired:
            self.n = ns
            self.vs, self.vr = xs, xr
            self.hs = self.hr = np.ones(ns)
            cs, cr = cells_s, cells_r
            xu_full = xu
            self.strata = None
        else:
            self.n = ns + nr
            self.vs = np.concatenate([xs, np.zeros((runs, nr))], axis=1)
            self.vr = np.concatenate([np.zeros((runs, ns)), xr], axis=1)
            self.hs = np.r_[np.ones(ns), np.zeros(nr)]
            self.hr = 1.0 - self.hs
            cs = None if cells_s is None else np.r_[np.asarray(cells_s, dtype=object), np.full(nr, None, dtype=object)]
            cr = None if cells_r is None else np.r_[np.full(ns, None, dtype=object), np.asarray(cells_r, dtype=object)]
            xu_full = None if xu is None else np.concatenate([np.full((runs, ns), np.nan), xu], axis=1)
            self.strata = ["synthetic"] * ns + ["real"] * nr  # each domain keeps its size in a resample
        self.labels: list[str] = []
        self.os = self.or_ = None
        if cs is not None and cr is not None:
            self.labels = sorted({c for c in cs if c is not None} | {c for c in cr if c is not None})
            code = {c: i for i, c in enumerate(self.labels)}
            self.os, self.or_ = np.zeros((self.n, len(code))), np.zeros((self.n, len(code)))
            for i in range(self.n):
                if self.hs[i]:
                    self.os[i, code[cs[i]]] = 1.0
                if self.hr[i]:
                    self.or_[i, code[cr[i]]] = 1.0
            # each unit's value in its cell's column, run after run: w @ this is every run's cell sums at once
            self.syn_cells = (self.vs[:, :, None] * self.os[None]).transpose(1, 0, 2).reshape(self.n, -1)
            self.real_cells = (self.vr[:, :, None] * self.or_[None]).transpose(1, 0, 2).reshape(self.n, -1)
        self.vu = None
        if xu_full is not None:
            usable = self.hr.astype(bool) & np.all(np.isfinite(xu_full), axis=0)
            self.ku = usable.astype(np.float64)
            # paired: a pair without an unworn value leaves the wear-free figure whole (both twins)
            self.ks = self.ku if paired else self.hs
            self.vu = np.where(usable, np.nan_to_num(xu_full), 0.0)
        self._memo: tuple[np.ndarray, dict[str, np.ndarray]] | None = None

    def _ratios(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """Real/synthetic ratios `(c, R)` of the raw, matched and wear-free figures under weights `w` `(c, N)`."""
        c = w.shape[0]

        def mean(v, h):
            return (w @ (v * h).T) / (w @ h)[:, None]

        with np.errstate(divide="ignore", invalid="ignore"):
            out = {"raw": mean(self.vr, self.hr) / mean(self.vs, self.hs)}
            if self.os is not None:
                ws, wr = w @ self.os, w @ self.or_  # (c, C): units drawn per cell and domain
                covered = ((ws > 0) & (wr > 0))[:, None, :]
                ss = (w @ self.syn_cells).reshape(c, self.runs, -1)
                tr = (w @ self.real_cells).reshape(c, self.runs, -1)
                syn_mean = ss / ws[:, None, :]
                # mean over the covered real units / sum_c (real share of c) x (synthetic mean of c)
                out["matched"] = (np.where(covered, tr, 0.0).sum(-1)
                                  / np.where(covered, wr[:, None, :] * syn_mean, 0.0).sum(-1))
            if self.vu is not None:
                out["wear_free"] = mean(self.vu, self.ku) / mean(self.vs, self.ks)
        return out

    def figures(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """Per-run figures `(c, R)`: raw, and where available matched, covariate = raw - matched, wear_free and
        wear = raw - wear_free (in the figure's units)."""
        if self._memo is not None and self._memo[0] is w:  # the statistics of one resample chunk share it
            return self._memo[1]
        r = self._ratios(w)
        raw = self.transform(r["raw"])
        out = {"raw": raw}
        with np.errstate(invalid="ignore"):  # inf - inf in a resample with a zero mean: NaN, reported as such
            if "matched" in r:
                out["matched"] = self.transform(r["matched"])
                out["covariate"] = raw - out["matched"]
            if "wear_free" in r:
                out["wear_free"] = self.transform(r["wear_free"])
                out["wear"] = raw - out["wear_free"]
        self._memo = (w, out)
        return out

    def coverage(self) -> tuple[float, int, list[str]]:
        """(share of the real units whose cell holds a synthetic unit, cells used, cells without one)."""
        ws, wr = self.os.sum(axis=0), self.or_.sum(axis=0)
        covered = (ws > 0) & (wr > 0)
        share = float(wr[covered].sum() / wr.sum()) if wr.sum() else math.nan
        return share, int(covered.sum()), [c for c, s, r in zip(self.labels, ws, wr) if r > 0 and s == 0]

    def intervals(self, names: Sequence[str], confidence: float, n_resamples: int, seed: int
                  ) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
        """Percentile intervals of the figures `names` (mean over runs), every one on the resamples of the raw
        figure's own interval: one run paired, `stats.bootstrap_ci` over the pairs; one run unpaired,
        `stats.two_sample_bootstrap` over each domain's samples; several runs, `stats.two_level_bootstrap`
        (runs, and the units within each domain). Returns ({name: (low, high)}, {name: why none})."""
        found: dict[str, tuple[float, float]] = {}
        missing: dict[str, str] = {}
        if self.runs > 1:
            stats = {k: (lambda ra, rb, w, k=k: _pick(self.figures(w)[k], ra)) for k in names}
            try:
                res = two_level_bootstrap(stats, (self.runs, 1), self.n, strata=self.strata, confidence=confidence,
                                          n_resamples=n_resamples, seed=seed)
            except StatsInputError as err:
                return found, {k: str(err) for k in names}
            for k in names:
                if k in res.intervals:
                    found[k] = res.interval(k)
                else:
                    missing[k] = res.undefined[k]
            return found, missing
        ns = int(self.hs.sum())
        nr = self.n - ns

        def statistic(k: str):
            def stat(*idx, axis=-1):
                flat = np.ndim(idx[0]) == 1  # the estimate on the data: one unindexed draw
                rows = [np.atleast_2d(np.asarray(i)) for i in idx]
                w = (_unit_counts(rows[0], self.n) if self.paired
                     else np.concatenate([_unit_counts(rows[0], ns), _unit_counts(rows[1], nr)], axis=1))
                v = self.figures(w)[k][:, 0]
                return v[0] if flat else v
            return stat

        for k in names:
            try:
                if self.paired:
                    res = bootstrap_ci(np.arange(self.n), statistic(k), confidence=confidence,
                                       n_resamples=n_resamples, seed=seed, vectorized=True)
                else:
                    res = two_sample_bootstrap(np.arange(ns), np.arange(nr), statistic(k), confidence=confidence,
                                               n_resamples=n_resamples, seed=seed, vectorized=True)
                found[k] = (float(res.low), float(res.high))
            except StatsInputError as err:
                missing[k] = str(err)
        return found, missing


def _mix_name(matching: Sequence[str]) -> str:
    return " x ".join(matching)


def _decomposition(parts: _GapParts | None, matching: Sequence[str], why_no_matching: str | None,
                   why_no_wear: str | None, confidence: float, n_resamples: int, seed: int) -> dict:
    """The decomposition columns of one gap row (`_DECOMPOSITION_COLUMNS`); `parts` None: no raw figure."""
    row = dict.fromkeys(_DECOMPOSITION_COLUMNS, math.nan)
    row.update(matching=_mix_name(matching) or None, matched_cells=0, unmatched_cells=0, n_unworn=0,
               decomposition_note=None)
    notes = []
    if parts is None:
        row["decomposition_note"] = "no gap figure to decompose"
        return row
    ones = np.ones((1, parts.n))
    figures = parts.figures(ones)
    wanted = []
    if parts.os is None:
        notes.append(f"matched: {why_no_matching}")
    else:
        share, used, uncovered = parts.coverage()
        row.update(matched_coverage=share, matched_cells=used, unmatched_cells=len(uncovered))
        if uncovered:
            shown = ", ".join(uncovered[:4]) + (f" and {len(uncovered) - 4} more" if len(uncovered) > 4 else "")
            notes.append(f"matched over {share:.0%} of the real units: {len(uncovered)} real cell(s) without a "
                         f"synthetic sample left out ({shown})")
        if used:
            wanted += ["matched", "covariate"]
        else:
            notes.append("matched: no real sample has a synthetic sample in its cell")
    if parts.vu is None:
        notes.append(f"wear-free: {why_no_wear}")
    else:
        k, n_real = int(parts.ku.sum()), int(parts.hr.sum())
        row["n_unworn"] = k
        if k == 0:
            notes.append("wear-free: no real unit has a usable unworn-GT value")
        else:
            wanted += ["wear_free", "wear"]
            if k < n_real:
                notes.append(f"wear-free over the {k} of {n_real} real units with a usable unworn-GT value"
                             + (" (and their twins)" if parts.paired else ""))
    for k in wanted:
        row[k] = float(figures[k][0].mean())
    if wanted:
        found, missing = parts.intervals(wanted, confidence, n_resamples, seed)
        for k, (lo, hi) in found.items():
            row[f"{k}_low"], row[f"{k}_high"] = lo, hi
        notes += [f"no {k} interval: {why}" for k, why in missing.items()]
    row["decomposition_note"] = "; ".join(notes) or None
    return row


def _unworn_lookup(real, unworn, what: str = "unworn"):
    """A function `values_of(unworn_values (n_unworn,)) -> (n_real,)` that lines the unworn frame's values up
    with the `real` rows by ``sample_id`` (NaN where the unworn frame lacks the sample)."""
    import pandas as pd

    for col in ("sample_id", "status"):
        if col not in unworn.columns:
            raise ValueError(f"{what} results lack the column {col!r} (a results frame of the real samples scored "
                             "against their unworn ground truth)")
    ids = pd.Index(unworn["sample_id"].astype(str).to_numpy())
    dup = ids[ids.duplicated()]
    if len(dup):
        raise ValueError(f"{what} results hold sample {dup[0]!r} twice")
    wanted = real["sample_id"].astype(str).to_numpy()

    def values_of(values: np.ndarray) -> np.ndarray:
        return pd.Series(np.asarray(values, dtype=np.float64), index=ids).reindex(wanted).to_numpy(np.float64)

    return values_of


def domain_gap(
    frame,
    metrics: Sequence[str] | None = None,
    *,
    accuracy_metric: str = "fscore@0.05",
    threshold: float = 0.5,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    pairs: str | None = "auto",
    covariates: Sequence[str] | None = MATCHING_COVARIATES,
    unworn=None,
):
    """Synthetic-vs-real gap per metric with a bootstrap interval, and what it is made of (module docstring).

    Columns: metric, figure ("gap_ratio" | "relative_drop" | "texture_degradation"), direction,
    mean_synthetic, mean_real, estimate, low, high, and per domain n, n_failed, n_nan (suffixes
    ``_synthetic``, ``_real``), design, n_pairs, note (why an estimate or interval is missing, else None).
    The row ``accuracy`` is the relative drop of the occlusion accuracy (all bins; failed rows count as not
    accurate). Empty when the frame lacks either domain.

    pairs: a column matching each real row to its synthetic twin (a paired benchmark's ``pair_id``; "auto"
    uses it when both domains carry ids that meet, None never). Values without a usable twin are left out of a
    paired figure and counted in its note. With it (design "paired") the figures are over the n_pairs pairs whose
    two values are usable and the interval resamples pairs, which removes the object-to-object spread both
    domains share; without it (design "two-sample") each domain is resampled on its own.

    Beside each raw figure, over the same units (docs/definitions.md, "Strata and the domain gap"):

    - ``matched``: the figure with the synthetic side reweighted to the real side's distribution over the cells
      of `covariates` (default occlusion bin x category): for a ratio, mean_real / sum_c w_c mean_syn_c with
      w_c the real units' share of cell c. Real cells without a synthetic sample are left out (of the real
      mean and of the weights): ``matched_coverage`` is the share of real units kept, ``matched_cells`` the
      cells used, ``unmatched_cells`` the real cells left out (named in ``decomposition_note``).
      ``covariate`` = estimate - matched: the part of the gap that the covariate mix accounts for, in the
      figure's units. ``matching`` names the covariates used (``"occlusion_bin x category"``).
    - ``wear_free``: the figure with every real value replaced by the same sample scored against its unworn
      ground truth (`unworn`); ``wear`` = estimate - wear_free; ``n_unworn``: the real units with such a value.

    Each has a percentile interval from the resamples of the raw figure's own interval (the same draws: pairs
    in the paired design, each domain's samples otherwise), so a part and the whole vary together. Without
    covariates in the frame, or without `unworn`, those columns are NaN and ``decomposition_note`` says why.

    Args:
        frame: a results frame with `status`, ``domain`` ("synthetic" / "real" rows; others ignored), the
            metric columns and, for a paired figure, the pair column.
        metrics: metric columns; None (default) uses every metric column. A lower-is-better metric (Chamfer,
            EMD) gives a gap ratio, LPIPS a texture degradation, any other metric a relative drop.
        accuracy_metric: the metric of the ``accuracy`` row; a sample is accurate when it is ok and
            `accuracy_metric` >= `threshold`. Default "fscore@0.05" (no ``accuracy`` row when it is absent).
        threshold: accuracy threshold, in the units of `accuracy_metric`. Default 0.5.
        confidence: two-sided level of the intervals, in (0, 1). Default 0.95.
        n_resamples: bootstrap resamples per interval. Default 2000.
        seed: bootstrap seed (the same for every metric). Default 0.
        pairs: "auto" (default), a column name, or None, as above.
        covariates: the cells of the matched figure (`matching_covariates`: ``occlusion_bin`` from
            ``occlusion``, other names as categorical columns; those absent from the frame are skipped).
            Default `MATCHING_COVARIATES` (occlusion bin x category); None or () for no matching.
        unworn: a results frame of the real samples scored against their unworn ground truth (same
            ``sample_id`` as the real rows of `frame`, e.g. a second evaluation run; other rows are ignored),
            or None (default; no wear-free figure).

    Returns:
        The frame above, one row per metric in order and then ``accuracy``; estimate, low and high are in the
        figure's units (a ratio, or a share); an interval that cannot be computed (fewer than 2 values in a
        domain, a zero synthetic mean in resamples, a bad `confidence` or `n_resamples`) is NaN with the
        reason in note; n_pairs is None for "two-sample". Then the decomposition columns: matching, matched,
        matched_low, matched_high, covariate, covariate_low, covariate_high (figure units), matched_coverage
        (share of real units in [0, 1]), matched_cells, unmatched_cells, wear_free, wear_free_low,
        wear_free_high, wear, wear_low, wear_high (figure units), n_unworn, decomposition_note. `attrs` records
        confidence, accuracy_metric, threshold, design and matching (the covariates used).

    Raises:
        ValueError: an explicit `pairs` column is not in the frame, a pair id appears twice in one domain, or
            `unworn` lacks ``sample_id`` / ``status`` or holds a sample twice.
    """
    import pandas as pd

    metrics = list(metrics) if metrics is not None else metric_columns(frame)
    columns = _GAP_COLUMNS + _DECOMPOSITION_COLUMNS
    if "domain" not in frame.columns:
        return pd.DataFrame(columns=columns)
    syn, real = frame[frame["domain"] == "synthetic"], frame[frame["domain"] == "real"]
    if not len(syn) or not len(real):
        return pd.DataFrame(columns=columns)
    pair_col = _pairing(frame, pairs)
    if pairs == "auto" and pair_col is not None and not (
            set(syn[pair_col].dropna().astype(str)) & set(real[pair_col].dropna().astype(str))):
        pair_col = None  # pair ids on one side only (e.g. unpaired real data beside paired synthetic): no pairs
    design = "two-sample" if pair_col is None else "paired"
    matching = matching_covariates(frame, covariates)
    no_matching = ("no covariates asked" if not covariates else
                   f"the results have none of the covariates {', '.join(covariates)}")
    cells_s, cells_r = (_cells(syn, matching), _cells(real, matching)) if matching else (None, None)
    lookup = _unworn_lookup(real, unworn) if unworn is not None else None

    def parts_of(vs: np.ndarray, vr: np.ndarray, vu: np.ndarray | None, transform) -> _GapParts:
        """The units of a figure in the order of its raw computation (so its resamples are the raw ones)."""
        if pair_col is not None:
            a, b = _keyed(syn, pair_col, vs), _keyed(real, pair_col, vr)
            keys = a.index.intersection(b.index).sort_values()
            xs, xr = a.loc[keys].to_numpy(np.float64), b.loc[keys].to_numpy(np.float64)
            keep = np.isfinite(xs) & np.isfinite(xr)

            def pick(group, values):
                return None if values is None else _keyed(group, pair_col, values).loc[keys].to_numpy()[keep]

            cs, cr, xu = pick(syn, cells_s), pick(real, cells_r), pick(real, vu)
            xs, xr = xs[keep], xr[keep]
        else:
            ks, kr = ~np.isnan(vs), ~np.isnan(vr)
            xs, xr = vs[ks], vr[kr]
            cs = None if cells_s is None else cells_s[ks]
            cr = None if cells_r is None else cells_r[kr]
            xu = None if vu is None else vu[kr]
        return _GapParts(xs[None], xr[None], cs, cr, None if xu is None else xu.astype(np.float64)[None],
                         pair_col is not None, transform)

    def decompose(row: dict, vs: np.ndarray, vr: np.ndarray, vu: np.ndarray | None, transform) -> dict:
        parts = parts_of(vs, vr, vu, transform) if math.isfinite(row["estimate"]) else None
        row.update(_decomposition(parts, matching, no_matching, "no results scored against the unworn GT given",
                                  confidence, n_resamples, seed))
        return row

    def figure_row(name, fig, dirn, xs, xr, counts_s, counts_r, transform):
        est = low = high = math.nan
        note = None
        if not (xs.size and xr.size):
            note = "no values in one domain" if pair_col is None else "no pair with values in both domains"
        elif xs.mean() == 0:
            note = "synthetic mean is 0: the ratio is undefined"
        else:
            est = transform(float(_ratio(xs, xr)))
            if xs.size >= 2 and xr.size >= 2:
                try:
                    if pair_col is None:
                        res = two_sample_bootstrap(xs, xr, _ratio, confidence=confidence, n_resamples=n_resamples,
                                                   seed=seed)
                    else:
                        res = bootstrap_ci(np.arange(xs.size), _over_units(_ratio, xs, xr), confidence=confidence,
                                           n_resamples=n_resamples, seed=seed, vectorized=True)
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
                    n_real=counts_r[0], n_failed_real=counts_r[1], n_nan_real=counts_r[2], design=design,
                    n_pairs=int(xs.size) if pair_col is not None else None, note=note)

    def unmatched(row: dict, used: int) -> dict:
        """Say how many usable values had no usable twin (left out of a paired figure)."""
        left = used - 2 * int(row["n_pairs"] or 0)
        if pair_col is not None and left > 0:
            row["note"] = "; ".join(filter(None, [row["note"], f"{left} value(s) without a usable twin left out"]))
        return row

    rows = []
    for m in metrics:
        ns, fs, nans, xs = _counts(syn, m)
        nr, fr, nanr, xr = _counts(real, m)
        used = xs.size + xr.size
        if pair_col is not None:
            xs, xr = _matched(syn, real, pair_col, _usable(syn, m), _usable(real, m))
        fig, tf, _ = _figure(m)
        row = unmatched(figure_row(m, fig, direction(m), xs, xr, (ns, fs, nans), (nr, fr, nanr), tf), used)
        vu = None if lookup is None else lookup(_usable(unworn, m))
        rows.append(decompose(row, _usable(syn, m), _usable(real, m), vu, tf))
    if accuracy_metric in frame.columns:
        def accurate(g):
            return ((g["status"] == "ok").to_numpy() & (g[accuracy_metric].to_numpy(dtype=np.float64) >= threshold)).astype(np.float64)

        cs, cr = _counts(syn, accuracy_metric)[:3], _counts(real, accuracy_metric)[:3]
        a_s, a_r = accurate(syn), accurate(real)
        used = a_s.size + a_r.size
        if pair_col is not None:  # failed rows count as not accurate, so every pair present in both enters
            a_s, a_r = _matched(syn, real, pair_col, a_s, a_r)
        row = unmatched(figure_row("accuracy", "relative_drop", "higher", a_s, a_r, cs, cr, lambda v: 1.0 - v), used)
        vu = None if lookup is None else lookup(accurate(unworn) if accuracy_metric in unworn.columns
                                                else np.full(len(unworn), np.nan))
        rows.append(decompose(row, accurate(syn), accurate(real), vu, lambda v: 1.0 - v))
    out = pd.DataFrame(rows, columns=columns)
    out.attrs.update(confidence=confidence, accuracy_metric=accuracy_metric, threshold=threshold, design=design,
                     matching=list(matching))
    return out


def domain_gap_runs(
    frames,
    metrics: Sequence[str] | None = None,
    *,
    accuracy_metric: str = "fscore@0.05",
    threshold: float = 0.5,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    pairs: str | None = "auto",
    covariates: Sequence[str] | None = MATCHING_COVARIATES,
    unworn=None,
):
    """`domain_gap` of one model scored in several runs (e.g. training seeds) on the same samples.

    frames: one results frame per run (a single frame, or a list of one, gives `domain_gap` itself). The
    figure of each run is computed as in `domain_gap`, on the units usable in every run (pairs on a paired
    benchmark, else the samples of each domain); ``estimate`` is their mean over runs, ``run_min`` and
    ``run_max`` their spread, and the interval is the two-level bootstrap (`stats.two_level_bootstrap`): runs
    resampled, and units resampled together for every run (within each domain when unpaired). Columns: those
    of `domain_gap` plus n_runs, run_min, run_max; n_synthetic / n_real are the rows of one run (every run
    holds the same samples), n_failed_* and n_nan_* add up over the runs. The decomposition columns of
    `domain_gap` (matched, covariate, wear_free, wear) are likewise each run's figure averaged over the runs,
    with intervals from the same two-level resamples as the estimate; the cells are those of the first run's
    rows (every run holds the same samples).

    Args:
        frames: one results frame per run, in any order (a list or tuple; a single frame is one run).
        metrics: metric columns; None (default) uses the metric columns of the first frame.
        accuracy_metric: the metric of the ``accuracy`` row; a sample is accurate when it is ok and
            `accuracy_metric` >= `threshold`. Default "fscore@0.05" (no ``accuracy`` row when it is absent).
        threshold: accuracy threshold, in the units of `accuracy_metric`. Default 0.5.
        confidence: two-sided level of the intervals, in (0, 1). Default 0.95.
        n_resamples: bootstrap resamples per interval. Default 2000.
        seed: bootstrap seed (the same for every metric). Default 0.
        pairs: "auto" (default), a column name, or None, as in `domain_gap`; the runs are paired only when
            every run resolves to the same column and, with "auto", every run has ids that meet.
        covariates: the cells of the matched figure, as in `domain_gap`. Default `MATCHING_COVARIATES`.
        unworn: one frame of unworn-GT results per run, in the order of `frames` (a single frame for one run),
            as in `domain_gap`; None (default): no wear-free figure.

    Returns:
        The frame above (an empty frame with these columns when a run lacks ``domain`` or either domain); a
        figure without usable units or without an interval is NaN with the reason in note. `attrs` records
        confidence, accuracy_metric, threshold, design and n_runs (not set on the empty frame).

    Raises:
        ValueError: an explicit `pairs` column is missing from a run, a key (pair id, or sample id when
            unpaired) appears twice in one domain of a run, or `unworn` does not hold one frame per run (or
            lacks ``sample_id`` / ``status``, or holds a sample twice).
    """
    import pandas as pd

    frames = list(frames) if isinstance(frames, (list, tuple)) else [frames]
    if unworn is not None:
        unworn = list(unworn) if isinstance(unworn, (list, tuple)) else [unworn]
        if len(unworn) != len(frames):
            raise ValueError(f"unworn: {len(unworn)} frame(s) for {len(frames)} run(s); give one per run, in order")
    columns = _GAP_COLUMNS + _DECOMPOSITION_COLUMNS + ["n_runs", "run_min", "run_max"]
    if len(frames) == 1:
        out = domain_gap(frames[0], metrics, accuracy_metric=accuracy_metric, threshold=threshold,
                         confidence=confidence, n_resamples=n_resamples, seed=seed, pairs=pairs,
                         covariates=covariates, unworn=None if unworn is None else unworn[0])
        out["n_runs"], out["run_min"], out["run_max"] = 1, out["estimate"], out["estimate"]
        return out[columns]
    metrics = list(metrics) if metrics is not None else metric_columns(frames[0])
    if any("domain" not in f.columns for f in frames):
        return pd.DataFrame(columns=columns)
    found = [_pairing(f, pairs) for f in frames]
    pair_col = found[0] if len(set(found)) == 1 else None
    split = [(f[f["domain"] == "synthetic"], f[f["domain"] == "real"]) for f in frames]
    if any(not len(s) or not len(r) for s, r in split):
        return pd.DataFrame(columns=columns)
    if pairs == "auto" and pair_col is not None and not all(
            set(s[pair_col].dropna().astype(str)) & set(r[pair_col].dropna().astype(str)) for s, r in split):
        pair_col = None
    design = "two-sample" if pair_col is None else "paired"
    n_runs = len(frames)
    key = pair_col or "sample_id"
    matching = matching_covariates(frames[0], covariates)
    no_matching = ("no covariates asked" if not covariates else
                   f"the results have none of the covariates {', '.join(covariates)}")
    cells = ((_keyed(split[0][0], key, _cells(split[0][0], matching)),
              _keyed(split[0][1], key, _cells(split[0][1], matching))) if matching else None)
    lookups = None if unworn is None else [_unworn_lookup(r, u) for (_, r), u in zip(split, unworn)]

    def table(values_of) -> tuple[np.ndarray, np.ndarray, object, object]:
        """(synthetic, real) values `(R, units)` usable in every run (pairs in key order, or samples), and the
        keys of their units."""
        syn = pd.concat([_keyed(s, key, values_of(s)) for s, _ in split], axis=1, join="inner")
        real = pd.concat([_keyed(r, key, values_of(r)) for _, r in split], axis=1, join="inner")
        if pair_col is not None:
            both = pd.concat([syn, real], axis=1, join="inner").dropna().sort_index()
            return (both.iloc[:, :n_runs].to_numpy(np.float64).T, both.iloc[:, n_runs:].to_numpy(np.float64).T,
                    both.index, both.index)
        syn, real = syn.dropna().sort_index(), real.dropna().sort_index()
        return syn.to_numpy(np.float64).T, real.to_numpy(np.float64).T, syn.index, real.index

    def decompose(row: dict, tf, xs, xr, keys_s, keys_r, unworn_of) -> dict:
        """The decomposition columns of a row, on the units (and so the resamples) of its raw figure."""
        parts = None
        if math.isfinite(row["estimate"]):
            cs = None if cells is None else cells[0].loc[keys_s].to_numpy()
            cr = None if cells is None else cells[1].loc[keys_r].to_numpy()
            xu = None if lookups is None else np.stack([
                _keyed(r, key, look(unworn_of(u))).reindex(keys_r).to_numpy(np.float64)
                for (_, r), look, u in zip(split, lookups, unworn)])
            parts = _GapParts(xs, xr, cs, cr, xu, pair_col is not None, tf)
        row.update(_decomposition(parts, matching, no_matching, "no results scored against the unworn GT given",
                                  confidence, n_resamples, seed))
        return row

    def row_for(name, fig, dirn, tf, xs, xr, counts):
        row = dict.fromkeys(columns, math.nan)
        row.update(metric=name, figure=fig, direction=dirn, design=design, n_runs=n_runs, note=None,
                   n_pairs=int(xs.shape[1]) if pair_col is not None else None, **counts)
        if not (xs.shape[1] and xr.shape[1]):
            row["note"] = "no unit usable in every run"
            return row
        ms, mr = xs.mean(axis=1), xr.mean(axis=1)
        if np.any(ms == 0):
            row["note"] = "a run's synthetic mean is 0: the ratio is undefined"
            return row
        per_run = tf(mr / ms)
        row.update(mean_synthetic=float(ms.mean()), mean_real=float(mr.mean()), estimate=float(per_run.mean()),
                   run_min=float(per_run.min()), run_max=float(per_run.max()))
        ns = xs.shape[1]
        if pair_col is not None:
            def stat(ra, rb, w):
                with np.errstate(divide="ignore", invalid="ignore"):  # a resample of zeros: undefined, reported
                    return _pick(tf((w @ xr.T) / (w @ xs.T)), ra)
            units, strata = xs.shape[1], None
        else:
            both = np.concatenate([xs, xr], axis=1)

            def stat(ra, rb, w):
                ws, wr = w[:, :ns], w[:, ns:]
                with np.errstate(divide="ignore", invalid="ignore"):
                    r = ((wr @ both[:, ns:].T) / wr.sum(1, keepdims=True)) / ((ws @ both[:, :ns].T) / ws.sum(1, keepdims=True))
                return _pick(tf(r), ra)
            units, strata = both.shape[1], ["synthetic"] * ns + ["real"] * xr.shape[1]
        try:
            res = two_level_bootstrap({"gap": stat}, (n_runs, 1), units, strata=strata, confidence=confidence,
                                      n_resamples=n_resamples, seed=seed)
            if "gap" in res.intervals:
                row["low"], row["high"] = res.interval("gap")
            else:
                row["note"] = f"no interval: {res.undefined['gap']}"
        except StatsInputError as err:
            row["note"] = f"no interval: {err}"
        return row

    def counts_of(metric):
        cs = [_counts(s, metric)[:3] for s, _ in split]
        cr = [_counts(r, metric)[:3] for _, r in split]
        return dict(n_synthetic=cs[0][0], n_failed_synthetic=sum(c[1] for c in cs), n_nan_synthetic=sum(c[2] for c in cs),
                    n_real=cr[0][0], n_failed_real=sum(c[1] for c in cr), n_nan_real=sum(c[2] for c in cr))

    rows = []
    for m in metrics:
        fig, tf, _ = _figure(m)
        xs, xr, keys_s, keys_r = table(lambda g, m=m: _usable(g, m))
        rows.append(decompose(row_for(m, fig, direction(m), tf, xs, xr, counts_of(m)), tf, xs, xr, keys_s, keys_r,
                              lambda u, m=m: _usable(u, m)))
    if all(accuracy_metric in f.columns for f in frames):
        def accurate(g):
            return ((g["status"] == "ok").to_numpy()
                    & (g[accuracy_metric].to_numpy(dtype=np.float64) >= threshold)).astype(np.float64)

        def unworn_accurate(u):
            return accurate(u) if accuracy_metric in u.columns else np.full(len(u), np.nan)

        xs, xr, keys_s, keys_r = table(accurate)
        drop = lambda v: 1.0 - v  # noqa: E731
        rows.append(decompose(row_for("accuracy", "relative_drop", "higher", drop, xs, xr, counts_of(accuracy_metric)),
                              drop, xs, xr, keys_s, keys_r, unworn_accurate))
    out = pd.DataFrame(rows, columns=columns)
    out.attrs.update(confidence=confidence, accuracy_metric=accuracy_metric, threshold=threshold, design=design,
                     n_runs=n_runs, matching=list(matching))
    return out


_GAP_CHANGE_COLUMNS = ["metric", "figure", "design", "n_units_synthetic", "n_units_real", "estimate_a",
                       "estimate_a_low", "estimate_a_high", "estimate_b", "change", "change_low", "change_high",
                       "closed", "closed_low", "closed_high", "closed_by_real", "closed_by_real_low",
                       "closed_by_real_high", "note"]


def _share_closed(gap_a, gap_b, none: float):
    """(|gap_a - none| - |gap_b - none|) / |gap_a - none|, NaN where A has no gap (nothing to close)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (np.abs(gap_a - none) - np.abs(gap_b - none)) / np.abs(gap_a - none)
    return np.where(np.isfinite(v), v, np.nan)


def _without_gap_no_share(row: dict, none: float, problems: list[str]) -> str | None:
    """The row's note; when A's own interval includes no gap, the shares closed are blanked and the note says
    why (a share of a gap that may not exist means nothing)."""
    if row["estimate_a_low"] <= none <= row["estimate_a_high"]:
        for name in ("closed", "closed_by_real"):
            row[name] = row[f"{name}_low"] = row[f"{name}_high"] = math.nan
        problems = [f"A's gap interval [{row['estimate_a_low']:.3g}, {row['estimate_a_high']:.3g}] includes no "
                    f"gap ({none:g}): no share of it to close"]
    return "; ".join(problems) or None


def _pick(per_run: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Mean over the drawn runs of per-run figures `(c, R)` -> `(c,)`."""
    return np.take_along_axis(per_run, runs, axis=1).mean(axis=1)


def gap_change(
    frame_a,
    frame_b,
    metrics: Sequence[str] = GAP_METRICS,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    pairs: str | None = "auto",
):
    """How the synthetic-vs-real gap moved from checkpoint A to checkpoint B scored on the same test samples
    (e.g. the final stage-1 and stage-2 checkpoints), with bootstrap intervals.

    Per metric, over the same usable units: the gap figure of `domain_gap` for A and for B, ``change`` =
    figure(B) - figure(A), and ``closed`` = (|figure(A) - no gap| - |figure(B) - no gap|) / |figure(A) -
    no gap|, the share of A's gap that B closed ((R_a - R_b) / (R_a - 1) for a gap ratio above 1; negative
    when the gap widened). A figure can move because the real split got better or because the synthetic
    split got worse, so ``closed_by_real`` holds the share closed with the synthetic mean kept at A's: what
    the real split's change alone did. ``closed`` and ``closed_by_real`` are NaN, with a note, when A's own
    interval includes no gap (a share of a gap that may not exist means nothing).

    Units: with a pair column (design "paired"; `pairs` as in `domain_gap`) the pairs whose four values
    (two domains x two checkpoints) are usable, resampled whole; otherwise (design "two-sample") the samples
    usable in both checkpoints, synthetic and real resampled on their own, each sample keeping its A and B
    values together. Every interval comes from the same resamples.

    Columns: metric, figure, design, n_units_synthetic, n_units_real, estimate_a, estimate_a_low,
    estimate_a_high, estimate_b, change, change_low, change_high, closed, closed_low, closed_high,
    closed_by_real, closed_by_real_low, closed_by_real_high, note.

    Args:
        frame_a: results frame of checkpoint A (the earlier one), with `status`, ``domain`` and the metrics.
        frame_b: results frame of checkpoint B on the same samples.
        metrics: metric columns. Default `GAP_METRICS` ("chamfer_l2", "fscore@0.05").
        confidence: two-sided level of the intervals, in (0, 1). Default 0.95.
        n_resamples: bootstrap resamples per interval. Default 2000.
        seed: bootstrap seed (the same for every statistic, so all intervals share the resamples). Default 0.
        pairs: "auto" (default), a column name, or None, as in `domain_gap`; paired only when both frames
            resolve to the same column.

    Returns:
        The frame above, one row per metric in order; figures in the units of `domain_gap`, shares as
        fractions (1 = the whole gap closed). Entries that cannot be computed (metric or ``domain`` missing,
        fewer than 2 units in a domain, a zero synthetic mean, an undefined interval) are NaN with the reason
        in note. `attrs` records confidence and design.

    Raises:
        ValueError: an explicit `pairs` column is missing from a frame, or a key (pair id, or sample id when
            unpaired) appears twice in one domain.
    """
    import pandas as pd

    cols = _GAP_CHANGE_COLUMNS
    found = [_pairing(f, pairs) for f in (frame_a, frame_b)]
    pair_col = found[0] if found[0] == found[1] else None  # "auto" pairs only when both runs carry the pairs
    design = "two-sample" if pair_col is None else "paired"
    rows = []
    for m in metrics:
        fig, tf, none = _figure(m)
        row = dict.fromkeys(cols, math.nan)
        row.update(metric=m, figure=fig, design=design, n_units_synthetic=0, n_units_real=0, note=None)
        rows.append(row)
        if m not in frame_a.columns or m not in frame_b.columns:
            row["note"] = "metric missing from a run"
            continue
        if "domain" not in frame_a.columns or "domain" not in frame_b.columns:
            row["note"] = "no domain column"
            continue
        key = pair_col or "sample_id"
        parts = {label: [_keyed(g, key, _usable(g, m)) for g in (f[f["domain"] == d] for d in ("synthetic", "real"))]
                 for label, f in (("a", frame_a), ("b", frame_b))}
        if pair_col is not None:
            t = pd.concat([parts["a"][0], parts["a"][1], parts["b"][0], parts["b"][1]], axis=1, join="inner").dropna()
            sa, ra, sb, rb = (t[c].to_numpy(np.float64) for c in t.columns)
            units = [np.arange(len(t))]
            row["n_units_synthetic"] = row["n_units_real"] = len(t)
        else:
            s = pd.concat([parts["a"][0], parts["b"][0]], axis=1, join="inner").dropna()
            r = pd.concat([parts["a"][1], parts["b"][1]], axis=1, join="inner").dropna()
            sa, sb = (s[c].to_numpy(np.float64) for c in s.columns)
            ra, rb = (r[c].to_numpy(np.float64) for c in r.columns)
            units = [np.arange(len(s)), np.arange(len(r))]
            row["n_units_synthetic"], row["n_units_real"] = len(s), len(r)
        if min(len(u) for u in units) < 2 or sa.mean() == 0 or sb.mean() == 0:
            row["note"] = "fewer than 2 usable units in a domain, or a synthetic mean of 0"
            continue

        def figure_a(sa, ra, sb, rb, axis=-1):
            return tf(_ratio(sa, ra, axis))

        def change(sa, ra, sb, rb, axis=-1):
            return tf(_ratio(sb, rb, axis)) - tf(_ratio(sa, ra, axis))

        def closed(sa, ra, sb, rb, axis=-1):
            return _share_closed(tf(_ratio(sa, ra, axis)), tf(_ratio(sb, rb, axis)), none)

        def closed_by_real(sa, ra, sb, rb, axis=-1):  # B's real split against A's synthetic one
            return _share_closed(tf(_ratio(sa, ra, axis)), tf(_ratio(sa, rb, axis)), none)

        stats = {"estimate_a": figure_a, "change": change, "closed": closed, "closed_by_real": closed_by_real}
        for name, stat in stats.items():
            row[name] = float(stat(sa, ra, sb, rb))
        row["estimate_b"] = float(tf(_ratio(sb, rb)))
        problems = []
        for name, stat in stats.items():
            try:
                if pair_col is not None:
                    res = bootstrap_ci(units[0], _over_units(stat, sa, ra, sb, rb), confidence=confidence,
                                       n_resamples=n_resamples, seed=seed, vectorized=True)
                else:
                    def look(i_s, i_r, axis=-1, stat=stat):
                        i_s, i_r = np.asarray(i_s).astype(np.int64), np.asarray(i_r).astype(np.int64)
                        return stat(sa[i_s], ra[i_r], sb[i_s], rb[i_r], axis=axis)
                    res = two_sample_bootstrap(units[0], units[1], look, confidence=confidence,
                                               n_resamples=n_resamples, seed=seed, vectorized=True)
            except StatsInputError as err:  # e.g. resamples with no gap at A, where a share is undefined
                problems.append(f"no {name} interval: {err}")
                continue
            row[f"{name}_low"], row[f"{name}_high"] = float(res.low), float(res.high)
        row["note"] = _without_gap_no_share(row, none, problems)
    out = pd.DataFrame(rows, columns=cols)
    out.attrs.update(confidence=confidence, design=design)
    return out


def gap_change_runs(
    frames_a,
    frames_b,
    metrics: Sequence[str] = GAP_METRICS,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    pairs: str | None = "auto",
):
    """`gap_change` with several runs per checkpoint (e.g. the final stage-1 and stage-2 checkpoints of
    several training seeds), every run scored on the same samples.

    Each run's gap figure is that of `domain_gap`; ``estimate_a`` / ``estimate_b`` are their means over the
    runs of A / B, ``change`` = estimate_b - estimate_a and ``closed`` the share of estimate_a's gap that
    estimate_b closed, as in `gap_change`. ``closed_by_real`` keeps the synthetic split at A's: the mean over
    every (A run, B run) couple of the figure of B's real mean against A's synthetic mean, as a share of
    estimate_a's gap. Intervals are two-level (`stats.two_level_bootstrap`): the runs of each side resampled,
    and the same units (pairs on a paired benchmark, else the samples of each domain) for every run, with one
    set of draws for every figure. With one run per side the estimates equal `gap_change`'s.

    Units: those usable (ok, finite) in every run of both sides: pairs whose two twins are, or, unpaired, the
    samples of each domain.

    Columns: those of `gap_change` plus n_runs_a, n_runs_b, run_min_a, run_max_a, run_min_b, run_max_b (the
    spread of the per-run figures).

    Args:
        frames_a: the results frames of A's runs (a list; a single frame is one run).
        frames_b: the results frames of B's runs, on the same samples.
        metrics: metric columns. Default `GAP_METRICS` ("chamfer_l2", "fscore@0.05").
        confidence: two-sided level of the intervals, in (0, 1). Default 0.95.
        n_resamples: bootstrap resamples per interval. Default 2000.
        seed: bootstrap seed (one set of resamples for every figure and metric). Default 0.
        pairs: "auto" (default), a column name, or None, as in `domain_gap`; paired only when every run
            resolves to the same column.

    Returns:
        The frame above, one row per metric in order; NaN with the reason in note where a figure cannot be
        computed, and ``closed`` / ``closed_by_real`` NaN when estimate_a's interval includes no gap. `attrs`
        records confidence, design, n_runs_a and n_runs_b.

    Raises:
        ValueError: a side without runs, an explicit `pairs` column missing from a run, or a key appearing
            twice in one domain of a run.
    """
    import pandas as pd

    runs = [list(f) if isinstance(f, (list, tuple)) else [f] for f in (frames_a, frames_b)]
    if not runs[0] or not runs[1]:
        raise ValueError("gap_change_runs needs at least one run per side")
    n_a, n_b = len(runs[0]), len(runs[1])
    cols = _GAP_CHANGE_COLUMNS + ["n_runs_a", "n_runs_b", "run_min_a", "run_max_a", "run_min_b", "run_max_b"]
    every = runs[0] + runs[1]
    found = {_pairing(f, pairs) for f in every}
    pair_col = found.pop() if len(found) == 1 else None
    design = "two-sample" if pair_col is None else "paired"
    key = pair_col or "sample_id"
    rows = []
    for m in metrics:
        fig, tf, none = _figure(m)
        row = dict.fromkeys(cols, math.nan)
        row.update(metric=m, figure=fig, design=design, n_units_synthetic=0, n_units_real=0, note=None,
                   n_runs_a=n_a, n_runs_b=n_b)
        rows.append(row)
        if any(m not in f.columns for f in every):
            row["note"] = "metric missing from a run"
            continue
        if any("domain" not in f.columns for f in every):
            row["note"] = "no domain column"
            continue
        syn = pd.concat([_keyed(f[f["domain"] == "synthetic"], key, _usable(f[f["domain"] == "synthetic"], m))
                         for f in every], axis=1, join="inner")
        real = pd.concat([_keyed(f[f["domain"] == "real"], key, _usable(f[f["domain"] == "real"], m))
                          for f in every], axis=1, join="inner")
        if pair_col is not None:
            both = pd.concat([syn, real], axis=1, join="inner").dropna().sort_index()
            syn, real = both.iloc[:, :len(every)], both.iloc[:, len(every):]
        else:
            syn, real = syn.dropna().sort_index(), real.dropna().sort_index()
        xs, xr = syn.to_numpy(np.float64).T, real.to_numpy(np.float64).T  # (R_a + R_b, units)
        ns, nr = xs.shape[1], xr.shape[1]
        row["n_units_synthetic"], row["n_units_real"] = ns, nr
        if min(ns, nr) < 2 or np.any(xs.mean(axis=1) == 0):
            row["note"] = "fewer than 2 usable units in a domain, or a run's synthetic mean of 0"
            continue
        if pair_col is not None:
            values, strata = np.concatenate([xs, xr], axis=0), None  # (2R, K): a pair's values move together

            def means(w):  # (c, K) -> synthetic and real means (c, R_a + R_b)
                s = w @ values.T / w.sum(1, keepdims=True)
                return s[:, :len(every)], s[:, len(every):]
            n_units = ns
        else:
            values = np.concatenate([xs, xr], axis=1)  # (R, ns + nr), each domain its own stratum
            strata = ["synthetic"] * ns + ["real"] * nr

            def means(w):
                ws, wr = w[:, :ns], w[:, ns:]
                return (ws @ values[:, :ns].T / ws.sum(1, keepdims=True),
                        wr @ values[:, ns:].T / wr.sum(1, keepdims=True))
            n_units = ns + nr

        last: list = [None, None]  # (the draw, its parts): every statistic of a chunk gets the same draw

        def parts(ra, rb, w):
            """(figure A, figure B, mixed figure) per resample `(c,)`: means over the drawn runs."""
            if last[0] is not None and all(x is y for x, y in zip(last[0], (ra, rb, w))):
                return last[1]
            ms, mr = means(w)
            with np.errstate(divide="ignore", invalid="ignore"):
                fa = _pick(tf(mr[:, :n_a] / ms[:, :n_a]), ra)
                fb = _pick(tf(mr[:, n_a:] / ms[:, n_a:]), rb)
                # B's real mean of run j against A's synthetic mean of run i, every drawn (i, j)
                mix = tf(mr[:, n_a:][:, None, :] / ms[:, :n_a][:, :, None])  # (c, R_a, R_b)
            mix = np.take_along_axis(mix, ra[:, :, None], axis=1)
            mix = np.take_along_axis(mix, rb[:, None, :], axis=2).mean(axis=(1, 2))
            last[:] = [(ra, rb, w), (fa, fb, mix)]  # the references keep the draw alive, so `is` is safe
            return fa, fb, mix

        stats = {
            "estimate_a": lambda ra, rb, w: parts(ra, rb, w)[0],
            "estimate_b": lambda ra, rb, w: parts(ra, rb, w)[1],
            "change": lambda ra, rb, w: np.subtract(*parts(ra, rb, w)[1::-1]),
            "closed": lambda ra, rb, w: _share_closed(*parts(ra, rb, w)[:2], none),
            "closed_by_real": lambda ra, rb, w: _share_closed(parts(ra, rb, w)[0], parts(ra, rb, w)[2], none),
        }
        ms, mr = xs.mean(axis=1), xr.mean(axis=1)
        per_a, per_b = tf(mr[:n_a] / ms[:n_a]), tf(mr[n_a:] / ms[n_a:])
        row.update(run_min_a=float(per_a.min()), run_max_a=float(per_a.max()), run_min_b=float(per_b.min()),
                   run_max_b=float(per_b.max()))
        problems = []
        try:
            res = two_level_bootstrap(stats, (n_a, n_b), n_units, strata=strata, confidence=confidence,
                                      n_resamples=n_resamples, seed=seed)
        except StatsInputError as err:
            res = None
            problems.append(f"no interval: {err}")
        if res is not None:
            for name in stats:
                row[name] = res.estimates[name]
                if name == "estimate_b":
                    continue
                if name in res.intervals:
                    row[f"{name}_low"], row[f"{name}_high"] = res.interval(name)
                else:
                    problems.append(f"no {name} interval: {res.undefined[name]}")
        row["note"] = _without_gap_no_share(row, none, problems)
    out = pd.DataFrame(rows, columns=cols)
    out.attrs.update(confidence=confidence, design=design, n_runs_a=n_a, n_runs_b=n_b)
    return out


def run_summary(
    frame,
    *,
    accuracy_metric: str = "fscore@0.05",
    threshold: float = 0.5,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    covariates: Sequence[str] | None = MATCHING_COVARIATES,
    unworn=None,
) -> dict:
    """The summaries of one run's results frame (one protocol fingerprint), JSON-ready.

    Args:
        frame: a results frame (`io.read_results`, rows of one fingerprint) with `status` and `sample_id`.
        accuracy_metric: a sample is accurate when `accuracy_metric` >= `threshold`. Default "fscore@0.05".
        threshold: the accuracy threshold, in the metric's units. Default 0.5.
        confidence: two-sided level of every interval, in (0, 1). Default 0.95.
        n_resamples: bootstrap resamples per interval. Default 2000.
        seed: bootstrap seed. Default 0.
        covariates: the cells of the gap's matched figure (`domain_gap`). Default `MATCHING_COVARIATES`.
        unworn: the real samples scored against their unworn GT, for the gap's wear-free figure
            (`domain_gap`); None (default): none.

    Returns:
        ``{"counts": {samples, failed, duplicates_dropped}, "metrics": [...] (the metric columns with at least
        one value), "metrics_without_values": [...] (those with none, e.g. LPIPS without its weights: named,
        never summarised), "summary": `summarize` rows,
        "occlusion_accuracy": `occlusion_accuracy` rows or None (no occlusion or metric), "domain_gap":
        `domain_gap` rows or None, "domain_gap_note": why there is no gap table or None, "failures":
        `evaluate.failures.failure_summary`}``; NaN written as None.

    Raises:
        ValueError: a pair id appears twice in one domain (from `domain_gap`).
        StatsInputError: `confidence` outside (0, 1) or `n_resamples` below 2 (from `summarize`).
    """
    from ..jsonable import to_jsonable
    from .failures import failure_summary

    every = metric_columns(frame)
    # a column no sample has a value of (LPIPS scored without its backbone weights) is named, not summarised
    metrics = [m for m in every if not len(frame) or frame[m].notna().any()]
    empty = [m for m in every if m not in metrics]
    summary = summarize(frame, metrics, confidence=confidence, n_resamples=n_resamples, seed=seed)
    acc = (occlusion_accuracy(frame, metric=accuracy_metric, threshold=threshold, confidence=confidence)
           if accuracy_metric in frame.columns and "occlusion" in frame.columns else None)
    note = gap_unavailable(frame)
    gap = (domain_gap(frame, metrics, accuracy_metric=accuracy_metric, threshold=threshold, confidence=confidence,
                      n_resamples=n_resamples, seed=seed, covariates=covariates, unworn=unworn)
           if note is None else None)
    n = len(frame)
    return to_jsonable({
        "counts": {"samples": n, "failed": int((frame["status"] != "ok").sum()) if n else 0,
                   "duplicates_dropped": frame.attrs.get("duplicates", 0)},
        "metrics": metrics,
        "metrics_without_values": empty,
        "summary": summary,
        "occlusion_accuracy": acc,
        "domain_gap": gap,
        "domain_gap_note": note,
        "failures": failure_summary(frame),
    })
