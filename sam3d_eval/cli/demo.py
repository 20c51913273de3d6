"""`sam3d-eval demo`: the built-in evaluation, end to end, with no data of the user's own.

Writes procedural ground-truth shapes and seeded degraded "predictions" (a mild and a severe one per shape)
as mesh files, then scores them with the same path `eval-meshes` uses.
"""

from __future__ import annotations

import argparse
import pathlib

from .eval_meshes import add_appearance_options, add_metric_options, check_metric_options, evaluate_and_report

LEVELS = {  # keyword arguments of data.shapes.Degradation (built when the command runs: no import for --help)
    "mild": dict(noise=0.003, stretch=0.03, color_shift=0.03),
    "severe": dict(noise=0.01, stretch=0.12, dent=0.08, drop_fraction=0.1, color_shift=0.15),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the built-in evaluation on procedural shapes",
        description=(
            "Generate the built-in procedural shapes and a mild and a severe seeded degradation of each as "
            "predictions (vertex-coloured), write them as .ply files under OUT/gt and OUT/pred, and score their "
            "geometry under --protocol and their appearance on 8 rendered views."
        ),
    )
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("reports/demo"),
                   help="folder for the generated meshes and results.csv (default reports/demo)")
    add_metric_options(p)
    add_appearance_options(p, default=True)
    p.set_defaults(run=run, output=None)


def write_demo_data(out: pathlib.Path, seed: int) -> tuple[pathlib.Path, pathlib.Path]:
    """Write GT and prediction meshes for every built-in shape and degradation level; return both folders."""
    import torch

    from ..data.shapes import SHAPES, Degradation, degrade, make_shape, shape_colors
    from ..io.mesh_io import save_mesh

    gt_dir, pred_dir = out / "gt", out / "pred"
    gt_dir.mkdir(parents=True, exist_ok=True)
    pred_dir.mkdir(parents=True, exist_ok=True)
    for s, name in enumerate(sorted(SHAPES)):
        verts, faces = make_shape(name)
        colors = shape_colors(verts)
        for level, (tag, degradation) in enumerate(LEVELS.items()):
            sample_id = f"{name}_{tag}"
            save_mesh(gt_dir / f"{sample_id}.ply", (torch.from_numpy(verts), torch.from_numpy(faces)),
                      colors=torch.from_numpy(colors))
            dv, df, dc = degrade(verts, faces, Degradation(**degradation), seed=seed * 1000 + 10 * s + level, colors=colors)
            save_mesh(pred_dir / f"{sample_id}.ply", (torch.from_numpy(dv), torch.from_numpy(df)),
                      colors=torch.from_numpy(dc))
    return gt_dir, pred_dir


def run(args: argparse.Namespace) -> int:
    from ..evaluate.sources import find_pairs
    from .table import check_output_path

    output = check_output_path(args.out / "results.csv")
    protocol = check_metric_options(args)
    gt_dir, pred_dir = write_demo_data(args.out, protocol.seed)
    frame, source, _ = find_pairs(pred_dir, gt_dir)
    evaluate_and_report(frame, source, args, protocol, output)
    return 0
