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
import pathlib
import sys

from .eval_meshes import add_appearance_options, add_metric_options



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
                   help="loader processes prefetching batches (default: min(4, CPUs) on CUDA; on the CPU none, and the "
                        "run overlaps loading with scoring by itself, by the cores idle when it starts: forked "
                        "scoring processes, a loader thread, or inline on a busy machine; the numbers are the same "
                        "either way)")
    p.add_argument("--accuracy-threshold", type=float, default=0.5,
                   help="a sample is accurate when F-score@0.05 >= this (default 0.5)")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any sample failed")
    add_metric_options(p)
    p.add_argument("--visibility", action="store_true",
                   help="also split the geometry by what the input camera sees (the protocol metric 'visibility'): "
                        "accuracy on the visible GT surface, completeness and recall on the visible, self-hidden "
                        "and occluder-hidden parts; needs the manifest's camera and mask columns, and says so "
                        "when they are missing")
    add_appearance_options(p, default=False)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .eval_meshes import check_metric_options

    protocol = check_metric_options(args)
    if args.visibility and "visibility" not in protocol.metrics:
        protocol = protocol.with_overrides(metrics=(*protocol.metrics, "visibility"))
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

    from ..data.manifest import Manifest
    from ..evaluate.runner import check_run_dir, run_evaluation
    from ..evaluate.sources import FolderSource
    from .eval_meshes import appearance_scorer

    from ..distributed import dist_info, join_process_group

    device, joined = join_process_group(args.device)
    args.device = str(device)
    try:
        rank, world = dist_info()
        if rank == 0:
            check_run_dir(args.out, resume=args.resume)  # before any work: unwritable, or holds another run
        manifest = Manifest.read(args.data)
        if checkpoint:
            from ..evaluate.sources import PredictorSource
            from ..models.checkpoint import load_checkpoint

            source = PredictorSource(load_checkpoint(args.predictions, device=device))
            unknown = []
        else:
            source = FolderSource(args.predictions)
            unknown = sorted(set(source.files) - set(manifest.sample_ids))
        if unknown and rank == 0:
            print(f"note: {len(unknown)} prediction(s) are not in the manifest and are not scored: "
                  f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}", file=sys.stderr)
        appearance = appearance_scorer(args, protocol)
        from .progress import ProgressReporter

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
    """Print the summaries of a stored run (`evaluate.summary.run_summary`) and write RUN_DIR/summary.json;
    the exit code."""
    import pandas as pd

    from ..atomic import write_text_atomic
    from ..io.results import headline_metrics, run_metadata
    from ..evaluate.summary import run_summary
    from .table import format_accuracy, format_failures, format_gap, format_summary

    frame = frame[frame["fingerprint"] == protocol.fingerprint()] if len(frame) else frame
    summary = run_summary(frame, threshold=args.accuracy_threshold)
    payload = {"metadata": run_metadata(protocol=protocol.record()), "run": frame.attrs.get("run"), **summary}
    # Atomic: a reader (or a concurrent report of the same folder) never sees half a summary.
    write_text_atomic(pathlib.Path(args.out) / "summary.json", json.dumps(payload, indent=2) + "\n")
    n, n_failed = summary["counts"]["samples"], summary["counts"]["failed"]
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        shown = headline_metrics(summary["metrics"])
        print(format_summary(pd.DataFrame(summary["summary"]), shown,
                             title=f"protocol: {protocol.label()}  ({n} samples, {n_failed} failed)"))
        visibility = protocol.visibility_columns()
        if visibility:
            print()
            print(_visibility_text(frame, pd.DataFrame(summary["summary"]), visibility, format_summary))
        if summary["occlusion_accuracy"] is not None:
            print()
            print(format_accuracy(pd.DataFrame(summary["occlusion_accuracy"])))
        gap = pd.DataFrame(summary["domain_gap"] or [])
        if len(gap):
            print()
            print(format_gap(gap[gap["metric"].isin(shown + ["accuracy"])]))
        elif summary["domain_gap_note"] is not None:
            print(f"\nnote: {summary['domain_gap_note']}")
        print(f"\nresults: {pathlib.Path(args.out) / 'results'}  summary: {pathlib.Path(args.out) / 'summary.json'}")
    if n_failed:
        print(format_failures(summary["failures"], n), file=sys.stderr)
    return 1 if n_failed and args.strict else 0


def _visibility_text(frame, summary, columns: list[str], format_summary) -> str:
    """The visibility split's summary table, or the reason it is unavailable (the rows' own note)."""
    import json as _json

    have = [c for c in columns if c in frame.columns and frame[c].notna().any()]
    if have:
        return format_summary(summary, have, title="visible and hidden surfaces (accuracy on the visible part, "
                                                   "completeness and recall per part; docs/definitions.md)")
    reasons: dict[str, int] = {}
    for notes in frame.get("notes", []):
        try:
            items = _json.loads(notes) if isinstance(notes, str) else []
        except ValueError:
            items = []
        for n in items:
            if n.startswith("visibility unavailable"):
                reasons[n] = reasons.get(n, 0) + 1
    if not reasons:
        return "note: visibility split unavailable: no sample was scored"
    return "\n".join(f"note: {reason} ({k} of {len(frame)} samples)" for reason, k in reasons.items())
