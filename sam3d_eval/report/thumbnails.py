"""Small renders of predictions beside their ground truth for the report's worst-samples section.

Frame: every geometry of a sample (the ground truth and its predictions) is moved by the ground truth's
bounding-box normalisation (the default protocol's frame: GT box to the unit cube centred at the origin, each
prediction with the same centre and scale, no rotation), so a misplaced or mis-scaled prediction looks
misplaced. The cameras show the unit cube whole from every view, with a small margin. When a geometry's box
reaches beyond that margin, the frame becomes the union of the unit cube and every geometry's box: a
prediction larger than the ground truth or beside it is shown whole, with the ground truth smaller in the
same frame, so the images of one sample stay comparable. When covering everything would shrink the ground
truth below 1 / `MAX_ZOOM_OUT` of its own frame (a prediction far away or at a very wrong scale), the frame
stays on the ground truth and such a prediction is cut by the image border. Without a usable ground truth
the first usable prediction sets the frame.

Rendering: `render.render_views` from two orbit views at a small size (cheap on a CPU: a few ms per mesh at
160 px). Surfaces are shaded with their vertex colours or UV textures (grey without); point clouds, and
meshes without faces, are drawn as points: every point (at most `MAX_POINTS`, evenly strided) becomes a
small octahedron of `POINT_RADIUS_PX` pixels at the frame's centre, in its colour (``features`` with 1 or 3
channels in [0, 1]) or grey, lit like a surface, from the same cameras. `render_thumbnail_sets` and
`render_thumbnail_batch` render many samples with one rasteriser call per chunk of samples (two when a
chunk mixes UV-textured meshes with others); each image is the same as when its sample is rendered alone.
Images are PNG data URIs.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any, Callable, Sequence

import torch

from ..render import orbit_cameras, render_views
from ..structures import Meshes, Pointclouds, TexturesUV, TexturesVertex
from ..transforms import bbox_centre_scale

__all__ = ["MAX_POINTS", "MAX_ZOOM_OUT", "POINT_RADIUS_PX", "THUMB_AZIMUTHS", "png_uri", "render_thumbnail_batch",
           "render_thumbnail_sets", "render_thumbnails"]

THUMB_AZIMUTHS = (30.0, 210.0)  # front-left and back-right: together they show most of a closed surface
THUMB_ELEVATION = 25.0
THUMB_DISTANCE = 2.6  # the unit cube's bounding sphere (radius sqrt(3)/2) fills the 40 degree view with a margin
THUMB_FOV = 40.0
ALBEDO = (0.7, 0.7, 0.7)  # surfaces and points without colours
MAX_POINTS = 8192  # points drawn per point cloud
POINT_RADIUS_PX = 1.5  # octahedron radius, in pixels at the frame's centre
MAX_ZOOM_OUT = 3.0  # the frame never shrinks the ground truth below a third of its own frame
CHUNK = 8  # samples per rasteriser call (bounds memory: ~25 MiB per sample of three geometries at 160 px)

_UNIT_RADIUS = math.sqrt(3.0) / 2.0
# The sphere about the origin that every view shows whole (tangent to the view cone): a geometry inside it is
# never cut, so the ground truth's frame is kept as it is.
_SAFE_RADIUS = THUMB_DISTANCE * math.sin(math.radians(THUMB_FOV) / 2.0)
# An octahedron around the origin: the vertices +-x, +-y, +-z and eight faces wound outwards.
_OCTA_VERTS = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float32)
_OCTA_FACES = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])


def png_uri(rgb: torch.Tensor) -> str:
    """An `(H, W, 3)` float image in [0, 1] as a PNG data URI."""
    from PIL import Image

    arr = (rgb.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _points_of(geom: Any) -> torch.Tensor | None:
    """The `(P, 3)` vertices or points of a single-element `Meshes` / `Pointclouds`; None when there are none."""
    if isinstance(geom, Meshes) and len(geom) == 1:
        pts = geom.verts_list()[0]
    elif isinstance(geom, Pointclouds) and len(geom) == 1:
        pts = geom.points_list()[0]
    else:
        return None
    return pts if pts.shape[0] > 0 else None


def _colours(features: torch.Tensor | None, n: int) -> torch.Tensor:
    """`(n, 3)` float colours in [0, 1] from 1- or 3+-channel features (grey `ALBEDO` otherwise)."""
    if features is None or features.dim() != 2 or features.shape[0] != n or features.shape[1] not in (1, 3, 4):
        return torch.tensor(ALBEDO, dtype=torch.float32).expand(n, 3)
    f = features.detach().float()
    if features.dtype == torch.uint8:
        f = f / 255.0
    f = f.expand(n, 3) if f.shape[1] == 1 else f[:, :3]
    return f.clamp(0, 1).cpu()


class _Part:
    """One geometry ready to render: framed vertices, faces, and vertex colours or a UV texture."""

    def __init__(self, verts: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor | None = None,
                 uv: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
        self.verts, self.faces, self.colours, self.uv = verts, faces, colours, uv


def _octahedra(points: torch.Tensor, colours: torch.Tensor, radius: float) -> _Part:
    if points.shape[0] > MAX_POINTS:
        keep = torch.linspace(0, points.shape[0] - 1, MAX_POINTS).round().long()
        points, colours = points[keep], colours[keep]
    n = points.shape[0]
    verts = (points[:, None, :] + radius * _OCTA_VERTS[None]).reshape(-1, 3)
    faces = (_OCTA_FACES[None] + 6 * torch.arange(n)[:, None, None]).reshape(-1, 3)
    return _Part(verts, faces, colours.repeat_interleave(6, dim=0))


def _part(geom: Any, centre: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, zoom: float,
          radius: float) -> _Part | None:
    """`geom` moved into the sample's frame: `((x - centre) * scale - shift) * zoom` (identity zoom and shift
    leave today's GT frame bit for bit)."""
    pts = _points_of(geom)
    if pts is None:
        return None
    x = (pts.detach().cpu().double() - centre) * scale
    if zoom != 1.0 or bool(shift.any()):
        x = (x - shift) * zoom
    x = x.float()
    if isinstance(geom, Meshes) and int(geom.num_faces_per_mesh()[0]) > 0:
        faces = geom.faces_list()[0].cpu()
        tex = geom.textures
        if isinstance(tex, TexturesUV):
            return _Part(x, faces, uv=(tex.maps[0].cpu(), tex.faces_uvs[0].cpu(), tex.verts_uvs[0].cpu()))
        feats = tex.verts_features[0] if isinstance(tex, TexturesVertex) else None
        return _Part(x, faces, _colours(feats, x.shape[0]))
    if isinstance(geom, Pointclouds):
        feats = geom.features_list()[0] if geom.features_list() is not None else None
    else:  # a mesh without faces: its vertices as points
        tex = geom.textures
        feats = tex.verts_features[0] if isinstance(tex, TexturesVertex) else None
    return _octahedra(x, _colours(feats, x.shape[0]), radius)


