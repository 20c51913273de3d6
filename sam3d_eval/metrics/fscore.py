"""F-score at distance thresholds between predicted and ground-truth point clouds (docs/definitions.md).

precision(tau) = share of predicted points whose nearest GT point lies strictly closer than tau
(Euclidean distance, not squared); recall(tau) likewise from GT to prediction; F = 2PR / (P + R), and
0 when P = R = 0 (Tatarchenko et al. 2019, "What do single-view 3D reconstruction networks learn?").
A cloud with no points gives precision and recall 0 against it.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence, Union

import torch

from ..ops.knn import knn_points
from ..structures.pointclouds import Pointclouds
from ..structures.utils import lengths_mask
from .chamfer import handle_pointcloud_input

PointsLike = Union[torch.Tensor, Pointclouds]
DEFAULT_TAUS = (0.01, 0.02, 0.05)


class FScore(NamedTuple):
    """Per batch element and threshold: each `(B, T)` in [0, 1], thresholds in the order given."""

    precision: torch.Tensor
    recall: torch.Tensor
    fscore: torch.Tensor


def f_score(
    pred: PointsLike,
    gt: PointsLike,
    taus: Sequence[float] = DEFAULT_TAUS,
    pred_lengths: torch.Tensor | None = None,
    gt_lengths: torch.Tensor | None = None,
) -> FScore:
    """F-score between `pred` `(B, P, 3)` and `gt` `(B, G, 3)` (tensors or `Pointclouds`) at each tau.

    `taus` are Euclidean distances in the clouds' units (fractions of the unit-cube side under the
    default protocol). Lengths `(B,)` int64 mark the valid points of padded tensors.

    Args:
        pred: `(B, P, 3)` float padded predicted points, or a `Pointclouds`.
        gt: `(B, G, 3)` float padded ground-truth points, or a `Pointclouds`; same B.
        taus: T Euclidean (not squared) distance thresholds, positive, in the clouds' units; a point counts
            as close when its nearest-neighbour distance is strictly below tau. Default (0.01, 0.02, 0.05).
        pred_lengths: `(B,)` int64 number of valid points per predicted cloud, or None (all `P`).
        gt_lengths: `(B,)` int64 number of valid points per GT cloud, or None (all `G`).

    Returns:
        `FScore(precision, recall, fscore)`, each `(B, T)` in [0, 1], thresholds in the order given, in
        pred's dtype. F is 0 where precision and recall are both 0; against an empty cloud precision and
        recall are 0. No gradient (nearest neighbours and counts are computed without autograd).

    Raises:
        ValueError: if the batch sizes differ, the inputs or lengths have bad shapes, `taus` is empty or
            holds a non-positive value, or the valid points hold NaN/inf.
    """
    pred, pred_lengths, _ = handle_pointcloud_input(pred, pred_lengths, None)
    gt, gt_lengths, _ = handle_pointcloud_input(gt, gt_lengths, None)
    if pred.shape[0] != gt.shape[0]:
        raise ValueError(f"f_score: pred and gt batch sizes differ ({pred.shape[0]} vs {gt.shape[0]})")
    with torch.no_grad():
        d_pg = knn_points(pred, gt, pred_lengths, gt_lengths, K=1).dists[..., 0]
        d_gp = knn_points(gt, pred, gt_lengths, pred_lengths, K=1).dists[..., 0]
    return f_score_from_dists(d_pg, d_gp, taus, pred_lengths, gt_lengths)


def f_score_from_dists(
    d_pred_to_gt: torch.Tensor,
    d_gt_to_pred: torch.Tensor,
    taus: Sequence[float] = DEFAULT_TAUS,
    pred_lengths: torch.Tensor | None = None,
    gt_lengths: torch.Tensor | None = None,
) -> FScore:
    """F-score from precomputed nearest-neighbour SQUARED distances (e.g. `knn_points(...).dists[..., 0]`).

    Args:
        d_pred_to_gt: `(B, P)` float squared Euclidean distance of each predicted point to its nearest GT
            point, in squared input units.
        d_gt_to_pred: `(B, G)` float squared Euclidean distance of each GT point to its nearest predicted
            point.
        taus: T Euclidean (not squared) positive thresholds; the distances are square-rooted (in float64,
            negative values clamped to 0) and compared with a strict `<`. Default (0.01, 0.02, 0.05).
        pred_lengths: `(B,)` int64 number of valid predicted points, or None (all `P`); entries past it are
            ignored.
        gt_lengths: `(B,)` int64 number of valid GT points, or None (all `G`).

    Returns:
        `FScore(precision, recall, fscore)`, each `(B, T)` in [0, 1] in `d_pred_to_gt`'s dtype (float32 for
        integer distances). F is 0 where precision and recall are both 0; a cloud of length 0 makes
        precision and recall 0. Not differentiable (the distances are detached).

    Raises:
        ValueError: if the distances are not 2-D with one batch size, `taus` is empty or holds a
            non-positive value, or a lengths tensor is not `(B,)`.
    """
    if d_pred_to_gt.dim() != 2 or d_gt_to_pred.dim() != 2 or d_pred_to_gt.shape[0] != d_gt_to_pred.shape[0]:
        raise ValueError(
            f"f_score_from_dists: expected (B, P) and (B, G) distances, got {tuple(d_pred_to_gt.shape)} "
            f"and {tuple(d_gt_to_pred.shape)}"
        )
    tau = torch.as_tensor(list(taus), dtype=torch.float64, device=d_pred_to_gt.device)
    if tau.dim() != 1 or tau.numel() == 0 or bool((tau <= 0).any()):
        raise ValueError(f"f_score: taus must be a non-empty sequence of positive distances, got {taus!r}")
    B, P = d_pred_to_gt.shape
    G = d_gt_to_pred.shape[1]
    dev = d_pred_to_gt.device
    pl = _lengths(pred_lengths, B, P, dev)
    gl = _lengths(gt_lengths, B, G, dev)
    # Against an empty cloud there is no nearest point: nothing counts as close.
    precision = _share_within(d_pred_to_gt, pl, tau) * (gl > 0)[:, None]
    recall = _share_within(d_gt_to_pred, gl, tau) * (pl > 0)[:, None]
    denom = precision + recall
    fscore = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(denom))
    out_dtype = d_pred_to_gt.dtype if d_pred_to_gt.is_floating_point() else torch.float32
    return FScore(precision.to(out_dtype), recall.to(out_dtype), fscore.to(out_dtype))


def _lengths(lengths: torch.Tensor | None, B: int, P: int, device) -> torch.Tensor:
    if lengths is None:
        return torch.full((B,), P, dtype=torch.int64, device=device)
    if lengths.shape != (B,):
        raise ValueError(f"f_score: lengths must be ({B},), got {tuple(lengths.shape)}")
    return lengths.to(device=device, dtype=torch.int64)


def _share_within(d2: torch.Tensor, lengths: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """`(B, T)` float64 share of the first `lengths[b]` entries whose Euclidean distance is < tau."""
    valid = lengths_mask(lengths, d2.shape[1])  # (B, P)
    dist = d2.detach().to(torch.float64).clamp(min=0).sqrt()
    close = (dist[:, :, None] < tau[None, None, :]) & valid[:, :, None]  # (B, P, T)
    return close.sum(1).to(torch.float64) / lengths.clamp(min=1)[:, None].to(torch.float64)
