"""Human-judgement analysis: rubric quality control (docs/engine.md); pairwise preference votes are
analysed in `stats.preference`.

Rubric (`rubric_summary`): four criteria scored 0-10 (geometry, texture, completeness, multiview). Definitions
used throughout (module constants, overridable):
- a rating *accepts* when its sum is >= 32 of 40 (`ACCEPT_THRESHOLD`, the seed's 80%); an item is accepted
  when the mean of its raters' sums is >= 32 (the accept rate's unit is the item: ratings of one item are not
  independent). Accept rates carry Wilson intervals; the per-rating rate is reported beside it.
- a criterion *fails* when its score is < 6 (`FAIL_BELOW`): 32/40 needs a mean of 8, so a score under 6 is
  more than 2 points short of the bar on its own and can only be offset by near-perfect scores elsewhere;
  a *compensatory accept* is an accepting rating with a failing criterion.
- a decision is *near the threshold* when |sum - 32| <= 2 (`NEAR_MARGIN`): one point on two criteria flips it.
- failure modes of a rating: each failing criterion maps to a mode - geometry -> "geometry", texture ->
  "texture", multiview -> "multi-view", completeness -> "occlusion" when the item's `occlusion` (hidden
  fraction) is >= 0.3 (`OCCLUSION_FAILURE`, the lower edge of the occlusion bin [.3, .6)) and
  "incompleteness" otherwise.
- agreement per criterion and on the accept decision, chosen by design. Scores: the disagreement weight is
  the squared score difference on the 0-10 scale itself (`SCORE_SCALE`), not the rank among the scores seen:
  two raters who rated every unit -> Cohen's kappa with quadratic weights over the 11 categories 0..10
  (sklearn's `cohen_kappa_score(weights="quadratic", labels=range(11))`); three or more raters, or any
  missing rating, or scores off the whole-number scale -> Krippendorff's interval alpha (the same
  squared-difference weighting for any number of raters). Accept: two raters, complete -> Cohen's kappa;
  three or more, complete -> Fleiss' kappa; missing ratings -> Krippendorff's nominal alpha. Krippendorff's
  alpha is reported for every case as well, so rounds with different designs stay comparable; the
  `method` column says which statistic `value` is. A unit is (round, item_id).

Inputs are frames validated by `sam3d_eval.io.judgements` (this layer imports numpy/scipy/pandas only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..jsonable import to_jsonable
from ._checks import StatsInputError, check_frame
from .agreement import cohens_kappa, fleiss_kappa, krippendorff_alpha
from .intervals import wilson_interval

__all__ = [
    "ACCEPT_THRESHOLD",
    "CRITERIA",
    "FAILURE_MODES",
    "FAIL_BELOW",
    "NEAR_MARGIN",
    "OCCLUSION_FAILURE",
    "SCORE_SCALE",
    "RubricSummary",
    "accept_rates",
    "accept_trend",
    "failure_mix",
    "item_decisions",
    "rater_bias",
    "rating_decisions",
    "rubric_agreement",
    "rubric_summary",
]

CRITERIA = ("geometry", "texture", "completeness", "multiview")
ACCEPT_THRESHOLD = 32.0
FAIL_BELOW = 6.0
NEAR_MARGIN = 2.0
OCCLUSION_FAILURE = 0.3
SCORE_SCALE = tuple(range(11))  # every criterion is scored 0..10; weighted agreement weighs these distances
FAILURE_MODES = ("geometry", "texture", "incompleteness", "occlusion", "multi-view")


# ---------------------------------------------------------------------------------------------------------
# Rubric ratings
# ---------------------------------------------------------------------------------------------------------
def rating_decisions(
    ratings: pd.DataFrame,
    *,
    threshold: float = ACCEPT_THRESHOLD,
    fail_below: float = FAIL_BELOW,
    margin: float = NEAR_MARGIN,
    occlusion_failure: float = OCCLUSION_FAILURE,
) -> pd.DataFrame:
    """Per rating: `total`, `accepted`, `n_failing`, `compensatory`, `near_threshold` and one boolean column
    `fail_<mode>` per failure mode (module docstring definitions).

    Args:
        ratings: non-empty frame with `item_id`, `rater_id` and the four criteria columns (scores 0-10, no
            missing score), optional `round` (default 1 for every rating) and `occlusion` (hidden fraction in
            [0, 1]; NaN or absent = not occluded), as validated by `sam3d_eval.io.judgements`.
        threshold: accept threshold on the sum of the four scores (0-40 points). Default `ACCEPT_THRESHOLD` (32).
        fail_below: a criterion score below this fails (points, 0-10 scale). Default `FAIL_BELOW` (6).
        margin: a rating is near the threshold when |total - threshold| <= margin (points). Default
            `NEAR_MARGIN` (2).
        occlusion_failure: `occlusion` at or above which a failing completeness score counts as "occlusion"
            instead of "incompleteness". Default `OCCLUSION_FAILURE` (0.3).

    Returns:
        A copy of `ratings` (index kept, `round` added as 1 when absent) with `total` (float64 points),
        `accepted`, `n_failing` (int), `compensatory`, `near_threshold` and `fail_geometry`, `fail_texture`,
        `fail_incompleteness`, `fail_occlusion`, `fail_multi-view` (bool).

    Raises:
        StatsInputError: `ratings` is not a non-empty DataFrame with `item_id`, `rater_id` and the criteria, or
            has a missing score.
    """
    check_frame(ratings, ("item_id", "rater_id", *CRITERIA), "ratings")
    out = ratings.copy()
    if "round" not in out.columns:
        out["round"] = 1
    scores = out[list(CRITERIA)].to_numpy(dtype=np.float64)
    if np.isnan(scores).any():
        raise StatsInputError("ratings have missing scores (validate them with io.judgements.validate_ratings)")
    out["total"] = scores.sum(axis=1)
    out["accepted"] = out["total"] >= threshold
    failing = scores < fail_below
    out["n_failing"] = failing.sum(axis=1)
    out["compensatory"] = out["accepted"] & (out["n_failing"] > 0)
    out["near_threshold"] = (out["total"] - threshold).abs() <= margin
    occluded = (out["occlusion"].to_numpy(dtype=np.float64) >= occlusion_failure) if "occlusion" in out.columns \
        else np.zeros(len(out), dtype=bool)
    occluded = np.nan_to_num(occluded.astype(np.float64)).astype(bool)
    out["fail_geometry"] = failing[:, 0]
    out["fail_texture"] = failing[:, 1]
    out["fail_incompleteness"] = failing[:, 2] & ~occluded
    out["fail_occlusion"] = failing[:, 2] & occluded
    out["fail_multi-view"] = failing[:, 3]
    return out


def item_decisions(ratings: pd.DataFrame, *, threshold: float = ACCEPT_THRESHOLD, **kw: float) -> pd.DataFrame:
    """Per (round, item_id): raters, `mean_total`, `accepted` (mean_total >= threshold), `unanimous` (every
    rater's own decision agrees), the criteria means, and how many ratings were compensatory/near.

    Args:
        ratings: non-empty frame with `item_id`, `rater_id` and the four criteria columns (scores 0-10, no
            missing score), optional `round` (default 1 for every rating) and `occlusion` (hidden fraction in
            [0, 1]; NaN or absent = not occluded), as validated by `sam3d_eval.io.judgements`.
        threshold: accept threshold on the sum of the four scores (0-40 points). Default `ACCEPT_THRESHOLD` (32).
        **kw: `fail_below`, `margin` and `occlusion_failure`, passed to `rating_decisions`.

    Returns:
        A frame sorted by (round, item_id) with columns round, item_id, raters (ratings of the item),
        mean_total (points), rating_accepts, compensatory, near_threshold (counts of ratings), mean_geometry,
        mean_texture, mean_completeness, mean_multiview, accepted and unanimous (bool).

    Raises:
        StatsInputError: `ratings` is not a non-empty DataFrame with `item_id`, `rater_id` and the criteria, or
            has a missing score.
    """
    d = rating_decisions(ratings, threshold=threshold, **kw)
    agg = d.groupby(["round", "item_id"], sort=True).agg(
        raters=("rater_id", "size"), mean_total=("total", "mean"), rating_accepts=("accepted", "sum"),
        compensatory=("compensatory", "sum"), near_threshold=("near_threshold", "sum"),
        **{f"mean_{c}": (c, "mean") for c in CRITERIA},
    ).reset_index()
    agg["accepted"] = agg["mean_total"] >= threshold
    agg["unanimous"] = (agg["rating_accepts"] == 0) | (agg["rating_accepts"] == agg["raters"])
    return agg


def accept_rates(ratings: pd.DataFrame, *, confidence: float = 0.95, threshold: float = ACCEPT_THRESHOLD,
                 **kw: float) -> pd.DataFrame:
    """Per round: items, accepted items, `rate` with Wilson `low`/`high` (item = unit), ratings, accepting
    ratings, `rating_rate` with its Wilson interval (ratings are clustered by item: read it as descriptive),
    `compensatory` and `near_threshold` (counts of ratings) and `split_items` (items the raters disagreed on).

    Args:
        ratings: non-empty frame with `item_id`, `rater_id` and the four criteria columns (scores 0-10, no
            missing score), optional `round` (default 1 for every rating) and `occlusion` (hidden fraction in
            [0, 1]; NaN or absent = not occluded), as validated by `sam3d_eval.io.judgements`.
        confidence: two-sided level of the Wilson intervals, in (0, 1). Default 0.95.
        threshold: accept threshold on the sum of the four scores (0-40 points). Default `ACCEPT_THRESHOLD` (32).
        **kw: `fail_below`, `margin` and `occlusion_failure`, passed to `rating_decisions`.

    Returns:
        A frame, one row per round in ascending order, with columns round, items, accepted, rate, low, high,
        ratings, rating_accepts, rating_rate, rating_low, rating_high, compensatory, near_threshold,
        split_items and confidence (rates and interval ends are shares in [0, 1]).

    Raises:
        StatsInputError: `ratings` is not a non-empty DataFrame with `item_id`, `rater_id` and the criteria, or
            has a missing score.
            Also when `confidence` lies outside (0, 1).
    """
    d = rating_decisions(ratings, threshold=threshold, **kw)
    items = item_decisions(ratings, threshold=threshold, **kw)
    rows = []
    for rnd, g in d.groupby("round", sort=True):
        it = items[items["round"] == rnd]
        n, k = len(it), int(it["accepted"].sum())
        lo, hi = wilson_interval(k, n, confidence)
        nr, kr = len(g), int(g["accepted"].sum())
        rlo, rhi = wilson_interval(kr, nr, confidence)
        rows.append({"round": rnd, "items": n, "accepted": k, "rate": k / n, "low": lo, "high": hi,
                     "ratings": nr, "rating_accepts": kr, "rating_rate": kr / nr, "rating_low": rlo, "rating_high": rhi,
                     "compensatory": int(g["compensatory"].sum()), "near_threshold": int(g["near_threshold"].sum()),
                     "split_items": int((~it["unanimous"]).sum()), "confidence": confidence})
    return pd.DataFrame(rows)


def _agreement_one(matrix: np.ndarray, target: str, scores: bool) -> dict[str, Any]:
    """matrix (raters, units) with NaN for missing -> the design's statistic and Krippendorff's alpha."""
    keep_units = (~np.isnan(matrix)).sum(axis=0) >= 2
    m = matrix[:, keep_units]
    m = m[(~np.isnan(m)).any(axis=1)]
    n_raters, n_units = m.shape
    complete = bool(n_units and not np.isnan(m).any())
    row: dict[str, Any] = {"target": target, "method": None, "value": math.nan, "krippendorff_alpha": math.nan,
                           "units": int(n_units), "raters": int(n_raters), "complete": complete, "note": None}
    if n_units == 0:
        row["note"] = "no unit has two ratings"
        return row
    level = "interval" if scores else "nominal"
    notes = []
    try:
        row["krippendorff_alpha"] = krippendorff_alpha(m, level)
    except StatsInputError as err:
        notes.append(f"alpha: {err}")
    try:
        on_scale = bool(np.isin(m[~np.isnan(m)], SCORE_SCALE).all())
        if scores and complete and n_raters == 2 and on_scale:
            row["method"] = "cohen_kappa (quadratic, 0-10 scale)"
            row["value"] = cohens_kappa(m[0], m[1], "quadratic", categories=SCORE_SCALE)
        elif scores:
            row["method"] = "krippendorff_alpha (interval)"
            row["value"] = row["krippendorff_alpha"]
        elif complete and n_raters == 2:
            row["method"] = "cohen_kappa"
            row["value"] = cohens_kappa(m[0], m[1])
        elif complete:
            row["method"] = "fleiss_kappa"
            cats, inv = np.unique(m, return_inverse=True)
            inv = inv.reshape(m.shape)
            table = np.stack([(inv == c).sum(axis=0) for c in range(cats.size)], axis=1)
            if cats.size < 2:
                raise StatsInputError("every rating is the same value: kappa is undefined")
            row["value"] = fleiss_kappa(table)
        else:
            row["method"] = f"krippendorff_alpha ({level})"
            row["value"] = row["krippendorff_alpha"]
    except StatsInputError as err:
        notes.append(str(err))
    row["note"] = "; ".join(notes) or None
    return row


def rubric_agreement(ratings: pd.DataFrame, *, threshold: float = ACCEPT_THRESHOLD) -> pd.DataFrame:
    """Agreement per criterion and on the accept decision (module docstring: method by design, plus
    Krippendorff's alpha always). Units are (round, item_id); only units with two or more ratings count.

    Args:
        ratings: non-empty frame with `item_id`, `rater_id` and the four criteria columns (scores 0-10, no
            missing score), optional `round` (default 1 for every rating) and `occlusion` (hidden fraction in
            [0, 1]; NaN or absent = not occluded), as validated by `sam3d_eval.io.judgements`.
        threshold: accept threshold on the sum of the four scores (0-40 points). Default `ACCEPT_THRESHOLD` (32).

    Returns:
        A frame with one row per target (geometry, texture, completeness, multiview, accept) and columns
        target, method (the statistic in `value`; None when no unit has two ratings), value, krippendorff_alpha
        (both float, NaN when undefined), units, raters (ints), complete (bool: no missing rating among the
        counted units) and note (None, or why a statistic is undefined; "; "-joined).

    Raises:
        StatsInputError: `ratings` is not a non-empty DataFrame with `item_id`, `rater_id` and the criteria, or
            has a missing score.
        ValueError: a rater rated the same (round, item_id) twice (pandas cannot pivot duplicates).
    """
    d = rating_decisions(ratings, threshold=threshold)
    unit = d["round"].astype(str) + "\x1f" + d["item_id"].astype(str)
    rows = []
    for target in (*CRITERIA, "accept"):
        v = d["accepted"].astype(np.float64) if target == "accept" else d[target].astype(np.float64)
        t = pd.DataFrame({"rater": d["rater_id"].astype(str), "unit": unit, "v": v}).pivot(
            index="rater", columns="unit", values="v")
        rows.append(_agreement_one(t.to_numpy(), target, scores=target != "accept"))
    return pd.DataFrame(rows)


def failure_mix(ratings: pd.DataFrame, **kw: float) -> pd.DataFrame:
    """Per round and failure mode: `count` of ratings with that mode, `share` of all the round's ratings,
    `share_of_failures` (of all mode occurrences in the round). Every mode has a row (zeros included).

    Args:
        ratings: non-empty frame with `item_id`, `rater_id` and the four criteria columns (scores 0-10, no
            missing score), optional `round` (default 1 for every rating) and `occlusion` (hidden fraction in
            [0, 1]; NaN or absent = not occluded), as validated by `sam3d_eval.io.judgements`.
        **kw: `threshold`, `fail_below`, `margin` and `occlusion_failure`, passed to `rating_decisions`.

    Returns:
        A frame with 5 rows per round (rounds ascending, modes in `FAILURE_MODES` order) and columns round,
        mode, count, share, share_of_failures (0.0 when the round has no failure) and ratings.

    Raises:
        StatsInputError: `ratings` is not a non-empty DataFrame with `item_id`, `rater_id` and the criteria, or
            has a missing score.
    """
    d = rating_decisions(ratings, **kw)
    rows = []
    for rnd, g in d.groupby("round", sort=True):
        counts = {m: int(g[f"fail_{m}"].sum()) for m in FAILURE_MODES}
        total = sum(counts.values())
        for m in FAILURE_MODES:
            rows.append({"round": rnd, "mode": m, "count": counts[m], "share": counts[m] / len(g),
                         "share_of_failures": counts[m] / total if total else 0.0, "ratings": len(g)})
    return pd.DataFrame(rows)


def rater_bias(ratings: pd.DataFrame) -> pd.DataFrame:
    """Per rater and criterion: mean of (the rater's score - the mean of the OTHER raters' scores on the same
    unit) over units with another rater, i.e. the rater's additive bias relative to the panel; `units`.

    Args:
        ratings: non-empty frame with `item_id`, `rater_id` and the four criteria columns (scores 0-10),
            optional `round` (default 1). A unit is (round, item_id).

    Returns:
        A frame sorted by rater_id (as str) with columns rater_id, geometry, texture, completeness, multiview
        (mean bias in score points; positive = more generous than the others) and units (units shared with
        another rater). Raters who share no unit are left out.

    Raises:
        StatsInputError: `ratings` is not a non-empty DataFrame with `item_id`, `rater_id` and the criteria.
    """
    check_frame(ratings, ("item_id", "rater_id", *CRITERIA), "ratings")
    r = ratings.copy()
    if "round" not in r.columns:
        r["round"] = 1
    r["unit"] = r["round"].astype(str) + "\x1f" + r["item_id"].astype(str)
    grp = r.groupby("unit")
    n = grp["rater_id"].transform("size").to_numpy(dtype=np.float64)
    out = {"rater_id": r["rater_id"].astype(str)}
    for c in CRITERIA:
        s = grp[c].transform("sum").to_numpy(dtype=np.float64)
        x = r[c].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[c] = np.where(n > 1, x - (s - x) / (n - 1), np.nan)
    frame = pd.DataFrame(out)
    frame["_shared"] = n > 1
    res = frame[frame["_shared"]].groupby("rater_id")[list(CRITERIA)].mean()
    res["units"] = frame[frame["_shared"]].groupby("rater_id").size()
    return res.reset_index()


@dataclass
class RubricSummary:
    """What `rubric_summary` measured; `to_dict()` is JSON-ready (CLI `--json`, the report, engine rounds).

    Attributes:
        accept: `accept_rates` frame, one row per round.
        agreement: `rubric_agreement` frame over all rounds, one row per target.
        agreement_by_round: `rubric_agreement` per round, stacked, with a leading `round` column.
        failure_mix: `failure_mix` frame, one row per round and failure mode.
        raters: `rater_bias` frame, one row per rater.
        definitions: the thresholds, criteria, failure modes and accept unit used.
    """

    accept: pd.DataFrame
    agreement: pd.DataFrame
    agreement_by_round: pd.DataFrame
    failure_mix: pd.DataFrame
    raters: pd.DataFrame
    definitions: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data (`to_jsonable`: frames become lists of records, NaN/inf become None).

        Returns:
            Dict with keys accept, agreement, agreement_by_round, failure_mix, raters and definitions.
        """
        return to_jsonable({"accept": self.accept, "agreement": self.agreement, "agreement_by_round": self.agreement_by_round,
                      "failure_mix": self.failure_mix, "raters": self.raters, "definitions": self.definitions})


def rubric_summary(
    ratings: pd.DataFrame,
    *,
    confidence: float = 0.95,
    threshold: float = ACCEPT_THRESHOLD,
    fail_below: float = FAIL_BELOW,
    margin: float = NEAR_MARGIN,
    occlusion_failure: float = OCCLUSION_FAILURE,
) -> RubricSummary:
    """Accept rates per round, agreement (all rounds and per round), failure-mode mix per round and per-rater
    bias for a validated ratings frame (definitions in the module docstring, echoed in `definitions`).

    Args:
        ratings: non-empty frame with `item_id`, `rater_id` and the four criteria columns (scores 0-10, no
            missing score), optional `round` (default 1 for every rating) and `occlusion` (hidden fraction in
            [0, 1]; NaN or absent = not occluded), as validated by `sam3d_eval.io.judgements`.
        confidence: two-sided level of the Wilson intervals, in (0, 1). Default 0.95.
        threshold: accept threshold on the sum of the four scores (0-40 points). Default `ACCEPT_THRESHOLD` (32).
        fail_below: a criterion score below this fails (points). Default `FAIL_BELOW` (6).
        margin: half-width of the near-threshold band (points). Default `NEAR_MARGIN` (2).
        occlusion_failure: occlusion from which a completeness failure is "occlusion". Default 0.3.

    Returns:
        A `RubricSummary`.

    Raises:
        StatsInputError: `ratings` is not a non-empty DataFrame with `item_id`, `rater_id` and the criteria, or
            has a missing score.
            Also when `confidence` lies outside (0, 1).
        ValueError: a rater rated the same (round, item_id) twice (pandas cannot pivot duplicates).
    """
    kw = {"fail_below": fail_below, "margin": margin, "occlusion_failure": occlusion_failure}
    by_round = []
    rounds = ratings["round"] if "round" in ratings.columns else pd.Series(1, index=ratings.index)
    for rnd in sorted(rounds.unique()):
        a = rubric_agreement(ratings[rounds == rnd], threshold=threshold)
        a.insert(0, "round", rnd)
        by_round.append(a)
    definitions = {"accept_threshold": threshold, "fail_below": fail_below, "near_margin": margin,
                   "occlusion_failure": occlusion_failure, "criteria": list(CRITERIA),
                   "failure_modes": list(FAILURE_MODES), "accept_unit": "item (mean of its raters' sums)"}
    return RubricSummary(
        accept_rates(ratings, confidence=confidence, threshold=threshold, **kw),
        rubric_agreement(ratings, threshold=threshold),
        pd.concat(by_round, ignore_index=True),
        failure_mix(ratings, threshold=threshold, **kw),
        rater_bias(ratings),
        definitions,
    )


def accept_trend(rounds: Sequence[float], accepted: Sequence[int], n: Sequence[int], *,
                 confidence: float = 0.95) -> dict[str, Any]:
    """Is the accept rate changing over rounds? Binomial GLM (logit link) of `accepted` out of `n` per round
    on the round number (statsmodels): `slope` (log-odds per round) with its Wald interval and two-sided p,
    `odds_ratio_per_round`, the fitted first and last rates, and the rounds' pooled counts. Reads "rises"
    only when the interval excludes 0; rounds are treated as independent samples of images.

    Args:
        rounds: `(R,)` round numbers (read as float64), R >= 2.
        accepted: `(R,)` accepted items per round, 0 <= accepted <= n.
        n: `(R,)` items judged per round, > 0.
        confidence: two-sided level of the Wald interval of the slope (not checked; use (0, 1)). Default 0.95.

    Returns:
        Dict with rounds (int R), accepted and n (pooled ints), confidence, slope, low, high, pvalue and note.
        When every decision is the same, or the fit separates perfectly, slope/low/high/pvalue are NaN and
        note says why; otherwise note is None and the dict also holds odds_ratio_per_round, fitted_first and
        fitted_last (fitted accept rates at the first and last round).

    Raises:
        StatsInputError: the three sequences are not 1-D of one length >= 2, or a round has n <= 0 or
            accepted outside [0, n].
    """
    import statsmodels.api as sm

    x = np.asarray(rounds, dtype=np.float64)
    k = np.asarray(accepted, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    if not (x.shape == k.shape == m.shape) or x.ndim != 1 or x.size < 2:
        raise StatsInputError("accept_trend needs rounds, accepted and n of the same length >= 2")
    if np.any(m <= 0) or np.any(k < 0) or np.any(k > m):
        raise StatsInputError("each round needs n > 0 and 0 <= accepted <= n")
    out: dict[str, Any] = {"rounds": int(x.size), "accepted": int(k.sum()), "n": int(m.sum()), "confidence": confidence}
    if k.sum() == 0 or k.sum() == m.sum():
        out.update(slope=math.nan, low=math.nan, high=math.nan, pvalue=math.nan,
                   note="every decision is the same: no trend can be estimated")
        return out
    import warnings

    with warnings.catch_warnings(record=True) as caught, np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("always")
        fit = sm.GLM(np.column_stack([k, m - k]), sm.add_constant(x), family=sm.families.Binomial()).fit()
    if any("separation" in str(w.message).lower() for w in caught) or not np.all(np.isfinite(fit.bse)):
        out.update(slope=math.nan, low=math.nan, high=math.nan, pvalue=math.nan,
                   note="perfect separation (all rejected, then all accepted): the slope is not identified")
        return out
    lo, hi = fit.conf_int(alpha=1.0 - confidence)[1]
    p_first, p_last = fit.predict(sm.add_constant(np.array([x.min(), x.max()]), has_constant="add"))
    out.update(slope=float(fit.params[1]), low=float(lo), high=float(hi), pvalue=float(fit.pvalues[1]),
               odds_ratio_per_round=float(np.exp(fit.params[1])), fitted_first=float(p_first),
               fitted_last=float(p_last), note=None)
    return out
