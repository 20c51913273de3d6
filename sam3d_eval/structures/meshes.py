"""Ragged batch of triangle meshes with list / padded / packed views (pytorch3d `Meshes` semantics).

Derived quantities (edges, face normals and areas, vertex normals, the uniform Laplacian) follow
pytorch3d's definitions so that losses computed from them match pytorch3d to float32 rounding.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..transforms import face_areas_normals
from .textures import Textures
from .utils import lengths_to_first_idx, lengths_to_packed_idx, list_to_padded, padded_to_list


def _as_list(x: Sequence[torch.Tensor] | torch.Tensor, name: str) -> list[torch.Tensor]:
    if torch.is_tensor(x):
        if x.dim() != 3:
            raise ValueError(f"{name} as a tensor must be (B, N, 3), got {tuple(x.shape)}")
        return list(x.unbind(0))
    return list(x)


def check_mesh_tensors(verts: torch.Tensor, faces: torch.Tensor, name: str) -> None:
    """ValueError naming `name` unless `verts` is float `(V, 3)` and `faces` integer `(F, 3)` indexing into it."""
    if verts.dim() != 2 or verts.shape[1] != 3 or not verts.is_floating_point():
        raise ValueError(f"{name}: verts must be float (V, 3), got {tuple(verts.shape)} {verts.dtype}")
    if faces.dim() != 2 or faces.shape[1] != 3 or faces.is_floating_point():
        raise ValueError(f"{name}: faces must be integer (F, 3), got {tuple(faces.shape)} {faces.dtype}")
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= verts.shape[0]):
        raise ValueError(f"{name}: face indices must lie in [0, {verts.shape[0]}), "
                         f"got [{int(faces.min())}, {int(faces.max())}]")


class Meshes:
    """A batch of B triangle meshes of possibly different sizes.

    Args:
        verts: list of `(V_i, 3)` float tensors, or a `(B, V, 3)` tensor.
        faces: list of `(F_i, 3)` int64 tensors indexing each mesh's own vertices, or a `(B, F, 3)` tensor in
            which rows of -1 mark padding (pytorch3d convention).
        textures: optional `TexturesVertex` or `TexturesUV` with one entry per mesh.
    """

    def __init__(
        self,
        verts: Sequence[torch.Tensor] | torch.Tensor,
        faces: Sequence[torch.Tensor] | torch.Tensor,
        textures: Textures | None = None,
    ) -> None:
        verts_list = _as_list(verts, "verts")
        faces_list = _as_list(faces, "faces")
        if torch.is_tensor(faces):  # padded faces: drop -1 rows
            faces_list = [f[(f >= 0).all(dim=1)] for f in faces_list]
        if len(verts_list) == 0:
            raise ValueError("Meshes needs at least one mesh")
        if len(verts_list) != len(faces_list):
            raise ValueError(f"got {len(verts_list)} vertex tensors and {len(faces_list)} face tensors")
        for i, (v, f) in enumerate(zip(verts_list, faces_list)):
            check_mesh_tensors(v, f, f"mesh {i}")
        if textures is not None and len(textures) != len(verts_list):
            raise ValueError(f"textures has {len(textures)} entries for {len(verts_list)} meshes")
        self._verts_list = verts_list
        self._faces_list = [f.to(torch.int64) for f in faces_list]
        self.textures = textures
        self.device = verts_list[0].device
        self._num_verts = torch.tensor([v.shape[0] for v in verts_list], dtype=torch.int64, device=self.device)
        self._num_faces = torch.tensor([f.shape[0] for f in faces_list], dtype=torch.int64, device=self.device)
        self._cache: dict[str, torch.Tensor] = {}

    # ---- basics -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._verts_list)

    def __getitem__(self, index: int | slice | Sequence[int]) -> "Meshes":
        if isinstance(index, int):
            index = [index]
        elif isinstance(index, slice):
            index = list(range(len(self)))[index]
        tex = None if self.textures is None else self.textures.select(index)
        return Meshes([self._verts_list[i] for i in index], [self._faces_list[i] for i in index], tex)

    def isempty(self) -> bool:
        return int(self._num_verts.sum()) == 0 or int(self._num_faces.sum()) == 0

    def to(self, device: torch.device | str) -> "Meshes":
        tex = None if self.textures is None else self.textures.to(device)
        return Meshes([v.to(device) for v in self._verts_list], [f.to(device) for f in self._faces_list], tex)

    def num_verts_per_mesh(self) -> torch.Tensor:
        """`(B,)` int64."""
        return self._num_verts

    def num_faces_per_mesh(self) -> torch.Tensor:
        """`(B,)` int64."""
        return self._num_faces

    # ---- list / padded / packed --------------------------------------------------------------------
    def verts_list(self) -> list[torch.Tensor]:
        return self._verts_list

    def faces_list(self) -> list[torch.Tensor]:
        return self._faces_list

    def verts_padded(self) -> torch.Tensor:
        """`(B, max V_i, 3)`, zeros past each mesh's vertex count."""
        return list_to_padded(self._verts_list)

    def faces_padded(self) -> torch.Tensor:
        """`(B, max F_i, 3)` int64 per-mesh indices, rows of -1 past each mesh's face count."""
        return list_to_padded(self._faces_list, pad_value=-1)

    def verts_packed(self) -> torch.Tensor:
        """`(sum V_i, 3)`."""
        if "verts_packed" not in self._cache:
            self._cache["verts_packed"] = torch.cat(self._verts_list, dim=0)
        return self._cache["verts_packed"]

    def faces_packed(self) -> torch.Tensor:
        """`(sum F_i, 3)` int64 indices into `verts_packed()`."""
        if "faces_packed" not in self._cache:
            offsets = self.mesh_to_verts_packed_first_idx()
            self._cache["faces_packed"] = torch.cat(
                [f + offsets[i] for i, f in enumerate(self._faces_list)], dim=0
            )
        return self._cache["faces_packed"]

    def mesh_to_verts_packed_first_idx(self) -> torch.Tensor:
        return lengths_to_first_idx(self._num_verts)

    def mesh_to_faces_packed_first_idx(self) -> torch.Tensor:
        return lengths_to_first_idx(self._num_faces)

    def verts_packed_to_mesh_idx(self) -> torch.Tensor:
        """`(sum V_i,)` int64 mesh index of every packed vertex."""
        return lengths_to_packed_idx(self._num_verts)

    def faces_packed_to_mesh_idx(self) -> torch.Tensor:
        """`(sum F_i,)` int64 mesh index of every packed face."""
        return lengths_to_packed_idx(self._num_faces)

    def update_padded(self, new_verts_padded: torch.Tensor) -> "Meshes":
        """A batch with the same faces and vertices taken from `(B, V, 3)` (e.g. an optimised offset)."""
        verts = padded_to_list(new_verts_padded, self._num_verts.tolist())
        return Meshes(verts, self._faces_list, self.textures)

    def offset_verts(self, vert_offsets_packed: torch.Tensor) -> "Meshes":
        """A batch whose packed vertices are moved by `(sum V_i, 3)` (or a `(3,)` shift for all)."""
        new = self.verts_packed() + vert_offsets_packed
        return Meshes(list(new.split(self._num_verts.tolist())), self._faces_list, self.textures)

    # ---- edges -------------------------------------------------------------------------------------
    def _compute_edges(self) -> None:
        faces = self.faces_packed()
        num_faces = faces.shape[0]
        face_to_mesh = self.faces_packed_to_mesh_idx()
        v0, v1, v2 = faces.unbind(1)
        # Edge k of a face is the one opposite its vertex k: (v1, v2), (v2, v0), (v0, v1), as pytorch3d.
        edges = torch.cat([torch.stack([v1, v2], 1), torch.stack([v2, v0], 1), torch.stack([v0, v1], 1)], 0)
        edge_to_mesh = face_to_mesh.repeat(3)
        edges, _ = edges.sort(dim=1)
        num_verts = max(int(self._num_verts.sum()), 1)
        edge_hash = num_verts * edges[:, 0] + edges[:, 1]
        unique_hash, inverse = torch.unique(edge_hash, return_inverse=True)
        sorted_hash, order = torch.sort(edge_hash, stable=True)
        first = torch.ones_like(sorted_hash, dtype=torch.bool)
        first[1:] = sorted_hash[1:] != sorted_hash[:-1]
        self._cache["edges_packed"] = torch.stack([unique_hash // num_verts, unique_hash % num_verts], dim=1)
        self._cache["edges_packed_to_mesh_idx"] = edge_to_mesh[order[first]]
        self._cache["faces_packed_to_edges_packed"] = inverse.reshape(3, num_faces).t().contiguous()

    def edges_packed(self) -> torch.Tensor:
        """`(sum E_i, 2)` int64 unique undirected edges (smaller vertex index first), sorted."""
        if "edges_packed" not in self._cache:
            self._compute_edges()
        return self._cache["edges_packed"]

    def edges_packed_to_mesh_idx(self) -> torch.Tensor:
        if "edges_packed" not in self._cache:
            self._compute_edges()
        return self._cache["edges_packed_to_mesh_idx"]

    def faces_packed_to_edges_packed(self) -> torch.Tensor:
        """`(sum F_i, 3)` int64: edge k of face f is the one opposite vertex k."""
        if "edges_packed" not in self._cache:
            self._compute_edges()
        return self._cache["faces_packed_to_edges_packed"]

    def num_edges_per_mesh(self) -> torch.Tensor:
        return torch.bincount(self.edges_packed_to_mesh_idx(), minlength=len(self))

    def mesh_to_edges_packed_first_idx(self) -> torch.Tensor:
        return lengths_to_first_idx(self.num_edges_per_mesh())

    # ---- geometry ----------------------------------------------------------------------------------
    def faces_areas_packed(self) -> torch.Tensor:
        """`(sum F_i,)` triangle areas."""
        return face_areas_normals(self.verts_packed(), self.faces_packed())[0]

    def faces_normals_packed(self) -> torch.Tensor:
        """`(sum F_i, 3)` unit face normals, (v1 - v0) x (v2 - v0) orientation."""
        return face_areas_normals(self.verts_packed(), self.faces_packed())[1]

    def faces_normals_list(self) -> list[torch.Tensor]:
        return list(self.faces_normals_packed().split(self._num_faces.tolist()))

    def verts_normals_packed(self) -> torch.Tensor:
        """`(sum V_i, 3)` unit vertex normals: sum of the area-weighted normals of adjacent faces.

        As pytorch3d: each face adds (v2 - v1) x (v0 - v1) to its three vertices, then normalise with eps 1e-6.
        """
        verts, faces = self.verts_packed(), self.faces_packed()
        vf = verts[faces]
        face_n = torch.cross(vf[:, 2] - vf[:, 1], vf[:, 0] - vf[:, 1], dim=1)
        normals = torch.zeros_like(verts)
        for k in range(3):
            normals = normals.index_add(0, faces[:, k], face_n)
        return torch.nn.functional.normalize(normals, eps=1e-6, dim=1)

    def verts_normals_list(self) -> list[torch.Tensor]:
        return list(self.verts_normals_packed().split(self._num_verts.tolist()))

    def verts_normals_padded(self) -> torch.Tensor:
        return list_to_padded(self.verts_normals_list())

    def laplacian_packed(self) -> torch.Tensor:
        """Sparse `(sum V_i, sum V_i)` uniform Laplacian (pytorch3d `laplacian`, no gradient).

        L[i, j] = 1/deg(i) for each neighbour j and L[i, i] = -1 for every vertex, isolated ones included.
        """
        edges = self.edges_packed()
        verts = self.verts_packed().detach()
        num_verts = verts.shape[0]
        idx = torch.cat([edges, edges.flip(1)], dim=0).t()
        ones = torch.ones(idx.shape[1], dtype=verts.dtype, device=verts.device)
        deg = torch.zeros(num_verts, dtype=verts.dtype, device=verts.device).index_add(0, idx[0], ones)
        val = 1.0 / deg[idx[0]]  # every vertex on an edge has degree >= 1
        diag = torch.arange(num_verts, device=verts.device).expand(2, -1)
        all_idx = torch.cat([idx, diag], dim=1)
        all_val = torch.cat([val, -torch.ones(num_verts, dtype=verts.dtype, device=verts.device)])
        shape = (num_verts, num_verts)
        return torch.sparse_coo_tensor(all_idx, all_val, shape, check_invariants=False).coalesce()

    def __repr__(self) -> str:
        return f"Meshes(batch={len(self)}, verts={self._num_verts.tolist()}, faces={self._num_faces.tolist()})"
