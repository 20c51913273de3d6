"""Triangle areas and unit normals (pytorch3d `mesh_face_areas_normals`)."""

from __future__ import annotations

import torch

__all__ = ["face_areas_normals"]


def face_areas_normals(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Areas `(F,)` and unit normals `(F, 3)` of triangles `faces` `(F, 3)` int64 over `verts` `(V, 3)`.

    normal = (v1 - v0) x (v2 - v0) / max(|.|, 1e-6), area = |(v1 - v0) x (v2 - v0)| / 2 (in squared input
    units), with pytorch3d's arithmetic and eps, so losses built on them match pytorch3d to float rounding.
    A triangle of area below 5e-7 gets a normal shorter than 1 (pytorch3d's behaviour). Differentiable.
    """
    if verts.dim() != 2 or verts.shape[1] != 3:
        raise ValueError(f"verts must be (V, 3), got {tuple(verts.shape)}")
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    n = torch.cross(v1 - v0, v2 - v0, dim=1)
    norm = n.norm(dim=1)
    return norm / 2.0, n / norm.clamp(min=1e-6)[:, None]
