"""`sam3d-eval eval-meshes PRED GT`: the quick two-folder (or two-file) path, on the evaluation runner.

Module level imports only the standard library, so `sam3d-eval --help` stays fast; torch and the evaluation
stack are imported when the command runs.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

# Help text only; the suffixes themselves live in io.sniff (importing it here would load torch for --help).
_MESHES = ".glb, .gltf, .ply, .obj, .off, .stl"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-meshes",
        help="score predictions (meshes, point clouds, splats) against ground-truth meshes",
        description=(
            "Score predictions against ground-truth meshes under a named protocol (see `sam3d-eval protocols`). "
            f"PRED and GT are two files, or two folders in which files are paired by stem (the sample id): GT "
            f"meshes ({_MESHES}); predictions may mix meshes, point clouds (.ply without "
            "faces, .npz with 'points' [+ 'normals']) and Gaussian-splat .ply files. A missing or unreadable "
            "prediction is recorded as a failed sample, not an error; a metric the input cannot give (normal "
            "consistency of a cloud without normals) is reported as nan with a note. For a manifest with "
            "strata, resumable Parquet results and summaries, use `sam3d-eval evaluate`."
        ),
    )
    p.add_argument("pred", type=pathlib.Path, help=f"prediction file or folder ({_MESHES}, .npz)")
    p.add_argument("gt", type=pathlib.Path, help="ground-truth mesh file or folder")
    add_metric_options(p)
    add_appearance_options(p, default=False)
    p.add_argument("-o", "--output", type=pathlib.Path,
                   help="write per-sample results to this .csv, .json or .parquet (with the run metadata)")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any sample failed")
    p.set_defaults(run=run)


# The names of `ops.alignment.ALIGNMENTS` (importing it here would load torch for --help; a test keeps the
# two equal).
ALIGNMENT_CHOICES = ("none", "bbox", "icp", "scale_icp", "rotation_search_icp")

PROTOCOL_HELP = (
    "evaluation protocol: a preset name (list them with `sam3d-eval protocols`) or a protocol file (.toml or "
    ".json) that names its preset with base = \"NAME\" and sets the fields to change, e.g. num_samples = 20000, "
    "alignment = \"icp\", taus = [0.01, 0.05]; every field of a protocol but name, version, source and overrides "
    "may be set, and the changes are recorded as overrides (same fingerprint as the preset with those overrides)"
)


def add_protocol_options(p: argparse.ArgumentParser, default: str | None = "default", *,
                         default_help: str | None = None) -> None:
    """Register ``--protocol NAME|FILE`` (default `default`; `default_help` words it in the help) and
    ``--alignment``; `resolve_protocol` turns them (and --samples/--taus/--seed where the parser has them)
    into the `Protocol`. Imports nothing heavy."""
    shown = default_help or (f"default: {default}" if default is not None else "default: none")
    p.add_argument("--protocol", default=default, metavar="NAME|FILE", help=f"{PROTOCOL_HELP} ({shown})")
    p.add_argument(
        "--alignment", choices=ALIGNMENT_CHOICES, default=None,
        help="how the prediction is aligned to the ground truth before scoring, overriding the protocol's: none; "
             "bbox (boxes centred, longest sides matched); icp (rigid ICP); scale_icp (ICP with a uniform scale); "
             "rotation_search_icp (ICP from each rotation of the protocol's grid, 24 cube rotations by default; "
             "the best fit wins)",
    )


def protocol_asked(args: argparse.Namespace) -> bool:
    """Whether the command line asks for a protocol: --protocol, --alignment, --samples, --taus or --seed
    given (those the parser has)."""
    return any(getattr(args, k, None) is not None for k in ("protocol", "alignment", "samples", "taus", "seed"))


def resolve_protocol(args: argparse.Namespace, default=None):
    """The `Protocol` of the command line: ``--protocol`` (a preset name or a protocol file, read by
    `evaluate.protocols.load_protocol`), else `default` (a name, a file or a `Protocol`), with ``--alignment``
    and, where the parser has them, ``--samples``, ``--taus`` and ``--seed`` applied by
    `Protocol.with_overrides` (so they are recorded and change the fingerprint).

    Returns None when there is neither --protocol nor `default` and no override was given. Raises
    `ValueError` (one line) for bad values or an override without a protocol, `FileNotFoundError` for a
    missing protocol file.
    """
    from ..evaluate.protocols import load_protocol

    samples, taus, seed = (getattr(args, k, None) for k in ("samples", "taus", "seed"))
    alignment = getattr(args, "alignment", None)
    if samples is not None and samples < 1:
        raise ValueError(f"--samples must be positive, got {samples}")
    if taus is not None and any(not t > 0 for t in taus):
        raise ValueError(f"--taus must be positive, got {taus}")
    spec = getattr(args, "protocol", None)
    spec = default if spec is None else spec
    if spec is None:
        given = [f"--{k}" for k, v in (("alignment", alignment), ("samples", samples), ("taus", taus), ("seed", seed))
                 if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: no protocol to override; give --protocol NAME|FILE")
        return None
    protocol = load_protocol(spec)
    if taus is not None and "fscore" not in protocol.metrics:
        raise ValueError(f"--taus: protocol {protocol.name!r} reports no F-score")
    return protocol.with_overrides(alignment=alignment, num_samples=samples,
                                   taus=tuple(taus) if taus is not None else None, seed=seed)


def add_metric_options(p: argparse.ArgumentParser) -> None:
    add_protocol_options(p)
    p.add_argument("--samples", type=int, default=None,
                   help="points sampled per surface, overriding the protocol's (default 100000)")
    p.add_argument(
        "--taus", type=float, nargs="+", default=None,
        help="F-score thresholds in the protocol's normalised units, overriding its own "
             "(default protocol: 0.01 0.02 0.05, fractions of the unit cube's side)",
    )
    p.add_argument("--seed", type=int, default=None, help="sampling seed, overriding the protocol's (default 0)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--batch-size", type=int, default=8, help="samples scored per batch (default 8)")


def add_appearance_options(p: argparse.ArgumentParser, default: bool) -> None:
    p.add_argument(
        "--appearance", action=argparse.BooleanOptionalAction, default=default,
        help="also render prediction and GT from the protocol's views (default 8, two elevations) after its "
             f"alignment and report LPIPS, PSNR and SSIM (default: {'on' if default else 'off'})",
    )
    p.add_argument("--lpips-net", choices=("alex", "vgg"), default=None,
                   help="LPIPS backbone, overriding the protocol's (default alex)")
    p.add_argument(
        "--lpips-weights", type=pathlib.Path, default=None,
        help="torchvision-format backbone state dict for LPIPS (default: torchvision's file name in the torch "
             "hub cache, $TORCH_HOME/hub/checkpoints); without it LPIPS is reported as unavailable",
    )
    p.add_argument("--view-size", type=int, default=None,
                   help="side of the rendered views in pixels, overriding the protocol's (default 256)")


def check_metric_options(args: argparse.Namespace):
    """Validate the options; return the protocol (`resolve_protocol`) with the appearance overrides applied
    when --appearance is on, everything recorded."""
    if getattr(args, "batch_size", 1) < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    import torch

    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise ValueError(f"--device {args.device!r}: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available in this torch build or on this machine")
    if getattr(args, "lpips_weights", None) is not None and not args.lpips_weights.is_file():
        raise FileNotFoundError(f"--lpips-weights {args.lpips_weights}: no such file")
    view_size = getattr(args, "view_size", None)
    if view_size is not None and view_size < 32:
        raise ValueError(f"--view-size must be at least 32 (LPIPS needs it), got {view_size}")
    protocol = resolve_protocol(args, default="default")
    if getattr(args, "appearance", False):
        protocol = protocol.with_overrides(appearance_image_size=view_size, lpips_net=getattr(args, "lpips_net", None))
    return protocol


def appearance_scorer(args: argparse.Namespace, protocol):
    """The appearance scorer for `--appearance` (None without it); a missing LPIPS backbone is said once."""
    if not args.appearance:
        return None
    from ..evaluate.appearance import AppearanceScorer, load_lpips_or_none

    lpips, reason = load_lpips_or_none(protocol.lpips_net, backbone_weights=args.lpips_weights)
    if reason:
        print(f"note: {reason}\nnote: PSNR and SSIM are still reported; LPIPS is nan.", file=sys.stderr)
    if lpips is not None:
        lpips = lpips.to(args.device)
    return AppearanceScorer(lpips=lpips, lpips_reason=reason)


def settings_for(protocol, args: argparse.Namespace, appearance) -> dict:
    settings: dict[str, Any] = {"protocol": protocol.record()}
    if appearance is not None:
        settings["appearance"] = {"views": protocol.appearance_views, "view_size": protocol.appearance_image_size,
                                  "lpips_net": protocol.lpips_net,
                                  "lpips": getattr(appearance, "lpips_reason", None) or "available"}
    return settings


def evaluate_and_report(frame, source, args: argparse.Namespace, protocol, output: pathlib.Path | None):
    """Score the pairs on the runner with a progress report, print the table under the protocol's label,
    write the output file when asked. Returns the results frame."""
    from ..evaluate.runner import run_evaluation
    from ..io.results import run_metadata
    from .progress import ProgressReporter
    from .table import format_results, write_results

    appearance = appearance_scorer(args, protocol)
    result = run_evaluation(source, frame, protocol, None, batch_size=args.batch_size, device=args.device,
                            appearance=appearance, progress=ProgressReporter("scoring"))
    results = result.frame
    columns = protocol.columns() + (["lpips", "psnr", "ssim"] if appearance is not None else [])
    print(format_results(results, columns, title=f"protocol: {protocol.label()}"))
    if output is not None:
        meta = run_metadata(protocol=protocol.record())
        write_results(output, results, meta, settings_for(protocol, args, appearance))
        print(f"wrote {output}")
    return results


def run(args: argparse.Namespace) -> int:
    from ..evaluate.sources import find_pairs
    from .table import check_output_path

    output = check_output_path(args.output)
    protocol = check_metric_options(args)
    frame, source, orphans = find_pairs(args.pred, args.gt)
    if orphans:
        print(f"note: {len(orphans)} prediction(s) have no ground truth and are not scored: "
              f"{', '.join(orphans[:5])}{' ...' if len(orphans) > 5 else ''}", file=sys.stderr)
    results = evaluate_and_report(frame, source, args, protocol, output)
    n_failed = int((results["status"] != "ok").sum())
    if n_failed:
        print(f"{n_failed} of {len(results)} samples failed", file=sys.stderr)
    return 1 if n_failed and args.strict else 0
