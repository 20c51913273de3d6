"""Axis-aligned bounding-box normalisation: `x -> (x - centre) * scale`, centre the box centre and scale
taking the box's longest side to a chosen length (no rotation, so normals are unchanged)."""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["bbox_centre_scale", "normalize_points"]


def bbox_centre_scale(
    points_list: Sequence[torch.Tensor], side: float = 1.0, *, who: str = "element"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per element: the bounding-box centre `(B, 3)` and the scale `(B,)` = side / longest box side.

    Args:
        points_list: B tensors `(P_i, 3)` (every row a valid point); computed without gradient.
        side: the length the longest side is mapped to (1.0: the box fits [-0.5, 0.5]^3).
        who: how error messages name an element ("ground truth" -> "ground truth 3 ...").

    Raises `ValueError` naming the element when it has no points, NaN or inf coordinates, or a box of zero
    extent (all points coincide), where no scale is defined. Centre and scale are in the points' dtype.
    """
    if not side > 0:
        raise ValueError(f"side must be positive, got {side}")
    centres, scales = [], []
    for i, p in enumerate(points_list):
        if p.dim() != 2 or p.shape[1] != 3:
            raise ValueError(f"{who} {i}: points must be (P, 3), got {tuple(p.shape)}")
        if p.shape[0] == 0:
            raise ValueError(f"{who} {i} is empty (no vertices or points): cannot normalise its bounding box")
        lo, hi = p.detach().amin(0), p.detach().amax(0)
        longest = (hi - lo).max()
        if not bool(torch.isfinite(longest)):
            raise ValueError(f"{who} {i} has NaN or inf coordinates: cannot normalise its bounding box")
        if longest <= 0:
            raise ValueError(
                f"{who} {i} is degenerate (all {p.shape[0]} points coincide, bounding box of zero extent): "
                "cannot normalise its bounding box"
            )
        centres.append((lo + hi) / 2)
        scales.append(side / longest)
    if not centres:
        raise ValueError("bbox_centre_scale needs at least one element")
    return torch.stack(centres), torch.stack(scales)


def normalize_points(points: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """`(points - centre) * scale` in the points' dtype (differentiable w.r.t. points).

    Shapes: points `(P, 3)` with centre `(3,)` and scale `()`, or points `(B, P, 3)` with centre `(B, 3)`
    and scale `(B,)`.
    """
    if points.dim() == 2 and points.shape[1] == 3 and centre.shape == (3,) and scale.dim() == 0:
        return (points - centre.to(points)) * scale.to(points)
    if points.dim() == 3 and points.shape[2] == 3 and centre.shape == (points.shape[0], 3) and scale.shape == (points.shape[0],):
        return (points - centre.to(points)[:, None]) * scale.to(points)[:, None, None]
    raise ValueError(
        "normalize_points needs points (P, 3), centre (3,), scale () or points (B, P, 3), centre (B, 3), "
        f"scale (B,); got {tuple(points.shape)}, {tuple(centre.shape)}, {tuple(scale.shape)}"
    )
