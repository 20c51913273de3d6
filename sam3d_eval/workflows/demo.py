"""The whole method on the built-in benchmark, with no data of the user's own (what ``sam3d-eval demo`` runs).

1. `run_recipe` on the demo recipe: generates the built-in benchmark, trains stage 1 and stage 2 with the
   curriculum, scores every phase boundary, writes gap.csv, stage_comparison.csv and gap_change.csv;
2. `compare_sides` of the stage-1 and stage-2 final checkpoints (their phase-boundary evaluations are reused,
   not recomputed): compare.txt (`report.text.comparison_text`) and compare.html;
3. `report_runs`: report.html (verdict, tables, the gap across curriculum phases).

Everything stays in OUT; a second call continues where the first stopped.
"""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["DEMO_RECIPE", "QUICK_LEVELS", "DemoResult", "run_demo", "write_quick_demo_data"]

# The demo recipe ships inside the package (setuptools package data) so that an installed `sam3d-eval demo`
# finds it; training/demo.toml is a symlink to this file, the copy users read and pass to `sam3d-eval train
# --config`. One file, two names: the demo and the documented recipe cannot drift apart.
DEMO_RECIPE = pathlib.Path(__file__).with_name("demo.toml")


@dataclass
class DemoResult:
    """out: the folder; recipe: what `run_recipe` returned; comparison: what `compare_sides` returned; files:
    the outputs a reader opens, relative to `out`, those that exist."""

    out: pathlib.Path
    recipe: Any
    comparison: Any
    files: list[str]


def run_demo(
    out: str | pathlib.Path = "reports/demo",
    *,
    config: str | pathlib.Path | None = None,
    seeds: int = 1,
    benchmark_seed: int | None = None,
    device: str = "cpu",
    fresh: bool = False,
    log: Callable[[str], None] = print,
    step: Callable[[int, int, str], None] | None = None,
    progress: Callable[[int, int], Any] | None = None,
    compare_progress: Callable[[str], Any] | None = None,
) -> DemoResult:
    """Run the demo into `out` (module docstring).

    Args:
        out: the output folder. config: the training recipe (default: the packaged demo recipe).
        seeds: training runs (seeds 0 .. seeds-1) on the one benchmark. With 1 the run fills `out` itself;
            with more, run k fills ``out/seed<k>/`` (every stage's seed set to k), the benchmark is generated
            once in ``out/benchmark/``, and the comparison takes every run of each stage (two-level bootstrap
            over runs and twin pairs); ``gap_change.csv`` in `out` then holds the share of the stage-1 gap closed
            across the runs.
        benchmark_seed: the built-in benchmark's seed (default: the recipe's). A seed never used to choose the
            recipe gives a held-out benchmark.
        device: where to train and score. fresh: start the training over.
        log: progress lines. step: called with (k, 3, what) as each of the three steps starts.
        progress: the training's per-stage progress factory (`run_recipe`); compare_progress: the scoring's
            (`compare_sides`).

    Returns:
        `DemoResult`.

    Raises:
        FileNotFoundError: a missing recipe.
        ValueError: `seeds` below 1, or a recipe without both stages or their evaluation.
    """
    from ..atomic import write_text_atomic
    from ..report.text import comparison_text
    from ..train.recipe import load_recipe
    from .compare import compare_sides, write_comparison_report
    from .recipe import run_recipe
    from .report import report_runs

    out = pathlib.Path(out)
    recipe_path = pathlib.Path(config) if config is not None else DEMO_RECIPE
    if not recipe_path.is_file():
        raise FileNotFoundError(f"--config {recipe_path}: no such recipe")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds must be an integer >= 1, got {seeds!r}")
    step = step or (lambda k, n, what: log(f"\n[{k}/{n}] {what}"))
    folders = [out] if seeds == 1 else [out / f"seed{k}" for k in range(seeds)]

    what = "stage 1, stage 2 with the curriculum, gap at every phase"
    step(1, 3, f"train: built-in benchmark, {what} -> {out}" if seeds == 1 else
         f"train {seeds} runs (seeds 0-{seeds - 1}) on one built-in benchmark: {what} -> {out}/seed*")
    recipes = []
    for k, folder in enumerate(folders):
        recipe = load_recipe(recipe_path, out_dir=folder, device=device, **({"seed": k} if seeds > 1 else {}))
        generate = recipe.data.get("generate")
        if generate is not None:  # one benchmark for every run, in out/benchmark
            recipe.data["generate"] = {**generate, "out": str(out / "benchmark"),
                                       **({"seed": benchmark_seed} if benchmark_seed is not None else {})}
        if seeds > 1:
            log(f"\nrun {k + 1} of {seeds}: seed {k}")
        recipes.append(run_recipe(recipe, fresh=fresh, log=log, progress=progress))
    finals = [[f / f"stage{k}" / "final.safetensors" for f in folders] for k in (1, 2)]
    missing = [str(f) for side in finals for f in side if not f.is_file()]
    if missing:
        raise ValueError(f"{recipe_path}: the demo needs both stages; no {', '.join(missing)} after training")

    step(2, 3, "compare: stage-1 vs final (stage-2) checkpoint on the same test samples"
         + ("" if seeds == 1 else f", {seeds} runs per side"))
    sides = [",".join(str(f) for f in side) for side in finals]
    compared = compare_sides(sides[0], sides[1], labels=("stage 1", "stage 2 (final)"), runs_dir=out / "compare",
                             device=device, progress=compare_progress, log=log)
    text = comparison_text(compared.comparison.to_dict())
    log(text)
    write_text_atomic(out / "compare.txt", text + "\n")
    write_comparison_report(out / "compare.html", compared, log=log)
    if seeds > 1:
        _gap_change_over_runs(folders, out / "gap_change.csv", log)

    step(3, 3, "report: verdict, metric and gap tables, the gap across curriculum phases")
    first = folders[0]
    stage1_runs = sorted((first / "stage1" / "eval").glob("stage1-phase*"))
    if not stage1_runs:
        raise ValueError(f"{first}/stage1/eval: no phase-boundary evaluation (is [eval] enabled in {recipe_path}?)")
    # stage 1's last evaluation beside the training folder (whose gap.csv gives the phases plot and whose last
    # phase-boundary run is the final checkpoint's)
    report_runs([stage1_runs[-1], first], out / "report.html", labels=["stage 1", "stage 2 (final)"],
                title="sam3d-eval demo: stage 1 vs stage 2 on the built-in benchmark"
                      + ("" if seeds == 1 else " (training seed 0)"), log=log)
    files = ["gap_change.csv", "compare.txt", "compare.html", "report.html"]
    for f in folders:
        files += [str((f / name).relative_to(out)) for name in ("stage1/final.safetensors", "stage2/final.safetensors",
                                                                 "gap.csv", "stage_comparison.csv", "gap_change.csv")]
    return DemoResult(out, recipes if seeds > 1 else recipes[0], compared,
                      list(dict.fromkeys(f for f in files if (out / f).exists())))


