"""Surface metrics of a prediction against its ground truth from sampled points: the evaluation's geometry row.

A typed view of the ``default`` protocol (docs/definitions.md: both meshes normalised jointly so the GT
bounding box fits the unit cube, no rotation alignment), computed by `scoring.score_batch`, which shares one
nearest-neighbour query per direction between Chamfer, F-score and normal consistency.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..structures import Meshes
from ..metrics.fscore import DEFAULT_TAUS
from .protocols import PROTOCOLS
from .scoring import score_batch

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
    taus: the T F-score thresholds, in the order of the last dimension of precision, recall and fscore.

    As `surface_metrics` returns them, every tensor has the dtype of the prediction's vertices and lives on
    the CPU.
    """

    chamfer_l2: torch.Tensor
    chamfer_l1: torch.Tensor
    precision: torch.Tensor
    recall: torch.Tensor
    fscore: torch.Tensor
    normal_consistency: torch.Tensor
    taus: tuple[float, ...]

    def rows(self) -> list[dict[str, float]]:
        """One flat dict per pair, e.g. `{"chamfer_l2": ..., "fscore@0.01": ...}`.

        Returns:
            List of B dicts with float chamfer_l2, chamfer_l1, normal_consistency and, per tau,
            ``fscore@{tau:g}``, ``precision@{tau:g}`` and ``recall@{tau:g}``.
        """
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
    sample_ids: list[str] | None = None,
) -> SurfaceMetrics:
    """Chamfer, F-score at `taus` and normal consistency of each prediction against its GT.

    The ``default`` protocol of `protocols.py` with these overrides, run by `score_batch` (one path).

    Args:
        pred: batch of B predicted meshes.
        gt: batch of B ground-truth meshes, paired with `pred` by position.
        num_samples: points sampled area-uniformly from each surface. Default 100,000.
        taus: F-score thresholds in units of the unit cube's side (after normalisation). Default
            `DEFAULT_TAUS`.
        seed: base seed; each pair's points come from the streams (seed, sample id, "gt_surface" /
            "pred_surface") of `sam3d_eval.seeding`. Default 0.
        normalize: normalise each pair jointly so the GT bounding box fits the unit cube (the default
            protocol). Default True; False scores in the input coordinates (distances in input units).
        sample_ids: the B ids keying those streams; default "0", "1", ... by position.

    Returns:
        `SurfaceMetrics` of the B pairs.

    Raises:
        ValueError: `num_samples` < 1; a tau that is not positive; `pred` and `gt` differ in length; duplicate
            or miscounted `sample_ids`; or, with the reason of the first failing pair, a pair that cannot be
            scored (e.g. a degenerate GT box, a mesh without faces or area, NaN coordinates).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    protocol = PROTOCOLS["default"].with_overrides(num_samples=num_samples, taus=tuple(taus), seed=seed)
    if not normalize:
        protocol = dataclasses.replace(protocol, normalization="none")
    if len(pred) != len(gt):
        raise ValueError(f"got {len(pred)} predictions for {len(gt)} ground truths")
    ids = [str(b) for b in range(len(gt))] if sample_ids is None else list(sample_ids)
    res = score_batch(ids, [pred[b] for b in range(len(pred))], [gt[b] for b in range(len(gt))], protocol)
    failed = [(sid, err) for sid, st, err in zip(res.sample_ids, res.status, res.error) if st != "ok"]
    if failed:
        raise ValueError(f"sample {failed[0][0]}: {failed[0][1]}")
    dtype = pred.verts_list()[0].dtype
    col = lambda name: res.metrics[name].to(dtype)  # noqa: E731
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
