"""Recompute a checked-in demo example's headline from its per-sample results alone.

    python reports/recompute_demo.py reports/demo-example     # training seeds 0-2 on benchmark seed 0
    python reports/recompute_demo.py reports/demo-heldout     # the same recipe on benchmark seed 1

`FOLDER/results/seed<k>/stage<s>.parquet` hold the final stage-1 and stage-2 checkpoints' per-sample results of
training seed k on the test split, and `stage<s>-unworn.parquet` the real samples scored against their unworn
ground truth (as `sam3d_eval.io.read_results` returned them). This prints, and returns as frames:

- the gap change from stage 1 to stage 2 over every seed (`evaluate.summary.gap_change_runs`: two-level
  intervals over seeds and twin pairs), which `FOLDER/gap_change.csv` holds;
- each stage's gap over the seeds with what it is made of (`evaluate.summary.domain_gap_runs`: raw,
  covariate-matched, covariate part, wear-free, wear part).
"""

from __future__ import annotations

import pathlib
import sys

METRICS = ["chamfer_l2", "fscore@0.05"]
PARTS = ["chamfer_acc_visible", "chamfer_comp_visible", "chamfer_comp_self_hidden", "chamfer_comp_occluder_hidden",
         "psnr", "ssim", "silhouette_iou", "psnr_input", "ssim_input", "silhouette_iou_input"]


def load(folder: pathlib.Path):
    """{stage: [frame per seed]}, {stage: [unworn frame per seed]} from FOLDER/results/seed*/."""
    import pandas as pd

    seeds = sorted((folder / "results").glob("seed*"))
    if not seeds:
        raise FileNotFoundError(f"{folder}/results: no seed<k>/ folders")
    runs = {k: [pd.read_parquet(s / f"stage{k}.parquet") for s in seeds] for k in (1, 2)}
    unworn = {k: [pd.read_parquet(s / f"stage{k}-unworn.parquet") for s in seeds] for k in (1, 2)}
    return runs, unworn


def recompute(folder: str | pathlib.Path, n_resamples: int = 2000, parts=PARTS):
    """(gap change over the seeds, {stage: gap over the seeds with its decomposition}); `parts`: the visibility
    and appearance metrics whose gaps are added to the headline pair's."""
    from sam3d_eval.evaluate.summary import domain_gap_runs, gap_change_runs

    runs, unworn = load(pathlib.Path(folder))
    change = gap_change_runs(runs[1], runs[2], METRICS, n_resamples=n_resamples)
    gaps = {k: domain_gap_runs(runs[k], METRICS + [m for m in parts if m in runs[k][0].columns],
                               unworn=unworn[k], n_resamples=n_resamples) for k in (1, 2)}
    return change, gaps


def main(argv: list[str]) -> int:
    import pandas as pd

    if len(argv) != 1:
        print(__doc__)
        return 2
    change, gaps = recompute(argv[0])
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print("gap change, stage 1 -> stage 2, over the training seeds:")
        print(change[["metric", "figure", "estimate_a", "estimate_a_low", "estimate_a_high", "estimate_b",
                      "closed", "closed_low", "closed_high", "closed_by_real", "closed_by_real_low",
                      "closed_by_real_high", "n_runs_a"]].round(3).to_string(index=False))
        for k, g in gaps.items():
            print(f"\nstage {k} gap over the seeds, and what it is made of:")
            print(g[["metric", "figure", "estimate", "low", "high", "run_min", "run_max", "matched", "covariate",
                     "covariate_low", "covariate_high", "wear_free", "wear", "wear_low", "wear_high"]]
                  .round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