def _gap_change_over_runs(folders: list[pathlib.Path], path: pathlib.Path, log: Callable[[str], None]) -> None:
    """The stage-1 gap and the share stage 2 closed, over every run (`evaluate.summary.gap_change_runs`)."""
    from ..atomic import atomic_path
    from ..evaluate.summary import gap_change_runs
    from ..io.results import GAP_METRICS, read_results

    last = [[sorted((f / f"stage{k}" / "eval").glob(f"stage{k}-phase*"))[-1] for f in folders] for k in (1, 2)]
    table = gap_change_runs([read_results(r) for r in last[0]], [read_results(r) for r in last[1]], GAP_METRICS)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    for r in table.to_dict("records"):
        log(f"gap change over {len(folders)} runs: {r['metric']} {r['figure']} {r['estimate_a']:.3f} -> "
            f"{r['estimate_b']:.3f}; closed by the real split alone {r['closed_by_real']:.0%} "
            f"[{r['closed_by_real_low']:.0%}, {r['closed_by_real_high']:.0%}]")


# The two prediction qualities of the quick demo: keyword arguments of `data.shapes.Degradation`.
QUICK_LEVELS = {
    "mild": dict(noise=0.003, stretch=0.03, color_shift=0.03),
    "severe": dict(noise=0.01, stretch=0.12, dent=0.08, drop_fraction=0.1, color_shift=0.15),
}


def write_quick_demo_data(out: pathlib.Path, seed: int) -> tuple[pathlib.Path, pathlib.Path]:
    """The data of ``sam3d-eval demo --quick``: GT and prediction meshes of every built-in shape at each
    `QUICK_LEVELS` degradation (seeded by `seed`), written to ``out/gt`` and ``out/pred``; returns both folders."""
    import torch

    from ..data.shapes import SHAPES, Degradation, degrade, make_shape, shape_colors
    from ..io.mesh_io import save_mesh

    gt_dir, pred_dir = out / "gt", out / "pred"
    gt_dir.mkdir(parents=True, exist_ok=True)
    pred_dir.mkdir(parents=True, exist_ok=True)
    for s, name in enumerate(sorted(SHAPES)):
        verts, faces = make_shape(name)
        colors = shape_colors(verts)
        for level, (tag, degradation) in enumerate(QUICK_LEVELS.items()):
            sample_id = f"{name}_{tag}"
            save_mesh(gt_dir / f"{sample_id}.ply", (torch.from_numpy(verts), torch.from_numpy(faces)),
                      colors=torch.from_numpy(colors))
            dv, df, dc = degrade(verts, faces, Degradation(**degradation), seed=seed * 1000 + 10 * s + level, colors=colors)
            save_mesh(pred_dir / f"{sample_id}.ply", (torch.from_numpy(dv), torch.from_numpy(df)),
                      colors=torch.from_numpy(dc))
    return gt_dir, pred_dir
