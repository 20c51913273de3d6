"""The comparison of side B against side A on the same samples, under one protocol.

`compare_frames` takes each side's results as one frame (one run) or a list of frames (several runs of
one recipe, e.g. training seeds; `evaluate.sides` loads them) and analyses the samples every run of both
sides holds:

- **Failures are part of the verdict.** The failure rate of each side with a Wilson interval (with several
  runs, of the mean count per run) and a test of the difference: the exact
  McNemar test on the units that failed on one side only (one run per side; a unit is a sample, or a
  cluster of samples, which then counts as failed when any of its samples failed), or the two-level
  bootstrap of the difference of the failure rates (several runs). A significant rise is a regression.
  ``failed_as="worst"`` scores a failed sample at the worst value of that metric seen on its side, so that
  failures also weigh in the metric table; ``"exclude"`` (default) leaves them out of it.
- **Units stay units.** Samples that belong together (twin pairs, ``pair_id``, found automatically; or any
  ``cluster`` column) are resampled as one unit in every stratum and every interval, and the Wilcoxon test
  runs on per-unit mean differences.
- **Several figures.** Per stratum (all; domain; occlusion bin; category) and metric: each side's mean
  and median, the paired mean difference B - A, the median difference and, for lower-is-better distances,
  the geometric-mean ratio (exp of the mean of log B - log A, as a change in %), each with an interval;
  the probability of improvement (per sample, the share of run pairs in which B is better, ties half,
  averaged over samples; Agarwal et al. 2021); and the spread of the per-run means. Samples more than
  `OUTLIER_FACTOR` times their side's median are listed, never dropped.
- **Intervals.** One run per side: the mean difference's interval is `stats.paired_bootstrap` (clustered,
  studentized below 50 units); the other figures come from the two-level bootstrap with one run per side
  (units resampled). Several runs: every interval is the two-level bootstrap (`stats.two_level_bootstrap`):
  runs resampled within each side, units resampled and shared by both sides.
- **The verdict names its figure** (``figure``): with one run per side the paired Wilcoxon signed-rank
  test by default (its direction is that of the signed ranks, not of the mean); with several runs, the
  geometric-mean ratio of distances and the mean difference of the other metrics, tested by the two-level
  bootstrap (p = the smallest level at which the percentile interval excludes no change). p-values are
  Holm-adjusted per stratification; a *regression* is a metric of the regression list significantly worse
  for B in the "all" stratum by more than ``min_effect``, or a significant rise in failures.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..io.results import direction, metric_columns
from ..jsonable import to_jsonable
from ..stats import (
    StatsInputError,
    bootstrap_pvalue,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    sign_flip_test,
    two_level_bootstrap,
    wilcoxon_signed_rank,
    wilson_interval,
    win_rate,
)
from ..stats.two_level import run_means, run_medians, run_probability_of_improvement
from .protocols import APPEARANCE_METRICS, INPUT_VIEW_METRICS, Protocol
from .common_samples import CommonSamples, as_runs, check_same_protocol, common_samples
from .sides import CompareInputError, Side
from .summary import domain_gap_runs, gap_unavailable, occlusion_accuracy

__all__ = [
    "Comparison",
    "FAILED_AS",
    "FIGURES",
    "OUTLIER_FACTOR",
    "compare_frames",
    "comparison_json",
    "load_votes",
]

STRATA = ("domain", "occlusion_bin", "category")
FAILED_AS = ("exclude", "worst")
FIGURES = ("auto", "wilcoxon", "mean", "median", "geomean")
OUTLIER_FACTOR = 10.0
FIGURE_NAMES = {
    "wilcoxon": "paired Wilcoxon signed-rank test",
    "mean": "mean difference B - A",
    "median": "difference of the medians B - A",
    "geomean": "geometric-mean ratio B / A",
}


# ----------------------------------------------------------------------------------------------------------
# votes


def load_votes(path):
    """Preference votes (``item_id, model_a, model_b, winner (a|b|tie), rater_id``) from CSV or JSONL,
    validated by `io.judgements.read_votes` (missing columns, empty cells, bad winners, a model against
    itself, duplicated votes, each named by its line). Raises `CompareInputError` with that message."""
    import pathlib

    from ..io.judgements import JudgementFileError, read_votes

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--votes {path}: no such file")
    try:
        return read_votes(path)
    except JudgementFileError as err:
        raise CompareInputError(f"--votes {err}") from None


def _vote_counts(votes, names_a: Sequence[str], names_b: Sequence[str]) -> dict[str, Any]:
    """Wins of B over A among the votes that compare A with B (either order)."""
    a_set, b_set = set(names_a), set(names_b)
    fwd = votes["model_a"].isin(a_set) & votes["model_b"].isin(b_set)
    rev = votes["model_a"].isin(b_set) & votes["model_b"].isin(a_set)
    if not (fwd | rev).any():
        seen = sorted(set(votes["model_a"]) | set(votes["model_b"]))
        raise CompareInputError(f"--votes: no vote compares A ({', '.join(sorted(a_set))}) with B "
                                f"({', '.join(sorted(b_set))}); the file names the models {seen}")
    w = votes["winner"]
    b_wins = int(((fwd & (w == "b")) | (rev & (w == "a"))).sum())
    a_wins = int(((fwd & (w == "a")) | (rev & (w == "b"))).sum())
    ties = int(((fwd | rev) & (w == "tie")).sum())
    res = win_rate(b_wins, a_wins, ties)
    out = {"votes": int((fwd | rev).sum()), "items": int(votes.loc[fwd | rev, "item_id"].nunique()), **res.as_dict()}
    if "rater_id" in votes.columns:
        out["raters"] = int(votes.loc[fwd | rev, "rater_id"].nunique())
    return out


# ----------------------------------------------------------------------------------------------------------
# the result


TABLE_COLUMNS = [
    "stratum", "level", "metric", "direction", "n", "n_units", "n_failed_a", "n_failed_b",
    "mean_a", "low_a", "high_a", "mean_b", "low_b", "high_b", "delta", "delta_low", "delta_high", "rel_delta",
    "median_a", "median_b", "median_delta", "median_delta_low", "median_delta_high",
    "geo_change", "geo_change_low", "geo_change_high",
    "prob_improvement", "prob_improvement_low", "prob_improvement_high",
    "run_min_a", "run_max_a", "run_min_b", "run_max_b",
    "figure", "figure_note", "effect", "pvalue", "p_holm", "significant", "better", "interval_method",
]


@dataclass
class Comparison:
    """The analysis of B against A (module docstring).

    table: one row per (stratum, level, metric) with the columns `TABLE_COLUMNS`: n (samples used), n_units
    (resampled units), n_failed_a / n_failed_b (failed entries over all runs), each side's mean [low, high]
    and median, delta (mean of B - A) [delta_low, delta_high], rel_delta (delta / |mean_a|), median_delta
    [...], geo_change (geometric-mean ratio B / A minus 1; lower-is-better distances) [...],
    prob_improvement (P(B better) per sample over runs, averaged) [...], run_min / run_max (the spread of
    the per-run means of each side), figure (what the verdict of this row rests on), pvalue (its test),
    p_holm, significant (p_holm < alpha), better ("A" | "B" | "=" by that figure's direction),
    interval_method (of the mean difference's interval).
    failures: the failure-rate comparison (counts, rates with intervals, test, p, significant, worse).
    gap_a, gap_b: `summary.domain_gap_runs` frames, each side's gap with what it is made of (the
    covariate-matched figure and the covariate part over occlusion bin x category, with their coverage;
    the wear-free columns stay NaN here: a comparison has no unworn-GT scores); accuracy_a, accuracy_b: `summary.occlusion_accuracy`
    frames (one run per side only; None otherwise or without occlusion and F-score@0.05). preference:
    per-sample proxy preference on one metric; votes: the human votes' win rate of B (None when not given);
    samples: counts and lists of ids; outliers: samples above `OUTLIER_FACTOR` x their side's median;
    regressions: what regressed; settings: alpha, confidence, resamples, seed, figures, runs, units.
    """

    labels: tuple[str, str]
    protocol: dict
    fingerprint: str
    table: Any
    gap_a: Any
    gap_b: Any
    accuracy_a: Any
    accuracy_b: Any
    preference: dict
    votes: dict | None
    samples: dict
    regressions: list[dict]
    settings: dict
    per_sample: Any = None
    failures: dict | None = None
    outliers: list[dict] | None = None

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    def verdict(self) -> str:
        """One sentence: regression, improvement, mixed or no significant change, naming what it rests on."""
        a, b = self.labels
        alpha = self.settings["alpha"]
        rests = self.settings.get("verdict_figures") or {}
        on = "; ".join(f"{FIGURE_NAMES.get(f, f)} for {', '.join(ms)}" for f, ms in rests.items()) or "the table"
        fail = self.failures or {}
        unit = "pairs" if fail.get("unit") == "cluster" else "samples"
        fail_note = ""
        if fail.get("significant"):
            who, other = (b, a) if fail["worse"] == "B" else (a, b)
            rate_who, rate_other = (fail["rate_b"], fail["rate_a"]) if fail["worse"] == "B" else (fail["rate_a"], fail["rate_b"])
            fail_note = (f"{who} fails on more {unit} than {other} ({fmt_rate_pct(rate_who)} vs {fmt_rate_pct(rate_other)}, "
                         f"{fail['test']} p {fail['pvalue']:.2g})")
        overall = self.table[self.table["stratum"] == "all"]
        untestable = overall[overall["pvalue"].isna() & overall["metric"].isin(self.settings["regression_metrics"])]
        caveat = ""
        if len(untestable):
            caveat += f"; not testable: {', '.join(untestable['metric'])}"
        if fail and fail.get("pvalue") != fail.get("pvalue"):
            caveat += "; failures not tested"
        tail = f" (verdict on {on}{caveat})"
        metric_regs = [r["metric"] for r in self.regressions if r["metric"] != "failure rate"]
        if self.regressions:
            parts = []
            if metric_regs:
                parts.append(f"{b} is significantly worse than {a} on {', '.join(metric_regs)}")
            if any(r["metric"] == "failure rate" for r in self.regressions):
                parts.append(fail_note)
            return f"REGRESSION: {'; and '.join(parts)} (Holm-adjusted p < {alpha:g}; verdict on {on}{caveat})"
        significant = overall[overall["significant"]]
        better = significant[significant["better"] == "B"]["metric"].tolist()
        worse = significant[significant["better"] == "A"]["metric"].tolist()
        if fail.get("worse") == "A":
            better = better + ["failures"]
        elif fail.get("worse") == "B":  # a rise in failures that min_effect or the list kept out of the regressions
            worse = worse + ["failures"]
        if better and not worse:
            return f"IMPROVEMENT: {b} is significantly better than {a} on {', '.join(better)}{tail}"
        if better or worse:
            return (f"MIXED: {b} is significantly better on {', '.join(better) or 'nothing'} and worse on "
                    f"{', '.join(worse)} (none in the regression list beyond its threshold){tail}")
        return (f"NO SIGNIFICANT DIFFERENCE between {a} and {b} (Holm-adjusted p >= {alpha:g} for every metric "
                f"and for failures){tail}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (NaN as None)."""
        def rec(f):
            return None if f is None else f.to_dict("records")

        return to_jsonable({
            "labels": list(self.labels), "protocol": self.protocol, "fingerprint": self.fingerprint,
            "verdict": self.verdict(), "regressed": self.regressed, "regressions": self.regressions,
            "failures": self.failures, "samples": self.samples, "table": rec(self.table),
            "gap": {"A": rec(self.gap_a), "B": rec(self.gap_b)},
            "occlusion_accuracy": {"A": rec(self.accuracy_a), "B": rec(self.accuracy_b)},
            "preference": self.preference, "votes": self.votes, "outliers": self.outliers or [],
            "settings": self.settings,
        })


def fmt_rate_pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}%"


