"""`sam3d-eval compare A B`: paired comparison of two checkpoints, prediction folders or stored runs.

Exit codes: 0 the comparison ran (no regression, or --fail-on-regression not given); 1 a significant
regression with --fail-on-regression; 2 a usage or input error (one line on stderr). Imports nothing heavy
until the command runs.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

EXIT_REGRESSION = 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    from .eval_meshes import add_protocol_options

    p = sub.add_parser(
        "compare",
        help="paired comparison of two checkpoints / prediction folders / runs (one or several runs per side), "
             "with intervals and an HTML report",
        description=(
            "Compare B against A on the samples both scored, under one protocol. A and B are each a checkpoint "
            "(.safetensors, rebuilt from its own config), a folder of predictions <sample_id>.<ext>, or a run "
            "folder of `sam3d-eval evaluate`; or several of them, one per training run (seed) of that side: a "
            "comma-separated list or a quoted glob ('runs/a-seed*'). Stored results are reused only while the "
            "files they were computed from are unchanged (SHA-256 of the prediction, the ground truth and the "
            "manifest row); anything else is scored again, into --runs-dir. A predictions folder or checkpoint "
            "reuses an existing run of it under the same protocol (--reuse RUN, the checkpoint's eval/ folder, or "
            "--runs-dir); runs written by other commands are read, never written.\n\n"
            "Prints first the failure rates of both sides and the test of their difference (exact McNemar with one "
            "run per side), then per metric and stratum (all, domain, occlusion bin, category) each side's mean, "
            "the paired mean difference, the median difference and, for distances, the geometric-mean ratio, each "
            "with a 95% interval, the probability of improvement and the spread between runs; then each side's "
            "synthetic-vs-real gap, outliers (above 10x their side's median), and the per-sample preference. Twin "
            "pairs (pair_id) are resampled as one unit everywhere. The verdict says which figure it rests on."
        ),
        epilog=(
            "exit codes: 0 ok; 1 with --fail-on-regression, a Holm-significant worsening of a regression metric, or "
            "a significant rise in failed samples; 2 usage or input error.\n"
            "examples:\n"
            "  sam3d-eval compare runs/demo/stage1/final.safetensors runs/demo/stage2/final.safetensors "
            "--out reports/compare.html --fail-on-regression\n"
            "  sam3d-eval compare 'runs/a-seed*' 'runs/b-seed*' --data manifest.csv"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", help="side A (the baseline): checkpoint, predictions folder or run folder; several runs as "
                             "a comma-separated list or a quoted glob")
    p.add_argument("b", help="side B (the candidate), as A")
    p.add_argument("--data", type=pathlib.Path, default=None,
                   help="the manifest (default: the one the checkpoints or runs record; the built-in benchmark is "
                        "regenerated from its recorded seed when recorded and not on disk)")
    p.add_argument("--split", default=None,
                   help="only the manifest rows of this split (default: all rows; 'test' when the data comes from a "
                        "checkpoint's record)")
    add_protocol_options(p, default=None, default_help="default: the runs' own protocol, else 'default'")
    p.add_argument("--samples", type=int, default=None, help="points per surface, overriding the protocol's")
    p.add_argument("--out", type=pathlib.Path, default=None, help="write the HTML report here")
    p.add_argument("--json", action="store_true", help="print the analysis as JSON to stdout instead of tables")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 when B is significantly worse than A on a regression metric or fails significantly "
                        "more samples")
    p.add_argument("--regression-metrics", nargs="+", default=None, metavar="METRIC",
                   help="the metrics a regression is judged on (default: the protocol's headline metrics)")
    p.add_argument("--min-effect", type=float, default=0.0,
                   help="a regression also needs the verdict figure's relative change above this fraction (default 0)")
    p.add_argument("--metrics", nargs="+", default=None, metavar="METRIC",
                   help="the metrics compared (default: the protocol's headline metrics both sides have)")
    p.add_argument("--failed-as", choices=("exclude", "worst"), default="exclude",
                   help="failed samples in the metric table: exclude (default; their rate is tested apart) or worst "
                        "(scored at the worst value of the metric seen on their side)")
    p.add_argument("--figure", choices=("auto", "wilcoxon", "mean", "median", "geomean"), default="auto",
                   help="what the verdict rests on (default auto: the paired Wilcoxon signed-rank test with one run "
                        "per side; with several, the geometric-mean ratio of distances and the mean difference of "
                        "other metrics, tested by the two-level bootstrap)")
    p.add_argument("--cluster", default="auto", metavar="COLUMN",
                   help="manifest column of samples resampled as one unit (default auto: pair_id when present; "
                        "'none': every sample on its own)")
    p.add_argument("--preference-metric", default=None,
                   help="metric of the per-sample preference (default: the first regression metric)")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate of the Holm correction (default 0.05)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--votes", type=pathlib.Path, default=None,
                   help="human preference votes (CSV/JSONL: item_id, model_a, model_b, winner a|b|tie, rater_id)")
    p.add_argument("--vote-names", nargs=2, default=None, metavar=("A_NAME", "B_NAME"),
                   help="how the votes file names A and B (default: their labels)")
    p.add_argument("--labels", nargs=2, default=None, metavar=("A_LABEL", "B_LABEL"),
                   help="display names of A and B (default: from the paths)")
    p.add_argument("--runs-dir", type=pathlib.Path, default=pathlib.Path("runs/compare"),
                   help="where scored sides are stored and found again, with the runs one level below it "
                        "(default runs/compare)")
    p.add_argument("--reuse", type=pathlib.Path, action="append", default=[], metavar="RUN",
                   help="a run folder (or a folder of runs) of `sam3d-eval evaluate` whose fresh rows a side with the "
                        "same predictions and protocol reuses (read only; repeatable)")
    p.add_argument("--device", default="cpu", help="torch device for scoring (default cpu)")
    p.add_argument("--batch-size", type=int, default=8, help="samples scored per batch (default 8)")
    p.add_argument("--thumbnails", type=int, default=6, help="worst samples rendered in the report (default 6, 0: none)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=run)


def _check_args(args: argparse.Namespace) -> None:
    if not 0.0 < args.alpha < 1.0:
        raise ValueError(f"--alpha must lie in (0, 1), got {args.alpha}")
    if args.resamples < 100:
        raise ValueError(f"--resamples must be at least 100, got {args.resamples}")
    if args.min_effect < 0:
        raise ValueError(f"--min-effect must be >= 0, got {args.min_effect}")
    if args.samples is not None and args.samples < 1:
        raise ValueError(f"--samples must be positive, got {args.samples}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    if args.out is not None and args.out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out {args.out}: the report is an HTML file (.html)")


def _scoring_progress(*, quiet: bool):
    """A side's scoring progress on stderr (`compare_sides`' progress factory)."""
    from .progress import ProgressReporter

    return lambda label: ProgressReporter(label, enabled=not quiet)


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    from ..evaluate.compare import comparison_json
    from ..report.text import comparison_text
    from ..workflows import compare_sides, write_comparison_report
    from .eval_meshes import protocol_asked, resolve_protocol

    def log(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    result = compare_sides(
        args.a, args.b, data=args.data, split=args.split,
        protocol=resolve_protocol(args, default="default") if protocol_asked(args) else None,
        labels=tuple(args.labels) if args.labels else None, runs_dir=args.runs_dir, reuse=args.reuse,
        votes=args.votes, vote_names=tuple(args.vote_names) if args.vote_names else None, device=args.device,
        batch_size=args.batch_size, progress=_scoring_progress(quiet=args.quiet), log=log,
        metrics=args.metrics, regression_metrics=args.regression_metrics, preference_metric=args.preference_metric,
        alpha=args.alpha, min_effect=args.min_effect, n_resamples=args.resamples, failed_as=args.failed_as,
        figure=args.figure, cluster=None if args.cluster == "none" else args.cluster)
    comparison = result.comparison
    if args.json:
        print(comparison_json(comparison, result.flat_sides))
    else:
        print(comparison_text(comparison.to_dict()))
    if args.out is not None:
        path = write_comparison_report(args.out, result, n_thumbs=args.thumbnails, log=log)
        log(f"report: {path}")
    if comparison.regressed and args.fail_on_regression:
        return EXIT_REGRESSION
    return 0
