"""Phase-boundary evaluation: score a checkpoint on the synthetic and real test splits, append the gap.

`PhaseEvaluator` is the loop's `on_phase_end` hook. It runs the evaluation core (`evaluate.runner.run_evaluation`
with the model as a `PredictorSource`) on the test rows of the manifest, under `protocol` (a preset,
optionally with fewer surface samples so a CPU run stays fast: the protocol's name and overrides are
recorded), stores the per-sample rows under `<out_dir>/eval/<stage>-<phase>/`, and appends the domain-gap
figures of `evaluate.summary.domain_gap` (bootstrap intervals over pairs on a paired benchmark, else
two-sample; raw, covariate-matched and wear-free) with the stage, phase, step and checkpoint to `gap_table`
(one CSV shared by the stages of a run).

Optional parts, each its own cost: `appearance` renders both meshes (novel views, and the input view where the
manifest has a camera) for PSNR / SSIM / silhouette IoU (LPIPS only where its backbone weights are present);
`visibility` splits the geometry by what the input camera sees. When the manifest has ``gt_mesh_unworn`` (the
built-in benchmark's real samples before the shape-changing wear shift), the real rows are also scored against
it, into `<out_dir>/eval_unworn/<stage>-<phase>/`, and the gap table gains the wear-free figures.
`compare_stage_runs` and `stage_gap_change` compare two stored evaluations of the same test samples.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..atomic import atomic_path
from ..evaluate.protocols import get_protocol
from ..evaluate.runner import run_evaluation
from ..evaluate.sources import PredictorSource
from ..evaluate.summary import domain_gap, gap_change
from ..io.results import GAP_METRICS

__all__ = ["PHASE_METRICS", "PhaseEvaluator", "compare_stage_runs", "phase_extra_metrics", "stage_gap_change"]

# The gap table of every phase boundary: the headline pair (`io.results.GAP_METRICS`) and a second of each kind,
# distances first.
PHASE_METRICS = ("chamfer_l2", "chamfer_l1", "fscore@0.05", "fscore@0.02")
# Appearance and visibility columns join the gap table when the evaluation computed them.
_EXTRA_PREFIXES = ("psnr", "ssim", "silhouette_iou", "lpips", "chamfer_acc_", "chamfer_comp_")


def phase_extra_metrics(columns: Sequence[str]) -> list[str]:
    """The appearance and visibility metric columns among `columns` (in their order) that the phase gap table
    adds to `PHASE_METRICS`."""
    return [c for c in map(str, columns)
            if c.startswith(_EXTRA_PREFIXES) or (c.startswith("recall@") and c.endswith(("_visible", "_hidden")))]


def _unworn_manifest(test):
    """The real rows of `test` with ``gt_mesh`` replaced by ``gt_mesh_unworn`` (None without that column)."""
    from ..data.manifest import Manifest

    frame = test.frame
    if "gt_mesh_unworn" not in frame.columns:
        return None
    real = frame[(frame["domain"] == "real") & frame["gt_mesh_unworn"].notna()].copy()
    if not len(real):
        return None
    real["gt_mesh"] = real["gt_mesh_unworn"]
    return Manifest(real.reset_index(drop=True), test.root, path=test.path)


def _appearance_scorer(log: Callable[[str], None]):
    """The appearance scorer of the phase-boundary evaluation: LPIPS only with its backbone weights present."""
    from ..evaluate.appearance import AppearanceScorer, load_lpips_or_none

    lpips, reason = load_lpips_or_none("alex")
    if reason:
        log(f"note: {reason}; PSNR, SSIM and silhouette IoU are scored, LPIPS is not")
    return AppearanceScorer(lpips=lpips, lpips_reason=reason)


class PhaseEvaluator:
    """Callable `(phase, checkpoint_path, model) -> None` for `train(on_phase_end=...)`."""

    def __init__(
        self,
        manifest: str | os.PathLike,
        gap_table: str | os.PathLike,
        *,
        stage: int,
        split: str = "test",
        protocol: str = "default",
        num_samples: int | None = 20_000,
        metrics: Sequence[str] = PHASE_METRICS,
        batch_size: int = 16,
        device: str = "cpu",
        n_resamples: int = 2000,
        appearance: bool = False,
        visibility: bool = False,
        overrides: Mapping[str, Any] | None = None,
        wear_free: bool = True,
        log: Callable[[str], None] | None = None,
    ):
        from ..data.manifest import Manifest

        test = Manifest.read(manifest).split(split)
        frame = test.frame
        if not len(frame) or "domain" not in frame.columns or set(frame["domain"]) != {"synthetic", "real"}:
            raise ValueError(f"{manifest}: the {split!r} split needs samples of both domains to measure the gap")
        self.manifest = test
        self.unworn = _unworn_manifest(test) if wear_free else None
        self.gap_table = Path(gap_table)
        self.stage = stage
        proto = get_protocol(protocol)
        changes = dict(overrides or {})
        if num_samples is not None:
            changes["num_samples"] = num_samples
        if visibility and "visibility" not in proto.metrics:
            changes["metrics"] = (*proto.metrics, "visibility")
        self.protocol = proto.with_overrides(**changes) if changes else proto
        self.metrics, self.batch_size, self.device = list(metrics), batch_size, device
        self.n_resamples = n_resamples
        self.log = log or (lambda s: None)
        self.appearance = _appearance_scorer(self.log) if appearance else None
        self.rows: list[dict[str, Any]] = []
        self.run_dirs: list[Path] = []

    def __call__(self, phase, checkpoint: Path, model) -> None:
        name = f"stage{self.stage}-{checkpoint.stem}"
        run_dir = checkpoint.parent / "eval" / name
        model.name = f"reference/stage{self.stage}/{phase.name}"
        source = PredictorSource(model)
        result = run_evaluation(source, self.manifest, self.protocol, run_dir, batch_size=self.batch_size,
                                device=self.device, resume=run_dir.exists(), appearance=self.appearance,
                                torch_threads=None, command=["train"])
        self.run_dirs.append(run_dir)
        unworn = None
        if self.unworn is not None:
            # a sibling folder, not under eval/: the phase runs there are the checkpoint's own scores
            worn_free_dir = checkpoint.parent / "eval_unworn" / name
            unworn = run_evaluation(source, self.unworn, self.protocol, worn_free_dir, batch_size=self.batch_size,
                                    device=self.device, resume=worn_free_dir.exists(), appearance=self.appearance,
                                    torch_threads=None, command=["train", "unworn"]).frame
        metrics = [m for m in self.metrics if m in result.frame.columns]
        # a column the evaluation could not fill (LPIPS without its weights: named in the log) stays out
        metrics += [m for m in phase_extra_metrics(result.frame.columns)
                    if m not in metrics and result.frame[m].notna().any()]
        gap = domain_gap(result.frame, metrics, n_resamples=self.n_resamples, seed=0, unworn=unworn)
        rows = []
        for r in gap.to_dict("records"):
            rows.append({"stage": self.stage, "phase": phase.name, "phase_index": phase.index + 1, "epoch": phase.end,
                         "checkpoint": str(checkpoint), "protocol": self.protocol.label(), **r})
        self.rows.extend(rows)
        self._append(rows)
        by = {r["metric"]: r for r in rows}
        parts = []
        for m in GAP_METRICS:
            if m in by:
                r = by[m]
                parts.append(f"{m} syn {r['mean_synthetic']:.4f} real {r['mean_real']:.4f} {r['figure']} "
                             f"{r['estimate']:.3f} [{r['low']:.3f}, {r['high']:.3f}]")
        design = gap.attrs.get("design", "two-sample")
        if design == "paired" and "chamfer_l2" in by:
            design += f", {by['chamfer_l2']['n_pairs']} pairs"
        self.log(f"  eval stage {self.stage} {phase.name}: " + "; ".join(parts) + f" ({design}; failed {result.failed})")

    def _append(self, rows: list[dict[str, Any]]) -> None:
        import pandas as pd

        new = pd.DataFrame(rows)
        if self.gap_table.exists():
            old = pd.read_csv(self.gap_table)
            # an evaluation run again after an interruption replaces its rows instead of adding them twice
            key = ["stage", "phase", "checkpoint"]
            if set(key) <= set(old.columns):
                again = old[key].astype(str).apply(tuple, axis=1).isin(set(new[key].astype(str).apply(tuple, axis=1)))
                old = old[~again.to_numpy()]
            new = pd.concat([old, new], ignore_index=True)
        with atomic_path(self.gap_table) as tmp:
            new.to_csv(tmp, index=False)


def compare_stage_runs(run_a: Path, run_b: Path, out_csv: Path, metrics: Sequence[str] = GAP_METRICS,
                       labels: tuple[str, str] = ("stage1", "stage2"), n_resamples: int = 2000):
    """The paired comparison (`evaluate.compare.compare_frames`) of two stored evaluation runs of the same
    test samples (e.g. the final checkpoints of stage 1 and stage 2): per domain, the mean delta B - A with
    a paired bootstrap interval and Wilcoxon p. Writes the table to `out_csv` and returns its domain rows."""
    from ..evaluate.compare import compare_frames
    from ..io.results import read_results

    cmp = compare_frames(read_results(run_a), read_results(run_b), labels=labels, metrics=list(metrics),
                         n_resamples=n_resamples)
    table = cmp.table
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table[table["stratum"].isin(["all", "domain"])]


def stage_gap_change(run_a: Path, run_b: Path, out_csv: Path, metrics: Sequence[str] = GAP_METRICS,
                     n_resamples: int = 2000):
    """How the synthetic-vs-real gap moved between two stored evaluation runs of the same test samples
    (`evaluate.summary.gap_change`: the change of each gap figure and the share of A's gap closed, with
    bootstrap intervals over pairs on a paired benchmark). Writes the table to `out_csv` and returns it."""
    from ..io.results import read_results

    table = gap_change(read_results(run_a), read_results(run_b), list(metrics), n_resamples=n_resamples)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table
