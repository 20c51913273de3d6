"""`sam3d-eval evaluate PREDICTIONS --data MANIFEST --out RUN_DIR`: manifest-driven, resumable, sharded.

Runs `evaluate.runner.run_evaluation` on a predictions folder and a manifest, stores one Parquet row per
sample under RUN_DIR/results/, then prints the summaries (strata means with bootstrap intervals,
occlusion-stratified accuracy, synthetic-vs-real gap: each where the manifest has the columns it needs) and
the failed samples grouped by reason (`evaluate.failures`), and writes them to RUN_DIR/summary.json with the
run metadata. Under ``torchrun --nproc-per-node N -m sam3d_eval evaluate ...`` each rank scores its shard
(gloo on CPU, nccl on CUDA) and rank 0 prints the summary of everyone's rows.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from .eval_meshes import add_appearance_options, add_metric_options

HEADLINE = ("chamfer_l2", "chamfer_l1", "chamfer_l1_occnet", "fscore@0.01", "fscore@0.05", "normal_consistency",
            "volume_iou", "emd", "lpips", "psnr", "ssim")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a predictions folder on a manifest; resumable Parquet results and strata summaries",
        description=(
            "Score the predictions in PREDICTIONS (files <sample_id>.<ext>: meshes, point clouds, splats; or a "
            "reference-model checkpoint .safetensors, run on each row's image, mask and camera) "
            "against the ground truth of the manifest (CSV, JSONL or Parquet: sample_id, gt_mesh; optional "
            "domain, occlusion, category, image, mask, camera, split and any extra columns) under a protocol "
            "(a preset or a protocol file, see --protocol). "
            "Results go to RUN_DIR/results/*.parquet (one row per sample, written batch by batch) with "
            "RUN_DIR/run.json; --resume continues an interrupted run (with a manifest of the same columns and "
            "types). One evaluation at a time writes to RUN_DIR: a second one is refused with the first one's "
            "pid. A sample that cannot be read or scored (any error) is a failed row with its reason; the "
            "others are scored. Prints per-stratum means with bootstrap "
            "intervals, occlusion-stratified accuracy (with an occlusion column) and the synthetic-vs-real gap "
            "(with both domains; otherwise a note says why it is left out), also written to "
            "RUN_DIR/summary.json; the failed samples (the first 10 with their error, then a count per reason) "
            "go to stderr and summary.json. Under torchrun the samples are sharded over the ranks."
        ),
        epilog="example: sam3d-eval evaluate preds/ --data data/manifest.csv --out runs/ckpt42 --protocol default",
    )
    p.add_argument("predictions", type=pathlib.Path,
                   help="folder of predictions named <sample_id>.<ext>, or a reference-model checkpoint "
                        "(.safetensors) run on the manifest's image, mask and camera")
    p.add_argument("--data", type=pathlib.Path, required=True, help="the manifest (.csv, .jsonl or .parquet)")
    p.add_argument("--out", type=pathlib.Path, required=True, help="run folder for results, run.json and summary.json")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out: skip samples already stored ok (same predictions and protocol)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of tables")
    p.add_argument("--workers", type=int, default=None,
                   help="loader processes prefetching batches (default: min(4, CPUs) on CUDA, 0 on the CPU: inline)")
    p.add_argument("--accuracy-threshold", type=float, default=0.5,
                   help="a sample is accurate when F-score@0.05 >= this (default 0.5)")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any sample failed")
    add_metric_options(p)
    add_appearance_options(p, default=False)
    p.set_defaults(run=run)


def _init_distributed(device: str) -> tuple[str, bool]:
    """Join the torchrun process group when WORLD_SIZE > 1; returns the rank's device and whether we joined."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device, False
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return device, False
    cuda = torch.device(device).type == "cuda"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return device, True