def _impute_worst(v: np.ndarray, ok: np.ndarray, dirn: str) -> np.ndarray:
    """Failed entries set to the worst finite value of the side (every run, every sample)."""
    finite = v[np.isfinite(v)]
    if not finite.size:
        return v
    worst = finite.max() if dirn == "lower" else finite.min()
    return np.where(~ok, worst, v)


# ----------------------------------------------------------------------------------------------------------
# failures


def failure_comparison(ok_a: np.ndarray, ok_b: np.ndarray, units: np.ndarray, *, confidence: float) -> dict[str, Any]:
    """Failure rates of both sides and the test of their difference (module docstring).

    ok_a `(R_a, N)`, ok_b `(R_b, N)` bool (scored ok); units `(N,)` int codes of the resampled units (a unit
    fails in a run when any of its samples failed there). Rates are shares of units (of samples when every
    unit is one sample), averaged over runs, with a Wilson interval of one run's rate. The test: with one
    run per side the exact McNemar test on the units failed on one side only; with several, the exact
    sign-flip test of each unit's failure share over B's runs minus over A's runs (which adds no evidence
    when a run is repeated). The caller Holm-adjusts ``pvalue`` with the metrics. Returns a JSON-ready dict.
    """
    ra, rb, n = ok_a.shape[0], ok_b.shape[0], ok_a.shape[1]
    k = int(units.max()) + 1 if n else 0

    def unit_failed(ok: np.ndarray) -> np.ndarray:  # (R, K) bool
        return np.stack([np.bincount(units, weights=(~row).astype(np.float64), minlength=k) > 0 for row in ok])

    ua, ub = unit_failed(ok_a), unit_failed(ok_b)
    share_a, share_b = ua.mean(axis=0), ub.mean(axis=0)
    out: dict[str, Any] = {
        "samples": n, "units": k, "unit": "cluster" if k < n else "sample", "runs": [ra, rb],
        "failed_a": float((~ok_a).sum(axis=1).mean()), "failed_b": float((~ok_b).sum(axis=1).mean()),
        "failed_units_a": float(ua.sum(axis=1).mean()), "failed_units_b": float(ub.sum(axis=1).mean()),
        "rate_a": float(share_a.mean()) if k else math.nan, "rate_b": float(share_b.mean()) if k else math.nan,
    }
    for side in ("a", "b"):
        lo, hi = wilson_interval(out[f"failed_units_{side}"], k, confidence) if k else (math.nan, math.nan)
        out[f"rate_{side}_low"], out[f"rate_{side}_high"] = lo, hi
    if ra == 1 and rb == 1:
        res = mcnemar_exact(int((ua[0] & ~ub[0]).sum()), int((ub[0] & ~ua[0]).sum()))
        out.update(test="exact McNemar", only_a=res.only_a, only_b=res.only_b, pvalue=res.pvalue,
                   min_attainable_p=res.min_attainable_p)
        direction_of_change = res.only_b - res.only_a
    else:
        d = share_b - share_a
        res = sign_flip_test(d)
        out.update(test="exact sign-flip" if res.exact else "sign-flip (Monte Carlo)",
                   only_a=int((d < 0).sum()), only_b=int((d > 0).sum()), pvalue=res.pvalue,
                   min_attainable_p=res.min_attainable_p)
        direction_of_change = float(d.sum())
    out["delta"] = out["rate_b"] - out["rate_a"]
    out["more_failures"] = None if direction_of_change == 0 else ("B" if direction_of_change > 0 else "A")
    return out


