"""LPIPS throughput (16 pairs of 256x256) against the `lpips` package's math, side by side in one run.

    python -m pytest benchmarks/bench_lpips.py --benchmark-group-by=group --benchmark-columns=min,median,mean,rounds

The `lpips` package cannot be imported here (it imports torchvision, broken on this CPU-only torch), so the
peer below is a line-by-line TRANSCRIPTION of its forward pass (lpips 0.1.4: `ScalingLayer`,
`pretrained_networks.alexnet`/`vgg16` built on torchvision's `features` Sequential and sliced the same way,
`normalize_tensor`, `NetLinLayer` with its Dropout in eval mode, `spatial_average`, summed), loaded with the
same weights. Rows: package math; ours (channels-last backbone, the default); for alex also ours with the
backbone kept contiguous (NCHW), to show where the gain comes from (a vgg run takes seconds, so only two
rows there). Weights: the golden npz's seeded random AlexNet and a seeded random VGG-16 (speed does not
depend on the values); linear layers from the installed package's files. Every row checks its numbers
against the package math (rtol 1e-5). pairs/s = 16 / min time is stored in extra_info.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections import namedtuple

import numpy as np
import pytest
import torch
from torch import nn

from sam3d_eval.metrics.lpips import LPIPS
from sizes import sizes_for

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "tests", "golden", "lpips_alex_reference.npz")
S = sizes_for("lpips")  # benchmarks/sizes.py
PAIRS, SIDE = S.PAIRS, S.SIDE


# ------------------------------------------------ transcription of the lpips package (peer, not our code)


class PkgScalingLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.Tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.Tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def forward(self, inp):
        return (inp - self.shift) / self.scale


def tv_alexnet_features() -> nn.Sequential:  # torchvision.models.alexnet().features
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )  # fmt: skip


def tv_vgg16_features() -> nn.Sequential:  # torchvision.models.vgg16().features (cfg "D", no batch norm)
    layers, c_in = [], 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c_in = v
    return nn.Sequential(*layers)


class PkgSlicedNet(nn.Module):
    """pretrained_networks.alexnet / vgg16: five slices of the torchvision features, outputs after each."""

    def __init__(self, features: nn.Sequential, bounds):
        super().__init__()
        self.slices = nn.ModuleList()
        for lo, hi in bounds:
            s = nn.Sequential()
            for x in range(lo, hi):
                s.add_module(str(x), features[x])
            self.slices.append(s)
        for p in self.parameters():
            p.requires_grad = False

    def forward(self, X):
        outs = []
        h = X
        for s in self.slices:
            h = s(h)
            outs.append(h)
        return namedtuple("Outputs", ["relu1", "relu2", "relu3", "relu4", "relu5"])(*outs)


def pkg_normalize_tensor(in_feat, eps=1e-10):
    norm_factor = torch.sqrt(torch.sum(in_feat**2, dim=1, keepdim=True))
    return in_feat / (norm_factor + eps)


def pkg_spatial_average(in_tens, keepdim=True):
    return in_tens.mean([2, 3], keepdim=keepdim)


class PkgNetLinLayer(nn.Module):
    def __init__(self, chn_in, chn_out=1, use_dropout=True):
        super().__init__()
        layers = [nn.Dropout()] if use_dropout else []
        layers += [nn.Conv2d(chn_in, chn_out, 1, stride=1, padding=0, bias=False)]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class PkgLPIPS(nn.Module):
    """lpips.LPIPS(net=..., version='0.1') forward, spatial=False, lpips=True, eval mode."""

    def __init__(self, net: str, features_sd, lin_path):
        super().__init__()
        self.scaling_layer = PkgScalingLayer()
        if net == "alex":
            feats, bounds, self.chns = tv_alexnet_features(), [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)], [
                64, 192, 384, 256, 256]  # fmt: skip
        else:
            feats, bounds, self.chns = tv_vgg16_features(), [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)], [
                64, 128, 256, 512, 512]  # fmt: skip
        feats.load_state_dict(features_sd)
        self.net = PkgSlicedNet(feats, bounds)
        self.L = 5
        self.lins = nn.ModuleList([PkgNetLinLayer(c) for c in self.chns])
        lin_sd = torch.load(lin_path, map_location="cpu", weights_only=True)
        self.lins.load_state_dict({k.replace("lin", "", 1): v for k, v in lin_sd.items()})
        self.eval()

    def forward(self, in0, in1, normalize=False):
        if normalize:
            in0, in1 = 2 * in0 - 1, 2 * in1 - 1
        in0_input, in1_input = self.scaling_layer(in0), self.scaling_layer(in1)
        outs0, outs1 = self.net.forward(in0_input), self.net.forward(in1_input)
        diffs = {}
        for kk in range(self.L):
            feats0, feats1 = pkg_normalize_tensor(outs0[kk]), pkg_normalize_tensor(outs1[kk])
            diffs[kk] = (feats0 - feats1) ** 2
        res = [pkg_spatial_average(self.lins[kk](diffs[kk]), keepdim=True) for kk in range(self.L)]
        val = 0
        for layer in range(self.L):
            val += res[layer]
        return val


# ------------------------------------------------------------------------------------------- fixtures


def lin_path(net: str) -> str:
    spec = importlib.util.find_spec("lpips")
    if spec is None:
        pytest.skip("the lpips package (its linear-layer weight files) is not installed: make install adds it")
    return os.path.join(list(spec.submodule_search_locations)[0], "weights", "v0.1", f"{net}.pth")


def backbone_sd(net: str) -> dict[str, torch.Tensor]:
    if net == "alex":
        z = np.load(GOLDEN)
        return {k[len("backbone/features.") :]: torch.from_numpy(z[k]) for k in z.files if k.startswith("backbone/")}
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, v in tv_vgg16_features().state_dict().items():
        fan_in = v[0].numel() if v.dim() == 4 else 1
        sd[k] = torch.randn(v.shape, generator=g) * ((2.0 / fan_in) ** 0.5 if v.dim() == 4 else 0.01)
    return sd


def image_pairs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(PAIRS, 3, SIDE, SIDE, generator=g) * 2 - 1
    b = (a + 0.2 * torch.randn(PAIRS, 3, SIDE, SIDE, generator=g)).clamp(-1, 1)
    return a, b


_MODELS: dict = {}


def models(net: str):
    if net not in _MODELS:
        sd = backbone_sd(net)
        ours = LPIPS(net, backbone_weights={"features." + k: v for k, v in sd.items()})
        nchw = LPIPS(net, backbone_weights={"features." + k: v for k, v in sd.items()})
        nchw.to(memory_format=torch.contiguous_format)
        _MODELS[net] = {"package_math": PkgLPIPS(net, sd, lin_path(net)), "ours": ours, "ours_nchw": nchw}
    return _MODELS[net]


ROUNDS = S.ROUNDS  # net -> (rounds, warmup rounds): one vgg pass takes seconds
CASES = [(net, impl) for net in ("alex", "vgg") for impl in S.PEERS if not (net == "vgg" and impl == "ours_nchw")]


@pytest.mark.parametrize("net,impl", CASES)
def test_lpips_16_pairs_256(benchmark, net, impl):
    benchmark.group = f"lpips-{net} {PAIRS} pairs {SIDE}x{SIDE}"
    m = models(net)
    a, b = image_pairs()
    rounds, warmup = ROUNDS[net]
    with torch.no_grad():
        if "ref" not in m:
            m["ref"] = m["package_math"](a, b).flatten()
        if impl != "package_math":  # same numbers before timing, or the timing is moot
            torch.testing.assert_close(m[impl](a, b).flatten(), m["ref"], rtol=1e-5, atol=0)
    benchmark.pedantic(lambda: m[impl](a, b).flatten(), rounds=rounds, iterations=1, warmup_rounds=warmup)
    if benchmark.enabled:
        benchmark.extra_info["pairs_per_s"] = PAIRS / benchmark.stats.stats.min


@pytest.mark.parametrize("net", ["alex"])
def test_lpips_interleaved_ratio(benchmark, net):
    """Package math and ours alternated round by round, so load swings on a shared machine hit both alike.

    The benchmark row times ours; extra_info holds both sides' min/median seconds and the speed-up ratios.
    """
    benchmark.group = f"lpips-{net} interleaved"
    m = models(net)
    a, b = image_pairs()
    with torch.no_grad():  # same numbers before timing
        torch.testing.assert_close(m["ours"](a, b).flatten(), m["package_math"](a, b).flatten(), rtol=1e-5, atol=0)
    times: dict[str, list[float]] = {"package_math": [], "ours": []}

    def one_round():
        for impl in times:
            t0 = time.perf_counter()
            m[impl](a, b)
            times[impl].append(time.perf_counter() - t0)

    one_round()  # warm-up (oneDNN primitive creation)
    times = {k: [] for k in times}
    benchmark.pedantic(one_round, rounds=S.INTERLEAVED, iterations=1)
    for impl, ts in times.items():
        benchmark.extra_info[f"{impl}_min_s"] = min(ts)
        benchmark.extra_info[f"{impl}_median_s"] = float(np.median(ts))
    benchmark.extra_info["speedup_min"] = min(times["package_math"]) / min(times["ours"])
    benchmark.extra_info["speedup_median"] = float(np.median(times["package_math"]) / np.median(times["ours"]))
    print(f"\n{net} interleaved: " + ", ".join(f"{k}={v:.3f}" for k, v in benchmark.extra_info.items()))
