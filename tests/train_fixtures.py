"""A tiny in-memory training set for the train tests: built-in shapes rendered from seeded cameras."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from sam3d_eval.data.shapes import make_shape, shape_colors
from sam3d_eval.render import orbit_cameras, render_views
from sam3d_eval.seeding import numpy_generator
from sam3d_eval.structures import Meshes, TexturesVertex


class ToyData:
    """`n` samples over three shapes; odd samples are "real" (noisy images). Implements `train.loop.TrainData`."""

    def __init__(self, n: int = 16, size: int = 32, seed: int = 0):
        self.items = []
        shapes = ["sphere", "box", "cone"]
        for i in range(n):
            v, f = make_shape(shapes[i % 3])
            c = shape_colors(v)
            rng = numpy_generator(seed, i, "toy")
            cam = orbit_cameras(float(rng.uniform(0, 360)), float(rng.uniform(-10, 40)), 2.8, (size, size))
            mesh = Meshes([torch.tensor(v)], [torch.tensor(f)], TexturesVertex([torch.tensor(c)]))
            r = render_views(mesh, cam)
            img = r.rgb[0, 0].permute(2, 0, 1).contiguous()
            domain = "real" if i % 2 else "synthetic"
            if domain == "real":
                img = (img + torch.from_numpy(rng.normal(0, 0.1, img.shape).astype(np.float32))).clamp(0, 1)
            self.items.append({
                "image": img, "mask": r.mask[0, 0][None] > 0, "camera": cam, "gt_verts": torch.tensor(v),
                "gt_faces": torch.tensor(f), "gt_colors": torch.tensor(c), "sample_id": f"toy{i:03d}", "domain": domain,
            })
        self.domains = [it["domain"] for it in self.items]
        self.manifest_hash = hashlib.sha256(f"toy{n}-{size}-{seed}".encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]

    def epoch_indices(self, epoch: int, synthetic_fraction: float, size: int, seed: int) -> list[int]:
        rng = numpy_generator(seed, epoch, "toy-epoch")
        syn = [i for i, d in enumerate(self.domains) if d == "synthetic"]
        real = [i for i, d in enumerate(self.domains) if d == "real"]
        k = int(round(synthetic_fraction * size))
        picks = list(rng.choice(syn, k)) + list(rng.choice(real, size - k))
        return [int(i) for i in rng.permutation(picks)]


def tiny_config(out_dir, stage: int = 1, **overrides):
    """A two-second training config over `ToyData`: 4 epochs of 2 steps of global batch 4."""
    import dataclasses

    from sam3d_eval.models import ReferenceConfig
    from sam3d_eval.train.loop import TrainConfig
    from sam3d_eval.train.losses import LossConfig, LossWeights

    cfg = TrainConfig(
        stage=stage, epochs=4, epoch_size=8, batch_size=4, warmup_steps=2, lr=1e-3, log_every=1,
        model=ReferenceConfig(input_size=32, channels=(8, 16), feature_dim=16, decoder_hidden=16, ico_level=1),
        loss=LossConfig(weights=LossWeights.stage(stage), num_points=100, render_size=16,
                        view_azimuths=(30.0,), view_elevations=(20.0,)),
        out_dir=str(out_dir),
    )
    return dataclasses.replace(cfg, **overrides)