# ----------------------------------------------------------------------------------------------------------
# one (stratum level, metric) cell


def _wilcoxon_units(x: np.ndarray, y: np.ndarray, units: np.ndarray) -> tuple[float, float, float]:
    """(p, direction, Hodges-Lehmann estimate) of the Wilcoxon signed-rank test of y - x on per-unit mean
    differences: direction is +1 when the positive ranks outweigh the negative ones; the estimate is the
    median of the Walsh averages (d_i + d_j) / 2, i <= j, the location shift that goes with the test
    (Hollander, Wolfe & Chicken 2014, section 3.2)."""
    from scipy.stats import rankdata

    d = y - x
    _, inv = np.unique(units, return_inverse=True)
    du = np.bincount(inv, weights=d) / np.bincount(inv)
    i, j = np.triu_indices(du.size)
    hl = float(np.median((du[i] + du[j]) / 2.0))
    nz = du[du != 0]
    if not nz.size:
        return 1.0, 0.0, hl  # identical on every unit: no evidence of any difference
    ranks = rankdata(np.abs(nz))
    sign = float(np.sign(ranks[nz > 0].sum() - ranks[nz < 0].sum()))
    # exact null distribution without ties or zeros (n <= 50); else the tie-corrected normal approximation
    exact = nz.size <= 50 and np.unique(np.abs(nz)).size == nz.size and nz.size == du.size
    try:
        p = wilcoxon_signed_rank(np.zeros_like(du), du, method="exact" if exact else "approx").pvalue
    except StatsInputError:
        p = math.nan
    return p, sign, hl


