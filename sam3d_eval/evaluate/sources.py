"""Prediction sources: where the runner gets each sample's prediction (docs/evaluation.md).

A source has a ``name``, an ``identity`` (stored in every result row; a resume only skips samples stored
under the same identity) and two steps, split so that file reading can run in loader workers while a model
runs in the main process:

- ``load(row, protocol) -> LoadedPrediction``: CPU work for one manifest row (read a file, decode an image);
  should not raise: a problem is returned as the item's ``error`` (an exception whose message says it;
  `score_batch` prefixes it with "prediction: "). The runner still turns anything a source raises for one
  sample into that sample's failed row.
- ``finish(items, device) -> list[(prediction | exception | None, kind)]``: turn a batch of loaded items
  into single-element `Meshes` / `Pointclouds` on `device` (a `Predictor` runs here, on the whole batch);
- ``content_hash(row) -> str``: what the prediction of a row is made from, by content (stored with every
  result row, so a stored result is reused only while it is unchanged): the prediction file's SHA-256 for a
  folder (`io.hashing.mesh_sha256`: with the materials, textures and buffers a mesh file references), the model's identity (a hash of its config and weights) with the SHA-256 of the row's image and
  mask for a `Predictor`.

Two kinds:

- `FolderSource`: a folder of files keyed by sample id (``<sample_id>.<ext>``: meshes, point clouds
  ``.npz``/faceless ``.ply`` and Gaussian-splat ``.ply``, mixed; `io.sniff.prediction_kind` tells them
  apart). Splats are sampled to ``protocol.num_samples`` points from the seed stream
  ``(protocol.seed, sample_id, "pred_splat")``. A missing file is a failed row ("no prediction for this
  sample"), an unreadable one too (with the loader's message).
- `PredictorSource`: any `models.Predictor`; the manifest's ``image`` (RGB) and ``mask`` (any mode, > 0 is
  the object) are read with Pillow and batched by image size.

`find_pairs` builds the quick two-folder (or two-file) setup of ``eval-meshes`` on the same machinery.
"""

from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from ..data.manifest import Manifest
from ..io.hashing import file_sha256, json_sha256, mesh_sha256
from ..io.mesh_io import load_mesh
from ..io.pointcloud_io import load_pointcloud
from ..io.sniff import MESH_SUFFIXES, PRED_SUFFIXES, prediction_kind
from ..io.splats import load_splats, splats_to_points
from ..models.predictor import Predictor
from ..seeding import stream_seed
from ..structures import Meshes, Pointclouds

__all__ = [
    "FolderSource",
    "LoadedPrediction",
    "NO_PREDICTION",
    "PredictionSource",
    "PredictorSource",
    "describe_error",
    "find_pairs",
    "files_by_id",
    "gt_content_hash",
    "load_ground_truth",
    "load_prediction",
    "load_visible_mask",
]

NO_PREDICTION = "no prediction for this sample"
# `content_hash` of a row without a prediction file, or whose file cannot be read (such rows fail and are
# retried on every resume; the key only has to differ from every real hash).
NO_FILE = "none"
Prediction = Meshes | Pointclouds


class SampleError(ValueError):
    """A per-sample problem (missing or unreadable file) recorded as that sample's failure."""


@dataclass
class LoadedPrediction:
    """What `PredictionSource.load` produced for one row: a structure, raw model inputs, or an error."""

    sample_id: str
    value: Any = None
    kind: str | None = None
    error: BaseException | None = None


class PredictionSource:
    """Base of the sources (see the module docstring). Subclasses set `name`, `identity` and `load`."""

    name: str = "source"
    identity: str = "source"
    # where the source can be rebuilt from (a predictions folder, a checkpoint file), recorded in run.json
    path: str | None = None

    def load(self, row: Mapping[str, Any], protocol) -> LoadedPrediction:  # pragma: no cover - abstract
        raise NotImplementedError

    def content_hash(self, row: Mapping[str, Any]) -> str:
        """What this row's prediction is made from (see the module docstring). The base class knows only its
        identity, so a custom source without file inputs is keyed by it."""
        return json_sha256([self.identity])

    def finish(self, items: Sequence[LoadedPrediction], device: torch.device | str = "cpu"
               ) -> list[tuple[Prediction | BaseException | None, str | None]]:
        """Default: the loaded structures moved to `device`; errors and missing ones pass through."""
        out = []
        for it in items:
            if it.error is not None:
                out.append((it.error, it.kind))
            elif it.value is None:
                out.append((None, None))
            else:
                out.append((it.value.to(device), it.kind))
        return out


