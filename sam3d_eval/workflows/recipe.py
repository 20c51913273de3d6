"""Run a training recipe: the benchmark, both stages with their phase-boundary evaluations, and the
comparison of the stages' final checkpoints.

`run_recipe` is what ``sam3d-eval train`` and the demo run, and what a notebook calls:

1. every stage's `init_from` checkpoint is checked before anything is made (`check_init_from`);
2. the manifest: the recipe's own, or the built-in benchmark generated (or finished) under OUT/benchmark from
   its ``[data.generate]`` table (`data.generate.ensure_benchmark`); under torchrun rank 0 makes it and the
   other ranks receive its path;
3. each stage trains (`train.loop.train`, resumable), and with ``[eval]`` enabled every phase boundary is
   scored on the test split (`train.hooks.PhaseEvaluator`) and its synthetic-vs-real gap appended to
   OUT/gap.csv;
4. with two stages, the last phase-boundary evaluation of each is compared (`train.hooks.compare_stage_runs`,
   OUT/stage_comparison.csv) and the gap's change computed (`train.hooks.stage_gap_change`, OUT/gap_change.csv).

Progress goes to `log` (one line per event) and to the `progress` factory (one object per stage with
``update(step, total, terms)`` and ``close()``), so a terminal, a log file or a notebook each show it their way.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..io.results import GAP_METRICS

__all__ = ["RecipeResult", "StageProgress", "check_init_from", "run_recipe"]


class StageProgress(Protocol):
    """What `run_recipe` reports a stage's steps to."""

    def update(self, step: int, total: int, terms: dict[str, float]) -> None: ...
    def close(self) -> None: ...


@dataclass
class RecipeResult:
    """What a recipe run produced: out_dir; manifest (the data trained and evaluated on); checkpoints (each
    stage's final or last checkpoint); gap_table, stage_comparison, gap_change: the tables written (None
    when not written: evaluation off, or fewer than two stages)."""

    out_dir: pathlib.Path
    manifest: pathlib.Path
    checkpoints: list[pathlib.Path]
    gap_table: pathlib.Path | None = None
    stage_comparison: pathlib.Path | None = None
    gap_change: pathlib.Path | None = None


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


def _manifest_of(recipe, log: Callable[[str], None]) -> pathlib.Path:
    """The manifest the recipe trains on: its `manifest`, or the built-in benchmark of `[data.generate]`."""
    from ..data.generate import ensure_benchmark

    data = recipe.data
    if "manifest" in data:
        return pathlib.Path(data["manifest"])
    gen = dict(data.get("generate", {}))
    if not gen:
        raise ValueError(f"{recipe.path}: [data] needs a manifest or a [data.generate] table")
    return ensure_benchmark(gen, recipe.out_dir / "benchmark", log)


