"""Stored scores follow the content: a row is reused only while its prediction's bytes, its ground truth's
bytes and its manifest row are unchanged; a summary covers the manifest it was given."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from compare_fixtures import PROTOCOL_SAMPLES, make_pair_dataset
from sam3d_eval.cli.main import main
from sam3d_eval.data.manifest import load_manifest
from sam3d_eval.evaluate import runner
from sam3d_eval.evaluate.content import manifest_row_sha256, sample_keys, split_stored
from sam3d_eval.evaluate.protocols import get_protocol
from sam3d_eval.evaluate.runner import run_evaluation
from sam3d_eval.evaluate.sources import FolderSource
from sam3d_eval.io import read_results
from sam3d_eval.io.hashing import file_sha256

PROTOCOL = get_protocol("default").with_overrides(num_samples=PROTOCOL_SAMPLES)
FAST = ["--samples", str(PROTOCOL_SAMPLES), "--resamples", "200", "--quiet", "--thumbnails", "0"]


@pytest.fixture
def data(tmp_path):
    manifest, a, b = make_pair_dataset(tmp_path, 6)
    return dict(root=tmp_path, manifest=manifest, a=a, b=b)


@pytest.fixture
def counting(monkeypatch):
    calls = []
    real = runner.score_batch

    def count(ids, *x, **k):
        calls.append(list(ids))
        return real(ids, *x, **k)

    monkeypatch.setattr(runner, "score_batch", count)
    return calls


def _chamfer(frame):
    return frame.set_index("sample_id")["chamfer_l2"]


def test_rows_record_the_content_keys(data, tmp_path):
    manifest = load_manifest(data["manifest"])
    res = run_evaluation(FolderSource(data["a"]), manifest, PROTOCOL, tmp_path / "run")
    row = res.frame.set_index("sample_id").loc["s02"]
    assert row["pred_sha256"] == file_sha256(data["a"] / "s02.ply")
    assert row["gt_sha256"] == file_sha256(data["root"] / "gt" / "s02.ply")
    mrow = manifest.set_index("sample_id", drop=False).loc["s02"].to_dict()
    assert row["row_sha256"] == manifest_row_sha256(mrow)
    # paths are not part of the row's key: the same values elsewhere hash the same
    moved = dict(mrow, gt_mesh="/elsewhere/s02.ply", image=None)
    assert manifest_row_sha256(moved) == manifest_row_sha256(mrow)
    assert manifest_row_sha256(dict(mrow, occlusion=0.9)) != manifest_row_sha256(mrow)


def test_overwritten_prediction_is_rescored_alone(data, tmp_path, counting, capsys):
    out = tmp_path / "run"
    argv = ["evaluate", data["a"], "--data", data["manifest"], "--out", out, "--samples", PROTOCOL_SAMPLES, "--json"]
    assert main([str(x) for x in argv]) == 0
    before = _chamfer(read_results(out))
    shutil.copy(data["b"] / "s03.ply", data["a"] / "s03.ply")  # another mesh under the same name
    counting.clear()
    capsys.readouterr()
    assert main([str(x) for x in argv + ["--resume"]]) == 0
    assert counting == [["s03"]]
    assert "5 stored rows reused, 1 scored (1 of them because their prediction" in capsys.readouterr().err
    after = _chamfer(read_results(out))
    assert after["s03"] != before["s03"]
    pd.testing.assert_series_equal(after.drop("s03"), before.drop("s03"))
    # the new value is the value a fresh run gives for the new file
    fresh = run_evaluation(FolderSource(data["a"]), load_manifest(data["manifest"]), PROTOCOL, tmp_path / "fresh")
    assert after["s03"] == _chamfer(fresh.frame)["s03"]
    # a second resume has nothing left to do, and leaves run.json as it was
    record = (out / "run.json").read_text()
    counting.clear()
    assert main([str(x) for x in argv + ["--resume"]]) == 0
    assert counting == [] and (out / "run.json").read_text() == record


def test_swapped_ground_truth_and_edited_manifest_row_are_rescored(data, tmp_path, counting):
    manifest = load_manifest(data["manifest"])
    source = FolderSource(data["a"])
    run_evaluation(source, manifest, PROTOCOL, tmp_path / "run")
    # a manifest with the same ids whose s01 (a box) and s02 (a cone) point at each other's ground truth
    swapped = pd.read_csv(data["manifest"])
    swapped.loc[swapped["sample_id"] == "s01", "gt_mesh"] = "gt/s02.ply"
    swapped.loc[swapped["sample_id"] == "s02", "gt_mesh"] = "gt/s01.ply"
    swapped.loc[swapped["sample_id"] == "s05", "occlusion"] = 0.99  # and an edited stratum
    path = data["root"] / "swapped.csv"
    swapped.to_csv(path, index=False)
    counting.clear()
    res = run_evaluation(source, load_manifest(path), PROTOCOL, tmp_path / "run", resume=True)
    assert sorted(s for c in counting for s in c) == ["s01", "s02", "s05"]
    assert res.stale == 3 and res.skipped == 3
    fresh = run_evaluation(source, load_manifest(path), PROTOCOL, tmp_path / "fresh")
    pd.testing.assert_series_equal(_chamfer(res.frame), _chamfer(fresh.frame))
    assert res.frame.set_index("sample_id").loc["s05", "occlusion"] == 0.99


def test_a_smaller_manifest_gives_a_summary_of_its_own_rows(data, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["evaluate", str(data["a"]), "--out", str(out), "--samples", str(PROTOCOL_SAMPLES), "--json"]
    assert main(base + ["--data", str(data["manifest"])]) == 0
    small = data["root"] / "small.csv"
    pd.read_csv(data["manifest"]).iloc[:2].to_csv(small, index=False)
    capsys.readouterr()
    assert main(base + ["--data", str(small), "--resume"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["samples"] == 2
    overall = [r for r in summary["summary"] if r["stratum"] == "all" and r["metric"] == "chamfer_l2"][0]
    assert overall["n"] == 2
    assert len(read_results(out)) == 6  # the store keeps every row; the summary covers the manifest


def test_rows_stored_without_keys_are_scored_again(data, tmp_path, counting):
    manifest = load_manifest(data["manifest"])
    source = FolderSource(data["a"])
    res = run_evaluation(source, manifest, PROTOCOL, tmp_path / "run")
    keys = sample_keys(manifest.to_dict("records"), source)
    old = res.frame.copy()
    old[["pred_sha256", "gt_sha256", "row_sha256"]] = None
    fresh, stale = split_stored(old, keys, source.identity, PROTOCOL.fingerprint())
    assert fresh == set() and stale == set(manifest["sample_id"])
    fresh, stale = split_stored(res.frame, keys, source.identity, PROTOCOL.fingerprint())
    assert fresh == set(manifest["sample_id"]) and stale == set()


def test_compare_reuses_an_evaluate_run_and_rescores_only_what_changed(data, tmp_path, counting, capsys):
    ev = tmp_path / "runs" / "a-eval"
    assert main(["evaluate", str(data["a"]), "--data", str(data["manifest"]), "--out", str(ev),
                 "--samples", str(PROTOCOL_SAMPLES), "--json"]) == 0
    capsys.readouterr()
    counting.clear()
    # the evaluate run is found under --runs-dir: A is not scored again (B, never scored, is)
    argv = ["compare", str(data["a"]), str(data["b"]), "--data", str(data["manifest"]), "--runs-dir",
            str(tmp_path / "runs"), *FAST[:2], "--resamples", "200", "--thumbnails", "0", "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert sorted(s for c in counting for s in c) == [f"s{i:02d}" for i in range(6)]  # B only
    side_a = res["sides"][0]
    assert side_a["run_dir"] == str(ev) and side_a["rows_reused"] == 6 and side_a["rows_scored"] == 0
    # --reuse names the run explicitly, with the runs folder elsewhere
    counting.clear()
    argv2 = [x if x != str(tmp_path / "runs") else str(tmp_path / "other") for x in argv] + ["--reuse", str(ev)]
    assert main(argv2) == 0
    assert json.loads(capsys.readouterr().out)["sides"][0]["run_dir"] == str(ev)
    # overwrite one of A's files: compare scores that sample alone, with the new value, into its own folder;
    # the evaluate run is read, never written
    before, record = _chamfer(read_results(ev)), (ev / "run.json").read_text()
    shutil.copy(data["b"] / "s02.ply", data["a"] / "s02.ply")
    counting.clear()
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert counting == [["s02"]]
    side_a = res["sides"][0]
    assert side_a["rows_rescored_stale"] == 1 and side_a["rows_reused"] == 5 and side_a["rows_scored"] == 1
    fresh = run_evaluation(FolderSource(data["a"]), load_manifest(data["manifest"]), PROTOCOL, tmp_path / "fresh")
    assert _chamfer(read_results(side_a["scored_into"]))["s02"] == _chamfer(fresh.frame)["s02"]
    pd.testing.assert_series_equal(_chamfer(read_results(ev)), before)
    assert (ev / "run.json").read_text() == record
    # the comparison used the new value: A's mean over the 6 samples
    row = next(r for r in res["table"] if r["stratum"] == "all" and r["metric"] == "chamfer_l2")
    assert row["mean_a"] == pytest.approx(before.drop("s02").sum() / 6 + _chamfer(fresh.frame)["s02"] / 6, rel=1e-12)
    # and the run folder given as a side is checked the same way
    shutil.copy(data["root"] / "gt" / "s00.ply", data["a"] / "s04.ply")
    counting.clear()
    assert main(["compare", str(ev), str(data["b"]), "--data", str(data["manifest"]), "--runs-dir",
                 str(tmp_path / "runs"), *FAST]) == 0
    assert counting == [["s04"]]
    err = capsys.readouterr().err
    assert err == ""  # --quiet


def test_a_run_whose_predictions_are_gone_leaves_stale_rows_out(data, tmp_path, capsys):
    run_evaluation(FolderSource(data["a"]), load_manifest(data["manifest"]), PROTOCOL, tmp_path / "run")
    shutil.rmtree(data["a"])
    # the ground truth of s01 changes under the run
    shutil.copy(data["root"] / "gt" / "s02.ply", data["root"] / "gt" / "s01.ply")
    code = main(["compare", str(tmp_path / "run"), str(data["b"]), "--data", str(data["manifest"]),
                 "--runs-dir", str(tmp_path / "runs"), "--samples", str(PROTOCOL_SAMPLES), "--resamples", "200",
                 "--thumbnails", "0", "--json"])
    out = capsys.readouterr()
    assert code == 0
    res = json.loads(out.out)
    assert res["sides"][0]["stale_left_out"] == ["s01"]
    assert "s01" in res["samples"]["only_in_B"]
    assert "left out" in out.err and "not checked" in res["sides"][0]["unchecked"]
    assert np.isfinite([r["delta"] for r in res["table"] if r["stratum"] == "all"]).all()


def test_materials_textures_and_buffers_are_part_of_a_mesh_key(tmp_path):
    """An OBJ's material and texture and a glTF's external buffer are read when the mesh is loaded, so a
    change to any of them changes the key (the main file's bytes alone would not)."""
    from sam3d_eval.io.hashing import mesh_sha256
    from sam3d_eval.io.mesh_io import referenced_files

    obj = tmp_path / "m.obj"
    obj.write_text("mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nusemtl mat\nf 1/1 2/2 3/3\n")
    (tmp_path / "m.mtl").write_text("newmtl mat\nKd 1 1 1\nmap_Kd -s 1 1 1 tex.png\n")
    assert referenced_files(obj) == [tmp_path / "m.mtl", tmp_path / "tex.png"]
    missing = mesh_sha256(obj)  # the texture is not there yet: keyed as missing
    (tmp_path / "tex.png").write_bytes(b"\x89PNG one")
    first = mesh_sha256(obj)
    (tmp_path / "tex.png").write_bytes(b"\x89PNG two")
    assert len({missing, first, mesh_sha256(obj)}) == 3
    gltf = tmp_path / "g.gltf"
    gltf.write_text(json.dumps({"buffers": [{"uri": "g%20data.bin", "byteLength": 4}],
                                "images": [{"uri": "data:image/png;base64,AAAA"}]}))
    assert referenced_files(gltf) == [tmp_path / "g data.bin"]
    (tmp_path / "g data.bin").write_bytes(b"\x00\x00\x00\x00")
    before = mesh_sha256(gltf)
    (tmp_path / "g data.bin").write_bytes(b"\x00\x00\x80\x3f")
    assert mesh_sha256(gltf) != before
    ply = tmp_path / "p.ply"
    ply.write_bytes(b"ply\n")
    assert referenced_files(ply) == [] and mesh_sha256(ply) == file_sha256(ply)


def test_the_mask_joins_the_row_key_only_under_the_visibility_split(tmp_path):
    mask = tmp_path / "m.png"
    mask.write_bytes(b"first mask bytes")
    row = {"sample_id": "s1", "gt_mesh": str(tmp_path / "none.obj"), "mask": str(mask), "domain": "real"}

    class Keyless:
        def content_hash(self, row):
            return "pred"

    plain = sample_keys([row], Keyless())["s1"]
    split = sample_keys([row], Keyless(), mask_content=True)["s1"]
    assert plain.row_sha256 == manifest_row_sha256(row) != split.row_sha256
    mask.write_bytes(b"another mask")
    assert sample_keys([row], Keyless())["s1"] == plain  # the mask does not enter other protocols' scores
    assert sample_keys([row], Keyless(), mask_content=True)["s1"].row_sha256 != split.row_sha256
    # a row without a mask, or with an unreadable one, is keyed apart from both
    no_mask = sample_keys([{**row, "mask": None}], Keyless(), mask_content=True)["s1"].row_sha256
    gone = sample_keys([{**row, "mask": str(tmp_path / "gone.png")}], Keyless(), mask_content=True)["s1"].row_sha256
    assert len({no_mask, gone, split.row_sha256}) == 3