def _cell(x: np.ndarray, y: np.ndarray, units: np.ndarray, dirn: str, figure: str, *, confidence: float,
          n_resamples: int, seed: int) -> dict[str, Any]:
    """Every figure of one (level, metric): x `(R_a, n)`, y `(R_b, n)` finite values on the samples used."""
    ra, rb, n = x.shape[0], y.shape[0], x.shape[1]
    row: dict[str, Any] = dict.fromkeys(TABLE_COLUMNS[8:], math.nan)
    row.update(n=int(n), n_units=int(np.unique(units).size) if n else 0, figure=figure, figure_note=None,
               interval_method=None, better="=")
    if n == 0:
        return row
    lower = dirn == "lower"
    ma, mb = x.mean(axis=1), y.mean(axis=1)
    row.update(mean_a=float(ma.mean()), mean_b=float(mb.mean()), delta=float(mb.mean() - ma.mean()),
               median_a=float(np.median(x, axis=1).mean()), median_b=float(np.median(y, axis=1).mean()),
               run_min_a=float(ma.min()), run_max_a=float(ma.max()), run_min_b=float(mb.min()), run_max_b=float(mb.max()))
    row["median_delta"] = row["median_b"] - row["median_a"]
    row["rel_delta"] = row["delta"] / abs(row["mean_a"]) if row["mean_a"] else math.nan
    positive = lower and bool(np.all(x > 0) and np.all(y > 0))
    lx, ly = (np.log(x), np.log(y)) if positive else (None, None)
    if positive:
        row["geo_change"] = float(np.expm1(ly.mean(axis=1).mean() - lx.mean(axis=1).mean()))
    elif figure == "geomean":
        figure = "mean"  # a ratio with a zero in it is undefined: fall back, and say so
        row.update(figure=figure, figure_note="geometric mean undefined (a value <= 0): verdict on the mean")
    sx, sy = (-x, -y) if lower else (x, y)  # oriented: higher is better for the probability of improvement
    stats = {
        "mean_a": lambda xa, xb, w: run_means(x, w, xa), "mean_b": lambda xa, xb, w: run_means(y, w, xb),
        "delta": lambda xa, xb, w: run_means(y, w, xb) - run_means(x, w, xa),
        "median_delta": lambda xa, xb, w: run_medians(y, w, xb) - run_medians(x, w, xa),
        "poi": lambda xa, xb, w: run_probability_of_improvement(sy, sx, w, xb, xa),
    }
    if positive:
        stats["log_ratio"] = lambda xa, xb, w: run_means(ly, w, xb) - run_means(lx, w, xa)
    res = None
    try:
        res = two_level_bootstrap(stats, (ra, rb), n, clusters=units, confidence=confidence,
                                  n_resamples=n_resamples, seed=seed)
    except StatsInputError:  # fewer than 2 units: no interval
        pass
    row["prob_improvement"] = float(run_probability_of_improvement(sy, sx, np.ones((1, n)), np.arange(rb)[None],
                                                                   np.arange(ra)[None])[0])
    if res is not None:
        row["low_a"], row["high_a"] = res.interval("mean_a")
        row["low_b"], row["high_b"] = res.interval("mean_b")
        row["median_delta_low"], row["median_delta_high"] = res.interval("median_delta")
        row["prob_improvement_low"], row["prob_improvement_high"] = res.interval("poi")
        row["delta_low"], row["delta_high"] = res.interval("delta")
        row["interval_method"] = "two-level percentile" if ra > 1 or rb > 1 else "percentile"
        if positive:
            lo, hi = res.interval("log_ratio")
            with np.errstate(over="ignore"):
                row["geo_change_low"], row["geo_change_high"] = float(np.expm1(lo)), float(np.expm1(hi))
        if ra == 1 and rb == 1 and figure == "wilcoxon":
            # the mean is not what the verdict tests here, so its interval can be the best one for a mean: the
            # paired bootstrap, clustered, studentized below 50 units (a bootstrap figure that the verdict
            # tests keeps the percentile interval its p-value inverts)
            d_units = units if np.unique(units).size < n else None
            for name, (a, b) in (("delta", (x[0], y[0])), ("log_ratio", (lx[0], ly[0]) if positive else (None, None))):
                if a is None:
                    continue
                try:
                    r = paired_bootstrap(a, b, clusters=d_units, confidence=confidence, n_resamples=n_resamples,
                                         seed=seed)
                except StatsInputError:
                    continue
                if name == "delta":
                    row["delta_low"], row["delta_high"], row["interval_method"] = r.low, r.high, r.method
                else:
                    with np.errstate(over="ignore"):
                        row["geo_change_low"], row["geo_change_high"] = float(np.expm1(r.low)), float(np.expm1(r.high))

    # the verdict's figure: its p-value, its direction and its relative size (+ = B larger)
    if figure == "wilcoxon":
        p, direction_of_change, hl = _wilcoxon_units(x[0], y[0], units)
        row["effect"] = hl / abs(row["median_a"]) if row["median_a"] else math.nan
    else:
        name = {"mean": "delta", "median": "median_delta", "geomean": "log_ratio"}[figure]
        p = res.pvalue(name) if res is not None and name in res.intervals else math.nan
        direction_of_change = {"delta": row["delta"], "median_delta": row["median_delta"],
                               "log_ratio": row["geo_change"]}[name]
        row["effect"] = {"delta": row["rel_delta"], "geo_change": row["geo_change"],
                         "median_delta": row["median_delta"] / abs(row["median_a"]) if row["median_a"] else math.nan,
                         "log_ratio": row["geo_change"]}[name]
    row["pvalue"] = float(p) if p == p else math.nan
    if direction_of_change == direction_of_change and direction_of_change != 0:
        row["better"] = ("B" if direction_of_change < 0 else "A") if lower else ("B" if direction_of_change > 0 else "A")
    return row


