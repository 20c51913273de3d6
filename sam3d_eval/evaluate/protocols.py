"""Named, versioned evaluation protocols and the geometry evaluation they drive (DESIGN.md section 5).

Published single-image-to-3D numbers differ in normalisation, alignment, sample count, Chamfer variant and
F-score thresholds. A `Protocol` pins all of them under a name and a version; it is stored with every result
(`Protocol.to_dict()`) and printed above every report. `evaluate_geometry` runs one:

1. normalise (`NORMALIZATIONS`): bounding-box ones act on the vertices before sampling, ZeroShape's on the
   sampled clouds;
2. sample `num_samples` points per surface (GT with `seed`, prediction with `seed + 1`); a point cloud is
   shuffled (seeded the same way, each cloud on its own) and cut to `num_samples` points when it has more;
3. align (`alignment.ALIGNMENTS`) on `align_points` points spread evenly over each sample (mesh samples
   come in face order, see `sample_points_from_meshes(face_order=True)`), then apply the transform to the whole prediction (and rotate its normals);
4. one nearest-neighbour query per direction, shared by every Chamfer variant, F-score and normal
   consistency; volume IoU on the (normalised, aligned) meshes; EMD on a seeded subsample.

Chamfer variants (`CHAMFER_VARIANTS`; d = Euclidean distance to the nearest point of the other sample):

- ``"chamfer_l2_p3d"`` -> column ``chamfer_l2``: mean d^2 pred->GT + mean d^2 GT->pred (pytorch3d
  `chamfer_distance`, Mesh R-CNN's "Chamfer-L2").
- ``"chamfer_l1"`` -> ``chamfer_l1``: (mean d pred->GT + mean d GT->pred) / 2, unsquared ("CD-L1" of
  ZeroShape / SyncDreamer).
- ``"occnet"`` -> ``chamfer_l1_occnet`` and ``chamfer_l2_occnet``: Occupancy Networks' halves of both,
  (accuracy + completeness) / 2 with d and with d^2.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..ops.knn import knn_points
from ..ops.sample_points import sample_points_from_meshes
from ..structures.meshes import Meshes
from ..structures.pointclouds import Pointclouds
from ..structures.utils import lengths_mask
from ..ops.alignment import ALIGNMENTS, align, apply_similarity_transform, rotation_grid
from ..metrics.emd import earth_movers_distance
from ..metrics.fscore import f_score_from_dists
from ..metrics.normal_consistency import normal_consistency_from_idx
from ..metrics.volume_iou import volume_iou

NORMALIZATIONS = {
    "none": "none (file / camera frame)",
    "gt_bbox_unit_cube": "both jointly: GT bbox centred at the origin, longest side 1 (fits [-0.5, 0.5]^3)",
    "gt_bbox_longest_10": "both jointly: GT bbox centred, longest side 10 (Mesh R-CNN 'gt-10')",
    "each_bbox_minus1_1": "each shape on its own: bbox centred, longest side 2 (fits [-1, 1]^3)",
    "each_mean_xy_extent": "each sampled cloud on its own: centred at its mean, divided by the larger of its x and y extents",
}
CHAMFER_VARIANTS = {
    "chamfer_l2_p3d": ("chamfer_l2",),
    "chamfer_l1": ("chamfer_l1",),
    "occnet": ("chamfer_l1_occnet", "chamfer_l2_occnet"),
}
METRICS = ("chamfer", "fscore", "normal_consistency", "normal_consistency_signed", "volume_iou", "emd")
_OVERRIDABLE = ("num_samples", "taus", "seed", "alignment", "align_points", "icp_iterations", "emd_points",
                "voxel_resolution")


@dataclass(frozen=True)
class Protocol:
    """A named, versioned recipe for comparing a predicted shape with its ground truth.

    name, version: identify the recipe; any change of numbers is a new version.
    alignment: one of `alignment.ALIGNMENTS`; normalization: a key of `NORMALIZATIONS`.
    num_samples: points sampled per surface; seed: sampling seed (GT `seed`, prediction `seed + 1`).
    chamfer: variants (keys of `CHAMFER_VARIANTS`); taus: F-score thresholds in normalised units.
    metrics: subset of `METRICS` to compute.
    align_points: points per sample used to estimate the alignment; icp_iterations, icp_tolerance,
        rotations: ICP steps, relative RMSE stop, start grid of the rotation search.
    voxel_resolution, volume_method: volume IoU grid and inside test; emd_points: EMD subsample size.
    source: where the recipe comes from. overrides: `(field, value)` pairs changed from the preset.
    """

    name: str
    version: str
    alignment: str
    normalization: str
    num_samples: int
    seed: int
    chamfer: tuple[str, ...]
    taus: tuple[float, ...]
    metrics: tuple[str, ...]
    align_points: int = 20_000
    icp_iterations: int = 30
    icp_tolerance: float = 1e-6
    rotations: str = "cube24"
    voxel_resolution: int = 64
    volume_method: str = "winding"
    emd_points: int = 2048
    source: str = ""
    overrides: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"protocol {self.name!r}: unknown alignment {self.alignment!r}; expected one of {', '.join(ALIGNMENTS)}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"protocol {self.name!r}: unknown normalization {self.normalization!r}; expected one of {', '.join(NORMALIZATIONS)}")
        bad = [c for c in self.chamfer if c not in CHAMFER_VARIANTS] + [m for m in self.metrics if m not in METRICS]
        if bad:
            raise ValueError(f"protocol {self.name!r}: unknown chamfer variants or metrics {bad}; "
                             f"variants {list(CHAMFER_VARIANTS)}, metrics {list(METRICS)}")
        if self.num_samples < 1 or self.align_points < 1 or self.emd_points < 1 or self.icp_iterations < 1:
            raise ValueError(f"protocol {self.name!r}: num_samples, align_points, emd_points and icp_iterations must be positive")
        if any(not (t > 0) for t in self.taus):
            raise ValueError(f"protocol {self.name!r}: taus must be positive, got {list(self.taus)}")
        if "fscore" in self.metrics and not self.taus:
            raise ValueError(f"protocol {self.name!r}: fscore needs at least one tau")
        if self.volume_method not in ("winding", "parity"):
            raise ValueError(f"protocol {self.name!r}: volume_method must be 'winding' or 'parity', got {self.volume_method!r}")
        rotation_grid(self.rotations)  # raises for an unknown grid name
        if "chamfer" in self.metrics and not self.chamfer:
            raise ValueError(f"protocol {self.name!r}: chamfer needs at least one variant")

    def with_overrides(self, **changes: Any) -> Protocol:
        """A copy with `changes` (None values ignored) applied and recorded in `overrides`."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = sorted(set(changes) - set(_OVERRIDABLE))
        if unknown:
            raise ValueError(f"cannot override {unknown}; overridable: {', '.join(_OVERRIDABLE)}")
        if "taus" in changes:
            changes["taus"] = tuple(float(t) for t in changes["taus"])
        changes = {k: v for k, v in changes.items() if v != getattr(self, k)}
        if not changes:
            return self
        recorded = dict(self.overrides)
        recorded.update(changes)
        return dataclasses.replace(self, **changes, overrides=tuple(sorted(recorded.items())))

    def columns(self) -> list[str]:
        """The headline metric names of a result row, in report order (precision/recall come in rows too)."""
        cols: list[str] = []
        if "chamfer" in self.metrics:
            cols += [c for v in self.chamfer for c in CHAMFER_VARIANTS[v]]
        if "fscore" in self.metrics:
            cols += [f"fscore@{t:g}" for t in self.taus]
        cols += [m for m in ("normal_consistency", "normal_consistency_signed", "volume_iou", "emd") if m in self.metrics]
        return cols

    def label(self) -> str:
        """`name vVERSION` plus any overrides, e.g. ``default v1 (overrides: num_samples=4000)``."""
        text = f"{self.name} v{self.version}"
        if self.overrides:
            text += " (overrides: " + ", ".join(f"{k}={_fmt_value(v)}" for k, v in self.overrides) + ")"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of every field (tuples as lists, overrides as a dict)."""
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        out["overrides"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.overrides}
        return out


def _fmt_value(v: Any) -> str:
    return ",".join(f"{x:g}" for x in v) if isinstance(v, tuple) else str(v)


PROTOCOLS: dict[str, Protocol] = {
    "default": Protocol(
        name="default", version="1", alignment="none", normalization="gt_bbox_unit_cube", num_samples=100_000, seed=0,
        chamfer=("chamfer_l2_p3d", "chamfer_l1"), taus=(0.01, 0.02, 0.05),
        metrics=("chamfer", "fscore", "normal_consistency"),
        source="DESIGN.md section 5: GT bbox to the unit cube jointly, no rotation alignment, 100k points, "
               "pytorch3d Chamfer-L2 (+ CD-L1), F@{0.01,0.02,0.05}, normal consistency",
    ),
    "sam3d": Protocol(
        name="sam3d", version="1", alignment="icp", normalization="each_bbox_minus1_1", num_samples=1_000_000, seed=0,
        chamfer=("chamfer_l2_p3d",), taus=(0.01,), metrics=("chamfer", "fscore", "volume_iou", "emd"),
        source="SAM 3D Objects (Meta, 2025) shape metrics on SA-3DAO as issue 3 states them: shapes normalised "
               "to [-1,1], rigid ICP, 1M points, F1@0.01, voxel IoU 64^3, Chamfer, EMD. The paper does not say "
               "which Chamfer; pytorch3d's squared L2 is used. EMD on 2048-point subsamples (emd.py)",
    ),
    "meshrcnn": Protocol(
        name="meshrcnn", version="1", alignment="none", normalization="gt_bbox_longest_10", num_samples=10_000, seed=0,
        chamfer=("chamfer_l2_p3d",), taus=(0.1, 0.3, 0.5),
        metrics=("chamfer", "fscore", "normal_consistency", "normal_consistency_signed"),
        source="Mesh R-CNN (Gkioxari et al. 2019), meshrcnn/utils/metrics.py compare_meshes(scale='gt-10'): "
               "GT bbox longest edge scaled to 10 (same scale on the prediction), 10k points, squared "
               "Chamfer-L2, normal consistency (abs and signed), F1@{0.1,0.3,0.5}",
    ),
    "occnet": Protocol(
        name="occnet", version="1", alignment="none", normalization="gt_bbox_unit_cube", num_samples=100_000, seed=0,
        chamfer=("occnet",), taus=(), metrics=("chamfer", "normal_consistency"),
        source="Occupancy Networks (Mescheder et al. 2019) eval: unit cube, 100k points, Chamfer-L1 and "
               "Chamfer-L2 as halves of accuracy + completeness, normal consistency",
    ),
    "zeroshape": Protocol(
        name="zeroshape", version="1", alignment="none", normalization="each_mean_xy_extent", num_samples=10_000, seed=0,
        chamfer=("chamfer_l1",), taus=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2), metrics=("chamfer", "fscore"),
        source="ZeroShape (Huang et al. 2024), utils/eval_3D.py + options/shape.yaml: each cloud centred at its "
               "mean and divided by max(x, y extent) (normalize_pc), no ICP (eval.icp: false), 10k points, "
               "CD-L1 = (acc + comp) / 2 unsquared, F@{0.005,0.01,0.02,0.05,0.1,0.2}",
    ),
}


def get_protocol(name: str | Protocol) -> Protocol:
    """The preset called `name` (a `Protocol` passes through). Raises `ValueError` listing the presets."""
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; available: {', '.join(PROTOCOLS)}") from None


# ----------------------------------------------------------------------------------------------------
# evaluation


@dataclass
class GeometryRow:
    """One sample's result under a protocol.

    metrics: name -> float (NaN where a metric is unavailable for this input; `notes` says why).
    transform: how the raw prediction was mapped onto the normalised GT: ``pred_normalization`` /
        ``gt_normalization`` (`x -> (x - centre) * scale`, applied first) then ``alignment``
        (`x -> s * x @ R + T`, pytorch3d row-vector convention, with the method's name).
    """

    metrics: dict[str, float]
    transform: dict[str, Any]
    notes: list[str] = field(default_factory=list)


Geometry = Meshes | Pointclouds


def _point_lists(x: Geometry) -> list[torch.Tensor]:
    return x.verts_list() if isinstance(x, Meshes) else x.points_list()


def _bbox_transform(x: Geometry, side_to: float, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per element: bbox centre `(B, 3)` and the scale `(B,)` taking its longest side to `side_to`."""
    centres, scales = [], []
    for i, p in enumerate(_point_lists(x)):
        if p.shape[0] == 0:
            raise ValueError(f"{who} {i} has no points: cannot normalise")
        lo, hi = p.detach().amin(0), p.detach().amax(0)
        side = (hi - lo).max()
        if not torch.isfinite(side) or side <= 0:
            raise ValueError(f"{who} {i} is degenerate (zero-extent or non-finite bounding box): cannot normalise")
        centres.append((lo + hi) / 2)
        scales.append(side_to / side)
    return torch.stack(centres), torch.stack(scales)


def _move(x: Geometry, centre: torch.Tensor, scale: torch.Tensor) -> Geometry:
    """`(p - centre) * scale` per element; normals unchanged (no rotation, positive scale)."""
    moved = [(p - centre[i].to(p)) * scale[i].to(p) for i, p in enumerate(_point_lists(x))]
    if isinstance(x, Meshes):
        return Meshes(moved, x.faces_list(), x.textures)
    return Pointclouds(moved, x.normals_list(), x.features_list())


def _identity(x: Geometry) -> tuple[torch.Tensor, torch.Tensor]:
    p = _point_lists(x)[0]
    return p.new_zeros(len(x), 3), p.new_ones(len(x))


def _normalize_geometry(pred: Geometry, gt: Geometry, how: str):
    """Vertex-level normalisations; returns moved pred, gt and both (centre, scale)."""
    if how in ("gt_bbox_unit_cube", "gt_bbox_longest_10"):
        c, s = _bbox_transform(gt, 1.0 if how == "gt_bbox_unit_cube" else 10.0, "ground truth")
        return _move(pred, c, s), _move(gt, c, s), (c, s), (c, s)
    if how == "each_bbox_minus1_1":
        cp, sp = _bbox_transform(pred, 2.0, "prediction")
        cg, sg = _bbox_transform(gt, 2.0, "ground truth")
        return _move(pred, cp, sp), _move(gt, cg, sg), (cp, sp), (cg, sg)
    return pred, gt, _identity(pred), _identity(gt)  # none, or done on the samples


def _sample(x: Geometry, n: int, seed: int):
    """Points `(B, P, 3)`, lengths `(B,)` or None (all full), normals `(B, P, 3)` or None."""
    if isinstance(x, Meshes):
        # Face-ordered samples: coherent KD-tree queries (every metric here is order-free).
        pts, nrm = sample_points_from_meshes(x, n, return_normals=True, seed=seed, face_order=True)
        return pts, None, nrm
    pts_l, nrm_l = [], []
    normals = x.normals_list()
    for i, p in enumerate(x.points_list()):
        if p.shape[0] == 0:
            raise ValueError(f"point cloud {i} is empty")
        if not bool(torch.isfinite(p).all()):
            raise ValueError(f"point cloud {i} has NaN or inf coordinates")
        # One generator per cloud, so a cloud gets the same points batched or alone.
        gen = torch.Generator().manual_seed(seed)
        keep = torch.randperm(p.shape[0], generator=gen)[:n].to(p.device)
        pts_l.append(p[keep])
        if normals is not None:
            nrm_l.append(normals[i][keep])
    lengths = torch.tensor([p.shape[0] for p in pts_l], dtype=torch.int64, device=pts_l[0].device)
    P = int(lengths.max())
    pts = torch.stack([torch.nn.functional.pad(p, (0, 0, 0, P - p.shape[0])) for p in pts_l])
    nrm = torch.stack([torch.nn.functional.pad(v, (0, 0, 0, P - v.shape[0])) for v in nrm_l]) if normals is not None else None
    return pts, (None if bool((lengths == P).all()) else lengths), nrm


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


def _mean_xy_normalize(pts: torch.Tensor, lengths: torch.Tensor | None):
    """ZeroShape's normalize_pc per cloud: centre at the mean, divide by max(x extent, y extent)."""
    B, P, _ = pts.shape
    ln = torch.full((B,), P, dtype=torch.int64, device=pts.device) if lengths is None else lengths
    valid = lengths_mask(ln, P)[..., None]
    centre = (pts * valid).sum(1) / ln.clamp(min=1)[:, None].to(pts.dtype)
    ext = pts.masked_fill(~valid, float("-inf")).amax(1) - pts.masked_fill(~valid, float("inf")).amin(1)
    side = ext[:, :2].amax(1)
    if bool((side <= 0).any()):
        raise ValueError("a sampled cloud has zero x and y extent: cannot normalise (each_mean_xy_extent)")
    scale = 1.0 / side
    return (pts - centre[:, None]) * scale[:, None, None], centre, scale


def _masked_mean(d: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    # knn_points zero-fills rows past the lengths, so a plain sum over the padded rows is the masked sum.
    return d.mean(1) if lengths is None else d.sum(1) / lengths.clamp(min=1).to(d.dtype)


def evaluate_geometry(pred: Geometry, gt: Geometry, protocol: Protocol | str = "default") -> list[GeometryRow]:
    """Score each prediction against its GT under `protocol`; one `GeometryRow` per batch element.

    Args:
        pred: `Meshes` or `Pointclouds` (B elements); a cloud without normals gets NaN normal
            consistency and a cloud gets NaN volume IoU, each with a note, instead of an error.
        gt: `Meshes` or `Pointclouds` with B elements, paired by position.
        protocol: a `Protocol` or a preset name.

    Units: all distances in the protocol's normalised frame (e.g. unit-cube sides for ``default``).
    """
    protocol = get_protocol(protocol)
    for name, x in (("pred", pred), ("gt", gt)):
        if not isinstance(x, (Meshes, Pointclouds)):
            raise ValueError(f"{name} must be Meshes or Pointclouds, got {type(x).__name__}")
    if len(pred) != len(gt):
        raise ValueError(f"got {len(pred)} predictions for {len(gt)} ground truths")
    B = len(gt)
    notes: list[list[str]] = [[] for _ in range(B)]
    metrics = set(protocol.metrics)
    with torch.no_grad():
        pred_n, gt_n, pred_cs, gt_cs = _normalize_geometry(pred, gt, protocol.normalization)
        gt_pts, gl, gt_nrm = _sample(gt_n, protocol.num_samples, protocol.seed)
        pr_pts, pl, pr_nrm = _sample(pred_n, protocol.num_samples, protocol.seed + 1)
        if protocol.normalization == "each_mean_xy_extent":
            pr_pts, *pred_cs = _mean_xy_normalize(pr_pts, pl)
            gt_pts, *gt_cs = _mean_xy_normalize(gt_pts, gl)

        pr_sub, pl_sub = _spread_subset(pr_pts, pl, protocol.align_points)
        gt_sub, gl_sub = _spread_subset(gt_pts, gl, protocol.align_points)
        al = align(
            pr_sub, gt_sub, protocol.alignment, pl_sub, gl_sub,
            max_iterations=protocol.icp_iterations, relative_rmse_thr=protocol.icp_tolerance, rotations=protocol.rotations,
        )
        R, T, s = al.transform
        if protocol.alignment != "none":
            pr_pts = apply_similarity_transform(pr_pts, al.transform)
            if pr_nrm is not None:
                pr_nrm = torch.bmm(pr_nrm, R.to(pr_nrm.dtype))

        to_gt = knn_points(pr_pts, gt_pts, pl, gl, K=1)
        to_pr = knn_points(gt_pts, pr_pts, gl, pl, K=1)
        d_pg, d_gp = to_gt.dists[..., 0], to_pr.dists[..., 0]
        cols: dict[str, torch.Tensor] = {}
        if "chamfer" in metrics:
            m2_pg, m2_gp = _masked_mean(d_pg, pl), _masked_mean(d_gp, gl)
            if "chamfer_l2_p3d" in protocol.chamfer:
                cols["chamfer_l2"] = m2_pg + m2_gp
            if {"chamfer_l1", "occnet"} & set(protocol.chamfer):
                l1 = 0.5 * (_masked_mean(d_pg.sqrt(), pl) + _masked_mean(d_gp.sqrt(), gl))
                if "chamfer_l1" in protocol.chamfer:
                    cols["chamfer_l1"] = l1
                if "occnet" in protocol.chamfer:
                    cols["chamfer_l1_occnet"] = l1
                    cols["chamfer_l2_occnet"] = 0.5 * (m2_pg + m2_gp)
        if "fscore" in metrics:
            fs = f_score_from_dists(d_pg, d_gp, protocol.taus, pl, gl)
            for t, tau in enumerate(protocol.taus):
                cols[f"fscore@{tau:g}"] = fs.fscore[:, t]
                cols[f"precision@{tau:g}"] = fs.precision[:, t]
                cols[f"recall@{tau:g}"] = fs.recall[:, t]
        for name, absolute in (("normal_consistency", True), ("normal_consistency_signed", False)):
            if name not in metrics:
                continue
            if pr_nrm is None or gt_nrm is None:
                cols[name] = torch.full((B,), math.nan)
                who = "prediction" if pr_nrm is None else "ground truth"
                for b in range(B):
                    notes[b].append(f"{name} unavailable: the {who} is a point cloud without normals")
                continue
            cols[name] = normal_consistency_from_idx(
                pr_nrm, gt_nrm, to_gt.idx[..., 0], to_pr.idx[..., 0], pl, gl, absolute=absolute
            )
        if "volume_iou" in metrics:
            if isinstance(pred_n, Meshes) and isinstance(gt_n, Meshes) and protocol.normalization != "each_mean_xy_extent":
                moved = pred_n if protocol.alignment == "none" else _aligned_meshes(pred_n, al.transform)
                cols["volume_iou"] = volume_iou(moved, gt_n, protocol.voxel_resolution, protocol.volume_method).iou
            else:
                cols["volume_iou"] = torch.full((B,), math.nan)
                for b in range(B):
                    notes[b].append("volume_iou unavailable: it needs a mesh prediction and a mesh ground truth")
        if "emd" in metrics:
            pl_l = pl.tolist() if pl is not None else [pr_pts.shape[1]] * B
            gl_l = gl.tolist() if gl is not None else [gt_pts.shape[1]] * B
            cols["emd"] = earth_movers_distance(
                Pointclouds([pr_pts[b, : pl_l[b]] for b in range(B)]),
                Pointclouds([gt_pts[b, : gl_l[b]] for b in range(B)]),
                num_points=protocol.emd_points, seed=protocol.seed,
            )

    align_records = al.to_dicts()
    rows = []
    for b in range(B):
        transform = {
            "pred_normalization": {"centre": pred_cs[0][b].tolist(), "scale": float(pred_cs[1][b])},
            "gt_normalization": {"centre": gt_cs[0][b].tolist(), "scale": float(gt_cs[1][b])},
            "alignment": align_records[b],
        }
        rows.append(GeometryRow({k: float(v[b]) for k, v in cols.items()}, transform, notes[b]))
    return rows


def _aligned_meshes(m: Meshes, transform) -> Meshes:
    """Each mesh's vertices mapped by its sample's similarity transform."""
    R, T, s = transform
    verts = [s[i] * v @ R[i].to(v) + T[i].to(v) for i, v in enumerate(m.verts_list())]
    return Meshes(verts, m.faces_list(), m.textures)
