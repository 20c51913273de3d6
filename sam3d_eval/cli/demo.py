"""`sam3d-eval demo`: the whole method on the built-in benchmark, with no data of the user's own.

Runs `workflows.run_demo` (train on the demo recipe with every phase boundary scored, compare the stage-1 and
stage-2 final checkpoints, write the report; everything in OUT, default reports/demo); this module parses the
arguments and draws the progress.

`--quick` keeps the earlier seconds-long demo: procedural ground-truth shapes and seeded degraded "predictions"
(a mild and a severe one per shape) written as mesh files and scored by the path `eval-meshes` uses.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from .eval_meshes import add_appearance_options, add_metric_options, check_metric_options, evaluate_and_report

# The packaged demo recipe, workflows.DEMO_RECIPE (spelled out here so that --help imports nothing).
RECIPE = pathlib.Path(__file__).resolve().parents[1] / "workflows" / "demo.toml"

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
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="training runs (seeds 0..N-1) on the one benchmark, each in OUT/seed<k>; the comparison then "
                        "takes all N runs per stage (two-level bootstrap over runs and twin pairs) and gap_change.csv "
                        "gives the share of the gap closed across them. N = 3 takes about three times as long")
    p.add_argument("--benchmark-seed", type=int, default=None, metavar="S",
                   help="seed of the built-in benchmark (default: the recipe's, 0); a seed never used to choose "
                        "the recipe gives a held-out benchmark")
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


def run_full(args: argparse.Namespace) -> int:
    from ..workflows import run_demo
    from .compare import _scoring_progress
    from .train import _StageBar

    t0 = time.perf_counter()

    def step(k: int, n: int, what: str) -> None:
        print(f"\n[{k}/{n}] {what}  (elapsed {time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
    result = run_demo(args.out, config=args.config, seeds=args.seeds, benchmark_seed=args.benchmark_seed,
                      device=args.device, fresh=args.fresh,
                      log=lambda line: print(line, flush=True), step=step,
                      progress=None if args.quiet else _StageBar,
                      compare_progress=_scoring_progress(quiet=args.quiet))
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; in {result.out}:", file=sys.stderr)
    for f in result.files:
        print(f"  {f}", file=sys.stderr)
    print(f"open {result.out / 'report.html'} in a browser", file=sys.stderr, flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------
# --quick


def run_quick(args: argparse.Namespace) -> int:
    from ..evaluate.sources import find_pairs
    from ..workflows.demo import write_quick_demo_data
    from .table import check_output_path

    output = check_output_path(args.out / "results.csv")
    protocol = check_metric_options(args)
    gt_dir, pred_dir = write_quick_demo_data(args.out, protocol.seed)
    frame, source, _ = find_pairs(pred_dir, gt_dir)
    evaluate_and_report(frame, source, args, protocol, output)
    return 0
