"""Checkpoints: round trip with no other input; pickles, truncation and other architectures refused."""

import json
import pickle
import struct

import pytest
import torch

from sam3d_eval.models import CheckpointError, ReferenceConfig, ReferenceModel, load_checkpoint, read_checkpoint, save_checkpoint

SMALL = ReferenceConfig(input_size=32, channels=(4, 8), feature_dim=8, decoder_hidden=8, ico_level=1)


def _model(seed=0):
    torch.manual_seed(seed)
    m = ReferenceModel(SMALL)
    torch.nn.init.normal_(m.dec_out.weight, std=0.05)
    return m


def test_round_trip_rebuilds_model_and_metadata(tmp_path):
    m = _model()
    path = save_checkpoint(tmp_path / "a.safetensors", m, {"stage": 2, "phase": "mix50-50", "epoch": 3, "step": 40,
                                                          "substitutes": {"vgg": "random-features"}},
                           {"optim/0/exp_avg": torch.ones(3)})
    loaded = load_checkpoint(path)
    assert loaded.config == SMALL and loaded.name == "reference/stage2"
    for k, v in m.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    cfg = loaded.checkpoint_config
    assert cfg["phase"] == "mix50-50" and cfg["step"] == 40 and cfg["substitutes"]["vgg"] == "random-features"
    assert cfg["package_version"] and cfg["architecture"] == "sam3d-eval/reference-icosphere"
    assert loaded.identity == m.identity
    img, mask = torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32, dtype=torch.bool)
    R = torch.eye(3)[None]
    assert torch.equal(loaded(img, mask, R)[0], m.eval()(img, mask, R)[0])
    assert torch.equal(read_checkpoint(path).prefixed("optim/")["0/exp_avg"], torch.ones(3))


def test_refuses_pickles_and_torch_save(tmp_path):
    p = tmp_path / "evil.safetensors"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(p)
    q = tmp_path / "torch.pt"
    torch.save(_model().state_dict(), q)
    with pytest.raises(CheckpointError, match="never"):
        load_checkpoint(q)


def test_refuses_truncated_and_garbage(tmp_path):
    path = save_checkpoint(tmp_path / "a.safetensors", _model())
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(cut)
    cut.write_bytes(data[:20])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(cut)
    cut.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(cut)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")


def _rewrite_config(path, out, change):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    cfg = json.loads(header["__metadata__"]["sam3d_eval"])
    change(cfg)
    header["__metadata__"]["sam3d_eval"] = json.dumps(cfg)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    out.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    return out


def test_refuses_other_architectures_and_mismatched_weights(tmp_path):
    path = save_checkpoint(tmp_path / "a.safetensors", _model())
    other = _rewrite_config(path, tmp_path / "b.safetensors", lambda c: c.update(architecture="someone/else"))
    with pytest.raises(CheckpointError, match="architecture"):
        load_checkpoint(other)
    wider = _rewrite_config(path, tmp_path / "c.safetensors", lambda c: c["model"].update(decoder_hidden=16))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(wider)
    unknown = _rewrite_config(path, tmp_path / "d.safetensors", lambda c: c["model"].update(attention=True))
    with pytest.raises(CheckpointError, match="unknown fields"):
        load_checkpoint(unknown)
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="without a sam3d-eval config"):
        load_checkpoint(tmp_path / "plain.safetensors")
    assert issubclass(CheckpointError, ValueError)
