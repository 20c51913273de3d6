"""Human-judgement analysis: pairwise preference votes and rubric quality control (DESIGN.md sections 4-5).

Preference (`preference_summary`): per pair of models the win rate with ties separate and ties as half
(`win_rate`: Wilson intervals, exact binomial p), a Bradley-Terry leaderboard with bootstrap intervals
clustered by item and rater (crossed when both vary), and per rater: agreement with the other raters
(share of the rater's votes equal to the majority of the others on the same item and pair, ties of the
majority skipped), consistency with the consensus (share of the rater's decisive votes that pick the
leaderboard's stronger model) and circular triads (A>B, B>C, C>A by one rater on one item). Overall
agreement on votes: Krippendorff's alpha (nominal) over units (item, pair), the outcome oriented to the
pair's sorted names.

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
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..jsonable import to_jsonable
from ._checks import StatsInputError, check_frame
from .agreement import cohens_kappa, fleiss_kappa, krippendorff_alpha
from .intervals import wilson_interval, win_rate
from .preference import bradley_terry

__all__ = [
    "ACCEPT_THRESHOLD",
    "CRITERIA",
    "FAILURE_MODES",
    "FAIL_BELOW",
    "NEAR_MARGIN",
    "OCCLUSION_FAILURE",
    "SCORE_SCALE",
    "PreferenceSummary",
    "RubricSummary",
    "accept_rates",
    "accept_trend",
    "failure_mix",
    "item_decisions",
    "pairwise_win_rates",
    "preference_summary",
    "rater_agreement",
    "rater_bias",
    "rating_decisions",
    "rubric_agreement",
    "rubric_summary",
    "vote_agreement",
]

CRITERIA = ("geometry", "texture", "completeness", "multiview")
ACCEPT_THRESHOLD = 32.0
FAIL_BELOW = 6.0
NEAR_MARGIN = 2.0
OCCLUSION_FAILURE = 0.3
SCORE_SCALE = tuple(range(11))  # every criterion is scored 0..10; weighted agreement weighs these distances
FAILURE_MODES = ("geometry", "texture", "incompleteness", "occlusion", "multi-view")


# ---------------------------------------------------------------------------------------------------------
# Preference votes
# ---------------------------------------------------------------------------------------------------------
def _oriented(votes: pd.DataFrame) -> pd.DataFrame:
    """Votes with the pair in sorted order: `first`, `second`, `outcome` in {"first", "second", "tie"}."""
    a, b = votes["model_a"].astype(str).to_numpy(), votes["model_b"].astype(str).to_numpy()
    swap = a > b
    first, second = np.where(swap, b, a), np.where(swap, a, b)
    w = votes["winner"].to_numpy()
    winner_name = np.where(w == "a", a, np.where(w == "b", b, None))
    outcome = np.where(w == "tie", "tie", np.where(winner_name == first, "first", "second"))
    out = votes.copy()
    out["first"], out["second"], out["outcome"] = first, second, outcome
    return out


def pairwise_win_rates(votes: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """One row per compared pair (model < opponent by name): wins/losses/ties of `model` over `opponent`,
    the win rate with ties excluded and with ties as half (Wilson intervals, exact two-sided p against
    0.5; `stats.win_rate`), the number of votes, items and raters."""
    check_frame(votes, ("model_a", "model_b", "winner"), "votes")
    o = _oriented(votes)
    rows = []
    for (x, y), g in o.groupby(["first", "second"], sort=True):
        res = win_rate(int((g["outcome"] == "first").sum()), int((g["outcome"] == "second").sum()),
                       int((g["outcome"] == "tie").sum()), confidence=confidence)
        row = {"model": x, "opponent": y, "votes": len(g), **res.as_dict()}
        row["items"] = int(g["item_id"].nunique()) if "item_id" in g.columns else len(g)
        row["raters"] = int(g["rater_id"].nunique()) if "rater_id" in g.columns else 1
        rows.append(row)
    return pd.DataFrame(rows)


def _units(o: pd.DataFrame) -> pd.Series:
    item = o["item_id"].astype(str) if "item_id" in o.columns else pd.Series(np.arange(len(o)).astype(str), index=o.index)
    return item + "\x1f" + o["first"] + "\x1f" + o["second"]


def vote_agreement(votes: pd.DataFrame) -> dict[str, Any]:
    """Agreement between raters on votes: Krippendorff's alpha (nominal: first / second / tie) over units
    (item, pair) judged by two or more raters; `units_shared` counts them. alpha is None (with `note`) when
    no unit is shared or every shared vote is the same outcome."""
    check_frame(votes, ("model_a", "model_b", "winner", "rater_id"), "votes")
    o = _oriented(votes)
    o["unit"] = _units(o)
    code = o["outcome"].map({"first": 0.0, "second": 1.0, "tie": 2.0})
    table = pd.DataFrame({"unit": o["unit"], "rater": o["rater_id"].astype(str), "v": code}).pivot(
        index="rater", columns="unit", values="v")
    shared = int((table.notna().sum(axis=0) >= 2).sum())
    out: dict[str, Any] = {"method": "krippendorff_alpha (nominal)", "units_shared": shared,
                           "raters": int(table.shape[0]), "alpha": None, "note": None}
    if shared == 0:
        out["note"] = "no item and pair was judged by two raters"
        return out
    try:
        out["alpha"] = krippendorff_alpha(table.to_numpy(), "nominal")
    except StatsInputError as err:
        out["note"] = str(err)
    return out


def rater_agreement(votes: pd.DataFrame, leaderboard: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per rater (module docstring): votes, ties, `shared` (votes on an item and pair another rater also
    judged with a clear majority), `agreement` (share of those equal to the others' majority), `consistency`
    (share of decisive votes for the leaderboard's stronger model; needs `leaderboard` from
    `stats.bradley_terry`) and `circular_triads` (intransitive triples on one item)."""
    check_frame(votes, ("model_a", "model_b", "winner", "rater_id"), "votes")
    o = _oriented(votes)
    # Array code throughout (per-vote pandas look-ups took ~45 s on 150k votes): outcome 0 first, 1 second, 2 tie.
    outcome = o["outcome"].to_numpy()
    oc = np.where(outcome == "first", 0, np.where(outcome == "second", 1, 2))
    rater_code, raters = pd.factorize(o["rater_id"].astype(str).to_numpy(), sort=True)
    n_raters, n = len(raters), len(o)
    if n == 0:
        return pd.DataFrame([])
    unit_code = pd.factorize(_units(o).to_numpy(), use_na_sentinel=False)[0]  # a missing item: one unit
    counts = np.bincount(unit_code * 3 + oc, minlength=3 * (int(unit_code.max()) + 1)).reshape(-1, 3)
    others = counts[unit_code]
    others[np.arange(n), oc] -= 1  # the other votes on the same unit (item and pair)
    top = others.max(axis=1)
    # a clear majority: someone else voted and exactly one outcome has the most votes
    shared = (others.sum(axis=1) > 0) & ((others == top[:, None]).sum(axis=1) == 1)
    agree = shared & (others.argmax(axis=1) == oc)

    def per_rater(mask: np.ndarray) -> np.ndarray:
        return np.bincount(rater_code[mask], minlength=n_raters)

    n_votes, n_ties = per_rater(np.ones(n, dtype=bool)), per_rater(oc == 2)
    n_shared, n_agree = per_rater(shared), per_rater(agree)
    decisive = oc != 2
    n_decisive = per_rater(decisive)
    consistent = None
    if leaderboard is not None:
        strength = leaderboard["log_strength"].to_dict()
        first, second = o["first"].to_numpy(), o["second"].to_numpy()
        names, inv = np.unique(np.concatenate([first, second]), return_inverse=True)
        s = np.array([strength.get(x, 0.0) for x in names], dtype=np.float64)[inv]
        fav_first = s[:n] >= s[n:]
        consistent = per_rater(decisive & (fav_first == (oc == 0)))
    triads = _circular_triads(o, rater_code, oc, n_raters)
    rows = []
    for r, rater in enumerate(raters):
        k = int(n_shared[r])
        consistency = math.nan
        if consistent is not None and n_decisive[r]:
            consistency = float(consistent[r] / n_decisive[r])
        rows.append({"rater_id": rater, "votes": int(n_votes[r]), "ties": int(n_ties[r]), "shared": k,
                     "agreement": int(n_agree[r]) / k if k else math.nan, "consistency": consistency,
                     "circular_triads": int(triads[r])})
    return pd.DataFrame(rows)


