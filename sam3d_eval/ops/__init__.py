"""Kernels, one API each with CPU and GPU paths chosen inside by device and size.

Nearest neighbours (`knn_points`), point-to-triangle and point-to-segment distances, area-weighted surface
sampling, joint unit-cube normalisation, triangle rasterisation, alignment (Umeyama, ICP, rotation search,
bounding box), optimal matching for the EMD (auction and exact assignment) and the visibility of surface points
from a camera (`point_visibility`).
"""

from .alignment import (
    ALIGNMENTS,
    Alignment,
    ICPSolution,
    align,
    bbox_alignment,
    corresponding_points_alignment,
    cube_rotations,
    iterative_closest_point,
    rotation_grid,
    rotation_search_icp,
    so3_grid,
)
from .emd import auction_assignment, exact_assignment, min_cost_matching
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
from .visibility import (
    OCCLUDER_HIDDEN,
    SELF_HIDDEN,
    VISIBILITY_LABELS,
    VISIBLE,
    PointVisibility,
    point_visibility,
    project_points,
)

__all__ = [
    "ALIGNMENTS",
    "Alignment",
    "Fragments",
    "ICPSolution",
    "KNN",
    "MIN_TRIANGLE_AREA",
    "OCCLUDER_HIDDEN",
    "PointVisibility",
    "SELF_HIDDEN",
    "VISIBILITY_LABELS",
    "VISIBLE",
    "align",
    "auction_assignment",
    "bbox_alignment",
    "corresponding_points_alignment",
    "cube_rotations",
    "edge_point_distance",
    "exact_assignment",
    "extended_face_index",
    "face_point_distance",
    "iterative_closest_point",
    "knn_gather",
    "knn_points",
    "min_cost_matching",
    "normalize_to_unit_cube",
    "point_edge_distance",
    "point_face_distance",
    "point_segment_sqdist",
    "point_triangle_sqdist",
    "point_visibility",
    "project_points",
    "rasterize_meshes",
    "rotation_grid",
    "rotation_search_icp",
    "sample_points_from_meshes",
    "sample_uv",
    "so3_grid",
    "unit_cube_transform",
]
