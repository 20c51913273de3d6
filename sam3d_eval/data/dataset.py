"""A torch `Dataset` over any valid manifest (the built-in benchmark's or a user's), and its collate function.

Each item is a dict: `sample_id` (str), `image` `(3, H, W)` float32 in [0, 1], `mask` `(1, H, W)` bool (the
visible-object mask; all True when the manifest has none), `camera` (the manifest's camera JSON as a dict,
or None), `domain`, `category`, `occlusion`, `split` (None, occlusion nan, where the manifest has no such
column), and the ground truth as `gt_mesh` (a `Meshes` of one)
or, with `gt="points"`, `gt_points` `(num_points, 3)` float32 sampled by area from the stream
`(seed, sample_id, "gt_points")` (the same points for the same sample, whatever the order or worker).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Sequence

import numpy as np
import torch

from ..io.mesh_io import load_mesh
from ..ops.sample_points import sample_points_from_meshes
from ..seeding import torch_generator
from ..structures.meshes import Meshes

__all__ = ["ManifestDataset", "collate_samples"]


def _read_image(path: str, size: tuple[int, int] | None) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).to(torch.float32) / 255.0


def _read_mask(path: str, size: tuple[int, int] | None) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L")
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.NEAREST)
        arr = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(arr >= 128)[None]


class ManifestDataset(torch.utils.data.Dataset):
    """Samples of a manifest (path or frame from `data.manifest.load_manifest`).

    Args:
        manifest: a manifest file (CSV, JSONL, Parquet) or an already validated frame.
        split: keep only rows of this split (needs a `split` column).
        domain: keep only rows of this domain (needs a `domain` column).
        gt: "mesh" (default), "points" or None (no ground truth loaded).
        num_points: points per sample with `gt="points"`.
        seed: base seed of the point sampling.
        image_size: `(H, W)` to resize images and masks to (bilinear / nearest); default as stored.
    """

    def __init__(
        self,
        manifest: str | os.PathLike | Any,
        *,
        split: str | None = None,
        domain: str | None = None,
        gt: str | None = "mesh",
        num_points: int = 2048,
        seed: int = 0,
        image_size: tuple[int, int] | None = None,
    ) -> None:
        from .manifest import load_manifest

        frame = load_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else manifest
        if gt not in ("mesh", "points", None):
            raise ValueError(f"gt must be 'mesh', 'points' or None, got {gt!r}")
        if split is not None:
            if "split" not in frame.columns:
                raise ValueError(f"split={split!r} asked for but the manifest has no split column")
            frame = frame[frame["split"] == split]
        if domain is not None:
            if "domain" not in frame.columns:
                raise ValueError(f"domain={domain!r} asked for but the manifest has no domain column")
            frame = frame[frame["domain"] == domain]
        if "image" not in frame.columns or frame["image"].isna().any():
            raise ValueError("every row needs an image path to build a dataset of images")
        self.frame = frame.reset_index(drop=True)
        self.gt, self.num_points, self.seed, self.image_size = gt, int(num_points), int(seed), image_size

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def domains(self) -> list[str]:
        """The domain of every item, in order (for `MixingSampler`); needs a `domain` column."""
        if "domain" not in self.frame.columns:
            raise ValueError("the manifest has no domain column: the items have no domains")
        return self.frame["domain"].tolist()

    def __getitem__(self, index: int) -> dict:
        row = self.frame.iloc[int(index)]
        sid = str(row["sample_id"])
        image = _read_image(row["image"], self.image_size)
        mask_path = row["mask"] if "mask" in self.frame.columns else None
        if isinstance(mask_path, str):
            mask = _read_mask(mask_path, tuple(image.shape[1:]))
        else:
            mask = torch.ones((1, *image.shape[1:]), dtype=torch.bool)
        cam = row["camera"] if "camera" in self.frame.columns else None
        item = {
            "sample_id": sid,
            "image": image,
            "mask": mask,
            "camera": json.loads(cam) if isinstance(cam, str) else None,
            # the manifest's optional strata: None (occlusion: nan) where the manifest has no such column
            "domain": row["domain"] if "domain" in self.frame.columns else None,
            "category": row["category"] if "category" in self.frame.columns else None,
            "occlusion": float(row["occlusion"]) if "occlusion" in self.frame.columns else math.nan,
            "split": row["split"] if "split" in self.frame.columns else None,
        }
        if self.gt is not None:
            mesh = load_mesh(row["gt_mesh"])
            if self.gt == "mesh":
                item["gt_mesh"] = mesh
            else:
                pts = sample_points_from_meshes(mesh, self.num_points,
                                                generator=torch_generator(self.seed, sid, "gt_points"))
                item["gt_points"] = pts[0].to(torch.float32)
        return item


def collate_samples(items: Sequence[dict]) -> dict:
    """Batch items of `ManifestDataset`: images `(B, 3, H, W)`, masks `(B, 1, H, W)` (same sizes needed),
    `gt_points` `(B, P, 3)`, `gt_mesh` one `Meshes` of B; other keys become lists."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    out: dict[str, Any] = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        if key in ("image", "mask", "gt_points"):
            shapes = {tuple(v.shape) for v in vals}
            if len(shapes) > 1:
                raise ValueError(f"cannot stack {key} of different shapes {sorted(shapes)}; set image_size")
            out[key] = torch.stack(vals)
        elif key == "gt_mesh":
            textures = None
            feats = [m.textures for m in vals]
            if all(f is not None and type(f).__name__ == "TexturesVertex" for f in feats):
                from ..structures.textures import TexturesVertex

                textures = TexturesVertex([f.verts_features[0] for f in feats])
            out[key] = Meshes([m.verts_list()[0] for m in vals], [m.faces_list()[0] for m in vals], textures)
        else:
            out[key] = vals
    return out
