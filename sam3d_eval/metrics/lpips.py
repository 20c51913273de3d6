"""LPIPS perceptual distance, equal to the `lpips` package v0.1 (Zhang et al. 2018), torchvision-free.

Definition (as in docs/definitions.md): inputs in [-1, 1] are shifted and scaled per channel (the package's
ScalingLayer), run through an AlexNet or VGG-16 feature stack (torchvision layout, tapped after relu1..relu5
for alex and relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 for vgg), each tap is unit-normalised along channels
(`f / (||f||_2 + 1e-10)`), the squared difference is weighted by the package's linear 1x1 layer, averaged
over space and summed over layers.

Weights are data, never downloaded:
- backbone: a torchvision-format state dict (`features.<i>.weight`/`bias`; a full classifier checkpoint is
  fine, other keys are ignored), from `backbone_weights` (a path or a mapping) or from torchvision's own file
  name in the torch hub cache (`torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth`,
  `vgg16-397923af.pth`). Missing weights raise `WeightsNotFoundError`; a file that exists but is corrupt
  or not a state dict of the right layout raises `WeightsLoadError` (a ValueError naming the file). Files are
  read with `torch.load(weights_only=True)` only.
- linear layers: the `weights/v<version>/<net>.pth` files the `lpips` package ships, located with
  `importlib.util.find_spec` without importing the package (it imports torchvision), or `linear_weights`.

All parameters are frozen, so with inputs that do not require grad no graph is built (evaluation); with
inputs that require grad the distance is differentiable and can be used as a loss.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Mapping
from typing import Union

import torch
from torch import nn

__all__ = ["LPIPS", "WeightsNotFoundError", "WeightsLoadError", "BACKBONE_FILES"]

WeightsSource = Union[str, os.PathLike, Mapping[str, torch.Tensor], None]

# torchvision's checkpoint file names (what `torchvision.models.<net>(weights=...)` stores in the hub cache).
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
_BACKBONE_URL = "https://download.pytorch.org/models/"

# ("conv", in, out, kernel, stride, padding) | ("relu",) | ("pool", kernel, stride); indices equal torchvision's.
_ALEX_LAYERS = [
    ("conv", 3, 64, 11, 4, 2), ("relu",), ("pool", 3, 2),
    ("conv", 64, 192, 5, 1, 2), ("relu",), ("pool", 3, 2),
    ("conv", 192, 384, 3, 1, 1), ("relu",),
    ("conv", 384, 256, 3, 1, 1), ("relu",),
    ("conv", 256, 256, 3, 1, 1), ("relu",),
]  # fmt: skip
_ALEX_TAPS = (1, 4, 7, 9, 11)


def _vgg16_layers() -> list[tuple]:
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    layers, c_in = [], 3
    for v in cfg:
        if v == "M":
            layers.append(("pool", 2, 2))
        else:
            layers += [("conv", c_in, v, 3, 1, 1), ("relu",)]
            c_in = v
    return layers


_VGG_LAYERS = _vgg16_layers()
_VGG_TAPS = (3, 8, 15, 22, 29)

_NETS = {
    "alex": (_ALEX_LAYERS, _ALEX_TAPS, (64, 192, 384, 256, 256), 31),
    "vgg": (_VGG_LAYERS, _VGG_TAPS, (64, 128, 256, 512, 512), 16),
}  # layers, tap indices, tap channels, smallest input side that reaches the last tap


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights needed by a metric are not on disk (nothing is ever downloaded)."""


class WeightsLoadError(ValueError):
    """A weights file exists but cannot be used (corrupt, not a state dict, wrong layout); the message names
    the file and the problem. A user error (ValueError), not a bug."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def _load_state_dict(path: str, what: str) -> dict[str, torch.Tensor]:
    """`torch.load(path, weights_only=True)` as a state dict of tensors, or `WeightsLoadError`."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling, zip and storage errors all mean "not a usable file"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsLoadError(path, f"cannot read {what} (corrupt, truncated or not a torch weights file): {first}") from err
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not sd:
        raise WeightsLoadError(path, f"{what} must hold a non-empty state dict (name -> tensor), got {type(sd).__name__}")
    bad = [k for k, v in sd.items() if not torch.is_tensor(v)]
    if bad:
        raise WeightsLoadError(path, f"{what}: entries {bad[:5]} are not tensors")
    return dict(sd)


