"""Rebuild the checked-in example reports: `python reports/example/make_example.py` (about a minute on 2 cores).

Data: 24 built-in shapes (6 kinds, both domains, occlusion over every bin). Two "checkpoints" are simulated
as prediction folders, so the example needs no training: `stage1` predicts every shape with small vertex
noise, plus on real images a stretched, dented shape and a missing patch that grows with the occlusion (the
domain gap); `stage2` halves the real-image errors (the gap closing). One stage-2 prediction is missing, so
the report shows how a failed sample is listed.

Writes, in this folder: compare.html (`sam3d-eval compare stage1 stage2 --out`), report.html
(`sam3d-eval report` of the stage-2 run), and compare.png / report.png (headless Chromium screenshots of the
first screen). The data and runs go to reports/_example_build/ (ignored by git).
"""

from __future__ import annotations

import os
import pathlib
import sys

import numpy as np
import pandas as pd
import torch

HERE = pathlib.Path(__file__).resolve().parent
REPORTS = HERE.parent
BUILD = REPORTS / "_example_build"


def make_data() -> None:
    from sam3d_eval.data.shapes import SHAPES, Degradation, degrade, make_shape, shape_colors
    from sam3d_eval.io.mesh_io import save_mesh
    from sam3d_eval.structures import Meshes, TexturesVertex

    def save(path, v, f, c):
        save_mesh(path, Meshes([torch.from_numpy(np.asarray(v, np.float32))], [torch.from_numpy(f)],
                               TexturesVertex([torch.from_numpy(np.asarray(c, np.float32))])))

    for d in ("gt", "stage1", "stage2"):
        (BUILD / d).mkdir(parents=True, exist_ok=True)
    names = sorted(SHAPES)
    occl = [0.02, 0.07, 0.15, 0.25, 0.35, 0.5, 0.65, 0.8]
    rows = []
    for i in range(24):
        name = names[i % len(names)]
        sid = f"{name}-{i:02d}"
        real = i % 2 == 1
        occ = occl[i % len(occl)]
        v, f = make_shape(name)
        c = shape_colors(v)
        save(BUILD / "gt" / f"{sid}.ply", v, f, c)
        for stage, k in (("stage1", 1.0), ("stage2", 0.5)):
            if stage == "stage2" and i == 13:
                continue  # a failed prediction
            deg = Degradation(noise=0.006 + (0.01 * k if real else 0.0), stretch=0.12 * k if real else 0.02,
                              dent=0.08 * k if real else 0.0, drop_fraction=(0.35 * occ * k) if real else 0.05 * occ)
            vv, ff, cc = degrade(v, f, deg, seed=1000 * (stage == "stage2") + i, colors=c)
            save(BUILD / stage / f"{sid}.ply", vv, ff, cc)
        rows.append(dict(sample_id=sid, gt_mesh=f"gt/{sid}.ply", domain="real" if real else "synthetic",
                         occlusion=occ, category=name))
    pd.DataFrame(rows).to_csv(BUILD / "manifest.csv", index=False)


def main() -> int:
    from sam3d_eval.cli.main import main as cli
    from sam3d_eval.report.browser import probe_page, screenshot

    make_data()
    os.chdir(REPORTS)  # relative paths in the reports' methods sections
    build = BUILD.relative_to(REPORTS)
    common = ["--data", str(build / "manifest.csv"), "--samples", "20000", "--runs-dir", str(build / "runs")]
    code = cli(["compare", str(build / "stage1"), str(build / "stage2"), *common, "--out", str(HERE / "compare.html")])
    if code not in (0, 1):
        return code
    runs = sorted((build / "runs").glob("stage2-*"))
    code = cli(["report", str(runs[-1]), "--labels", "stage2", "--out", str(HERE / "report.html")])
    if code:
        return code
    for name in ("compare", "report"):
        seen = probe_page(HERE / f"{name}.html")
        print(f"{name}.html: {seen['images']} images, {len(seen['broken'])} broken, console {seen['console']}")
        screenshot(HERE / f"{name}.html", HERE / f"{name}.png", width=1280, height=1700)
    return 0


if __name__ == "__main__":
    sys.exit(main())
