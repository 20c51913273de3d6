"""Per-mesh appearance carried with a `Meshes` batch: vertex colours or UV-mapped images (pytorch3d layout)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class TexturesVertex:
    """One `(V_i, C)` float feature tensor per mesh (RGB in [0, 1] for colours)."""

    verts_features: list[torch.Tensor]

    def __post_init__(self) -> None:
        self.verts_features = list(self.verts_features)

    def __len__(self) -> int:
        return len(self.verts_features)

    def select(self, index: Sequence[int]) -> "TexturesVertex":
        return TexturesVertex([self.verts_features[i] for i in index])

    def to(self, device: torch.device | str) -> "TexturesVertex":
        return TexturesVertex([f.to(device) for f in self.verts_features])


@dataclass
class TexturesUV:
    """UV-mapped textures, one entry per mesh.

    maps: `(H_i, W_i, C)` images: uint8 (0..255, read as value / 255; what the loader produces, 4x smaller
    than float32 until sampled) or float in [0, 1] (differentiable); faces_uvs: `(F_i, 3)` int64 indices into verts_uvs;
    verts_uvs: `(T_i, 2)` float UV coordinates, origin at the image's bottom-left (OpenGL/glTF-after-flip
    convention used by trimesh).
    """

    maps: list[torch.Tensor]
    faces_uvs: list[torch.Tensor]
    verts_uvs: list[torch.Tensor]

    def __post_init__(self) -> None:
        self.maps, self.faces_uvs, self.verts_uvs = list(self.maps), list(self.faces_uvs), list(self.verts_uvs)
        if not (len(self.maps) == len(self.faces_uvs) == len(self.verts_uvs)):
            raise ValueError("TexturesUV: maps, faces_uvs and verts_uvs need one entry per mesh")
        for i, m in enumerate(self.maps):
            if m.dim() != 3 or not (m.dtype == torch.uint8 or m.is_floating_point()):
                raise ValueError(f"TexturesUV: map {i} must be (H, W, C) uint8 or float, got {tuple(m.shape)} {m.dtype}")

    def __len__(self) -> int:
        return len(self.maps)

    def select(self, index: Sequence[int]) -> "TexturesUV":
        return TexturesUV(
            [self.maps[i] for i in index], [self.faces_uvs[i] for i in index], [self.verts_uvs[i] for i in index]
        )

    def to(self, device: torch.device | str) -> "TexturesUV":
        return TexturesUV(
            [m.to(device) for m in self.maps], [f.to(device) for f in self.faces_uvs], [v.to(device) for v in self.verts_uvs]
        )


Textures = TexturesVertex | TexturesUV