class _Features(nn.Module):
    """Convolutional feature stack with torchvision's module indices, returning the tapped activations."""

    def __init__(self, layers: list[tuple], taps: tuple[int, ...]):
        super().__init__()
        mods: list[nn.Module] = []
        for spec in layers:
            if spec[0] == "conv":
                _, c_in, c_out, k, s, p = spec
                mods.append(nn.Conv2d(c_in, c_out, k, stride=s, padding=p))
            elif spec[0] == "relu":
                mods.append(nn.ReLU(inplace=True))  # never hits a tapped tensor: a pool or conv follows each tap
            else:
                mods.append(nn.MaxPool2d(spec[1], stride=spec[2]))
        self.features = nn.Sequential(*mods)
        self.taps = taps

    def iter_taps(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """Yield the tapped activations in order; a consumer that drops each one keeps peak memory low."""
        for i, layer in enumerate(self.features[: self.taps[-1] + 1]):
            x = layer(x)
            if i in self.taps:
                yield x

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.iter_taps(x))


def _default_backbone_path(net: str) -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints", BACKBONE_FILES[net])


def _load_backbone(net: str, source: WeightsSource) -> dict[str, torch.Tensor]:
    if isinstance(source, Mapping):
        return dict(source)
    path = os.fspath(source) if source is not None else _default_backbone_path(net)
    if not os.path.isfile(path):
        default = _default_backbone_path(net)
        raise WeightsNotFoundError(
            f"LPIPS(net={net!r}) needs torchvision-format {'AlexNet' if net == 'alex' else 'VGG-16'} weights and "
            f"found none at {path!r}. Provide them either with LPIPS(net={net!r}, backbone_weights='/path/to/"
            f"{BACKBONE_FILES[net]}') or by putting torchvision's file {BACKBONE_FILES[net]} "
            f"({_BACKBONE_URL}{BACKBONE_FILES[net]}) at {default!r} (torch.hub.get_dir()/checkpoints; set "
            f"TORCH_HOME to move it). Nothing is downloaded."
        )
    return _load_state_dict(path, f"LPIPS {net} backbone weights")


def _default_linear_path(net: str, version: str) -> str:
    spec = importlib.util.find_spec("lpips")  # locates the package without executing it (it imports torchvision)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFoundError(
            f"LPIPS(net={net!r}) reads its linear layers from the `lpips` package's weights/v{version}/{net}.pth, "
            f"but the `lpips` package is not installed. Install it (`pip install lpips --no-deps` is enough) or "
            f"pass linear_weights='/path/to/{net}.pth'."
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "weights", f"v{version}", f"{net}.pth")


def _load_linear(net: str, version: str, source: WeightsSource) -> dict[str, torch.Tensor]:
    if isinstance(source, Mapping):
        return dict(source)
    path = os.fspath(source) if source is not None else _default_linear_path(net, version)
    if not os.path.isfile(path):
        raise WeightsNotFoundError(
            f"LPIPS(net={net!r}, version={version!r}) linear weights not found at {path!r}; pass "
            f"linear_weights='/path/to/{net}.pth' (the file the `lpips` package ships in weights/v{version}/)."
        )
    return _load_state_dict(path, f"LPIPS {net} linear-layer weights")


