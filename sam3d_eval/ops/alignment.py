"""Aligning a predicted point set to its ground truth before scoring: none, bounding box, ICP, rotation search.

Every method is batched over samples (`(B, N, 3)` padded clouds with optional `(B,)` int64 lengths) and
returns the aligned prediction together with the similarity transform it applied, so the transform can be
recorded with the result. Transforms are `transforms.SimilarityTransform`s, in pytorch3d's row-vector
convention (`corresponding_points_alignment`, `iterative_closest_point`):

    X' = s[:, None, None] * X @ R + T[:, None, :]     R (B, 3, 3) proper rotation, T (B, 3), s (B,)

Methods (`ALIGNMENTS`):

- ``"none"``: identity (camera frame / the frame the protocol normalised to).
- ``"bbox"``: centre the prediction's axis-aligned box on the GT box and scale it uniformly so its longest
  side equals the GT's (``target="gt"``) or 1 (``target="unit_cube"``, centred at the origin). No rotation.
- ``"icp"``: rigid point-to-point ICP (Besl & McKay), each step the closed-form Kabsch/Umeyama fit of the
  original prediction to its current nearest GT points (pytorch3d `iterative_closest_point` semantics).
- ``"scale_icp"``: the same with a uniform scale (similarity Umeyama) estimated in every step, started
  from centroids and RMS radii matched (from s = 1 similarity ICP tends to shrink the prediction).
- ``"rotation_search_icp"``: ICP started from every rotation of a grid (the 24 rotations of the cube by
  default, or a Super-Fibonacci SO(3) grid), each with centroids matched; the run with the lowest
  pytorch3d Chamfer (squared, directional means summed) wins. Recovers large rotations plain ICP cannot.

Nearest neighbours go through `knn_points`, so ICP runs on the GPU when the points are there.
Reflections are never returned: det R = +1 always.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch

from ..structures.utils import lengths_mask
from ..transforms import SimilarityTransform, apply_similarity_transform, bbox_centre_scale, quaternion_to_matrix
from .knn import knn_points

ALIGNMENTS = ("none", "bbox", "icp", "scale_icp", "rotation_search_icp")
AlignmentName = Literal["none", "bbox", "icp", "scale_icp", "rotation_search_icp"]


class ICPSolution(NamedTuple):
    """Result of `iterative_closest_point` (pytorch3d's fields, without the per-iteration history).

    converged: `(B,)` bool, relative RMSE change below the threshold before `max_iterations`.
    rmse: `(B,)` root mean squared distance of the aligned points to their last nearest neighbours.
    Xt: `(B, N, 3)` the aligned prediction. RTs: the `SimilarityTransform`. iterations: steps taken.
    """

    converged: torch.Tensor
    rmse: torch.Tensor
    Xt: torch.Tensor
    RTs: SimilarityTransform
    iterations: int


class Alignment(NamedTuple):
    """Result of `align`: the aligned prediction `(B, N, 3)`, its transform and the method's name.

    converged and rmse are `(B,)` for the ICP methods and None otherwise.
    """

    points: torch.Tensor
    transform: SimilarityTransform
    method: str
    converged: torch.Tensor | None = None
    rmse: torch.Tensor | None = None

    def to_dicts(self) -> list[dict]:
        """One JSON-ready record of the transform per sample: method, R (row-vector convention), T, s.

        Returns:
            B dicts ``{"method": str, "R": 3x3 nested list, "T": [3], "s": float}``, plus ``"converged"``
            (bool) and ``"rmse"`` (float) for the ICP methods.
        """
        out = []
        for b, rec in enumerate(SimilarityTransform(*self.transform).to_dicts()):
            rec = {"method": self.method, **rec}
            if self.converged is not None:
                rec["converged"] = bool(self.converged[b])
                rec["rmse"] = float(self.rmse[b])
            out.append(rec)
        return out


# ----------------------------------------------------------------------------------------------------
# closed form


def corresponding_points_alignment(
    X: torch.Tensor,
    Y: torch.Tensor,
    weights: torch.Tensor | None = None,
    estimate_scale: bool = False,
    allow_reflection: bool = False,
    eps: float = 1e-9,
) -> SimilarityTransform:
    """Least-squares similarity (Umeyama 1991) mapping points `X` onto corresponding points `Y`.

    Minimises sum_i w_i |s X_i R + T - Y_i|^2 (pytorch3d `corresponding_points_alignment` semantics).

    Centroids and the cross-covariance are summed in X's dtype after centring; the 3x3 SVD and the
    transform are computed in float64 (cheap, stable near degenerate configurations) and returned in X's dtype.

    Args:
        X: `(B, N, 3)` float source points.
        Y: `(B, N, 3)` float target points, `Y[b, i]` corresponding to `X[b, i]`.
        weights: `(B, N)` non-negative per-point weights (0 masks padding), or None (all 1).
        estimate_scale: fit s too; otherwise s = 1 (Kabsch). Default False.
        allow_reflection: allow det R = -1; off by default, so R is a proper rotation.
        eps: floor of the weight sum and of the variance of X (default 1e-9).

    Returns:
        `SimilarityTransform(R, T, s)` in X's dtype, row-vector convention `Y ~ s * X @ R + T`: R
        `(B, 3, 3)`, T `(B, 3)` in the points' units, s `(B,)`.

    Raises:
        ValueError: if X and Y are not both `(B, N, 3)` of one shape, or `weights` is not `(B, N)`.
    """
    if X.dim() != 3 or X.shape != Y.shape or X.shape[2] != 3:
        raise ValueError(f"X and Y must both be (B, N, 3), got {tuple(X.shape)} and {tuple(Y.shape)}")
    B, N, _ = X.shape
    w = X.new_ones(B, N) if weights is None else weights.to(X.dtype)
    if w.shape != (B, N):
        raise ValueError(f"weights must be ({B}, {N}), got {tuple(w.shape)}")
    total = w.sum(1).clamp(min=eps)  # (B,)
    Xmu = torch.bmm(w[:, None], X)[:, 0] / total[:, None]
    Ymu = torch.bmm(w[:, None], Y)[:, 0] / total[:, None]
    Xc, Yc = X - Xmu[:, None], Y - Ymu[:, None]
    # Centred first, so the float32 sums lose little; the 3x3 algebra is float64.
    cov = (torch.bmm((Xc * w[..., None]).transpose(1, 2), Yc) / total[:, None, None]).double()
    U, S, Vh = torch.linalg.svd(cov)
    E = torch.ones(B, 3, dtype=torch.float64, device=X.device)
    if not allow_reflection:
        # Flip the weakest axis when U V^T would be a reflection (Umeyama's S matrix).
        d = torch.det(U @ Vh)
        E[:, 2] = torch.where(d < 0, -1.0, 1.0)
    R = U @ torch.diag_embed(E) @ Vh  # Y ~ X R in row-vector form
    if estimate_scale:
        var_x = ((Xc * Xc).sum(2) * w).sum(1).double() / total.double()
        s = (E * S).sum(1) / var_x.clamp(min=eps)
    else:
        s = torch.ones(B, dtype=torch.float64, device=X.device)
    T = Ymu.double() - s[:, None] * torch.bmm(Xmu.double()[:, None], R)[:, 0]
    return SimilarityTransform(R.to(X.dtype), T.to(X.dtype), s.to(X.dtype))


# ----------------------------------------------------------------------------------------------------
# ICP


def _lengths(lengths: torch.Tensor | None, X: torch.Tensor) -> torch.Tensor:
    B, N = X.shape[:2]
    if lengths is None:
        return torch.full((B,), N, dtype=torch.int64, device=X.device)
    if lengths.shape != (B,):
        raise ValueError(f"lengths must be ({B},), got {tuple(lengths.shape)}")
    return lengths.to(device=X.device, dtype=torch.int64)


def _valid_points(P: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    """The `(lengths[b], 3)` valid rows of each padded cloud."""
    return [P[b, :n] for b, n in enumerate(lengths.tolist())]


def _check_pair(X: torch.Tensor, Y: torch.Tensor) -> None:
    if X.dim() != 3 or Y.dim() != 3 or X.shape[2] != 3 or Y.shape[2] != 3 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"pred and gt must be (B, N, 3) and (B, M, 3), got {tuple(X.shape)} and {tuple(Y.shape)}")
    if not X.is_floating_point() or X.dtype != Y.dtype:
        raise ValueError(f"pred and gt must share one floating dtype, got {X.dtype} and {Y.dtype}")


def iterative_closest_point(
    X: torch.Tensor,
    Y: torch.Tensor,
    init_transform: SimilarityTransform | None = None,
    max_iterations: int = 30,
    relative_rmse_thr: float = 1e-6,
    estimate_scale: bool = False,
    X_lengths: torch.Tensor | None = None,
    Y_lengths: torch.Tensor | None = None,
) -> ICPSolution:
    """Point-to-point ICP aligning `X` `(B, N, 3)` to `Y` `(B, M, 3)` (pytorch3d `iterative_closest_point`).

    Each step finds every transformed X point's nearest Y point, then fits the transform from the ORIGINAL
    X to those points in closed form (`corresponding_points_alignment`), so transforms never accumulate
    rounding. Stops when, for every sample, |rmse_prev - rmse| <= `relative_rmse_thr` * rmse_prev, or after
    `max_iterations` steps. Padding (past `X_lengths` / `Y_lengths`) is ignored. Never returns reflections.

    Args:
        X: `(B, N, 3)` float padded source points (the prediction).
        Y: `(B, M, 3)` float padded target points, same dtype.
        init_transform: `SimilarityTransform` (or `(R, T, s)` tuple) applied to X before the first step, or
            None (identity).
        max_iterations: maximum number of steps, >= 1 (default 30).
        relative_rmse_thr: convergence threshold on the relative RMSE change between steps (default 1e-6).
        estimate_scale: also fit a uniform scale in every step (similarity ICP); default False (rigid).
        X_lengths: `(B,)` integer number of valid points per X cloud, or None (all `N`).
        Y_lengths: `(B,)` integer number of valid points per Y cloud, or None (all `M`).

    Returns:
        `ICPSolution(converged, rmse, Xt, RTs, iterations)`: `(B,)` bool convergence flags (False for all
        after a single step), `(B,)` RMSE of the aligned valid points to their last nearest neighbours in
        the points' units, `(B, N, 3)` aligned X, the `SimilarityTransform` from the original X (R
        `(B, 3, 3)`, T `(B, 3)`, s `(B,)`), and the int number of steps taken (shared by the batch).
        Computed without gradient (the inputs are detached).

    Raises:
        ValueError: if X, Y are not `(B, N, 3)` and `(B, M, 3)` of one floating dtype, `max_iterations` < 1,
            a lengths tensor is not `(B,)`, a cloud has no valid point, or valid points hold NaN/inf.
    """
    _check_pair(X, Y)
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
    B, N, _ = X.shape
    xl, yl = _lengths(X_lengths, X), _lengths(Y_lengths, Y)
    if bool((xl == 0).any()) or bool((yl == 0).any()):
        raise ValueError("ICP needs at least one point in every cloud")
    w = lengths_mask(xl, N).to(X.dtype)
    X, Y = X.detach(), Y.detach()
    if init_transform is None:
        transform = SimilarityTransform.identity(B, X.dtype, X.device)
    else:
        transform = SimilarityTransform(*(t.to(device=X.device, dtype=X.dtype) for t in init_transform))
    Xt = apply_similarity_transform(X, transform)
    prev = None
    converged = torch.zeros(B, dtype=torch.bool, device=X.device)
    rmse = X.new_zeros(B)
    it = 0
    for it in range(1, max_iterations + 1):
        nn = knn_points(Xt, Y, xl, yl, K=1, return_nn=True).knn[:, :, 0, :]
        transform = corresponding_points_alignment(X, nn, weights=w, estimate_scale=estimate_scale)
        Xt = apply_similarity_transform(X, transform)
        rmse = (((Xt - nn) ** 2).sum(2) * w).sum(1).div(xl.to(X.dtype)).sqrt()
        if prev is not None:
            converged = (prev - rmse).abs() <= relative_rmse_thr * prev.clamp(min=torch.finfo(X.dtype).tiny)
            if bool(converged.all()):
                break
        prev = rmse
    return ICPSolution(converged, rmse, Xt, transform, it)


# ----------------------------------------------------------------------------------------------------
# rotation grids


def cube_rotations(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> torch.Tensor:
    """The 24 proper rotations of the cube `(24, 3, 3)`: signed permutation matrices with det +1, identity first.

    The set is closed under transposition, so it is the same in the row- and column-vector conventions.

    Args:
        dtype: dtype of the result (default float32).
        device: device of the result (default CPU).

    Returns:
        `(24, 3, 3)` rotation matrices with entries in {-1, 0, 1}.
    """
    mats = []
    for perm in ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (2, 1, 0), (1, 0, 2)):
        for signs in range(8):
            m = torch.zeros(3, 3, dtype=torch.float64)
            for row, col in enumerate(perm):
                m[row, col] = -1.0 if (signs >> row) & 1 else 1.0
            if torch.det(m) > 0:
                mats.append(m)
    return torch.stack(mats).to(dtype=dtype, device=device)


def so3_grid(n: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> torch.Tensor:
    """`(n, 3, 3)` rotations spread near-uniformly over SO(3): the Super-Fibonacci spiral (Alexa, CVPR 2022).

    Args:
        n: number of rotations, >= 1.
        dtype: dtype of the result (default float32; computed in float64).
        device: device of the result (default CPU).

    Returns:
        `(n, 3, 3)` proper rotation matrices in the row-vector convention (`x' = x @ R`).

    Raises:
        ValueError: if `n` < 1.
    """
    if n < 1:
        raise ValueError(f"so3_grid needs n >= 1, got {n}")
    phi, psi = math.sqrt(2.0), 1.533751168755204288118041
    i = torch.arange(n, dtype=torch.float64) + 0.5
    r = torch.sqrt(i / n)
    R_ = torch.sqrt(1.0 - i / n)
    alpha, beta = 2 * math.pi * i / phi, 2 * math.pi * i / psi
    # Alexa's (x, y, z, w) = (r sin a, r cos a, R sin b, R cos b), written w first.
    q = torch.stack([R_ * torch.cos(beta), r * torch.sin(alpha), r * torch.cos(alpha), R_ * torch.sin(beta)], 1)
    # Row-vector convention: the transpose of the column-vector matrix.
    return quaternion_to_matrix(q).transpose(1, 2).contiguous().to(dtype=dtype, device=device)


def rotation_grid(name: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> torch.Tensor:
    """A named grid: ``"cube24"`` (`cube_rotations`) or ``"so3_<n>"`` (`so3_grid(n)`, e.g. ``"so3_72"``).

    Args:
        name: ``"cube24"`` or ``"so3_<n>"`` with n a positive integer.
        dtype: dtype of the result (default float32).
        device: device of the result (default CPU).

    Returns:
        `(K, 3, 3)` rotation matrices, row-vector convention: K = 24 for ``"cube24"``, n for ``"so3_<n>"``.

    Raises:
        ValueError: on any other name, or ``"so3_0"``.
    """
    if name == "cube24":
        return cube_rotations(dtype, device)
    if name.startswith("so3_") and name[4:].isdigit():
        return so3_grid(int(name[4:]), dtype, device)
    raise ValueError(f"unknown rotation grid {name!r}; expected 'cube24' or 'so3_<n>' (e.g. 'so3_72')")


def rotation_search_icp(
    X: torch.Tensor,
    Y: torch.Tensor,
    rotations: torch.Tensor | str = "cube24",
    max_iterations: int = 30,
    relative_rmse_thr: float = 1e-6,
    estimate_scale: bool = False,
    X_lengths: torch.Tensor | None = None,
    Y_lengths: torch.Tensor | None = None,
) -> tuple[ICPSolution, torch.Tensor]:
    """ICP from each of K start rotations, keeping per sample the run with the lowest Chamfer.

    Each start rotates X about its centroid and moves it onto Y's centroid. All B*K runs go through one
    batched `iterative_closest_point`.

    Args:
        X: `(B, N, 3)` float padded source points (the prediction).
        Y: `(B, M, 3)` float padded target points, same dtype.
        rotations: `(K, 3, 3)` row-convention start rotations (converted to X's dtype and device), or a
            `rotation_grid` name (default ``"cube24"``).
        max_iterations: maximum ICP steps per run, >= 1 (default 30).
        relative_rmse_thr: ICP convergence threshold on the relative RMSE change (default 1e-6).
        estimate_scale: similarity instead of rigid ICP (default False).
        X_lengths: `(B,)` integer number of valid points per X cloud, or None (all `N`).
        Y_lengths: `(B,)` integer number of valid points per Y cloud, or None (all `M`).

    Returns:
        `(solution, chamfer)`: the winning `ICPSolution` per sample (batched: `(B,)` converged and rmse,
        `(B, N, 3)` Xt, `(B,)`-batched RTs; `iterations` is the batched run's step count), and the `(B,)`
        Chamfer of every winner (pytorch3d: squared distances, the two directional means summed, in
        squared input units).

    Raises:
        ValueError: if X, Y are not `(B, N, 3)` and `(B, M, 3)` of one floating dtype, `rotations` is not
            `(K, 3, 3)` or an unknown grid name, a lengths tensor is not `(B,)`, or a cloud is empty.
    """
    _check_pair(X, Y)
    B, N, _ = X.shape
    M = Y.shape[1]
    rots = rotation_grid(rotations, X.dtype, X.device) if isinstance(rotations, str) else rotations.to(X)
    if rots.dim() != 3 or rots.shape[1:] != (3, 3):
        raise ValueError(f"rotations must be (K, 3, 3), got {tuple(rots.shape)}")
    K = rots.shape[0]
    xl, yl = _lengths(X_lengths, X), _lengths(Y_lengths, Y)
    wx, wy = lengths_mask(xl, N).to(X.dtype), lengths_mask(yl, M).to(X.dtype)
    mx = (X * wx[..., None]).sum(1) / xl.clamp(min=1)[:, None].to(X.dtype)
    my = (Y * wy[..., None]).sum(1) / yl.clamp(min=1)[:, None].to(X.dtype)
    # Sample-major (b, k) order: the flat index is b * K + k.
    Xr = X.repeat_interleave(K, 0)
    Yr = Y.repeat_interleave(K, 0)
    R0 = rots.repeat(B, 1, 1)
    T0 = my.repeat_interleave(K, 0) - torch.bmm(mx.repeat_interleave(K, 0)[:, None], R0)[:, 0]
    init = SimilarityTransform(R0, T0, X.new_ones(B * K))
    sol = iterative_closest_point(
        Xr, Yr, init, max_iterations, relative_rmse_thr, estimate_scale, xl.repeat_interleave(K), yl.repeat_interleave(K)
    )
    cham = _chamfer_l2(sol.Xt, Yr, xl.repeat_interleave(K), yl.repeat_interleave(K)).view(B, K)
    best = cham.argmin(1)
    pick = torch.arange(B, device=X.device) * K + best
    RTs = SimilarityTransform(*(t[pick] for t in sol.RTs))
    return ICPSolution(sol.converged[pick], sol.rmse[pick], sol.Xt[pick], RTs, sol.iterations), cham[torch.arange(B), best]


def _chamfer_l2(X, Y, xl, yl) -> torch.Tensor:
    d_xy = knn_points(X, Y, xl, yl, K=1).dists[..., 0]
    d_yx = knn_points(Y, X, yl, xl, K=1).dists[..., 0]
    return d_xy.sum(1) / xl.clamp(min=1).to(X.dtype) + d_yx.sum(1) / yl.clamp(min=1).to(X.dtype)


# ----------------------------------------------------------------------------------------------------
# bounding box and the dispatcher


def bbox_alignment(
    X: torch.Tensor,
    Y: torch.Tensor,
    target: Literal["gt", "unit_cube"] = "gt",
    X_lengths: torch.Tensor | None = None,
    Y_lengths: torch.Tensor | None = None,
) -> SimilarityTransform:
    """Centre + uniform scale taking X's bounding box onto Y's (`"gt"`: same centre, same longest side) or
    onto the unit cube at the origin (`"unit_cube"`: longest side 1). Raises for a zero-extent X box.

    Args:
        X: `(B, N, 3)` float padded source points (the prediction).
        Y: `(B, M, 3)` float padded target points, same dtype (only shape-checked for ``"unit_cube"``).
        target: ``"gt"`` (default) or ``"unit_cube"``.
        X_lengths: `(B,)` integer number of valid points per X cloud, or None (all `N`).
        Y_lengths: `(B,)` integer number of valid points per Y cloud, or None (all `M`).

    Returns:
        `SimilarityTransform(R, T, s)` in X's dtype, row-vector convention: R `(B, 3, 3)` identity, T
        `(B, 3)`, s `(B,)` the ratio of the longest box sides (target / X). Computed without gradient.

    Raises:
        ValueError: if X, Y are not `(B, N, 3)` and `(B, M, 3)` of one floating dtype, `target` is unknown,
            or a box needed (X's; Y's for ``"gt"``) is empty, non-finite or of zero extent.
    """
    _check_pair(X, Y)
    xl = _lengths(X_lengths, X)
    cx, kx = bbox_centre_scale(_valid_points(X, xl), 1.0, who="bbox alignment: prediction")
    if target == "gt":
        cy, ky = bbox_centre_scale(_valid_points(Y, _lengths(Y_lengths, Y)), 1.0, who="bbox alignment: ground truth")
    elif target == "unit_cube":
        cy, ky = torch.zeros_like(cx), torch.ones_like(kx)
    else:
        raise ValueError(f"bbox target must be 'gt' or 'unit_cube', got {target!r}")
    s = kx / ky  # the ratio of the longest sides (scales are 1 / longest side)
    R = SimilarityTransform.identity(X.shape[0], X.dtype, X.device).R
    return SimilarityTransform(R, cy - s[:, None] * cx, s)


def _moment_init(X, Y, X_lengths, Y_lengths) -> SimilarityTransform:
    """Start for scale ICP: centroids matched, scale matching the RMS distances to the centroids, no rotation.

    From s = 1 a similarity ICP tends to shrink the prediction towards a patch of the target (nearest
    neighbours favour a smaller scale); starting at the right size avoids that collapse.
    """
    xl, yl = _lengths(X_lengths, X), _lengths(Y_lengths, Y)
    stats = []
    for P, ln in ((X, xl), (Y, yl)):
        w = lengths_mask(ln, P.shape[1]).to(P.dtype)[..., None]
        n = ln.clamp(min=1).to(P.dtype)[:, None]
        mu = (P * w).sum(1) / n
        rms = ((((P - mu[:, None]) ** 2) * w).sum((1, 2)) / n[:, 0]).sqrt()
        stats.append((mu, rms))
    (mx, rx), (my, ry) = stats
    s = ry / rx.clamp(min=torch.finfo(X.dtype).tiny)
    R = torch.eye(3, dtype=X.dtype, device=X.device).expand(X.shape[0], 3, 3).contiguous()
    return SimilarityTransform(R, my - s[:, None] * mx, s)


def align(
    pred: torch.Tensor,
    gt: torch.Tensor,
    method: AlignmentName = "none",
    pred_lengths: torch.Tensor | None = None,
    gt_lengths: torch.Tensor | None = None,
    *,
    max_iterations: int = 30,
    relative_rmse_thr: float = 1e-6,
    rotations: torch.Tensor | str = "cube24",
    bbox_target: Literal["gt", "unit_cube"] = "gt",
) -> Alignment:
    """Align each predicted cloud `(B, N, 3)` to its GT `(B, M, 3)` with `method` (see `ALIGNMENTS`).

    ICP options: `max_iterations`, `relative_rmse_thr`; rotation search: `rotations` (`(K, 3, 3)` or a
    `rotation_grid` name); bbox: `bbox_target`. Returns the aligned prediction and the transform.

    Args:
        pred: `(B, N, 3)` float padded predicted points.
        gt: `(B, M, 3)` float padded ground-truth points, same dtype.
        method: ``"none"`` (default), ``"bbox"``, ``"icp"``, ``"scale_icp"`` or ``"rotation_search_icp"``
            (module docstring).
        pred_lengths: `(B,)` integer number of valid predicted points, or None (all `N`).
        gt_lengths: `(B,)` integer number of valid GT points, or None (all `M`).
        max_iterations: ICP steps at most, >= 1 (ICP methods; default 30).
        relative_rmse_thr: ICP convergence threshold on the relative RMSE change (default 1e-6).
        rotations: start rotations of ``"rotation_search_icp"`` (rigid): `(K, 3, 3)` or a `rotation_grid`
            name (default ``"cube24"``).
        bbox_target: ``"gt"`` (default) or ``"unit_cube"``, for ``"bbox"``.

    Returns:
        `Alignment(points, transform, method, converged, rmse)`: the `(B, N, 3)` aligned prediction (`pred`
        itself for ``"none"``; detached for the ICP methods), the `SimilarityTransform` applied (R
        `(B, 3, 3)`, T `(B, 3)`, s `(B,)`), the method's name, and for the ICP methods `(B,)` bool
        converged and `(B,)` rmse (None otherwise).

    Raises:
        ValueError: if `method` is unknown, the clouds are not `(B, N, 3)` and `(B, M, 3)` of one floating
            dtype, or on the chosen method's errors (`bbox_alignment`, `iterative_closest_point`,
            `rotation_search_icp`).
    """
    _check_pair(pred, gt)
    if method == "none":
        return Alignment(pred, SimilarityTransform.identity(pred.shape[0], pred.dtype, pred.device), method)
    if method == "bbox":
        tr = bbox_alignment(pred, gt, bbox_target, pred_lengths, gt_lengths)
        return Alignment(apply_similarity_transform(pred, tr), tr, method)
    if method in ("icp", "scale_icp"):
        init = _moment_init(pred, gt, pred_lengths, gt_lengths) if method == "scale_icp" else None
        sol = iterative_closest_point(
            pred, gt, init, max_iterations, relative_rmse_thr, method == "scale_icp", pred_lengths, gt_lengths
        )
        return Alignment(sol.Xt, sol.RTs, method, sol.converged, sol.rmse)
    if method == "rotation_search_icp":
        sol, _ = rotation_search_icp(
            pred, gt, rotations, max_iterations, relative_rmse_thr, False, pred_lengths, gt_lengths
        )
        return Alignment(sol.Xt, sol.RTs, method, sol.converged, sol.rmse)
    raise ValueError(f"unknown alignment {method!r}; expected one of {', '.join(ALIGNMENTS)}")
