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
    p = sub.add_parser(
        "compare",
        help="paired comparison of two checkpoints / prediction folders / runs, with intervals and an HTML report",
        description=(
            "Compare B against A on the samples both scored, under one protocol. A and B are each a checkpoint "
            "(.safetensors, rebuilt from its own config), a folder of predictions <sample_id>.<ext>, or a run "
            "folder of `sam3d-eval evaluate` (its stored results are reused, never recomputed). Scored sides are "
            "stored under --runs-dir and reused by the next comparison. Prints each metric's mean with a "
            "bootstrap 95%% interval, the paired delta with its interval, the Wilcoxon p and Holm-adjusted p, "
            "per domain, occlusion bin and category; each side's synthetic-vs-real gap; the per-sample "
            "preference (ties kept, Wilson interval); and human votes with --votes."
        ),
        epilog=(
            "exit codes: 0 ok; 1 a Holm-significant worsening of a regression metric with --fail-on-regression; "
            "2 usage or input error.\n"
            "example: sam3d-eval compare runs/demo/stage1/final.safetensors runs/demo/stage2/final.safetensors "
            "--out reports/compare.html --fail-on-regression"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", type=pathlib.Path, help="side A (the baseline): checkpoint, predictions folder or run folder")
    p.add_argument("b", type=pathlib.Path, help="side B (the candidate)")
    p.add_argument("--data", type=pathlib.Path, default=None,
                   help="the manifest (default: the one the checkpoints or runs record; the built-in benchmark is "
                        "regenerated from its recorded seed when recorded and not on disk)")
    p.add_argument("--split", default=None,
                   help="only the manifest rows of this split (default: all rows; 'test' when the data comes from a "
                        "checkpoint's record)")
    p.add_argument("--protocol", default=None,
                   help="protocol preset (default: the runs' own protocol, else 'default')")
    p.add_argument("--samples", type=int, default=None, help="points per surface, overriding the protocol's")
    p.add_argument("--out", type=pathlib.Path, default=None, help="write the HTML report here")
    p.add_argument("--json", action="store_true", help="print the analysis as JSON to stdout instead of tables")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 when B is significantly worse than A on a regression metric")
    p.add_argument("--regression-metrics", nargs="+", default=None, metavar="METRIC",
                   help="the metrics a regression is judged on (default: the protocol's headline metrics)")
    p.add_argument("--min-effect", type=float, default=0.0,
                   help="a regression also needs |delta| above this fraction of A's mean (default 0)")
    p.add_argument("--metrics", nargs="+", default=None, metavar="METRIC",
                   help="the metrics compared (default: every metric both sides have)")
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
                   help="where scored sides are stored and found again (default runs/compare)")
    p.add_argument("--device", default="cpu", help="torch device for scoring (default cpu)")
    p.add_argument("--batch-size", type=int, default=8, help="samples scored per batch (default 8)")
    p.add_argument("--thumbnails", type=int, default=6, help="worst samples rendered in the report (default 6, 0: none)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=run)


def _label(path: pathlib.Path) -> str:
    name = path.stem if path.is_file() else path.name
    if path.is_file() and path.parent.name:
        return f"{path.parent.name}/{name}"
    return name or str(path)


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
    for p in (args.a, args.b):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such checkpoint, predictions folder or run folder")


def _resolve_data(args, kinds, log):
    """(manifest frame or None, where it came from, whether it came from a record)."""
    from ..data.manifest import load_manifest
    from ..evaluate.compare import CompareInputError, manifest_from_checkpoint
    from ..io.results import read_run_json

    path, recorded = args.data, False
    if path is None:
        for spec, kind in zip((args.a, args.b), kinds):
            if kind == "checkpoint":
                from ..models.checkpoint import read_checkpoint

                cfg = read_checkpoint(spec).config
                path, recorded = manifest_from_checkpoint(cfg, spec, args.runs_dir), True
                break
            if kind == "run":
                rec = read_run_json(spec) or {}
                if rec.get("manifest") and pathlib.Path(rec["manifest"]).is_file():
                    path = pathlib.Path(rec["manifest"])
    if path is None:
        if all(k == "run" for k in kinds):
            return None, None, False
        raise CompareInputError("scoring predictions needs a manifest: pass --data MANIFEST")
    if not path.is_file():
        raise FileNotFoundError(f"--data {path}: no such manifest")
    frame = load_manifest(path)
    split = args.split or ("test" if recorded and "split" in frame.columns else None)
    if split is not None:
        if "split" not in frame.columns:
            raise ValueError(f"--split {split}: the manifest {path} has no split column")
        frame = frame[frame["split"] == split].reset_index(drop=True)
        if not len(frame):
            raise ValueError(f"{path}: no rows in split {split!r}")
    log(f"data: {path} ({len(frame)} samples{f', split {split}' if split else ''})")
    return frame, path, recorded


def _protocol(args, kinds, manifest):
    """The protocol to score under: the one asked for; else a stored run's (a run side, or a run of a
    checkpoint's weights already stored for these samples); else the default preset."""
    from ..evaluate.compare import checkpoint_run, run_protocol
    from ..evaluate.protocols import get_protocol

    if args.protocol is not None:
        proto = get_protocol(args.protocol)
    else:
        runs = [run_protocol(s) for s, k in zip((args.a, args.b), kinds) if k == "run"]
        for s, k in zip((args.a, args.b), kinds):
            if k == "checkpoint" and not runs and args.samples is None:
                stored = checkpoint_run(s, args.runs_dir, None, manifest)
                if stored is not None:
                    runs.append(run_protocol(stored))
        proto = runs[0] if runs else get_protocol("default")
    return proto.with_overrides(num_samples=args.samples) if args.samples else proto


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    from ..evaluate.compare import compare_frames, comparison_json, load_side, load_votes, side_kind
    from .progress import ProgressReporter

    def log(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    kinds = [side_kind(args.a), side_kind(args.b)]
    labels = tuple(args.labels) if args.labels else (_label(args.a), _label(args.b))
    if labels[0] == labels[1]:
        labels = (labels[0] + " (A)", labels[1] + " (B)")
    manifest, manifest_path, _ = _resolve_data(args, kinds, log)
    protocol = _protocol(args, kinds, manifest)
    votes = load_votes(args.votes) if args.votes else None
    sides = []
    explicit = args.protocol is not None or args.samples is not None
    for spec, label, kind in zip((args.a, args.b), labels, kinds):
        progress = ProgressReporter(f"scoring {label}", enabled=not args.quiet)
        # a stored run keeps its own protocol unless one was asked for (then a different one is refused)
        asked = protocol if (kind != "run" or explicit) else None
        side = load_side(spec, label=label, manifest=manifest, protocol=asked, runs_dir=args.runs_dir,
                         device=args.device, batch_size=args.batch_size, progress=progress)
        log(f"{label}: {side.kind} {spec}: {len(side.frame)} rows ({side.reused} stored rows reused, {side.scored} scored)")
        sides.append(side)
    comparison = compare_frames(
        sides[0].frame, sides[1].frame, labels=labels, metrics=args.metrics, regression_metrics=args.regression_metrics,
        preference_metric=args.preference_metric, alpha=args.alpha, min_effect=args.min_effect,
        n_resamples=args.resamples, votes=votes,
        vote_names=((args.vote_names[0],), (args.vote_names[1],)) if args.vote_names else None,
        protocol=sides[0].protocol)
    if args.json:
        print(comparison_json(comparison, sides))
    else:
        print(format_comparison(comparison))
    if args.out is not None:
        path = write_comparison_report(args.out, comparison, sides, manifest, n_thumbs=args.thumbnails)
        log(f"report: {path}")
    if comparison.regressed and args.fail_on_regression:
        return EXIT_REGRESSION
    return 0


def format_comparison(c) -> str:
    """The terminal table: verdict, the overall metrics, the regression metrics per stratum, left-out samples."""
    from ..report.tables import fmt_ci, fmt_p, fmt_rate
    from .table import _grid

    a, b = c.labels
    t = c.table
    lines = [c.verdict(), ""]
    head = ["metric", "n", f"A {a}", f"B {b}", "delta B-A [95% CI]", "rel", "p", "p Holm", ""]

    def rows_of(frame, first):
        out = []
        for r in frame.to_dict("records"):
            flag = ("worse" if r["better"] == "A" else "better") if r["significant"] else ""
            out.append([first(r), str(r["n"]), fmt_ci(r["mean_a"], r["low_a"], r["high_a"]),
                        fmt_ci(r["mean_b"], r["low_b"], r["high_b"]), fmt_ci(r["delta"], r["delta_low"], r["delta_high"]),
                        "-" if r["rel_delta"] != r["rel_delta"] else f"{100 * r['rel_delta']:+.1f}%",
                        fmt_p(r["pvalue"]), fmt_p(r["p_holm"]), flag])
        return out

    lines += _grid(head, rows_of(t[t["stratum"] == "all"], lambda r: r["metric"]))
    reg = c.settings["regression_metrics"]
    strata = t[(t["stratum"] != "all") & (t["metric"] == c.preference["metric"])]
    if len(strata):
        lines.append("")
        lines += _grid(["stratum: metric"] + head[1:], rows_of(strata, lambda r: f"{r['stratum']}={r['level']}: {r['metric']}"))
    lines.append(f"mean [95% bootstrap CI]; paired delta B - A; Wilcoxon signed-rank p; Holm per stratification "
                 f"(alpha {c.settings['alpha']:g}); 'worse' = significantly worse for B")
    if c.gap_a is not None and len(c.gap_a):
        lines.append("")
        gb = {r["metric"]: r for r in c.gap_b.to_dict("records")} if c.gap_b is not None else {}
        rows = []
        for r in c.gap_a.to_dict("records"):
            if r["metric"] in reg or r["metric"] == "accuracy":
                q = gb.get(r["metric"], {})
                rows.append([r["metric"], r["figure"], fmt_ci(r["estimate"], r["low"], r["high"]),
                             fmt_ci(q.get("estimate"), q.get("low"), q.get("high"))])
        lines += _grid(["gap metric", "figure", f"A {a}", f"B {b}"], rows)
    p = c.preference
    if p.get("samples"):
        lines.append("")
        lines.append(f"per-sample preference on {p['metric']}: B better on {p['wins']}, A better on {p['losses']}, "
                     f"ties {p['ties']}; win rate of B {fmt_rate(p['rate'], p['low'], p['high'])}, "
                     f"binomial p {fmt_p(p['pvalue'])}")
    if c.votes:
        v = c.votes
        lines.append(f"human votes: {v['votes']} on {v['items']} items: B preferred {v['wins']}, A {v['losses']}, ties "
                     f"{v['ties']}; win rate of B {fmt_rate(v['rate'], v['low'], v['high'])}")
    s = c.samples
    left = [("failed only in A", s["failed_only_A"]), ("failed only in B", s["failed_only_B"]),
            ("failed in both", s["failed_both"]), ("only in A", s["only_in_A"]), ("only in B", s["only_in_B"])]
    lines.append("")
    lines.append(f"samples: {s['common']} in both, {s['both_ok']} scored ok by both")
    for what, ids in left:
        if ids:
            lines.append(f"  {what}: {len(ids)}: {', '.join(ids[:8])}{' ...' if len(ids) > 8 else ''}")
    return "\n".join(lines)


def write_comparison_report(path, comparison, sides, manifest, *, n_thumbs: int = 6) -> pathlib.Path:
    """Render the worst samples (B's largest losses on the preference metric) and write the HTML report."""
    from ..evaluate.compare import prediction_source, sample_meshes
    from ..evaluate.sources import load_ground_truth
    from ..io.results import run_metadata
    from ..report import comparison_document, write_html
    from ..report.tables import fmt
    from ..report.thumbnails import render_thumbnails

    thumbs = []
    ps = comparison.per_sample
    if n_thumbs > 0 and ps is not None and manifest is not None and len(ps):
        pm = comparison.preference["metric"]
        worse_sign = 1.0 if comparison.preference["direction"] == "lower" else -1.0
        both = ps[ps["ok_a"] & ps["ok_b"]].copy()
        both["loss"] = worse_sign * (both["b"] - both["a"])
        failed_b = ps[ps["ok_a"] & ~ps["ok_b"]]["sample_id"].tolist()
        chosen = failed_b[:n_thumbs] + both.sort_values("loss", ascending=False)["sample_id"].tolist()[: max(0, n_thumbs - len(failed_b))]
        rows = {str(r["sample_id"]): r for r in manifest.to_dict("records")}
        chosen = [s for s in chosen if s in rows]
        if chosen:
            sel = [rows[s] for s in chosen]
            preds = [sample_meshes(prediction_source(side), sel, side.protocol) for side in sides]
            info = both.set_index("sample_id")
            for r in sel:
                sid = str(r["sample_id"])
                gt = load_ground_truth(r.get("gt_mesh"))
                gt = None if isinstance(gt, BaseException) else gt
                ia = render_thumbnails(preds[0][sid], gt)
                ib = render_thumbnails(preds[1][sid], gt)
                cap = (f"{pm}: A {fmt(info.loc[sid, 'a'])}, B {fmt(info.loc[sid, 'b'])}" if sid in info.index
                       else "B failed on this sample")
                strata = ", ".join(f"{k} {r[k]:.2f}" if k == "occlusion" else f"{k} {r[k]}"
                                   for k in ("domain", "category", "occlusion") if k in r and r[k] == r[k])
                thumbs.append({"title": sid, "caption": f"{cap} ({strata})", "images": [
                    {"label": f"A: {comparison.labels[0]}", "uri": ia["pred"]},
                    {"label": f"B: {comparison.labels[1]}", "uri": ib["pred"]},
                    {"label": "ground truth", "uri": ia["gt"]}]})
    doc = comparison_document(comparison.to_dict(), thumbnails=thumbs, sides=[s.describe() for s in sides],
                              metadata=run_metadata())
    return write_html(path, doc)
