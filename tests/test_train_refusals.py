"""`sam3d-eval train` refuses bad input up front with one line naming it (exit 2): an `init_from` checkpoint of
other shapes or another architecture, and recipe values of the wrong type or range."""

import json
import struct

import pytest
from train_fixtures import ToyData, tiny_config

from sam3d_eval.cli.main import main
from sam3d_eval.models import CheckpointError, ReferenceConfig, ReferenceModel, save_checkpoint
from sam3d_eval.train.loop import train

MODEL = dict(input_size=32, channels=(4, 8), feature_dim=8, decoder_hidden=8, ico_level=1)

RECIPE = """
out_dir = "{out}"
[data]
image_size = 32
[data.generate]
out = "{bench}"
synthetic = 4
real = 4
seed = 3
image_size = 32
split_fractions = [1.0, 0.0, 0.0]
[stage{stage}]
epochs = 4
epoch_size = 4
batch_size = 2
{extra}
[stage{stage}.model]
input_size = 32
channels = [4, 8]
feature_dim = 8
decoder_hidden = 8
ico_level = 1
[stage{stage}.loss]
num_points = 100
render_size = 16
view_azimuths = [30.0]
view_elevations = [20.0]
"""


def _recipe(tmp_path, stage=1, extra=""):
    """The tiny recipe with the stage line `extra` ("key = value") added, or replacing the line of that key."""
    text = RECIPE.format(out=(tmp_path / "run").as_posix(), bench=(tmp_path / "bench").as_posix(), stage=stage,
                         extra=extra)
    key = extra.split("=")[0].strip()
    lines = text.splitlines()
    if key and sum(line.startswith(f"{key} =") for line in lines) == 2:
        lines.remove(next(line for line in lines if line.startswith(f"{key} =") and line != extra))
    path = tmp_path / "recipe.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _with_architecture(src, dst, arch):
    """`src` with its config's architecture renamed (the weights untouched)."""
    data = src.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    cfg = json.loads(header["__metadata__"]["sam3d_eval"])
    cfg["architecture"] = arch
    header["__metadata__"]["sam3d_eval"] = json.dumps(cfg)
    raw = json.dumps(header).encode()
    dst.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    return dst


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_init_from_of_other_shapes_or_another_architecture_is_refused_before_anything_runs(tmp_path, capsys):
    wider = save_checkpoint(tmp_path / "wider.safetensors", ReferenceModel(ReferenceConfig(**{**MODEL, "decoder_hidden": 16})))
    same = save_checkpoint(tmp_path / "same.safetensors", ReferenceModel(ReferenceConfig(**MODEL)))
    evil = _with_architecture(same, tmp_path / "evil.safetensors", "evil/arch")
    for ckpt, what in ((wider, r"dec_pos.weight has shape (16, 27), this model config builds (8, 27)"),
                       (evil, "architecture 'evil/arch'")):
        recipe = _recipe(tmp_path, stage=2, extra=f'init_from = "{ckpt.as_posix()}"')
        assert main(["train", "--config", str(recipe), "--no-eval", "--quiet"]) == 2
        err = _one_line_error(capsys)
        assert str(ckpt) in err and what in err and "init_from" in err
        # Refused before the benchmark was generated or a training folder made.
        assert not (tmp_path / "bench").exists() and not (tmp_path / "run").exists()
    # The library call refuses it as well, before writing anything.
    with pytest.raises(CheckpointError, match="evil/arch"):
        train(tiny_config(tmp_path / "direct", 2, init_from=str(evil)), ToyData(2, 32))
    assert not (tmp_path / "direct").exists()


@pytest.mark.parametrize("line, field", [
    ("batch_size = 0", "batch_size"),
    ('seed = "abc"', "seed"),
    ("epochs = 2.5", "epochs"),
    ("lr = -1.0", "lr"),
    ('device = "gpu"', "device"),
    ("betas = [0.9]", "betas"),
])
def test_recipe_values_of_the_wrong_type_or_range_are_refused_by_name(tmp_path, capsys, line, field):
    recipe = _recipe(tmp_path, extra=line)
    assert main(["train", "--config", str(recipe), "--no-eval", "--quiet"]) == 2
    err = _one_line_error(capsys)
    assert str(recipe) in err and f"{field} must" in err
    assert not (tmp_path / "run").exists()
