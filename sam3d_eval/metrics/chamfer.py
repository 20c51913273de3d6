"""Chamfer distance between batched point clouds, with pytorch3d's `chamfer_distance` semantics.

Matches pytorch3d (main branch) `pytorch3d.loss.chamfer_distance` in signature, every reduction branch
and return value; nearest neighbours come from `sam3d_eval.ops.knn.knn_points` (KD-tree on CPU, fused
Triton kernel on CUDA), so large clouds run in O(P) memory. Differentiable w.r.t. points and normals.

CPU fast path. When no gradient is needed (grad mode off, or no input requires grad), without the normals
term, for float32/float64 clouds that the auto dispatch sends to the KD-tree, the per-point work after the
queries (padding, weights, reductions) runs in numpy on the arrays the tree returns, and only the per-cloud
results become tensors. numpy's element-wise passes are single-threaded and never touch torch's OpenMP pool,
so a plain call (no `runtime_policy`, torch on its default threads) costs what the two KD-tree queries cost;
the same per-point work on two torch threads measured 7-30 ms per op on the busy 2-core reference machine
(runtime.py's docstring). Values: the per-point terms, max and unreduced outputs are bitwise those of the
torch path; per-cloud sums over fewer than `_TORCH_SERIAL_NUMEL` elements run in torch (serially, bitwise the
torch path's sum), larger ones in numpy with float64 accumulation, rounded once to the points' dtype (the
torch path's own sum of such sizes already differs in the last bits between one and two torch threads).
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from ..ops import knn as _knn
from ..ops.knn import check_finite_numpy, kdtree_arrays, kdtree_query, knn_gather, knn_points
from ..structures.pointclouds import Pointclouds
from ..structures.utils import lengths_mask

PointsLike = Union[torch.Tensor, Pointclouds]

# Reductions over fewer elements than this run serially in torch (ATen's internal GRAIN_SIZE): no OpenMP
# region, and the same summation order whatever torch's thread count.
_TORCH_SERIAL_NUMEL = 32768


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

    return _point_reduction(cham_x, cham_norm_x, x_lengths, point_reduction)


def _point_reduction(cham_x, cham_norm_x, x_lengths, point_reduction):
    """Per-point terms `(N, P1)` (0 past the lengths, weighted) -> the `point_reduction` of each cloud."""
    if point_reduction == "max":
        cham_x = cham_x.max(1).values  # (N,)
    elif point_reduction is not None:
        cham_x = cham_x.sum(1)
        if cham_norm_x is not None:
            cham_norm_x = cham_norm_x.sum(1)
        if point_reduction == "mean":
            x_lengths_clamped = x_lengths.clamp(min=1)
            cham_x = cham_x / x_lengths_clamped
            if cham_norm_x is not None:
                cham_norm_x = cham_norm_x / x_lengths_clamped
    return cham_x, cham_norm_x


def _kdtree_grad_direction(
    x, y, x_lengths, y_lengths, x_normals, y_normals, weights, point_reduction, norm, abs_cosine
):  # fmt: skip
    """`_single_direction` for unpadded clouds on the CPU KD-tree, without the normals term, in the fewest
    torch passes: one gather, the difference, one reduction over D (`knn_points`' exact distances and their
    gradient, bitwise), no padding masks (nothing is padded). For when a gradient is needed."""
    N, P1, D = x.shape
    with torch.no_grad():
        idx = _knn.knn_idx(x.detach(), y.detach(), x_lengths, y_lengths, norm=norm, K=1, backend="kdtree")
    diff = x - y.gather(1, idx.expand(-1, -1, D))  # (N, P1, D)
    cham_x = (diff * diff).sum(-1) if norm == 2 else diff.abs().sum(-1)  # (N, P1)
    if weights is not None:
        cham_x = cham_x * weights.view(N, 1)
    return _point_reduction(cham_x, None, x_lengths, point_reduction)


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

    directions = None
    path = _cpu_kdtree_path(x, y, x_lengths, y_lengths, x_normals, y_normals, weights)
    if path == "numpy":
        fast = _NumpyDirections(x, y, x_lengths, y_lengths, weights)
        directions = (fast.forward, fast.reverse)
    elif path == "torch_unpadded":
        _check_finite_points(x, y)
        directions = (_kdtree_grad_direction, _kdtree_grad_direction)
    return _chamfer(
        x, y, x_lengths, y_lengths, x_normals, y_normals, weights,
        batch_reduction, point_reduction, norm, single_directional, abs_cosine, directions,
    )  # fmt: skip


def _chamfer(
    x, y, x_lengths, y_lengths, x_normals, y_normals, weights,
    batch_reduction, point_reduction, norm, single_directional, abs_cosine, directions=None,
):  # fmt: skip
    """Both directions and the reductions; `directions` = (x -> y, y -> x) callables with the signature of
    `_single_direction` (default: it, the torch path, for both)."""
    forward, reverse = directions or (_single_direction, _single_direction)
    cham_x, cham_norm_x = forward(
        x, y, x_lengths, y_lengths, x_normals, y_normals, weights, point_reduction, norm, abs_cosine
    )
    if single_directional:
        loss, loss_normals = cham_x, cham_norm_x
    else:
        cham_y, cham_norm_y = reverse(
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


def _cpu_kdtree_path(x, y, x_lengths, y_lengths, x_normals, y_normals, weights) -> str | None:
    """Which CPU KD-tree shortcut computes exactly what `_single_direction` would, or None for it itself.

    ``"numpy"``: no gradient needed (module docstring). ``"torch_unpadded"``: a gradient is needed and no
    cloud is padded (`_kdtree_grad_direction`). Anything else - the normals term, other devices or dtypes,
    empty clouds, the torch engine, inputs `knn_points` would refuse - takes `_single_direction`, which
    also raises the errors.
    """
    if x_normals is not None and y_normals is not None:
        return None
    if x.device.type != "cpu" or y.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    if y.dtype != x.dtype or x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        return None
    if x.shape[0] == 0 or x.shape[1] == 0 or y.shape[1] == 0:
        return None
    if weights is not None and (
        weights.device.type != "cpu" or weights.dtype != x.dtype or weights.shape != (x.shape[0],)
    ):
        return None  # other dtypes promote differently in numpy than in torch
    # `_knn.select_backend` looked up at call time: tests force an engine by patching it.
    if _knn.select_backend(x, y, 1) != "kdtree" or _knn.select_backend(y, x, 1) != "kdtree":
        return None
    lo_x, lo_y = int(x_lengths.min()), int(y_lengths.min())
    if lo_x < 0 or lo_y < 0:
        return None  # knn_points raises
    inputs = (x, y) if weights is None else (x, y, weights)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in inputs)):
        return "numpy"
    if lo_x == x.shape[1] and lo_y == y.shape[1]:
        return "torch_unpadded"
    return None


def _check_finite_points(x: torch.Tensor, y: torch.Tensor) -> None:
    """`knn_points`' NaN/inf check of unpadded clouds, x (its p1) first, same message."""
    check_finite_numpy(kdtree_arrays(x, x.dtype), "p1", "lengths1")
    check_finite_numpy(kdtree_arrays(y, y.dtype), "p2", "lengths2")