def run(args: argparse.Namespace) -> int:
    from .eval_meshes import check_metric_options

    protocol = check_metric_options(args)
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    if not 0.0 <= args.accuracy_threshold <= 1.0:
        raise ValueError(f"--accuracy-threshold must be in [0, 1], got {args.accuracy_threshold}")
    checkpoint = args.predictions.suffix.lower() == ".safetensors"
    if not args.predictions.exists():
        what = "checkpoint" if checkpoint else "predictions folder"
        raise FileNotFoundError(f"{args.predictions}: {what} does not exist")
    if not checkpoint and not args.predictions.is_dir():
        raise NotADirectoryError(f"{args.predictions}: predictions must be a folder of <sample_id>.<ext> files "
                                 "or a reference-model checkpoint (.safetensors)")

    from ..data.manifest import load_manifest
    from ..evaluate.runner import check_run_dir, run_evaluation
    from ..evaluate.sources import FolderSource
    from .eval_meshes import appearance_scorer

    device, joined = _init_distributed(args.device)
    args.device = device
    try:
        rank = int(os.environ.get("RANK", "0"))
        if rank == 0:
            check_run_dir(args.out, resume=args.resume)  # before any work: unwritable, or holds another run
        manifest = load_manifest(args.data)
        if checkpoint:
            from ..evaluate.sources import PredictorSource
            from ..models.checkpoint import load_checkpoint

            source = PredictorSource(load_checkpoint(args.predictions, device=device))
            unknown = []
        else:
            source = FolderSource(args.predictions)
            unknown = sorted(set(source.files) - set(manifest["sample_id"]))
        if unknown and rank == 0:
            print(f"note: {len(unknown)} prediction(s) are not in the manifest and are not scored: "
                  f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}", file=sys.stderr)
        appearance = appearance_scorer(args, protocol)
        from .progress import ProgressReporter

        world = int(os.environ.get("WORLD_SIZE", "1"))
        desc = "scoring" if world == 1 else f"scoring (rank {rank} of {world})"
        result = run_evaluation(
            source, manifest, protocol, args.out, batch_size=args.batch_size, device=device, resume=args.resume,
            appearance=appearance, num_workers=args.workers, progress=ProgressReporter(desc, enabled=rank == 0),
        )
    finally:
        if joined:
            import torch.distributed as dist

            dist.destroy_process_group()
    if result.rank != 0:
        return 0
    if args.resume:
        changed = f" ({result.stale} of them because their prediction, ground truth or manifest row changed)" if result.stale else ""
        print(f"resume: {result.skipped} stored rows reused, {result.total - result.skipped} scored{changed}",
              file=sys.stderr)
    return report(result.frame, args, protocol)


def report(frame, args: argparse.Namespace, protocol) -> int:
    """Print the summaries of a stored run and write RUN_DIR/summary.json; the exit code."""
    from ..atomic import write_text_atomic
    from ..evaluate.failures import failure_summary
    from ..evaluate.summary import domain_gap, gap_unavailable, occlusion_accuracy, summarize
    from ..io.results import metric_columns, run_metadata
    from ..jsonable import to_jsonable
    from .table import format_accuracy, format_failures, format_gap, format_summary

    frame = frame[frame["fingerprint"] == protocol.fingerprint()] if len(frame) else frame
    metrics = metric_columns(frame)
    shown = [m for m in HEADLINE if m in metrics] or metrics[:6]
    summary = summarize(frame, metrics)
    acc_metric = "fscore@0.05"
    acc = (occlusion_accuracy(frame, metric=acc_metric, threshold=args.accuracy_threshold)
           if acc_metric in frame.columns and "occlusion" in frame.columns else None)
    note = gap_unavailable(frame)
    gap = (domain_gap(frame, metrics, accuracy_metric=acc_metric, threshold=args.accuracy_threshold)
           if note is None else None)
    failures = failure_summary(frame)
    n, n_failed = len(frame), int((frame["status"] != "ok").sum()) if len(frame) else 0
    payload = {
        "metadata": run_metadata(protocol={**protocol.to_dict(), "fingerprint": protocol.fingerprint()}),
        "run": frame.attrs.get("run"),
        "counts": {"samples": n, "failed": n_failed, "duplicates_dropped": frame.attrs.get("duplicates", 0)},
        "summary": summary.to_dict("records"),
        "occlusion_accuracy": None if acc is None else acc.to_dict("records"),
        "domain_gap": None if gap is None else gap.to_dict("records"),
        "domain_gap_note": note,
        "failures": failures,
    }
    payload = to_jsonable(payload)
    # Atomic: a reader (or a concurrent report of the same folder) never sees half a summary.
    write_text_atomic(pathlib.Path(args.out) / "summary.json", json.dumps(payload, indent=2) + "\n")
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        print(format_summary(summary, shown, title=f"protocol: {protocol.label()}  ({n} samples, {n_failed} failed)"))
        if acc is not None:
            print()
            print(format_accuracy(acc))
        if gap is not None and len(gap):
            print()
            print(format_gap(gap[gap["metric"].isin(shown + ["accuracy"])]))
        elif note is not None:
            print(f"\nnote: {note}")
        print(f"\nresults: {pathlib.Path(args.out) / 'results'}  summary: {pathlib.Path(args.out) / 'summary.json'}")
    if n_failed:
        print(format_failures(failures, n), file=sys.stderr)
    return 1 if n_failed and args.strict else 0
