"""Scene lighting for the built-in benchmark: a hemisphere environment, point and directional lights with a
Blinn-Phong highlight, and hard shadows from shadow maps.

`render.shading` has the Lambertian term of pytorch3d's lights; the benchmark also needs specular
(metallic-looking) highlights, an environment term and per-light visibility, so its shader lives here and
reuses the light types of `render.shading`. Colour of a surface point with unit normal n (facing the
camera), albedo a, unit direction to the viewer v:

    a * kd * (sky * (1 + n_y) / 2 + ground * (1 - n_y) / 2)
      + sum over lights of vis_l * c_l * (a * kd * max(0, n . l) + ks * tint * max(0, n . h)^shininess)

with h = normalise(l + v), tint = a for metals and white otherwise, vis_l in [0, 1] from `shadow_visibility`
(1 - shadow strength where the light is blocked). Point lights have no distance falloff (as pytorch3d).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..ops.rasterize import rasterize_meshes
from ..render.cameras import PerspectiveCameras, look_at_extrinsics
from ..render.shading import DirectionalLight, Light, PointLight
from ..structures.meshes import Meshes

__all__ = ["LightRig", "shade_points", "shadow_visibility", "light_direction"]


@dataclass
class LightRig:
    """Environment colours (`sky` from above, `ground` from below, RGB) and a list of point/directional
    lights (`render.shading` types, colours RGB, may exceed 1 for harsh light); `shadow_strength[i]` in
    [0, 1] darkens light i where it is blocked (0: no shadows)."""

    sky: tuple[float, float, float] = (0.45, 0.45, 0.45)
    ground: tuple[float, float, float] = (0.25, 0.25, 0.25)
    lights: list[Light] = field(default_factory=list)
    shadow_strength: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = []
        for lt, s in zip(self.lights, self.shadow_strength or [0.0] * len(self.lights)):
            if isinstance(lt, PointLight):
                out.append({"type": "point", "location": [float(x) for x in lt.location],
                            "color": [float(x) for x in lt.color], "shadow": float(s)})
            else:
                out.append({"type": "directional", "direction": [float(x) for x in lt.direction],
                            "color": [float(x) for x in lt.color], "shadow": float(s)})
        return {"sky": [float(x) for x in self.sky], "ground": [float(x) for x in self.ground], "lights": out}


def light_direction(light: Light, points: torch.Tensor) -> torch.Tensor:
    """`(P, 3)` unit vectors from `points` `(P, 3)` towards `light`."""
    kw = dict(dtype=points.dtype, device=points.device)
    if isinstance(light, DirectionalLight):
        d = torch.as_tensor(light.direction, **kw).expand_as(points)
    elif isinstance(light, PointLight):
        d = torch.as_tensor(light.location, **kw) - points
    else:
        raise ValueError(f"unknown light type {type(light).__name__}")
    return torch.nn.functional.normalize(d, dim=-1, eps=1e-8)


def shade_points(
    albedo: torch.Tensor,
    normals: torch.Tensor,
    points: torch.Tensor,
    view_dirs: torch.Tensor,
    material: torch.Tensor,
    rig: LightRig,
    visibility: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Shade `P` surface points (module docstring formula).

    Args:
        albedo, normals, points: `(P, 3)`; normals need not be unit or face the camera (flipped here).
        view_dirs: `(P, 3)` from the camera towards each point.
        material: `(P, 4)` columns diffuse weight, specular weight, shininess, metal (0/1).
        rig: the lights; visibility: one `(P,)` factor per light (default all 1).

    Returns:
        `(P, 3)` linear RGB (not clipped).
    """
    n = torch.nn.functional.normalize(normals, dim=-1, eps=1e-8)
    n = torch.where((n * view_dirs).sum(-1, keepdim=True) > 0, -n, n)
    v = -torch.nn.functional.normalize(view_dirs, dim=-1, eps=1e-8)
    kd, ks, shin, metal = (material[:, i : i + 1] for i in range(4))
    kw = dict(dtype=albedo.dtype, device=albedo.device)
    sky, ground = torch.as_tensor(rig.sky, **kw), torch.as_tensor(rig.ground, **kw)
    up = n[:, 1:2]
    out = albedo * kd * (sky * (1 + up) / 2 + ground * (1 - up) / 2)
    tint = metal * albedo + (1 - metal)
    for i, lt in enumerate(rig.lights):
        l = light_direction(lt, points)
        c = torch.as_tensor(lt.color, **kw)
        ndl = (n * l).sum(-1, keepdim=True)
        h = torch.nn.functional.normalize(l + v, dim=-1, eps=1e-8)
        spec = (n * h).sum(-1, keepdim=True).clamp(min=0) ** shin * (ndl > 0)
        term = c * (albedo * kd * ndl.clamp(min=0) + ks * tint * spec)
        if visibility is not None:
            term = term * visibility[i][:, None]
        out = out + term
    return out


def shadow_visibility(
    points: torch.Tensor,
    normals: torch.Tensor,
    light: Light,
    scene: Meshes,
    centre: torch.Tensor,
    radius: float,
    resolution: int = 256,
    strength: float = 1.0,
) -> torch.Tensor:
    """`(P,)` visibility of `light` at `points` `(P, 3)`: `1 - strength` where the scene blocks it, else 1.

    A shadow map: the scene is rasterised from the light (a point light's location, or far along a
    directional light's direction, looking at `centre` with a field of view that holds the sphere of
    `radius` around it); a point is shadowed when it lies behind the map's depth by more than a small
    bias. Points are pushed along their (unit, camera-facing) `normals` first, which avoids self-shadowing
    acne on lit faces.
    """
    kw = dict(dtype=points.dtype, device=points.device)
    if isinstance(light, PointLight):
        eye = torch.as_tensor(light.location, **kw)
    else:
        d = torch.nn.functional.normalize(torch.as_tensor(light.direction, **kw), dim=0)
        eye = centre + d * (20.0 * radius)
    dist = float(torch.linalg.norm(eye - centre))
    if dist <= radius * 1.05:
        return torch.ones(points.shape[0], **kw)  # a light inside the scene: no meaningful map
    fov = math.degrees(2 * math.asin(min(radius / dist, 0.999)))
    R, T = look_at_extrinsics(eye[None], centre)
    cam = PerspectiveCameras.from_fov(fov, (resolution, resolution), R, T)
    frags = rasterize_meshes(scene, cam.project(scene.verts_packed()).to(torch.float32), (resolution, resolution))
    zbuf = frags.zbuf[0].to(points.dtype)
    p = points + 0.004 * torch.nn.functional.normalize(normals, dim=-1, eps=1e-8)
    proj = cam.project(p)[0]
    col = proj[:, 0].floor().long()
    row = proj[:, 1].floor().long()
    inside = (col >= 0) & (col < resolution) & (row >= 0) & (row < resolution)
    depth = torch.full_like(proj[:, 2], -1.0)
    depth[inside] = zbuf[row[inside], col[inside]]
    bias = 0.004 + 0.01 * proj[:, 2] * (radius / dist)
    blocked = inside & (depth > 0) & (proj[:, 2] > depth + bias)
    return 1.0 - strength * blocked.to(points.dtype)
