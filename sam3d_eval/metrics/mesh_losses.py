"""Mesh regularisers for training (pytorch3d `mesh_laplacian_smoothing`, `mesh_normal_consistency`,
`mesh_edge_loss`, and `cot_laplacian`), same definitions, reductions and gradients.

Every loss weights each element by 1 / (its mesh's element count), sums, and divides by the batch size,
so each mesh counts equally. A batch with no vertices or no faces gives pytorch3d's `tensor([0.])` that
requires grad.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..structures import Meshes


def _empty_loss(meshes: Meshes) -> torch.Tensor:
    return torch.tensor([0.0], dtype=torch.float32, device=meshes.device, requires_grad=True)


def cot_laplacian(verts: torch.Tensor, faces: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Cotangent Laplacian of a mesh (pytorch3d `cot_laplacian`).

    Args:
        verts: `(V, 3)` float vertices.
        faces: `(F, 3)` int64 vertex indices of each triangle.
        eps: lower clamp of Heron's squared area (in input units^4) before the square root (default
            1e-12), so degenerate faces give large finite cotangents instead of inf.

    Returns:
        `(L, inv_areas)`: L a sparse coalesced `(V, V)` tensor in verts' dtype, L[i, j] = cot a_ij + cot b_ij
        over the two angles opposite edge (i, j) (each cotangent computed as (B^2 + C^2 - A^2) / (4 area),
        area by Heron's formula); inv_areas `(V, 1)` in verts' dtype, 1 / (sum of the areas of the faces
        around each vertex), 0 for vertices in no face.
    """
    V, F = verts.shape[0], faces.shape[0]
    fv = verts[faces]
    v0, v1, v2 = fv[:, 0], fv[:, 1], fv[:, 2]
    A = (v1 - v2).norm(dim=1)  # opposite v0
    B = (v0 - v2).norm(dim=1)  # opposite v1
    C = (v0 - v1).norm(dim=1)  # opposite v2
    s = 0.5 * (A + B + C)
    # Heron's product can round below 0 for slivers; clamp before the square root, as pytorch3d.
    area = (s * (s - A) * (s - B) * (s - C)).clamp(min=eps).sqrt()
    A2, B2, C2 = A * A, B * B, C * C
    cot = torch.stack([(B2 + C2 - A2) / area, (A2 + C2 - B2) / area, (A2 + B2 - C2) / area], dim=1) / 4.0
    ii = faces[:, [1, 2, 0]]
    jj = faces[:, [2, 0, 1]]
    idx = torch.stack([ii, jj], dim=0).view(2, F * 3)
    L = torch.sparse_coo_tensor(idx, cot.view(-1), (V, V), check_invariants=False)
    L = (L + L.t()).coalesce()
    inv_areas = torch.zeros(V, dtype=verts.dtype, device=verts.device)
    inv_areas.scatter_add_(0, faces.reshape(-1), area[:, None].expand(F, 3).reshape(-1))
    pos = inv_areas > 0
    inv_areas[pos] = 1.0 / inv_areas[pos]
    return L, inv_areas.view(-1, 1)


def mesh_laplacian_smoothing(meshes: Meshes, method: Literal["uniform", "cot", "cotcurv"] = "uniform") -> torch.Tensor:
    """Laplacian smoothing loss (pytorch3d `mesh_laplacian_smoothing`): mean over meshes of the mean over
    vertices of |L v|, with L uniform, cotangent (row-normalised) or cotangent-curvature (area-normalised).

    L is built without autograd (a constant operator), as pytorch3d; the gradient flows through L v.
    Returns a 0-dim tensor (shape `(1,)` for an empty batch).

    Args:
        meshes: `Meshes` batch of N meshes.
        method: "uniform" (default; pytorch3d's uniform `meshes.laplacian_packed()`), "cot" (L v with the
            `cot_laplacian` L, each row with a positive sum divided by it, minus v) or "cotcurv"
            ((L - diag(row sums of L)) v scaled by 1 / (4 * the area of the faces around the vertex)).

    Returns:
        0-dim loss in the vertices' dtype, in input units ("uniform", "cot") or inverse input units
        ("cotcurv"); a `(1,)` float32 zero that requires grad when the batch has no vertices or no faces.

    Raises:
        ValueError: if `method` is not "uniform", "cot" or "cotcurv".
    """
    if method not in ("uniform", "cot", "cotcurv"):
        raise ValueError(f"method should be one of uniform, cot, cotcurv; got {method!r}")
    if meshes.isempty():
        return _empty_loss(meshes)
    N = len(meshes)
    verts = meshes.verts_packed()
    faces = meshes.faces_packed()
    weights = 1.0 / meshes.num_verts_per_mesh().gather(0, meshes.verts_packed_to_mesh_idx()).to(verts.dtype)

    if method == "uniform":
        loss = torch.sparse.mm(meshes.laplacian_packed(), verts)
    else:
        with torch.no_grad():
            L, inv_areas = cot_laplacian(verts.detach(), faces)
            L_sum = torch.sparse.sum(L, dim=1).to_dense().view(-1, 1)
            if method == "cot":
                # pytorch3d inverts only positive row sums; others are kept as they are.
                norm_w = L_sum.clone()
                pos = norm_w > 0
                norm_w[pos] = 1.0 / norm_w[pos]
            else:
                norm_w = 0.25 * inv_areas
        Lv = torch.sparse.mm(L, verts)
        loss = Lv * norm_w - verts if method == "cot" else (Lv - L_sum * verts) * norm_w
    return (loss.norm(dim=1) * weights).sum() / N