def _linear_weight(sd: Mapping[str, torch.Tensor], k: int, channels: int) -> torch.Tensor:
    # The package saves NetLinLayer as Sequential(Dropout, Conv) -> "model.1"; without dropout it is "model.0".
    for key in (f"lin{k}.model.1.weight", f"lin{k}.model.0.weight", f"lin{k}.weight"):
        if key in sd:
            w = sd[key]
            if w.numel() != channels:
                raise ValueError(f"LPIPS: {key} has {w.numel()} weights, expected {channels}")
            return w.detach().to(torch.float32).reshape(channels)
    raise ValueError(f"LPIPS: linear weights lack lin{k}.model.1.weight (keys: {sorted(sd)[:8]}...)")


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity, the `lpips` package's `LPIPS(net, version)` forward.

    Args:
        net: "alex" or "vgg" backbone.
        version: "0.1" (default, inputs shifted/scaled by the ScalingLayer) or "0.0" (no scaling; the
            package's original release).
        backbone_weights: torchvision-format state dict, as a path or a mapping; default: torchvision's file
            in the torch hub cache. Raises `WeightsNotFoundError` when absent, `WeightsLoadError` when unusable.
        linear_weights: the package's linear-layer state dict, as a path or a mapping; default: the file
            shipped with the installed `lpips` package.

    Call: `lpips(in0, in1, normalize=False)` with `(B, 3, H, W)` float images in [-1, 1] ([0, 1] with
    `normalize=True`) returns `(B,)`; `lpips.per_layer(...)` returns the `(B, L)` per-layer terms whose sum
    over L is the distance. The backbone is stored channels-last (inputs are converted to match); on CUDA
    the module may be called under `torch.autocast`: the backbone runs in the reduced precision while
    normalisation, difference and averaging stay in float32 (answer within 1e-3 of float32). Float32 CUDA
    convolutions follow torch's TF32 switch (`torch.backends.cudnn.allow_tf32`, on by default), as the
    package's do; turn it off for agreement with CPU float32 to ~1e-5.
    """

    def __init__(
        self,
        net: str = "alex",
        version: str = "0.1",
        backbone_weights: WeightsSource = None,
        linear_weights: WeightsSource = None,
    ):
        super().__init__()
        if net not in _NETS:
            raise ValueError(f"LPIPS: net must be 'alex' or 'vgg', got {net!r}")
        if version not in ("0.0", "0.1"):
            raise ValueError(f"LPIPS: version must be '0.1' or '0.0', got {version!r}")
        layers, taps, chns, min_side = _NETS[net]
        self.net_name, self.version, self.chns, self.min_side = net, version, chns, min_side

        self.net = _Features(layers, taps)
        sd = _load_backbone(net, backbone_weights)
        src = "backbone weights" if isinstance(backbone_weights, Mapping) else (
            os.fspath(backbone_weights) if backbone_weights is not None else _default_backbone_path(net)
        )
        feats = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
        expected = self.net.features.state_dict()
        missing = sorted(set(expected) - set(feats), key=lambda s: int(s.split(".")[0]))
        if missing:
            raise WeightsLoadError(
                src,
                f"LPIPS(net={net!r}): backbone state dict is not torchvision-format; missing "
                f"{['features.' + m for m in missing][:6]}",
            )
        for k, v in expected.items():
            if feats[k].shape != v.shape:
                raise WeightsLoadError(
                    src,
                    f"LPIPS(net={net!r}): backbone features.{k} has shape {tuple(feats[k].shape)}, "
                    f"expected {tuple(v.shape)}",
                )
        self.net.features.load_state_dict({k: feats[k].to(torch.float32) for k in expected})
        # Channels-last convolutions and max-pools are faster on CPU (oneDNN, ~1.5x here) and on CUDA tensor
        # cores; inputs follow the weights' layout, so `.to(memory_format=torch.contiguous_format)` opts out.
        self.net.to(memory_format=torch.channels_last)

        lin = _load_linear(net, version, linear_weights)
        for k, c in enumerate(chns):
            self.register_buffer(f"lin{k}", _linear_weight(lin, k, c))
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def extra_repr(self) -> str:
        """The module's repr details.

        Returns:
            ``"net=<name>, version=<version>"``, e.g. ``"net='alex', version='0.1'"``.
        """
        return f"net={self.net_name!r}, version={self.version!r}"

    def _check(self, in0: torch.Tensor, in1: torch.Tensor) -> None:
        for name, t in (("in0", in0), ("in1", in1)):
            if t.dim() != 4 or t.shape[1] != 3:
                raise ValueError(f"LPIPS: {name} must be (B, 3, H, W), got {tuple(t.shape)}")
            if not t.is_floating_point():
                raise ValueError(f"LPIPS: {name} must be a floating-point image, got {t.dtype}")
        if in0.shape != in1.shape:
            raise ValueError(f"LPIPS: in0 and in1 shapes differ ({tuple(in0.shape)} vs {tuple(in1.shape)})")
        if min(in0.shape[2:]) < self.min_side:
            raise ValueError(
                f"LPIPS(net={self.net_name!r}) needs H, W >= {self.min_side}, got {tuple(in0.shape[2:])}"
            )

    def per_layer(self, in0: torch.Tensor, in1: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Per-layer LPIPS terms `(B, L)` (L = 5) whose sum over L is `forward`'s value.

        float32 (float64 for a float64 module); differentiable w.r.t. the inputs.

        Args:
            in0: `(B, 3, H, W)` float RGB images in [-1, 1] ([0, 1] with `normalize=True`); H, W >= 31 for
                "alex", >= 16 for "vgg".
            in1: `(B, 3, H, W)` float images, same shape.
            normalize: map [0, 1] inputs to [-1, 1] first (default False).

        Returns:
            `(B, 5)` per-layer distances (one per tapped layer, shallow to deep), float32 (float64 for a
            float64 module).

        Raises:
            ValueError: if an input is not a `(B, 3, H, W)` floating-point tensor, the shapes differ, or H
                or W is below the backbone's minimum side.
        """
        self._check(in0, in1)
        b = in0.shape[0]
        if normalize:
            in0, in1 = 2 * in0 - 1, 2 * in1 - 1
        # One backbone pass over both images: half the kernel launches, same arithmetic per image.
        x = torch.cat([in0, in1], 0)
        if self.version == "0.1":
            x = (x - self.shift) / self.scale
        w0 = self.net.features[0].weight
        if w0.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        x = x.to(w0.dtype)
        terms = []
        for k, f in enumerate(self.net.iter_taps(x)):
            # float32 tail even under autocast: squared norms of reduced-precision features overflow fp16.
            with torch.autocast(device_type=f.device.type, enabled=False):
                f = f if f.dtype == torch.float64 else f.float()
                terms.append(self._layer_term(f, b, getattr(self, f"lin{k}").to(f.dtype)))
        return torch.stack(terms, dim=1)

    @staticmethod
    def _layer_term(f: torch.Tensor, b: int, w: torch.Tensor) -> torch.Tensor:
        """`(B,)` spatial mean of `w . (f0/(|f0|+eps) - f1/(|f1|+eps))^2` for `f = cat(f0, f1)` `(2B, C, h, w)`."""
        # The package's normalize_tensor: f / (sqrt(sum_c f^2) + 1e-10). vector_norm's backward is 0 (not NaN)
        # where a feature column is all zero, which keeps the loss usable after dead ReLUs.
        n = torch.linalg.vector_norm(f, dim=1, keepdim=True)
        if torch.is_grad_enabled() and f.requires_grad:
            d = f[:b] / (n[:b] + 1e-10) - f[b:] / (n[b:] + 1e-10)
            d = d * d
        else:  # in place: the tail's large temporaries cost more than its arithmetic on CPU
            n.add_(1e-10)
            d = torch.div(f[:b], n[:b]).sub_(torch.div(f[b:], n[b:])).square_()
        # Spatial mean before the 1x1 linear layer: both are linear maps, so the order does not matter.
        return d.mean(dim=(2, 3)) @ w

    def forward(self, in0: torch.Tensor, in1: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """LPIPS distance `(B,)` float32 between `in0` and `in1` `(B, 3, H, W)` (see class docstring).

        Args:
            in0: `(B, 3, H, W)` float RGB images in [-1, 1] ([0, 1] with `normalize=True`); H, W >= 31 for
                "alex", >= 16 for "vgg".
            in1: `(B, 3, H, W)` float images, same shape.
            normalize: map [0, 1] inputs to [-1, 1] first (default False).

        Returns:
            `(B,)` LPIPS distance (lower is more similar), float32 (float64 for a float64 module);
            differentiable w.r.t. inputs that require grad.

        Raises:
            ValueError: if an input is not a `(B, 3, H, W)` floating-point tensor, the shapes differ, or H
                or W is below the backbone's minimum side.
        """
        return self.per_layer(in0, in1, normalize).sum(dim=1)