def _frame(geoms: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float] | None:
    """(centre, scale, shift, zoom) of one sample (module docstring); `geoms[0]` is the ground truth."""
    ref = next((p for p in map(_points_of, geoms) if p is not None), None)
    if ref is None:
        return None
    try:
        centre, scale = bbox_centre_scale([ref.detach().cpu().double()], 1.0)
    except ValueError:  # a flat or degenerate box: nothing sensible to frame
        return None
    centre, scale = centre[0], scale[0]
    lo = torch.full((3,), -0.5, dtype=torch.float64)
    hi = torch.full((3,), 0.5, dtype=torch.float64)
    for pts in map(_points_of, geoms):
        if pts is None:
            continue
        x = (pts.detach().cpu().double() - centre) * scale
        x = x[torch.isfinite(x).all(dim=1)]
        if len(x):
            lo, hi = torch.minimum(lo, x.amin(0)), torch.maximum(hi, x.amax(0))
    none = torch.zeros(3, dtype=torch.float64)
    if float(torch.maximum(lo.abs(), hi.abs()).norm()) <= _SAFE_RADIUS:  # nothing reaches the image border
        return centre, scale, none, 1.0
    zoom = _UNIT_RADIUS / float(0.5 * (hi - lo).norm())
    if zoom < 1.0 / MAX_ZOOM_OUT:
        return centre, scale, none, 1.0
    return centre, scale, (lo + hi) / 2, zoom


