"""Render a batch of meshes from V views in one call: RGB, mask and depth, differentiable inside triangles.

Default views (`default_views`): 8 cameras at azimuths 0, 45, ..., 315 degrees with elevation alternating
15 and 45 degrees (even views at 15), distance 2.8 and a 40 degree vertical field of view, looking at the
origin with y up. The default protocol normalises the GT's bounding box to the unit cube centred at the
origin (the default protocol), whose bounding sphere (radius sqrt(3)/2) subtends at most 36 of the 40
degrees from there, so a normalised object is never cut by the image border.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from ..ops.rasterize import Fragments, extended_face_index, rasterize_meshes
from ..structures.meshes import Meshes
from .cameras import PerspectiveCameras, orbit_cameras
from .interpolate import interpolate_face_attributes, sample_textures, screen_barycentrics
from .shading import DirectionalLight, Light, composite, lambertian_shading

DEFAULT_AZIMUTHS = tuple(45.0 * i for i in range(8))
DEFAULT_ELEVATIONS = tuple(15.0 if i % 2 == 0 else 45.0 for i in range(8))
DEFAULT_DISTANCE = 2.8
DEFAULT_FOV = 40.0


def default_views(
    image_size: tuple[int, int] = (256, 256),
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> PerspectiveCameras:
    """The 8 evaluation cameras described in the module docstring."""
    return orbit_cameras(DEFAULT_AZIMUTHS, DEFAULT_ELEVATIONS, DEFAULT_DISTANCE, image_size, DEFAULT_FOV,
                         dtype=dtype, device=device)


class RenderedViews(NamedTuple):
    """rgb `(B, V, H, W, 3)`, mask `(B, V, H, W)` float in {0, 1}, depth `(B, V, H, W)` view depth (0 off
    the object), and the rasteriser's `Fragments` over `B * V` images."""

    rgb: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor
    fragments: Fragments


def render_views(
    meshes: Meshes,
    cameras: PerspectiveCameras | None = None,
    image_size: tuple[int, int] | None = None,
    *,
    per_mesh_cameras: bool = False,
    lights: Sequence[Light] | None = None,
    ambient: Sequence[float] = (0.5, 0.5, 0.5),
    shade: bool = True,
    albedo: Sequence[float] = (0.7, 0.7, 0.7),
    background: Sequence[float] = (1.0, 1.0, 1.0),
    cull_backfaces: bool = False,
) -> RenderedViews:
    """Render each of the B meshes from V cameras.

    Args:
        meshes: B meshes; colours from `meshes.textures` (vertex or UV), else the constant `albedo`.
        cameras: V cameras seen by every mesh, or with `per_mesh_cameras` B * V cameras (camera b * V + v
            for view v of mesh b). Default `default_views(image_size)`.
        image_size: `(H, W)`; must match the cameras' when both are given.
        lights: world-space lights; default a headlight per view (directional, colour 0.5, from the
            camera). Lighting is two-sided (normals facing away from the camera are flipped).
        ambient: ambient light colour.
        shade: False returns the unlit albedo (texture colours) instead.
        background: RGB where no face is visible.

    Returns:
        `RenderedViews`; rgb, mask and depth are differentiable w.r.t. vertex positions (inside triangles)
        and textures.
    """
    if cameras is None:
        cameras = default_views(image_size or (256, 256), meshes.verts_packed().dtype, meshes.device)
    if image_size is not None and tuple(image_size) != tuple(cameras.image_size):
        raise ValueError(f"image_size {tuple(image_size)} differs from the cameras' {cameras.image_size}")
    H, W = cameras.image_size
    B = len(meshes)
    verts = meshes.verts_packed()
    faces = meshes.faces_packed()
    if per_mesh_cameras:
        if len(cameras) % B:
            raise ValueError(f"per_mesh_cameras needs B * V cameras, got {len(cameras)} for {B} meshes")
        V = len(cameras) // B
        vert_mesh = meshes.verts_packed_to_mesh_idx()
        cam_idx = (vert_mesh[None, :] * V + torch.arange(V, device=verts.device)[:, None]).reshape(-1)
        screen = cameras.project(verts.expand(V, -1, -1).reshape(-1, 3), cam_idx).reshape(V, -1, 3)
        image_cam = torch.arange(B * V, device=verts.device)
    else:
        V = len(cameras)
        screen = cameras.project(verts)
        image_cam = torch.arange(V, device=verts.device).repeat(B)

    frags = rasterize_meshes(meshes, screen, (H, W), cull_backfaces=cull_backfaces)
    view_of, face_of, _ = extended_face_index(meshes, V)
    face_verts_screen = screen[view_of[:, None], faces[face_of]]
    bary, depth = screen_barycentrics(frags.pix_to_face, face_verts_screen)
    mask = (frags.pix_to_face >= 0).to(verts.dtype)

    if meshes.textures is not None:
        colour = sample_textures(meshes, frags.pix_to_mesh_face, bary, V)
        if colour.shape[-1] == 1:
            colour = colour.expand(*colour.shape[:-1], 3)
        if colour.shape[-1] != 3:
            raise ValueError(f"textures must have 1 or 3 channels to render RGB, got {colour.shape[-1]}")
    else:
        colour = torch.as_tensor(albedo, dtype=verts.dtype, device=verts.device).expand(B * V, H, W, 3)

    if shade:
        normals = interpolate_face_attributes(frags.pix_to_mesh_face, bary, meshes.verts_normals_packed()[faces])
        points = interpolate_face_attributes(frags.pix_to_mesh_face, bary, verts[faces])
        centres = cameras.get_camera_center()[image_cam][:, None, None, :]
        if lights is None:
            towards_camera = -cameras.view_directions()[image_cam][:, None, None, :]
            lights = [DirectionalLight(direction=towards_camera, color=(0.5, 0.5, 0.5))]
        colour = lambertian_shading(colour, normals, points, lights, ambient, view_dirs=points - centres)

    rgb = composite(colour, mask, background)
    depth = depth.clamp(min=0) * mask
    return RenderedViews(
        rgb.reshape(B, V, H, W, 3), mask.reshape(B, V, H, W), depth.reshape(B, V, H, W), frags
    )
