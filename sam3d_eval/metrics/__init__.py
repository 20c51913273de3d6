"""Geometry and appearance metrics: pure functions on tensors and the structures, pytorch3d semantics.

The kernels they are built on have one home each: nearest neighbours (`knn_points`, `knn_gather`), surface
sampling and the alignments in `sam3d_eval.ops`, similarity transforms in `sam3d_eval.transforms`.
"""

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
    "LPIPS",
    "FScore",
    "VolumeIoU",
    "WeightsNotFoundError",
    "add_s",
    "box3d_overlap",
    "chamfer_distance",
    "cot_laplacian",
    "earth_movers_distance",
    "f_score",
    "f_score_from_dists",
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
    "rotation_error_deg",
    "ssim",
    "ssim_map",
    "volume_iou",
    "winding_number",
]
