"""The training loop: stop + resume is bitwise the uninterrupted run; logs hold every term and the drawn mix."""

import dataclasses
import json

import pytest
import torch
from train_fixtures import ToyData, tiny_config

from sam3d_eval.models import load_checkpoint, read_checkpoint
from sam3d_eval.train.loop import train


@pytest.fixture(scope="module")
def data():
    return ToyData(8, 32)


@pytest.mark.parametrize("stage", [1, 2])
def test_resume_is_bitwise_the_uninterrupted_run(tmp_path, data, stage):
    full = train(tiny_config(tmp_path / "full", stage), data)
    assert full.steps == 8 and not full.stopped_early
    part = train(tiny_config(tmp_path / "part", stage, max_steps=3), data)
    assert part.stopped_early and part.steps == 3
    rest = train(tiny_config(tmp_path / "part", stage), data)
    assert rest.steps == 8
    a = read_checkpoint(tmp_path / "full" / "last.safetensors").tensors
    b = read_checkpoint(tmp_path / "part" / "last.safetensors").tensors
    assert set(a) == set(b) and any(k.startswith("optim/") for k in a)
    if stage == 2:
        assert any(k.startswith("disc/") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # ... and the run did learn something: the weights moved from their start.
    first = read_checkpoint(tmp_path / "part" / "phase1-mix80-20.safetensors" if stage == 2 else
                            tmp_path / "full" / "final.safetensors")
    assert first.config["stage"] == stage


def test_logs_terms_mix_and_phase_checkpoints(tmp_path, data):
    r = train(tiny_config(tmp_path / "s2", 2), data)
    events = [json.loads(line) for line in r.log_path.read_text().splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == 8
    for term in ("chamfer", "texture_l2", "texture_perceptual", "smoothness", "laplacian", "vgg", "gan", "gan_d", "total", "lr"):
        assert all(term in e and e[term] == e[term] for e in steps), term
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["target_synthetic"] for e in epochs] == [0.8, 0.5, 0.2, 0.0]
    assert epochs[-1]["drawn_real"] == 1.0 and 0 < epochs[0]["drawn_real"] < 1
    assert [p.name for p in r.phase_checkpoints] == ["phase1-mix80-20.safetensors", "phase2-mix50-50.safetensors",
                                                     "phase3-mix20-80.safetensors", "phase4-real100.safetensors"]
    model = load_checkpoint(r.checkpoint)
    cfg = model.checkpoint_config
    assert cfg["stage"] == 2 and cfg["step"] == 8 and cfg["data_manifest_hash"] == data.manifest_hash
    assert cfg["loss_weights"]["gan"] > 0 and "random-features" in cfg["substitutes"]["vgg"]


def test_stage2_initialises_from_stage1_and_refuses_a_foreign_resume(tmp_path, data):
    s1 = train(tiny_config(tmp_path / "s1", 1, epochs=1, curriculum="stage1"), data)
    s2 = train(tiny_config(tmp_path / "s2", 2, init_from=str(s1.checkpoint), max_steps=0), data)
    a = read_checkpoint(s1.checkpoint).prefixed("model/")
    b = read_checkpoint(s2.checkpoint).prefixed("model/")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="stage 1"):
        train(tiny_config(tmp_path / "s1", 2), data)