def run_recipe(
    recipe,
    *,
    evaluate: bool = True,
    fresh: bool = False,
    log: Callable[[str], None] = print,
    progress: Callable[[int, int], StageProgress | None] | None = None,
) -> RecipeResult:
    """Run a loaded recipe (`train.recipe.load_recipe`) end to end (module docstring).

    Args:
        recipe: a `train.recipe.Recipe`.
        evaluate: score every phase boundary when the recipe's ``[eval]`` is enabled.
        fresh: start over, ignoring a previous run's resumable state.
        log: receives one line per event (rank 0 only under torchrun).
        progress: ``progress(stage, steps)`` gives the object a stage reports its steps to, or None.

    Returns:
        `RecipeResult`. Raises `train.loop.TrainingInterrupted` (a KeyboardInterrupt) after saving when a
        signal stops a stage; ValueError / FileNotFoundError for a bad recipe or missing data.
    """
    from ..distributed import broadcast_object
    from ..train.data import ManifestTrainData
    from ..train.ddp import init_distributed
    from ..train.hooks import PhaseEvaluator
    from ..train.loop import train

    check_init_from(recipe)
    ctx = init_distributed(recipe.stages[0].device)
    main = ctx.is_main

    def say(line: str) -> None:
        if main:
            log(line)

    try:
        manifest = broadcast_object(_manifest_of(recipe, say) if main else None)
        image_size = int(recipe.data.get("image_size", recipe.stages[0].model.input_size))
        data = ManifestTrainData(manifest, split=recipe.data.get("train_split", "train"), image_size=image_size)
        counts = {d: data.domains.count(d) for d in ("synthetic", "real")}
        say(f"training set: {len(data)} samples ({counts['synthetic']} synthetic, {counts['real']} real) from {manifest}")
        ev = recipe.eval
        gap_table = recipe.out_dir / "gap.csv"
        n_resamples = int(ev.get("n_resamples", 2000))
        t_all = time.perf_counter()
        checkpoints = []
        for cfg in recipe.stages:
            hook = None
            if main and ev.get("enabled", True) and evaluate:
                hook = PhaseEvaluator(manifest, gap_table, stage=cfg.stage, split=ev.get("split", "test"),
                                      protocol=ev.get("protocol", "default"), num_samples=ev.get("num_samples", 20_000),
                                      batch_size=int(ev.get("batch_size", 16)), device=cfg.device,
                                      n_resamples=n_resamples, appearance=bool(ev.get("appearance", False)),
                                      visibility=bool(ev.get("visibility", False)),
                                      overrides={k: ev[k] for k in ("appearance_image_size", "appearance_views") if k in ev},
                                      wear_free=bool(ev.get("wear_free", True)), log=say)
            steps = cfg.epochs * (cfg.epoch_size // cfg.batch_size)
            reporter = progress(cfg.stage, steps) if (progress is not None and main) else None
            say(f"stage {cfg.stage}: {cfg.epochs} epochs x {cfg.epoch_size // cfg.batch_size} steps of batch "
                f"{cfg.batch_size}, lr {cfg.lr:g}, model {cfg.model.to_dict()['channels']} ico{cfg.model.ico_level} "
                f"-> {cfg.out_dir}")
            t0 = time.perf_counter()
            try:
                result = train(dataclasses.replace(cfg), data, resume=not fresh, on_phase_end=hook, log=say,
                               progress=reporter.update if reporter is not None else None)
            except KeyboardInterrupt as err:  # TrainingInterrupted: the state is saved; say where
                say(f"stage {cfg.stage}: {err}")
                raise
            finally:
                if reporter is not None:
                    reporter.close()
            say(f"stage {cfg.stage} finished: {result.steps} steps in {time.perf_counter() - t0:.0f} s -> "
                f"{result.checkpoint}")
            checkpoints.append(result.checkpoint)
        out = RecipeResult(recipe.out_dir, manifest, checkpoints)
        if main and gap_table.exists():
            out.gap_table = gap_table
            _log_gap_table(gap_table, say)
        evals = [sorted((pathlib.Path(c.out_dir) / "eval").glob(f"stage{c.stage}-phase*")) for c in recipe.stages]
        if main and len(evals) == 2 and all(evals):
            out.stage_comparison, out.gap_change = _compare_stages(evals[0][-1], evals[1][-1], recipe.out_dir,
                                                                   n_resamples, say)
        say(f"total {time.perf_counter() - t_all:.0f} s")
        return out
    finally:
        ctx.close()


def _log_gap_table(gap_table: pathlib.Path, say: Callable[[str], None]) -> None:
    import pandas as pd

    table = pd.read_csv(gap_table)
    show = table[table["metric"].isin(GAP_METRICS)]
    design = "paired" if "design" in table.columns and (table["design"] == "paired").all() else "two-sample"
    say(f"\ngap per phase (real vs synthetic, {design} bootstrap 95% interval):")
    for r in show.itertuples():
        say(f"  stage {r.stage} {r.phase:<10} {r.metric:<12} syn {r.mean_synthetic:.4f} real {r.mean_real:.4f} "
            f"{r.figure} {r.estimate:.3f} [{r.low:.3f}, {r.high:.3f}]")
    say(f"table: {gap_table}")


def _compare_stages(run_a: pathlib.Path, run_b: pathlib.Path, out_dir: pathlib.Path, n_resamples: int,
                    say: Callable[[str], None]) -> tuple[pathlib.Path, pathlib.Path]:
    """The last phase-boundary evaluation of each stage compared (stored runs: a resumed recipe reuses them)."""
    from ..train.hooks import compare_stage_runs, stage_gap_change

    table_path, change_path = out_dir / "stage_comparison.csv", out_dir / "gap_change.csv"
    rows = compare_stage_runs(run_a, run_b, table_path, n_resamples=n_resamples)
    say("\nstage 2 vs stage 1 on the same test samples (paired bootstrap 95% interval of the mean change):")
    for r in rows.itertuples():
        say(f"  {r.level:<10} {r.metric:<12} stage1 {r.mean_a:.4f} stage2 {r.mean_b:.4f} change {r.delta:+.4f} "
            f"[{r.delta_low:+.4f}, {r.delta_high:+.4f}] ({r.rel_delta:+.1%}), Wilcoxon p {r.pvalue:.2g}")
    say(f"table: {table_path}")
    change = stage_gap_change(run_a, run_b, change_path, n_resamples=n_resamples)
    design = change["design"].iloc[0] if len(change) else "two-sample"
    say(f"\nthe gap, stage 1 -> stage 2 ({design} bootstrap 95% intervals; share of the stage-1 gap closed, "
        "and by the real split alone with the synthetic split held at stage 1):")
    for r in change.itertuples():
        line = f"  {r.metric:<12} "
        if r.change == r.change:
            line += (f"{r.figure} {r.estimate_a:.3f} -> {r.estimate_b:.3f}, change {r.change:+.3f} "
                     f"[{r.change_low:+.3f}, {r.change_high:+.3f}]")
        if r.closed == r.closed:
            line += (f", {r.closed:.0%} closed [{r.closed_low:.0%}, {r.closed_high:.0%}], by the real split "
                     f"{r.closed_by_real:.0%} [{r.closed_by_real_low:.0%}, {r.closed_by_real_high:.0%}]")
        say(line + (f" ({r.note})" if r.note else ""))
    say(f"table: {change_path}")
    return table_path, change_path
