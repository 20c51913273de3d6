"""LPIPS against the `lpips` package's golden outputs and a float64 transcription of the package's math."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam3d_eval.metrics.lpips import BACKBONE_FILES, LPIPS, WeightsLoadError, WeightsNotFoundError

CASES = ("a", "b", "c")
RTOL = 1e-5


@pytest.fixture(scope="module")
def golden(golden_dir):
    return dict(np.load(golden_dir / "lpips_alex_reference.npz"))


@pytest.fixture(scope="module")
def alex_sd(golden):
    return {k[len("backbone/") :]: torch.from_numpy(v) for k, v in golden.items() if k.startswith("backbone/")}


@pytest.fixture(scope="module")
def alex_path(alex_sd, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "alexnet_random.pth"
    torch.save(alex_sd, path)
    return path


@pytest.fixture(scope="module")
def alex(alex_path):
    return LPIPS("alex", backbone_weights=alex_path)


def _lpips_dir() -> str:
    spec = importlib.util.find_spec("lpips")
    assert spec is not None, "the lpips package (weights data) must be installed for these tests"
    return list(spec.submodule_search_locations)[0]


def _assert_rel(actual: torch.Tensor, expected: np.ndarray, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(actual.detach().cpu().numpy(), expected, rtol=rtol, atol=0)


# --------------------------------------------------------------------------------------------- golden


@pytest.mark.parametrize("case", CASES)
def test_golden_every_case(alex, golden, case):
    in0, in1 = torch.from_numpy(golden[f"{case}/in0"]), torch.from_numpy(golden[f"{case}/in1"])
    out = alex(in0, in1)
    assert out.shape == (in0.shape[0],) and out.dtype == torch.float32
    _assert_rel(out, golden[f"{case}/lpips"])
    per_layer = alex.per_layer(in0, in1)
    assert per_layer.shape == (in0.shape[0], 5)
    _assert_rel(per_layer, golden[f"{case}/per_layer"])
    torch.testing.assert_close(per_layer.sum(1), out, rtol=1e-6, atol=0)
    in0_01, in1_01 = torch.from_numpy(golden[f"{case}/in0_01"]), torch.from_numpy(golden[f"{case}/in1_01"])
    _assert_rel(alex(in0_01, in1_01, normalize=True), golden[f"{case}/lpips_normalize"])


def test_golden_from_hub_cache(alex_sd, golden, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would override TORCH_HOME
    assert torch.hub.get_dir() == str(tmp_path / "hub")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    # A full torchvision checkpoint also has classifier weights (small stand-ins here); they must be ignored.
    sd = dict(alex_sd, **{"classifier.1.weight": torch.zeros(16, 8), "classifier.1.bias": torch.zeros(16)})
    torch.save(sd, tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    model = LPIPS("alex")
    in0, in1 = torch.from_numpy(golden["b/in0"]), torch.from_numpy(golden["b/in1"])
    _assert_rel(model(in0, in1), golden["b/lpips"])


def test_batch_equals_single(alex, golden):
    in0, in1 = torch.from_numpy(golden["a/in0"]), torch.from_numpy(golden["a/in1"])
    batched = alex(in0, in1)
    single = torch.cat([alex(in0[i : i + 1], in1[i : i + 1]) for i in range(in0.shape[0])])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=0)


def test_contiguous_layout_opt_out(alex_path, golden):
    model = LPIPS("alex", backbone_weights=alex_path)
    assert model.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    model.to(memory_format=torch.contiguous_format)
    assert model.net.features[3].weight.is_contiguous()
    in0, in1 = torch.from_numpy(golden["c/in0"]), torch.from_numpy(golden["c/in1"])
    _assert_rel(model(in0, in1), golden["c/lpips"])


def test_identical_inputs_give_zero(alex, golden):
    in0 = torch.from_numpy(golden["a/in0"])
    assert torch.equal(alex(in0, in0), torch.zeros(in0.shape[0]))


# ------------------------------------------------------------------------------------ weights errors


def test_missing_backbone_raises_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    expected = os.path.join(str(tmp_path), "hub", "checkpoints", BACKBONE_FILES["alex"])
    with pytest.raises(WeightsNotFoundError) as info:
        LPIPS("alex")
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    assert expected in msg and "backbone_weights=" in msg and "alexnet-owt-7be5be79.pth" in msg
    with pytest.raises(WeightsNotFoundError, match="vgg16-397923af.pth"):
        LPIPS("vgg")
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        LPIPS("alex", backbone_weights=missing)


def test_missing_linear_weights_raise(alex_sd, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="linear_weights"):
        LPIPS("alex", backbone_weights=alex_sd, linear_weights=tmp_path / "lin.pth")


def test_wrong_backbone_layout_raises(alex_sd):
    bad = {k: v for k, v in alex_sd.items() if k != "features.8.weight"}
    with pytest.raises(ValueError, match="features.8.weight"):
        LPIPS("alex", backbone_weights=bad)
    bad = dict(alex_sd, **{"features.10.weight": torch.zeros(256, 256, 5, 5)})
    with pytest.raises(ValueError, match="features.10.weight"):
        LPIPS("alex", backbone_weights=bad)
    with pytest.raises(ValueError, match="net"):
        LPIPS("squeeze", backbone_weights=alex_sd)


def test_corrupt_weights_file_is_a_user_error(alex_sd, alex_path, tmp_path):
    """A corrupt, truncated or non-state-dict file raises WeightsLoadError (a ValueError: CLI exit 2) naming
    the file and the problem, for the backbone and the linear layers; loading never unpickles code."""
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a torch file\n" * 10)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(alex_path.read_bytes()[:5000])
    for bad in (garbage, truncated):
        with pytest.raises(WeightsLoadError) as info:
            LPIPS("alex", backbone_weights=bad)
        assert isinstance(info.value, ValueError) and str(bad) in str(info.value) and "cannot read" in str(info.value)
        with pytest.raises(WeightsLoadError, match="linear-layer"):
            LPIPS("alex", backbone_weights=alex_sd, linear_weights=bad)
    not_sd = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_sd)
    with pytest.raises(WeightsLoadError, match="state dict"):
        LPIPS("alex", backbone_weights=not_sd)
    wrong = tmp_path / "wrong_layout.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(WeightsLoadError, match="torchvision-format") as info:
        LPIPS("alex", backbone_weights=wrong)
    assert str(wrong) in str(info.value)

    class Evil:  # a pickle that would run code: weights_only=True refuses it
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"features.0.weight": Evil()}, evil)
    with pytest.raises(WeightsLoadError, match="cannot read"):
        LPIPS("alex", backbone_weights=evil)


def test_bad_inputs_raise(alex):
    x = torch.zeros(2, 3, 64, 64)
    with pytest.raises(ValueError, match="shapes differ"):
        alex(x, torch.zeros(2, 3, 64, 63))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        alex(torch.zeros(2, 1, 64, 64), torch.zeros(2, 1, 64, 64))
    with pytest.raises(ValueError, match=r"H, W >= 31"):
        alex(torch.zeros(1, 3, 30, 64), torch.zeros(1, 3, 30, 64))


# ------------------------------------------------------------------ float64 transcription of the package


def _vgg16_torchvision_sd(seed: int) -> dict[str, torch.Tensor]:
    """A torchvision-layout vgg16 state dict (features and classifier) with seeded He-scaled weights."""
    g = torch.Generator().manual_seed(seed)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    sd, idx, c_in = {}, 0, 3
    for v in cfg:
        if v == "M":
            idx += 1
            continue
        sd[f"features.{idx}.weight"] = torch.randn(v, c_in, 3, 3, generator=g) * (2.0 / (9 * c_in)) ** 0.5
        sd[f"features.{idx}.bias"] = torch.randn(v, generator=g) * 0.01
        idx, c_in = idx + 2, v
    sd["classifier.0.weight"] = torch.zeros(8, 8)  # stand-in for the (unused) classifier keys
    return sd


def _reference_lpips(net: str, sd, lin_path, in0, in1, version="0.1"):
    """The `lpips` package's forward (ScalingLayer, torchvision features sliced as in pretrained_networks,
    normalize_tensor, NetLinLayer, spatial_average, sum) in float64 with plain functional ops."""
    dd = torch.float64
    w = {k: v.to(dd) for k, v in sd.items()}
    if net == "alex":
        # slices of tv.alexnet().features: [0,2), [2,5), [5,8), [8,10), [10,12)
        ops = [("c", 0, 4, 2), ("r",), ("m", 3, 2), ("c", 3, 1, 2), ("r",), ("m", 3, 2), ("c", 6, 1, 1), ("r",),
               ("c", 8, 1, 1), ("r",), ("c", 10, 1, 1), ("r",)]  # fmt: skip
        ends = [2, 5, 8, 10, 12]
    else:
        ops, i = [], 0
        for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]:
            if v == "M":
                ops.append(("m", 2, 2))
                i += 1
            else:
                ops += [("c", i, 1, 1), ("r",)]
                i += 2
        ends = [4, 9, 16, 23, 30]
    lin = torch.load(lin_path, map_location="cpu", weights_only=True)

    def feats(x):
        out = []
        for j, op in enumerate(ops):
            if op[0] == "c":
                x = F.conv2d(x, w[f"features.{op[1]}.weight"], w[f"features.{op[1]}.bias"], stride=op[2], padding=op[3])
            elif op[0] == "r":
                x = F.relu(x)
            else:
                x = F.max_pool2d(x, op[1], op[2])
            if j + 1 in ends:
                out.append(x)
        return out

    def scale(x):
        if version != "0.1":
            return x
        # The package's buffers are torch.Tensor (float32) constants, so a float64 model sees them rounded.
        shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float32).to(dd).view(1, 3, 1, 1)
        sc = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float32).to(dd).view(1, 3, 1, 1)
        return (x - shift) / sc

    def normalize_tensor(f, eps=1e-10):
        return f / (torch.sqrt(torch.sum(f**2, dim=1, keepdim=True)) + eps)

    f0, f1 = feats(scale(in0.to(dd))), feats(scale(in1.to(dd)))
    res = []
    for k in range(5):
        diff = (normalize_tensor(f0[k]) - normalize_tensor(f1[k])) ** 2
        res.append(F.conv2d(diff, lin[f"lin{k}.model.1.weight"].to(dd)).mean([2, 3]).flatten())
    return torch.stack(res, 1)


def _pair(shape, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(shape, generator=g)).clamp(-1, 1)
    return a, b


def test_vgg_loads_torchvision_layout():
    sd = _vgg16_torchvision_sd(0)
    model = LPIPS("vgg", backbone_weights=sd)
    conv_keys = {k for k in sd if k.startswith("features.")}
    assert set("features." + k for k in model.net.features.state_dict()) == conv_keys
    assert len(conv_keys) == 26  # 13 convolutions
    for k, v in model.net.features.state_dict().items():
        assert torch.equal(v, sd["features." + k])
    assert model.chns == (64, 128, 256, 512, 512)
    assert not any(p.requires_grad for p in model.parameters())


def test_vgg_matches_float64_package_math():
    sd = _vgg16_torchvision_sd(1)
    lin_path = os.path.join(_lpips_dir(), "weights", "v0.1", "vgg.pth")
    model = LPIPS("vgg", backbone_weights=sd)
    in0, in1 = _pair((2, 3, 40, 36), seed=2)
    ref = _reference_lpips("vgg", sd, lin_path, in0, in1)
    torch.testing.assert_close(model.per_layer(in0, in1).double(), ref, rtol=RTOL, atol=0)
    torch.testing.assert_close(model(in0, in1).double(), ref.sum(1), rtol=RTOL, atol=0)
    # In float64 the module must agree with the transcription to rounding: same math, not just close.
    torch.testing.assert_close(model.double().per_layer(in0.double(), in1.double()), ref, rtol=1e-10, atol=0)


def test_alex_v00_matches_float64_package_math(alex_sd):
    lin_path = os.path.join(_lpips_dir(), "weights", "v0.0", "alex.pth")
    model = LPIPS("alex", version="0.0", backbone_weights=alex_sd).double()
    in0, in1 = _pair((2, 3, 48, 52), seed=3)
    ref = _reference_lpips("alex", alex_sd, lin_path, in0, in1, version="0.0")
    torch.testing.assert_close(model.per_layer(in0.double(), in1.double()), ref, rtol=1e-10, atol=0)


# ------------------------------------------------------------------------------------------ as a loss


def test_no_graph_for_evaluation(alex, golden):
    out = alex(torch.from_numpy(golden["a/in0"]), torch.from_numpy(golden["a/in1"]))
    assert not out.requires_grad and out.grad_fn is None


def test_differentiable_directional_derivative(alex_sd):
    model = LPIPS("alex", backbone_weights=alex_sd).double()
    in0, in1 = _pair((1, 3, 40, 40), seed=4)
    in0, in1 = in0.double().requires_grad_(True), in1.double()
    out = model(in0, in1)
    assert out.requires_grad
    (grad,) = torch.autograd.grad(out.sum(), in0)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    v = torch.randn(in0.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    h = 1e-5
    with torch.no_grad():
        fd = (model(in0 + h * v, in1) - model(in0 - h * v, in1)).item() / (2 * h)
    np.testing.assert_allclose((grad * v).sum().item(), fd, rtol=1e-5)
    # The grad path gives the same value as the no-grad path.
    with torch.no_grad():
        torch.testing.assert_close(model(in0, in1), out.detach(), rtol=1e-12, atol=0)


def test_cpu_autocast_bfloat16_within_1e3(alex, golden):
    # The CUDA fp16 path cannot run here; CPU bfloat16 autocast exercises the same code (reduced-precision
    # backbone, float32 tail) with a coarser format.
    in0, in1 = torch.from_numpy(golden["c/in0"]), torch.from_numpy(golden["c/in1"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = alex(in0, in1)
    assert mixed.dtype == torch.float32
    exact = torch.from_numpy(golden["c/lpips"])
    assert not torch.equal(mixed, exact)  # autocast really took effect
    torch.testing.assert_close(mixed, exact, rtol=0, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_channels_last_autocast_within_1e3(alex_path, golden):
    model = LPIPS("alex", backbone_weights=alex_path).cuda()
    in0 = torch.from_numpy(golden["c/in0"]).cuda()
    in1 = torch.from_numpy(golden["c/in1"]).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        mixed = model(in0, in1)
    assert mixed.dtype == torch.float32
    full = LPIPS("alex", backbone_weights=alex_path).cuda().to(memory_format=torch.contiguous_format)
    torch.backends.cudnn.allow_tf32, tf32 = False, torch.backends.cudnn.allow_tf32
    try:
        exact = full(in0, in1)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    _assert_rel(exact, golden["c/lpips"], rtol=1e-4)
    torch.testing.assert_close(mixed, exact, rtol=0, atol=1e-3)


def test_zero_feature_column_gives_finite_gradient():
    # After ReLU a whole feature column can be exactly 0; the package's sqrt(sum f^2) then back-propagates
    # NaN (inf * 0), which would poison a training loss. Same value, finite gradient here.
    g = torch.Generator().manual_seed(6)
    f = torch.rand(4, 3, 2, 2, generator=g, dtype=torch.float64)
    f[0, :, 0, 0] = 0
    f[3, :, 1, 1] = 0
    f.requires_grad_(True)
    w = torch.rand(3, generator=g, dtype=torch.float64)
    value = LPIPS._layer_term(f, 2, w)

    def normalize_tensor(t):
        return t / (torch.sqrt((t**2).sum(1, keepdim=True)) + 1e-10)

    expected = ((normalize_tensor(f[:2]) - normalize_tensor(f[2:])) ** 2).mean((2, 3)) @ w
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)
    (grad,) = torch.autograd.grad(value.sum(), f)
    assert torch.isfinite(grad).all()
