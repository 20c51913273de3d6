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
    """`values` as a 1-D float64 array of at least `min_size` finite entries, or a StatsInputError naming `name`.

    Args:
        values: anything `np.asarray(values, dtype=np.float64)` accepts (list, array, Series) that is 1-D.
        name: the argument's name, used in every error message.
        min_size: fewest entries accepted (counted after the NaN check, so with `allow_nan=True` non-finite entries
            count towards it). Default 1.
        allow_nan: when True, NaN and +-inf entries are kept as they are instead of raising. Default False.

    Returns:
        `(N,)` float64 array, a fresh array or `values` itself when it already is a 1-D float64 array.

    Raises:
        StatsInputError: `values` is not numeric, is not 1-D, is empty, holds a non-finite entry (unless
            `allow_nan`), or has fewer than `min_size` entries.
    """
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
    """A numpy Generator: `seed` itself when it is one, else `np.random.default_rng(seed)`.

    Args:
        seed: an integer seed (Python or numpy int; bool is refused) or an existing `np.random.Generator`, which is
            returned as is (so its state advances as the caller draws from it).

    Returns:
        The `np.random.Generator` to draw from.

    Raises:
        StatsInputError: `seed` is neither an integer nor a Generator.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise StatsInputError(f"seed must be an integer or a numpy Generator, got {type(seed).__name__}")
    return np.random.default_rng(int(seed))


def check_confidence(confidence: float) -> float:
    """`confidence` as a float after checking it is a usable interval level.

    Args:
        confidence: two-sided confidence level, e.g. 0.95 for a 95% interval.

    Returns:
        `float(confidence)`.

    Raises:
        StatsInputError: `confidence` is not strictly between 0 and 1.
    """
    if not (0.0 < float(confidence) < 1.0):
        raise StatsInputError(f"confidence must lie in (0, 1), got {confidence}")
    return float(confidence)


def check_frame(frame: Any, columns: Sequence[str], what: str) -> None:
    """StatsInputError naming `what` unless `frame` is a non-empty DataFrame holding every one of `columns`.

    Args:
        frame: the object to check; must be a `pd.DataFrame`.
        columns: column names that must all be present (extra columns are fine).
        what: how the frame is named in the error message (e.g. "judgements").

    Returns:
        None; the function only checks.

    Raises:
        StatsInputError: `frame` is not a DataFrame, lacks one of `columns`, or has no rows.
    """
    if not isinstance(frame, pd.DataFrame):
        raise StatsInputError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise StatsInputError(f"{what} lacks column(s) {missing} (needs {', '.join(columns)})")
    if len(frame) == 0:
        raise StatsInputError(f"{what} is empty")


def check_units(count: int, name: str, unit: str = "values") -> None:
    """StatsInputError unless `count` resampling units (values, pairs, clusters...) can give an interval: a
    bootstrap of fewer than 2 units redraws the same data every time and returns a zero-width interval.

    Args:
        count: number of resampling units available.
        name: the caller's or argument's name, used as the message prefix.
        unit: what one unit is called in the message ("values", "pairs", "clusters"...). Default "values".

    Returns:
        None; the function only checks.

    Raises:
        StatsInputError: `count` is below 2.
    """
    if count < 2:
        raise StatsInputError(f"{name}: at least 2 {unit} are needed for an interval, got {count}")
