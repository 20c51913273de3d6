"""A run folder read as one typed value (`StoredRun`), and output folders that a failed start leaves absent."""

import pandas as pd
import pytest
import torch

from sam3d_eval.cli.main import main
from sam3d_eval.data.shapes import make_shape
from sam3d_eval.evaluate import get_protocol
from sam3d_eval.evaluate.runner import run_evaluation
from sam3d_eval.evaluate.sides import CompareInputError, StoredRun
from sam3d_eval.evaluate.sources import FolderSource
from sam3d_eval.io.mesh_io import save_mesh
from sam3d_eval.io.results import ensure_writable_dir


def _write(path, shift=0.0):
    v, f = make_shape("sphere")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_mesh(path, (torch.from_numpy(v + shift), torch.from_numpy(f)))


def test_stored_run_reads_rows_record_and_protocol_once(tmp_path):
    for sid, shift in (("a", 0.0), ("b", 0.05)):
        _write(tmp_path / "gt" / f"{sid}.ply")
        _write(tmp_path / "pred" / f"{sid}.ply", shift)
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"sample_id": ["a", "b"], "gt_mesh": ["gt/a.ply", "gt/b.ply"],
                  "domain": ["synthetic", "real"]}).to_csv(manifest, index=False)
    from sam3d_eval.data.manifest import Manifest

    protocol = get_protocol("default").with_overrides(num_samples=500)
    run_evaluation(FolderSource(tmp_path / "pred"), Manifest.read(manifest), protocol, tmp_path / "run")
    run = StoredRun.read(tmp_path / "run")
    assert run.protocol == protocol and run.protocol.fingerprint() == protocol.fingerprint()
    assert sorted(run.frame["sample_id"]) == ["a", "b"] and (run.frame["status"] == "ok").all()
    assert run.manifest_path == manifest and run.identity == FolderSource(tmp_path / "pred").identity
    assert run.record["fingerprint"] == protocol.fingerprint()
    assert "protocol" not in run.record["metadata"]  # run.json holds the protocol once
    assert len(run.rows_under_protocol()) == 2
    assert run.frame["chamfer_l2"].iloc[1] > run.frame["chamfer_l2"].iloc[0]  # the shifted one is worse
    with pytest.raises(CompareInputError, match="records no protocol"):
        StoredRun.read(tmp_path / "pred")


def test_output_checks_create_no_folder(tmp_path):
    target = tmp_path / "new" / "deeper"
    assert ensure_writable_dir(target) == target and not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        ensure_writable_dir(tmp_path / "file")


def test_a_failed_start_leaves_no_output_folder(tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    assert main(["eval-meshes", str(tmp_path / "pred"), str(tmp_path / "gt"), "-o", str(tmp_path / "out" / "r.csv")]) == 2
    (tmp_path / "m.csv").write_text("sample_id,gt_mesh\na,../outside.ply\n")
    assert main(["evaluate", str(tmp_path / "pred"), "--data", str(tmp_path / "m.csv"),
                 "--out", str(tmp_path / "runs" / "a")]) == 2
    err = capsys.readouterr().err
    assert "no meshes" in err and "leaves the manifest's folder" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()
