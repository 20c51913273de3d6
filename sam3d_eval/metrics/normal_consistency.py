"""Evaluation normal consistency between two oriented point samples (as defined in docs/definitions.md).

NC = (mean over predicted points of |cos(n_p, n_gt(nn(p)))| + mean over GT points of
|cos(n_g, n_pred(nn(g)))|) / 2, where nn is the nearest neighbour (Euclidean) on the other surface
(Occupancy Networks / Mesh R-CNN evaluation). Higher is better, 1 is perfect. `absolute=False` keeps the
sign (orientation-aware). Not the training regulariser `mesh_normal_consistency`.
"""

from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F

from ..ops.knn import knn_gather, knn_points
from ..structures.pointclouds import Pointclouds
from ..structures.utils import lengths_mask
from .chamfer import handle_pointcloud_input

PointsLike = Union[torch.Tensor, Pointclouds]


def normal_consistency(
    pred: PointsLike,
    gt: PointsLike,
    pred_normals: torch.Tensor | None = None,
    gt_normals: torch.Tensor | None = None,
    pred_lengths: torch.Tensor | None = None,
    gt_lengths: torch.Tensor | None = None,
    absolute: bool = True,
) -> torch.Tensor:
    """`(B,)` normal consistency between `pred` `(B, P, 3)` and `gt` `(B, G, 3)` with their normals.

    `pred`/`gt` may be `Pointclouds` carrying normals, or tensors with `pred_normals` `(B, P, 3)` and
    `gt_normals` `(B, G, 3)` (need not be unit length). Lengths `(B,)` int64 for padded tensors.

    Args:
        pred: `(B, P, 3)` float padded predicted points, or a `Pointclouds` with normals.
        gt: `(B, G, 3)` float padded ground-truth points, or a `Pointclouds` with normals; same B.
        pred_normals: `(B, P, 3)` float normals of a tensor `pred`, or None (ignored for a `Pointclouds`).
        gt_normals: `(B, G, 3)` float normals of a tensor `gt`, or None (ignored for a `Pointclouds`).
        pred_lengths: `(B,)` int64 number of valid predicted points, or None (all `P`).
        gt_lengths: `(B,)` int64 number of valid GT points, or None (all `G`).
        absolute: True (default) averages |cos| (orientation-free); False the signed cos.

    Returns:
        `(B,)` normal consistency in the normals' dtype, in [0, 1] (`absolute=True`, 1 is perfect) or
        [-1, 1]; 0 against an empty cloud. Nearest neighbours are found without autograd; the value is
        differentiable w.r.t. the normals.

    Raises:
        ValueError: if either cloud has no normals, the batch sizes differ, an input or lengths tensor has
            a bad shape, or the valid points hold NaN/inf.
    """
    pred, pred_lengths, pred_normals = handle_pointcloud_input(pred, pred_lengths, pred_normals)
    gt, gt_lengths, gt_normals = handle_pointcloud_input(gt, gt_lengths, gt_normals)
    if pred_normals is None or gt_normals is None:
        raise ValueError("normal_consistency needs normals for both clouds")
    if pred.shape[0] != gt.shape[0]:
        raise ValueError(f"normal_consistency: batch sizes differ ({pred.shape[0]} vs {gt.shape[0]})")
    with torch.no_grad():
        idx_pg = knn_points(pred, gt, pred_lengths, gt_lengths, K=1).idx[..., 0]
        idx_gp = knn_points(gt, pred, gt_lengths, pred_lengths, K=1).idx[..., 0]
    return normal_consistency_from_idx(
        pred_normals, gt_normals, idx_pg, idx_gp, pred_lengths, gt_lengths, absolute=absolute
    )


def normal_consistency_from_idx(
    pred_normals: torch.Tensor,
    gt_normals: torch.Tensor,
    idx_pred_to_gt: torch.Tensor,
    idx_gt_to_pred: torch.Tensor,
    pred_lengths: torch.Tensor | None = None,
    gt_lengths: torch.Tensor | None = None,
    absolute: bool = True,
) -> torch.Tensor:
    """`(B,)` normal consistency from precomputed nearest-neighbour indices (e.g. `knn_points(...).idx[..., 0]`).

    A direction whose source cloud is empty contributes 0; against an empty target cloud the result is 0.

    Args:
        pred_normals: `(B, P, 3)` float normals of the predicted points (need not be unit length).
        gt_normals: `(B, G, 3)` float normals of the GT points.
        idx_pred_to_gt: `(B, P)` int64 index into GT of each predicted point's nearest GT point.
        idx_gt_to_pred: `(B, G)` int64 index into the prediction of each GT point's nearest point.
        pred_lengths: `(B,)` int64 number of valid predicted points, or None (all `P`); entries past it are
            ignored.
        gt_lengths: `(B,)` int64 number of valid GT points, or None (all `G`).
        absolute: |cos| (orientation-free, default) or signed cos.

    Returns:
        `(B,)` mean of the two directional mean cosines, in the normals' dtype: in [0, 1] with
        `absolute=True`, [-1, 1] otherwise. Differentiable w.r.t. the normals.

    Raises:
        ValueError: if the index shapes do not match `(B, P)` and `(B, G)`.
    """
    B, P, _ = pred_normals.shape
    G = gt_normals.shape[1]
    if idx_pred_to_gt.shape != (B, P) or idx_gt_to_pred.shape != (B, G):
        raise ValueError(
            f"normal_consistency: idx shapes {tuple(idx_pred_to_gt.shape)}, {tuple(idx_gt_to_pred.shape)} "
            f"do not match normals ({B}, {P}) and ({B}, {G})"
        )
    dev = pred_normals.device
    pl = torch.full((B,), P, dtype=torch.int64, device=dev) if pred_lengths is None else pred_lengths.to(dev)
    gl = torch.full((B,), G, dtype=torch.int64, device=dev) if gt_lengths is None else gt_lengths.to(dev)
    fwd = _mean_cos(pred_normals, gt_normals, idx_pred_to_gt, pl, absolute) * (gl > 0)
    bwd = _mean_cos(gt_normals, pred_normals, idx_gt_to_pred, gl, absolute) * (pl > 0)
    return 0.5 * (fwd + bwd)


def _mean_cos(src_n, dst_n, idx, src_lengths, absolute):
    if dst_n.shape[1] == 0 or src_n.shape[1] == 0:
        return src_n.new_zeros(src_n.shape[0])
    near = knn_gather(dst_n, idx[..., None])[..., 0, :]  # (B, P, 3)
    cos = F.cosine_similarity(src_n, near, dim=2, eps=1e-6)
    if absolute:
        cos = cos.abs()
    valid = lengths_mask(src_lengths, src_n.shape[1])
    cos = torch.where(valid, cos, torch.zeros_like(cos))
    return cos.sum(1) / src_lengths.clamp(min=1).to(cos.dtype)
