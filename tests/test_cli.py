"""End-to-end CLI: help, version, the demo, folder evaluation with failures, and user-error handling."""

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch

from sam3d_eval import __version__
from sam3d_eval.cli.main import main
from sam3d_eval.data.shapes import make_shape
from sam3d_eval.io.mesh_io import save_mesh


def _write(path, name="sphere", shift=0.0):
    v, f = make_shape(name)
    save_mesh(path, (torch.from_numpy(v + shift), torch.from_numpy(f)))


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "eval-meshes" in out and "demo" in out and "Chamfer" in out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_console_script_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "sam3d_eval", "eval-meshes", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "--samples" in proc.stdout and "--taus" in proc.stdout


def test_missing_input_is_a_one_line_error(tmp_path, capsys):
    code = main(["eval-meshes", str(tmp_path / "nope.ply"), str(tmp_path / "missing.ply")])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing.ply" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_debug_shows_traceback(tmp_path, capsys):
    code = main(["--debug", "eval-meshes", str(tmp_path / "a.ply"), str(tmp_path / "b.ply")])
    assert code == 2
    assert "Traceback" in capsys.readouterr().err


def test_bad_option_values(tmp_path, capsys):
    _write(tmp_path / "gt.ply")
    assert main(["eval-meshes", str(tmp_path / "gt.ply"), str(tmp_path / "gt.ply"), "--samples", "0"]) == 2
    assert "--samples" in capsys.readouterr().err
    assert main(["eval-meshes", str(tmp_path / "gt.ply"), str(tmp_path / "gt.ply"), "--taus", "-1"]) == 2


def test_identical_meshes_score_perfectly(tmp_path, capsys):
    _write(tmp_path / "gt.ply")
    assert main(["eval-meshes", str(tmp_path / "gt.ply"), str(tmp_path / "gt.ply"), "--samples", "20000"]) == 0
    out = capsys.readouterr().out
    assert "gt" in out and "mean of 1" in out


def test_folder_evaluation_records_failures(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for sid in ("a", "b", "c"):
        _write(gt / f"{sid}.obj")
    _write(pred / "a.ply", shift=0.01)
    (pred / "b.ply").write_bytes(b"this is not a ply file")
    _write(pred / "orphan.stl")
    out_csv = tmp_path / "res.csv"
    code = main(["eval-meshes", str(pred), str(gt), "--samples", "5000", "-o", str(out_csv)])
    captured = capsys.readouterr()
    assert code == 0
    assert "orphan" in captured.err
    rows = {r["sample_id"]: r for r in csv.DictReader(out_csv.open())}
    assert set(rows) == {"a", "b", "c"}
    assert rows["a"]["status"] == "ok" and float(rows["a"]["chamfer_l2"]) > 0
    assert rows["b"]["status"] == "failed" and "b.ply" in rows["b"]["error"]
    assert rows["c"]["status"] == "failed" and "no prediction" in rows["c"]["error"]
    assert main(["eval-meshes", str(pred), str(gt), "--samples", "2000", "--strict"]) == 1


def test_demo_end_to_end(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path), "--samples", "4000"])
    assert code == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 12 and all(r["status"] == "ok" for r in rows)
    by_id = {r["sample_id"]: r for r in rows}
    # the severe degradation of each shape must score worse than the mild one
    for shape in ("sphere", "box", "torus"):
        assert float(by_id[f"{shape}_severe"]["chamfer_l2"]) > float(by_id[f"{shape}_mild"]["chamfer_l2"])
        assert float(by_id[f"{shape}_severe"]["fscore@0.01"]) < float(by_id[f"{shape}_mild"]["fscore@0.01"])
    assert "mean of 12" in out
    # the same seed gives the same numbers
    main(["demo", "--out", str(tmp_path / "again"), "--samples", "4000"])
    again = {r["sample_id"]: r for r in csv.DictReader((tmp_path / "again" / "results.csv").open())}
    assert np.allclose([float(by_id[k]["chamfer_l2"]) for k in by_id], [float(again[k]["chamfer_l2"]) for k in by_id])
