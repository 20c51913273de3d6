"""Batched, batch-invariant scoring of predictions against ground truth under a `Protocol` (docs/evaluation.md).

`score_batch` takes a ragged batch of (sample id, prediction, ground truth) and returns one `(B,)` tensor per
metric, each element's transform and its status, in a `BatchScores`. Per element:

1. normalise (`protocols.NORMALIZATIONS`): bounding-box ones act on the vertices before sampling, ZeroShape's
   on the sampled clouds;
2. sample `num_samples` points per surface, from the streams ``(protocol.seed, sample_id, "gt_surface")`` and
   ``(..., "pred_surface")`` of `sam3d_eval.seeding`; a point cloud is shuffled by its stream and cut to
   `num_samples` points when it has more; given a `gt_cache` and each sample's GT content key (`gt_keys`),
   the GT's draws an earlier call made are taken from the cache (`evaluate.gt_cache`; the same numbers);
3. align (`alignment.ALIGNMENTS`) on `align_points` points spread evenly over each sample (mesh samples come
   in face order, `sample_points_from_meshes(face_order=True)`; the subset is deterministic, so the
   "align_subset" role draws nothing), then map the whole prediction (and its normals) by the transform;
4. one nearest-neighbour query per direction (`ScoringContext.to_gt` / `to_pred`), shared by every metric
   of `METRIC_FUNCTIONS` that needs it; volume IoU on the normalised, aligned meshes; EMD on subsamples
   from the stream ``(..., "emd")``; the visibility split (protocol metric "visibility") labels the GT
   samples from the sample's input camera (`cameras`, `masks`; `ops.visibility.point_visibility`, in the GT's
   own frame) and splits the same nearest-neighbour distances by label.

Batch invariance: every draw depends only on (seed, sample id, role), and on the CPU each element runs
through steps 3-4 on its own (the KD-tree engine is per element anyway, so this costs nothing), so a
sample's numbers are bitwise the same alone, in any batch and in any order. On a GPU the ok elements run as
one padded batch (equal to float rounding, not bitwise). A bad element (an exception or None in place of a
structure, no faces, NaN coordinates, a degenerate box, a failure of any step, appearance included) becomes a
failed row with its reason; the other rows are unaffected. A step that runs on the whole batch at once (a
padded GPU group, the appearance renders) and raises is run again element by element, so only the element
that raises fails. `failed_scores` and `concat_scores` let a caller do the same around its own batched steps
(the runner, around a source's `finish` and `score_batch` itself).

Adding a metric: write `fn(ctx: ScoringContext) -> dict[column, (G,) tensor]` and register it in
`METRIC_FUNCTIONS` under a name listed in `protocols.METRICS`.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..ops.alignment import align
from ..metrics.emd import earth_movers_distance
from ..metrics.fscore import f_score_from_dists
from ..metrics.normal_consistency import normal_consistency_from_idx
from ..metrics.volume_iou import volume_iou
from ..ops.knn import KNN, knn_points
from ..ops.sample_points import sample_points_from_meshes
from ..ops.visibility import VISIBILITY_LABELS, point_visibility
from ..seeding import stream_seed, torch_generator
from ..structures.meshes import Meshes
from ..structures.pointclouds import Pointclouds
from ..transforms import SimilarityTransform, bbox_centre_scale, normalize_points
from .gt_cache import GTSampleCache, GTSamples
from .protocols import APPEARANCE_METRICS, INPUT_VIEW_METRICS, METRICS, VISIBILITY_PARTS, Protocol, get_protocol

__all__ = [
    "BatchScores",
    "InputCamera",
    "METRIC_FUNCTIONS",
    "ScoringContext",
    "concat_scores",
    "failed_scores",
    "metric_names",
    "score_batch",
]

Geometry = Meshes | Pointclouds
NO_PREDICTION = "no prediction for this sample"
NO_GROUND_TRUTH = "no ground truth for this sample"
NO_CAMERA = "the manifest row has no camera"
NO_MASK = "the manifest row has no mask"
assert VISIBILITY_PARTS == VISIBILITY_LABELS, "protocols.VISIBILITY_PARTS names the labels of ops.visibility"


@dataclass(frozen=True)
class InputCamera:
    """The camera of a sample's input image, in the frame of its GT mesh (a manifest row's ``camera``).

    OpenCV convention: ``x_cam = R x + T`` maps GT-mesh coordinates to camera coordinates (x right, y down,
    z forward), ``[u, v, 1] ~ K x_cam`` in pixels, pixel ``(r, c)`` centred at ``(c + 0.5, r + 0.5)``.
    K `(3, 3)`, R `(3, 3)` (a rotation), T `(3,)`: float64 CPU tensors; image_size `(H, W)` in pixels.
    """

    K: torch.Tensor
    R: torch.Tensor
    T: torch.Tensor
    image_size: tuple[int, int]

    @classmethod
    def parse(cls, camera: Mapping[str, Any] | str) -> InputCamera:
        """The camera a manifest row's ``camera`` (a JSON object, or its text) describes.

        Args:
            camera: a mapping (or its JSON text) with ``K`` (3x3 intrinsics: ``K[1][0] = 0`` and last row
                ``0 0 1``, focal lengths > 0), ``R`` (3x3 rotation, det +1, within 1e-3), ``T`` (3 numbers) and
                ``image_size`` ``[H, W]`` (positive integers); other keys are ignored.

        Returns:
            The `InputCamera`.

        Raises:
            ValueError: one line naming the key and the problem.
        """
        if isinstance(camera, str):
            try:
                camera = json.loads(camera)
            except json.JSONDecodeError as err:
                raise ValueError(f"not valid JSON ({err.msg})") from None
        if not isinstance(camera, Mapping):
            raise ValueError(f"must be a JSON object, got {type(camera).__name__}")
        missing = [k for k in ("K", "R", "T", "image_size") if k not in camera]
        if missing:
            raise ValueError(f"no {', '.join(missing)} (needs K, R, T and image_size)")
        out = {}
        for key, shape in (("K", (3, 3)), ("R", (3, 3)), ("T", (3,))):
            try:
                t = torch.as_tensor(camera[key], dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"{key} must be numbers of shape {shape}") from None
            if tuple(t.shape) != shape or not bool(torch.isfinite(t).all()):
                raise ValueError(f"{key} must be finite numbers of shape {shape}, got shape {tuple(t.shape)}")
            out[key] = t
        K, R = out["K"], out["R"]
        if not (K[0, 0] > 0 and K[1, 1] > 0 and K[1, 0] == 0 and K[2].tolist() == [0.0, 0.0, 1.0]):
            raise ValueError(f"K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, got {K.tolist()}")
        if not (torch.allclose(R @ R.T, torch.eye(3, dtype=torch.float64), atol=1e-3) and torch.det(R) > 0):
            raise ValueError("R must be a rotation (orthonormal, det +1)")
        size = camera["image_size"]
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in size)):
            raise ValueError(f"image_size must be [H, W], two positive integers, got {size!r}")
        return cls(K, R, out["T"], (int(size[0]), int(size[1])))

    def in_frame(self, centre: torch.Tensor, scale: torch.Tensor) -> InputCamera:
        """The same camera for coordinates normalised as ``x' = (x - centre) * scale`` (a protocol's frame).

        Camera coordinates scaled by `scale` project to the same pixels, so this is a rigid camera with
        ``T' = scale * (R @ centre + T)``: renders and pixel coordinates are the GT frame's.

        Args:
            centre: `(3,)`; scale: `()` positive, as `BatchScores.transforms`' ``gt_normalization``.

        Returns:
            An `InputCamera` with the same K, R and image size.
        """
        c = centre.detach().to("cpu", torch.float64).reshape(3)
        k = float(scale)
        return InputCamera(self.K, self.R, k * (self.R @ c + self.T), self.image_size)


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or (isinstance(x, str) and not x.strip())


def _reason(err: BaseException) -> str:
    # File errors name the file and the problem; anything else keeps its type.
    return str(err) if isinstance(err, (ValueError, OSError)) and str(err) else _message(err)


def _input_camera(camera: Any) -> InputCamera | str:
    """A row's camera, or why there is none (for the notes)."""
    if isinstance(camera, InputCamera):
        return camera
    if _missing(camera):
        return NO_CAMERA
    if isinstance(camera, BaseException):
        return f"the camera could not be read ({_reason(camera)})"
    try:
        return InputCamera.parse(camera)
    except ValueError as err:
        return f"camera: {err}"


