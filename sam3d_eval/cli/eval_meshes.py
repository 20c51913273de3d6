"""`sam3d-eval eval-meshes PRED GT`: surface metrics of predicted meshes against ground truth."""

from __future__ import annotations

import argparse
import pathlib
import sys

from tqdm import tqdm

from ..evaluate.pairs import MESH_SUFFIXES, PairResult, SamplePair, find_pairs, score_pairs
from ..metrics.surface import DEFAULT_TAUS
from .table import format_results, write_results


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-meshes",
        help="score predicted meshes against ground-truth meshes",
        description=(
            "Score predicted meshes against ground truth. PRED and GT are two mesh files, or two folders in "
            f"which files ({', '.join(MESH_SUFFIXES)}) are paired by stem (the sample id). A missing or "
            "unreadable prediction is recorded as a failed sample, not an error."
        ),
    )
    p.add_argument("pred", type=pathlib.Path, help="predicted mesh file or folder")
    p.add_argument("gt", type=pathlib.Path, help="ground-truth mesh file or folder")
    add_metric_options(p)
    p.add_argument("-o", "--output", type=pathlib.Path, help="write per-sample results to this .csv or .json")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any sample failed")
    p.set_defaults(run=run)


def add_metric_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=int, default=100_000, help="points sampled per surface (default 100000)")
    p.add_argument(
        "--taus", type=float, nargs="+", default=list(DEFAULT_TAUS),
        help="F-score thresholds, fractions of the unit cube's side (default 0.01 0.02 0.05)",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")


def check_metric_options(args: argparse.Namespace) -> None:
    if args.samples < 1:
        raise ValueError(f"--samples must be positive, got {args.samples}")
    if any(t <= 0 for t in args.taus):
        raise ValueError(f"--taus must be positive, got {args.taus}")


def evaluate_and_report(pairs: list[SamplePair], args: argparse.Namespace) -> list[PairResult]:
    """Score the pairs with a progress bar, print the table, write the output file when asked."""
    results = list(
        tqdm(
            score_pairs(pairs, num_samples=args.samples, taus=tuple(args.taus), seed=args.seed, device=args.device),
            total=len(pairs), desc="scoring", unit="sample", file=sys.stderr, disable=None,
        )
    )
    print(format_results(results))
    if args.output:
        settings = {"protocol": "default (GT bbox to unit cube, no rotation)", "samples": args.samples,
                    "taus": list(args.taus), "seed": args.seed}
        write_results(args.output, results, settings)
        print(f"wrote {args.output}")
    return results


def run(args: argparse.Namespace) -> int:
    check_metric_options(args)
    pairs, orphans = find_pairs(args.pred, args.gt)
    if orphans:
        print(f"note: {len(orphans)} prediction(s) have no ground truth and are not scored: "
              f"{', '.join(orphans[:5])}{' ...' if len(orphans) > 5 else ''}", file=sys.stderr)
    results = evaluate_and_report(pairs, args)
    failed = [r for r in results if r.status != "ok"]
    if failed:
        print(f"{len(failed)} of {len(results)} samples failed", file=sys.stderr)
    return 1 if failed and args.strict else 0
