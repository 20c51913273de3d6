"""`sam3d-eval demo`: the embedded default (DESIGN.md section 2), end to end, with no data of the user's own.

Composes the other commands' entry points (their `run` functions, with arguments parsed by their own parsers,
so defaults and checks keep one home): `train` on the demo recipe (generates the built-in benchmark, trains
stage 1 and stage 2 with the curriculum, scores every phase boundary, writes gap.csv, stage_comparison.csv
and gap_change.csv), then `compare` of the stage-1 and stage-2 final checkpoints (reusing the stored
phase-boundary evaluations of those exact weights), then `report` (verdict, tables, the gap across curriculum
phases). Everything stays in OUT (default reports/demo).

`--quick` keeps the earlier seconds-long demo: procedural ground-truth shapes and seeded degraded "predictions"
(a mild and a severe one per shape) written as mesh files and scored by the path `eval-meshes` uses.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import sys
import time

from .eval_meshes import add_appearance_options, add_metric_options, check_metric_options, evaluate_and_report

# The demo recipe ships inside the package (setuptools package data, pyproject.toml) so that an installed
# `sam3d-eval demo` finds it; training/demo.toml is a symlink to this file, the copy users read and pass to
# `sam3d-eval train --config`. One file, two names: the demo and the documented recipe cannot drift apart.
RECIPE = pathlib.Path(__file__).with_name("demo.toml")

LEVELS = {  # keyword arguments of data.shapes.Degradation (built when the command runs: no import for --help)
    "mild": dict(noise=0.003, stretch=0.03, color_shift=0.03),
    "severe": dict(noise=0.01, stretch=0.12, dent=0.08, drop_fraction=0.1, color_shift=0.15),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job: built-in data, both training stages, gap at every phase, compare, HTML report",
        description=(
            "With no data of your own: generate the built-in procedural benchmark (synthetic renders and shifted "
            "'real' photos), train a small stage-1 checkpoint on synthetic data and a stage-2 checkpoint with the "
            "curriculum (80/20 -> 50/50 -> 20/80 -> 100% real), score every phase boundary on the test split "
            "(synthetic-vs-real gap with bootstrap intervals over twin pairs), compare the stage-1 and final checkpoints (paired "
            "deltas, Wilcoxon, Holm) and write the HTML report. About 5 minutes on 2 idle CPU cores. Writes OUT/: "
            "benchmark/, stage1/ and stage2/ (*.safetensors checkpoints, log.jsonl, eval/ runs), gap.csv, "
            "stage_comparison.csv, gap_change.csv, compare.txt, compare.html, report.html. Run again, it continues where it "
            "stopped (--fresh starts over). --quick runs the earlier seconds-long evaluation of procedural shapes."
        ),
        epilog="example: sam3d-eval demo --out reports/demo   (then open reports/demo/report.html)",
    )
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("reports/demo"),
                   help="output folder (default reports/demo)")
    p.add_argument("--config", type=pathlib.Path, default=None,
                   help="training recipe (default: the packaged demo recipe, also at training/demo.toml)")
    p.add_argument("--fresh", action="store_true", help="train from scratch even if OUT holds a previous run")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the step lines are still printed)")
    q = p.add_argument_group(
        "--quick", "the earlier demo: procedural shapes, a mild and a severe degraded prediction of each, written "
        "as .ply under OUT/gt and OUT/pred and scored (results.csv); the options below apply to it only "
        "(--device also to training)")
    q.add_argument("--quick", action="store_true", help="run the quick procedural-shapes evaluation instead")
    add_metric_options(q)
    add_appearance_options(q, default=True)
    p.set_defaults(run=run, output=None)


def run(args: argparse.Namespace) -> int:
    return run_quick(args) if args.quick else run_full(args)


# ---------------------------------------------------------------------------------------------------
# the main job


class _Tee:
    """Write to every stream: the comparison table goes to the terminal and to OUT/compare.txt."""

    def __init__(self, *streams) -> None:
        self.streams = streams

    def write(self, s: str) -> int:
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self) -> None:
        for st in self.streams:
            st.flush()


def _step(k: int, n: int, what: str, t0: float) -> None:
    print(f"\n[{k}/{n}] {what}  (elapsed {time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)


def run_full(args: argparse.Namespace) -> int:
    from . import compare as compare_cmd
    from . import report as report_cmd
    from . import train as train_cmd
    from .main import build_parser

    recipe = args.config or RECIPE
    if not recipe.is_file():
        raise FileNotFoundError(f"--config {recipe}: no such recipe")
    out = args.out
    parser = build_parser()  # the subcommands' own parsers: their defaults and checks, one home
    t0 = time.perf_counter()

    _step(1, 3, f"train: built-in benchmark, stage 1, stage 2 with the curriculum, gap at every phase -> {out}", t0)
    targv = ["train", "--config", str(recipe), "--out", str(out), "--device", args.device]
    targv += ["--fresh"] * args.fresh + ["--quiet"] * args.quiet
    code = train_cmd.run(parser.parse_args(targv))
    if code:
        return code
    finals = [out / f"stage{k}" / "final.safetensors" for k in (1, 2)]
    missing = [str(f) for f in finals if not f.is_file()]
    if missing:
        raise ValueError(f"{recipe}: the demo needs both stages; no {', '.join(missing)} after training")

    _step(2, 3, "compare: stage-1 vs final (stage-2) checkpoint on the same test samples", t0)
    cargv = ["compare", str(finals[0]), str(finals[1]), "--labels", "stage 1", "stage 2 (final)",
             "--runs-dir", str(out / "compare"), "--out", str(out / "compare.html"), "--device", args.device]
    with open(out / "compare.txt", "w") as table, contextlib.redirect_stdout(_Tee(sys.stdout, table)):
        code = compare_cmd.run(parser.parse_args(cargv))
    if code:
        return code

    _step(3, 3, "report: verdict, metric and gap tables, the gap across curriculum phases", t0)
    stage1_runs = sorted((out / "stage1" / "eval").glob("stage1-phase*"))
    if not stage1_runs:
        raise ValueError(f"{out}/stage1/eval: no phase-boundary evaluation (is [eval] enabled in {recipe}?)")
    # stage 1's last evaluation beside the training folder (whose gap.csv gives the phases plot and whose
    # last phase-boundary run is the final checkpoint's)
    rargv = ["report", str(stage1_runs[-1]), str(out), "--labels", "stage 1", "stage 2 (final)",
             "--out", str(out / "report.html"), "--title", "sam3d-eval demo: stage 1 vs stage 2 on the built-in benchmark"]
    code = report_cmd.run(parser.parse_args(rargv))
    if code:
        return code

    files = ["stage1/final.safetensors", "stage2/final.safetensors", "gap.csv", "stage_comparison.csv", "gap_change.csv",
             "compare.txt", "compare.html", "report.html"]
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; in {out}:", file=sys.stderr)
    for f in files:
        if (out / f).exists():
            print(f"  {f}", file=sys.stderr)
    print(f"open {out / 'report.html'} in a browser", file=sys.stderr, flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------
# --quick


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


def run_quick(args: argparse.Namespace) -> int:
    from ..evaluate.sources import find_pairs
    from .table import check_output_path

    output = check_output_path(args.out / "results.csv")
    protocol = check_metric_options(args)
    gt_dir, pred_dir = write_demo_data(args.out, protocol.seed)
    frame, source, _ = find_pairs(pred_dir, gt_dir)
    evaluate_and_report(frame, source, args, protocol, output)
    return 0