def load_prediction(path: str | os.PathLike, protocol, sample_id: str, device: torch.device | str = "cpu"
                    ) -> tuple[Prediction, str]:
    """A prediction file as a single-element `Meshes` or `Pointclouds` and its kind.

    Kinds: "mesh", "pointcloud" or "splat" (`io.sniff.prediction_kind`); a splat is sampled to
    ``protocol.num_samples`` points with the stream ``(protocol.seed, sample_id, "pred_splat")``.
    Raises `ValueError` (`MeshLoadError`, `PointCloudReadError`) for unreadable files.
    """
    path = pathlib.Path(path)
    kind = prediction_kind(path)
    if kind == "mesh":
        return load_mesh(path, device=device), kind
    if kind == "pointcloud":
        return load_pointcloud(path, device=device), kind
    splats = load_splats(path, device=device)
    seed = stream_seed(protocol.seed, sample_id, "pred_splat")
    return splats_to_points(splats, protocol.num_samples, seed=seed), kind


def load_ground_truth(path: str | os.PathLike | None, device: torch.device | str = "cpu") -> Meshes | BaseException:
    """The ground-truth mesh, or a `SampleError` saying why it could not be read (never raises for a bad file:
    whatever the loader raises, e.g. a parser's IndexError or a MemoryError on an absurd header, is that
    sample's error; `score_batch` prefixes the message with "ground truth: ")."""
    if path is None:
        return SampleError("no gt_mesh path")
    try:
        return load_mesh(path, device=device)
    except Exception as err:  # noqa: BLE001 - one unreadable file is one failed row, never a failed run
        return SampleError(_with_path(err, path))


def load_visible_mask(path: str | os.PathLike | None) -> torch.Tensor | SampleError | None:
    """A manifest row's ``mask`` (the visible pixels of the target object) as `(H, W)` bool, > 0 visible in any
    image mode; None without a path, and a `SampleError` saying why when the file cannot be read (never
    raises for a bad file: the visibility split of that row is unavailable, the row is still scored)."""
    if path is None or (isinstance(path, float) and path != path) or not str(path).strip():
        return None
    try:
        return torch.from_numpy(_read_image(str(path), "L") > 0)
    except Exception as err:  # noqa: BLE001 - one unreadable mask loses that row's visibility split only
        return err if isinstance(err, SampleError) else SampleError(_with_path(err, path))


def _sha_or(path, missing: str) -> str:
    """`io.hashing.mesh_sha256` of `path` for a mesh (its materials, textures and buffers included), else
    `file_sha256`; `missing` when there is no path or it cannot be read."""
    if not path:
        return missing
    try:
        return mesh_sha256(path) if pathlib.Path(path).suffix.lower() in MESH_SUFFIXES else file_sha256(path)
    except OSError:
        return missing
    except Exception:  # noqa: BLE001 - a malformed file (a glTF that is a JSON list) must not stop the run's
        try:  # start: key it by its own bytes; loading it fails that one sample
            return file_sha256(path)
        except Exception:  # noqa: BLE001
            return missing


def gt_content_hash(path: str | os.PathLike | None) -> str:
    """SHA-256 of the ground-truth mesh (with the files it references; `NO_FILE` when there is none or it
    cannot be read)."""
    return _sha_or(path, NO_FILE)


def describe_error(err: BaseException) -> str:
    """A failed row's reason: the message of an expected error (`ValueError`, `OSError`, which name their
    problem), else ``Type: message`` so an unexpected one stays recognisable."""
    msg = str(err)
    if isinstance(err, (ValueError, OSError)) and msg:
        return msg
    return f"{type(err).__name__}: {msg}" if msg else type(err).__name__


def _with_path(err: BaseException, path) -> str:
    msg = describe_error(err)
    return msg if str(path) in msg else f"{path}: {msg}"


