"""Fuzzed prediction files for the failure-isolation tests of the runner and the CLI: each is one bad sample
that must become a failed row with its reason, never a failed run."""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import torch

from sam3d_eval.data.shapes import make_shape
from sam3d_eval.io.mesh_io import save_mesh

GOOD = ("g0", "g1", "g2", "g3")
# sample id -> text its failed row's error must hold
BAD = {
    "bad_splat": "log scales",  # scale_* = 100: exp overflows float32
    "bad_splat45": "sampling weights overflow",  # scale_* = 45: exp is finite, the weights are not
    "bad_mesh": "NaN or inf",  # an OBJ with a NaN vertex
    "bad_cloud": "must be integers or floats",  # an npz whose points are strings
}


def save_shape(path: pathlib.Path, name: str, shift: float = 0.0) -> None:
    v, f = make_shape(name)
    save_mesh(path, (torch.from_numpy(v + shift), torch.from_numpy(f)))


def write_splat(path: pathlib.Path, log_scale: float, n: int = 40) -> None:
    """A binary 3DGS PLY of `n` opaque Gaussians on a sphere, every scale_* = `log_scale`."""
    rng = np.random.default_rng(0)
    means = rng.normal(size=(n, 3))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    cols = {"x": means[:, 0], "y": means[:, 1], "z": means[:, 2], "f_dc_0": np.zeros(n), "f_dc_1": np.zeros(n),
            "f_dc_2": np.zeros(n), "opacity": np.full(n, 5.0), "scale_0": np.full(n, log_scale),
            "scale_1": np.full(n, log_scale), "scale_2": np.full(n, log_scale), "rot_0": np.ones(n),
            "rot_1": np.zeros(n), "rot_2": np.zeros(n), "rot_3": np.zeros(n)}
    head = ["ply", "format binary_little_endian 1.0", f"element vertex {n}",
            *(f"property float {k}" for k in cols), "end_header"]
    rec = np.zeros(n, dtype=[(k, "<f4") for k in cols])
    for k, c in cols.items():
        rec[k] = c
    path.write_bytes(("\n".join(head) + "\n").encode() + rec.tobytes())


def write_bad_files(pred: pathlib.Path) -> None:
    """The predictions of `BAD` in the folder `pred`."""
    write_splat(pred / "bad_splat.ply", 100.0)
    write_splat(pred / "bad_splat45.ply", 45.0)
    v, f = make_shape("box")
    lines = [f"v {x} {y} {z}" for x, y, z in v] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f]
    lines[1] = "v nan 0 0"
    (pred / "bad_mesh.obj").write_text("\n".join(lines) + "\n")
    np.savez(pred / "bad_cloud.npz", points=np.array([["a", "b", "c"]] * 50))


def make_fuzz_dataset(root: pathlib.Path, *, with_bad: bool) -> pathlib.Path:
    """A manifest of the `GOOD` samples (and, `with_bad`, the `BAD` ones) with ground truths and predictions
    under `root`; returns the manifest's path (predictions in ``root/pred``)."""
    (root / "gt").mkdir(parents=True)
    (root / "pred").mkdir()
    shapes = ("sphere", "box", "torus", "sphere")
    ids = list(GOOD) + (list(BAD) if with_bad else [])
    rows = []
    for i, sid in enumerate(ids):
        name = shapes[i % len(shapes)]
        save_shape(root / "gt" / f"{sid}.ply", name)
        if sid in GOOD:
            save_shape(root / "pred" / f"{sid}.ply", name, shift=0.01 * (i + 1))
        rows.append(dict(sample_id=sid, gt_mesh=f"gt/{sid}.ply", domain=("synthetic", "real")[i % 2],
                         occlusion=0.1 * i, category=name))
    if with_bad:
        write_bad_files(root / "pred")
    pd.DataFrame(rows).to_csv(root / "m.csv", index=False)
    return root / "m.csv"
