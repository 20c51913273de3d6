"""Geometry and appearance metrics: pure functions on tensors and the structures, pytorch3d semantics.

Re-exports the `ops` and `transforms` names users expect here (`knn_points`, `knn_gather`,
`sample_points_from_meshes`, the alignments of `ops.alignment`, `SimilarityTransform`, `quaternion_to_matrix`).
"""

from ..ops.alignment import (
    ALIGNMENTS,
    Alignment,
    ICPSolution,
    align,
    bbox_alignment,
    corresponding_points_alignment,
    iterative_closest_point,
    rotation_search_icp,
)
from ..ops.knn import KNN, knn_gather, knn_points
from ..ops.sample_points import sample_points_from_meshes
from ..transforms import SimilarityTransform, apply_similarity_transform, quaternion_to_matrix
from .chamfer import chamfer_distance
from .emd import earth_movers_distance
from .fscore import FScore, f_score, f_score_from_dists
from .image_quality import psnr, ssim, ssim_map
from .layout import add_s, box3d_overlap, pose_add_s, pose_box_corners, rotation_error_deg
from .lpips import LPIPS, WeightsNotFoundError
from .mesh_losses import cot_laplacian, mesh_edge_loss, mesh_laplacian_smoothing, mesh_normal_consistency
from .normal_consistency import normal_consistency, normal_consistency_from_idx
from .point_mesh_distance import point_mesh_edge_distance, point_mesh_face_distance, point_mesh_surface_distance
from .volume_iou import VolumeIoU, occupancy_grid, volume_iou, winding_number

__all__ = [
    "ALIGNMENTS",
    "KNN",
    "LPIPS",
    "Alignment",
    "FScore",
    "ICPSolution",
    "SimilarityTransform",
    "VolumeIoU",
    "WeightsNotFoundError",
    "add_s",
    "align",
    "apply_similarity_transform",
    "bbox_alignment",
    "box3d_overlap",
    "chamfer_distance",
    "corresponding_points_alignment",
    "cot_laplacian",
    "earth_movers_distance",
    "f_score",
    "f_score_from_dists",
    "iterative_closest_point",
    "knn_gather",
    "knn_points",
    "mesh_edge_loss",
    "mesh_laplacian_smoothing",
    "mesh_normal_consistency",
    "normal_consistency",
    "normal_consistency_from_idx",
    "occupancy_grid",
    "point_mesh_edge_distance",
    "point_mesh_face_distance",
    "point_mesh_surface_distance",
    "pose_add_s",
    "pose_box_corners",
    "psnr",
    "quaternion_to_matrix",
    "rotation_error_deg",
    "rotation_search_icp",
    "sample_points_from_meshes",
    "ssim",
    "ssim_map",
    "volume_iou",
    "winding_number",
]
