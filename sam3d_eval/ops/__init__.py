"""Kernels, one API each with CPU and GPU paths chosen inside by device and size.

Nearest neighbours (`knn_points`), point-to-triangle and point-to-segment distances, area-weighted surface
sampling, joint unit-cube normalisation and triangle rasterisation.
"""

from .knn import KNN, knn_gather, knn_points
from .normalize import normalize_to_unit_cube, unit_cube_transform
from .point_mesh import (
    MIN_TRIANGLE_AREA,
    edge_point_distance,
    face_point_distance,
    point_edge_distance,
    point_face_distance,
    point_segment_sqdist,
    point_triangle_sqdist,
)
from .rasterize import Fragments, extended_face_index, rasterize_meshes
from .sample_points import sample_points_from_meshes
from .texture_lookup import sample_uv

__all__ = [
    "KNN",
    "MIN_TRIANGLE_AREA",
    "Fragments",
    "edge_point_distance",
    "extended_face_index",
    "face_point_distance",
    "knn_gather",
    "knn_points",
    "normalize_to_unit_cube",
    "point_edge_distance",
    "point_face_distance",
    "point_segment_sqdist",
    "point_triangle_sqdist",
    "rasterize_meshes",
    "sample_points_from_meshes",
    "sample_uv",
    "unit_cube_transform",
]
