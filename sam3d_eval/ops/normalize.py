"""Joint normalisation of a (prediction, ground truth) pair into the unit cube (the `default` protocol's).

Both sides get the same similarity transform `x -> (x - centre) * scale` with centre = the GT's axis-aligned
bounding-box centre and scale = 1 / the box's longest side, so the GT box fits [-0.5, 0.5]^3 (touching it
along its longest axis) and the prediction keeps its pose and size relative to the GT. No rotation.
"""

from __future__ import annotations

from typing import TypeVar

import torch

from ..structures.meshes import Meshes
from ..structures.pointclouds import Pointclouds
from ..transforms import bbox_centre_scale, normalize_points

Geometry = TypeVar("Geometry", Meshes, Pointclouds, torch.Tensor)


def _point_lists(x: Meshes | Pointclouds | torch.Tensor, name: str) -> list[torch.Tensor]:
    if isinstance(x, Meshes):
        return x.verts_list()
    if isinstance(x, Pointclouds):
        return x.points_list()
    if torch.is_tensor(x):
        if x.dim() == 2 and x.shape[1] == 3:
            return [x]
        if x.dim() == 3 and x.shape[2] == 3:
            return list(x.unbind(0))
        raise ValueError(f"{name}: a tensor must be (V, 3) or (B, V, 3), got {tuple(x.shape)}")
    raise ValueError(f"{name}: expected Meshes, Pointclouds or a tensor, got {type(x).__name__}")


def unit_cube_transform(gt: Meshes | Pointclouds | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre `(B, 3)` and scale `(B,)` that map each GT's bounding box into the unit cube at the origin.

    A `(V, 3)` tensor counts as a batch of one. Raises `ValueError` for a GT with no points, non-finite
    coordinates or a zero-extent box (all points coincide), where no scale is defined
    (`transforms.bbox_centre_scale` with side 1).

    Args:
        gt: `Meshes` (vertices), `Pointclouds` (points), or a float `(V, 3)` / `(B, V, 3)` tensor whose
            every row is a valid point.

    Returns:
        `(centre, scale)`: `(B, 3)` bounding-box centres in the GT's units and `(B,)` scales = 1 / longest
        box side, in the points' dtype, computed without gradient; `x' = (x - centre) * scale`.

    Raises:
        ValueError: if `gt` is not one of the accepted types or shapes, or an element is empty, has NaN/inf
            coordinates or a box of zero extent.
    """
    return bbox_centre_scale(_point_lists(gt, "gt"), 1.0, who="ground truth")


def _apply(x: Geometry, centre: torch.Tensor, scale: torch.Tensor, name: str) -> Geometry:
    lists = _point_lists(x, name)
    if len(lists) != centre.shape[0]:
        raise ValueError(f"{name} has {len(lists)} elements for {centre.shape[0]} ground truths")
    moved = [normalize_points(p, centre[i], scale[i]) for i, p in enumerate(lists)]
    if isinstance(x, Meshes):
        return Meshes(moved, x.faces_list(), x.textures)
    if isinstance(x, Pointclouds):
        # A uniform scale and a translation leave normals unchanged.
        return Pointclouds(moved, x.normals_list(), x.features_list())
    return moved[0] if x.dim() == 2 else torch.stack(moved)


def normalize_to_unit_cube(pred: Geometry, gt: Geometry) -> tuple[Geometry, Geometry, torch.Tensor, torch.Tensor]:
    """Normalise `pred` and `gt` jointly so each GT's bounding box fits the unit cube centred at the origin.

    Args:
        pred, gt: `Meshes`, `Pointclouds` or tensors `(V, 3)` / `(B, V, 3)` (every row a valid point), paired
            by batch position; the two may be of different types.

    Returns:
        `(pred', gt', centre, scale)` with `x' = (x - centre) * scale`; centre `(B, 3)` and scale `(B,)`
        (`(3,)` and `()` for a `(V, 3)` GT tensor). The centre and scale are computed without gradient;
        the transformed coordinates stay differentiable w.r.t. the inputs.

    Raises:
        ValueError: if an input is not one of the accepted types or shapes, `pred` and `gt` hold different
            numbers of elements, or a GT element is empty, has NaN/inf coordinates or a box of zero extent.
    """
    centre, scale = unit_cube_transform(gt)
    pred_n, gt_n = _apply(pred, centre, scale, "pred"), _apply(gt, centre, scale, "gt")
    if torch.is_tensor(gt) and gt.dim() == 2:
        return pred_n, gt_n, centre[0], scale[0]
    return pred_n, gt_n, centre, scale
