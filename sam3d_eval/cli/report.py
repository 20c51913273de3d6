"""`sam3d-eval report RUN... --out FILE.html`: one self-contained HTML report of stored runs.

A RUN is a run folder (``run.json`` + ``results/``, from ``sam3d-eval evaluate`` or a comparison) or a
training output folder: one holding ``gap.csv`` (the phase-boundary gap rows of ``sam3d-eval train``) and
phase-boundary evaluation runs under ``*/eval/*/``; its last phase's run is reported, and the gap across the
curriculum phases is plotted. A ``rounds.csv`` with a ``round`` column (data-engine rounds) is plotted the
same way, and a data-engine folder (``sam3d-eval engine run``: ``rounds/<k>/eval/`` runs, ``rounds.csv``,
``engine_rounds.csv``) gets its rounds table. Nothing is recomputed: results are read with `io.read_results`.

``--votes`` (preference votes) and ``--ratings`` (rubric ratings) add the "Human preference" and "Rubric QC"
sections (`sam3d-eval preference`'s analysis); with them the RUNs are optional.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

HEADLINE = ("chamfer_l2", "chamfer_l1", "fscore@0.05", "fscore@0.02", "fscore@0.01", "normal_consistency",
            "chamfer_l1_occnet", "volume_iou", "emd", "lpips", "psnr", "ssim")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report of stored runs (and training gap across phases)",
        description=(
            "Write one HTML file (inline CSS, embedded figures, no network) for one or more stored runs: verdict, "
            "metric table with bootstrap intervals, synthetic-vs-real gap (and its plot across curriculum phases "
            "or data-engine rounds when the folders hold them; a data-engine folder also gets its rounds table: accept "
            "rate, cost per accepted sample, agreement, failure mix), occlusion-stratified accuracy, per-category "
            "breakdown, the worst samples rendered beside their ground truth, and a methods section."
        ),
        epilog="examples:\n  sam3d-eval report runs/ckpt42 --out reports/ckpt42.html\n"
               "  sam3d-eval report runs/ckpt42 --votes votes.csv --ratings ratings.csv --out reports/ckpt42.html\n"
               "  sam3d-eval report --votes votes.csv --out reports/preference.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="*", type=pathlib.Path,
                   help="run folders or training output folders (optional with --votes/--ratings)")
    p.add_argument("--votes", type=pathlib.Path, default=None,
                   help="preference votes (CSV/JSONL): adds the Human preference section (Bradley-Terry, win rates, raters)")
    p.add_argument("--ratings", type=pathlib.Path, default=None,
                   help="rubric ratings (CSV/JSONL): adds the Rubric QC section (accept rate, agreement, failure mix)")
    p.add_argument("--models", nargs="+", default=None, help="with --votes: the known model names (others are an error)")
    p.add_argument("--out", type=pathlib.Path, required=True, help="the HTML file to write")
    p.add_argument("--labels", nargs="+", default=None, help="display names of the runs (default: folder names)")
    p.add_argument("--thumbnails", type=int, default=6, help="worst samples rendered (default 6, 0: none)")
    p.add_argument("--accuracy-threshold", type=float, default=0.5, help="accurate when F-score@0.05 >= this")
    p.add_argument("--resamples", type=int, default=2000,
                   help="bootstrap resamples (default 2000; also the Bradley-Terry resamples of --votes)")
    p.add_argument("--title", default=None, help="the report's title")
    p.set_defaults(run=run)


def find_phase_runs(folder: pathlib.Path) -> list[pathlib.Path]:
    """Phase-boundary evaluation run folders under a training output folder, in the order they were written."""
    found = [p.parent for pattern in ("*/eval/*/run.json", "eval/*/run.json", "rounds/*/eval/run.json")
             for p in folder.glob(pattern)]
    return sorted(set(found), key=lambda p: (p / "run.json").stat().st_mtime)


def phase_rows(folder: pathlib.Path) -> tuple[list[dict], str]:
    """Gap rows across phases (gap.csv) or data-engine rounds (rounds.csv) with a ``label``; ([], '') if none."""
    import pandas as pd

    gap = folder / "gap.csv"
    if gap.is_file():
        t = pd.read_csv(gap)
        need = {"metric", "figure", "estimate", "low", "high"}
        if need <= set(t.columns):
            if "stage" in t.columns and "phase" in t.columns:
                t["label"] = "s" + t["stage"].astype(str) + " " + t["phase"].astype(str)
            else:
                t["label"] = [str(i) for i in range(len(t))]
            return t.to_dict("records"), "curriculum phase"
    rounds = folder / "rounds.csv"
    if rounds.is_file():
        t = pd.read_csv(rounds)
        if {"round", "metric", "figure", "estimate", "low", "high"} <= set(t.columns):
            t["label"] = "round " + t["round"].astype(str)
            return t.to_dict("records"), "data-engine round"
    return [], ""


def summarise_run(run_dir: pathlib.Path, label: str, *, threshold: float, n_resamples: int) -> dict:
    """The record `report.runs_document` takes, from a run folder's stored results (read, not recomputed)."""
    from ..evaluate.sides import run_protocol
    from ..evaluate.summary import domain_gap, occlusion_accuracy, summarize
    from ..io.results import metric_columns, read_results

    frame = read_results(run_dir)
    if not len(frame):
        raise ValueError(f"{run_dir}: the run holds no results yet")
    protocol = run_protocol(run_dir)
    fp = protocol.fingerprint()
    frame = frame[frame["fingerprint"] == fp]
    metrics = metric_columns(frame)
    acc = (occlusion_accuracy(frame, threshold=threshold)
           if "occlusion" in frame.columns and "fscore@0.05" in frame.columns else None)
    record = frame.attrs.get("run") or {}
    failed = frame[frame["status"] != "ok"]
    return {
        "label": label, "run_dir": str(run_dir), "protocol": protocol.to_dict(), "fingerprint": fp,
        "counts": {"samples": len(frame), "failed": len(failed)},
        "summary": summarize(frame, metrics, n_resamples=n_resamples).to_dict("records"),
        "occlusion_accuracy": None if acc is None else acc.to_dict("records"),
        "domain_gap": domain_gap(frame, metrics, threshold=threshold, n_resamples=n_resamples).to_dict("records"),
        "metadata": record.get("metadata") or {}, "record": record,
        "failed": failed[["sample_id", "error"]].to_dict("records"), "metrics": metrics, "frame": frame,
    }