class _NumpyDirections:
    """`_single_direction` without normals or gradients, per-point work in numpy (module docstring).

    Holds both clouds as numpy arrays (shared memory: no copy for float32/float64 tensors) and their
    lengths as lists; `forward` is the x -> y direction and `reverse` the y -> x one, each called with the
    arguments `_single_direction` takes (only the reduction, norm and the query cloud's lengths are read).
    """

    def __init__(self, x, y, x_lengths, y_lengths, weights):
        self.clouds = tuple(
            (kdtree_arrays(p, p.dtype), lengths.tolist()) for p, lengths in ((x, x_lengths), (y, y_lengths))
        )
        self.weights = None if weights is None else weights.detach().resolve_neg().numpy()
        # knn_points checks p1 (x) before p2 (y) for NaN/inf: same order, same message.
        for (arr, lengths), name in zip(self.clouds, ("1", "2")):
            for n, length in enumerate(lengths):
                check_finite_numpy(arr[n, :length], "p" + name, "lengths" + name)

    def forward(self, x, y, x_lengths, y_lengths, x_normals, y_normals, weights, point_reduction, norm, abs_cosine):
        return self._direction(self.clouds[0], self.clouds[1], x_lengths, point_reduction, norm)

    def reverse(self, x, y, x_lengths, y_lengths, x_normals, y_normals, weights, point_reduction, norm, abs_cosine):
        return self._direction(self.clouds[1], self.clouds[0], x_lengths, point_reduction, norm)

    def _direction(self, query, data, q_lengths, point_reduction, norm):
        (a, la), (b, lb) = query, data
        N, P1, _ = a.shape
        # Per-point terms (N, P1), 0 past the lengths: the tree's distances, as knn_points returns them.
        cham = None
        for n in range(N):
            l1, l2 = la[n], lb[n]
            if l1 == 0 or l2 == 0:
                continue
            d, _ = kdtree_query(a[n, :l1], b[n, :l2], norm, 1, return_index=False)
            d = d.reshape(l1)
            if N == 1 and l1 == P1:
                cham = d.astype(a.dtype, copy=False)[None]  # the query's own array, no padded copy
                break
            if cham is None:
                cham = np.zeros((N, P1), a.dtype)
            cham[n, :l1] = d  # cKDTree's float64 rounded to the points' dtype, as torch's .to
        if cham is None:
            cham = np.zeros((N, P1), a.dtype)
        with np.errstate(all="ignore"):  # inf weights give inf / NaN silently, as in torch
            if self.weights is not None:
                cham = cham * self.weights[:, None]  # same dtype (checked): bitwise torch's product
            if point_reduction == "max":
                return torch.from_numpy(cham.max(1)), None
            if point_reduction is None:
                return torch.from_numpy(cham), None
            if cham.size < _TORCH_SERIAL_NUMEL:
                total = torch.from_numpy(cham).sum(1)  # serial: bitwise the torch path's sum
            else:
                total = torch.from_numpy(cham.sum(1, dtype=np.float64).astype(a.dtype))
        if point_reduction == "mean":
            total = total / q_lengths.clamp(min=1)
        return total, None


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
