"""Which surface points of a mesh a camera sees: visible, hidden by the mesh itself, or hidden by something else.

`point_visibility` labels points sampled on a mesh's surface (`VISIBLE` 0, `SELF_HIDDEN` 1,
`OCCLUDER_HIDDEN` 2) for one pinhole camera in the OpenCV convention (`x_cam = R x + T`; x right, y down,
z forward; pixel `(r, c)` centred at `(c + 0.5, r + 0.5)`; `[u, v, 1] ~ K x_cam`), the convention of the
manifest's `camera` and of `render.cameras`.

A point is

- ``SELF_HIDDEN`` when it is back-facing (its normal points away from the camera, or is perpendicular to
  the ray), when it lies behind the mesh's own surface, or when it is outside the camera's view (behind the
  camera or projecting outside the image: the image does not show it, and a mask says nothing there);
- ``OCCLUDER_HIDDEN`` when it passes those tests but the visible mask of the object is 0 at its pixel
  (another object covers it);
- ``VISIBLE`` otherwise (always, for a point that passes the self tests, without a mask).

Depth test: the mesh is rasterised at the image size (`ops.rasterize`, pixel centres), and a point is behind
the surface when its camera depth z exceeds the depth buffer at its pixel by more than

    tol = (z / f) * (tolerance + min(tan(theta), max_slope))

with f = min(fx, fy), so `z / f` is the pixel footprint at the point's depth (the size of one pixel there),
and theta the angle between the point's viewing ray and the normal of the face the buffer holds at that pixel.
Why: the buffer holds the front surface's depth at the pixel centre, up to half a pixel diagonal (0.71 px)
from the point's own ray, and across that offset a face tilted by theta changes its depth by up to about
0.71 footprints x tan(theta); the slope term (taken whole, a margin over 0.71) keeps a point on a tilted face
from hiding behind that same face. `tolerance` (1 footprint by default) absorbs the rest: a neighbouring face
winning the pixel at a crease, float rounding. The slope is capped at `max_slope` (10, about 84 degrees) so
that a nearly edge-on front face does not let everything behind it through; a point on its own face tilted
beyond that may be called self-hidden (it is nearly edge-on). The price: a surface less than `tol` in front
of a point does not hide it (at 256 px with the object filling half the image, `tol` is about 1% of the
object's size for a face seen head-on). Labels converge to exact ray casting as the image grows: they differ
only within about a pixel of an occluding edge (tested against a float64 ray caster).

A pixel whose centre the mesh does not cover (the point lies on the mesh's own silhouette, in a pixel the mesh
only partly covers) has no depth: the point passes the depth test. For the same reason the mask test there
reads the 3x3 neighbourhood (a mask rendered like the depth buffer is 0 at such a pixel even when nothing
covers the object): such a point is visible when the mask is > 0 at its pixel or any of the 8 around it.
Elsewhere the mask is read at the point's pixel alone, so labels along an occluder's edge are exact to a pixel.

The back-face test needs outward normals (consistent, outward winding: `sample_points_from_meshes` returns the
`(v1 - v0) x (v2 - v0)` face normals); without normals only the depth test runs. Faces with a vertex closer
than `znear` to the camera plane are not rasterised (no clipping), as in `rasterize_meshes`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..structures.meshes import Meshes
from .rasterize import rasterize_meshes

__all__ = [
    "OCCLUDER_HIDDEN",
    "PointVisibility",
    "SELF_HIDDEN",
    "VISIBILITY_LABELS",
    "VISIBLE",
    "point_visibility",
    "project_points",
]

VISIBLE, SELF_HIDDEN, OCCLUDER_HIDDEN = 0, 1, 2
# Label names in label order: VISIBILITY_LABELS[label].
VISIBILITY_LABELS = ("visible", "self_hidden", "occluder_hidden")


class PointVisibility(NamedTuple):
    """Result of `point_visibility` for P points.

    labels: `(P,)` int64, `VISIBLE` (0), `SELF_HIDDEN` (1) or `OCCLUDER_HIDDEN` (2).
    in_image: `(P,)` bool, the point is in front of the camera (depth above `znear`) and projects inside the
        image; the others are `SELF_HIDDEN`.
    """

    labels: torch.Tensor
    in_image: torch.Tensor


def _camera(K, R, T, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    K, R, T = (torch.as_tensor(x, dtype=dtype, device=device) for x in (K, R, T))
    if K.shape != (3, 3) or R.shape != (3, 3) or T.reshape(-1).shape != (3,):
        raise ValueError(f"camera must be K (3, 3), R (3, 3), T (3,); got {tuple(K.shape)}, {tuple(R.shape)}, "
                         f"{tuple(T.shape)}")
    if not (torch.isfinite(K).all() and torch.isfinite(R).all() and torch.isfinite(T).all()):
        raise ValueError("camera K, R, T hold NaN or inf")
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"camera focal lengths K[0][0], K[1][1] must be positive, got {K[0, 0].item()}, {K[1, 1].item()}")
    return K, R, T.reshape(3)


def project_points(points: torch.Tensor, K: torch.Tensor, R: torch.Tensor, T: torch.Tensor,
                   znear: float = 1e-4) -> torch.Tensor:
    """Points to pixel coordinates and camera depth (OpenCV convention, module docstring).

    Args:
        points: `(P, 3)` float points in the frame the camera maps (`x_cam = R x + T`).
        K: `(3, 3)` intrinsics (`[u, v, 1] ~ K x_cam`; skew `K[0][1]` allowed).
        R: `(3, 3)` rotation; T: `(3,)` translation.
        znear: depths are clamped to at least `znear` for the division, so u, v stay finite behind the camera.

    Returns:
        `(P, 3)` in the points' dtype: u (x in pixels, right), v (y in pixels, down; pixel `(r, c)` is
        centred at `(c + 0.5, r + 0.5)`) and the camera depth z (unclamped: <= 0 behind the camera).

    Raises:
        ValueError: `points` is not `(P, 3)` floating point, or the camera has bad shapes, NaN/inf or a focal
            length <= 0.
    """
    if points.dim() != 2 or points.shape[1] != 3 or not points.is_floating_point():
        raise ValueError(f"points must be (P, 3) floating point, got {tuple(points.shape)} {points.dtype}")
    K, R, T = _camera(K, R, T, points.dtype, points.device)
    cam = points @ R.T + T
    z = cam[:, 2]
    zs = z.clamp(min=znear)
    u = (K[0, 0] * cam[:, 0] + K[0, 1] * cam[:, 1]) / zs + K[0, 2]
    v = K[1, 1] * cam[:, 1] / zs + K[1, 2]
    return torch.stack([u, v, z], dim=1)


def point_visibility(
    points: torch.Tensor,
    verts: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    R: torch.Tensor,
    T: torch.Tensor,
    image_size: tuple[int, int],
    *,
    normals: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    tolerance: float = 1.0,
    max_slope: float = 10.0,
    znear: float = 1e-4,
    max_candidates: int | None = None,
) -> PointVisibility:
    """Label surface points of one mesh by what a camera sees of them (module docstring).

    Args:
        points: `(P, 3)` float points on the mesh's surface, in the mesh's frame (float32 by default; every
            computation runs in this dtype).
        verts: `(V, 3)` float mesh vertices, same frame; faces: `(F, 3)` int64 triangles.
        K: `(3, 3)` intrinsics in pixels; R: `(3, 3)` rotation and T: `(3,)` translation mapping the mesh's
            frame to OpenCV camera coordinates, `x_cam = R x + T`. Tensors or nested sequences.
        image_size: `(H, W)` in pixels; the depth buffer is rasterised at this size.
        normals: `(P, 3)` outward unit normals of the points, or None (no back-face test).
        mask: `(H, W)` visible mask of the object (> 0 is visible; bool, integer or float), or None (no
            occluder test: labels are `VISIBLE` or `SELF_HIDDEN` only).
        tolerance: the depth slack in pixel footprints added to the slope term (default 1.0; >= 0).
        max_slope: cap of tan(theta) in the slope term (default 10; >= 0).
        znear: points and faces closer to the camera plane than this (camera units) are not seen.
        max_candidates: passed to `rasterize_meshes` (memory bound of its chunks).

    Returns:
        `PointVisibility(labels (P,) int64, in_image (P,) bool)` on the points' device. No gradient.

    Raises:
        ValueError: bad shapes or dtypes, a camera with NaN/inf or a focal length <= 0, `image_size` not
            positive, a mask that is not `(H, W)`, or a negative `tolerance` / `max_slope`.
    """
    if points.dim() != 2 or points.shape[1] != 3 or not points.is_floating_point():
        raise ValueError(f"points must be (P, 3) floating point, got {tuple(points.shape)} {points.dtype}")
    if verts.dim() != 2 or verts.shape[1] != 3 or faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"verts must be (V, 3) and faces (F, 3), got {tuple(verts.shape)} and {tuple(faces.shape)}")
    if normals is not None and normals.shape != points.shape:
        raise ValueError(f"normals must be {tuple(points.shape)} like the points, got {tuple(normals.shape)}")
    H, W = (int(s) for s in image_size)
    if H <= 0 or W <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if mask is not None and tuple(mask.shape) != (H, W):
        raise ValueError(f"mask must be (H, W) = ({H}, {W}) like the image, got {tuple(mask.shape)}")
    if not (tolerance >= 0 and max_slope >= 0):
        raise ValueError(f"tolerance and max_slope must be >= 0, got {tolerance} and {max_slope}")
    dtype, device = points.dtype, points.device
    K, R, T = _camera(K, R, T, dtype, device)

    with torch.no_grad():
        points = points.detach()
        verts = verts.detach().to(device, dtype)
        faces = faces.to(device, torch.int64)
        cam_v = verts @ R.T + T
        screen = project_points(verts, K, R, T, znear)
        frags = rasterize_meshes(Meshes([verts], [faces]), screen[None], (H, W), znear=znear,
                                 max_candidates=max_candidates)
        zbuf, face_at = frags.zbuf[0].reshape(-1), frags.pix_to_mesh_face[0].reshape(-1)

        uvz = project_points(points, K, R, T, znear)
        u, v, z = uvz.unbind(1)
        in_image = (z > znear) & torch.isfinite(uvz).all(1) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        col = u.nan_to_num(0).floor().clamp(0, W - 1).long()
        row = v.nan_to_num(0).floor().clamp(0, H - 1).long()
        pix = row * W + col
        face = face_at[pix]
        covered = in_image & (face >= 0)

        # Slope of the front face at the pixel: the angle between its normal and the point's ray.
        e1 = cam_v[faces[:, 1]] - cam_v[faces[:, 0]]
        e2 = cam_v[faces[:, 2]] - cam_v[faces[:, 0]]
        fn = torch.nn.functional.normalize(torch.linalg.cross(e1, e2, dim=1), dim=1)
        cam_p = points @ R.T + T
        ray = torch.nn.functional.normalize(cam_p, dim=1)
        cos = (fn[face.clamp(min=0)] * ray).sum(1).abs()
        tan = torch.where(cos > 0, (1 - cos * cos).clamp(min=0).sqrt() / cos.clamp(min=1e-30),
                          torch.full_like(cos, max_slope)).clamp(max=max_slope)
        footprint = z.clamp(min=znear) / torch.minimum(K[0, 0], K[1, 1])
        behind = covered & (z > zbuf[pix] + footprint * (tolerance + tan))

        hidden = ~in_image | behind
        if normals is not None:
            # (x - C) . n = x_cam . (R n): >= 0 faces away from the camera (or is seen edge-on).
            hidden |= (cam_p * (normals.detach().to(device, dtype) @ R.T)).sum(1) >= 0
        labels = torch.where(hidden, SELF_HIDDEN, VISIBLE)
        if mask is not None:
            m = (mask.to(device) > 0).reshape(-1)
            seen = m[pix]
            # At the mesh's own silhouette the pixel centre is not the object's: read the 3x3 neighbourhood.
            edge = ((face < 0) & in_image).nonzero().squeeze(1)
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    r, c = (row[edge] + dr).clamp(0, H - 1), (col[edge] + dc).clamp(0, W - 1)
                    seen[edge] |= m[r * W + c]
            labels = torch.where(~hidden & ~seen, OCCLUDER_HIDDEN, labels)
    return PointVisibility(labels.to(torch.int64), in_image)
