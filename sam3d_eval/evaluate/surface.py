"""Surface metrics of a prediction against its ground truth from sampled points: the evaluation's geometry row.

A typed view of the ``default`` protocol (DESIGN.md section 5: both meshes normalised jointly so the GT
bounding box fits the unit cube, no rotation alignment), computed by `protocols.evaluate_geometry`, which
shares one nearest-neighbour query per direction between Chamfer, F-score and normal consistency.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..structures import Meshes
from ..metrics.fscore import DEFAULT_TAUS
from .protocols import PROTOCOLS, evaluate_geometry

__all__ = ["DEFAULT_TAUS", "SurfaceMetrics", "surface_metrics"]


@dataclass
class SurfaceMetrics:
    """Per-pair surface metrics; every tensor has a leading batch dimension B.

    chamfer_l2: `(B,)` pytorch3d Chamfer: mean squared NN distance each way, the two directions summed
        (unit-cube units squared).
    chamfer_l1: `(B,)` mean Euclidean NN distance each way, the two directions averaged ("CD-L1" of
        ZeroShape/SyncDreamer), unit-cube units.
    precision, recall, fscore: `(B, T)` at `taus` (Euclidean thresholds, unit-cube units).
    normal_consistency: `(B,)` mean over both directions of |cos| between face normals of NN pairs.
    """

    chamfer_l2: torch.Tensor
    chamfer_l1: torch.Tensor
    precision: torch.Tensor
    recall: torch.Tensor
    fscore: torch.Tensor
    normal_consistency: torch.Tensor
    taus: tuple[float, ...]

    def rows(self) -> list[dict[str, float]]:
        """One flat dict per pair, e.g. `{"chamfer_l2": ..., "fscore@0.01": ...}`."""
        out = []
        for b in range(self.chamfer_l2.shape[0]):
            row = {
                "chamfer_l2": float(self.chamfer_l2[b]),
                "chamfer_l1": float(self.chamfer_l1[b]),
                "normal_consistency": float(self.normal_consistency[b]),
            }
            for t, tau in enumerate(self.taus):
                row[f"fscore@{tau:g}"] = float(self.fscore[b, t])
                row[f"precision@{tau:g}"] = float(self.precision[b, t])
                row[f"recall@{tau:g}"] = float(self.recall[b, t])
            out.append(row)
        return out


def surface_metrics(
    pred: Meshes,
    gt: Meshes,
    num_samples: int = 100_000,
    taus: tuple[float, ...] = DEFAULT_TAUS,
    seed: int = 0,
    normalize: bool = True,
) -> SurfaceMetrics:
    """Chamfer, F-score at `taus` and normal consistency of each prediction against its GT.

    The ``default`` protocol of `protocols.py` with these overrides, run by `evaluate_geometry` (one path).

    Args:
        pred, gt: batches of B meshes each, paired by position.
        num_samples: points sampled area-uniformly from each surface.
        taus: F-score thresholds in units of the unit cube's side (after normalisation).
        seed: sampling seed; the GT is sampled with `seed` and the prediction with `seed + 1`.
        normalize: normalise each pair jointly so the GT bounding box fits the unit cube (DESIGN.md).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    protocol = PROTOCOLS["default"].with_overrides(num_samples=num_samples, taus=tuple(taus), seed=seed)
    if not normalize:
        protocol = dataclasses.replace(protocol, normalization="none")
    rows = [r.metrics for r in evaluate_geometry(pred, gt, protocol)]
    col = lambda name: torch.tensor([r[name] for r in rows])  # noqa: E731
    per_tau = lambda kind: torch.stack([col(f"{kind}@{t:g}") for t in protocol.taus], 1)  # noqa: E731
    return SurfaceMetrics(
        chamfer_l2=col("chamfer_l2"),
        chamfer_l1=col("chamfer_l1"),
        precision=per_tau("precision"),
        recall=per_tau("recall"),
        fscore=per_tau("fscore"),
        normal_consistency=col("normal_consistency"),
        taus=protocol.taus,
    )
