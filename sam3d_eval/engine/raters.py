"""Verifiers of candidate meshes: simulated raters from true errors against ground truth, or imported ratings.

Simulated rater model (documented so accept rates and agreement are *measured* from it, not assumed):

1. Each candidate's true errors come from the evaluation core (`evaluate.scoring.score_batch` under a
   protocol, default: joint unit-cube normalisation) plus a colour error computed here:
   geometry <- F-score@0.05, completeness <- recall@0.05 (share of the GT surface covered),
   multiview <- normal consistency (a surface whose orientation matches the GT's renders consistently from
   new views), texture <- colour error (mean absolute RGB difference, in [0, 1], between each GT vertex's
   colour and the colour of the nearest candidate vertex, both normalised by the GT's bounding box).
2. Each error maps linearly to a true criterion score q = 10 * clip((x - worst) / (best - worst), 0, 1)
   (`CriterionMap`; `DEFAULT_MAPPING` anchors are calibration choices, not measurements: fit them to your
   own human ratings by importing those and comparing accept rates).
3. Rater r scores s = clip(round(q + b_rc + noise_r * e), 0, 10) with a per-rater, per-criterion bias b_rc
   (drawn once from N(0, bias_sd^2) on stream (seed, "rater_bias", rater) or given) and e ~ N(0, 1) on
   stream (seed, "rater_noise", round, item, rater): independent across ratings, reproducible for a seed.

`ImportedVerifier` serves human ratings (the rubric file format, `io.judgements.read_ratings`) for the
candidates of a round and refuses a candidate nobody rated (naming it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd
import torch

from ..io.judgements import CRITERIA
from ..seeding import numpy_generator

__all__ = [
    "CriterionMap",
    "DEFAULT_MAPPING",
    "ImportedVerifier",
    "SimulatedRater",
    "SimulatedVerifier",
    "Verifier",
    "colour_error",
    "simulated_panel",
    "true_scores",
]


@dataclass(frozen=True)
class CriterionMap:
    """criterion score = 10 * clip((metric - worst) / (best - worst), 0, 1); best < worst for errors."""

    metric: str
    worst: float
    best: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        q = 10.0 * np.clip((x - self.worst) / (self.best - self.worst), 0.0, 1.0)
        return np.where(np.isfinite(x), q, 0.0)  # a failed or unscorable candidate gets 0


DEFAULT_MAPPING: dict[str, CriterionMap] = {
    "geometry": CriterionMap("fscore@0.05", worst=0.3, best=0.95),
    "texture": CriterionMap("colour_error", worst=0.3, best=0.02),
    "completeness": CriterionMap("recall@0.05", worst=0.3, best=0.95),
    "multiview": CriterionMap("normal_consistency", worst=0.5, best=0.95),
}


def mapping_from_dict(d: Mapping[str, Any] | None) -> dict[str, CriterionMap]:
    """`DEFAULT_MAPPING` with entries replaced by {criterion: {"metric", "worst", "best"}}."""
    out = dict(DEFAULT_MAPPING)
    for k, v in (d or {}).items():
        if k not in CRITERIA:
            raise ValueError(f"unknown rubric criterion {k!r} in the rater mapping; known: {list(CRITERIA)}")
        base = out[k]
        m = CriterionMap(str(v.get("metric", base.metric)), float(v.get("worst", base.worst)), float(v.get("best", base.best)))
        if m.worst == m.best:
            raise ValueError(f"rater mapping {k}: worst and best are equal ({m.worst})")
        out[k] = m
    return out


def colour_error(pred_verts: torch.Tensor, pred_colors: torch.Tensor, gt_verts: torch.Tensor,
                 gt_colors: torch.Tensor) -> float:
    """Mean absolute RGB difference in [0, 1] between each GT vertex `(V, 3)` colour and its nearest
    candidate vertex `(P, 3)` colour, after scaling both by the GT's bounding box (the nearest neighbour
    is found in the shared frame: no alignment)."""
    from ..ops.knn import knn_points
    from ..transforms.bbox import bbox_centre_scale, normalize_points

    centre, scale = bbox_centre_scale([gt_verts.double()], 1.0)
    g = normalize_points(gt_verts.double()[None], centre, scale)
    p = normalize_points(pred_verts.double()[None], centre, scale)
    idx = knn_points(g, p, K=1).idx[0, :, 0]
    return float((gt_colors.double() - pred_colors.double()[idx]).abs().mean())


def true_scores(errors: pd.DataFrame, mapping: Mapping[str, CriterionMap] | None = None) -> pd.DataFrame:
    """errors: one row per candidate with `item_id` and the mapped metrics -> `item_id` + the four true
    criterion scores (floats in [0, 10])."""
    mapping = mapping or DEFAULT_MAPPING
    missing = sorted({m.metric for m in mapping.values()} - set(errors.columns))
    if missing:
        raise ValueError(f"candidate errors lack metric column(s) {missing} needed by the rater mapping")
    out = pd.DataFrame({"item_id": errors["item_id"].astype(str).to_numpy()})
    for c in CRITERIA:
        out[c] = mapping[c](errors[mapping[c].metric].to_numpy(dtype=np.float64))
    return out


@dataclass(frozen=True)
class SimulatedRater:
    """One simulated rater: additive bias per criterion (score points) and noise s.d. (score points)."""

    rater_id: str
    bias: tuple[float, float, float, float]
    noise: float


def simulated_panel(n_raters: int, *, bias_sd: float = 0.5, noise: float = 0.75, seed: int = 0,
                    biases: Sequence[Sequence[float]] | None = None) -> list[SimulatedRater]:
    """`n_raters` raters "sim0".."simN": biases given (n_raters x 4) or drawn from N(0, bias_sd^2) on the
    stream (seed, "rater_bias", rater id)."""
    if n_raters < 1:
        raise ValueError(f"need at least one rater, got {n_raters}")
    if noise < 0 or bias_sd < 0:
        raise ValueError(f"noise and bias_sd must be >= 0, got {noise}, {bias_sd}")
    if biases is not None and (len(biases) != n_raters or any(len(b) != 4 for b in biases)):
        raise ValueError(f"biases must be {n_raters} rows of 4 (one per criterion {list(CRITERIA)})")
    panel = []
    for k in range(n_raters):
        rid = f"sim{k}"
        b = biases[k] if biases is not None else numpy_generator(seed, "rater_bias", rid).normal(0.0, bias_sd, 4)
        panel.append(SimulatedRater(rid, tuple(float(v) for v in b), float(noise)))
    return panel


class Verifier(Protocol):
    """Rates a round's candidates: `rate(candidates, round) -> ratings` in the rubric format (`item_id`,
    `rater_id`, four criteria, `round`), item_id = the candidate id."""

    name: str

    def rate(self, candidates: pd.DataFrame, round: int) -> pd.DataFrame: ...


@dataclass
class SimulatedVerifier:
    """A panel of `SimulatedRater`s rating every candidate (module docstring)."""

    raters: list[SimulatedRater]
    mapping: dict[str, CriterionMap] = field(default_factory=lambda: dict(DEFAULT_MAPPING))
    seed: int = 0
    name: str = "simulated"

    def rate(self, candidates: pd.DataFrame, round: int) -> pd.DataFrame:
        q = true_scores(candidates, self.mapping)
        scores = q[list(CRITERIA)].to_numpy(np.float64)
        items = q["item_id"].tolist()
        n, m = len(items), len(self.raters)
        noise = np.empty((n, m, 4))
        for i, item in enumerate(items):
            for j, r in enumerate(self.raters):
                noise[i, j] = numpy_generator(self.seed, "rater_noise", int(round), item, r.rater_id).standard_normal(4)
        bias = np.array([r.bias for r in self.raters])[None]
        sd = np.array([r.noise for r in self.raters])[None, :, None]
        s = np.clip(np.round(scores[:, None, :] + bias + sd * noise), 0, 10).reshape(n * m, 4)
        out = pd.DataFrame({"item_id": np.repeat(items, m), "rater_id": [r.rater_id for r in self.raters] * n})
        for k, c in enumerate(CRITERIA):
            out[c] = s[:, k]
        out["round"] = int(round)
        return out


@dataclass
class ImportedVerifier:
    """Human ratings read from a rubric file (`io.judgements.read_ratings`); item_id = candidate id."""

    ratings: pd.DataFrame
    name: str = "imported"

    def rate(self, candidates: pd.DataFrame, round: int) -> pd.DataFrame:
        ids = candidates["item_id"].astype(str)
        have = self.ratings[self.ratings["item_id"].isin(set(ids))]
        missing = sorted(set(ids) - set(have["item_id"]))
        if missing:
            raise ValueError(f"imported ratings have no rating for {len(missing)} candidate(s) of round {round}, "
                             f"e.g. {missing[:5]}; rate them or use a simulated verifier")
        out = have.copy()
        out["round"] = int(round)
        return out.drop(columns=[c for c in ("line",) if c in out.columns]).reset_index(drop=True)


