"""Ragged batch of point clouds with list / padded / packed views (pytorch3d `Pointclouds` semantics)."""

from __future__ import annotations

from typing import Sequence

import torch

from .utils import lengths_to_first_idx, lengths_to_packed_idx, list_to_padded, padded_to_list


def _as_list(x: Sequence[torch.Tensor] | torch.Tensor | None, name: str) -> list[torch.Tensor] | None:
    if x is None:
        return None
    if torch.is_tensor(x):
        if x.dim() != 3:
            raise ValueError(f"{name} as a tensor must be (B, N, C), got {tuple(x.shape)}")
        return list(x.unbind(0))
    return list(x)


class Pointclouds:
    """A batch of B point clouds of possibly different sizes.

    Args:
        points: list of `(P_i, 3)` float tensors, or a `(B, P, 3)` tensor (all clouds of size P).
        normals: optional, same layout as `points`.
        features: optional list of `(P_i, C)` tensors, or a `(B, P, C)` tensor (colours, say).
    """

    def __init__(
        self,
        points: Sequence[torch.Tensor] | torch.Tensor,
        normals: Sequence[torch.Tensor] | torch.Tensor | None = None,
        features: Sequence[torch.Tensor] | torch.Tensor | None = None,
    ) -> None:
        pts = _as_list(points, "points")
        if pts is None:
            raise ValueError("Pointclouds needs a list of clouds (an empty list is an empty batch)")
        for i, p in enumerate(pts):
            if p.dim() != 2 or p.shape[1] != 3:
                raise ValueError(f"cloud {i}: points must be (P, 3), got {tuple(p.shape)}")
            if not p.is_floating_point():
                raise ValueError(f"cloud {i}: points must be floating point, got {p.dtype}")
        self._points_list = pts
        self._normals_list = self._check_aux(_as_list(normals, "normals"), "normals", 3)
        self._features_list = self._check_aux(_as_list(features, "features"), "features", None)
        self.device = pts[0].device if pts else torch.device("cpu")
        self._num_points = torch.tensor([p.shape[0] for p in pts], dtype=torch.int64, device=self.device)

    def _check_aux(self, aux: list[torch.Tensor] | None, name: str, width: int | None) -> list[torch.Tensor] | None:
        if aux is None:
            return None
        if len(aux) != len(self._points_list):
            raise ValueError(f"{name}: expected {len(self._points_list)} clouds, got {len(aux)}")
        for i, (a, p) in enumerate(zip(aux, self._points_list)):
            if a.dim() != 2 or a.shape[0] != p.shape[0] or (width is not None and a.shape[1] != width):
                raise ValueError(f"cloud {i}: {name} has shape {tuple(a.shape)}, points {tuple(p.shape)}")
        return aux

    def __len__(self) -> int:
        return len(self._points_list)

    def __getitem__(self, index: int | slice | Sequence[int]) -> "Pointclouds":
        if isinstance(index, int):
            index = [index]
        elif isinstance(index, slice):
            index = list(range(len(self)))[index]
        pick = lambda xs: None if xs is None else [xs[i] for i in index]  # noqa: E731
        return Pointclouds(pick(self._points_list), pick(self._normals_list), pick(self._features_list))

    def isempty(self) -> bool:
        return int(self._num_points.sum()) == 0

    def num_points_per_cloud(self) -> torch.Tensor:
        """`(B,)` int64."""
        return self._num_points

    # list views
    def points_list(self) -> list[torch.Tensor]:
        return self._points_list

    def normals_list(self) -> list[torch.Tensor] | None:
        return self._normals_list

    def features_list(self) -> list[torch.Tensor] | None:
        return self._features_list

    # padded views
    def points_padded(self) -> torch.Tensor:
        """`(B, max P_i, 3)`, zeros past each cloud's length."""
        return list_to_padded(self._points_list) if self._points_list else torch.zeros((0, 0, 3))

    def normals_padded(self) -> torch.Tensor | None:
        return None if self._normals_list is None else list_to_padded(self._normals_list)

    def features_padded(self) -> torch.Tensor | None:
        return None if self._features_list is None else list_to_padded(self._features_list)

    # packed views
    def points_packed(self) -> torch.Tensor:
        """`(sum P_i, 3)`."""
        return torch.cat(self._points_list, dim=0) if self._points_list else torch.zeros((0, 3))

    def normals_packed(self) -> torch.Tensor | None:
        return None if self._normals_list is None else torch.cat(self._normals_list, dim=0)

    def features_packed(self) -> torch.Tensor | None:
        return None if self._features_list is None else torch.cat(self._features_list, dim=0)

    def cloud_to_packed_first_idx(self) -> torch.Tensor:
        """`(B,)` int64 index of each cloud's first point in the packed tensor."""
        return lengths_to_first_idx(self._num_points)

    def packed_to_cloud_idx(self) -> torch.Tensor:
        """`(sum P_i,)` int64 cloud index of every packed point."""
        return lengths_to_packed_idx(self._num_points)

    def to(self, device: torch.device | str) -> "Pointclouds":
        mv = lambda xs: None if xs is None else [x.to(device) for x in xs]  # noqa: E731
        return Pointclouds(mv(self._points_list), mv(self._normals_list), mv(self._features_list))

    def update_padded(self, new_points_padded: torch.Tensor) -> "Pointclouds":
        """A new batch whose points are taken from `(B, P, 3)` (each cloud keeps its length)."""
        pts = padded_to_list(new_points_padded, self._num_points.tolist())
        return Pointclouds(pts, self._normals_list, self._features_list)

    def __repr__(self) -> str:
        return f"Pointclouds(batch={len(self)}, points={self._num_points.tolist()})"
