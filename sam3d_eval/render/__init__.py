"""Cameras, attribute interpolation, shading and multi-view rendering over the `ops` rasteriser."""

from .cameras import PerspectiveCameras, look_at_extrinsics, orbit_cameras, orbit_eye
from .interpolate import interpolate_face_attributes, sample_textures, screen_barycentrics
from .multiview import RenderedViews, default_views, render_views
from .shading import DirectionalLight, PointLight, composite, lambertian_shading, silhouette

__all__ = [
    "DirectionalLight",
    "PerspectiveCameras",
    "PointLight",
    "RenderedViews",
    "composite",
    "default_views",
    "interpolate_face_attributes",
    "lambertian_shading",
    "look_at_extrinsics",
    "orbit_cameras",
    "orbit_eye",
    "render_views",
    "sample_textures",
    "screen_barycentrics",
    "silhouette",
]
