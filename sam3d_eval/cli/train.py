"""`sam3d-eval train --config training/stage1.toml`: run a training recipe (one or both stages).

Runs `workflows.run_recipe`; this module only parses the arguments and draws the progress (a bar per
stage, one line per curriculum phase). Imports nothing heavy until the command runs.
"""

from __future__ import annotations

import argparse
import pathlib
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the reference model with a recipe (stage 1, stage 2, or both)",
        description=(
            "Run a training recipe from training/ (TOML): stage 1 (synthetic pre-training) and/or stage 2 "
            "(real-world alignment with the 80/20 -> 50/50 -> 20/80 -> 100% real curriculum). Checkpoints "
            "(safetensors + JSON config) go to OUT/stageN/; with [eval] enabled every phase boundary is scored "
            "on the test split and the synthetic-vs-real gap appended to OUT/gap.csv. The resumable state "
            "(OUT/stageN/last.safetensors) is saved every checkpoint_every steps (default 100), at every phase "
            "boundary and on Ctrl-C / SIGTERM (exit 130 after the step in progress; a second Ctrl-C stops at "
            "once): an interrupted or killed run continues where it stopped when started again (--fresh starts "
            "over). Under torchrun every rank trains on its share of each global batch (DDP, gloo on CPU)."
        ),
    )
    p.add_argument("--config", required=True, type=pathlib.Path, help="recipe TOML (training/stage1.toml, ...)")
    p.add_argument("--out", type=pathlib.Path, default=None, help="output folder (default: the recipe's out_dir)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the recipe's)")
    p.add_argument("--no-eval", action="store_true", help="skip the phase-boundary evaluation")
    p.add_argument("--fresh", action="store_true", help="ignore a previous run's last.safetensors")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


class _StageBar:
    """A stage's progress on stderr: a tqdm bar on a terminal, a plain line every few seconds in a log."""

    def __init__(self, stage: int, steps: int) -> None:
        self.bar = self.reporter = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=steps, desc=f"stage {stage}", file=sys.stderr, dynamic_ncols=True, leave=False)
        else:  # a log file or CI: no carriage returns
            from .progress import ProgressReporter

            self.reporter = ProgressReporter(f"stage {stage}", unit="step")
            self.reporter.start(steps, 0)

    def update(self, step: int, total: int, terms: dict) -> None:
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(chamfer=f"{terms.get('chamfer', float('nan')):.4f}", total=f"{terms['total']:.3f}",
                                 refresh=False)
            self.bar.refresh()
        elif self.reporter is not None:
            self.reporter.update(step - self.reporter.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.reporter is not None:
            self.reporter.close()


def run(args: argparse.Namespace) -> int:
    from ..train.recipe import load_recipe
    from ..workflows import run_recipe

    recipe = load_recipe(args.config, out_dir=args.out, device=args.device)
    run_recipe(recipe, evaluate=not args.no_eval, fresh=args.fresh, log=lambda line: print(line, flush=True),
               progress=None if args.quiet else _StageBar)
    return 0
