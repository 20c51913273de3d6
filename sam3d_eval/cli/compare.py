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


def _label(text: str, paths: list[pathlib.Path]) -> str:
    if len(paths) > 1:
        return text
    path = paths[0]
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
    for r in args.reuse:
        if not r.is_dir():
            raise FileNotFoundError(f"--reuse {r}: no such run folder")


def _resolve_data(args, sides, log):
    """(manifest frame or None, where it came from, whether it came from a record). `sides`: per side, the
    list of (path, kind) of its runs."""
    from ..data.manifest import load_manifest
    from ..evaluate.sides import CompareInputError, manifest_from_checkpoint
    from ..io.results import read_run_json

    path, recorded = args.data, False
    if path is None:
        for spec, kind in (run for side in sides for run in side):
            if kind == "checkpoint":
                from ..models.checkpoint import read_checkpoint

                cfg = read_checkpoint(spec).config
                path, recorded = manifest_from_checkpoint(cfg, spec, args.runs_dir), True
                break
            if kind == "run":
                rec = read_run_json(spec) or {}
                if isinstance(rec, dict) and rec.get("manifest") and pathlib.Path(rec["manifest"]).is_file():
                    path = pathlib.Path(rec["manifest"])
                    break
    if path is None:
        if all(k == "run" for side in sides for _, k in side):
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


