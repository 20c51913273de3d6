"""Phase-boundary evaluation: score a checkpoint on the synthetic and real test splits, append the gap.

`PhaseEvaluator` is the loop's `on_phase_end` hook. It runs the evaluation core (`evaluate.runner.run_evaluation`
with the model as a `PredictorSource`) on the test rows of the manifest, under `protocol` (a preset,
optionally with fewer surface samples so a CPU run stays fast: the protocol's name and overrides are
recorded), stores the per-sample rows under `<out_dir>/eval/<stage>-<phase>/`, and appends the domain-gap
figures of `evaluate.summary.domain_gap` (bootstrap intervals over pairs on a paired benchmark, else
two-sample) with the stage, phase, step and checkpoint to `gap_table` (one CSV shared by the stages of a run).
`compare_stage_runs` and `stage_gap_change` compare two stored evaluations of the same test samples.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from ..atomic import atomic_path
from ..evaluate.protocols import get_protocol
from ..evaluate.runner import run_evaluation
from ..evaluate.sources import PredictorSource
from ..evaluate.summary import domain_gap, gap_change
from ..io.results import GAP_METRICS

__all__ = ["PHASE_METRICS", "PhaseEvaluator", "compare_stage_runs", "stage_gap_change"]

# The gap table of every phase boundary: the headline pair (`io.results.GAP_METRICS`) and a second of each kind,
# distances first.
PHASE_METRICS = ("chamfer_l2", "chamfer_l1", "fscore@0.05", "fscore@0.02")


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
        log: Callable[[str], None] | None = None,
    ):
        from ..data.manifest import Manifest

        test = Manifest.read(manifest).split(split)
        frame = test.frame
        if not len(frame) or "domain" not in frame.columns or set(frame["domain"]) != {"synthetic", "real"}:
            raise ValueError(f"{manifest}: the {split!r} split needs samples of both domains to measure the gap")
        self.manifest = test
        self.gap_table = Path(gap_table)
        self.stage = stage
        proto = get_protocol(protocol)
        self.protocol = proto if num_samples is None else proto.with_overrides(num_samples=num_samples)
        self.metrics, self.batch_size, self.device = list(metrics), batch_size, device
        self.n_resamples = n_resamples
        self.log = log or (lambda s: None)
        self.rows: list[dict[str, Any]] = []
        self.run_dirs: list[Path] = []

    def __call__(self, phase, checkpoint: Path, model) -> None:
        run_dir = checkpoint.parent / "eval" / f"stage{self.stage}-{checkpoint.stem}"
        model.name = f"reference/stage{self.stage}/{phase.name}"
        result = run_evaluation(PredictorSource(model), self.manifest, self.protocol, run_dir, batch_size=self.batch_size,
                                device=self.device, resume=run_dir.exists(), torch_threads=None, command=["train"])
        self.run_dirs.append(run_dir)
        gap = domain_gap(result.frame, [m for m in self.metrics if m in result.frame.columns],
                         n_resamples=self.n_resamples, seed=0)
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
