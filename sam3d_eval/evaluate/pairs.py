"""Score folders (or single files) of predicted meshes against ground truth, one sample at a time.

A missing or unreadable prediction is a recorded failure for that sample, never a crash (DESIGN.md section 4).
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch

from ..io.mesh_io import MeshLoadError, load_mesh
from ..metrics.surface import DEFAULT_TAUS, surface_metrics

MESH_SUFFIXES = (".glb", ".gltf", ".ply", ".obj", ".off", ".stl")


@dataclass
class SamplePair:
    """A sample id with its ground-truth file and its prediction file (None when there is none)."""

    sample_id: str
    gt: pathlib.Path
    pred: pathlib.Path | None


@dataclass
class PairResult:
    """The outcome for one sample: `status` is "ok" or "failed" (then `error` says why)."""

    sample_id: str
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def _meshes_by_id(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    found: dict[str, pathlib.Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in MESH_SUFFIXES:
            if path.stem in found:
                raise ValueError(f"{folder}: two meshes for sample {path.stem!r}: {found[path.stem].name}, {path.name}")
            found[path.stem] = path
    return found


def find_pairs(pred: pathlib.Path, gt: pathlib.Path) -> tuple[list[SamplePair], list[str]]:
    """Pair prediction and GT meshes by sample id (file stem).

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
    gts, preds = _meshes_by_id(gt), _meshes_by_id(pred)
    if not gts:
        raise ValueError(f"{gt}: no meshes ({', '.join(MESH_SUFFIXES)}) in this folder")
    pairs = [SamplePair(sid, path, preds.get(sid)) for sid, path in gts.items()]
    return pairs, sorted(set(preds) - set(gts))


def score_pairs(
    pairs: Iterable[SamplePair],
    num_samples: int = 100_000,
    taus: tuple[float, ...] = DEFAULT_TAUS,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Iterator[PairResult]:
    """Yield one `PairResult` per pair, in order; load errors become failed results."""
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
            pred_mesh = load_mesh(pair.pred, device=device)
        except MeshLoadError as err:
            yield PairResult(pair.sample_id, "failed", error=f"prediction: {err}")
            continue
        try:
            metrics = surface_metrics(pred_mesh, gt_mesh, num_samples=num_samples, taus=taus, seed=seed)
        except ValueError as err:  # e.g. a GT with a degenerate bounding box
            yield PairResult(pair.sample_id, "failed", error=str(err))
            continue
        yield PairResult(pair.sample_id, "ok", metrics=metrics.rows()[0])