def _clean(x):
    from ..jsonable import to_jsonable

    return to_jsonable(x)


def worst_thumbnails(run: dict, n: int) -> list[dict]:
    """Render the run's n worst samples on its first headline metric (failed ones first)."""
    from ..data.manifest import load_manifest
    from ..evaluate.sides import Side, prediction_source, run_protocol, sample_meshes
    from ..evaluate.sources import load_ground_truth
    from ..evaluate.summary import direction
    from ..report.tables import fmt
    from ..report.thumbnails import render_thumbnails

    record = run["record"]
    manifest_path = record.get("manifest")
    if n <= 0 or not manifest_path or not pathlib.Path(manifest_path).is_file():
        return []
    frame = run["frame"]
    metric = next((m for m in HEADLINE if m in run["metrics"]), run["metrics"][0] if run["metrics"] else None)
    if metric is None:
        return []
    ok = frame[frame["status"] == "ok"].dropna(subset=[metric])
    ok = ok.sort_values(metric, ascending=direction(metric) != "lower")
    chosen = frame[frame["status"] != "ok"]["sample_id"].tolist()[:n] + ok["sample_id"].tolist()
    chosen = chosen[:n]
    manifest = load_manifest(manifest_path)
    rows = {str(r["sample_id"]): r for r in manifest.to_dict("records")}
    sel = [rows[s] for s in chosen if s in rows]
    protocol = run_protocol(run["run_dir"])
    side = Side(run["label"], pathlib.Path(run["run_dir"]), "run", (record.get("source") or {}).get("identity"),
                frame, pathlib.Path(run["run_dir"]), protocol)
    preds = sample_meshes(prediction_source(side), sel, protocol)
    by_id = frame.set_index("sample_id")
    out = []
    for r in sel:
        sid = str(r["sample_id"])
        gt = load_ground_truth(r.get("gt_mesh"))
        im = render_thumbnails(preds[sid], None if isinstance(gt, BaseException) else gt)
        row = by_id.loc[sid]
        cap = f"{metric} {fmt(row[metric])}" if row["status"] == "ok" else f"failed: {row['error']}"
        strata = ", ".join(f"{k} {r[k]:.2f}" if k == "occlusion" else f"{k} {r[k]}"
                           for k in ("domain", "category", "occlusion") if k in r and r[k] == r[k])
        missing = "prediction not stored (the run's source cannot be rebuilt)" if preds[sid] is None else None
        out.append({"title": sid, "caption": f"{cap} ({strata})", "images": [
            {"label": "prediction", "uri": im["pred"], "missing": missing}, {"label": "ground truth", "uri": im["gt"]}]})
    return out