def _opposite_vertex_pairs(edge_of_entry: torch.Tensor, num_edges: int) -> torch.Tensor:
    """`(M, 2)` entry pairs sharing an edge, as pytorch3d enumerates them after sorting entries by edge:
    for an edge with k entries at sorted positions s..s+k-1, every (i, j) with 0 <= i <= k-2,
    1 <= j <= k-1, i != j (one pair for a manifold edge; k=4 gives 7 pairs, one repeated)."""
    order = torch.sort(edge_of_entry, stable=True).indices
    k = torch.bincount(edge_of_entry, minlength=num_edges)
    start = torch.cumsum(k, 0) - k
    m = (k - 1).clamp(min=0)
    n_cand = m * m
    edge = torch.repeat_interleave(torch.arange(num_edges, device=k.device), n_cand)
    local = torch.arange(edge.shape[0], device=k.device) - torch.repeat_interleave(torch.cumsum(n_cand, 0) - n_cand, n_cand)
    i = local // m[edge]
    j = local % m[edge] + 1
    keep = i != j
    base = start[edge][keep]
    return torch.stack([order[base + i[keep]], order[base + j[keep]]], dim=1)


def mesh_normal_consistency(meshes: Meshes) -> torch.Tensor:
    """Normal consistency loss (pytorch3d `mesh_normal_consistency`): mean over meshes of the mean over
    pairs of faces sharing an edge of 1 - cos between their normals, oriented by the shared edge.

    For every (face, edge) the normal is (v1 - v0) x (a - v0), with (v0, v1) the edge and a the face's
    vertex opposite it; two faces sharing the edge compare n0 with -n1. Edges shared by more than two
    faces give every pair, as pytorch3d (vectorised, no loop over edges). Returns a 0-dim tensor.

    Args:
        meshes: `Meshes` batch of N meshes.

    Returns:
        0-dim loss in [0, 2] in the vertices' dtype (0: neighbouring faces coplanar and consistently
        oriented; a mesh with no shared edge adds 0); a `(1,)` float32 zero that requires grad when the
        batch has no vertices or no faces.
    """
    if meshes.isempty():
        return _empty_loss(meshes)
    N = len(meshes)
    verts = meshes.verts_packed()
    faces = meshes.faces_packed()
    edges = meshes.edges_packed()
    F = faces.shape[0]
    with torch.no_grad():
        edge_of_entry = meshes.faces_packed_to_edges_packed().reshape(F * 3)  # entry f*3+k: edge opposite k
        face_verts = faces.repeat_interleave(3, dim=0)  # (3F, 3): the face's vertices for every entry
        pairs = _opposite_vertex_pairs(edge_of_entry, edges.shape[0])
    v0 = verts[edges[edge_of_entry, 0]]
    v1 = verts[edges[edge_of_entry, 1]]
    e = v1 - v0
    # Two of the three crosses are exactly zero (with the edge's own end points); summing all three keeps
    # pytorch3d's arithmetic and gradient.
    n = sum(torch.cross(e, verts[face_verts[:, k]] - v0, dim=1) for k in range(3))
    loss = 1 - torch.cosine_similarity(n[pairs[:, 0]], -n[pairs[:, 1]], dim=1)
    mesh_of_pair = meshes.verts_packed_to_mesh_idx()[face_verts[pairs[:, 0], 0]]
    num = torch.bincount(mesh_of_pair, minlength=N)
    weights = 1.0 / num[mesh_of_pair].to(loss.dtype)
    return (loss * weights).sum() / N


def mesh_edge_loss(meshes: Meshes, target_length: float = 0.0) -> torch.Tensor:
    """Edge length loss (pytorch3d `mesh_edge_loss`): mean over meshes of the mean over unique edges of
    (|v0 - v1| - target_length)^2, in squared input units. Returns a 0-dim tensor.

    Args:
        meshes: `Meshes` batch of N meshes.
        target_length: edge length each edge is pulled towards, in input units (default 0: penalise the
            squared length itself).

    Returns:
        0-dim loss in squared input units, in the vertices' dtype; a `(1,)` float32 zero that requires grad
        when the batch has no vertices or no faces.
    """
    if meshes.isempty():
        return _empty_loss(meshes)
    N = len(meshes)
    verts = meshes.verts_packed()
    edges = meshes.edges_packed()
    weights = 1.0 / meshes.num_edges_per_mesh().gather(0, meshes.edges_packed_to_mesh_idx()).to(verts.dtype)
    v0, v1 = verts[edges].unbind(1)
    loss = ((v0 - v1).norm(dim=1, p=2) - target_length) ** 2.0
    return (loss * weights).sum() / N
