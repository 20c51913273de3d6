"""`sam3d_eval.jsonable.to_jsonable`: the one JSON-ready copy every layer writes with."""

import json
import math

import numpy as np
import pandas as pd

from sam3d_eval.jsonable import to_jsonable


def test_numpy_pandas_and_non_finite_values_become_plain_json():
    x = {1: (np.float32(0.5), np.int64(3), np.bool_(True), np.str_("a")), "nan": float("nan"),
         "inf": np.float64(np.inf), "arr": np.array([[1.0, np.nan], [2.0, 3.0]]), "zero_d": np.array(2.5),
         "frame": pd.DataFrame({"a": [1, 2], "b": [0.5, math.nan]})}
    out = to_jsonable(x)
    text = json.dumps(out, allow_nan=False)  # would raise on NaN, numpy scalars or arrays
    assert json.loads(text) == {"1": [0.5, 3, True, "a"], "nan": None, "inf": None, "arr": [[1.0, None], [2.0, 3.0]],
                                "zero_d": 2.5, "frame": [{"a": 1, "b": 0.5}, {"a": 2, "b": None}]}
    assert type(out["1"][1]) is int and type(out["1"][0]) is float and type(out["1"][3]) is str


def test_zero_dimensional_tensors_become_numbers():
    import torch

    assert to_jsonable({"loss": torch.tensor(0.25), "nan": torch.tensor(float("nan"))}) == {"loss": 0.25, "nan": None}