def files_by_id(folder: pathlib.Path, suffixes: Sequence[str] = PRED_SUFFIXES) -> dict[str, pathlib.Path]:
    """``{sample_id: path}`` of the files in `folder` with one of `suffixes` (the id is the file stem).

    Raises `ValueError` when two files share a stem (``a.ply`` and ``a.obj``): which one is meant is unclear.
    """
    found: dict[str, pathlib.Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            if path.stem in found:
                raise ValueError(f"{folder}: two files for sample {path.stem!r}: {found[path.stem].name}, {path.name}")
            found[path.stem] = path
    return found


class FolderSource(PredictionSource):
    """Predictions exported as files keyed by sample id (see the module docstring).

    folder: the predictions folder (its files are listed once, here); identity: defaults to
    ``folder:<absolute path>``. `from_files` builds one from an explicit ``{sample_id: path}`` mapping
    (the one-pair evaluation of ``eval-meshes``).
    """

    def __init__(self, folder: str | os.PathLike, *, identity: str | None = None) -> None:
        folder = pathlib.Path(folder)
        if not folder.exists():
            raise FileNotFoundError(f"{folder}: predictions folder does not exist")
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder}: predictions must be a folder of <sample_id>.<ext> files, got a file")
        self._setup(files_by_id(folder), identity or f"folder:{folder.resolve()}", folder.name or str(folder), folder)

    def _setup(self, files: Mapping[str, pathlib.Path], identity: str, name: str, folder: pathlib.Path | None) -> None:
        self.folder, self.files, self.identity, self.name = folder, dict(files), identity, name
        self.path = str(folder.resolve()) if folder is not None else None

    @classmethod
    def from_files(cls, files: Mapping[str, str | os.PathLike | None], *, identity: str, name: str = "files") -> FolderSource:
        """A source over explicit files (None values: no prediction for that sample)."""
        self = cls.__new__(cls)
        self._setup({k: pathlib.Path(v) for k, v in files.items() if v is not None}, identity, name, None)
        return self

    def content_hash(self, row: Mapping[str, Any]) -> str:
        """SHA-256 of the prediction file's bytes (`NO_FILE` when there is none or it cannot be read)."""
        path = self.files.get(row["sample_id"])
        return _sha_or(path, NO_FILE)

    def load(self, row: Mapping[str, Any], protocol) -> LoadedPrediction:
        sid = row["sample_id"]
        path = self.files.get(sid)
        if path is None:
            return LoadedPrediction(sid)
        if not path.exists():
            return LoadedPrediction(sid, error=SampleError(f"{path}: file does not exist"))
        try:
            value, kind = load_prediction(path, protocol, sid)
        except Exception as err:  # noqa: BLE001 - a file that makes a parser raise anything fails its sample only
            return LoadedPrediction(sid, error=SampleError(_with_path(err, path)))
        return LoadedPrediction(sid, value, kind)


def _read_image(path: str, mode: str):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode))
    except (OSError, UnidentifiedImageError) as err:
        raise SampleError(f"{path}: cannot read the image ({err})") from None


