"""The Parquet results store: atomic parts, one frame back, deduplication, run metadata."""

import json
import math

import pandas as pd
import pytest

from sam3d_eval.io import read_results
from sam3d_eval.io.results import (
    ResultsStoreError,
    metric_columns,
    read_run_json,
    run_metadata,
    strata_columns,
    write_results_part,
    write_run_json,
)


def _rows(ids, status="ok", value=1.0, written_at=0, rank=0):
    n = len(ids)
    return pd.DataFrame({
        "run_id": ["r"] * n, "sample_id": list(ids), "status": [status] * n,
        "error": [None if status == "ok" else "boom"] * n, "source": ["folder:x"] * n, "fingerprint": ["f1"] * n,
        "protocol": ["default"] * n, "pred_kind": ["mesh"] * n, "transform": [json.dumps({"s": 1})] * n,
        "notes": ["[]"] * n, "rank": [rank] * n, "written_at": [written_at] * n,
        "domain": ["real"] * n, "occlusion": [0.2] * n, "chamfer_l2": [value if status == "ok" else math.nan] * n,
    })


def test_parts_are_written_atomically_and_read_back_sorted(tmp_path):
    p1 = write_results_part(tmp_path, _rows(["c", "a"], written_at=1), metrics=["chamfer_l2"], strata=["domain", "occlusion"], rank=1)
    p2 = write_results_part(tmp_path, _rows(["b"], written_at=2), metrics=["chamfer_l2"], strata=["domain", "occlusion"])
    assert p1.parent == p2.parent == tmp_path / "results" and "r0001" in p1.name
    assert not [p for p in p1.parent.iterdir() if p.name.startswith(".")]  # no temporaries left
    (p1.parent / ".part-x.parquet.tmp").write_bytes(b"half a file")  # a killed writer's leftover is ignored
    frame = read_results(tmp_path)
    assert list(frame["sample_id"]) == ["a", "b", "c"]
    assert frame.attrs["metrics"] == ["chamfer_l2"] and metric_columns(frame) == ["chamfer_l2"]
    assert strata_columns(frame) == ["domain", "occlusion"]
    assert frame["chamfer_l2"].dtype == "float64" and frame.attrs["duplicates"] == 0


def test_latest_row_of_a_sample_wins(tmp_path):
    write_results_part(tmp_path, _rows(["a", "b"], status="failed", written_at=5))
    write_results_part(tmp_path, _rows(["a"], value=3.0, written_at=9))  # a resume retried "a"
    frame = read_results(tmp_path)
    assert list(frame["sample_id"]) == ["a", "b"] and frame.attrs["duplicates"] == 1
    assert frame.set_index("sample_id").loc["a", "status"] == "ok"
    assert frame.set_index("sample_id").loc["a", "chamfer_l2"] == 3.0
    assert len(read_results(tmp_path, dedup=False)) == 3


def test_empty_missing_and_corrupt_stores(tmp_path):
    frame = read_results(tmp_path)
    assert len(frame) == 0 and "sample_id" in frame.columns
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_results(tmp_path / "nope")
    (tmp_path / "results").mkdir(exist_ok=True)
    (tmp_path / "results" / "part-bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(ResultsStoreError, match="part-bad.parquet"):
        read_results(tmp_path)


def test_write_needs_the_key_columns(tmp_path):
    with pytest.raises(ValueError, match="fingerprint"):
        write_results_part(tmp_path, pd.DataFrame({"sample_id": ["a"], "status": ["ok"], "source": ["s"]}))


def test_run_metadata_and_run_json(tmp_path):
    meta = run_metadata(["sam3d-eval", "evaluate", "x"], protocol={"name": "default"})
    assert meta["command"] == ["sam3d-eval", "evaluate", "x"] and meta["protocol"] == {"name": "default"}
    assert meta["version"] and meta["torch"] and meta["time"].endswith("+00:00")
    assert meta["git_commit"] is None or len(meta["git_commit"]) == 40
    write_run_json(tmp_path, {"run_id": "r", "meta": meta})
    assert read_run_json(tmp_path)["meta"]["command"][1] == "evaluate"
    assert read_results(tmp_path).attrs["run"]["run_id"] == "r"
    assert read_run_json(tmp_path / "elsewhere") is None
