"""Lambertian + ambient shading with directional and point lights, and silhouettes.

Colour = albedo * (ambient + sum over lights of colour * max(0, n . l)), with `l` the unit vector from the
surface towards the light (pytorch3d `DirectionalLights`/`PointLights` diffuse term without specular; point
lights have no distance falloff, as pytorch3d). All vectors in world coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class DirectionalLight:
    """Light from `direction` (pointing from the scene towards the light): `(3,)` or broadcastable to the
    pixel grid, e.g. `(N, 1, 1, 3)` for one direction per image."""

    direction: torch.Tensor | Sequence[float] = (0.0, 1.0, 0.0)
    color: torch.Tensor | Sequence[float] = (0.5, 0.5, 0.5)


@dataclass
class PointLight:
    """Light at `location` (world), `(3,)` or broadcastable to the pixel grid."""

    location: torch.Tensor | Sequence[float] = (0.0, 1.0, 0.0)
    color: torch.Tensor | Sequence[float] = (0.5, 0.5, 0.5)


Light = DirectionalLight | PointLight


def lambertian_shading(
    albedo: torch.Tensor,
    normals: torch.Tensor,
    points: torch.Tensor | None,
    lights: Sequence[Light],
    ambient: torch.Tensor | Sequence[float] = (0.5, 0.5, 0.5),
    view_dirs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Shade `(..., 3)` albedo with `(..., 3)` normals (normalised here) at `(..., 3)` world points.

    `points` is needed only for point lights. With `view_dirs` `(..., 3)` (from the camera towards the
    surface), normals facing away from the camera are flipped first (two-sided lighting, so inconsistently
    wound or open meshes are lit from the side that is seen). Differentiable.
    """
    if albedo.shape[-1] != 3 or normals.shape[-1] != 3:
        raise ValueError(f"albedo and normals must end in 3, got {tuple(albedo.shape)}, {tuple(normals.shape)}")
    kw = dict(dtype=albedo.dtype, device=albedo.device)
    n = torch.nn.functional.normalize(normals, dim=-1, eps=1e-8)
    if view_dirs is not None:
        n = torch.where(((n * view_dirs).sum(-1, keepdim=True) > 0), -n, n)
    light = torch.as_tensor(ambient, **kw).expand_as(albedo).clone()
    for lt in lights:
        if isinstance(lt, DirectionalLight):
            l = torch.nn.functional.normalize(torch.as_tensor(lt.direction, **kw), dim=-1, eps=1e-8)
        elif isinstance(lt, PointLight):
            if points is None:
                raise ValueError("point lights need the surface points")
            l = torch.nn.functional.normalize(torch.as_tensor(lt.location, **kw) - points, dim=-1, eps=1e-8)
        else:
            raise ValueError(f"unknown light type {type(lt).__name__}")
        cos = (n * l).sum(-1, keepdim=True).clamp(min=0.0)
        light = light + torch.as_tensor(lt.color, **kw) * cos
    return albedo * light


def silhouette(pix_to_face: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`(N, H, W)` mask, 1 where a face is visible, 0 elsewhere (hard silhouette)."""
    return (pix_to_face >= 0).to(dtype)


def composite(rgb: torch.Tensor, mask: torch.Tensor, background: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """`(..., 3)` colours over a `background` colour where `(...)` mask is 0."""
    bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
    m = mask[..., None].to(rgb.dtype)
    return rgb * m + bg * (1 - m)