def _groups(info, strata: Sequence[str]):
    yield "all", "all", np.arange(len(info))
    for col in strata:
        if col not in info.columns or info[col].isna().all():
            continue
        keys = info[col].astype(object).where(info[col].notna(), "(none)")
        for level in sorted(set(keys), key=str):
            yield col, str(level), np.flatnonzero((keys == level).to_numpy())


def _figure_for(metric: str, figure: str, several_runs: bool) -> str:
    if figure != "auto":
        return figure
    if not several_runs:
        return "wilcoxon"
    return "geomean" if direction(metric) == "lower" else "mean"


# ----------------------------------------------------------------------------------------------------------
# the analysis


def _chosen_metrics(runs: Sequence[Any], protocol: Protocol | None, metrics: Sequence[str] | None,
                    regression_metrics: Sequence[str] | None, preference_metric: str | None
                    ) -> tuple[list[str], list[str], str]:
    """(compared, regression, preference) metrics: the given ones checked against the columns every run
    has, or the defaults of `compare_frames`."""
    have = metric_columns(runs[0])
    for f in runs[1:]:
        theirs = set(metric_columns(f))
        have = [m for m in have if m in theirs]
    if metrics is None:
        # the protocol's headline columns (+ appearance): precision/recall only restate the F-score and
        # would widen the Holm family
        # the protocol's headline columns, its visibility split, then appearance (precision/recall only
        # restate the F-score); a column no run filled (LPIPS without its weights) is left out
        wanted = (protocol.columns() + protocol.visibility_columns() + list(APPEARANCE_METRICS + INPUT_VIEW_METRICS)
                  if protocol is not None else [])
        filled = [m for m in have if any(f[m].notna().any() for f in runs)]
        headline = [m for m in wanted if m in filled]
        metrics = headline or have
    else:
        unknown = [m for m in metrics if m not in have]
        if unknown:
            raise CompareInputError(f"metric(s) {unknown} are not in both results; available: {have}")
        metrics = list(metrics)
    if not metrics:
        raise CompareInputError("the two results share no metric column")
    if regression_metrics is None:
        headline = protocol.columns() if protocol is not None else metrics
        regression_metrics = [m for m in headline if m in metrics] or list(metrics)
    else:
        unknown = [m for m in regression_metrics if m not in metrics]
        if unknown:
            raise CompareInputError(f"regression metric(s) {unknown} are not compared; compared: {list(metrics)}")
    preference_metric = preference_metric or regression_metrics[0]
    if preference_metric not in metrics:
        raise CompareInputError(f"preference metric {preference_metric!r} is not compared; compared: {list(metrics)}")
    return list(metrics), list(regression_metrics), preference_metric


