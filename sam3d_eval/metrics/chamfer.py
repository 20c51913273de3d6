"""Chamfer distance between batched point clouds, with pytorch3d's `chamfer_distance` semantics.

Matches pytorch3d (main branch) `pytorch3d.loss.chamfer_distance` in signature, every reduction branch
and return value; nearest neighbours come from `sam3d_eval.ops.knn.knn_points` (KD-tree on CPU, fused
Triton kernel on CUDA), so large clouds run in O(P) memory. Differentiable w.r.t. points and normals.
"""

from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F

from ..ops.knn import knn_gather, knn_points
from ..structures.pointclouds import Pointclouds
from ..structures.utils import lengths_mask

PointsLike = Union[torch.Tensor, Pointclouds]


def _validate_reductions(batch_reduction: str | None, point_reduction: str | None) -> None:
    if batch_reduction is not None and batch_reduction not in ("mean", "sum"):
        raise ValueError('batch_reduction must be one of ["mean", "sum"] or None')
    if point_reduction is not None and point_reduction not in ("mean", "sum", "max"):
        raise ValueError('point_reduction must be one of ["mean", "sum", "max"] or None')
    if point_reduction is None and batch_reduction is not None:
        raise ValueError("Batch reduction must be None if point_reduction is None")


def handle_pointcloud_input(
    points: PointsLike, lengths: torch.Tensor | None, normals: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`(padded points (N, P, D), lengths (N,) int64, padded normals or None)` from a tensor or `Pointclouds`.

    pytorch3d's `_handle_pointcloud_input`: the common front end of `chamfer_distance`, `f_score` and
    `normal_consistency`.

    Args:
        points: `(N, P, D)` float padded points, or a `Pointclouds` batch (then `lengths` and `normals` are
            ignored and taken from it: `num_points_per_cloud()` and `normals_padded()`).
        lengths: `(N,)` integer number of valid points per cloud, or None (every cloud has all `P` points).
            Only checked against `P`, not for negative values.
        normals: `(N, P, 3)` float padded normals, or None.

    Returns:
        `(points, lengths, normals)`: the `(N, P, D)` padded points, `(N,)` int64 lengths on the points'
        device, and the `(N, P, 3)` padded normals or None.

    Raises:
        ValueError: if `points` is neither a tensor nor a `Pointclouds`, is a tensor that is not 3-D, if
            `lengths` is not `(N,)` or holds a value above `P`, or if `normals` is not 3-D.
    """
    if isinstance(points, Pointclouds):
        return points.points_padded(), points.num_points_per_cloud(), points.normals_padded()
    if torch.is_tensor(points):
        if points.ndim != 3:
            raise ValueError(f"Expected points to be of shape (N, P, D), got {tuple(points.shape)}")
        if lengths is not None:
            if lengths.ndim != 1 or lengths.shape[0] != points.shape[0]:
                raise ValueError("Expected lengths to be of shape (N,)")
            if points.shape[0] and lengths.max() > points.shape[1]:
                raise ValueError("A length value was too long")
            lengths = lengths.to(device=points.device, dtype=torch.int64)
        else:
            lengths = torch.full((points.shape[0],), points.shape[1], dtype=torch.int64, device=points.device)
        if normals is not None and normals.ndim != 3:
            raise ValueError("Expected normals to be of shape (N, P, 3)")
        return points, lengths, normals
    raise ValueError(
        "The input pointclouds should be either Pointclouds objects or torch.Tensor of shape "
        "(minibatch, num_points, 3)."
    )


def _check_normals(x_normals, y_normals, x, y) -> None:
    """Normals must be `(N, P, C)` with their cloud's N and P and one C for both (else torch fails cryptically)."""
    if x_normals is None or y_normals is None:
        return
    for name, nrm, pts in (("x_normals", x_normals, x), ("y_normals", y_normals, y)):
        if nrm.shape[:2] != pts.shape[:2]:
            raise ValueError(
                f"{name} has shape {tuple(nrm.shape)} but its points have shape {tuple(pts.shape)}; "
                "expected (N, P, 3) matching the points"
            )
    if x_normals.shape[2] != y_normals.shape[2]:
        raise ValueError(
            f"x_normals {tuple(x_normals.shape)} and y_normals {tuple(y_normals.shape)} differ in their last dimension"
        )


def _single_direction(x, y, x_lengths, y_lengths, x_normals, y_normals, weights, point_reduction, norm, abs_cosine):
    return_normals = x_normals is not None and y_normals is not None
    N, P1, D = x.shape
    if y.shape[0] != N or y.shape[2] != D:
        raise ValueError("y does not have the correct shape.")
    x_mask = ~lengths_mask(x_lengths, P1)  # (N, P1) padding

    x_nn = knn_points(x, y, lengths1=x_lengths, lengths2=y_lengths, norm=norm, K=1)
    cham_x = x_nn.dists[..., 0].masked_fill(x_mask, 0.0)  # (N, P1)
    if weights is not None:
        cham_x = cham_x * weights.view(N, 1)

    cham_norm_x = None
    if return_normals:
        x_normals_near = knn_gather(y_normals, x_nn.idx, y_lengths)[..., 0, :]
        cosine_sim = F.cosine_similarity(x_normals, x_normals_near, dim=2, eps=1e-6)
        cham_norm_x = 1 - (torch.abs(cosine_sim) if abs_cosine else cosine_sim)
        cham_norm_x = cham_norm_x.masked_fill(x_mask, 0.0)
        if weights is not None:
            cham_norm_x = cham_norm_x * weights.view(N, 1)

    if point_reduction == "max":
        cham_x = cham_x.max(1).values  # (N,)
    elif point_reduction is not None:
        cham_x = cham_x.sum(1)
        if return_normals:
            cham_norm_x = cham_norm_x.sum(1)
        if point_reduction == "mean":
            x_lengths_clamped = x_lengths.clamp(min=1)
            cham_x = cham_x / x_lengths_clamped
            if return_normals:
                cham_norm_x = cham_norm_x / x_lengths_clamped
    return cham_x, cham_norm_x


def _apply_batch_reduction(cham, cham_norm, weights, batch_reduction):
    if batch_reduction is None:
        return cham, cham_norm
    N = cham.shape[0]
    cham = cham.sum()
    if cham_norm is not None:
        cham_norm = cham_norm.sum()
    if batch_reduction == "mean":
        if weights is None:
            div = max(N, 1)
        elif weights.sum() == 0.0:
            div = 1
        else:
            div = weights.sum()
        cham = cham / div
        if cham_norm is not None:
            cham_norm = cham_norm / div
    return cham, cham_norm


def chamfer_distance(
    x: PointsLike,
    y: PointsLike,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    x_normals: torch.Tensor | None = None,
    y_normals: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    batch_reduction: str | None = "mean",
    point_reduction: str | None = "mean",
    norm: int = 2,
    single_directional: bool = False,
    abs_cosine: bool = True,
):
    """Chamfer distance between clouds `x` and `y` (pytorch3d `chamfer_distance`, same signature and returns).

    Per point of `x`: the SQUARED Euclidean distance to its nearest point of `y` (`norm=2`) or the L1
    distance (`norm=1`), in squared input units / input units; then the same from `y` to `x`.

    Args:
        x: `(N, P1, D)` float padded points, or a `Pointclouds` (its lengths and normals are used).
        y: `(N, P2, D)` float padded points, or a `Pointclouds`; same N and D as `x`.
        x_lengths: `(N,)` int64 number of valid points per cloud of a padded `x`, or None (all `P1`).
        y_lengths: `(N,)` int64 number of valid points per cloud of a padded `y`, or None (all `P2`).
        x_normals: `(N, P1, C)` float normals of `x`, or None.
        y_normals: `(N, P2, C)` float normals of `y`, or None. With both normals given, the normals term
            `1 - |cos|` (`1 - cos` with `abs_cosine=False`) between a point's normal and its nearest
            neighbour's normal is computed too; they need not be unit length.
        weights: `(N,)` float non-negative per-cloud weights multiplying every term of a cloud, or None;
            with `batch_reduction="mean"` the sum is divided by `weights.sum()` instead of N. All-zero
            weights return zeros attached to the graph, as pytorch3d (for `loss_normals` too, normals or
            not, except None for "max" in both directions).
        batch_reduction: "mean" (default), "sum" or None (per-cloud values).
        point_reduction: "mean" (default; over each cloud's own length), "sum", "max" (the largest
            per-point term, Hausdorff-style; normals not allowed) or None (per-point terms; then
            `batch_reduction` must be None).
        norm: 2 (default): squared Euclidean distance, in squared input units; 1: L1 distance, in
            input units (neighbours are then also ranked by L1).
        single_directional: only the `x -> y` term (default False: `x -> y` plus `y -> x`; with
            `point_reduction="max"` their maximum).
        abs_cosine: True (default) ignores normal orientation in the normals term.

    Returns:
        `(loss, loss_normals)`, float in the points' dtype: `()` with a batch reduction, `(N,)` with
        `batch_reduction=None`, or per point (`point_reduction=None`): `(N, P1)`, or the tuple
        `((N, P1), (N, P2))` of both directions. Entries past a cloud's length are 0. `loss_normals` has
        the same form, or is None without normals.

    Raises:
        ValueError: on an unknown reduction, a batch reduction without a point reduction, `norm` other
            than 1 or 2, normals with `point_reduction="max"`, `weights` not `(N,)` or negative, clouds
            or normals of mismatched shapes, bad lengths, or NaN/inf among the valid points.
    """
    _validate_reductions(batch_reduction, point_reduction)
    if norm not in (1, 2):
        raise ValueError("Support for 1 or 2 norm.")
    if point_reduction == "max" and (x_normals is not None or y_normals is not None):
        raise ValueError('Normals must be None if point_reduction is "max"')

    x, x_lengths, x_normals = handle_pointcloud_input(x, x_lengths, x_normals)
    y, y_lengths, y_normals = handle_pointcloud_input(y, y_lengths, y_normals)
    _check_normals(x_normals, y_normals, x, y)

    if weights is not None:
        N = x.shape[0]
        if weights.size(0) != N:
            raise ValueError("weights must be of shape (N,).")
        if not (weights >= 0).all():
            raise ValueError("weights cannot be negative.")
        if weights.sum() == 0.0:
            return _zero_weights_result(x, y, weights, batch_reduction, point_reduction, single_directional)

    return _chamfer(
        x, y, x_lengths, y_lengths, x_normals, y_normals, weights,
        batch_reduction, point_reduction, norm, single_directional, abs_cosine,
    )  # fmt: skip


def _chamfer(
    x, y, x_lengths, y_lengths, x_normals, y_normals, weights,
    batch_reduction, point_reduction, norm, single_directional, abs_cosine,
):  # fmt: skip
    cham_x, cham_norm_x = _single_direction(
        x, y, x_lengths, y_lengths, x_normals, y_normals, weights, point_reduction, norm, abs_cosine
    )
    if single_directional:
        loss, loss_normals = cham_x, cham_norm_x
    else:
        cham_y, cham_norm_y = _single_direction(
            y, x, y_lengths, x_lengths, y_normals, x_normals, weights, point_reduction, norm, abs_cosine
        )
        if point_reduction == "max":
            loss, loss_normals = torch.maximum(cham_x, cham_y), None
        elif point_reduction is not None:
            loss = cham_x + cham_y
            loss_normals = cham_norm_x + cham_norm_y if cham_norm_x is not None else None
        else:
            loss = (cham_x, cham_y)
            loss_normals = (cham_norm_x, cham_norm_y) if cham_norm_x is not None else None
    return _apply_batch_reduction(loss, loss_normals, weights, batch_reduction)


def _zero_weights_result(x, y, weights, batch_reduction, point_reduction, single_directional):
    """All-zero weights: zeros that stay attached to the graph, as pytorch3d returns.

    pytorch3d broadcasts `(N,) * (N, 1)` here and returns `(N, N)` zeros when unreduced; we return the
    shapes the other branches return (`()` reduced, `(N,)` per cloud, `(N, P)` per point) instead.
    """
    zx = x.sum((1, 2)) * weights * 0.0  # (N,), carries x's graph
    if point_reduction is None:
        px = zx[:, None].expand(-1, x.shape[1])
        py = (y.sum((1, 2)) * weights * 0.0)[:, None].expand(-1, y.shape[1])
        return (px, px) if single_directional else ((px, py), (px, py))
    # pytorch3d's "max" branch drops the normals term (both directions only).
    znorm = None if point_reduction == "max" and not single_directional else zx
    if batch_reduction is not None:
        return zx.sum(), None if znorm is None else znorm.sum()
    return zx, znorm