def _input_mask(mask: Any, camera: InputCamera | str) -> torch.Tensor | str:
    """A row's visible mask as `(H, W)` bool, or why there is none."""
    if mask is None:
        return NO_MASK
    if isinstance(mask, BaseException):
        return f"the mask could not be read ({_reason(mask)})"
    m = torch.as_tensor(mask)
    if m.dim() == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.dim() != 2:
        return f"the mask must be one channel (H, W), got shape {tuple(m.shape)}"
    if isinstance(camera, InputCamera) and tuple(m.shape) != camera.image_size:
        H, W = camera.image_size
        return f"the mask is {m.shape[0]}x{m.shape[1]} pixels (HxW) but the camera's image_size is {H}x{W}"
    return m > 0


@dataclass
class BatchScores:
    """Scores of a batch of B samples, column by column.

    sample_ids, status ("ok" | "failed"), error (None when ok), transforms (None when failed), notes
    (why a metric is NaN for an ok row, or what was done differently), pred_kind ("mesh" | "pointcloud" |
    what the caller passed, None when unknown): lists of length B.
    metrics: column name -> `(B,)` float64 CPU tensor, NaN where the row failed or the metric is unavailable.
    transforms: per row ``{"pred_normalization": {"centre": [3], "scale": s}, "gt_normalization": {...},
    "alignment": {"method", "R", "T", "s", ...}}``: raw prediction -> normalised `(x - centre) * scale`,
    then the alignment `s * x @ R + T` (row vectors, `transforms.SimilarityTransform`).
    """

    sample_ids: list[str]
    status: list[str]
    error: list[str | None]
    metrics: dict[str, torch.Tensor]
    transforms: list[dict | None]
    notes: list[list[str]]
    pred_kind: list[str | None]

    def __len__(self) -> int:
        return len(self.sample_ids)

    def rows(self) -> list[dict[str, Any]]:
        """One flat JSON-ready dict per element: sample_id, status, error, pred_kind, every metric (float,
        NaN when unavailable), transform and notes.

        Returns:
            List of B dicts in batch order; metric values are Python floats (NaN kept as NaN), `transform` is
            the row's transform dict (None when failed) and `notes` a fresh list of str.
        """
        cols = {k: v.tolist() for k, v in self.metrics.items()}
        out = []
        for b, sid in enumerate(self.sample_ids):
            row: dict[str, Any] = {"sample_id": sid, "status": self.status[b], "error": self.error[b],
                                   "pred_kind": self.pred_kind[b]}
            row.update({k: float(v[b]) for k, v in cols.items()})
            row["transform"] = self.transforms[b]
            row["notes"] = list(self.notes[b])
            out.append(row)
        return out


# ----------------------------------------------------------------------------------------------------
# per-element preparation: normalise and sample


@dataclass
class _Element:
    """One sample after normalisation and sampling (single-element tensors, no batch dimension)."""

    index: int
    sample_id: str
    pred: Geometry  # normalised (vertex-level normalisations) one-element structures
    gt: Geometry
    pred_cs: tuple[torch.Tensor, torch.Tensor]  # centre (3,), scale ()
    gt_cs: tuple[torch.Tensor, torch.Tensor]
    pr_pts: torch.Tensor  # (P, 3)
    pr_nrm: torch.Tensor | None
    gt_pts: torch.Tensor  # (G, 3)
    gt_nrm: torch.Tensor | None
    camera: InputCamera | str = NO_CAMERA  # the input camera in the GT's frame, or why there is none
    mask: torch.Tensor | str = NO_MASK  # (H, W) bool visible mask, or why there is none


