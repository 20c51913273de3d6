"""Small renders of a prediction beside its ground truth for the report's worst-samples section.

Both meshes are moved by the ground truth's bounding-box normalisation (the default protocol's frame: GT box
to the unit cube centred at the origin, the prediction with the same centre and scale, no rotation), so a
misplaced or mis-scaled prediction looks misplaced, and rendered with `render.render_views` from two orbit
views at a small size (cheap on a CPU: a few ms per mesh at 160 px). Images are PNG data URIs.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import torch

from ..render import orbit_cameras, render_views
from ..structures import Meshes
from ..transforms import bbox_centre_scale, normalize_points

__all__ = ["THUMB_AZIMUTHS", "png_uri", "render_thumbnails"]

THUMB_AZIMUTHS = (30.0, 210.0)  # front-left and back-right: together they show most of a closed surface
THUMB_ELEVATION = 25.0


def png_uri(rgb: torch.Tensor) -> str:
    """An `(H, W, 3)` float image in [0, 1] as a PNG data URI."""
    from PIL import Image

    arr = (rgb.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _normalised(mesh: Meshes, centre: torch.Tensor, scale: torch.Tensor) -> Meshes:
    verts = normalize_points(mesh.verts_list()[0].double()[None], centre, scale)[0].float()
    return Meshes([verts], [mesh.faces_list()[0]], mesh.textures)


def render_thumbnails(pred: Any, gt: Any, size: int = 160) -> dict[str, str | None]:
    """``{"pred": uri | None, "gt": uri | None}``: each mesh from two views side by side, `(size, 2 * size)`.

    pred, gt: single-element `Meshes` (a `Pointclouds` or None gives None: only surfaces are rendered).
    The GT box sets the frame of both (module docstring); without a usable GT the prediction uses its own.
    """
    cams = orbit_cameras(torch.tensor(THUMB_AZIMUTHS), torch.full((2,), THUMB_ELEVATION), 2.6, (size, size), 40.0)
    ref = gt if isinstance(gt, Meshes) and len(gt) == 1 and gt.num_verts_per_mesh()[0] > 0 else None
    if ref is None and isinstance(pred, Meshes) and len(pred) == 1 and pred.num_verts_per_mesh()[0] > 0:
        ref = pred
    if ref is None:
        return {"pred": None, "gt": None}
    try:
        centre, scale = bbox_centre_scale([ref.verts_list()[0].double()], 1.0)
    except ValueError:  # a flat or degenerate box: nothing sensible to frame
        return {"pred": None, "gt": None}
    out: dict[str, str | None] = {}
    for key, mesh in (("pred", pred), ("gt", gt)):
        if not isinstance(mesh, Meshes) or len(mesh) != 1 or int(mesh.num_faces_per_mesh()[0]) == 0:
            out[key] = None
            continue
        with torch.no_grad():
            views = render_views(_normalised(mesh.to("cpu"), centre, scale), cams).rgb[0]  # (2, H, W, 3)
        out[key] = png_uri(torch.cat(list(views), dim=1))
    return out
