"""`sam3d-eval preference [VOTES] [--ratings RATINGS]`: human preference votes and rubric ratings, analysed.

Votes (``item_id, model_a, model_b, winner, rater_id``): pairwise win rates (ties apart and as half, Wilson
intervals), a Bradley-Terry leaderboard with bootstrap intervals clustered by item and rater, per-rater
agreement and consistency. Ratings (``item_id, rater_id, geometry, texture, completeness, multiview, round``):
accept rate per round (sum >= 32, Wilson), agreement per criterion and on the accept decision,
failure-mode mix, compensatory and near-threshold decisions. Definitions: `sam3d_eval.stats.preference` (votes) and
`sam3d_eval.stats.rubric` (ratings).
"""

from __future__ import annotations

import argparse
import json
import pathlib


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preference",
        help="analyse human preference votes and rubric ratings (win rates, Bradley-Terry, agreement, accept rate)",
        description=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  sam3d-eval preference votes.csv --models sam3d baseline\n"
               "  sam3d-eval preference --ratings ratings.jsonl --json\n"
               "  sam3d-eval preference votes.csv --ratings ratings.csv --out analysis.json",
    )
    p.add_argument("votes", nargs="?", type=pathlib.Path, help="votes file (CSV or JSONL)")
    p.add_argument("--ratings", type=pathlib.Path, default=None, help="rubric ratings file (CSV or JSONL)")
    p.add_argument("--models", nargs="+", default=None,
                   help="the known model names: a vote naming another model is an error")
    p.add_argument("--resamples", type=int, default=1000, help="Bradley-Terry bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval confidence (default 0.95)")
    p.add_argument("--json", action="store_true", help="print the analysis as JSON instead of tables")
    p.add_argument("--out", type=pathlib.Path, default=None,
                   help="also write the analysis as JSON here (what `report` renders)")
    p.add_argument("--html", type=pathlib.Path, default=None,
                   help="also write the analysis as a self-contained HTML report here")
    p.set_defaults(run=run)


def format_analysis(doc: dict) -> str:
    """Plain-text tables of `analyse`'s document."""
    from ..report.tables import fmt_fixed, fmt_p, fmt_rate
    from ..report.text import grid

    lines: list[str] = []
    pref = doc.get("preference")
    if pref:
        c = pref["counts"]
        lines.append(f"votes: {c['votes']} on {c['items']} items by {c['raters']} raters, {c['models']} models, "
                     f"{c['ties']} ties")
        lines.append("")
        rows = [[r["model"], r["opponent"], str(r["wins"]), str(r["losses"]), str(r["ties"]),
                 fmt_rate(r["rate"], r["low"], r["high"]), fmt_p(r["pvalue"]),
                 fmt_rate(r["rate_ties_half"], r["low_ties_half"], r["high_ties_half"])]
                for r in pref["pairwise"]]
        lines += grid(["model", "vs", "wins", "losses", "ties", "win rate (ties apart)", "p", "ties as half"], rows)
        lines.append("")
        s = pref["settings"]
        lines.append(f"Bradley-Terry (ties {s['ties']}, {s['bootstrap']} resamples clustered by "
                     f"{' x '.join(s['cluster']) or 'vote'}, {s['confidence']:.0%} intervals)")
        rows = [[str(r["model"]), f"{fmt_fixed(r['elo'], 0)} [{fmt_fixed(r.get('elo_low'), 0)}, {fmt_fixed(r.get('elo_high'), 0)}]",
                 fmt_fixed(r["log_strength"]), str(r["wins"]), str(r["losses"]), str(r["ties"])] for r in pref["leaderboard"]]
        lines += grid(["model", "elo", "log-strength", "wins", "losses", "ties"], rows)
        lines.append("")
        rows = [[str(r["rater_id"]), str(r["votes"]), str(r["shared"]), fmt_fixed(r["agreement"]), fmt_fixed(r["consistency"]),
                 str(r["circular_triads"])] for r in pref["raters"]]
        lines += grid(["rater", "votes", "shared", "agreement", "consistency", "circular triads"], rows)
        a = pref["agreement"]
        lines.append(f"inter-rater alpha (nominal) over {a['units_shared']} shared item-pairs: {fmt_fixed(a['alpha'])}"
                     + (f" ({a['note']})" if a.get("note") else ""))
        lines += [f"note: {n}" for n in pref["notes"]]
        lines.append("")
    rub = doc.get("rubric")
    if rub:
        d = rub["definitions"]
        lines.append(f"rubric: accepted when the sum >= {d['accept_threshold']:g}/40 (item: mean of its raters); "
                     f"a criterion fails below {d['fail_below']:g}; near = within +-{d['near_margin']:g}")
        rows = [[str(r["round"]), str(r["items"]), str(r["accepted"]), fmt_rate(r["rate"], r["low"], r["high"]),
                 fmt_fixed(r["rating_rate"]), str(r["compensatory"]), str(r["near_threshold"]), str(r["split_items"])]
                for r in rub["accept"]]
        lines += grid(["round", "items", "accepted", "accept rate", "per rating", "compensatory", "near", "split"], rows)
        lines.append("")
        rows = [[r["target"], str(r["method"]), fmt_fixed(r["value"]), fmt_fixed(r["krippendorff_alpha"]), str(r["units"]),
                 str(r["raters"]), r["note"] or ""] for r in rub["agreement"]]
        lines += grid(["target", "method", "value", "alpha", "units", "raters", "note"], rows)
        lines.append("")
        mix: dict = {}
        for r in rub["failure_mix"]:
            mix.setdefault(r["round"], {})[r["mode"]] = r["share"]
        modes = d["failure_modes"]
        rows = [[str(k), *(fmt_fixed(v.get(m), 2) for m in modes)] for k, v in mix.items()]
        lines += grid(["round", *modes], rows)
        lines.append("(share of ratings with each failing criterion)")
    return "\n".join(lines).rstrip()


def run(args: argparse.Namespace) -> int:
    if args.votes is None and args.ratings is None:
        raise ValueError("give a VOTES file, --ratings, or both")
    if args.resamples < 0:
        raise ValueError(f"--resamples must be >= 0, got {args.resamples}")
    if args.out is not None and args.out.suffix.lower() != ".json":
        raise ValueError(f"--out {args.out}: the analysis is written as .json")
    if args.html is not None and args.html.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--html {args.html}: the report is an HTML file (.html)")
    from ..workflows import analyse_judgements

    doc = analyse_judgements(args.votes, args.ratings, models=args.models, resamples=args.resamples, seed=args.seed,
                             confidence=args.confidence)
    text = json.dumps(doc, indent=2, sort_keys=True)
    if args.out is not None:
        from ..atomic import write_text_atomic

        # atomic: an interrupted or failed write leaves the previous analysis (or none), never half a file
        write_text_atomic(args.out, text + "\n")
    if args.html is not None:
        from ..report import preference_document, write_html

        write_html(args.html, preference_document(doc["preference"], doc["rubric"], inputs=doc["inputs"]))
    print(text if args.json else format_analysis(doc))
    return 0