def _holm_by_stratification(rows: list[dict[str, Any]], failures: dict[str, Any], alpha: float,
                            gate: Sequence[str]) -> None:
    """Set ``p_holm`` and ``significant`` of every row and of `failures`, in place. Per stratification, one Holm
    family holds every (level, metric) test of the `gate` metrics (the regression metrics; the "all" family
    also holds the failure test, so that the regression gate keeps its family-wise error rate at alpha), and a
    second family the other compared metrics (descriptive: e.g. the visibility split and the input-view
    appearance, which would otherwise widen the gate's family without ever triggering it)."""
    gate = set(gate)
    for stratum in dict.fromkeys(r["stratum"] for r in rows):
        for gated in (True, False):
            block = [r for r in rows if r["stratum"] == stratum and (r["metric"] in gate) == gated]
            with_failures = gated and stratum == "all"
            ps = [r["pvalue"] for r in block] + ([failures["pvalue"]] if with_failures else [])
            ps = np.array(ps, dtype=np.float64)
            fin = np.isfinite(ps)
            adj = np.full(ps.shape, np.nan)
            if fin.any():
                adj[fin] = holm(ps[fin], alpha).pvalues
            for r, q in zip(block, adj):
                r["p_holm"] = float(q)
                r["significant"] = bool(q < alpha) if q == q else False
            if with_failures:
                failures["p_holm"] = float(adj[-1])
    failures["alpha"] = alpha
    q = failures.get("p_holm", math.nan)
    failures["significant"] = bool(q == q and q < alpha and failures["more_failures"] is not None)
    failures["worse"] = failures["more_failures"] if failures["significant"] else None


def _regressions(table, regression_metrics: Sequence[str], failures: dict[str, Any], min_effect: float
                 ) -> list[dict[str, Any]]:
    """The regression list: metrics of `regression_metrics` significantly worse for B in the "all" stratum by
    more than `min_effect` (the verdict figure's relative change), and a significant rise in failures."""
    regressions = []
    for r in table[(table["stratum"] == "all") & table["metric"].isin(regression_metrics)].to_dict("records"):
        # the verdict figure's relative change, signed so that positive means worse for B
        worse_by = r["effect"] if r["direction"] == "lower" else -r["effect"]
        if r["significant"] and r["better"] == "A" and (not min_effect or (worse_by == worse_by and worse_by > min_effect)):
            regressions.append({k: r[k] for k in ("metric", "figure", "mean_a", "mean_b", "delta", "delta_low",
                                                  "delta_high", "rel_delta", "geo_change", "effect", "pvalue",
                                                  "p_holm")})
    if failures["worse"] == "B":
        regressions.append({"metric": "failure rate", "figure": failures["test"], "mean_a": failures["rate_a"],
                            "mean_b": failures["rate_b"], "delta": failures["delta"], "delta_low": None,
                            "delta_high": None, "rel_delta": None, "geo_change": None, "effect": None,
                            "pvalue": failures["pvalue"], "p_holm": failures["p_holm"]})
    return regressions


