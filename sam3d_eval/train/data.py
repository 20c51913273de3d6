"""Training data over an evaluation manifest (DESIGN.md section 4): decoded once, held in memory, mixed by domain.

`ManifestTrainData(manifest, split)` reads the rows of one split: the image (RGB) and visible mask with
Pillow, resized to `image_size`; the GT mesh with `io.load_mesh` (vertex colours, grey when absent); the
camera JSON ("R", "T", "K", "image_size": the GT mesh's frame to OpenCV camera) as a one-camera
`PerspectiveCameras` at the resized size. It implements `train.loop.TrainData`.

`epoch_indices` is the seeded per-epoch mixing draw: `round(f * size)` samples from the synthetic pool and
the rest from the real pool, each pool walked in a fresh seeded permutation (repeated when the pool is
smaller than the draw), the whole epoch then shuffled; keyed by (seed, epoch, "mix"), so an epoch's draw
depends on nothing else (resumes and rank counts see the same order).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..io.mesh_io import load_mesh
from ..render.cameras import PerspectiveCameras
from ..seeding import numpy_generator

__all__ = ["ManifestTrainData", "camera_from_record", "mixed_epoch"]


def camera_from_record(record: dict[str, Any], image_size: int | None = None) -> PerspectiveCameras:
    """A one-camera `PerspectiveCameras` from a manifest camera record, rescaled to `image_size` pixels."""
    try:
        R = torch.tensor(record["R"], dtype=torch.float32)[None]
        T = torch.tensor(record["T"], dtype=torch.float32)[None]
        K = record["K"]
        H, W = (int(s) for s in record["image_size"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"camera record needs R, T, K and image_size: {err}") from None
    s = 1.0 if image_size is None else image_size / H
    size = (H, W) if image_size is None else (image_size, round(W * s))
    return PerspectiveCameras(R, T, torch.tensor([K[0][0] * s, K[1][1] * s]), size, torch.tensor([K[0][2] * s, K[1][2] * s]))


def mixed_epoch(domains: list[str], synthetic_fraction: float, size: int, seed: int, epoch: int) -> list[int]:
    """The epoch's draw (module docstring): indices into `domains`."""
    rng = numpy_generator(seed, epoch, "mix")
    pools = {d: [i for i, x in enumerate(domains) if x == d] for d in ("synthetic", "real")}
    k = math.floor(synthetic_fraction * size + 0.5)
    want = {"synthetic": k, "real": size - k}
    picks: list[int] = []
    for d, n in want.items():
        if n and not pools[d]:
            raise ValueError(f"the curriculum asks for {n} {d} samples but the training split has none")
        while n > 0:
            perm = rng.permutation(pools[d])[:n]
            picks += perm.tolist()
            n -= len(perm)
    return [picks[i] for i in rng.permutation(len(picks))]


class ManifestTrainData:
    """One split of a manifest as training items (module docstring)."""

    def __init__(self, manifest: str | os.PathLike, split: str | None = "train", image_size: int = 64):
        from PIL import Image

        from ..data.manifest import load_manifest

        frame = load_manifest(manifest)
        if split is not None and "split" in frame.columns:
            frame = frame[frame["split"] == split]
        if not len(frame):
            raise ValueError(f"{manifest}: no rows in split {split!r}")
        self.manifest_hash = hashlib.sha256(Path(manifest).read_bytes()).hexdigest()[:16]
        self.items: list[dict[str, Any]] = []
        for row in frame.to_dict("records"):
            with Image.open(row["image"]) as im:
                img = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
            with Image.open(row["mask"]) as im:
                mask = torch.from_numpy(np.asarray(im.convert("L")) > 0)[None].float()
            img = F.interpolate(img[None], size=(image_size, image_size), mode="bilinear", antialias=True,
                                align_corners=False)[0]
            mask = F.interpolate(mask[None], size=(image_size, image_size), mode="bilinear", antialias=True,
                                 align_corners=False)[0] > 0.5
            cam = row.get("camera")
            cam = json.loads(cam) if isinstance(cam, str) else cam
            if not isinstance(cam, dict):
                raise ValueError(f"{manifest}: sample {row['sample_id']} has no camera; training needs one per sample")
            mesh = load_mesh(row["gt_mesh"])
            verts = mesh.verts_list()[0]
            tex = mesh.textures
            colors = tex.verts_features[0][:, :3] if tex is not None and hasattr(tex, "verts_features") else \
                torch.full_like(verts, 0.7)
            self.items.append({
                "image": img.contiguous(), "mask": mask, "camera": camera_from_record(cam, image_size),
                "gt_verts": verts, "gt_faces": mesh.faces_list()[0], "gt_colors": colors.float(),
                "sample_id": str(row["sample_id"]), "domain": str(row["domain"]),
            })
        self.domains = [it["domain"] for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]

    def epoch_indices(self, epoch: int, synthetic_fraction: float, size: int, seed: int) -> list[int]:
        return mixed_epoch(self.domains, synthetic_fraction, size, seed, epoch)
