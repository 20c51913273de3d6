"""The data-mixing curriculum (training/README.md) and the learning-rate schedule.

The stage-2 curriculum over 100 epochs: epochs 1-20 80% synthetic / 20% real, 21-50 50/50, 51-90 20/80,
the final 10 epochs 100% real. `curriculum_phases(epochs)` scales those boundaries to the configured epoch
count (rounded, every phase kept at least one epoch long). Stage 1 (synthetic pre-training) is one phase
of 100% synthetic data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

__all__ = ["STAGE1_SCHEDULE", "STAGE2_SCHEDULE", "Phase", "curriculum_phases", "lr_at", "phase_of"]

# (phase name, last epoch out of 100, synthetic fraction)
STAGE2_SCHEDULE: tuple[tuple[str, float, float], ...] = (
    ("mix80-20", 20, 0.8),
    ("mix50-50", 50, 0.5),
    ("mix20-80", 90, 0.2),
    ("real100", 100, 0.0),
)
STAGE1_SCHEDULE: tuple[tuple[str, float, float], ...] = (("synthetic", 100, 1.0),)


@dataclass(frozen=True)
class Phase:
    """Epochs `[start, end)` (0-based) drawing `synthetic_fraction` of each epoch's samples from the
    synthetic domain, the rest from the real one."""

    index: int
    name: str
    start: int
    end: int
    synthetic_fraction: float

    @property
    def epochs(self) -> int:
        return self.end - self.start


def curriculum_phases(epochs: int, schedule: Sequence[tuple[str, float, float]] = STAGE2_SCHEDULE) -> list[Phase]:
    """The schedule's phases scaled from 100 epochs to `epochs` (boundaries rounded half up; each phase at
    least one epoch). Raises ValueError when `epochs` is smaller than the number of phases."""
    if not schedule:
        raise ValueError("the curriculum schedule is empty")
    n = len(schedule)
    if epochs < n:
        raise ValueError(f"a curriculum of {n} phases needs at least {n} epochs, got {epochs}")
    prev_end, prev_pct = 0, 0.0
    phases = []
    for i, (name, end_pct, frac) in enumerate(schedule):
        if not 0.0 <= float(frac) <= 1.0:
            raise ValueError(f"phase {name!r}: synthetic fraction must lie in [0, 1], got {frac}")
        if not prev_pct < float(end_pct) <= 100.0:
            raise ValueError(f"phase {name!r}: ends must increase within (0, 100], got {end_pct}")
        end = math.floor(float(end_pct) * epochs / 100.0 + 0.5)
        end = min(max(end, prev_end + 1), epochs - (n - 1 - i))
        if i == n - 1:
            end = epochs
        phases.append(Phase(i, str(name), prev_end, end, float(frac)))
        prev_end, prev_pct = end, float(end_pct)
    return phases


def phase_of(phases: Sequence[Phase], epoch: int) -> Phase:
    """The phase holding 0-based `epoch`."""
    for p in phases:
        if p.start <= epoch < p.end:
            return p
    raise ValueError(f"epoch {epoch} lies outside the curriculum's {phases[-1].end} epochs")


def lr_at(step: int, total_steps: int, lr: float, warmup_steps: int, min_lr_ratio: float = 0.1) -> float:
    """Linear warm-up from 0 over `warmup_steps`, then cosine decay to `min_lr_ratio * lr` at `total_steps`
    (nanoGPT's schedule). `step` is 0-based; the value is for the update made at that step."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return lr * min_lr_ratio
    span = max(total_steps - warmup_steps, 1)
    ratio = (step - warmup_steps) / span
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return lr * (min_lr_ratio + coeff * (1.0 - min_lr_ratio))