def _points(x: Geometry) -> torch.Tensor:
    return x.verts_list()[0] if isinstance(x, Meshes) else x.points_list()[0]


def _check_input(x: Any, who: str) -> Geometry:
    if not isinstance(x, (Meshes, Pointclouds)):
        raise ValueError(f"the {who} must be Meshes or Pointclouds, got {type(x).__name__}")
    if len(x) != 1:
        raise ValueError(f"the {who} must hold one element, got {len(x)}")
    p = _points(x)
    if p.shape[0] == 0:
        raise ValueError(f"the {who} is empty (no vertices or points)")
    if not bool(torch.isfinite(p).all()):
        raise ValueError(f"the {who} has NaN or inf coordinates")
    if isinstance(x, Meshes):
        faces = x.faces_list()[0]
        if faces.shape[0] == 0:
            raise ValueError(f"the {who} mesh has no faces: no surface to sample")
    return x


def _move(x: Geometry, centre: torch.Tensor, scale: torch.Tensor) -> Geometry:
    """`(p - centre) * scale`; normals unchanged (no rotation, positive scale)."""
    moved = [normalize_points(_points(x), centre, scale)]
    if isinstance(x, Meshes):
        return Meshes(moved, x.faces_list(), x.textures)
    return Pointclouds(moved, x.normals_list(), x.features_list())


