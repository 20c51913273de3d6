"""End-to-end CLI: help, version, folder evaluation with failures, and user-error handling (the demo: test_demo.py)."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from sam3d_eval import __version__
from sam3d_eval.cli.main import main
from sam3d_eval.data.shapes import make_shape
from sam3d_eval.io.mesh_io import save_mesh


def _version(name):
    from sam3d_eval.evaluate.protocols import PROTOCOLS

    return PROTOCOLS[name].version


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


def test_help_imports_no_heavy_module():
    """--help, --version and every subcommand's --help answer without torch, trimesh, scipy or pandas."""
    code = (
        "import sys\n"
        "from sam3d_eval.cli.main import build_parser, main\n"
        "sub = next(a for a in build_parser()._actions if a.dest == 'command')\n"
        "assert {'evaluate', 'eval-meshes', 'demo', 'protocols'} <= set(sub.choices)\n"
        "cmds = [[], ['--version']] + [[c, '--help'] for c in sub.choices]\n"
        "for argv in cmds:\n"
        "    try:\n"
        "        main(argv + (['--help'] if not argv else []))\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in ('torch', 'trimesh', 'scipy', 'pandas', 'numpy') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stderr, proc.stderr[-2000:]
    assert "--resume" in proc.stdout and "--data" in proc.stdout and "--strict" in proc.stdout


def test_missing_prediction_folder_says_it_does_not_exist(tmp_path, capsys):
    (tmp_path / "gt").mkdir()
    _write(tmp_path / "gt" / "a.ply")
    assert main(["eval-meshes", str(tmp_path / "typo"), str(tmp_path / "gt")]) == 2
    err = capsys.readouterr().err
    assert "typo: predictions folder does not exist" in err and "must be a folder" not in err


def test_all_failed_still_prints_and_writes(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for sid in ("a", "b"):
        _write(gt / f"{sid}.ply")
        (pred / f"{sid}.ply").write_bytes(b"garbage")
    for out in ("r.csv", "r.json", "r.parquet"):
        code = main(["eval-meshes", str(pred), str(gt), "--samples", "500", "-o", str(tmp_path / out)])
        captured = capsys.readouterr()
        assert code == 0 and (tmp_path / out).is_file()
        assert "no sample was scored: all 2 failed" in captured.out and "2 of 2 samples failed" in captured.err
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [r["status"] for r in rows] == ["failed", "failed"] and "a.ply" in rows[0]["error"]
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["metadata"]["version"] == __version__ and payload["results"][1]["status"] == "failed"
    import pandas as pd

    assert list(pd.read_parquet(tmp_path / "r.parquet")["status"]) == ["failed", "failed"]
    assert main(["eval-meshes", str(pred), str(gt), "--samples", "500", "--strict"]) == 1


def test_output_is_checked_before_any_work(tmp_path, capsys):
    _write(tmp_path / "gt.ply")
    pair = [str(tmp_path / "gt.ply"), str(tmp_path / "gt.ply"), "--samples", "500"]
    assert main(["eval-meshes", *pair, "-o", str(tmp_path / "out.xlsx")]) == 2
    err = capsys.readouterr().err
    assert "out.xlsx" in err and ".csv, .json, .parquet" in err and "scoring" not in err
    (tmp_path / "afile").write_text("x")
    assert main(["eval-meshes", *pair, "-o", str(tmp_path / "afile" / "r.csv")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "scoring" not in err


def test_debug_shows_traceback(tmp_path, capsys):
    code = main(["--debug", "eval-meshes", str(tmp_path / "a.ply"), str(tmp_path / "b.ply")])
    assert code == 2
    assert "Traceback" in capsys.readouterr().err


def test_bad_option_values(tmp_path, capsys):
    _write(tmp_path / "gt.ply")
    assert main(["eval-meshes", str(tmp_path / "gt.ply"), str(tmp_path / "gt.ply"), "--samples", "0"]) == 2
    assert "--samples" in capsys.readouterr().err
    assert main(["eval-meshes", str(tmp_path / "gt.ply"), str(tmp_path / "gt.ply"), "--taus", "-1"]) == 2


def test_unusable_device_and_missing_weights_are_user_errors(tmp_path, capsys):
    _write(tmp_path / "gt.ply")
    pair = [str(tmp_path / "gt.ply"), str(tmp_path / "gt.ply"), "--samples", "500"]
    if not torch.cuda.is_available():
        assert main(["eval-meshes", *pair, "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    assert main(["eval-meshes", *pair, "--device", "warp9"]) == 2
    assert "--device 'warp9'" in capsys.readouterr().err
    assert main(["eval-meshes", *pair, "--appearance", "--lpips-weights", str(tmp_path / "typo.pth")]) == 2
    assert "typo.pth: no such file" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip archive")
    assert main(["eval-meshes", *pair, "--appearance", "--lpips-weights", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert "corrupt.pth" in err and "internal error" not in err


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


# ---------------------------------------------------------------------------------------------------
# protocols


def _write_ascii_ply(path, props: dict):
    names = list(props)
    n = len(props[names[0]])
    head = ["ply", "format ascii 1.0", f"element vertex {n}", *(f"property float {k}" for k in names), "end_header"]
    rows = [" ".join(f"{float(props[k][i]):.7g}" for k in names) for i in range(n)]
    path.write_text("\n".join(head + rows) + "\n")


def _write_splat(path, centres):
    """A 3DGS-layout splat: tiny isotropic Gaussians at `centres`, all opaque."""
    n = len(centres)
    props = {"x": centres[:, 0], "y": centres[:, 1], "z": centres[:, 2]}
    props.update({f"f_dc_{i}": np.zeros(n) for i in range(3)})
    props["opacity"] = np.full(n, 5.0)  # sigmoid(5) = 0.993
    props.update({f"scale_{i}": np.full(n, -9.0) for i in range(3)})  # std 1.2e-4
    props.update({"rot_0": np.ones(n), "rot_1": np.zeros(n), "rot_2": np.zeros(n), "rot_3": np.zeros(n)})
    _write_ascii_ply(path, props)


def test_protocols_command_lists_presets(capsys):
    assert main(["protocols"]) == 0
    out = capsys.readouterr().out
    for name in ("default", "sam3d", "meshrcnn", "occnet", "zeroshape"):
        assert name in out
    assert "gt_bbox_longest_10" in out and "0.1,0.3,0.5" in out and "1,000,000" in out
    assert "source: Mesh R-CNN" in out and "icp" in out


def test_protocols_command_imports_no_heavy_module():
    """`python -m sam3d_eval protocols` lists the presets without torch or trimesh (it answers as fast as --help)."""
    code = (
        "import runpy, sys\n"
        "sys.argv = ['sam3d_eval', 'protocols']\n"
        "try:\n"
        "    runpy.run_module('sam3d_eval', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = sorted(m for m in ('torch', 'trimesh') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "zeroshape" in proc.stdout and "source: Mesh R-CNN" in proc.stdout
    assert "HEAVY []" in proc.stderr, proc.stderr[-2000:]


def test_protocol_option_is_printed_and_recorded(tmp_path, capsys):
    _write(tmp_path / "gt.ply")
    _write(tmp_path / "pred.ply", shift=0.02)
    out_csv, out_json = tmp_path / "r.csv", tmp_path / "r.json"
    args = [str(tmp_path / "pred.ply"), str(tmp_path / "gt.ply"), "--protocol", "meshrcnn", "--samples", "3000"]
    assert main(["eval-meshes", *args, "-o", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"protocol: meshrcnn v{_version('meshrcnn')} (overrides: num_samples=3000)"
    assert "fscore@0.3" in out and "normal_consistency_signed" in out and "fscore@0.01" not in out
    row = next(csv.DictReader(out_csv.open()))
    assert row["protocol"] == "meshrcnn" and row["protocol_version"] == _version("meshrcnn")
    assert json.loads(row["protocol_overrides"]) == {"num_samples": 3000}
    assert float(row["chamfer_l2"]) > 0 and "fscore@0.5" in row
    assert main(["eval-meshes", *args, "--seed", "4", "-o", str(out_json)]) == 0
    payload = json.loads(out_json.read_text())
    assert payload["settings"]["protocol"]["name"] == "meshrcnn"
    assert payload["settings"]["protocol"]["overrides"] == {"num_samples": 3000, "seed": 4}
    assert payload["results"][0]["transform"]["gt_normalization"]["scale"] > 0


def test_default_protocol_numbers_unchanged_by_the_option(tmp_path, capsys):
    _write(tmp_path / "gt.ply")
    _write(tmp_path / "pred.ply", shift=0.02)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    base = [str(tmp_path / "pred.ply"), str(tmp_path / "gt.ply"), "--samples", "2000"]
    assert main(["eval-meshes", *base, "-o", str(a)]) == 0
    assert main(["eval-meshes", *base, "--protocol", "default", "-o", str(b)]) == 0
    ra, rb = next(csv.DictReader(a.open())), next(csv.DictReader(b.open()))
    assert ra["chamfer_l2"] == rb["chamfer_l2"] and ra["protocol"] == "default"
    assert f"protocol: default v{_version('default')}" in capsys.readouterr().out


def test_unknown_protocol_lists_the_names(tmp_path, capsys):
    _write(tmp_path / "gt.ply")
    assert main(["eval-meshes", str(tmp_path / "gt.ply"), str(tmp_path / "gt.ply"), "--protocol", "nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "meshrcnn" in err and "zeroshape" in err and len(err.strip().splitlines()) == 1


def test_mixed_prediction_folder(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for sid in ("mesh", "cloud", "splat"):
        _write(gt / f"{sid}.ply")
    _write(pred / "mesh.obj")
    from sam3d_eval.io.mesh_io import load_mesh
    from sam3d_eval.ops.sample_points import sample_points_from_meshes

    pts = sample_points_from_meshes(load_mesh(gt / "cloud.ply"), 3000, seed=9)[0].numpy()
    np.savez(pred / "cloud.npz", points=pts)  # no normals
    _write_splat(pred / "splat.ply", pts)
    out_csv = tmp_path / "mixed.csv"
    code = main(["eval-meshes", str(pred), str(gt), "--samples", "3000", "-o", str(out_csv)])
    out = capsys.readouterr().out
    assert code == 0
    rows = {r["sample_id"]: r for r in csv.DictReader(out_csv.open())}
    assert {k: r["pred_kind"] for k, r in rows.items()} == {"mesh": "mesh", "cloud": "pointcloud", "splat": "splat"}
    assert all(r["status"] == "ok" for r in rows.values())
    # a cloud without normals: NC unavailable (nan + note), the other metrics present and good
    assert np.isnan(float(rows["cloud"]["normal_consistency"])) and "without normals" in rows["cloud"]["notes"]
    assert float(rows["cloud"]["fscore@0.05"]) > 0.95
    # splat centres on the surface with tiny Gaussians score like the surface they were drawn from
    assert float(rows["splat"]["fscore@0.05"]) > 0.95 and float(rows["splat"]["chamfer_l2"]) < 1e-3
    assert "note: cloud: normal_consistency unavailable" in out
    assert "normal_consistency: 1 sample(s) with nan left out of the mean" in out  # the mean says what it skipped


# ---------------------------------------------------------------------------------------------------
# appearance


@pytest.fixture()
def alex_weights(golden_dir, tmp_path):
    """The golden file's seeded AlexNet, saved in torchvision's layout as a user would give it."""
    golden = np.load(golden_dir / "lpips_alex_reference.npz")
    sd = {k[len("backbone/"):]: torch.from_numpy(golden[k]) for k in golden.files if k.startswith("backbone/")}
    path = tmp_path / "alexnet.pth"
    torch.save(sd, path)
    return path


def _coloured_box(path, rotate_deg=0.0, shift=(0.0, 0.0, 0.0), tint=0.0):
    from sam3d_eval.data.shapes import shape_colors

    v, f = make_shape("box")
    c = np.clip(shape_colors(v) + tint, 0, 1)
    a = np.deg2rad(rotate_deg)
    R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]], np.float32)
    save_mesh(path, (torch.from_numpy(v @ R.T + np.float32(shift)), torch.from_numpy(f)), colors=torch.from_numpy(c))


def test_appearance_with_and_without_lpips_weights(tmp_path, alex_weights, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))
    _coloured_box(tmp_path / "gt.ply")
    _coloured_box(tmp_path / "pred.ply", tint=0.1)
    args = ["eval-meshes", str(tmp_path / "pred.ply"), str(tmp_path / "gt.ply"), "--samples", "2000",
            "--appearance", "--view-size", "64"]
    assert main([*args, "-o", str(tmp_path / "no_weights.csv")]) == 0
    captured = capsys.readouterr()
    assert "LPIPS unavailable" in captured.err and "alexnet-owt-7be5be79.pth" in captured.err
    row = next(csv.DictReader((tmp_path / "no_weights.csv").open()))
    assert row["lpips"] == "nan"
    assert 10 < float(row["psnr"]) < 40 and 0 < float(row["ssim"]) < 1
    assert main([*args, "--lpips-weights", str(alex_weights), "-o", str(tmp_path / "weights.csv")]) == 0
    with_w = next(csv.DictReader((tmp_path / "weights.csv").open()))
    assert float(with_w["lpips"]) > 0
    assert float(with_w["psnr"]) == pytest.approx(float(row["psnr"]), rel=1e-6)  # same renders either way


def test_appearance_follows_the_protocol_alignment(tmp_path, alex_weights):
    """A rotated, moved copy of the GT looks identical once the protocol's ICP has undone the motion."""
    _coloured_box(tmp_path / "gt.ply")
    _coloured_box(tmp_path / "pred.ply", rotate_deg=8.0, shift=(0.05, -0.03, 0.02))
    base = ["eval-meshes", str(tmp_path / "pred.ply"), str(tmp_path / "gt.ply"), "--samples", "4000", "--appearance",
            "--view-size", "64", "--lpips-weights", str(alex_weights)]
    assert main([*base, "-o", str(tmp_path / "plain.json")]) == 0
    # the icp preset differs in more than alignment; override the default protocol's alignment instead
    from sam3d_eval.evaluate import get_protocol
    from sam3d_eval.evaluate.appearance import AppearanceScorer
    from sam3d_eval.evaluate.runner import run_evaluation
    from sam3d_eval.evaluate.sources import find_pairs
    from sam3d_eval.metrics import LPIPS

    frame, source, _ = find_pairs(tmp_path / "pred.ply", tmp_path / "gt.ply")
    scorer = AppearanceScorer(lpips=LPIPS("alex", backbone_weights=alex_weights))
    protocol = get_protocol("default").with_overrides(num_samples=4000, appearance_image_size=64)
    unaligned = run_evaluation(source, frame, protocol, appearance=scorer).frame.iloc[0]
    aligned = run_evaluation(source, frame, protocol.with_overrides(alignment="icp"), appearance=scorer).frame.iloc[0]
    assert json.loads(aligned["transform"])["alignment"]["method"] == "icp"
    assert aligned["psnr"] > 30 > unaligned["psnr"]
    assert aligned["lpips"] < 0.2 * unaligned["lpips"]
    plain = json.loads((tmp_path / "plain.json").read_text())["results"][0]["metrics"]
    assert plain["psnr"] == pytest.approx(unaligned["psnr"])  # the CLI runs the same path


# ---------------------------------------------------------------------------------------------------
# evaluate


def _manifest_dataset(tmp_path, n=6):
    import pandas as pd

    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    rows = []
    for i in range(n):
        name = ("sphere", "box", "torus")[i % 3]
        _write(tmp_path / "gt" / f"s{i}.ply", name)
        if i != n - 1:
            _write(tmp_path / "pred" / f"s{i}.ply", name, shift=0.005 * i)
        rows.append(dict(sample_id=f"s{i}", gt_mesh=f"gt/s{i}.ply", domain=("synthetic", "real")[i % 2],
                         occlusion=(0.05, 0.2, 0.7)[i % 3], category=name, site=f"site{i % 2}"))
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    return ["evaluate", str(tmp_path / "pred"), "--data", str(tmp_path / "m.csv"), "--samples", "500"]


def test_evaluate_stores_summarises_and_resumes(tmp_path, capsys):
    from sam3d_eval.io import read_results

    args = _manifest_dataset(tmp_path)
    out = tmp_path / "run"
    assert main([*args, "--out", str(out), "--batch-size", "4"]) == 0
    captured = capsys.readouterr()
    assert "domain=real" in captured.out and "occlusion_bin=[0.6,1]" in captured.out
    assert "occlusion-stratified accuracy" in captured.out and "gap_ratio" in captured.out
    assert "1 of 6 samples failed" in captured.err and "scoring: 6 sample(s) to score" in captured.err
    frame = read_results(out)
    assert len(frame) == 6 and list(frame["site"]) == ["site0", "site1"] * 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"samples": 6, "failed": 1, "duplicates_dropped": 0}
    overall = [r for r in summary["summary"] if r["stratum"] == "all" and r["metric"] == "chamfer_l2"][0]
    assert overall["n"] == 6 and overall["n_failed"] == 1 and overall["n_used"] == 5
    assert summary["metadata"]["command"] and summary["run"]["fingerprint"] == summary["metadata"]["protocol"]["fingerprint"]
    # a second run into the same folder needs --resume; then only the failed sample is retried
    assert main([*args, "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--resume", "--json", "--strict"]) == 1
    captured = capsys.readouterr()
    assert "5 sample(s) already stored, skipped" in captured.err
    payload = json.loads(captured.out)
    assert payload["counts"]["samples"] == 6 and payload["counts"]["duplicates_dropped"] == 1
    # another protocol cannot resume this run
    assert main([*args[:-1], "800", "--out", str(out), "--resume"]) == 2
    assert "fingerprint" in capsys.readouterr().err


def test_evaluate_user_errors(tmp_path, capsys):
    args = _manifest_dataset(tmp_path, n=2)
    (tmp_path / "bad.csv").write_text("sample_id,gt_mesh,domain,occlusion,category\na,../x.ply,real,0,c\n")
    assert main(["evaluate", str(tmp_path / "pred"), "--data", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "'a'" in err and "leaves" in err and len(err.strip().splitlines()) == 1
    assert main(["evaluate", str(tmp_path / "nope"), *args[2:], "--out", str(tmp_path / "o")]) == 2
    assert "nope: predictions folder does not exist" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main([*args, "--out", str(tmp_path / "file")]) == 2
    assert "must be a folder" in capsys.readouterr().err


def test_progress_lines_when_not_a_terminal():
    import io

    from sam3d_eval.cli.progress import ProgressReporter

    stream = io.StringIO()
    p = ProgressReporter("scoring", stream=stream, interval=0.0)
    p.start(4, 2)
    p.update(2)
    p.update(2)
    p.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "scoring: 2 sample(s) already stored, skipped (resume)"
    assert lines[1] == "scoring: 4 sample(s) to score"
    assert lines[2].startswith("scoring: 2/4 (50%)") and "ETA" in lines[2]
    assert lines[-1].startswith("scoring: 4/4 (100%)") and "\r" not in stream.getvalue()


def test_evaluate_a_reference_checkpoint(tmp_path, capsys):
    """A .safetensors checkpoint is run as a Predictor on the manifest's images and masks."""
    import pandas as pd
    from PIL import Image

    from sam3d_eval.io import read_results
    from sam3d_eval.models import ReferenceConfig, ReferenceModel, save_checkpoint

    torch.manual_seed(0)
    model = ReferenceModel(ReferenceConfig(input_size=16, channels=(4, 8), feature_dim=8, decoder_hidden=8,
                                           decoder_layers=1, ico_level=1, frame="world"))
    save_checkpoint(tmp_path / "ckpt.safetensors", model)
    rows = []
    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), 60 * i, np.uint8)).save(tmp_path / f"i{i}.png")
        Image.fromarray(np.full((20, 20), 255, np.uint8)).save(tmp_path / f"m{i}.png")
        _write(tmp_path / f"g{i}.ply")
        rows.append(dict(sample_id=f"r{i}", image=f"i{i}.png", mask=f"m{i}.png", gt_mesh=f"g{i}.ply",
                         domain="real", occlusion=0.1, category="ball"))
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    code = main(["evaluate", str(tmp_path / "ckpt.safetensors"), "--data", str(tmp_path / "m.csv"),
                 "--out", str(tmp_path / "run"), "--samples", "300"])
    assert code == 0, capsys.readouterr().err
    frame = read_results(tmp_path / "run")
    assert list(frame["status"]) == ["ok"] * 3 and set(frame["source"]) == {model.identity}
    assert (frame["chamfer_l2"] > 0).all()
    assert main(["evaluate", str(tmp_path / "missing.safetensors"), "--data", str(tmp_path / "m.csv"),
                 "--out", str(tmp_path / "run2")]) == 2
    assert "missing.safetensors: checkpoint does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# protocol files, --alignment, failures by reason, manifests without strata


def test_protocol_file_and_alignment_give_the_equivalent_fingerprint(tmp_path, capsys):
    from sam3d_eval.evaluate.protocols import get_protocol

    _write(tmp_path / "gt.ply")
    _write(tmp_path / "pred.ply", shift=0.01)
    pair = [str(tmp_path / "pred.ply"), str(tmp_path / "gt.ply"), "--samples", "500"]
    (tmp_path / "same.toml").write_text('base = "default"\nseed = 0\ntaus = [0.01, 0.02, 0.05]\nalignment = "none"\n')
    (tmp_path / "icp.json").write_text('{"base": "default", "alignment": "icp"}')
    recorded = {}
    for name, extra in (("preset", []), ("same", ["--protocol", str(tmp_path / "same.toml")]),
                        ("icp", ["--protocol", str(tmp_path / "icp.json")]), ("flag", ["--alignment", "icp"])):
        out = tmp_path / f"{name}.json"
        assert main(["eval-meshes", *pair, *extra, "-o", str(out)]) == 0
        payload = json.loads(out.read_text())
        recorded[name] = (payload["settings"]["protocol"], payload["results"][0]["transform"]["alignment"]["method"])
    preset = get_protocol("default").with_overrides(num_samples=500)
    assert recorded["preset"][0]["fingerprint"] == recorded["same"][0]["fingerprint"] == preset.fingerprint()
    assert recorded["icp"][0]["fingerprint"] == recorded["flag"][0]["fingerprint"] != preset.fingerprint()
    assert recorded["icp"][0]["overrides"] == {"alignment": "icp", "num_samples": 500}
    assert [recorded[k][1] for k in ("preset", "same", "icp", "flag")] == ["none", "none", "icp", "icp"]
    assert "protocol: default v2 (overrides: alignment=icp, num_samples=500)" in capsys.readouterr().out


def test_bad_protocol_file_is_a_one_line_error(tmp_path, capsys):
    args = _manifest_dataset(tmp_path, n=2)
    (tmp_path / "bad.toml").write_text('base = "default"\nsample = 5\n')
    (tmp_path / "bad.json").write_text('{"base": "default", "num_samples": -3}')
    gt = str(tmp_path / "gt" / "s0.ply")
    cases = [("bad.toml", ["unknown key(s) 'sample'", "valid keys: base, alignment"]),
             ("bad.json", ["num_samples", "must be positive"])]
    for name, words in cases:
        path = str(tmp_path / name)
        for argv in (["eval-meshes", gt, gt, "--protocol", path],
                     [*args, "--protocol", path, "--out", str(tmp_path / "run")]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert len(err.strip().splitlines()) == 1 and err.startswith(f"sam3d-eval: error: {path}: "), err
            assert all(w in err for w in words) and "scoring" not in err, err
    assert not (tmp_path / "run").exists()


def test_evaluate_without_strata_prints_failures_by_reason_and_the_gap_note(tmp_path, capsys):
    import re

    from sam3d_eval.evaluate.protocols import get_protocol

    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    ids = [f"s{i}" for i in range(6)]
    for i, sid in enumerate(ids):
        _write(gt / f"{sid}.ply", ("sphere", "box")[i % 2])
    _write(pred / "s0.ply", "sphere")
    _write(pred / "s1.ply", "box", shift=0.01)
    for sid in ("s2", "s3", "s4"):
        (pred / f"{sid}.ply").write_bytes(b"garbage")  # s5 has no prediction at all
    (tmp_path / "m.csv").write_text("sample_id,gt_mesh\n" + "".join(f"{s},gt/{s}.ply\n" for s in ids))
    out = tmp_path / "run"
    argv = ["evaluate", str(pred), "--data", str(tmp_path / "m.csv"), "--samples", "300", "--out", str(out)]
    assert main([*argv, "--alignment", "icp"]) == 0
    captured = capsys.readouterr()
    assert "note: no gap table: the manifest has no domain column" in captured.out
    assert "gap_ratio" not in captured.out and "domain=" not in captured.out
    assert "occlusion-stratified" not in captured.out
    err = captured.err
    assert "4 of 6 samples failed" in err
    assert re.search(r"^  s2: prediction: \S*s2\.ply: could not parse", err, re.M), err
    assert re.search(r"^  s5: no prediction for this sample$", err, re.M), err
    assert re.search(r"^  3  prediction: <path>: could not parse the file as PLY", err, re.M), err
    assert re.search(r"^  1  no prediction for this sample$", err, re.M), err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["domain_gap"] is None
    assert summary["domain_gap_note"] == "no gap table: the manifest has no domain column"
    failures = summary["failures"]
    assert failures["count"] == 4 and list(failures["by_reason"].values()) == [3, 1]
    assert next(iter(failures["by_reason"])).startswith("prediction: <path>: could not parse the file as PLY")
    assert "no prediction for this sample" in failures["by_reason"]
    assert [r["sample_id"] for r in failures["first"]] == ["s2", "s3", "s4", "s5"]
    assert "s3.ply" in failures["first"][1]["error"]
    # --alignment is recorded in run.json and changes the fingerprint; the stored rows were aligned by ICP
    run = json.loads((out / "run.json").read_text())
    with_icp = get_protocol("default").with_overrides(num_samples=300, alignment="icp")
    assert run["protocol"]["alignment"] == "icp" and run["protocol"]["overrides"]["alignment"] == "icp"
    without = get_protocol("default").with_overrides(num_samples=300)
    assert run["fingerprint"] == with_icp.fingerprint() != without.fingerprint()
    from sam3d_eval.io import read_results

    frame = read_results(out)
    assert "domain" not in frame.columns and "occlusion" not in frame.columns
    ok = frame[frame["status"] == "ok"]
    assert len(ok) == 2 and all(json.loads(t)["alignment"]["method"] == "icp" for t in ok["transform"])


def test_evaluate_one_domain_under_a_protocol_file(tmp_path, capsys):
    from sam3d_eval.evaluate.protocols import get_protocol

    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    rows = []
    for i, name in enumerate(("sphere", "box", "torus")):
        _write(tmp_path / "gt" / f"r{i}.ply", name)
        _write(tmp_path / "pred" / f"r{i}.ply", name, shift=0.004 * i)
        rows.append(f"r{i},gt/r{i}.ply,real,{(0.05, 0.2, 0.7)[i]},{name}\n")
    (tmp_path / "m.csv").write_text("sample_id,gt_mesh,domain,occlusion,category\n" + "".join(rows))
    (tmp_path / "p.toml").write_text('base = "default"\nnum_samples = 300\n')
    out = tmp_path / "run"
    assert main(["evaluate", str(tmp_path / "pred"), "--data", str(tmp_path / "m.csv"), "--protocol",
                 str(tmp_path / "p.toml"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "note: no gap table: the manifest has only the 'real' domain" in captured.out
    assert "gap_ratio" not in captured.out and "domain=real" in captured.out and "occlusion-stratified" in captured.out
    assert "samples failed" not in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["domain_gap"] is None and summary["domain_gap_note"].endswith("only the 'real' domain")
    assert summary["failures"] == {"count": 0, "by_reason": {}, "first": []}
    fingerprint = get_protocol("default").with_overrides(num_samples=300).fingerprint()
    assert json.loads((out / "run.json").read_text())["fingerprint"] == fingerprint
    assert summary["metadata"]["protocol"]["fingerprint"] == fingerprint


# ---------------------------------------------------------------------------------------------------
# evaluate: bad samples, the run folder's lock, its run.json and manifest schema


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "internal error" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_evaluate_stores_good_samples_beside_fuzzed_ones(tmp_path, capsys):
    """A splat with scale_* = 100, a NaN-vertex mesh and a string-typed npz in the batch of good samples: exit
    0 (1 with --strict), each bad one a failed row with its reason, the good rows as in a run without them."""
    from fuzz_fixtures import BAD, GOOD, make_fuzz_dataset

    from sam3d_eval.io import read_results

    runs = {}
    for with_bad in (False, True):
        root = tmp_path / ("bad" if with_bad else "good")
        manifest = make_fuzz_dataset(root, with_bad=with_bad)
        argv = ["evaluate", str(root / "pred"), "--data", str(manifest), "--samples", "400", "--batch-size", "16",
                "--out", str(root / "run")]
        assert main(argv) == 0
        capsys.readouterr()
        runs[with_bad] = read_results(root / "run").set_index("sample_id")
    bad = runs[True]
    for sid, reason in BAD.items():
        assert bad.loc[sid, "status"] == "failed" and reason in bad.loc[sid, "error"], (sid, bad.loc[sid, "error"])
    metrics = [c for c in bad.attrs["metrics"]]
    pd_good, pd_bad = runs[False].loc[list(GOOD), metrics], bad.loc[list(GOOD), metrics]
    assert (bad.loc[list(GOOD), "status"] == "ok").all() and pd_good.equals(pd_bad)
    summary = json.loads((tmp_path / "bad" / "run" / "summary.json").read_text())
    assert summary["counts"]["failed"] == len(BAD)
    # --strict: the same failures make exit status 1 (the failed rows are retried, and fail again)
    assert main(["evaluate", str(tmp_path / "bad" / "pred"), "--data", str(tmp_path / "bad" / "m.csv"),
                 "--samples", "400", "--out", str(tmp_path / "bad" / "run"), "--resume", "--strict"]) == 1


def test_evaluate_refuses_a_second_writer_naming_its_pid(tmp_path, capsys):
    import subprocess

    args = _manifest_dataset(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    holder = ("import sys\nfrom sam3d_eval.evaluate.runner import RunLock\n"
              "with RunLock(sys.argv[1]):\n    print('held', flush=True)\n    sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", holder, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert main([*args, "--out", str(out), "--resume"]) == 2
        _one_line_error(capsys, f"(pid {proc.pid})", "another evaluation")
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert main([*args, "--out", str(out), "--resume"]) == 0


@pytest.mark.parametrize("text, needle", [
    ("[1, 2]", "expected a JSON object, got a list"),
    ('"a run"', "expected a JSON object, got a string"),
    ('{"run_id": "r", "fingerprint": "f", "source": "preds"}', "'source' is a string, expected an object"),
    ('{"run_id": "r", "fingerprint": "f", "source": {"identity": "x"}, "invocations": "many"}',
     "'invocations' is a string, expected a list"),
])
def test_evaluate_run_json_that_is_not_a_run_record(tmp_path, capsys, text, needle):
    args = _manifest_dataset(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(text)
    for resume in ([], ["--resume"]):
        assert main([*args, "--out", str(tmp_path / "run"), *resume]) == 2
        _one_line_error(capsys, "run.json", needle)


def test_evaluate_results_that_is_a_file_is_refused_before_scoring(tmp_path, capsys):
    args = _manifest_dataset(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results").write_text("not a folder")
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    _one_line_error(capsys, "results: must be the folder of result parts")  # one line: nothing was scored
    assert not (tmp_path / "run" / "run.json").exists()


def test_evaluate_metric_named_column_leaves_nothing_to_resume(tmp_path, capsys):
    import pandas as pd

    args = _manifest_dataset(tmp_path)
    manifest = pd.read_csv(tmp_path / "m.csv")
    manifest.assign(chamfer_l2=0.5).to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "run"
    assert main([*args, "--out", str(out)]) == 2
    _one_line_error(capsys, "'chamfer_l2' have the names of result columns")
    assert not out.exists()  # the folder this call would have created is not left behind
    manifest.to_csv(tmp_path / "m.csv", index=False)  # renamed: the same folder, no --resume needed
    assert main([*args, "--out", str(out)]) == 0


def test_evaluate_resume_with_a_manifest_of_another_schema(tmp_path, capsys):
    """Started on a CSV whose ``code`` reads as int64, resumed on its Parquet twin holding "001": refused,
    naming the column; the run stays readable."""
    import pandas as pd

    args = _manifest_dataset(tmp_path)
    frame = pd.read_csv(tmp_path / "m.csv")
    frame["code"] = [f"{i:03d}" for i in range(1, len(frame) + 1)]
    frame.to_csv(tmp_path / "m.csv", index=False)
    frame.to_parquet(tmp_path / "m.parquet", index=False)
    out = tmp_path / "run"
    assert main([*args, "--out", str(out)]) == 0
    capsys.readouterr()
    argv = [*args, "--out", str(out), "--resume"]
    argv[argv.index("--data") + 1] = str(tmp_path / "m.parquet")
    assert main(argv) == 2
    _one_line_error(capsys, "manifest column 'code' holds string values that cannot be stored as int64")
    from sam3d_eval.io import read_results

    frame = read_results(out)
    assert len(frame) == 6 and frame.attrs["skipped_parts"] == {} and frame["code"].tolist() == list(range(1, 7))


def test_summary_json_is_replaced_atomically(tmp_path, capsys, monkeypatch):
    """A summary write that dies half way leaves the previous summary.json whole."""
    import pathlib

    args = _manifest_dataset(tmp_path, n=2)
    out = tmp_path / "run"
    assert main([*args, "--out", str(out)]) == 0
    before = (out / "summary.json").read_text()
    real = pathlib.Path.write_text

    def dies_half_way(self, data, *a, **k):
        if "summary" in self.name:
            real(self, data[: len(data) // 2], *a, **k)
            raise OSError(28, "No space left on device")
        return real(self, data, *a, **k)

    monkeypatch.setattr(pathlib.Path, "write_text", dies_half_way)
    assert main([*args, "--out", str(out), "--resume"]) != 0
    assert (out / "summary.json").read_text() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".summary")]


def test_a_result_part_left_out_is_one_warning_line_on_stderr(tmp_path, capsys):
    """A part that cannot be read is skipped by the reader; the command says so on one line, every time."""
    args = _manifest_dataset(tmp_path)
    out = tmp_path / "run"
    assert main([*args, "--out", str(out), "--json"]) == 0
    (out / "results" / "part-r0000-00000000000000000001-deadbeef.parquet").write_bytes(b"not parquet")
    capsys.readouterr()
    for _ in range(2):
        assert main([*args, "--out", str(out), "--resume", "--json"]) == 0
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if "left out of the results" in line]
        assert len(lines) >= 1 and all(line.startswith("sam3d-eval: warning: ") for line in lines)
