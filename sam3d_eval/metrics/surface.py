"""Surface metrics of a prediction against its ground truth from sampled points: the evaluation's geometry row.

One nearest-neighbour query per direction is shared by Chamfer, F-score and normal consistency, so a pair
of 100k-point samples costs two KNN queries in all. Definitions are DESIGN.md section 5's default protocol:
both meshes normalised jointly so the GT bounding box fits the unit cube, no rotation alignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ops.knn import knn_points
from ..ops.normalize import normalize_to_unit_cube
from ..ops.sample_points import sample_points_from_meshes
from ..structures import Meshes
from .fscore import f_score_from_dists

DEFAULT_TAUS = (0.01, 0.02, 0.05)


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

    Args:
        pred, gt: batches of B meshes each, paired by position.
        num_samples: points sampled area-uniformly from each surface.
        taus: F-score thresholds in units of the unit cube's side (after normalisation).
        seed: sampling seed; the GT is sampled with `seed` and the prediction with `seed + 1`.
        normalize: normalise each pair jointly so the GT bounding box fits the unit cube (DESIGN.md).
    """
    if len(pred) != len(gt):
        raise ValueError(f"got {len(pred)} predictions for {len(gt)} ground truths")
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if normalize:
        pred, gt = normalize_to_unit_cube(pred, gt)[:2]
    with torch.no_grad():
        gt_pts, gt_nrm = sample_points_from_meshes(gt, num_samples, return_normals=True, seed=seed)
        pr_pts, pr_nrm = sample_points_from_meshes(pred, num_samples, return_normals=True, seed=seed + 1)
        to_gt = knn_points(pr_pts, gt_pts, K=1)
        to_pr = knn_points(gt_pts, pr_pts, K=1)
    d_pg, d_gp = to_gt.dists[..., 0], to_pr.dists[..., 0]
    precision, recall, fscore = f_score_from_dists(d_pg, d_gp, taus)
    cos_pg = _abs_cos(pr_nrm, gt_nrm, to_gt.idx[..., 0])
    cos_gp = _abs_cos(gt_nrm, pr_nrm, to_pr.idx[..., 0])
    return SurfaceMetrics(
        chamfer_l2=d_pg.mean(1) + d_gp.mean(1),
        chamfer_l1=0.5 * (d_pg.sqrt().mean(1) + d_gp.sqrt().mean(1)),
        precision=precision,
        recall=recall,
        fscore=fscore,
        normal_consistency=0.5 * (cos_pg.mean(1) + cos_gp.mean(1)),
        taus=tuple(float(t) for t in taus),
    )


def _abs_cos(n_src: torch.Tensor, n_dst: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """`(B, P)` |cos| between each source normal and the normal of its neighbour `idx` in `n_dst`."""
    near = torch.gather(n_dst, 1, idx[..., None].expand(-1, -1, 3))
    return torch.nn.functional.cosine_similarity(n_src, near, dim=2, eps=1e-6).abs()