def _bbox(x: Geometry, side: float, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        c, s = bbox_centre_scale([_points(x)], side, who=who)
    except ValueError as err:  # the one-element list's index means nothing to the caller
        raise ValueError(str(err).replace(f"{who} 0", f"the {who}", 1)) from None
    return c[0], s[0]


def _identity_cs(x: Geometry) -> tuple[torch.Tensor, torch.Tensor]:
    p = _points(x)
    return p.new_zeros(3), p.new_ones(())


def _normalize(pred: Geometry, gt: Geometry, how: str):
    """Vertex-level normalisations; returns moved pred, gt and both (centre, scale)."""
    if how in ("gt_bbox_unit_cube", "gt_bbox_longest_10"):
        c, s = _bbox(gt, 1.0 if how == "gt_bbox_unit_cube" else 10.0, "ground truth")
        return _move(pred, c, s), _move(gt, c, s), (c, s), (c, s)
    if how == "each_bbox_minus1_1":
        cp, sp = _bbox(pred, 2.0, "prediction")
        cg, sg = _bbox(gt, 2.0, "ground truth")
        return _move(pred, cp, sp), _move(gt, cg, sg), (cp, sp), (cg, sg)
    return pred, gt, _identity_cs(pred), _identity_cs(gt)  # none, or done on the samples


def _sample(x: Geometry, n: int, seed: int, sample_id: str, role: str, who: str):
    """Points `(P, 3)` and normals `(P, 3)` or None, drawn from the stream (seed, sample_id, role)."""
    p = _points(x)
    gen = torch_generator(seed, sample_id, role, device=p.device)
    if isinstance(x, Meshes):
        # Face-ordered samples: coherent KD-tree queries (every metric here is order-free).
        pts, nrm = sample_points_from_meshes(x, n, return_normals=True, generator=gen, face_order=True)
        # A mesh of zero total area is zero-filled by the sampler (a sampled face always has a unit normal).
        if n and not bool(nrm[0, 0].any()):
            raise ValueError(f"the {who} mesh has zero surface area (all {x.faces_list()[0].shape[0]} faces degenerate): no surface to sample")
        return pts[0], nrm[0]
    keep = torch.randperm(p.shape[0], generator=gen, device=p.device)[:n]
    normals = x.normals_list()
    return p[keep], None if normals is None else normals[0][keep]


def _mean_xy_normalize(pts: torch.Tensor, who: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ZeroShape's normalize_pc of one cloud `(P, 3)`: centre at the mean, divide by max(x extent, y extent)."""
    centre = pts.mean(0)
    side = (pts.amax(0) - pts.amin(0))[:2].amax()
    if not bool(side > 0):
        raise ValueError(f"the sampled {who} has zero x and y extent: cannot normalise (each_mean_xy_extent)")
    scale = 1.0 / side
    return (pts - centre) * scale, centre, scale


def _prepare(index: int, sample_id: str, pred: Geometry, gt: Geometry, protocol: Protocol,
             gt_cache: GTSampleCache | None = None, gt_key: Any = None) -> _Element:
    pred, gt = _check_input(pred, "prediction"), _check_input(gt, "ground truth")
    if pred.device != gt.device:
        raise ValueError(f"prediction on {pred.device} and ground truth on {gt.device}: put both on one device")
    key = None if gt_cache is None else gt_cache.key(gt_key, sample_id, protocol.fingerprint())
    with torch.no_grad():
        pred_n, gt_n, pred_cs, gt_cs = _normalize(pred, gt, protocol.normalization)
        n, seed = protocol.num_samples, protocol.seed
        hit = None if key is None else gt_cache.get(key, gt)  # the draws below, made by an earlier run
        if hit is None:
            gt_pts, gt_nrm = _sample(gt_n, n, seed, sample_id, "gt_surface", "ground truth")
        else:
            gt_pts, gt_nrm = hit.points, hit.normals
        pr_pts, pr_nrm = _sample(pred_n, n, seed, sample_id, "pred_surface", "prediction")
        if protocol.normalization == "each_mean_xy_extent":
            pr_pts, *pred_cs = _mean_xy_normalize(pr_pts, "prediction")
            if hit is None:
                gt_pts, *gt_cs = _mean_xy_normalize(gt_pts, "ground truth")
            else:
                gt_cs = [hit.centre, hit.scale]
            pred_n, gt_n = _move(pred_n, *pred_cs), _move(gt_n, *gt_cs)
        if key is not None and hit is None:
            on_samples = protocol.normalization == "each_mean_xy_extent"  # else the GT's box gives them again
            gt_cache.put(key, gt, GTSamples(gt_pts, gt_nrm, *(gt_cs if on_samples else (None, None))))
    return _Element(index, sample_id, pred_n, gt_n, tuple(pred_cs), tuple(gt_cs), pr_pts, pr_nrm, gt_pts, gt_nrm)


# ----------------------------------------------------------------------------------------------------
# the shared context and the metric registry


def _pad(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`(G, P, 3)` zero-padded and `(G,)` lengths, or None lengths when every element is full."""
    if len(tensors) == 1:
        return tensors[0][None], None
    lengths = [t.shape[0] for t in tensors]
    P = max(lengths)
    if all(n == P for n in lengths):
        return torch.stack(tensors), None
    out = torch.stack([torch.nn.functional.pad(t, (0, 0, 0, P - t.shape[0])) for t in tensors])
    return out, torch.tensor(lengths, dtype=torch.int64, device=out.device)


def _masked_mean(d: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    # knn_points zero-fills rows past the lengths, so a plain sum over the padded rows is the masked sum.
    return d.mean(1) if lengths is None else d.sum(1) / lengths.clamp(min=1).to(d.dtype)


@dataclass
class ScoringContext:
    """What every metric function sees for a group of G elements, in the protocol's aligned frame.

    pred_points `(G, P, 3)` (aligned), pred_lengths `(G,)` or None (all full), pred_normals `(G, P, 3)` or
    None; the same for gt; pred_meshes / gt_meshes: per element the normalised (and for the prediction,
    aligned) `Meshes`, or None for a point cloud. `to_gt` / `to_pred` are the nearest-neighbour queries,
    computed once on first use. `note(g, text)` attaches a note to element g. gt_frames: per element the
    GT's normalisation (centre `(3,)`, scale `()`: normalised = (raw - centre) * scale); cameras / masks: per
    element its `InputCamera` in the GT's raw frame and `(H, W)` bool visible mask, or a str saying why there
    is none (the visibility split).
    """

    protocol: Protocol
    sample_ids: list[str]
    pred_points: torch.Tensor
    pred_lengths: torch.Tensor | None
    pred_normals: torch.Tensor | None
    gt_points: torch.Tensor
    gt_lengths: torch.Tensor | None
    gt_normals: torch.Tensor | None
    pred_meshes: list[Meshes | None]
    gt_meshes: list[Meshes | None]
    notes: list[list[str]] = field(default_factory=list)
    gt_frames: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    cameras: list[InputCamera | str] = field(default_factory=list)
    masks: list[torch.Tensor | str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def note(self, g: int, text: str) -> None:
        """Attach a note to one element of the group (it ends up in that row's `notes`).

        Args:
            g: element index in the group, 0 <= g < G.
            text: the note, e.g. why a metric is NaN for that element.

        Returns:
            None.

        Raises:
            IndexError: `g` is out of range.
        """
        self.notes[g].append(text)

    @functools.cached_property
    def to_gt(self) -> KNN:
        """Nearest GT point of every predicted point (K=1).

        Returns:
            `KNN` with `dists` `(G, P, 1)` squared Euclidean distances (normalised units squared, dtype of the
            points), `idx` `(G, P, 1)` int64 into `gt_points` and `knn` None; padded rows hold 0 and index 0.
            Computed on first access, then cached.
        """
        return knn_points(self.pred_points, self.gt_points, self.pred_lengths, self.gt_lengths, K=1)

    @functools.cached_property
    def to_pred(self) -> KNN:
        """Nearest predicted point of every GT point (K=1).

        Returns:
            `KNN` with `dists` `(G, M, 1)` squared Euclidean distances (normalised units squared, dtype of the
            points), `idx` `(G, M, 1)` int64 into `pred_points` and `knn` None; padded rows hold 0 and index 0.
            Computed on first access, then cached.
        """
        return knn_points(self.gt_points, self.pred_points, self.gt_lengths, self.pred_lengths, K=1)

    def nan(self) -> torch.Tensor:
        """A column of NaN for metrics that are unavailable for the whole group.

        Returns:
            `(G,)` float64 CPU tensor of NaN.
        """
        return torch.full((len(self),), math.nan, dtype=torch.float64)


MetricFunction = Callable[[ScoringContext], dict[str, torch.Tensor]]


def _chamfer(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    d_pg, d_gp = ctx.to_gt.dists[..., 0], ctx.to_pred.dists[..., 0]
    pl, gl, variants = ctx.pred_lengths, ctx.gt_lengths, ctx.protocol.chamfer
    cols: dict[str, torch.Tensor] = {}
    m2_pg, m2_gp = _masked_mean(d_pg, pl), _masked_mean(d_gp, gl)
    if "chamfer_l2_p3d" in variants:
        cols["chamfer_l2"] = m2_pg + m2_gp
    if {"chamfer_l1", "occnet"} & set(variants):
        l1 = 0.5 * (_masked_mean(d_pg.sqrt(), pl) + _masked_mean(d_gp.sqrt(), gl))
        if "chamfer_l1" in variants:
            cols["chamfer_l1"] = l1
        if "occnet" in variants:
            cols["chamfer_l1_occnet"] = l1
            cols["chamfer_l2_occnet"] = 0.5 * (m2_pg + m2_gp)
    return cols


def _fscore(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    taus = ctx.protocol.taus
    fs = f_score_from_dists(ctx.to_gt.dists[..., 0], ctx.to_pred.dists[..., 0], taus, ctx.pred_lengths, ctx.gt_lengths)
    cols = {}
    for t, tau in enumerate(taus):
        cols[f"fscore@{tau:g}"] = fs.fscore[:, t]
        cols[f"precision@{tau:g}"] = fs.precision[:, t]
        cols[f"recall@{tau:g}"] = fs.recall[:, t]
    return cols


def _normal_consistency(name: str, absolute: bool) -> MetricFunction:
    def fn(ctx: ScoringContext) -> dict[str, torch.Tensor]:
        if ctx.pred_normals is None or ctx.gt_normals is None:
            who = "prediction" if ctx.pred_normals is None else "ground truth"
            for g in range(len(ctx)):
                ctx.note(g, f"{name} unavailable: the {who} is a point cloud without normals")
            return {name: ctx.nan()}
        value = normal_consistency_from_idx(
            ctx.pred_normals, ctx.gt_normals, ctx.to_gt.idx[..., 0], ctx.to_pred.idx[..., 0],
            ctx.pred_lengths, ctx.gt_lengths, absolute=absolute,
        )
        return {name: value}

    return fn


_PADDED_UNIT_CUBE = ((-0.55, -0.55, -0.55), (0.55, 0.55, 0.55))


def _volume_iou(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    p = ctx.protocol
    out = ctx.nan()
    ok = [g for g in range(len(ctx)) if ctx.pred_meshes[g] is not None and ctx.gt_meshes[g] is not None]
    for g in range(len(ctx)):
        if g not in ok:
            ctx.note(g, "volume_iou unavailable: it needs a mesh prediction and a mesh ground truth")
    if not ok:
        return {"volume_iou": out}
    pred = [(ctx.pred_meshes[g].verts_list()[0], ctx.pred_meshes[g].faces_list()[0]) for g in ok]
    gt = [(ctx.gt_meshes[g].verts_list()[0], ctx.gt_meshes[g].faces_list()[0]) for g in ok]
    bounds = None
    if p.volume_bounds == "padded_unit_cube":
        bounds = torch.tensor(_PADDED_UNIT_CUBE, dtype=torch.float64, device=pred[0][0].device)
    res = volume_iou(pred, gt, p.voxel_resolution, p.volume_method, bounds=bounds)
    out[ok] = res.iou.detach().double().cpu()
    per_notes = getattr(res, "notes", None)  # per-element notes of the volume kernel, when it gives them
    if per_notes is not None:
        for j, g in enumerate(ok):
            for text in per_notes[j] or ():
                ctx.note(g, f"volume_iou: {text}")
    return {"volume_iou": out}


def _emd(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    G, P = ctx.pred_points.shape[:2]
    M = ctx.gt_points.shape[1]
    pl = [P] * G if ctx.pred_lengths is None else ctx.pred_lengths.tolist()
    gl = [M] * G if ctx.gt_lengths is None else ctx.gt_lengths.tolist()
    values = [
        earth_movers_distance(
            ctx.pred_points[g : g + 1, : pl[g]], ctx.gt_points[g : g + 1, : gl[g]],
            num_points=ctx.protocol.emd_points, seed=stream_seed(ctx.protocol.seed, sid, "emd"),
        )[0]
        for g, sid in enumerate(ctx.sample_ids)
    ]
    return {"emd": torch.stack(values)}


def _visibility(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    """The visibility split (docs/definitions.md, "Visible and hidden surfaces"): the GT samples labelled by
    `point_visibility` in the GT's raw frame, then the shared nearest-neighbour distances averaged per label."""
    p = ctx.protocol
    cols = {c: ctx.nan() for c in p.visibility_columns()}
    tau = max(p.taus) if p.taus else None
    G, P = ctx.pred_points.shape[:2]
    M = ctx.gt_points.shape[1]
    pl = [P] * G if ctx.pred_lengths is None else ctx.pred_lengths.tolist()
    gl = [M] * G if ctx.gt_lengths is None else ctx.gt_lengths.tolist()
    for g in range(G):
        camera, mask, gt = ctx.cameras[g], ctx.masks[g], ctx.gt_meshes[g]
        reason = camera if isinstance(camera, str) else mask if isinstance(mask, str) else None
        if reason is None and gt is None:
            reason = "it needs a mesh ground truth"
        if reason is not None:
            ctx.note(g, f"visibility unavailable: {reason}")
            continue
        n, m = gl[g], pl[g]
        centre, scale = ctx.gt_frames[g]
        # Labels in the GT's own frame, where the camera is defined (undo the protocol's normalisation).
        pts = ctx.gt_points[g, :n] / scale + centre
        verts = gt.verts_list()[0] / scale + centre
        normals = None if ctx.gt_normals is None else ctx.gt_normals[g, :n]
        vis = point_visibility(pts, verts, gt.faces_list()[0], camera.K, camera.R, camera.T, camera.image_size,
                               normals=normals, mask=mask)
        labels = vis.labels
        d_gp = ctx.to_pred.dists[g, :n, 0].detach().double()
        d_pg = ctx.to_gt.dists[g, :m, 0].detach().double()
        nearest = labels[ctx.to_gt.idx[g, :m, 0]]
        counts = torch.bincount(labels, minlength=len(VISIBILITY_PARTS)).tolist()
        shares = ", ".join(f"{part} {c / n:.4f}" for part, c in zip(VISIBILITY_PARTS, counts))
        outside = int((~vis.in_image).sum())
        ctx.note(g, f"visibility shares of the {n} GT samples: {shares}"
                 + (f" ({outside} outside the image)" if outside else ""))
        for k, part in enumerate(VISIBILITY_PARTS):
            if not counts[k]:
                extra = ", chamfer_acc_visible included" if part == "visible" else ""
                ctx.note(g, f"visibility: no {part} GT sample: its columns{extra} are NaN")
                continue
            part_d = d_gp[labels == k]
            cols[f"chamfer_comp_{part}"][g] = float(part_d.mean())
            if tau is not None:
                cols[f"recall@{tau:g}_{part}"][g] = float((part_d.clamp(min=0).sqrt() < tau).double().mean())
        if counts[0]:
            acc = d_pg[nearest == 0]
            if acc.numel():
                cols["chamfer_acc_visible"][g] = float(acc.mean())
            else:
                ctx.note(g, "visibility: no predicted point has a visible nearest GT sample: chamfer_acc_visible is NaN")
    return cols


METRIC_FUNCTIONS: dict[str, MetricFunction] = {
    "chamfer": _chamfer,
    "fscore": _fscore,
    "normal_consistency": _normal_consistency("normal_consistency", True),
    "normal_consistency_signed": _normal_consistency("normal_consistency_signed", False),
    "volume_iou": _volume_iou,
    "emd": _emd,
    "visibility": _visibility,
}
assert set(METRIC_FUNCTIONS) == set(METRICS), "every protocols.METRICS name needs its function here"


# ----------------------------------------------------------------------------------------------------
# one group of prepared elements


@dataclass
class _GroupResult:
    columns: dict[str, torch.Tensor]  # (G,) each
    alignment: list[dict]
    notes: list[list[str]]
    pred_meshes: list[Meshes | None]  # in the protocol's aligned frame, for appearance
    gt_meshes: list[Meshes | None]


def _spread_subset(pts: torch.Tensor, lengths: torch.Tensor | None, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """At most `k` points per element, spread evenly over its valid points (mesh samples come ordered by
    face, so a prefix would cover only part of the surface); returns points `(B, min(P, k), 3)` and lengths."""
    B, P, _ = pts.shape
    if P <= k:
        return pts, lengths
    n = torch.full((B,), P, dtype=torch.int64, device=pts.device) if lengths is None else lengths
    j = torch.arange(k, device=pts.device)[None]
    idx = torch.where(n[:, None] > k, (j * n[:, None]) // k, j)  # (B, k), < n where n > k
    sub = torch.gather(pts, 1, idx[..., None].expand(-1, -1, 3))
    return sub, None if lengths is None else lengths.clamp(max=k)


def _aligned_mesh(x: Geometry, transform: SimilarityTransform, g: int) -> Meshes | None:
    if not isinstance(x, Meshes):
        return None
    one = SimilarityTransform(*(t[g : g + 1] for t in transform))
    verts = one.apply(x.verts_list()[0][None])[0]
    return Meshes([verts], x.faces_list(), x.textures)


def _score_group(elements: list[_Element], protocol: Protocol) -> _GroupResult:
    p = protocol
    with torch.no_grad():
        pr_pts, pl = _pad([e.pr_pts for e in elements])
        gt_pts, gl = _pad([e.gt_pts for e in elements])
        pr_nrm = None if any(e.pr_nrm is None for e in elements) else _pad([e.pr_nrm for e in elements])[0]
        gt_nrm = None if any(e.gt_nrm is None for e in elements) else _pad([e.gt_nrm for e in elements])[0]
        pr_sub, pl_sub = _spread_subset(pr_pts, pl, p.align_points)
        gt_sub, gl_sub = _spread_subset(gt_pts, gl, p.align_points)
        al = align(
            pr_sub, gt_sub, p.alignment, pl_sub, gl_sub,
            max_iterations=p.icp_iterations, relative_rmse_thr=p.icp_tolerance, rotations=p.rotations,
        )
        transform = SimilarityTransform(*al.transform)
        if p.alignment != "none":
            pr_pts = transform.apply(pr_pts)
            if pr_nrm is not None:
                pr_nrm = transform.apply_normals(pr_nrm)
        pred_meshes = [
            e.pred if p.alignment == "none" or not isinstance(e.pred, Meshes) else _aligned_mesh(e.pred, transform, g)
            for g, e in enumerate(elements)
        ]
        pred_meshes = [m if isinstance(m, Meshes) else None for m in pred_meshes]
        gt_meshes = [e.gt if isinstance(e.gt, Meshes) else None for e in elements]
        ctx = ScoringContext(
            p, [e.sample_id for e in elements], pr_pts, pl, pr_nrm, gt_pts, gl, gt_nrm, pred_meshes, gt_meshes,
            [[] for _ in elements], [e.gt_cs for e in elements], [e.camera for e in elements],
            [e.mask for e in elements],
        )
        columns: dict[str, torch.Tensor] = {}
        for name in p.metrics:
            for col, value in METRIC_FUNCTIONS[name](ctx).items():
                columns[col] = value.detach().to("cpu", torch.float64)
    return _GroupResult(columns, al.to_dicts(), ctx.notes, pred_meshes, gt_meshes)


def _groups(elements: list[_Element]) -> list[list[_Element]]:
    """CPU: one element per group (bitwise batch invariance, no padding work); other devices: one group per
    device (padded batches)."""
    out: dict[Any, list[_Element]] = {}
    singles = []
    for e in elements:
        dev = e.pr_pts.device
        if dev.type == "cpu":
            singles.append([e])
        else:
            out.setdefault(str(dev), []).append(e)
    return singles + list(out.values())


def _message(err: BaseException) -> str:
    if isinstance(err, ValueError):
        return str(err)
    return f"{type(err).__name__}: {err}"


def _kind(x: Any) -> str | None:
    return "mesh" if isinstance(x, Meshes) else "pointcloud" if isinstance(x, Pointclouds) else None


def _transform_record(e: _Element, alignment: dict) -> dict:
    return {
        "pred_normalization": {"centre": e.pred_cs[0].detach().double().cpu().tolist(), "scale": float(e.pred_cs[1])},
        "gt_normalization": {"centre": e.gt_cs[0].detach().double().cpu().tolist(), "scale": float(e.gt_cs[1])},
        "alignment": alignment,
    }


def score_batch(
    sample_ids: Sequence[str],
    preds: Sequence[Geometry | BaseException | None],
    gts: Sequence[Geometry | BaseException | None],
    protocol: Protocol | str = "default",
    *,
    appearance: Any | None = None,
    pred_kinds: Sequence[str | None] | None = None,
    cameras: Sequence[Mapping[str, Any] | str | InputCamera | BaseException | None] | None = None,
    masks: Sequence[Any] | None = None,
    gt_keys: Sequence[str | None] | None = None,
    gt_cache: GTSampleCache | None = None,
) -> BatchScores:
    """Score B predictions against their ground truths under `protocol`; never raises for a bad element.

    Args:
        sample_ids: B ids, distinct after `str()`; they key every random stream of their sample.
        preds: per sample a one-element `Meshes` or `Pointclouds`, or an exception (a failed load: the row
            fails with its message) or None (fails with "no prediction for this sample").
        gts: per sample a one-element `Meshes` (or `Pointclouds`), an exception or None, as `preds`.
        protocol: a `Protocol` or a preset name. Default "default".
        appearance: an `evaluate.appearance.AppearanceScorer`: also LPIPS / PSNR / SSIM / silhouette IoU of
            renders of each ok (mesh, mesh) pair in the protocol's aligned frame, LPIPS batched over the batch,
            and PSNR / SSIM / silhouette IoU from the input camera (``*_input``; NaN with a note without
            `cameras`). None (default) computes no appearance columns. A pair whose renders raise becomes a
            failed row (its geometry metrics NaN too).
        pred_kinds: optional per-sample kind recorded in `pred_kind` (e.g. "splat"); default (None, or a
            falsy entry) from the type: "mesh", "pointcloud" or None.
        cameras: optional per-sample input camera in the GT mesh's frame: a manifest row's ``camera`` (a
            mapping or its JSON text with K, R, T, image_size; `InputCamera.parse`), an `InputCamera`, None
            (no camera) or an exception (could not be read). Used by the visibility split and, with
            `appearance`, for the input-view renders. A missing or invalid camera never fails a row: the
            columns that need it are NaN and the row's notes say why ("visibility unavailable: the manifest
            row has no camera").
        masks: optional per-sample visible mask of the object for the visibility split, `(H, W)` (> 0 is
            visible; a tensor or an array), None (no mask) or an exception; it must have the camera's
            image size.
        gt_keys, gt_cache: optional per-sample content key of the GT file (`evaluate.content`: its
            ``gt_sha256``) and an `evaluate.gt_cache.GTSampleCache`: a sample whose GT samples the cache holds
            under (key, sample id, protocol fingerprint) takes them from it instead of drawing them again (the
            same numbers, bitwise), and one it lacks adds them. None (default): no cache.

    Returns:
        `BatchScores` (distances in the protocol's normalised units, e.g. unit-cube sides for ``default``);
        every metric column is a `(B,)` float64 CPU tensor, NaN for failed rows and unavailable metrics.

    Raises:
        ValueError: only for a malformed call (lengths differ, duplicate ids, an unknown preset name), never
            for an element.
    """
    protocol = get_protocol(protocol)
    B = len(sample_ids)
    if len(preds) != B or len(gts) != B:
        raise ValueError(f"score_batch: {B} sample ids, {len(preds)} predictions and {len(gts)} ground truths")
    ids = [str(s) for s in sample_ids]
    if len(set(ids)) != B:
        dup = sorted({s for s in ids if ids.count(s) > 1})
        raise ValueError(f"score_batch: duplicate sample ids {dup[:5]}: every sample needs its own random streams")
    if pred_kinds is not None and len(pred_kinds) != B:
        raise ValueError(f"score_batch: {len(pred_kinds)} pred_kinds for {B} samples")
    for name, seq in (("cameras", cameras), ("masks", masks), ("gt_keys", gt_keys)):
        if seq is not None and len(seq) != B:
            raise ValueError(f"score_batch: {len(seq)} {name} for {B} samples")
    views = [_input_camera(None if cameras is None else cameras[b]) for b in range(B)]
    status = ["failed"] * B
    error: list[str | None] = [None] * B
    transforms: list[dict | None] = [None] * B
    notes: list[list[str]] = [[] for _ in range(B)]
    kinds = [pred_kinds[b] if pred_kinds is not None and pred_kinds[b] else _kind(preds[b]) for b in range(B)]
    elements: list[_Element] = []
    for b in range(B):
        pred, gt = preds[b], gts[b]
        if gt is None or isinstance(gt, BaseException):
            error[b] = NO_GROUND_TRUTH if gt is None else f"ground truth: {_message(gt)}"
        elif pred is None or isinstance(pred, BaseException):
            error[b] = NO_PREDICTION if pred is None else f"prediction: {_message(pred)}"
        else:
            try:
                e = _prepare(b, ids[b], pred, gt, protocol, gt_cache, None if gt_keys is None else gt_keys[b])
                if "visibility" in protocol.metrics:
                    e.camera = views[b]
                    e.mask = _input_mask(None if masks is None else masks[b], views[b])
                elements.append(e)
            except Exception as err:  # noqa: BLE001 (a bad element is a failed row, never a failed batch)
                error[b] = _message(err)

    columns: dict[str, torch.Tensor] = {}
    framed: dict[int, tuple[Meshes | None, Meshes | None]] = {}
    gt_frames: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def run(group: list[_Element]) -> None:
        try:
            res = _score_group(group, protocol)
        except Exception as err:  # noqa: BLE001
            if len(group) > 1:  # find the element that fails; the others still get their rows
                for e in group:
                    run([e])
                return
            error[group[0].index] = _message(err)
            return
        for g, e in enumerate(group):
            for col, value in res.columns.items():
                columns.setdefault(col, torch.full((B,), math.nan, dtype=torch.float64))[e.index] = value[g]
            status[e.index] = "ok"
            transforms[e.index] = _transform_record(e, res.alignment[g])
            notes[e.index] += res.notes[g]
            framed[e.index] = (res.pred_meshes[g], res.gt_meshes[g])
            gt_frames[e.index] = e.gt_cs

    for group in _groups(elements):
        run(group)

    metrics = {col: columns.get(col, torch.full((B,), math.nan, dtype=torch.float64)) for col in _column_order(protocol, columns)}
    if appearance is not None:
        pairs = [framed.get(b, (None, None)) for b in range(B)]
        # The input camera in the protocol's frame of the pair (the GT's normalisation), or why there is none;
        # passed only when the caller gave cameras, so a scorer without input views keeps working.
        framed_views = [views[b].in_frame(*gt_frames[b]) if isinstance(views[b], InputCamera) and b in gt_frames
                        else views[b] for b in range(B)]
        kw = lambda rows: {} if cameras is None else {"input_cameras": [framed_views[b] for b in rows]}  # noqa: E731
        names = APPEARANCE_METRICS + INPUT_VIEW_METRICS
        try:
            values, extra = appearance.score_framed(pairs, protocol, **kw(range(B)))
        except Exception:  # noqa: BLE001 - the renders run on the whole batch: find the pair that fails
            values = {k: torch.full((B,), math.nan, dtype=torch.float64) for k in names}
            extra = [[] for _ in range(B)]
            for b in range(B):
                try:
                    one, one_notes = appearance.score_framed([pairs[b]], protocol, **kw([b]))
                except Exception as err:  # noqa: BLE001
                    # A failed row has no numbers: blank its geometry metrics too.
                    status[b], error[b], transforms[b] = "failed", f"appearance: {_message(err)}", None
                    for col in metrics:
                        metrics[col][b] = math.nan
                    continue
                for k in names:
                    if k in one:
                        values[k][b] = one[k][0]
                extra[b] = one_notes[0]
        for k in names:
            metrics[k] = values[k] if k in values else torch.full((B,), math.nan, dtype=torch.float64)
        for b in range(B):
            if status[b] == "ok":
                notes[b] += extra[b]
    return BatchScores(ids, status, error, metrics, transforms, notes, kinds)


def metric_names(protocol: Protocol | str = "default", *, appearance: bool = True) -> list[str]:
    """Every metric column `score_batch` can give under `protocol`, in its order (the appearance ones when
    `appearance`): the names no manifest column may take.

    Args:
        protocol: a `Protocol` or a preset name. Default "default".
        appearance: also list `APPEARANCE_METRICS` (lpips, psnr, ssim, silhouette_iou) and
            `INPUT_VIEW_METRICS` (psnr_input, ssim_input, silhouette_iou_input) at the end. Default True.

    Returns:
        List of column names: `Protocol.columns()`, then ``precision@tau`` and ``recall@tau`` per tau when the
        protocol has fscore, then `Protocol.visibility_columns()`, then the appearance ones.

    Raises:
        ValueError: `protocol` is an unknown preset name.
    """
    cols = _column_order(get_protocol(protocol), {})
    return cols + list(APPEARANCE_METRICS + INPUT_VIEW_METRICS) if appearance else cols


def failed_scores(sample_ids: Sequence[str], errors: Sequence[str], protocol: Protocol | str = "default", *,
                  appearance: bool = False, pred_kinds: Sequence[str | None] | None = None) -> BatchScores:
    """`BatchScores` of samples that failed before or outside `score_batch`: status failed, `errors` as their
    reasons, every metric column of the protocol (and the appearance ones when `appearance`) NaN.

    Args:
        sample_ids: B sample ids (stored as `str`).
        errors: B failure reasons, in the order of `sample_ids` (lengths are not checked).
        protocol: a `Protocol` or a preset name, which sets the metric columns. Default "default".
        appearance: also add the appearance columns. Default False.
        pred_kinds: optional B kinds recorded in `pred_kind`; default None for every row.

    Returns:
        `BatchScores` with status "failed", transforms None, empty notes and every metric a `(B,)` float64 CPU
        tensor of NaN.

    Raises:
        ValueError: `protocol` is an unknown preset name.
    """
    B = len(sample_ids)
    kinds = list(pred_kinds) if pred_kinds is not None else [None] * B
    metrics = {c: torch.full((B,), math.nan, dtype=torch.float64)
               for c in metric_names(protocol, appearance=appearance)}
    return BatchScores([str(s) for s in sample_ids], ["failed"] * B, list(errors), metrics, [None] * B,
                       [[] for _ in range(B)], kinds)


def concat_scores(parts: Sequence[BatchScores]) -> BatchScores:
    """One `BatchScores` of `parts` in order; a metric column missing from a part is NaN there.

    Args:
        parts: the batches to join, in order (may be empty).

    Returns:
        `BatchScores` of all rows, with the union of metric columns in first-seen order, each a float64 tensor
        of the total length (the parts' devices are not changed: `score_batch` gives CPU tensors); an empty
        `BatchScores` without metric columns when `parts` is empty.
    """
    cols: list[str] = []
    for part in parts:
        cols += [c for c in part.metrics if c not in cols]
    metrics = {c: torch.cat([part.metrics.get(c, torch.full((len(part),), math.nan, dtype=torch.float64))
                             for part in parts]) if parts else torch.zeros(0, dtype=torch.float64) for c in cols}
    cat = lambda name: [x for part in parts for x in getattr(part, name)]  # noqa: E731
    return BatchScores(cat("sample_ids"), cat("status"), cat("error"), metrics, cat("transforms"), cat("notes"),
                       cat("pred_kind"))


def _column_order(protocol: Protocol, columns: dict[str, torch.Tensor]) -> list[str]:
    """Every column the protocol produces, headline ones first, even when no row was ok."""
    cols = list(protocol.columns())
    for tau in protocol.taus if "fscore" in protocol.metrics else ():
        cols += [f"precision@{tau:g}", f"recall@{tau:g}"]
    cols += protocol.visibility_columns()
    return cols + [c for c in columns if c not in cols]