def compare_frames(
    frame_a,
    frame_b,
    *,
    labels: tuple[str, str] = ("A", "B"),
    metrics: Sequence[str] | None = None,
    regression_metrics: Sequence[str] | None = None,
    preference_metric: str | None = None,
    alpha: float = 0.05,
    min_effect: float = 0.0,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    votes=None,
    vote_names: tuple[Sequence[str], Sequence[str]] | None = None,
    protocol: Protocol | None = None,
    accuracy_threshold: float = 0.5,
    failed_as: str = "exclude",
    figure: str = "auto",
    cluster: str | None = "auto",
) -> Comparison:
    """The analysis of B against A (module docstring).

    Args:
        frame_a, frame_b: each side's results (`io.read_results` schema): one frame, or a list of frames,
            one per run of that side.
        metrics: compared metrics (default: the protocol's headline columns and appearance metrics every
            frame has; without a protocol every metric column they share, in A's order).
        regression_metrics: the metrics a significant worsening of fails the comparison (default: the
            protocol's headline columns, else every metric).
        preference_metric: the per-sample proxy preference metric (default the first regression metric).
        alpha: family-wise error rate of each Holm family and the level of the failure test; min_effect:
            a regression also needs the verdict figure's relative change above this.
        confidence, n_resamples, seed: the intervals.
        votes, vote_names: a votes frame (`load_votes`) and (names of A, names of B) as the file spells them.
        protocol: the protocol scored under (labels the result, picks the default metrics).
        accuracy_threshold: F-score@0.05 at or above which a sample is accurate.
        failed_as: "exclude" (failed samples left out of the metric table; their rate is tested apart) or
            "worst" (scored at the worst value of the metric seen on their side).
        figure: what the verdict rests on: "auto" (Wilcoxon with one run per side; with several, "geomean"
            for lower-is-better metrics and "mean" otherwise), "wilcoxon" (one run per side only), "mean",
            "median" or "geomean" (lower-is-better metrics; others fall back to "mean").
        cluster: the column of units resampled together: "auto" (``pair_id`` when present), None (every
            sample its own unit) or a column name.

    Returns a `Comparison`. Raises `ProtocolMismatchError` when the frames were scored under different
    fingerprints and `CompareInputError` for bad arguments or sides that share no sample or metric.
    """
    import pandas as pd

    runs_a, runs_b = as_runs(frame_a), as_runs(frame_b)
    if not runs_a or not runs_b:
        raise CompareInputError("each side needs at least one run")
    if not 0.0 < alpha < 1.0:
        raise CompareInputError(f"alpha must lie in (0, 1), got {alpha}")
    if failed_as not in FAILED_AS:
        raise CompareInputError(f"failed_as must be one of {FAILED_AS}, got {failed_as!r}")
    if figure not in FIGURES:
        raise CompareInputError(f"figure must be one of {FIGURES}, got {figure!r}")
    several = len(runs_a) > 1 or len(runs_b) > 1
    if figure == "wilcoxon" and several:
        raise CompareInputError("the Wilcoxon verdict pairs one run of each side; with several runs per side use "
                                "figure 'mean', 'median' or 'geomean' (two-level bootstrap)")
    fingerprint = check_same_protocol(runs_a, runs_b, labels)
    metrics, regression_metrics, preference_metric = _chosen_metrics(
        runs_a + runs_b, protocol, metrics, regression_metrics, preference_metric)

    vote_res = None
    if votes is not None:  # before the analysis: a votes file that names neither side fails fast
        names = vote_names or ((labels[0],), (labels[1],))
        vote_res = _vote_counts(votes, names[0], names[1])

    sides, samples = common_samples(runs_a, runs_b, metrics, cluster, labels)
    info, units = sides.info, sides.units
    failures = failure_comparison(sides.ok_a, sides.ok_b, units, confidence=confidence)
    values = {}
    for m in metrics:
        va, vb = sides.values_a[m], sides.values_b[m]
        if failed_as == "worst":
            va, vb = _impute_worst(va, sides.ok_a, direction(m)), _impute_worst(vb, sides.ok_b, direction(m))
        values[m] = (va, vb)
    figures = {m: _figure_for(m, figure, several) for m in metrics}
    for m in metrics:
        if figures[m] == "geomean" and direction(m) != "lower":
            figures[m] = "mean"  # a ratio of scores where higher is better (and may be 0) is not a distance

    strata = [s for s in STRATA if s in info.columns]
    rows = []
    for stratum, level, idx in _groups(info, strata):
        for m in metrics:
            va, vb = values[m][0][:, idx], values[m][1][:, idx]
            use = np.all(np.isfinite(va), axis=0) & np.all(np.isfinite(vb), axis=0)
            cell = _cell(va[:, use], vb[:, use], units[idx][use], direction(m), figures[m], confidence=confidence,
                         n_resamples=n_resamples, seed=seed)
            cell.update(stratum=stratum, level=level, metric=m, direction=direction(m),
                        n_failed_a=int((~sides.ok_a[:, idx]).sum()), n_failed_b=int((~sides.ok_b[:, idx]).sum()))
            rows.append(cell)
    _holm_by_stratification(rows, failures, alpha, regression_metrics)
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)

    regressions = _regressions(table, regression_metrics, failures, min_effect)

    preference, per_sample = _preference(sides, values, preference_metric, confidence)
    outliers = _outliers(sides, values, metrics, labels)
    groups_a = [f[f["sample_id"].astype(str).isin(set(sides.ids))] for f in runs_a]
    groups_b = [f[f["sample_id"].astype(str).isin(set(sides.ids))] for f in runs_b]
    gaps = [domain_gap_runs(g, metrics, n_resamples=n_resamples, seed=seed, threshold=accuracy_threshold)
            for g in (groups_a, groups_b)]
    accs = [occlusion_accuracy(g[0], threshold=accuracy_threshold)
            if (len(g) == 1 and "occlusion" in g[0].columns and "fscore@0.05" in g[0].columns) else None
            for g in (groups_a, groups_b)]
    samples["failed_only_A"] = [s for s, a, b in zip(sides.ids, sides.ok_a.all(0), sides.ok_b.all(0)) if not a and b]
    samples["failed_only_B"] = [s for s, a, b in zip(sides.ids, sides.ok_a.all(0), sides.ok_b.all(0)) if a and not b]
    samples["failed_both"] = [s for s, a, b in zip(sides.ids, sides.ok_a.all(0), sides.ok_b.all(0)) if not a and not b]
    samples["both_ok"] = int((sides.ok_a.all(0) & sides.ok_b.all(0)).sum())
    proto = protocol.to_dict() if protocol is not None else {"name": sorted(set(runs_a[0]["protocol"]))[0]}
    by_figure: dict[str, list[str]] = {}
    for m in regression_metrics:
        by_figure.setdefault(figures[m], []).append(m)
    return Comparison(
        labels=tuple(labels), protocol=proto, fingerprint=fingerprint, table=table, gap_a=gaps[0], gap_b=gaps[1],
        accuracy_a=accs[0], accuracy_b=accs[1], preference=preference, votes=vote_res, samples=samples,
        regressions=regressions, per_sample=per_sample, failures=failures, outliers=outliers,
        settings={"alpha": alpha, "min_effect": min_effect, "confidence": confidence, "n_resamples": n_resamples,
                  "seed": seed, "regression_metrics": list(regression_metrics), "metrics": list(metrics),
                  "accuracy_threshold": accuracy_threshold, "failed_as": failed_as, "figure": figure,
                  "figures": figures, "verdict_figures": by_figure, "runs": [len(runs_a), len(runs_b)],
                  "cluster": sides.cluster, "units": int(units.max()) + 1, "outlier_factor": OUTLIER_FACTOR,
                  "gap_note": gap_unavailable(groups_a[0]),
                  "holm_family": "every (level, metric) test of one stratification; the 'all' stratum decides the verdict"},
    )


