"""`sam3d-eval engine run --config training/engine.toml --out DIR` and `sam3d-eval engine show DIR`.

Rounds of the model-in-the-loop data engine (`sam3d_eval.engine.rounds`): a suite of models proposes 3-5
candidate meshes per unlabelled real image, a verifier (simulated raters or imported human ratings) scores
the rubric, the best accepted candidate joins the training pool, the main model is fine-tuned on it; per
round the accept rate, cost per accepted sample, agreement, failure-mode mix and the synthetic/real gap are
stored in DIR. A second run with the same DIR resumes after the last finished round.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("engine", help="run data-engine rounds (propose, verify, pool, fine-tune) and show them",
                       description=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    esub = p.add_subparsers(dest="engine_command", metavar="SUBCOMMAND")
    r = esub.add_parser("run", help="run (or resume) the rounds of a config")
    r.add_argument("--config", type=pathlib.Path, default=pathlib.Path("training/engine.toml"),
                   help="engine TOML (default training/engine.toml)")
    r.add_argument("--out", type=pathlib.Path, default=None, help="output folder (default: the config's out_dir)")
    r.add_argument("--rounds", type=int, default=None, help="number of rounds (overrides the config)")
    r.add_argument("--seed", type=int, default=None, help="seed (overrides the config)")
    r.add_argument("--stop-after", type=int, default=None, help="stop once this many rounds are stored")
    r.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    r.add_argument("--json", action="store_true", help="print the round table as JSON")
    r.set_defaults(run=run)
    s = esub.add_parser("show", help="print the stored rounds of a run folder")
    s.add_argument("out", type=pathlib.Path, help="the engine run folder")
    s.add_argument("--json", action="store_true", help="print everything the report renders, as JSON")
    s.set_defaults(run=show)
    p.set_defaults(run=lambda args: (p.print_help(), 2)[1])


def format_rounds(rounds: list[dict]) -> str:
    """The rounds table of a data-engine run (`engine.read_engine_run`'s ``rounds``) for the terminal."""
    from ..report.tables import fmt_fixed
    from ..report.text import grid

    def pct(x):
        return "-" if x is None or x != x else f"{x:.0%}"

    rows = []
    for r in rounds:
        rows.append([str(r["round"]), f"{r['accepted']}/{r['images']}",
                     f"{pct(r['accept_rate'])} [{pct(r['accept_low'])}, {pct(r['accept_high'])}]",
                     pct(r.get("candidate_accept_rate")),
                     "-" if r.get("cost_per_accepted") is None else f"${r['cost_per_accepted']:.2f}",
                     fmt_fixed(r.get("alpha_accept")), fmt_fixed(r.get("chamfer_l2_synthetic"), 4),
                     fmt_fixed(r.get("chamfer_l2_real"), 4), fmt_fixed(r.get("chamfer_l2_gap_ratio"), 2),
                     str(r.get("pool_size")), fmt_fixed(r.get("seconds"), 1)])
    return "\n".join(grid(["round", "accepted", "accept rate", "cand.", "$/accepted", "alpha(accept)",
                           "CD syn", "CD real", "gap", "pool", "s"], rows))


def run(args: argparse.Namespace) -> int:
    from ..engine import load_engine_config, read_engine_run, run_engine
    from ..runtime import runtime_policy

    cfg = load_engine_config(args.config, out_dir=None if args.out is None else str(args.out), rounds=args.rounds,
                             seed=args.seed)
    log = (lambda s: None) if args.json else (lambda s: print(s, file=sys.stderr, flush=True))
    with runtime_policy(args.device):
        run_engine(cfg, device=args.device, log=log, stop_after=args.stop_after)
    doc = read_engine_run(cfg.out_dir)
    print(json.dumps(doc["rounds"], indent=2) if args.json else format_rounds(doc["rounds"]) + format_trend(doc))
    return 0


def format_trend(doc: dict) -> str:
    t = (doc.get("trend") or {}).get("accept_rate")
    if not t or t.get("slope") is None:
        return ""
    return (f"\naccept-rate trend (binomial GLM on round): {t['slope']:+.3f} log-odds per round "
            f"[{t['low']:+.3f}, {t['high']:+.3f}], p = {t['pvalue']:.3g}; fitted {t['fitted_first']:.0%} -> {t['fitted_last']:.0%}")


def show(args: argparse.Namespace) -> int:
    from ..engine import read_engine_run

    doc = read_engine_run(args.out)
    print(json.dumps(doc, indent=2) if args.json else format_rounds(doc["rounds"]) + format_trend(doc))
    return 0
