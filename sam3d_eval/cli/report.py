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


def run(args: argparse.Namespace) -> int:
    if args.out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out {args.out}: the report is an HTML file (.html)")
    from ..workflows import report_runs

    path = report_runs(args.runs, args.out, labels=args.labels, votes=args.votes, ratings=args.ratings,
                       models=args.models, thumbnails=args.thumbnails, threshold=args.accuracy_threshold,
                       n_resamples=args.resamples, title=args.title,
                       log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"report: {path}", file=sys.stderr)
    return 0