def run(args: argparse.Namespace) -> int:
    if args.out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out {args.out}: the report is an HTML file (.html)")
    if args.labels is not None and len(args.labels) != len(args.runs):
        raise ValueError(f"--labels: {len(args.labels)} names for {len(args.runs)} runs")
    if not args.runs and args.votes is None and args.ratings is None:
        raise ValueError("give one or more RUN folders, --votes, --ratings, or a combination")
    from ..io.results import read_run_json
    from ..report import judgement_sections, preference_document, runs_document, write_html
    from .preference import analyse

    judged = None
    if args.votes is not None or args.ratings is not None:
        # read and validated before any run is summarised: a bad file fails fast, naming its line
        judged = analyse(args.votes, args.ratings, models=args.models, resamples=args.resamples)
    if not args.runs:
        doc = preference_document(judged["preference"], judged["rubric"], inputs=judged["inputs"], title=args.title)
        path = write_html(args.out, doc)
        print(f"report: {path}", file=sys.stderr)
        return 0

    runs, phases, phase_label, subs, notes, engine, change = [], [], "curriculum phase", {}, [], [], []
    for i, folder in enumerate(args.runs):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such run folder")
        run_dir = folder
        if read_run_json(folder) is None:
            rows, what = phase_rows(folder)
            found = find_phase_runs(folder)
            if not found:
                raise ValueError(f"{folder}: neither a run folder (run.json) nor a training output folder with "
                                 "phase-boundary evaluations (*/eval/*/run.json)")
            run_dir = found[-1]
            if rows:
                phases, phase_label = rows, what
            notes.append(f"{folder}: reporting the last phase-boundary evaluation {run_dir.name} of {len(found)}.")
            checkpoints = [c for c in sorted(folder.glob("*/*.safetensors")) if not c.name.startswith(".")]  # no temporaries
            for ck in sorted(folder.glob("*/final.safetensors")) or checkpoints[-1:]:
                try:
                    from ..models.checkpoint import read_checkpoint_config

                    subs.update(read_checkpoint_config(ck).get("substitutes") or {})
                except (ValueError, OSError):
                    pass
        else:
            rows, what = phase_rows(folder)
            if rows:
                phases, phase_label = rows, what
        import pandas as pd

        if (folder / "engine_rounds.csv").is_file():
            engine = pd.read_csv(folder / "engine_rounds.csv").to_dict("records")
        if (folder / "gap_change.csv").is_file():  # a training run: how the gap moved from stage 1 to stage 2
            change = pd.read_csv(folder / "gap_change.csv").to_dict("records")
        label = args.labels[i] if args.labels else (folder.name or str(folder))
        runs.append(summarise_run(run_dir, label, threshold=args.accuracy_threshold, n_resamples=args.resamples))
    metrics = [m for m in HEADLINE if any(m in r["metrics"] for r in runs)] or runs[-1]["metrics"][:6]
    thumbs = worst_thumbnails(runs[-1], args.thumbnails)
    clean = [_clean({k: v for k, v in r.items() if k not in ("frame", "record")}) for r in runs]
    doc = runs_document(clean, metrics=metrics, phases=_clean(phases), phase_label=phase_label, thumbnails=thumbs,
                        substitutes=subs, title=args.title, notes=notes, engine_rounds=_clean(engine),
                        gap_change=_clean(change),
                        judgements=judgement_sections(judged["preference"], judged["rubric"]) if judged else ())
    path = write_html(args.out, doc)
    print(f"report: {path}", file=sys.stderr)
    return 0
