"""Point cloud to mesh distances (pytorch3d `point_mesh_face_distance` / `point_mesh_edge_distance`).

The losses are squared distances, both directions, per-element means, averaged over the batch, exactly as
pytorch3d. `point_mesh_surface_distance` is the evaluation's point-to-mesh metric: the Euclidean
(unsquared) distance of every point to the surface and its per-cloud mean.
"""

from __future__ import annotations

import torch

from ..ops.point_mesh import (
    MIN_TRIANGLE_AREA,
    edge_point_distance,
    face_point_distance,
    point_edge_distance,
    point_face_distance,
)
from ..structures import Meshes, Pointclouds


def _check_pair(meshes: Meshes, pcls: Pointclouds) -> None:
    if len(meshes) != len(pcls):
        raise ValueError(f"meshes and pointclouds must be equal sized batches, got {len(meshes)} and {len(pcls)}")
    if meshes.isempty() or pcls.isempty():
        raise ValueError("Meshes or Pointclouds are empty")
    empty_m = (meshes.num_faces_per_mesh() == 0).nonzero().flatten().tolist()
    empty_p = (pcls.num_points_per_cloud() == 0).nonzero().flatten().tolist()
    if empty_m or empty_p:
        raise ValueError(f"every mesh needs faces and every cloud points; empty meshes {empty_m}, empty clouds {empty_p}")


def _weighted_mean(values: torch.Tensor, owner: torch.Tensor, counts: torch.Tensor, N: int) -> torch.Tensor:
    # pytorch3d: weight each element by 1 / (size of its batch element), sum, divide by N.
    w = 1.0 / counts.gather(0, owner).to(values.dtype)
    return (values * w).sum() / N


def point_mesh_face_distance(
    meshes: Meshes, pcls: Pointclouds, min_triangle_area: float = MIN_TRIANGLE_AREA
) -> torch.Tensor:
    """Scalar: mean over the batch of (mean squared point-to-face distance + mean squared face-to-point distance).

    Matches pytorch3d `point_mesh_face_distance` (squared input units). `min_triangle_area`: triangles with
    a smaller area are measured as their three edges (pytorch3d's default 5e-3). Differentiable w.r.t.
    points and vertices.

    Args:
        meshes: `Meshes` batch of B meshes, each with at least one face.
        pcls: `Pointclouds` batch of B clouds, each with at least one point, same dtype and device.
        min_triangle_area: area threshold in squared input units (default 5e-3, pytorch3d's); smaller
            triangles are measured as their three edges.

    Returns:
        0-dim loss in squared input units, in the points' dtype: the batch mean of (the cloud's mean squared
        point-to-triangle distance + the mesh's mean squared triangle-to-point distance).

    Raises:
        ValueError: if the batch sizes differ, either batch is empty, a mesh has no faces or a cloud no
            points, or points and vertices differ in dtype or device.
    """
    _check_pair(meshes, pcls)
    N = len(meshes)
    points = pcls.points_packed()
    points_first_idx = pcls.cloud_to_packed_first_idx()
    tris = meshes.verts_packed()[meshes.faces_packed()]  # (T, 3, 3)
    tris_first_idx = meshes.mesh_to_faces_packed_first_idx()

    p2f, _ = point_face_distance(points, points_first_idx, tris, tris_first_idx, None, min_triangle_area)
    point_dist = _weighted_mean(p2f, pcls.packed_to_cloud_idx(), pcls.num_points_per_cloud(), N)
    f2p, _ = face_point_distance(points, points_first_idx, tris, tris_first_idx, None, min_triangle_area)
    face_dist = _weighted_mean(f2p, meshes.faces_packed_to_mesh_idx(), meshes.num_faces_per_mesh(), N)
    return point_dist + face_dist


