"""The per-vote loop `stats.preference.rater_agreement` was before it became array code, kept verbatim (but for
names) as the reference its numbers are checked against (tests/test_rater_agreement_reference.py) and as the
peer it is timed against (benchmarks/bench_preference.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sam3d_eval.stats.preference import _oriented, _units

__all__ = ["reference_circular_triads", "reference_rater_agreement"]


def reference_rater_agreement(votes: pd.DataFrame, leaderboard: pd.DataFrame | None = None) -> pd.DataFrame:
    """The loop implementation `rater_agreement` had before it was vectorised (verbatim but for names)."""
    o = _oriented(votes)
    o["unit"] = _units(o)
    o["rater_id"] = o["rater_id"].astype(str)
    counts = pd.crosstab(o["unit"], o["outcome"]).reindex(columns=["first", "second", "tie"], fill_value=0)
    rows = []
    strength = None if leaderboard is None else leaderboard["log_strength"].to_dict()
    for rater, g in o.groupby("rater_id", sort=True):
        agree = shared = 0
        for unit, outcome in zip(g["unit"], g["outcome"]):
            others = counts.loc[unit].copy()
            others[outcome] -= 1
            if others.sum() == 0:
                continue
            top = others.max()
            if (others == top).sum() > 1:
                continue
            shared += 1
            agree += int(others.idxmax() == outcome)
        decisive = g[g["outcome"] != "tie"]
        consistency = math.nan
        if strength is not None and len(decisive):
            fav_first = np.array([strength.get(f, 0.0) >= strength.get(s, 0.0)
                                  for f, s in zip(decisive["first"], decisive["second"])])
            consistency = float(np.mean(fav_first == (decisive["outcome"] == "first").to_numpy()))
        rows.append({"rater_id": rater, "votes": len(g), "ties": int((g["outcome"] == "tie").sum()), "shared": shared,
                     "agreement": agree / shared if shared else math.nan, "consistency": consistency,
                     "circular_triads": reference_circular_triads(decisive)})
    return pd.DataFrame(rows)


def reference_circular_triads(decisive: pd.DataFrame) -> int:
    total = 0
    items = decisive.groupby("item_id") if "item_id" in decisive.columns else [(None, decisive)]
    for _, g in items:
        beats = {(f, s) if o == "first" else (s, f) for f, s, o in zip(g["first"], g["second"], g["outcome"])}
        models = sorted({m for pair in beats for m in pair})
        if len(models) < 3:
            continue
        for i, x in enumerate(models):
            for j in range(i + 1, len(models)):
                for k in range(j + 1, len(models)):
                    y, z = models[j], models[k]
                    if ((x, y) in beats and (y, z) in beats and (z, x) in beats) or \
                       ((y, x) in beats and (z, y) in beats and (x, z) in beats):
                        total += 1
    return total
