"""Differentiable attribute interpolation over rasterised fragments (pytorch3d `interpolate_face_attributes`,
nvdiffrast `interpolate` and `texture` semantics, one face per pixel).

The rasteriser gives the visible face per pixel without gradient; `screen_barycentrics` recomputes that
face's perspective-correct barycentrics at the pixel centre from its (differentiable) screen-space
vertices, so colours, normals and UVs carry gradients to the attributes and to the vertex positions
inside triangles. Silhouette edges carry none (as nvdiffrast without antialiasing).
"""

from __future__ import annotations

import torch

from ..ops.texture_lookup import sample_uv
from ..structures.meshes import Meshes
from ..structures.textures import TexturesUV, TexturesVertex


def interpolate_face_attributes(
    pix_to_face: torch.Tensor, bary_coords: torch.Tensor, face_attributes: torch.Tensor
) -> torch.Tensor:
    """Barycentric blend of per-face-vertex attributes at every pixel.

    Args:
        pix_to_face: `(N, H, W)` int64 face index into `face_attributes`, -1 for background.
        bary_coords: `(N, H, W, 3)` weights of the face's three vertices.
        face_attributes: `(F, 3, D)` attribute of each face's three vertices.

    Returns:
        `(N, H, W, D)`, zero on background. Differentiable w.r.t. `bary_coords` and `face_attributes`.
    """
    if face_attributes.dim() != 3 or face_attributes.shape[1] != 3:
        raise ValueError(f"face_attributes must be (F, 3, D), got {tuple(face_attributes.shape)}")
    if bary_coords.shape != (*pix_to_face.shape, 3):
        raise ValueError(f"bary_coords {tuple(bary_coords.shape)} must be pix_to_face's shape + (3,)")
    mask = pix_to_face >= 0
    idx = pix_to_face[mask]
    if idx.numel() and int(idx.max()) >= face_attributes.shape[0]:
        raise ValueError(f"pix_to_face indexes face {int(idx.max())} of {face_attributes.shape[0]}")
    vals = (face_attributes[idx] * bary_coords[mask][:, :, None].to(face_attributes.dtype)).sum(1)
    out = face_attributes.new_zeros((*pix_to_face.shape, face_attributes.shape[2]))
    out = out.index_put((mask,), vals)
    return out


def screen_barycentrics(
    pix_to_face: torch.Tensor, face_verts_screen: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Perspective-correct barycentrics and depth at pixel centres, recomputed differentiably.

    Args:
        pix_to_face: `(N, H, W)` int64 index into `face_verts_screen`, -1 for background.
        face_verts_screen: `(F, 3, 3)` screen-space vertices (x, y pixels, z depth) of each face, in the
            rasteriser's conventions (pixel (r, c) centred at (c + 0.5, r + 0.5)).

    Returns:
        bary `(N, H, W, 3)` (-1 on background) and depth `(N, H, W)` (-1 on background), both differentiable
        w.r.t. `face_verts_screen`; equal to the rasteriser's values up to rounding.
    """
    N, H, W = pix_to_face.shape
    mask = pix_to_face >= 0
    fv = face_verts_screen[pix_to_face[mask]]  # (M, 3, 3)
    nz = mask.nonzero()
    px = nz[:, 2].to(fv.dtype) + 0.5
    py = nz[:, 1].to(fv.dtype) + 0.5
    x, y, z = fv.unbind(-1)
    x1, y1, x2, y2 = x.roll(-1, 1), y.roll(-1, 1), x.roll(-2, 1), y.roll(-2, 1)
    # Edge function of the edge opposite vertex k at the pixel centre; 1 / z is affine in screen space.
    e = (x2 - x1) * (py[:, None] - y1) - (y2 - y1) * (px[:, None] - x1)
    l = e / z
    den = l.sum(1, keepdim=True)
    bary = fv.new_full((N, H, W, 3), -1.0).index_put((mask,), l / den)
    depth = fv.new_full((N, H, W), -1.0).index_put((mask,), e.sum(1) / den[:, 0])
    return bary, depth


def sample_textures(
    meshes: Meshes, pix_to_mesh_face: torch.Tensor, bary_coords: torch.Tensor, num_views: int
) -> torch.Tensor:
    """Colours of `meshes.textures` at every pixel of `N = B * num_views` images (image n shows mesh
    n // num_views; `pix_to_mesh_face` indexes `meshes.faces_packed()`).

    `TexturesVertex`: interpolated vertex features. `TexturesUV`: interpolated UVs (origin bottom-left),
    wrapped into [0, 1) (glTF's default repeat), then bilinear lookup with texel centres at (i + 0.5) / W
    (`grid_sample(align_corners=False)`, as OpenGL/nvdiffrast); lookups do not wrap across the border.
    Returns `(N, H, W, C)`, zero on background; differentiable w.r.t. features, maps, UVs and barycentrics.
    """
    tex = meshes.textures
    if tex is None:
        raise ValueError("meshes have no textures; pass TexturesVertex or TexturesUV to Meshes")
    faces = meshes.faces_packed()
    if isinstance(tex, TexturesVertex):
        for i, (f, v) in enumerate(zip(tex.verts_features, meshes.verts_list())):
            if f.dim() != 2 or f.shape[0] != v.shape[0]:
                raise ValueError(f"TexturesVertex mesh {i}: features {tuple(f.shape)} for {v.shape[0]} vertices")
        feats = torch.cat(tex.verts_features, 0)
        return interpolate_face_attributes(pix_to_mesh_face, bary_coords, feats[faces])
    if not isinstance(tex, TexturesUV):
        raise ValueError(f"unsupported textures type {type(tex).__name__}")
    uv_counts = [v.shape[0] for v in tex.verts_uvs]
    uv_first = torch.tensor([0] + uv_counts[:-1], device=faces.device).cumsum(0)
    faces_uvs = torch.cat([f.to(faces.device) + uv_first[i] for i, f in enumerate(tex.faces_uvs)], 0)
    if faces_uvs.shape[0] != faces.shape[0]:
        raise ValueError(f"TexturesUV has {faces_uvs.shape[0]} UV faces for {faces.shape[0]} mesh faces")
    verts_uvs = torch.cat(list(tex.verts_uvs), 0)
    uv = interpolate_face_attributes(pix_to_mesh_face, bary_coords, verts_uvs[faces_uvs])  # (N, H, W, 2)
    colours = torch.cat([sample_uv(m, uv[b * num_views : (b + 1) * num_views]) for b, m in enumerate(tex.maps)], 0)
    return colours * (pix_to_mesh_face >= 0)[..., None].to(colours.dtype)