def point_mesh_edge_distance(meshes: Meshes, pcls: Pointclouds) -> torch.Tensor:
    """Scalar: mean over the batch of (mean squared point-to-edge + mean squared edge-to-point distance).

    Matches pytorch3d `point_mesh_edge_distance` (squared input units); differentiable.

    Args:
        meshes: `Meshes` batch of B meshes, each with at least one face; its unique edges
            (`meshes.edges_packed()`) are the segments.
        pcls: `Pointclouds` batch of B clouds, each with at least one point, same dtype and device.

    Returns:
        0-dim loss in squared input units, in the points' dtype: the batch mean of (the cloud's mean squared
        point-to-segment distance + the mesh's mean squared segment-to-point distance).

    Raises:
        ValueError: if the batch sizes differ, either batch is empty, a mesh has no faces or a cloud no
            points, or points and vertices differ in dtype or device.
    """
    _check_pair(meshes, pcls)
    N = len(meshes)
    points = pcls.points_packed()
    points_first_idx = pcls.cloud_to_packed_first_idx()
    segms = meshes.verts_packed()[meshes.edges_packed()]  # (S, 2, 3)
    segms_first_idx = meshes.mesh_to_edges_packed_first_idx()

    p2e, _ = point_edge_distance(points, points_first_idx, segms, segms_first_idx)
    point_dist = _weighted_mean(p2e, pcls.packed_to_cloud_idx(), pcls.num_points_per_cloud(), N)
    e2p, _ = edge_point_distance(points, points_first_idx, segms, segms_first_idx)
    edge_dist = _weighted_mean(e2p, meshes.edges_packed_to_mesh_idx(), meshes.num_edges_per_mesh(), N)
    return point_dist + edge_dist


def point_mesh_surface_distance(
    meshes: Meshes, pcls: Pointclouds, min_triangle_area: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance of every point to its mesh's surface, and its mean per cloud.

    Returns `(dists (P,), mean (B,))`: `dists` packed like `pcls.points_packed()`, input units (not
    squared). The default `min_triangle_area=None` is the exact point-to-surface distance: float32 inputs
    get the exact distance of their values to float32 rounding whatever the triangles' size and aspect
    ratio and the points' distance (`ops.point_mesh.point_triangle_sqdist_exact`; pytorch3d's formula
    underestimates on triangles below ~5e-5 area); on CPU the nearest triangle is found with libigl's AABB
    tree when it imports (`ops.mesh_bvh`). A float selects pytorch3d's formula with that area threshold
    (5e-3: the loss's behaviour).

    Args:
        meshes: `Meshes` batch of B meshes, each with at least one face.
        pcls: `Pointclouds` batch of B clouds, each with at least one point, same dtype and device.
        min_triangle_area: None (default) for the exact point-triangle distance, or an area threshold in
            squared input units for pytorch3d's formula.

    Returns:
        `(dists, mean)`: `(P,)` Euclidean distance of every packed point to its mesh's surface and `(B,)`
        its mean per cloud, in input units and the points' dtype. Differentiable w.r.t. points and vertices
        (a point exactly on the surface gets a zero gradient).

    Raises:
        ValueError: if the batch sizes differ, either batch is empty, a mesh has no faces or a cloud no
            points, or points and vertices differ in dtype or device.
    """
    _check_pair(meshes, pcls)
    points = pcls.points_packed()
    tris = meshes.verts_packed()[meshes.faces_packed()]
    d2, _ = point_face_distance(
        points, pcls.cloud_to_packed_first_idx(), tris, meshes.mesh_to_faces_packed_first_idx(), None, min_triangle_area
    )
    # sqrt has an infinite slope at 0: clamp so points on the surface get a zero, not NaN, gradient.
    d = torch.sqrt(d2.clamp(min=torch.finfo(d2.dtype).tiny))
    d = torch.where(d2 > 0, d, torch.zeros_like(d))
    owner = pcls.packed_to_cloud_idx()
    counts = pcls.num_points_per_cloud()
    mean = torch.zeros(len(pcls), dtype=d.dtype, device=d.device).index_add(0, owner, d) / counts.to(d.dtype)
    return d, mean
