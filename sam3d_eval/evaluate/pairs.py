"""Score folders (or single files) of predictions against ground-truth meshes, one sample at a time, under a protocol.

Predictions may be meshes, point clouds (`.ply` without faces, `.npz`) or Gaussian-splat PLYs (3DGS layout,
sampled to `num_samples` points by `io.splats.splats_to_points` at its documented opacity threshold), mixed
in one folder. A missing or unreadable prediction is a recorded failure for that sample, never a crash
(DESIGN.md section 4).
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch

from ..io.mesh_io import MeshLoadError, load_mesh
from ..io.pointcloud_io import load_pointcloud
from ..io.splats import load_splats, splats_to_points
from .protocols import Protocol, get_protocol, evaluate_geometry
from ..structures import Meshes, Pointclouds
from .appearance import appearance_metrics

MESH_SUFFIXES = (".glb", ".gltf", ".ply", ".obj", ".off", ".stl")
PRED_SUFFIXES = MESH_SUFFIXES + (".npz",)


@dataclass
class SamplePair:
    """A sample id with its ground-truth file and its prediction file (None when there is none)."""

    sample_id: str
    gt: pathlib.Path
    pred: pathlib.Path | None


@dataclass
class PairResult:
    """The outcome for one sample: `status` is "ok" or "failed" (then `error` says why).

    metrics: name -> float (NaN for a metric unavailable for this input, explained in `notes`);
    transform: the normalisation and alignment applied (see `metrics.protocols.GeometryRow`);
    pred_kind: "mesh", "pointcloud" or "splat".
    """

    sample_id: str
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    transform: dict | None = None
    notes: list[str] = field(default_factory=list)
    pred_kind: str | None = None


APPEARANCE_METRICS = ("lpips", "psnr", "ssim", "silhouette_iou")


@dataclass
class AppearanceOptions:
    """Multi-view appearance scoring of mesh predictions: LPIPS/PSNR/SSIM on renders from the same views.

    lpips: an `LPIPS` module, or None with `lpips_reason` saying why (LPIPS is then NaN, PSNR/SSIM still
    reported); image_size: side of the default 8 views.
    """

    lpips: torch.nn.Module | None = None
    lpips_reason: str | None = None
    image_size: int = 256


def pred_in_gt_frame(pred: Meshes, transform: dict) -> Meshes:
    """The prediction mapped by a `GeometryRow.transform` (its normalisation, then the protocol's alignment)
    into the ground truth's own coordinates, so both can be rendered from the same cameras."""
    pn, gn, al = transform["pred_normalization"], transform["gt_normalization"], transform["alignment"]
    verts = pred.verts_list()[0]
    f64 = dict(dtype=torch.float64, device=verts.device)
    x = (verts.double() - torch.tensor(pn["centre"], **f64)) * pn["scale"]
    x = al["s"] * x @ torch.tensor(al["R"], **f64) + torch.tensor(al["T"], **f64)
    x = x / gn["scale"] + torch.tensor(gn["centre"], **f64)
    return Meshes([x.to(verts.dtype)], pred.faces_list(), pred.textures)


def _appearance_row(pred: Meshes | Pointclouds, gt: Meshes, transform: dict, options: AppearanceOptions) -> tuple[dict, list[str]]:
    if not isinstance(pred, Meshes):
        return {k: float("nan") for k in APPEARANCE_METRICS}, ["appearance: needs a mesh prediction"]
    res = appearance_metrics(
        pred_in_gt_frame(pred, transform), gt, image_size=options.image_size, lpips=options.lpips,
        lpips_reason=options.lpips_reason,
    )[0]
    # A missing LPIPS module is said once by the caller, not on every sample.
    notes = [res["lpips_unavailable"]] if res.get("lpips_unavailable") and options.lpips is not None else []
    return {k: float(res[k]) for k in APPEARANCE_METRICS}, notes


def _meshes_by_id(folder: pathlib.Path, suffixes: tuple[str, ...] = MESH_SUFFIXES) -> dict[str, pathlib.Path]:
    found: dict[str, pathlib.Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            if path.stem in found:
                raise ValueError(f"{folder}: two files for sample {path.stem!r}: {found[path.stem].name}, {path.name}")
            found[path.stem] = path
    return found


def find_pairs(pred: pathlib.Path, gt: pathlib.Path) -> tuple[list[SamplePair], list[str]]:
    """Pair predictions (meshes, point clouds or splats) with GT meshes by sample id (file stem).

    `pred` and `gt` are both files (one pair) or both folders. Returns the pairs, one per GT mesh, sorted by
    id, and the ids of predictions that have no GT (reported, not scored).
    """
    pred, gt = pathlib.Path(pred), pathlib.Path(gt)
    if not gt.exists():
        raise FileNotFoundError(f"{gt}: ground truth not found")
    if gt.is_file():
        if pred.is_dir():
            raise ValueError(f"{gt} is a file but {pred} is a folder: give two files or two folders")
        return [SamplePair(gt.stem, gt, pred if pred.exists() else None)], []
    if not pred.is_dir():
        raise ValueError(f"{gt} is a folder, so the predictions must be a folder too: {pred}")
    gts, preds = _meshes_by_id(gt), _meshes_by_id(pred, PRED_SUFFIXES)
    if not gts:
        raise ValueError(f"{gt}: no meshes ({', '.join(MESH_SUFFIXES)}) in this folder")
    pairs = [SamplePair(sid, path, preds.get(sid)) for sid, path in gts.items()]
    return pairs, sorted(set(preds) - set(gts))


def ply_kind(path: pathlib.Path) -> str:
    """"splat", "pointcloud" or "mesh" from a PLY header (vertex properties and face count).

    A header that cannot be read counts as "mesh", so the mesh loader reports the problem.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError:
        return "mesh"
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        return "mesh"
    element, props, faces = None, set(), 0
    for line in head[:end].decode("latin-1").splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "element":
            element = words[1]
            if element == "face" and words[2].isdigit():
                faces = int(words[2])
        elif len(words) >= 3 and words[0] == "property" and element == "vertex":
            props.add(words[-1])
    if {"opacity", "scale_0", "rot_0"} <= props:
        return "splat"
    return "mesh" if faces > 0 else "pointcloud"


def load_prediction(path: pathlib.Path, protocol: Protocol, device: str | torch.device = "cpu") -> tuple[Meshes | Pointclouds, str]:
    """A prediction file as `Meshes` or `Pointclouds` and its kind ("mesh", "pointcloud", "splat").

    Splats are sampled to `protocol.num_samples` points with seed `protocol.seed + 1` (the seed a mesh
    prediction is sampled with). Raises `ValueError` (incl. `MeshLoadError`) for unreadable files.
    """
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    kind = "pointcloud" if suffix == ".npz" else ply_kind(path) if suffix == ".ply" else "mesh"
    if kind == "mesh":
        return load_mesh(path, device=device), kind
    if kind == "pointcloud":
        return load_pointcloud(path, device=device), kind
    splats = load_splats(path, device=device)
    return splats_to_points(splats, protocol.num_samples, seed=protocol.seed + 1), kind


def score_pairs(
    pairs: Iterable[SamplePair],
    protocol: Protocol | str = "default",
    device: str | torch.device = "cpu",
    *,
    num_samples: int | None = None,
    taus: tuple[float, ...] | None = None,
    seed: int | None = None,
    appearance: AppearanceOptions | None = None,
) -> Iterator[PairResult]:
    """Yield one `PairResult` per pair, in order, scored under `protocol` (a preset name or a `Protocol`).

    `num_samples`, `taus`, `seed` override the protocol's values (recorded in its `overrides`). Load
    errors and inputs a protocol cannot score become failed results. With `appearance`, mesh predictions
    are also rendered with their GT after the protocol's alignment and scored with LPIPS/PSNR/SSIM.
    """
    protocol = get_protocol(protocol).with_overrides(num_samples=num_samples, taus=taus, seed=seed)
    for pair in pairs:
        if pair.pred is None:
            yield PairResult(pair.sample_id, "failed", error="no prediction for this sample")
            continue
        try:
            gt_mesh = load_mesh(pair.gt, device=device)
        except MeshLoadError as err:
            yield PairResult(pair.sample_id, "failed", error=f"ground truth: {err}")
            continue
        try:
            pred, kind = load_prediction(pair.pred, protocol, device=device)
        except ValueError as err:  # MeshLoadError, PointCloudReadError
            msg = str(err)
            yield PairResult(pair.sample_id, "failed", error=f"prediction: {msg if str(pair.pred) in msg else f'{pair.pred}: {msg}'}")
            continue
        try:
            row = evaluate_geometry(pred, gt_mesh, protocol)[0]
        except ValueError as err:  # e.g. a GT with a degenerate bounding box
            yield PairResult(pair.sample_id, "failed", error=str(err), pred_kind=kind)
            continue
        metrics, notes = dict(row.metrics), list(row.notes)
        if appearance is not None:
            extra, extra_notes = _appearance_row(pred, gt_mesh, row.transform, appearance)
            metrics.update(extra)
            notes += extra_notes
        yield PairResult(pair.sample_id, "ok", metrics=metrics, transform=row.transform, notes=notes, pred_kind=kind)