def _protocol(args, sides):
    """The protocol to score under: the one the command line asks for (--protocol, --alignment, --samples);
    else a stored run's (a run side, or a stored run of a checkpoint's weights); else the default preset."""
    from ..evaluate.protocols import get_protocol
    from ..evaluate.sides import run_protocol, stored_runs_of
    from .eval_meshes import protocol_asked, resolve_protocol

    if protocol_asked(args):
        return resolve_protocol(args, default="default")
    runs = [run_protocol(s) for side in sides for s, k in side if k == "run"]
    if not runs:
        from ..models.checkpoint import load_checkpoint

        for s, k in (run for side in sides for run in side):
            if k == "checkpoint":
                stored = stored_runs_of(load_checkpoint(s).identity, [*args.reuse, s.parent / "eval", args.runs_dir])
                if stored:
                    runs.append(run_protocol(stored[0]))
                    break
    return runs[0] if runs else get_protocol("default")


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    from ..evaluate.compare import compare_frames, comparison_json, load_votes
    from ..evaluate.sides import expand_side, load_side, side_kind
    from .eval_meshes import protocol_asked
    from .progress import ProgressReporter

    def log(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    specs = [expand_side(args.a), expand_side(args.b)]
    sides_in = [[(p, side_kind(p)) for p in paths] for paths in specs]
    labels = tuple(args.labels) if args.labels else (_label(args.a, specs[0]), _label(args.b, specs[1]))
    if labels[0] == labels[1]:
        labels = (labels[0] + " (A)", labels[1] + " (B)")
    manifest, manifest_path, _ = _resolve_data(args, sides_in, log)
    protocol = _protocol(args, sides_in)
    explicit = protocol_asked(args)
    votes = load_votes(args.votes) if args.votes else None
    loaded: list[list] = [[], []]
    for i, (side, label) in enumerate(zip(sides_in, labels)):
        for j, (spec, kind) in enumerate(side):
            name = label if len(side) == 1 else f"{label} [{spec}]"
            progress = ProgressReporter(f"scoring {name}", enabled=not args.quiet)
            # a stored run keeps its own protocol unless one was asked for (then a different one is refused)
            asked = protocol if (kind != "run" or explicit) else None
            s = load_side(spec, label=name, manifest=manifest, protocol=asked, runs_dir=args.runs_dir,
                          reuse=args.reuse, device=args.device, batch_size=args.batch_size, progress=progress)
            where = f"; stored run {s.run_dir}" if s.run_dir is not None and s.run_dir != spec else ""
            if s.scored_into is not None and s.scored_into != s.run_dir:
                where += f"; scored rows stored in {s.scored_into}"
            log(f"{name}: {s.kind} {spec}: {len(s.frame)} rows ({s.reused} stored rows reused, {s.scored} scored"
                f"{f', {s.stale} of them because their files or manifest row changed' if s.stale else ''}){where}")
            if s.stale_ids:
                log(f"  {len(s.stale_ids)} stored row(s) no longer match their ground truth or manifest row and the "
                    f"run's predictions cannot be found to score them again; left out: {', '.join(s.stale_ids[:8])}")
            if s.unchecked:
                log(f"  note: {s.unchecked}")
            loaded[i].append(s)
    used = {p.resolve() for side in loaded for s in side if s.run_dir is not None for p in (s.run_dir,)}
    for r in args.reuse:
        if r.resolve() not in used and not any(u.is_relative_to(r.resolve()) for u in used):
            log(f"note: --reuse {r} was not used: it holds no run of these predictions or checkpoints under protocol "
                f"{protocol.label()} (a run is matched by its source identity, e.g. the predictions folder's path, and "
                "protocol fingerprint)")
    comparison = compare_frames(
        [s.frame for s in loaded[0]], [s.frame for s in loaded[1]], labels=labels, metrics=args.metrics,
        regression_metrics=args.regression_metrics, preference_metric=args.preference_metric, alpha=args.alpha,
        min_effect=args.min_effect, n_resamples=args.resamples, votes=votes,
        vote_names=((args.vote_names[0],), (args.vote_names[1],)) if args.vote_names else None,
        protocol=loaded[0][0].protocol, failed_as=args.failed_as, figure=args.figure,
        cluster=None if args.cluster == "none" else args.cluster)
    flat = loaded[0] + loaded[1]
    if args.json:
        print(comparison_json(comparison, flat))
    else:
        print(format_comparison(comparison))
    if args.out is not None:
        path = write_comparison_report(args.out, comparison, flat, manifest, n_thumbs=args.thumbnails,
                                       quiet=args.quiet)
        log(f"report: {path}")
    if comparison.regressed and args.fail_on_regression:
        return EXIT_REGRESSION
    return 0


def format_comparison(c) -> str:
    """The terminal tables: verdict, failures, the overall metrics (means, then the robust figures), the
    preference metric per stratum, the gap, outliers, the preference and the samples left out."""
    from ..report.tables import fmt, fmt_ci, fmt_p, fmt_rate
    from .table import _grid

    a, b = c.labels
    t = c.table
    st = c.settings
    several = max(st.get("runs", [1, 1])) > 1
    lines = [c.verdict(), ""]
    lines += format_failures(c)
    lines.append("")

    def pct(v, lo=None, hi=None):
        if v is None or v != v:
            return "-"
        if lo is None or lo != lo:
            return f"{100 * v:+.1f}%"
        return f"{100 * v:+.1f}% [{100 * lo:+.1f}, {100 * hi:+.1f}]"

    def flag(r):
        return ("worse" if r["better"] == "A" else "better") if r["significant"] else ""

    head = ["metric", "n", f"A {a}", f"B {b}", "delta B-A [95% CI]", "rel", "test p", "p Holm", ""]
    overall = t[t["stratum"] == "all"]
    lines += _grid(head, [[r["metric"], str(r["n"]), fmt_ci(r["mean_a"], r["low_a"], r["high_a"]),
                           fmt_ci(r["mean_b"], r["low_b"], r["high_b"]), fmt_ci(r["delta"], r["delta_low"], r["delta_high"]),
                           pct(r["rel_delta"]), fmt_p(r["pvalue"]), fmt_p(r["p_holm"]), flag(r)]
                          for r in overall.to_dict("records")])
    lines.append("")
    robust_head = ["metric", "verdict on", "median B-A [95% CI]", "geo-mean ratio B/A [95% CI]", "P(B better) [95% CI]"]
    if several:
        robust_head += [f"A runs min-max", f"B runs min-max"]
    rows = []
    for r in overall.to_dict("records"):
        row = [r["metric"], r["figure"], fmt_ci(r["median_delta"], r["median_delta_low"], r["median_delta_high"]),
               pct(r["geo_change"], r["geo_change_low"], r["geo_change_high"]),
               fmt_ci(r["prob_improvement"], r["prob_improvement_low"], r["prob_improvement_high"], 2)]
        if several:
            row += [f"{fmt(r['run_min_a'])}-{fmt(r['run_max_a'])}", f"{fmt(r['run_min_b'])}-{fmt(r['run_max_b'])}"]
        rows.append(row)
    lines += _grid(robust_head, rows)
    strata = t[(t["stratum"] != "all") & (t["metric"] == c.preference["metric"])]
    if len(strata):
        lines.append("")
        lines += _grid(["stratum: metric", "n", "units", f"A {a}", f"B {b}", "delta B-A [95% CI]", "geo-mean ratio",
                        "test p", "p Holm", ""],
                       [[f"{r['stratum']}={r['level']}: {r['metric']}", str(r["n"]), str(r["n_units"]),
                         fmt_ci(r["mean_a"], r["low_a"], r["high_a"]), fmt_ci(r["mean_b"], r["low_b"], r["high_b"]),
                         fmt_ci(r["delta"], r["delta_low"], r["delta_high"]), pct(r["geo_change"]),
                         fmt_p(r["pvalue"]), fmt_p(r["p_holm"]), flag(r)] for r in strata.to_dict("records")])
    unit = (f"units: {st['cluster']} groups ({st['units']} units; each resampled whole)" if st.get("cluster")
            else f"units: samples ({st['units']})")
    runs = st.get("runs", [1, 1])
    failed_as = ("failed samples scored at their side's worst value" if st.get("failed_as") == "worst"
                 else "failed samples excluded from the metric table (--failed-as exclude)")
    lines.append(
        f"{runs[0]} run(s) of A, {runs[1]} of B; {unit}; {failed_as}. "
        + ("Intervals: two-level bootstrap (runs within each side, units shared by both); " if several else
           "Intervals: bootstrap over units (the mean difference: paired, studentized below 50 units); ")
        + f"test p of the verdict figure, Holm per stratification (alpha {st['alpha']:g}).")
    if several and min(runs) < 5:
        r = min(runs)
        lines.append(f"note: with {r} run(s) on a side, resampling runs understates the between-run variance by "
                     f"(R-1)/R = {(r - 1) / r:.2f}: the intervals are optimistic; 5 or more seeds per side give "
                     "intervals to ship on (the runs' min-max is shown beside them)")
    if c.gap_a is not None and len(c.gap_a):
        lines.append("")
        gb = {r["metric"]: r for r in c.gap_b.to_dict("records")} if c.gap_b is not None else {}
        rows = []
        for r in c.gap_a.to_dict("records"):
            if r["metric"] in st["regression_metrics"] or r["metric"] == "accuracy":
                q = gb.get(r["metric"], {})
                rows.append([r["metric"], r["figure"], r.get("design") or "", fmt_ci(r["estimate"], r["low"], r["high"]),
                             fmt_ci(q.get("estimate"), q.get("low"), q.get("high"))])
        lines += _grid(["gap metric", "figure", "design", f"A {a}", f"B {b}"], rows)
    elif st.get("gap_note"):
        lines += ["", st["gap_note"]]
    if c.outliers:
        lines.append("")
        lines.append(f"outliers (more than {st.get('outlier_factor', 10):g}x their side's median; kept in every figure): "
                     f"{len(c.outliers)}")
        for o in c.outliers[:8]:
            lines.append(f"  {o['metric']} {o['side']} {o['sample_id']}: {fmt(o['value'])} ({o['ratio']:.0f}x the median "
                         f"{fmt(o['median'])})")
        if len(c.outliers) > 8:
            lines.append(f"  ... {len(c.outliers) - 8} more (--json lists them all)")
    p = c.preference
    if p.get("samples"):
        lines.append("")
        lines.append(f"per-sample preference on {p['metric']}: B better on {p['wins']}, A better on {p['losses']}, "
                     f"ties {p['ties']}; win rate of B {fmt_rate(p['rate'], p['low'], p['high'])}, "
                     f"{p.get('test', 'binomial')} p {fmt_p(p['pvalue'])}"
                     + (" (twins resampled together)" if p.get("interval") == "bootstrap over units" else ""))
    if c.votes:
        v = c.votes
        lines.append(f"human votes: {v['votes']} on {v['items']} items: B preferred {v['wins']}, A {v['losses']}, ties "
                     f"{v['ties']}; win rate of B {fmt_rate(v['rate'], v['low'], v['high'])}")
    s = c.samples
    left = [("failed only in A", s["failed_only_A"]), ("failed only in B", s["failed_only_B"]),
            ("failed in both", s["failed_both"]), ("only in A", s["only_in_A"]), ("only in B", s["only_in_B"]),
            ("not in every run", s.get("not_in_every_run", []))]
    lines.append("")
    lines.append(f"samples: {s['common']} in both, {s['both_ok']} scored ok by both")
    for what, ids in left:
        if ids:
            lines.append(f"  {what}: {len(ids)}: {', '.join(ids[:8])}{' ...' if len(ids) > 8 else ''}")
    return "\n".join(lines)


def format_failures(c) -> list[str]:
    """The failure lines printed above the metric table."""
    from ..report.tables import fmt_p

    f = c.failures or {}
    if not f:
        return []
    a, b = c.labels
    clustered = f.get("unit") == "cluster"
    unit = "pairs" if clustered else "samples"
    per_run = " per run" if max(f["runs"]) > 1 else ""

    def side(k):
        lo, hi = f.get(f"rate_{k}_low"), f.get(f"rate_{k}_high")
        ci = f" [{100 * lo:.1f}%, {100 * hi:.1f}%]" if lo is not None and lo == lo else ""
        text = f"{f[f'failed_{k}']:.4g} of {f['samples']} samples"
        if clustered:
            text += f", in {f[f'failed_units_{k}']:.4g} of {f['units']} pairs"
        return text + f"{per_run} ({100 * f[f'rate_{k}']:.1f}%{ci})"

    lines = [f"failures: A {a}: {side('a')}; B {b}: {side('b')}"]
    if f["test"] == "exact McNemar":
        line = (f"  exact McNemar test on the {unit} failed on one side only ({f['only_a']} only in A, {f['only_b']} "
                f"only in B): p {fmt_p(f['pvalue'])}, Holm {fmt_p(f.get('p_holm'))}")
    else:
        line = (f"  {f['test']} test of each {unit[:-1]}'s failure share over the runs, B - A ({f['only_a']} lower in "
                f"B, {f['only_b']} higher): p {fmt_p(f['pvalue'])}, Holm {fmt_p(f.get('p_holm'))}")
    n_disc = f["only_a"] + f["only_b"]
    if n_disc and f["min_attainable_p"] >= f["alpha"]:
        line += (f"; with {n_disc} discordant {unit} the exact test cannot reach p < {f['alpha']:g} "
                 f"(smallest p {f['min_attainable_p']:.3g})")
    if f["significant"]:
        line += f": {f['worse']} fails significantly more"
    lines.append(line)
    return lines


def write_comparison_report(path, comparison, sides, manifest, *, n_thumbs: int = 6, quiet: bool = True) -> pathlib.Path:
    """Render the worst samples (B's largest losses on the preference metric) and write the HTML report.
    sides: the loaded `Side`s, A's runs then B's; thumbnails show the first run of each side."""
    from ..evaluate.sides import prediction_source, sample_meshes
    from ..evaluate.sources import load_ground_truth
    from ..io.results import run_metadata
    from ..report import comparison_document, write_html
    from ..report.tables import fmt
    from ..report.thumbnails import render_thumbnails

    n_a = comparison.settings.get("runs", [1, 1])[0]
    firsts = [sides[0], sides[n_a]]
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
            if not quiet:
                print(f"rendering {len(chosen)} worst samples for the report", file=sys.stderr, flush=True)
            sel = [rows[s] for s in chosen]
            preds = [sample_meshes(prediction_source(side), sel, side.protocol) for side in firsts]
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
