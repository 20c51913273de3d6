"""A small paired data set for the compare and report tests: built-in shapes, two prediction folders.

`make_pair_dataset(root, n)` writes n ground-truth meshes (low-resolution built-in shapes, both domains,
occlusions over every bin, 3 categories), predictions A (GT + small seeded vertex noise) and B (A + larger
noise: worse on every sample), and manifest.csv; rendered input images and masks as well when `images`.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import torch
import trimesh

from sam3d_eval.data.shapes import Degradation, degrade
from sam3d_eval.io.mesh_io import save_mesh

PROTOCOL_SAMPLES = 300

_SHAPES = {
    "sphere": lambda: trimesh.creation.icosphere(subdivisions=2, radius=0.5),
    "box": lambda: trimesh.creation.box(extents=(0.8, 0.5, 0.3)).subdivide().subdivide(),
    "cone": lambda: trimesh.creation.cone(radius=0.4, height=0.8, sections=24),
}


def make_pair_dataset(root: pathlib.Path, n: int = 12, *, images: bool = False, missing_b: tuple[str, ...] = ()):
    """Write the data set under `root` and return (manifest path, folder A, folder B)."""
    root = pathlib.Path(root)
    for d in ("gt", "a", "b", "img"):
        (root / d).mkdir(parents=True, exist_ok=True)
    names = list(_SHAPES)
    rows = []
    for i in range(n):
        name = names[i % len(names)]
        m = _SHAPES[name]()
        v, f = np.asarray(m.vertices, np.float32), np.asarray(m.faces, np.int64)
        sid = f"s{i:02d}"
        save_mesh(root / "gt" / f"{sid}.ply", (torch.from_numpy(v), torch.from_numpy(f)))
        va, fa = degrade(v, f, Degradation(noise=0.004), seed=i)
        save_mesh(root / "a" / f"{sid}.ply", (torch.from_numpy(np.asarray(va, np.float32)), torch.from_numpy(fa)))
        if sid not in missing_b:
            vb, fb = degrade(np.asarray(va, np.float32), fa, Degradation(noise=0.03), seed=1000 + i)
            save_mesh(root / "b" / f"{sid}.ply", (torch.from_numpy(np.asarray(vb, np.float32)), torch.from_numpy(fb)))
        row = dict(sample_id=sid, gt_mesh=f"gt/{sid}.ply", domain="real" if i % 2 else "synthetic",
                   occlusion=[0.05, 0.2, 0.45, 0.8][i % 4], category=name)
        if images:
            from PIL import Image

            img = np.full((64, 64, 3), 40 + 15 * i, np.uint8)
            mask = np.zeros((64, 64), np.uint8)
            mask[16:48, 16 + i % 8 : 40 + i % 8] = 255
            Image.fromarray(img).save(root / "img" / f"{sid}.png")
            Image.fromarray(mask).save(root / "img" / f"{sid}_mask.png")
            row.update(image=f"img/{sid}.png", mask=f"img/{sid}_mask.png")
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv", root / "a", root / "b"
