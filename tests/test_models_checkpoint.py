"""Checkpoints: round trip with no other input; pickles, truncation, malformed headers, other architectures and
configs that do not fit the stored weights refused from the header, before any weight is allocated."""

import dataclasses
import json
import pickle
import struct
import time

import pytest
import torch

from sam3d_eval.models import CheckpointError, ReferenceConfig, ReferenceModel, load_checkpoint, read_checkpoint, save_checkpoint
from sam3d_eval.models import checkpoint
from sam3d_eval.models.checkpoint import read_checkpoint_config

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


def _craft(path, header, data=b""):
    """A safetensors file written by hand: 8-byte little-endian header length, the JSON header, the data."""
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _sam3d_meta(**changes):
    cfg = {"format": "sam3d-eval-checkpoint", "format_version": 1, "architecture": "sam3d-eval/reference-icosphere",
           "architecture_version": 1, "model": SMALL.to_dict(), **changes}
    return {"sam3d_eval": json.dumps(cfg)}


def test_malformed_headers_are_one_line_checkpoint_errors(tmp_path):
    """Each header field retyped or out of range, in a file of 8 data bytes: a CheckpointError naming the
    file and the field from every reader, never a KeyError / TypeError (the CLI's exit 3)."""
    w = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    cases = [
        ({"model/w": {"dtype": "F32", "shape": [2]}}, "data_offsets"),
        ({"model/w": {**w, "data_offsets": ["0", "8"]}}, "data_offsets"),
        ({"model/w": {**w, "data_offsets": [0.0, 8.0]}}, "data_offsets"),
        ({"model/w": {**w, "data_offsets": [0]}}, "data_offsets"),
        ({"model/w": {**w, "data_offsets": [8, 0]}}, "data_offsets"),
        ({"model/w": {**w, "data_offsets": None}}, "data_offsets"),
        ({"model/w": {**w, "shape": [4], "data_offsets": [0, 16]}}, "truncated"),  # past the end of the file
        ({"model/w": {**w, "shape": [10**12], "data_offsets": [0, 4 * 10**12]}}, "truncated"),
        ({"model/w": {**w, "dtype": "F7"}}, "dtype"),
        ({"model/w": {**w, "dtype": 7}}, "dtype"),
        ({"model/w": {**w, "shape": "2"}}, "shape"),
        ({"model/w": {**w, "shape": [2.0]}}, "shape"),
        ({"model/w": {**w, "shape": [True, 2]}}, "shape"),
        ({"model/w": {**w, "shape": [-2]}}, "shape"),
        ({"model/w": {**w, "shape": [3]}}, "needs 12 bytes"),  # the shape's size is not the range's
        ({"model/w": {**w, "shape": [1], "data_offsets": [0, 4]}, "model/v": {**w, "shape": [1], "data_offsets": [0, 4]}},
         "starts at byte 0"),  # overlapping ranges
        ({"model/w": "x"}, "not a JSON object"),
    ]
    for entries, match in cases:
        path = _craft(tmp_path / "x.safetensors", {"__metadata__": _sam3d_meta(), **entries}, bytes(8))
        for read in (read_checkpoint_config, read_checkpoint, load_checkpoint):
            with pytest.raises(CheckpointError, match=match) as info:
                read(path)
            assert "\n" not in str(info.value) and str(path) in str(info.value), (entries, str(info.value))
    meta_cases = [
        (_sam3d_meta(format_version="1"), "format_version"),
        (_sam3d_meta(format_version=None), "format_version"),
        ({"sam3d_eval": 5}, "__metadata__"),
        ("x", "__metadata__"),
    ]
    for meta, match in meta_cases:
        path = _craft(tmp_path / "m.safetensors", {"__metadata__": meta, "model/w": w}, bytes(8))
        for read in (read_checkpoint_config, read_checkpoint, load_checkpoint):
            with pytest.raises(CheckpointError, match=match) as info:
                read(path)
            assert "\n" not in str(info.value)


def _refuse_real_weights(monkeypatch):
    """From here on, fail if any module initialises a weight anywhere but on the meta device: every Linear
    and Conv2d weight of `ReferenceModel` goes through `kaiming_uniform_` (before its pages are touched)."""
    real = torch.nn.init.kaiming_uniform_

    def guarded(tensor, *args, **kwargs):
        if tensor.device.type != "meta":
            raise AssertionError(f"a weight of shape {tuple(tensor.shape)} was allocated before the checks")
        return real(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", guarded)


def test_a_config_asking_for_a_huge_model_is_refused_from_the_header(tmp_path, monkeypatch):
    """A ~3 KB file whose config says decoder_hidden=60000 (two 60000 x 60000 float32 layers, 28.8 GB): the
    shapes the config builds are computed on the meta device and compared with the stored ones first."""
    path = save_checkpoint(tmp_path / "a.safetensors", _model())
    _refuse_real_weights(monkeypatch)
    huge = _rewrite_config(path, tmp_path / "huge.safetensors", lambda c: c["model"].update(decoder_hidden=60000))
    assert huge.stat().st_size < 100_000
    with pytest.raises(CheckpointError, match=r"dec_pos.weight has shape \(8, 27\), its config builds \(60000, 27\)"
                       r".*parameters") as info:
        load_checkpoint(huge)
    assert "\n" not in str(info.value)
    for field, value, match in (("decoder_layers", 10**6, "layers"), ("blocks_per_stage", 10**6, "layers"),
                                ("decoder_hidden", 2.5, "invalid model config"), ("ico_level", 2.5, "invalid model config")):
        bad = _rewrite_config(path, tmp_path / "bad.safetensors", lambda c: c["model"].update({field: value}))
        t0 = time.perf_counter()
        with pytest.raises(CheckpointError, match=match) as info:
            load_checkpoint(bad)
        assert "\n" not in str(info.value) and time.perf_counter() - t0 < 10, field


def test_check_checkpoint_compares_with_another_model_config(tmp_path):
    path = save_checkpoint(tmp_path / "a.safetensors", _model())
    check = checkpoint.check_checkpoint
    assert check(path, SMALL)["architecture"] == "sam3d-eval/reference-icosphere"
    assert check(path, dataclasses.replace(SMALL, template_radius=0.7))  # same shapes
    with pytest.raises(CheckpointError, match=r"dec_pos.weight has shape \(8, 27\), this model config builds \(16, 27\)"):
        check(path, dataclasses.replace(SMALL, decoder_hidden=16))
    with pytest.raises(CheckpointError, match="missing"):
        check(path, dataclasses.replace(SMALL, decoder_layers=4))
    assert checkpoint.model_shapes(SMALL)["dec_out.weight"] == (6, 8)
