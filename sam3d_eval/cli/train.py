"""`sam3d-eval train --config training/stage1.toml`: run a training recipe (one or both stages).

Prints a progress bar per stage and one line per curriculum phase; at every phase boundary the checkpoint
is scored on the synthetic and real test splits and the gap (with bootstrap intervals) is appended to
OUT/gap.csv. Imports nothing heavy until the command runs.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time


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


def check_init_from(recipe) -> None:
    """Refuse, before any data is made or step taken, a stage whose `init_from` checkpoint is missing (and
    not written by an earlier stage of the recipe), of another architecture, or with weights of other shapes
    than the stage's model (`models.checkpoint.check_checkpoint`: a one-line error naming the file)."""
    from ..models.checkpoint import CheckpointError, check_checkpoint

    earlier: set[pathlib.Path] = set()
    for cfg in recipe.stages:
        if cfg.init_from:
            path = pathlib.Path(cfg.init_from)
            if path.resolve() in earlier:
                pass  # written by an earlier stage of this run; train() checks it when the stage starts
            elif not path.is_file():
                raise FileNotFoundError(f"{recipe.path} [stage{cfg.stage}] init_from: checkpoint not found: {path}")
            else:
                try:
                    check_checkpoint(path, cfg.model)
                except CheckpointError as err:
                    raise CheckpointError(f"{recipe.path} [stage{cfg.stage}] init_from {err}") from None
        earlier.add((pathlib.Path(cfg.out_dir) / "final.safetensors").resolve())