def _preference(sides: CommonSamples, values, metric: str, confidence: float):
    """Per-sample proxy preference on `metric` (run-averaged values; ties kept) and the per-sample frame."""
    x, y = (v.mean(axis=0) for v in values[metric])
    use = np.isfinite(x) & np.isfinite(y)
    lower = direction(metric) == "lower"
    b_better = use & ((y < x) if lower else (y > x))
    a_better = use & ((x < y) if lower else (x > y))
    ties = use & (x == y)
    preference: dict[str, Any] = {"metric": metric, "direction": direction(metric), "samples": int(use.sum())}
    if use.any():
        preference.update(win_rate(int(b_better.sum()), int(a_better.sum()), int(ties.sum()),
                                   confidence=confidence).as_dict())
        preference.update(interval="Wilson", test="exact binomial")
        units = sides.units[use]
        if np.unique(units).size < units.size and (b_better | a_better).any():
            # twins are not independent: the rate's interval resamples units, and the test is the exact sign-flip
            # test of each unit's wins minus losses (the binomial test when every unit is one sample)
            import pandas as pd

            from ..stats import clustered_bootstrap

            w, lo_ = b_better[use].astype(np.float64), a_better[use].astype(np.float64)
            d = np.bincount(units, weights=w - lo_)
            preference["pvalue"] = sign_flip_test(d[np.unique(units)]).pvalue
            decisive = (w + lo_) > 0
            frame = pd.DataFrame({"w": w[decisive], "u": units[decisive]})
            try:
                r = clustered_bootstrap(frame, "w", "u", confidence=confidence)
                preference["low"], preference["high"] = float(r.low), float(r.high)
            except StatsInputError:
                preference["low"] = preference["high"] = math.nan
            preference.update(interval="bootstrap over units", test="exact sign-flip over units")
    per_sample = sides.info[[c for c in ("sample_id", "domain", "category", "occlusion") if c in sides.info.columns]].copy()
    per_sample["a"], per_sample["b"] = x, y
    per_sample["ok_a"], per_sample["ok_b"] = sides.ok_a.all(axis=0), sides.ok_b.all(axis=0)
    per_sample["preferred"] = np.where(b_better, "B", np.where(a_better, "A", np.where(ties, "tie", "")))
    return preference, per_sample


def _outliers(sides: CommonSamples, values, metrics: Sequence[str], labels) -> list[dict[str, Any]]:
    """Samples whose value (in any run) exceeds `OUTLIER_FACTOR` x the median of their side, for
    lower-is-better metrics (flagged, never dropped)."""
    out = []
    for m in metrics:
        if direction(m) != "lower":
            continue
        for side, v, ok in (("A", sides.values_a[m], sides.ok_a), ("B", sides.values_b[m], sides.ok_b)):
            finite = v[np.isfinite(v)]
            if not finite.size:
                continue
            med = float(np.median(finite))
            if med <= 0:
                continue
            worst = np.nanmax(np.where(np.isfinite(v), v, -np.inf), axis=0)
            for j in np.flatnonzero(worst > OUTLIER_FACTOR * med):
                out.append({"metric": m, "side": side, "label": labels[0 if side == "A" else 1],
                            "sample_id": sides.ids[j], "value": float(worst[j]), "median": med,
                            "ratio": float(worst[j] / med)})
    return sorted(out, key=lambda r: -r["ratio"])


def comparison_json(comparison: Comparison, sides: Sequence[Side] = ()) -> str:
    """The comparison and its sides as indented JSON (what ``compare --json`` prints)."""
    payload = comparison.to_dict()
    payload["sides"] = [s.describe() for s in sides]
    return json.dumps(payload, indent=2, allow_nan=False)