def _render_parts(parts: list[_Part], cams, device) -> list[str]:
    """PNG URIs of `parts` (two views side by side each): one `render_views` call for the vertex-coloured
    parts and one for the UV-textured ones."""
    out: list[str | None] = [None] * len(parts)
    for uv in (False, True):
        idx = [i for i, p in enumerate(parts) if (p.uv is not None) == uv]
        if not idx:
            continue
        verts = [parts[i].verts.to(device) for i in idx]
        faces = [parts[i].faces.to(device) for i in idx]
        if uv:
            tex = TexturesUV(*[[parts[i].uv[k].to(device) for i in idx] for k in range(3)])
        else:
            tex = TexturesVertex([parts[i].colours.to(device) for i in idx])
        with torch.no_grad():
            rgb = render_views(Meshes(verts, faces, tex), cams).rgb  # (B, 2, H, W, 3)
        for j, i in enumerate(idx):
            out[i] = png_uri(torch.cat(list(rgb[j]), dim=1))
    return out  # type: ignore[return-value]


def render_thumbnail_sets(sets: Sequence[tuple[Sequence[Any], Any]], size: int = 160, *, chunk: int = CHUNK,
                          progress: Callable[[int], Any] | None = None,
                          device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """``[{"preds": [uri | None, ...], "gt": uri | None}]``, one per ``(predictions, gt)`` of `sets`: every
    geometry of a sample from two views side by side, `(size, 2 * size)`, all of that sample in one frame
    (module docstring), so predictions of two models of the same sample can be compared.

    predictions, gt: single-element `Meshes` or `Pointclouds`, or None (gives None). Samples are rendered
    `chunk` at a time, with one rasteriser call per chunk; `progress`, when given, is called after each
    chunk with the number of samples done so far.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    cams = orbit_cameras(torch.tensor(THUMB_AZIMUTHS), torch.full((2,), THUMB_ELEVATION), THUMB_DISTANCE,
                         (size, size), THUMB_FOV, device=device)
    radius = POINT_RADIUS_PX * 2.0 * THUMB_DISTANCE * math.tan(math.radians(THUMB_FOV) / 2.0) / size
    results: list[dict[str, Any]] = []
    for start in range(0, len(sets), chunk):
        parts: list[_Part] = []
        slots: list[list[int | None]] = []  # per sample: gt, then predictions -> index in parts
        for preds, gt in sets[start:start + chunk]:
            geoms = [gt, *preds]
            frame = _frame(geoms)
            row: list[int | None] = []
            for g in geoms:
                p = None if frame is None else _part(g, *frame, radius)
                row.append(None if p is None else len(parts))
                if p is not None:
                    parts.append(p)
            slots.append(row)
        uris = _render_parts(parts, cams, device) if parts else []
        for row in slots:
            got = [None if k is None else uris[k] for k in row]
            results.append({"preds": got[1:], "gt": got[0]})
        if progress is not None:
            progress(len(results))
    return results


def render_thumbnail_batch(pairs: Sequence[tuple[Any, Any]], size: int = 160, *, chunk: int = CHUNK,
                           progress: Callable[[int], Any] | None = None,
                           device: torch.device | str = "cpu") -> list[dict[str, str | None]]:
    """``[{"pred": uri | None, "gt": uri | None}]`` for ``(prediction, gt)`` pairs, as `render_thumbnails`
    gives for each pair alone, with one rasteriser call per `chunk` samples; `progress(done)` after each."""
    out = render_thumbnail_sets([((pred,), gt) for pred, gt in pairs], size, chunk=chunk, progress=progress,
                                device=device)
    return [{"pred": r["preds"][0], "gt": r["gt"]} for r in out]


def render_thumbnails(pred: Any, gt: Any, size: int = 160) -> dict[str, str | None]:
    """``{"pred": uri | None, "gt": uri | None}``: each geometry from two views side by side, `(size, 2 * size)`.

    pred, gt: single-element `Meshes` or `Pointclouds` (None gives None). Both in one frame: the GT's box
    normalisation, widened to cover the prediction (module docstring); without a usable GT the prediction
    uses its own.
    """
    return render_thumbnail_batch([(pred, gt)], size)[0]