# Elements (groups x models x models) of one batch of circular-triad adjacency matrices.
_TRIAD_ELEMENTS = 1 << 20


def _circular_triads(o: pd.DataFrame, rater_code: np.ndarray, oc: np.ndarray, n_raters: int) -> np.ndarray:
    """Per rater: intransitive triples (A>B, B>C, C>A) among the rater's decisive votes, counted per item
    (over all the rater's votes when there is no `item_id` column; votes whose item is missing are skipped).

    With A the beat graph of one rater on one item (A[x, y] = 1 when x beat y at least once), the triples
    holding a directed 3-cycle number trace(A^3) / 3 - trace(M^3) / 6 with M = A and A^T: trace(A^3) / 3
    counts each cycle orientation present, and a triple holds both orientations exactly when all its pairs
    are mutual, a triangle of M (trace(M^3) = 6 triangles)."""
    out = np.zeros(n_raters, dtype=np.int64)
    dec = np.flatnonzero(oc != 2)
    if "item_id" in o.columns:
        item = pd.factorize(o["item_id"].to_numpy())[0][dec]  # -1 for a missing item, as groupby drops it
        dec, item = dec[item >= 0], item[item >= 0]
    else:
        item = np.zeros(dec.size, dtype=np.int64)
    if dec.size < 3:
        return out
    models = pd.factorize(np.concatenate([o["first"].to_numpy()[dec], o["second"].to_numpy()[dec]]))[0]
    n_models = int(models.max()) + 1
    first, second = models[: dec.size], models[dec.size :]
    win = np.where(oc[dec] == 0, first, second)
    lose = np.where(oc[dec] == 0, second, first)
    group = pd.factorize(rater_code[dec].astype(np.int64) * (int(item.max()) + 1) + item)[0]
    rater_of = np.zeros(int(group.max()) + 1, dtype=np.int64)
    rater_of[group] = rater_code[dec]
    # a 3-cycle needs three distinct edges: only groups with three decisive votes or more can hold one
    keep = (np.bincount(group)[group] >= 3) & (win != lose)
    if not keep.any():
        return out
    eg, ew, el = np.unique(np.stack([group[keep], win[keep], lose[keep]], axis=1), axis=0).T  # distinct edges
    # number each group's models 0..k-1: node keys sorted by group, then position within the group's block
    nodes, node_of = np.unique(np.concatenate([eg * n_models + ew, eg * n_models + el]), return_inverse=True)
    node_of = node_of.ravel()
    node_group = nodes // n_models
    local = np.arange(nodes.size) - np.searchsorted(node_group, node_group)
    lw, ll = local[node_of[: eg.size]], local[node_of[eg.size :]]
    size = np.bincount(node_group, minlength=rater_of.size)
    for k in np.unique(size[size >= 3]):
        in_k = np.flatnonzero(size == k)
        per = max(1, _TRIAD_ELEMENTS // int(k * k))
        slot = np.full(size.size, -1, dtype=np.int64)
        for start in range(0, in_k.size, per):
            chunk = in_k[start : start + per]
            slot[chunk] = np.arange(chunk.size)
            e = np.flatnonzero(slot[eg] >= 0)
            adj = np.zeros((chunk.size, k, k))
            adj[slot[eg[e]], lw[e], ll[e]] = 1.0
            adj_t = np.swapaxes(adj, 1, 2)
            mutual = adj * adj_t
            cycles = ((adj @ adj) * adj_t).sum(axis=(1, 2)) / 3.0 - ((mutual @ mutual) * mutual).sum(axis=(1, 2)) / 6.0
            np.add.at(out, rater_of[chunk], np.rint(cycles).astype(np.int64))
            slot[chunk] = -1
    return out


@dataclass
class PreferenceSummary:
    """What `preference_summary` measured; `to_dict()` is the JSON the CLI prints and the report renders."""

    pairwise: pd.DataFrame
    leaderboard: pd.DataFrame
    raters: pd.DataFrame
    agreement: dict[str, Any]
    counts: dict[str, int]
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        board = self.leaderboard.reset_index().sort_values("elo", ascending=False)
        return to_jsonable({"counts": self.counts, "pairwise": self.pairwise, "leaderboard": board,
                      "raters": self.raters, "agreement": self.agreement, "settings": self.settings,
                      "notes": self.notes})


def preference_summary(
    votes: pd.DataFrame,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    ties: str = "half",
) -> PreferenceSummary:
    """Everything the module docstring lists for a validated votes frame. The Bradley-Terry bootstrap is
    clustered by item and rater (crossed) when both vary, by whichever varies otherwise. When the plain MLE
    does not exist (a model never loses) the fit is repeated with the documented small penalty
    (regularization 0.01, a N(0, 100) prior on log-strengths) and a note says so."""
    check_frame(votes, ("item_id", "model_a", "model_b", "winner", "rater_id"), "votes")
    cluster = [c for c in ("item_id", "rater_id") if votes[c].nunique() > 1]
    notes: list[str] = []
    reg = 0.0
    try:
        board = bradley_terry(votes, ties=ties, bootstrap=bootstrap, cluster=cluster or None, seed=seed,
                              confidence=confidence)
    except StatsInputError as err:
        if "disconnected" in str(err):
            raise
        reg = 0.01
        notes.append(f"Bradley-Terry: {err}; refitted with regularization {reg}")
        board = bradley_terry(votes, ties=ties, bootstrap=bootstrap, cluster=cluster or None, seed=seed,
                              confidence=confidence, regularization=reg)
    counts = {"votes": len(votes), "items": int(votes["item_id"].nunique()),
              "raters": int(votes["rater_id"].nunique()),
              "models": int(len(board)), "ties": int((votes["winner"] == "tie").sum())}
    settings = {"bootstrap": bootstrap, "cluster": cluster, "confidence": confidence, "ties": ties,
                "regularization": reg, "seed": seed, "drift": board.attrs.get("drift")}
    return PreferenceSummary(pairwise_win_rates(votes, confidence=confidence), board,
                             rater_agreement(votes, board), vote_agreement(votes), counts, settings, notes)


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
    `fail_<mode>` per failure mode (module docstring definitions)."""
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
    rater's own decision agrees), the criteria means, and how many ratings were compensatory/near."""
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
    `compensatory` and `near_threshold` (counts of ratings) and `split_items` (items the raters disagreed on)."""
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
    Krippendorff's alpha always). Units are (round, item_id); only units with two or more ratings count."""
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
    `share_of_failures` (of all mode occurrences in the round). Every mode has a row (zeros included)."""
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
    unit) over units with another rater, i.e. the rater's additive bias relative to the panel; `units`."""
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
    """What `rubric_summary` measured; `to_dict()` is JSON-ready (CLI `--json`, the report, engine rounds)."""

    accept: pd.DataFrame
    agreement: pd.DataFrame
    agreement_by_round: pd.DataFrame
    failure_mix: pd.DataFrame
    raters: pd.DataFrame
    definitions: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
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
    bias for a validated ratings frame (definitions in the module docstring, echoed in `definitions`)."""
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
    only when the interval excludes 0; rounds are treated as independent samples of images."""
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