class PredictorSource(PredictionSource):
    """A `models.Predictor` run on the manifest's images and masks (see the module docstring).

    The predictor sees the batch's samples grouped by image size (one `predict` call per size); a
    `predict` call that raises fails the samples of that call with its message.
    """

    def __init__(self, predictor: Predictor) -> None:
        if not isinstance(predictor, Predictor):
            raise TypeError(f"{type(predictor).__name__} does not implement Predictor (name, identity, predict)")
        self.predictor = predictor
        self.name = str(predictor.name)
        self.identity = str(predictor.identity)
        self.path = getattr(predictor, "checkpoint_path", None)

    def content_hash(self, row: Mapping[str, Any]) -> str:
        """The model's identity with the SHA-256 of the row's image and mask files (the camera is part of the
        manifest row's own hash)."""
        return json_sha256([self.identity, _sha_or(row.get("image"), NO_FILE), _sha_or(row.get("mask"), NO_FILE)])

    def load(self, row: Mapping[str, Any], protocol) -> LoadedPrediction:
        sid = row["sample_id"]
        try:
            for col in ("image", "mask"):
                if not row.get(col):
                    raise SampleError(f"the manifest gives no {col} for this sample")
            image = _read_image(row["image"], "RGB")
            mask = _read_image(row["mask"], "L")
            if image.shape[:2] != mask.shape[:2]:
                raise SampleError(f"{row['mask']}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                                  f"{image.shape[1]}x{image.shape[0]}")
        except SampleError as err:
            return LoadedPrediction(sid, error=err)
        camera = row.get("camera")
        camera = json.loads(camera) if isinstance(camera, str) and camera else None
        return LoadedPrediction(sid, (image, mask, camera), "mesh")

    def finish(self, items, device="cpu"):
        out: list[Any] = [None] * len(items)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, it in enumerate(items):
            if it.error is not None:
                out[i] = (it.error, None)
            else:
                groups.setdefault(it.value[0].shape[:2], []).append(i)
        for idx in groups.values():
            images = torch.stack([torch.from_numpy(items[i].value[0].copy()) for i in idx]).permute(0, 3, 1, 2)
            masks = torch.stack([torch.from_numpy(items[i].value[1] > 0) for i in idx])[:, None]
            cameras = [items[i].value[2] for i in idx]
            cameras = cameras if any(c is not None for c in cameras) else None
            try:
                with torch.no_grad():
                    meshes = self.predictor.predict(images.to(device).float() / 255.0, masks.to(device), cameras)
                if not isinstance(meshes, Meshes) or len(meshes) != len(idx):
                    raise SampleError(f"predictor {self.name!r} returned {type(meshes).__name__} of length "
                                      f"{len(meshes) if hasattr(meshes, '__len__') else '?'} for {len(idx)} images; "
                                      "expected Meshes with one mesh per image")
                for j, i in enumerate(idx):
                    out[i] = (meshes[j].to(device), "mesh")
            except Exception as err:  # noqa: BLE001 - a model failure fails its samples, not the run
                msg = str(err) if isinstance(err, SampleError) else f"{type(err).__name__}: {err}"
                for i in idx:
                    out[i] = (SampleError(msg), None)
        return out


# The root of a manifest whose paths the user named directly (not read from a file): nothing is out of bounds.
_ANY_FOLDER = pathlib.Path(os.path.abspath(os.sep))


def find_pairs(pred: str | os.PathLike, gt: str | os.PathLike) -> tuple[Manifest, FolderSource, list[str]]:
    """The quick two-folder (or two-file) setup: a manifest, a `FolderSource` and the orphan ids.

    Args:
        pred, gt: both files (one pair, id = the GT's stem) or both folders, paired by file stem.

    Returns:
        (manifest, source, orphans): a `Manifest` with ``sample_id`` and ``gt_mesh`` (one row per GT mesh,
        sorted by id; validated like a manifest file, except that the files may be links to anywhere: the
        user named them directly), the
        predictions as a source, and the ids of predictions without a GT (reported, not scored).

    Raises:
        FileNotFoundError: `gt` or `pred` does not exist.
        ValueError: a file paired with a folder, or a GT folder without meshes.
        ManifestError: a file stem that is not a valid sample id.
    """
    import pandas as pd

    pred, gt = pathlib.Path(pred), pathlib.Path(gt)
    if not gt.exists():
        raise FileNotFoundError(f"{gt}: ground truth not found")
    if gt.is_file():
        if pred.is_dir():
            raise ValueError(f"{gt} is a file but {pred} is a folder: give two files or two folders")
        frame = pd.DataFrame({"sample_id": [gt.stem], "gt_mesh": [os.path.abspath(gt)]})
        source = FolderSource.from_files({gt.stem: pred}, identity=f"file:{pred.resolve()}", name=pred.name)
        return Manifest(frame, _ANY_FOLDER), source, []
    if not pred.exists():
        raise FileNotFoundError(f"{pred}: predictions folder does not exist")
    if not pred.is_dir():
        raise ValueError(f"{gt} is a folder, so the predictions must be a folder too, but {pred} is a file")
    gts = files_by_id(gt, MESH_SUFFIXES)
    if not gts:
        raise ValueError(f"{gt}: no meshes ({', '.join(MESH_SUFFIXES)}) in this folder")
    source = FolderSource(pred)
    frame = pd.DataFrame({"sample_id": list(gts), "gt_mesh": [os.path.abspath(p) for p in gts.values()]})
    return Manifest(frame, _ANY_FOLDER), source, sorted(set(source.files) - set(gts))
