"""Layout metrics for predictions that carry a pose: 3D box IoU, rotation error, ADD-S.

A pose is what SAM 3D Objects outputs per object: a rotation quaternion (w, x, y, z), a translation and a
scale, mapping object-frame points x to the scene as  s * R(q) x + t  (column-vector convention; R from
`transforms.quaternion_to_matrix`, as pytorch3d's). The scale is uniform `(...,)` or per axis `(..., 3)`.

Boxes are `(..., 8, 3)` corner tensors in pytorch3d's `box3d_overlap` order: corners 0-3 one face
(0,0,0), (1,0,0), (1,1,0), (0,1,0) of the unit cube, corners 4-7 the same with z=1.
"""

from __future__ import annotations

import numpy as np
import torch

from ..ops.knn import knn_points
from ..structures.utils import lengths_mask
from ..transforms import quaternion_to_matrix

# pytorch3d's unit-box corner order, its 6 quad faces and 12 edges
_UNIT_CORNERS = torch.tensor(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=torch.float64
)
_FACES = np.array([[0, 1, 2, 3], [3, 2, 6, 7], [0, 1, 5, 4], [0, 3, 7, 4], [1, 2, 6, 5], [4, 5, 6, 7]])
_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]])


def transform_points(points: torch.Tensor, quaternion: torch.Tensor, translation: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """`s * R(q) x + t` for points `(B, N, 3)` with quaternion `(B, 4)` and translation `(B, 3)`.

    scale: uniform, a float or `()` or `(B,)`; or per object-frame axis `(B, 3)` (applied before the
    rotation). A per-axis scale of one object must be `(1, 3)`: `(3,)` is refused, as it reads as three
    uniform scales. Raises `ValueError` for any other shape.

    Args:
        points: `(B, N, 3)` float object-frame points.
        quaternion: `(B, 4)` rotation quaternions (w, x, y, z); non-unit ones are normalised implicitly
            (`transforms.quaternion_to_matrix`, column-vector convention).
        translation: `(B, 3)` scene-frame translations.
        scale: a float, a `()` or `(B,)` tensor (uniform), or a `(B, 3)` tensor (per object-frame axis).

    Returns:
        `(B, N, 3)` scene-frame points in `points`' dtype. Differentiable.

    Raises:
        ValueError: if `scale` is not `()`, `(B,)` or `(B, 3)`.
    """
    R = quaternion_to_matrix(quaternion.to(points.dtype))
    s = torch.as_tensor(scale, dtype=points.dtype, device=points.device)
    B = points.shape[0]
    if s.shape not in ((), (B,), (B, 3)):
        raise ValueError(
            f"scale has shape {tuple(s.shape)} for a batch of B = {B} poses; expected (), (B,) or (B, 3) "
            "(a per-axis scale of one object is (1, 3))"
        )
    s = s[..., None, None] if s.dim() <= 1 else s[..., None, :]  # uniform (B,) or per axis (B, 3), object frame
    return torch.einsum("bij,bnj->bni", R, points * s) + translation.to(points.dtype)[:, None, :]


def pose_box_corners(
    quaternion: torch.Tensor,
    translation: torch.Tensor,
    scale: torch.Tensor | float,
    box: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scene-frame corners `(B, 8, 3)` of the object-frame box `box (2, 3)` or `(B, 2, 3)` (min, max)
    under a pose.

    box defaults to the cube [-0.5, 0.5]^3 (SAM 3D Objects' normalised object frame).

    Args:
        quaternion: `(B, 4)` rotation quaternions (w, x, y, z).
        translation: `(B, 3)` scene-frame translations.
        scale: a float, a `()` or `(B,)` tensor (uniform), or a `(B, 3)` tensor (per object-frame axis), as
            in `transform_points`.
        box: `(2, 3)` or `(B, 2, 3)` axis-aligned object-frame box as (min corner, max corner), or None (the
            cube [-0.5, 0.5]^3).

    Returns:
        `(B, 8, 3)` corners in pytorch3d's `box3d_overlap` order (module docstring), in `translation`'s
        dtype (float32 for an integer translation).

    Raises:
        ValueError: if `scale` has a shape other than `()`, `(B,)` or `(B, 3)`.
    """
    B = quaternion.shape[0]
    dt = translation.dtype if translation.is_floating_point() else torch.float32
    if box is None:
        box = torch.tensor([[-0.5] * 3, [0.5] * 3], dtype=dt, device=translation.device)
    box = box.to(dt).expand(B, 2, 3)
    unit = _UNIT_CORNERS.to(dtype=dt, device=translation.device)
    corners = box[:, None, 0] + unit[None] * (box[:, None, 1] - box[:, None, 0])
    return transform_points(corners, quaternion, translation, scale)


def _box_volume(c: np.ndarray) -> np.ndarray:
    return np.abs(np.einsum("...i,...i->...", c[..., 1, :] - c[..., 0, :], np.cross(c[..., 3, :] - c[..., 0, :], c[..., 4, :] - c[..., 0, :])))


def _planes(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inward unit normals `(..., 6, 3)` and a point `(..., 6, 3)` of each face of boxes `(..., 8, 3)`."""
    q = c[..., _FACES[:, 0], :]
    n = np.cross(c[..., _FACES[:, 1], :] - q, c[..., _FACES[:, 3], :] - q)
    n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    centre = c.mean(-2, keepdims=True)
    flip = np.einsum("...i,...i->...", n, centre - q) < 0
    return np.where(flip[..., None], -n, n), q


def _inside(p: np.ndarray, n: np.ndarray, q: np.ndarray, tol: float) -> np.ndarray:
    """Points `(N, M, K, 3)` inside boxes given by planes `(N, M, 6, 3)` -> `(N, M, K)` bool."""
    d = np.einsum("nmkj,nmfj->nmkf", p, n) - np.einsum("nmfj,nmfj->nmf", q, n)[:, :, None, :]
    return (d >= -tol).all(-1)


def _edge_plane_points(a: np.ndarray, b: np.ndarray, n: np.ndarray, q: np.ndarray, tol: float):
    """Crossings of box edges a->b `(N, M, 12, 3)` with the other box's face planes `(N, M, 6, 3)`, kept when inside that box."""
    u = b - a
    num = np.einsum("nmfj,nmfj->nmf", q, n)[:, :, None, :] - np.einsum("nmej,nmfj->nmef", a, n)
    den = np.einsum("nmej,nmfj->nmef", u, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = num / den
    ok = (np.abs(den) > 1e-300) & (t >= -1e-12) & (t <= 1 + 1e-12)
    t = np.where(ok, np.clip(t, 0.0, 1.0), 0.0)
    p = a[:, :, :, None, :] + t[..., None] * u[:, :, :, None, :]  # (N, M, 12, 6, 3)
    N, M = p.shape[:2]
    p = p.reshape(N, M, 72, 3)
    keep = ok.reshape(N, M, 72) & _inside(p, n, q, tol)
    return p, keep


def box3d_overlap(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact intersection volume and IoU of oriented 3D boxes, as pytorch3d's `box3d_overlap`.

    The intersection of two convex polyhedra is the convex hull of: the corners of each box inside the
    other and the crossings of each box's edges with the other's faces. Candidates are found for all pairs
    at once in float64; each pair's hull volume is then computed with Qhull (scipy), on the CPU.

    Args:
        boxes1: `(N, 8, 3)` float box corners (order in the module docstring).
        boxes2: `(M, 8, 3)` float box corners.

    Returns:
        `(vol, iou)`: `(N, M)` intersection volumes (cubed input units) and `(N, M)` IoUs in [0, 1], in
        boxes1's dtype, on its device. Not differentiable.

    Raises:
        ValueError: if a batch is not `(*, 8, 3)` or a box has zero volume.
    """
    from scipy.spatial import ConvexHull
    from scipy.spatial import QhullError

    for name, b in (("boxes1", boxes1), ("boxes2", boxes2)):
        if b.dim() != 3 or b.shape[1:] != (8, 3):
            raise ValueError(f"{name} must be (N, 8, 3) box corners, got {tuple(b.shape)}")
    c1 = boxes1.detach().cpu().to(torch.float64).numpy()
    c2 = boxes2.detach().cpu().to(torch.float64).numpy()
    N, M = c1.shape[0], c2.shape[0]
    v1, v2 = _box_volume(c1), _box_volume(c2)
    if (v1 <= 0).any() or (v2 <= 0).any():
        raise ValueError("box3d_overlap: boxes must have positive volume")
    scale = max(np.abs(c1).max(initial=0.0), np.abs(c2).max(initial=0.0), 1e-12)
    tol = 1e-9 * scale
    n1, q1 = _planes(c1)
    n2, q2 = _planes(c2)
    A = np.broadcast_to(c1[:, None], (N, M, 8, 3))
    Bc = np.broadcast_to(c2[None], (N, M, 8, 3))
    N1, Q1 = np.broadcast_to(n1[:, None], (N, M, 6, 3)), np.broadcast_to(q1[:, None], (N, M, 6, 3))
    N2, Q2 = np.broadcast_to(n2[None], (N, M, 6, 3)), np.broadcast_to(q2[None], (N, M, 6, 3))
    in12 = _inside(A, N2, Q2, tol)
    in21 = _inside(Bc, N1, Q1, tol)
    e1p, e1k = _edge_plane_points(A[:, :, _EDGES[:, 0]], A[:, :, _EDGES[:, 1]], N2, Q2, tol)
    e2p, e2k = _edge_plane_points(Bc[:, :, _EDGES[:, 0]], Bc[:, :, _EDGES[:, 1]], N1, Q1, tol)
    pts = np.concatenate([A, Bc, e1p, e2p], axis=2)
    keep = np.concatenate([in12, in21, e1k, e2k], axis=2)
    vol = np.zeros((N, M))
    for i in range(N):
        for j in range(M):
            p = pts[i, j][keep[i, j]]
            if p.shape[0] < 4:
                continue
            try:
                vol[i, j] = ConvexHull(p).volume
            except QhullError:  # flat or degenerate intersection (touching boxes): zero volume
                vol[i, j] = 0.0
    vol = np.minimum(vol, np.minimum(v1[:, None], v2[None, :]))
    iou = vol / (v1[:, None] + v2[None, :] - vol)
    out = lambda a: torch.as_tensor(a, dtype=boxes1.dtype, device=boxes1.device)  # noqa: E731
    return out(vol), out(iou)


def rotation_error_deg(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Geodesic angle in degrees `(...,)` between rotations given as quaternions `(..., 4)` (w, x, y, z) or
    matrices `(..., 3, 3)`.

    Quaternions: 4 * atan2(|a - b|, |a + b|) for unit a, b with b's sign chosen so that a . b >= 0 (q and -q
    are the same rotation). Matrices: atan2(|vee(R - R^T)| / 2, (tr R - 1) / 2) with R = R1^T R2. Both forms
    stay accurate near 0 and 180 degrees, unlike acos.

    Args:
        r1: `(..., 4)` float quaternions (w, x, y, z; normalised here, so any non-zero length) or
            `(..., 3, 3)` float rotation matrices.
        r2: rotations of the same shape and form as `r1`.

    Returns:
        `(...)` angles in degrees in [0, 180], in the inputs' dtype.

    Raises:
        ValueError: if the shapes differ or are neither `(..., 4)` nor `(..., 3, 3)`.
    """
    if r1.shape != r2.shape:
        raise ValueError(f"rotation_error_deg: shapes differ, {tuple(r1.shape)} and {tuple(r2.shape)}")
    if r1.shape[-1] == 4:
        a = r1 / r1.norm(dim=-1, keepdim=True)
        b = r2 / r2.norm(dim=-1, keepdim=True)
        b = torch.where(((a * b).sum(-1) < 0)[..., None], -b, b)
        ang = 4.0 * torch.atan2((a - b).norm(dim=-1), (a + b).norm(dim=-1))
    elif r1.shape[-2:] == (3, 3):
        R = r1.transpose(-1, -2) @ r2
        vee = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
        tr = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2]
        ang = torch.atan2(vee.norm(dim=-1) / 2.0, (tr - 1.0) / 2.0)
    else:
        raise ValueError(f"rotations must be (..., 4) quaternions or (..., 3, 3) matrices, got {tuple(r1.shape)}")
    return torch.rad2deg(ang)


def add_s(pred_points: torch.Tensor, gt_points: torch.Tensor, pred_lengths: torch.Tensor | None = None, gt_lengths: torch.Tensor | None = None) -> torch.Tensor:
    """ADD-S `(B,)`: mean over GT points `(B, M, 3)` of the Euclidean distance to the closest predicted point
    `(B, N, 3)`.

    The symmetric-object pose error of PoseCNN / Hinterstoisser et al., in the points' units. Padded
    batches take `(B,)` int64 lengths.

    Args:
        pred_points: `(B, N, 3)` float predicted (posed) model points.
        gt_points: `(B, M, 3)` float ground-truth (posed) model points, same dtype.
        pred_lengths: `(B,)` int64 number of valid predicted points per element, or None (all `N`).
        gt_lengths: `(B,)` int64 number of valid GT points per element, or None (all `M`).

    Returns:
        `(B,)` mean Euclidean (not squared) distance, in the points' units and dtype; 0 for an element whose
        `gt_lengths` is 0.

    Raises:
        ValueError: if the inputs are not 3-D with one batch size, or on bad lengths or NaN/inf points
            (`knn_points`).
    """
    if pred_points.dim() != 3 or gt_points.dim() != 3 or pred_points.shape[0] != gt_points.shape[0]:
        raise ValueError(f"add_s needs (B, N, 3) and (B, M, 3), got {tuple(pred_points.shape)} and {tuple(gt_points.shape)}")
    nn = knn_points(gt_points, pred_points, lengths1=gt_lengths, lengths2=pred_lengths, K=1)
    d = nn.dists[..., 0].clamp(min=0).sqrt()
    if gt_lengths is None:
        return d.mean(1)
    mask = lengths_mask(gt_lengths, d.shape[1])
    return (d * mask).sum(1) / gt_lengths.clamp(min=1).to(d.dtype)


def points_diameter(points: torch.Tensor, lengths: torch.Tensor | None = None, chunk: int = 4096) -> torch.Tensor:
    """Largest pairwise Euclidean distance `(B,)` of each cloud `(B, N, 3)` (exact, brute force in row chunks).

    Args:
        points: `(B, N, 3)` float points.
        lengths: `(B,)` integer number of valid points per cloud, or None (all `N`).
        chunk: rows of the distance matrix computed at once (memory `chunk * N` per cloud; default 4096).

    Returns:
        `(B,)` diameters in the points' units and dtype; 0 for a cloud with fewer than two points.
    """
    out = []
    for b in range(points.shape[0]):
        p = points[b] if lengths is None else points[b, : int(lengths[b])]
        best = p.new_zeros(())
        for s in range(0, p.shape[0], chunk):
            best = torch.maximum(best, torch.cdist(p[s : s + chunk][None], p[None])[0].max())
        out.append(best)
    return torch.stack(out)


def pose_add_s(
    model_points: torch.Tensor,
    pred_pose: tuple[torch.Tensor, torch.Tensor, torch.Tensor | float],
    gt_pose: tuple[torch.Tensor, torch.Tensor, torch.Tensor | float],
    threshold: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ADD-S of a predicted pose against the GT pose over the GT model's points, normalised by the GT diameter.

    Args:
        model_points: `(B, N, 3)` float object-frame points of the GT model, or `(N, 3)` shared by the batch.
        pred_pose: predicted `(quaternion (B, 4) wxyz, translation (B, 3), scale)`, the scale a float, `()`,
            `(B,)` or `(B, 3)` as in `transform_points`.
        gt_pose: ground-truth pose, same form.
        threshold: fraction of the diameter under which a pose counts as correct (default 0.1: ADD-S@0.1).

    Returns:
        `(add_s, normalised, correct)`: `(B,)` ADD-S in scene units, `(B,)` ADD-S divided by the diameter
        of the GT-posed model (`points_diameter`), and `(B,)` bool `normalised < threshold`; the accuracy
        is `correct.float().mean()`.

    Raises:
        ValueError: if a pose's scale has a shape other than `()`, `(B,)` or `(B, 3)`.
    """
    B = pred_pose[0].shape[0]
    pts = model_points if model_points.dim() == 3 else model_points[None].expand(B, -1, -1)
    gt = transform_points(pts, *gt_pose)
    pred = transform_points(pts, *pred_pose)
    err = add_s(pred, gt)
    norm = err / points_diameter(gt).clamp(min=torch.finfo(gt.dtype).tiny)
    return err, norm, norm < threshold
