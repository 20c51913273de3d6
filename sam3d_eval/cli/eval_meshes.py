"""`sam3d-eval eval-meshes PRED GT`: geometry metrics of predictions against ground-truth meshes, under a protocol."""

from __future__ import annotations

import argparse
import pathlib
import sys

import torch
from tqdm import tqdm

from ..evaluate.appearance import load_lpips_or_none
from ..evaluate.pairs import (
    MESH_SUFFIXES,
    PRED_SUFFIXES,
    AppearanceOptions,
    PairResult,
    SamplePair,
    find_pairs,
    score_pairs,
)
from ..evaluate.protocols import PROTOCOLS, Protocol, get_protocol
from .table import format_results, write_results


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-meshes",
        help="score predictions (meshes, point clouds, splats) against ground-truth meshes",
        description=(
            "Score predictions against ground-truth meshes under a named protocol (see `sam3d-eval protocols`). "
            f"PRED and GT are two files, or two folders in which files are paired by stem (the sample id): GT "
            f"meshes ({', '.join(MESH_SUFFIXES)}); predictions may mix meshes, point clouds (.ply without "
            "faces, .npz with 'points' [+ 'normals']) and Gaussian-splat .ply files. A missing or unreadable "
            "prediction is recorded as a failed sample, not an error; a metric the input cannot give (normal "
            "consistency of a cloud without normals) is reported as nan with a note."
        ),
    )
    p.add_argument("pred", type=pathlib.Path, help=f"prediction file or folder ({', '.join(PRED_SUFFIXES)})")
    p.add_argument("gt", type=pathlib.Path, help="ground-truth mesh file or folder")
    add_metric_options(p)
    add_appearance_options(p, default=False)
    p.add_argument("-o", "--output", type=pathlib.Path, help="write per-sample results to this .csv or .json")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any sample failed")
    p.set_defaults(run=run)


def add_metric_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", default="default",
                   help=f"evaluation protocol: {', '.join(PROTOCOLS)} (default: default; list them with "
                        "`sam3d-eval protocols`)")
    p.add_argument("--samples", type=int, default=None,
                   help="points sampled per surface, overriding the protocol's (default 100000)")
    p.add_argument(
        "--taus", type=float, nargs="+", default=None,
        help="F-score thresholds in the protocol's normalised units, overriding its own "
             "(default protocol: 0.01 0.02 0.05, fractions of the unit cube's side)",
    )
    p.add_argument("--seed", type=int, default=None, help="sampling seed, overriding the protocol's (default 0)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")


def add_appearance_options(p: argparse.ArgumentParser, default: bool) -> None:
    p.add_argument(
        "--appearance", action=argparse.BooleanOptionalAction, default=default,
        help="also render prediction and GT from 8 views (two elevations) after the protocol's alignment and "
             f"report LPIPS, PSNR and SSIM (default: {'on' if default else 'off'})",
    )
    p.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex", help="LPIPS backbone (default alex)")
    p.add_argument(
        "--lpips-weights", type=pathlib.Path, default=None,
        help="torchvision-format backbone state dict for LPIPS (default: torchvision's file name in the torch "
             "hub cache, $TORCH_HOME/hub/checkpoints); without it LPIPS is reported as unavailable",
    )
    p.add_argument("--view-size", type=int, default=256, help="side of the rendered views in pixels (default 256)")


def appearance_options(args: argparse.Namespace) -> AppearanceOptions | None:
    """Build the LPIPS module once; when its weights are missing say so once and go on without it."""
    if not args.appearance:
        return None
    if args.view_size < 32:
        raise ValueError(f"--view-size must be at least 32 (LPIPS needs it), got {args.view_size}")
    lpips, reason = load_lpips_or_none(args.lpips_net, backbone_weights=args.lpips_weights)
    if reason:
        print(f"note: {reason}\nnote: PSNR and SSIM are still reported; LPIPS is nan.", file=sys.stderr)
    if lpips is not None:
        lpips = lpips.to(args.device)
    return AppearanceOptions(lpips=lpips, lpips_reason=reason, image_size=args.view_size)


def check_metric_options(args: argparse.Namespace) -> Protocol:
    """Validate the options; return the protocol with the command-line overrides applied and recorded."""
    if args.samples is not None and args.samples < 1:
        raise ValueError(f"--samples must be positive, got {args.samples}")
    if args.taus is not None and any(not t > 0 for t in args.taus):
        raise ValueError(f"--taus must be positive, got {args.taus}")
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise ValueError(f"--device {args.device!r}: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available in this torch build or on this machine")
    if getattr(args, "lpips_weights", None) is not None and not args.lpips_weights.is_file():
        raise FileNotFoundError(f"--lpips-weights {args.lpips_weights}: no such file")
    protocol = get_protocol(args.protocol)
    taus = tuple(args.taus) if args.taus is not None else None
    if taus is not None and "fscore" not in protocol.metrics:
        raise ValueError(f"--taus: protocol {protocol.name!r} reports no F-score")
    return protocol.with_overrides(num_samples=args.samples, taus=taus, seed=args.seed)


def evaluate_and_report(pairs: list[SamplePair], args: argparse.Namespace, protocol: Protocol) -> list[PairResult]:
    """Score the pairs with a progress bar, print the table under the protocol's label, write the output file when asked."""
    appearance = appearance_options(args)
    results = list(
        tqdm(
            score_pairs(pairs, protocol, device=args.device, appearance=appearance),
            total=len(pairs), desc="scoring", unit="sample", file=sys.stderr, disable=None,
        )
    )
    columns = protocol.columns() + (["lpips", "psnr", "ssim"] if appearance else [])
    print(format_results(results, columns, title=f"protocol: {protocol.label()}"))
    if args.output:
        settings = {"protocol": protocol.to_dict()}
        if appearance:
            settings["appearance"] = {"views": 8, "view_size": appearance.image_size, "lpips_net": args.lpips_net,
                                      "lpips": appearance.lpips_reason or "available"}
        write_results(args.output, results, settings)
        print(f"wrote {args.output}")
    return results


def run(args: argparse.Namespace) -> int:
    protocol = check_metric_options(args)
    pairs, orphans = find_pairs(args.pred, args.gt)
    if orphans:
        print(f"note: {len(orphans)} prediction(s) have no ground truth and are not scored: "
              f"{', '.join(orphans[:5])}{' ...' if len(orphans) > 5 else ''}", file=sys.stderr)
    results = evaluate_and_report(pairs, args, protocol)
    failed = [r for r in results if r.status != "ok"]
    if failed:
        print(f"{len(failed)} of {len(results)} samples failed", file=sys.stderr)
    return 1 if failed and args.strict else 0
