"""JSON-ready copies of nested results, shared by every layer that writes JSON (imports no layer).

numpy scalars become Python numbers, NaN and inf become null (JSON has neither), tuples and numpy arrays
become lists, dict keys become strings and pandas frames become lists of records.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["to_jsonable"]


def to_jsonable(x: Any) -> Any:
    """A copy of `x` that `json.dumps` writes without `default=` and without NaN."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, pd.DataFrame):
        return to_jsonable(x.to_dict("records"))
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if getattr(x, "ndim", None) == 0 and hasattr(x, "item"):  # 0-d tensors of other array libraries (torch)
        return to_jsonable(x.item())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.str_):
        return str(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    return x
