"""Recipes, manifest training data, camera frames, and `sam3d-eval train` end to end on a tiny benchmark."""

import json

import pytest
import torch

from sam3d_eval.models.reference import camera_frames
from sam3d_eval.render import orbit_cameras
from sam3d_eval.train.data import camera_from_record
from sam3d_eval.train.recipe import RecipeError, load_recipe

TINY = """
out_dir = "{out}"
[data]
image_size = 32
[data.generate]
synthetic = 4
real = 4
seed = 3
image_size = 32
split_fractions = [0.5, 0.0, 0.5]
[eval]
num_samples = 500
n_resamples = 200
[stage1]
epochs = 1
epoch_size = 4
batch_size = 2
warmup_steps = 1
[stage1.model]
input_size = 32
channels = [4, 8]
feature_dim = 8
decoder_hidden = 8
ico_level = 1
[stage1.loss]
num_points = 100
render_size = 16
view_azimuths = [30.0]
view_elevations = [20.0]
"""


def test_recipes_in_training_parse():
    for name, stages in (("demo", [1, 2]), ("stage1", [1]), ("stage2", [2])):
        r = load_recipe(f"training/{name}.toml")
        assert [c.stage for c in r.stages] == stages
    demo = load_recipe("training/demo.toml")
    s1, s2 = demo.stages
    assert s2.init_from.endswith("stage1/final.safetensors") and s2.lr < s1.lr
    assert s1.loss.weights.chamfer == 1.0 and s1.loss.weights.texture == 0.5 and s1.loss.weights.gan == 0
    assert s2.loss.weights.vgg > 0 and s2.loss.weights.gan > 0
    paper = load_recipe("training/stage1.toml").stages[0]
    assert (paper.lr, paper.batch_size) == (1e-4, 256)
    assert load_recipe("training/stage2.toml").stages[0].batch_size == 64


def test_recipe_errors_name_the_key(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text("[stage1]\nepochz = 3\n")
    with pytest.raises(RecipeError, match="epochz"):
        load_recipe(p)
    p.write_text("[stage1.model]\nwidth = 3\n")
    with pytest.raises(RecipeError, match="width"):
        load_recipe(p)
    p.write_text("[data]\n")
    with pytest.raises(RecipeError, match="stage1"):
        load_recipe(p)


def test_recipe_file_errors_are_one_line_naming_the_file(tmp_path):
    p = tmp_path / "r.toml"
    with pytest.raises(FileNotFoundError, match="r.toml: recipe does not exist"):
        load_recipe(p)
    p.write_text("[stage1]\nepochs = \n")
    with pytest.raises(RecipeError, match=r"r.toml: not valid TOML \(.*line 2"):
        load_recipe(p)
    p.write_text("outdir = 'x'\n[stage1]\n")
    with pytest.raises(RecipeError, match=r"r.toml: unknown top-level key\(s\) 'outdir'; valid keys: out_dir, data"):
        load_recipe(p)
    p.write_text("[stage1.loss.weights]\nchamfr = 1.0\n")
    with pytest.raises(RecipeError, match=r"\[stage1.loss.weights\]: unknown key\(s\) 'chamfr'; valid keys: chamfer"):
        load_recipe(p)
    p.write_text("[stage1]\nlr = -1\n")
    with pytest.raises(RecipeError, match=r"\[stage1\]: lr must be a number > 0"):
        load_recipe(p)


def test_camera_records_and_cameras_give_the_same_frame():
    cams = orbit_cameras([10.0, 250.0], [30.0, -15.0], [2.0, 3.5], (48, 64), fov_deg=50.0)
    records = [{"R": cams.R[i].tolist(), "T": cams.T[i].tolist(), "image_size": [48, 64],
                "K": [[float(cams.focal_length[i, 0]), 0, 32.0], [0, float(cams.focal_length[i, 1]), 24.0], [0, 0, 1]]}
               for i in range(2)]
    R1, s1 = camera_frames(cams, 2)
    R2, s2 = camera_frames(records, 2)
    assert torch.allclose(R1, R2) and torch.allclose(s1, s2)
    # One view unit = half the image height at the object's depth: distance * tan(fov / 2).
    assert torch.allclose(s1, torch.tensor([2.0, 3.5]) * torch.tan(torch.deg2rad(torch.tensor(25.0))), rtol=1e-5)
    small = camera_from_record(records[0], image_size=24)
    assert small.image_size == (24, 24) and torch.allclose(camera_frames(small, 1)[1], s1[:1])
    with pytest.raises(ValueError, match="camera"):
        camera_frames([{"R": 1}], 1)


def test_cli_train_end_to_end(tmp_path, capsys):
    from sam3d_eval.cli.main import main
    from sam3d_eval.models import load_checkpoint

    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY.format(out=(tmp_path / "run").as_posix()))
    assert main(["train", "--config", str(recipe)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "phase 1/1 synthetic" in out and "gap per phase" in out
    # stderr is not a terminal here: progress comes as plain lines (no carriage-return bar), ending at 100%
    assert "\r" not in captured.err and "(100%)" in captured.err and "step" in captured.err
    model = load_checkpoint(tmp_path / "run" / "stage1" / "final.safetensors")
    assert model.checkpoint_config["data_manifest_hash"]
    import pandas as pd

    gap = pd.read_csv(tmp_path / "run" / "gap.csv")
    row = gap[gap["metric"] == "chamfer_l2"].iloc[0]
    assert row["stage"] == 1 and row["phase"] == "synthetic" and row["figure"] == "gap_ratio"
    assert row["mean_real"] > 0 and row["mean_synthetic"] > 0
    assert row["estimate"] == pytest.approx(row["mean_real"] / row["mean_synthetic"])
    # The paired stage comparison on stored runs: a run against itself changes nothing.
    from sam3d_eval.train.hooks import compare_stage_runs

    run = next((tmp_path / "run" / "stage1" / "eval").glob("stage1-*"))
    rows = compare_stage_runs(run, run, tmp_path / "cmp.csv", n_resamples=100)
    assert set(rows["level"]) >= {"all", "real", "synthetic"} and (rows["delta"] == 0).all()
    assert main(["train", "--config", str(tmp_path / "missing.toml")]) == 2


def test_phase_gap_table_leads_with_the_headline_pair():
    from sam3d_eval.io.results import GAP_METRICS
    from sam3d_eval.train.hooks import PHASE_METRICS

    assert set(GAP_METRICS) <= set(PHASE_METRICS)
