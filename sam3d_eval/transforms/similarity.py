"""Similarity transforms (rotation, translation, uniform scale): one type, one way to apply it.

Row-vector convention of pytorch3d (`corresponding_points_alignment`, `iterative_closest_point`):

    x' = s * x @ R + T        x (B, P, 3), R (B, 3, 3) proper rotation, T (B, 3), s (B,) > 0

so `R` here is the transpose of the column-vector matrix `R_col` of `x' = s R_col x + t`
(`SimilarityTransform(R_col.transpose(-1, -2), t, s)` is the same map).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch

__all__ = ["SimilarityTransform", "apply_similarity_transform"]


class SimilarityTransform(NamedTuple):
    """`x' = s * x @ R + T` for row vectors: R `(B, 3, 3)` (det +1), T `(B, 3)`, s `(B,)` (pytorch3d's convention)."""

    R: torch.Tensor
    T: torch.Tensor
    s: torch.Tensor

    @classmethod
    def identity(
        cls, B: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
    ) -> "SimilarityTransform":
        """B identity transforms (R = I, T = 0, s = 1)."""
        R = torch.eye(3, dtype=dtype, device=device).expand(B, 3, 3).contiguous()
        return cls(R, torch.zeros(B, 3, dtype=dtype, device=device), torch.ones(B, dtype=dtype, device=device))

    def _check(self) -> int:
        R, T, s = self
        B = R.shape[0] if R.dim() == 3 else -1
        if R.shape != (B, 3, 3) or T.shape != (B, 3) or s.shape != (B,):
            raise ValueError(
                "SimilarityTransform needs R (B, 3, 3), T (B, 3), s (B,), got "
                f"{tuple(R.shape)}, {tuple(T.shape)}, {tuple(s.shape)}"
            )
        return B

    def apply(self, points: torch.Tensor) -> torch.Tensor:
        """`(B, P, 3)` points mapped by `s * x @ R + T`, in the points' dtype."""
        B = self._check()
        if points.dim() != 3 or points.shape[0] != B or points.shape[2] != 3:
            raise ValueError(f"points must be ({B}, P, 3) for {B} transforms, got {tuple(points.shape)}")
        R, T, s = self
        return s[:, None, None].to(points.dtype) * torch.bmm(points, R.to(points.dtype)) + T[:, None, :].to(points.dtype)

    def apply_normals(self, normals: torch.Tensor) -> torch.Tensor:
        """`(B, P, 3)` normals mapped by the rotation only, `n @ R` (a positive uniform scale and a
        translation leave directions unchanged); unit normals stay unit."""
        B = self._check()
        if normals.dim() != 3 or normals.shape[0] != B or normals.shape[2] != 3:
            raise ValueError(f"normals must be ({B}, P, 3) for {B} transforms, got {tuple(normals.shape)}")
        return torch.bmm(normals, self.R.to(normals.dtype))

    def compose(self, other: "SimilarityTransform") -> "SimilarityTransform":
        """The transform applying `self` first, then `other` (pytorch3d `Transform3d.compose` order):
        `other.apply(self.apply(x)) == self.compose(other).apply(x)`."""
        self._check()
        other = SimilarityTransform(*other)
        other._check()
        R1, T1, s1 = self
        R2, T2, s2 = (t.to(R1) for t in other)
        return SimilarityTransform(
            torch.bmm(R1, R2), s2[:, None] * torch.bmm(T1[:, None], R2)[:, 0] + T2, s1 * s2
        )

    def inverse(self) -> "SimilarityTransform":
        """The inverse map `x = (x' - T) @ R^T / s`. Needs s != 0."""
        self._check()
        R, T, s = self
        Rt = R.transpose(1, 2)
        return SimilarityTransform(Rt.contiguous(), -torch.bmm(T[:, None], Rt)[:, 0] / s[:, None], 1.0 / s)

    def to_dicts(self) -> list[dict]:
        """One JSON-ready record per element: {"R": 3x3 nested list (row-vector convention), "T": [3], "s": float}."""
        self._check()
        R, T, s = (x.detach().cpu().double() for x in self)
        return [{"R": R[b].tolist(), "T": T[b].tolist(), "s": float(s[b])} for b in range(R.shape[0])]

    @classmethod
    def from_dicts(
        cls, records: Sequence[dict[str, Any]], dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
    ) -> "SimilarityTransform":
        """Inverse of `to_dicts` (extra keys such as "method" are ignored); float64 by default."""
        if len(records) == 0:
            return cls.identity(0, dtype, device)
        try:
            R = torch.tensor([r["R"] for r in records], dtype=dtype, device=device)
            T = torch.tensor([r["T"] for r in records], dtype=dtype, device=device)
            s = torch.tensor([float(r["s"]) for r in records], dtype=dtype, device=device)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"transform records need R (3x3), T (3) and s (a number): {e}") from e
        out = cls(R, T, s)
        out._check()
        return out


def apply_similarity_transform(X: torch.Tensor, transform: SimilarityTransform | Sequence[torch.Tensor]) -> torch.Tensor:
    """`(B, P, 3)` points mapped by `s * X @ R + T`; `transform` is a `SimilarityTransform` or an (R, T, s) tuple."""
    return SimilarityTransform(*transform).apply(X)
