"""Training data over an evaluation manifest (docs/data.md): decoded once, held in memory, mixed by domain.

`ManifestTrainData(manifest, split)` reads the rows of one split with the data layer's `ManifestDataset`
(image and visible mask resized to `image_size`, the GT mesh with its vertex colours, grey when absent) and
turns each camera JSON ("R", "T", "K", "image_size": the GT mesh's frame to OpenCV camera) into a
one-camera `PerspectiveCameras` at the resized size. It implements `train.loop.TrainData`; its epoch draw is
the data layer's seeded `MixingSampler` (stream (seed, "mixing_sampler", epoch): the same order after a
resume and for any rank count; the loop shards each global batch over the ranks itself).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from ..data.dataset import ManifestDataset
from ..data.sampler import MixingSampler
from ..render.cameras import PerspectiveCameras

__all__ = ["ManifestTrainData", "camera_from_record"]


def camera_from_record(record: dict[str, Any], image_size: int | None = None) -> PerspectiveCameras:
    """A one-camera `PerspectiveCameras` from a manifest camera record, for the image resized to
    `image_size` x `image_size` pixels (as `ManifestDataset(image_size=...)` does; None keeps the record's)."""
    try:
        return PerspectiveCameras.from_intrinsics(
            record["K"], record["R"], record["T"], record["image_size"],
            resize_to=None if image_size is None else (image_size, image_size))
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise ValueError(f"camera record needs R, T, K and image_size: {err}") from None


class ManifestTrainData:
    """One split of a manifest as training items (module docstring)."""

    def __init__(self, manifest: str | os.PathLike, split: str | None = "train", image_size: int = 64):
        ds = ManifestDataset(manifest, split=split, gt="mesh", image_size=(image_size, image_size))
        if "domain" not in ds.frame.columns:
            raise ValueError(f"{manifest}: training needs a domain column (synthetic / real) in the manifest")
        if not len(ds):
            raise ValueError(f"{manifest}: no rows in split {split!r}")
        self.manifest_hash = hashlib.sha256(Path(manifest).read_bytes()).hexdigest()[:16]
        self.items: list[dict[str, Any]] = []
        for k in range(len(ds)):
            it = ds[k]
            if not isinstance(it["camera"], dict):
                raise ValueError(f"{manifest}: sample {it['sample_id']} has no camera; training needs one per sample")
            mesh = it["gt_mesh"]
            verts = mesh.verts_list()[0]
            tex = mesh.textures
            colors = tex.verts_features[0][:, :3].float() if tex is not None and hasattr(tex, "verts_features") \
                else torch.full_like(verts, 0.7)
            self.items.append({
                "image": it["image"], "mask": it["mask"], "camera": camera_from_record(it["camera"], image_size),
                "gt_verts": verts, "gt_faces": mesh.faces_list()[0], "gt_colors": colors,
                "sample_id": it["sample_id"], "domain": str(it["domain"]),
            })
        self.domains = [it["domain"] for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]

    def epoch_indices(self, epoch: int, synthetic_fraction: float, size: int, seed: int) -> list[int]:
        return MixingSampler(self.domains, synthetic_fraction, size, seed, epoch).epoch_indices()
