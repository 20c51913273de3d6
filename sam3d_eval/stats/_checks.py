"""Input checks shared by the stats modules: one home for "is this a usable 1-D sample" and the error type.

Every user error raises `StatsInputError` (a ValueError) whose message names the argument and the problem.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = ["StatsInputError", "as_sample", "as_generator", "check_confidence", "check_frame", "check_units"]


class StatsInputError(ValueError):
    """Unusable input to a `sam3d_eval.stats` function (empty, NaN, mismatched lengths, unknown labels...)."""


def as_sample(values: Any, name: str, *, min_size: int = 1, allow_nan: bool = False) -> np.ndarray:
    """`values` as a 1-D float64 array of at least `min_size` finite entries, or a StatsInputError naming `name`."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsInputError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != 1:
        raise StatsInputError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise StatsInputError(f"{name} is empty")
    if not allow_nan and not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr))
        raise StatsInputError(
            f"{name} has {bad.size} non-finite value(s) (first at index {int(bad[0])}); drop failed rows first"
        )
    if arr.size < min_size:
        raise StatsInputError(f"{name} needs at least {min_size} values, got {arr.size}")
    return arr


def as_generator(seed: int | np.random.Generator) -> np.random.Generator:
    """A numpy Generator: `seed` itself when it is one, else `np.random.default_rng(seed)`."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise StatsInputError(f"seed must be an integer or a numpy Generator, got {type(seed).__name__}")
    return np.random.default_rng(int(seed))


def check_confidence(confidence: float) -> float:
    if not (0.0 < float(confidence) < 1.0):
        raise StatsInputError(f"confidence must lie in (0, 1), got {confidence}")
    return float(confidence)


def check_frame(frame: Any, columns: Sequence[str], what: str) -> None:
    """StatsInputError naming `what` unless `frame` is a non-empty DataFrame holding every one of `columns`."""
    if not isinstance(frame, pd.DataFrame):
        raise StatsInputError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise StatsInputError(f"{what} lacks column(s) {missing} (needs {', '.join(columns)})")
    if len(frame) == 0:
        raise StatsInputError(f"{what} is empty")


def check_units(count: int, name: str, unit: str = "values") -> None:
    """StatsInputError unless `count` resampling units (values, pairs, clusters...) can give an interval: a
    bootstrap of fewer than 2 units redraws the same data every time and returns a zero-width interval."""
    if count < 2:
        raise StatsInputError(f"{name}: at least 2 {unit} are needed for an interval, got {count}")