def prepare_data(recipe, log) -> pathlib.Path:
    """The manifest the recipe trains on: its `manifest`, or the built-in benchmark generated (or finished)
    under OUT/benchmark from `[data.generate]`."""
    data = recipe.data
    if "manifest" in data:
        return pathlib.Path(data["manifest"])
    gen = dict(data.get("generate", {}))
    if not gen:
        raise ValueError(f"{recipe.path}: [data] needs a manifest or a [data.generate] table")
    from ..data.generate import GenerationConfig, make_benchmark

    out = pathlib.Path(gen.pop("out", recipe.out_dir / "benchmark"))
    n_syn, n_real = int(gen.pop("synthetic")), int(gen.pop("real"))
    seed, workers = int(gen.pop("seed", 0)), int(gen.pop("workers", 1))
    t0 = time.perf_counter()
    log(f"built-in benchmark: {n_syn} synthetic + {n_real} real samples in {out}")
    make_benchmark(out, n_syn, n_real, seed, GenerationConfig.from_dict(gen), workers=workers)
    log(f"  ready in {time.perf_counter() - t0:.0f} s")
    return out / "manifest.csv"


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..train.data import ManifestTrainData
    from ..train.hooks import PhaseEvaluator
    from ..train.loop import TrainingInterrupted, train
    from ..train.recipe import load_recipe

    recipe = load_recipe(args.config, out_dir=args.out, device=args.device)
    check_init_from(recipe)
    from ..train.ddp import init_distributed

    ctx = init_distributed(recipe.stages[0].device)
    main = ctx.is_main

    def log(line: str) -> None:
        if main:
            print(line, flush=True)

    manifest = prepare_data(recipe, log) if main else None
    if ctx.distributed:
        import torch.distributed as dist

        box = [str(manifest) if manifest else None]
        dist.broadcast_object_list(box, src=0)
        manifest = pathlib.Path(box[0])
    image_size = int(recipe.data.get("image_size", recipe.stages[0].model.input_size))
    data = ManifestTrainData(manifest, split=recipe.data.get("train_split", "train"), image_size=image_size)
    counts = {d: data.domains.count(d) for d in ("synthetic", "real")}
    log(f"training set: {len(data)} samples ({counts['synthetic']} synthetic, {counts['real']} real) from {manifest}")
    ev = recipe.eval
    gap_table = recipe.out_dir / "gap.csv"
    t_all = time.perf_counter()
    for cfg in recipe.stages:
        hook = None
        if main and ev.get("enabled", True) and not args.no_eval:
            hook = PhaseEvaluator(manifest, gap_table, stage=cfg.stage, split=ev.get("split", "test"),
                                  protocol=ev.get("protocol", "default"), num_samples=ev.get("num_samples", 20_000),
                                  batch_size=int(ev.get("batch_size", 16)), device=cfg.device,
                                  n_resamples=int(ev.get("n_resamples", 2000)), log=log)
        bar = reporter = None
        steps = cfg.epochs * (cfg.epoch_size // cfg.batch_size)
        if main and not args.quiet and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=f"stage {cfg.stage}", file=sys.stderr, dynamic_ncols=True, leave=False)
        elif main and not args.quiet:  # a log file or CI: a plain line every few seconds, no carriage returns
            from .progress import ProgressReporter

            reporter = ProgressReporter(f"stage {cfg.stage}", unit="step")
            reporter.start(steps, 0)

        def progress(step, total, terms, bar=bar, reporter=reporter):
            if bar is not None:
                bar.n = step
                bar.set_postfix(chamfer=f"{terms.get('chamfer', float('nan')):.4f}", total=f"{terms['total']:.3f}",
                                refresh=False)
                bar.refresh()
            elif reporter is not None:
                reporter.update(step - reporter.done)

        log(f"stage {cfg.stage}: {cfg.epochs} epochs x {cfg.epoch_size // cfg.batch_size} steps of batch "
            f"{cfg.batch_size}, lr {cfg.lr:g}, model {cfg.model.to_dict()['channels']} ico{cfg.model.ico_level} -> {cfg.out_dir}")
        t0 = time.perf_counter()
        try:
            result = train(dataclasses.replace(cfg), data, resume=not args.fresh, on_phase_end=hook, log=log,
                           progress=progress)
        except TrainingInterrupted as err:  # the state is saved: say where, then exit 130 as any Ctrl-C
            log(f"stage {cfg.stage}: {err}")
            raise
        finally:
            if bar is not None:
                bar.close()
            if reporter is not None:
                reporter.close()
        log(f"stage {cfg.stage} finished: {result.steps} steps in {time.perf_counter() - t0:.0f} s -> {result.checkpoint}")
    if main and gap_table.exists():
        import pandas as pd

        table = pd.read_csv(gap_table)
        show = table[table["metric"].isin(["chamfer_l2", "fscore@0.05"])]
        design = "paired" if "design" in table.columns and (table["design"] == "paired").all() else "two-sample"
        log(f"\ngap per phase (real vs synthetic, {design} bootstrap 95% interval):")
        for r in show.itertuples():
            log(f"  stage {r.stage} {r.phase:<10} {r.metric:<12} syn {r.mean_synthetic:.4f} real {r.mean_real:.4f} "
                f"{r.figure} {r.estimate:.3f} [{r.low:.3f}, {r.high:.3f}]")
        log(f"table: {gap_table}")
    evals = [sorted((pathlib.Path(c.out_dir) / "eval").glob(f"stage{c.stage}-phase*")) for c in recipe.stages]
    if main and len(evals) == 2 and all(evals):
        from ..train.hooks import compare_stage_runs, stage_gap_change

        # The last phase's evaluation of each stage (stored runs: a resumed recipe reuses them).
        rows = compare_stage_runs(evals[0][-1], evals[1][-1], recipe.out_dir / "stage_comparison.csv",
                                  n_resamples=int(ev.get("n_resamples", 2000)))
        log("\nstage 2 vs stage 1 on the same test samples (paired bootstrap 95% interval of the mean change):")
        for r in rows.itertuples():
            log(f"  {r.level:<10} {r.metric:<12} stage1 {r.mean_a:.4f} stage2 {r.mean_b:.4f} change {r.delta:+.4f} "
                f"[{r.delta_low:+.4f}, {r.delta_high:+.4f}] ({r.rel_delta:+.1%}), Wilcoxon p {r.pvalue:.2g}")
        log(f"table: {recipe.out_dir / 'stage_comparison.csv'}")
        change = stage_gap_change(evals[0][-1], evals[1][-1], recipe.out_dir / "gap_change.csv",
                                  n_resamples=int(ev.get("n_resamples", 2000)))
        design = change["design"].iloc[0] if len(change) else "two-sample"
        log(f"\nthe gap, stage 1 -> stage 2 ({design} bootstrap 95% intervals; share of the stage-1 gap closed, "
            "and by the real split alone with the synthetic split held at stage 1):")
        for r in change.itertuples():
            line = f"  {r.metric:<12} "
            if r.change == r.change:
                line += (f"{r.figure} {r.estimate_a:.3f} -> {r.estimate_b:.3f}, change {r.change:+.3f} "
                         f"[{r.change_low:+.3f}, {r.change_high:+.3f}]")
            if r.closed == r.closed:
                line += (f", {r.closed:.0%} closed [{r.closed_low:.0%}, {r.closed_high:.0%}], by the real split "
                         f"{r.closed_by_real:.0%} [{r.closed_by_real_low:.0%}, {r.closed_by_real_high:.0%}]")
            log(line + (f" ({r.note})" if r.note else ""))
        log(f"table: {recipe.out_dir / 'gap_change.csv'}")
    log(f"total {time.perf_counter() - t_all:.0f} s")
    ctx.close()
    return 0
