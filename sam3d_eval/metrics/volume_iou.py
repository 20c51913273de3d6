"""Volume IoU of two meshes on an occupancy grid (inside/outside kernels in `sam3d_eval.ops.winding`).

The grid is `resolution^3` cells over the pair's joint bounding box (or a given box); a cell is occupied when
its centre is inside the mesh, and IoU = |A and B| / |A or B| counted over cell centres (Occupancy Networks'
"volumetric IoU" on a regular grid instead of random samples). The inside test is the generalized winding
number (default; robust to holes and flipped faces, including a mesh whose faces are all inverted) or ray
parity (watertight meshes); see `sam3d_eval.ops.winding`. Each element's notes say when a mesh was open
(closed by caps for the winding number) or encloses no cell (a flat or open sheet: IoU counts it as empty).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import torch

from ..ops.winding import Method, occupancy, occupancy_grid, winding_number, winding_number_grid
from ..structures import Meshes

__all__ = ["VolumeIoU", "volume_iou", "occupancy_grid", "winding_number", "winding_number_grid"]

MeshLike = Union[Meshes, tuple[torch.Tensor, torch.Tensor], Sequence[tuple[torch.Tensor, torch.Tensor]]]


@dataclass
class VolumeIoU:
    """Result of `volume_iou`.

    iou: `(B,)` float IoU of the occupied cell centres (0 where both meshes are empty on the grid).
    intersection, union: `(B,)` int64 cell counts.
    bounds: `(B, 2, 3)` the grid box (min corner, max corner) of each pair, in mesh units.
    method: the inside test used, ``"winding"`` or ``"parity"``.
    resolution: cells per axis.
    notes: per element, a list of plain-text notes (empty when nothing is worth saying): an open mesh and how
        many boundary edges it has, a mesh that encloses no cell (flat or open sheet: counted as empty).
    open_edges: `(B, 2)` int64 boundary edges (after welding equal vertices) of (pred, gt); 0 = closed.
    """

    iou: torch.Tensor
    intersection: torch.Tensor
    union: torch.Tensor
    bounds: torch.Tensor
    method: str
    resolution: int
    notes: list[list[str]] = field(default_factory=list)
    open_edges: torch.Tensor | None = None


def _as_pairs(x: MeshLike, name: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(x, Meshes):
        return list(zip(x.verts_list(), x.faces_list()))
    if isinstance(x, tuple) and len(x) == 2 and torch.is_tensor(x[0]):
        return [x]
    if isinstance(x, (list, tuple)) and all(isinstance(m, tuple) and len(m) == 2 for m in x):
        return list(x)
    raise ValueError(f"{name} must be a Meshes batch, a (verts, faces) tuple or a list of them, got {type(x).__name__}")


def volume_iou(
    pred: MeshLike,
    gt: MeshLike,
    resolution: int = 64,
    method: Method = "winding",
    bounds: torch.Tensor | None = None,
    chunk_size: int = 2**22,
) -> VolumeIoU:
    """Volume IoU of each (pred, gt) mesh pair on a `resolution^3` occupancy grid.

    Args:
        pred: `Meshes` batch of B meshes, one `(verts (V, 3) float, faces (F, 3) int64)` tuple, or a list of
            B such tuples.
        gt: ground-truth meshes in the same forms, B of them.
        resolution: cells per axis, >= 1 (default 64, as in SAM 3D's and Occupancy Networks' voxel IoU).
        method: inside test, ``"winding"`` (default; any mesh: |w| > 1/2, holes closed by caps) or
            ``"parity"`` (watertight meshes only).
        bounds: `(2, 3)` box (min corner, max corner) in mesh units used for every pair, or `(B, 2, 3)` one
            per pair; None (default): the joint bounding box of each pair's vertices (widened by a tiny
            margin along an axis of zero extent).
        chunk_size: (point, cap triangle) pairs evaluated at once near holes by the winding test.

    Returns:
        `VolumeIoU` with `(B,)` float32 iou (0 when neither mesh occupies any cell), `(B,)` int64
        intersection and union cell counts, `(B, 2, 3)` float64 boxes, the method, the resolution,
        per-element notes and `(B, 2)` int64 open-edge counts, all on the first pred mesh's device.
        Computed without gradient.

    Raises:
        ValueError: if `pred` or `gt` is not one of the accepted forms, their sizes differ, `resolution`
            < 1, both meshes of a pair have no vertices (default bounds), a box has a non-positive extent,
            `method` is unknown, or a mesh's tensors are malformed (non-float verts, non-integer faces,
            indices out of range).
    """
    P, G = _as_pairs(pred, "pred"), _as_pairs(gt, "gt")
    if len(P) != len(G):
        raise ValueError(f"pred has {len(P)} meshes and gt has {len(G)}")
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    dev = P[0][0].device
    boxes = []
    inter, union = [], []
    all_notes: list[list[str]] = []
    open_edges: list[list[int]] = []
    for b, ((pv, pf), (gv, gf)) in enumerate(zip(P, G)):
        if bounds is None:
            both = torch.cat([pv.detach(), gv.detach()], dim=0).to(torch.float64)
            if both.shape[0] == 0:
                raise ValueError(f"pair {b}: both meshes have no vertices")
            box = torch.stack([both.amin(0), both.amax(0)])
            # a flat pair (zero extent on an axis) still gets a valid grid: widen by a tiny margin
            pad = (box[1] - box[0]).max().clamp(min=1.0) * 1e-9
            box = torch.where((box[1] - box[0] > 0)[None], box, box + torch.stack([-pad, pad])[:, None])
        else:
            box = bounds.to(torch.float64)
            box = box if box.dim() == 2 else box[b]
        notes: list[str] = []
        occs, opened = [], []
        for who, v, f in (("pred", pv, pf), ("gt", gv, gf)):
            occ = occupancy(v.detach(), f, box, resolution, method, chunk_size)
            occs.append(occ.inside)
            opened.append(occ.boundary_edges)
            if occ.boundary_edges and method == "winding":
                notes.append(f"{who} mesh is open ({occ.boundary_edges} boundary edges): inside by winding number")
            elif occ.boundary_edges:
                notes.append(f"{who} mesh is open ({occ.boundary_edges} boundary edges): ray parity is unreliable")
            if occ.volume_cells == 0:
                notes.append(f"{who} mesh encloses no grid cell (flat or open surface): counted as empty")
        occ_p, occ_g = occs
        inter.append((occ_p & occ_g).sum())
        union.append((occ_p | occ_g).sum())
        boxes.append(box.to(dev))
        all_notes.append(notes)
        open_edges.append(opened)
    inter_t, union_t = torch.stack(inter).to(dev), torch.stack(union).to(dev)
    iou = torch.where(union_t > 0, inter_t / union_t.clamp(min=1), torch.zeros((), device=dev))
    edges_t = torch.tensor(open_edges, dtype=torch.int64, device=dev).view(-1, 2)
    return VolumeIoU(iou.float(), inter_t, union_t, torch.stack(boxes), method, resolution, all_notes, edges_t)
