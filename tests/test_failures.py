"""Failed samples grouped by reason: paths and sample ids removed from the error text, counts, first rows."""

import math

import pandas as pd
import pytest

from sam3d_eval.evaluate.failures import failure_reason, failure_summary


@pytest.mark.parametrize("error, sid, reason", [
    ("prediction: preds/s7.ply: could not parse the file as PLY (ValueError: Not a ply file!)", "s7",
     "prediction: <path>: could not parse the file as PLY (ValueError: Not a ply file!)"),
    ("prediction: s7.npz: missing key 'points'", "s7", "prediction: <path>: missing key 'points'"),
    ("ground truth: C:\\data\\gt\\a.obj: empty mesh", "a", "ground truth: <path>: empty mesh"),
    ("prediction: /data/my preds/x.glb: no faces.", "x", "prediction: <path>: no faces."),
    ("no prediction for this sample", "s7", "no prediction for this sample"),
    ("predictor 'ref' failed on sample '1': got 1 mesh (e.g. 1.5e-3)", "1",
     "predictor 'ref' failed on sample '<sample>': got 1 mesh (e.g. 1.5e-3)"),
    ("mask of chair_0042 is 64x48 but the image is 32x32", "chair_0042",
     "mask of <sample> is 64x48 but the image is 32x32"),
    (None, "a", "(no error message)"),
    (math.nan, "a", "(no error message)"),
])
def test_failure_reason(error, sid, reason):
    assert failure_reason(error, sid) == reason


def test_failure_summary_counts_reasons_and_keeps_the_first_rows():
    ids = [f"s{i:02d}" for i in range(14)]
    errors = ([None] + [f"prediction: preds/{s}.ply: could not parse the file as PLY" for s in ids[1:9]]
              + ["no prediction for this sample"] * 3 + [f"ground truth: gt/{s}.obj: empty mesh" for s in ids[12:]])
    status = ["ok"] + ["failed"] * 13
    frame = pd.DataFrame({"sample_id": ids, "status": status, "error": errors})
    got = failure_summary(frame)
    assert got["count"] == 13
    assert got["by_reason"] == {"prediction: <path>: could not parse the file as PLY": 8,
                                "no prediction for this sample": 3, "ground truth: <path>: empty mesh": 2}
    assert list(got["by_reason"]) == ["prediction: <path>: could not parse the file as PLY",
                                      "no prediction for this sample", "ground truth: <path>: empty mesh"]
    assert [r["sample_id"] for r in got["first"]] == ids[1:11]  # the first 10 failures, ok rows skipped
    assert got["first"][0]["error"] == "prediction: preds/s01.ply: could not parse the file as PLY"
    assert [r["sample_id"] for r in failure_summary(frame, first=2)["first"]] == ["s01", "s02"]
    assert failure_summary(frame[frame["status"] == "ok"]) == {"count": 0, "by_reason": {}, "first": []}
    assert failure_summary(frame.iloc[:0]) == {"count": 0, "by_reason": {}, "first": []}
