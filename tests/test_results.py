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
    from sam3d_eval.io.results import ResultsStoreWarning

    frame = read_results(tmp_path)
    assert len(frame) == 0 and "sample_id" in frame.columns and frame.attrs["skipped_parts"] == {}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_results(tmp_path / "nope")
    write_results_part(tmp_path, _rows(["a"]), metrics=["chamfer_l2"])
    (tmp_path / "results" / "part-bad.parquet").write_bytes(b"not parquet")
    with pytest.warns(ResultsStoreWarning, match="part-bad.parquet.*not a readable Parquet part"):
        frame = read_results(tmp_path)  # the readable part is still read
    assert list(frame["sample_id"]) == ["a"] and list(frame.attrs["skipped_parts"]) == ["part-bad.parquet"]
    (tmp_path / "run.json").write_text("[1, 2]")
    with pytest.raises(ResultsStoreError, match="expected a JSON object, got a list"):
        read_results(tmp_path)


def _coded(ids, codes, written_at):
    frame = _rows(ids, written_at=written_at)
    frame["code"] = pd.Series(codes, dtype=object)
    return frame


def test_a_part_of_another_schema_is_cast_or_skipped_never_locks_out(tmp_path):
    """A stratum stored as int64 in one part and as text in another (a resume with another manifest format):
    cast to the run's recorded type when nothing is lost, else that part is skipped, named and counted."""
    from sam3d_eval.io.results import ResultsStoreWarning

    write_run_json(tmp_path, {"run_id": "r", "strata_types": {"code": "string"}})
    write_results_part(tmp_path, _coded(["a"], ["001"], 1), metrics=["chamfer_l2"], strata=["code"])
    write_results_part(tmp_path, _coded(["b"], [2], 2), metrics=["chamfer_l2"], strata=["code"])  # int64
    frame = read_results(tmp_path)
    assert frame.set_index("sample_id")["code"].to_dict() == {"a": "001", "b": "2"}
    assert frame.attrs["skipped_parts"] == {}

    write_run_json(tmp_path, {"run_id": "r", "strata_types": {"code": "int64"}})
    with pytest.warns(ResultsStoreWarning, match=r"part-r0000-.*code.*cannot be read as int64"):
        frame = read_results(tmp_path)
    assert list(frame["sample_id"]) == ["b"] and frame["code"].tolist() == [2]  # "001" would lose its zeros
    assert len(frame.attrs["skipped_parts"]) == 1


def test_parts_of_two_schemas_without_recorded_types(tmp_path):
    """A run stored before the types were recorded: the first part written sets the type."""
    write_results_part(tmp_path, _coded(["a"], ["x1"], 1), strata=["code"])
    write_results_part(tmp_path, _coded(["b"], [7], 2), strata=["code"])  # int64 -> "7": nothing lost
    write_results_part(tmp_path, _coded(["c"], [None], 3), strata=["code"])  # all null: fits any type
    codes = read_results(tmp_path).set_index("sample_id")["code"]
    assert codes[["a", "b"]].tolist() == ["x1", "7"] and pd.isna(codes["c"])


def test_parts_are_stored_under_the_given_types(tmp_path):
    import pyarrow.parquet as pq

    part = write_results_part(tmp_path, _coded(["a", "b"], [1, None], 1), strata=["code"], types={"code": "string"})
    assert str(pq.read_schema(part).field("code").type) == "string"
    codes = read_results(tmp_path)["code"]
    assert codes[0] == "1" and pd.isna(codes[1])
    with pytest.raises(ResultsStoreError, match="'code' holds string values that cannot be stored as int64"):
        write_results_part(tmp_path, _coded(["c"], ["001"], 2), strata=["code"], types={"code": "int64"})


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
