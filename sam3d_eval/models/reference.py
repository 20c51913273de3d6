"""The reference single-image-to-mesh model: a small CNN encoder and an icosphere-deforming decoder.

RGB image + visible-object mask in, a vertex-coloured triangle mesh out, as the SoftRas (Liu et al. 2019)
and Pixel2Mesh (Wang et al. 2018) baselines do: the encoder reads the masked image into one feature
vector; a per-vertex MLP, shared by all vertices of a fixed icosphere template and conditioned on that
vector, predicts each vertex's offset from the template and its RGB colour. The mesh keeps the template's
connectivity, so it is always closed and manifold.

Frames: with `frame="view"` (default) the decoder predicts in the camera's frame (OpenCV axes, object
centred at the origin) in view units (`camera_frames`: half the image height at the object's depth), and
`forward` scales the result to world units and rotates it into the world frame with the camera; the model
then never has to guess the viewing direction or the metric size. With `frame="world"` it predicts world
coordinates directly (and needs no camera).

Sizes: `ReferenceConfig.preset(name)` gives "tiny" (~0.1M parameters, the demo), "small" (~0.4M), "base"
(~3.7M), "large" (~19M) and "xl" (~66M); every field can be set on its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config_io import dataclass_from_mapping
from ..render.cameras import PerspectiveCameras
from ..structures.meshes import Meshes
from ..structures.textures import TexturesVertex

__all__ = ["ARCHITECTURE", "PRESETS", "ReferenceConfig", "ReferenceModel", "icosphere"]

ARCHITECTURE = "sam3d-eval/reference-icosphere"
ARCHITECTURE_VERSION = 1


def icosphere(level: int = 2, radius: float = 1.0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """An icosphere: the regular icosahedron subdivided `level` times (each triangle into four, new
    vertices pushed to the sphere).

    Returns verts `(V, 3)` with V = 10 * 4**level + 2 and faces `(F, 3)` int64 with F = 20 * 4**level,
    counter-clockwise seen from outside (normals point outwards). Built in float64, returned in `dtype`.
    """
    if not isinstance(level, int) or level < 0 or level > 7:
        raise ValueError(f"icosphere level must be an integer in [0, 7], got {level!r}")
    if not radius > 0:
        raise ValueError(f"icosphere radius must be positive, got {radius}")
    t = (1.0 + math.sqrt(5.0)) / 2.0
    verts = [
        (-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0),
        (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
        (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1),
    ]  # fmt: skip
    faces = [
        (0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11),
        (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6), (7, 1, 8),
        (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
        (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1),
    ]  # fmt: skip
    v = torch.tensor(verts, dtype=torch.float64)
    f = torch.tensor(faces, dtype=torch.int64)
    for _ in range(level):
        # Midpoint of every undirected edge, each made once: edge (a, b) with a < b -> new vertex id.
        e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 0)
        e_sorted = e.sort(dim=1).values
        uniq, inverse = torch.unique(e_sorted, dim=0, return_inverse=True)
        mid = v.shape[0] + inverse.reshape(3, -1)  # (3, F): midpoints of edges 01, 12, 20
        v = torch.cat([v, (v[uniq[:, 0]] + v[uniq[:, 1]]) / 2.0], 0)
        a, b, c = f[:, 0], f[:, 1], f[:, 2]
        ab, bc, ca = mid[0], mid[1], mid[2]
        f = torch.cat([
            torch.stack([a, ab, ca], 1), torch.stack([b, bc, ab], 1),
            torch.stack([c, ca, bc], 1), torch.stack([ab, bc, ca], 1),
        ], 0)  # fmt: skip
    v = v / v.norm(dim=1, keepdim=True) * radius
    return v.to(dtype), f


@dataclass(frozen=True)
class ReferenceConfig:
    """Every hyper-parameter of `ReferenceModel`; its JSON form (`to_dict`) is what a checkpoint stores.

    input_size: side of the square input the image and mask are resized to (pixels); a multiple of
        2**len(channels). channels: output channels of each stride-2 encoder stage. blocks_per_stage: extra
        stride-1 convolutions per stage. feature_dim: length of the image feature vector. decoder_hidden,
        decoder_layers: width and depth of the per-vertex MLP. ico_level: icosphere subdivision level of
        the template (level 3 = 642 vertices). template_radius: its radius (view units for frame="view"). pos_freqs:
        sinusoidal encoding frequencies of template positions. frame: "view" or "world" (module docstring).
        mask_background: multiply the image by the mask before encoding.
    """

    input_size: int = 64
    channels: tuple[int, ...] = (8, 16, 32, 64)
    blocks_per_stage: int = 0
    feature_dim: int = 64
    decoder_hidden: int = 64
    decoder_layers: int = 3
    ico_level: int = 3
    template_radius: float = 0.5
    pos_freqs: int = 4
    frame: str = "view"
    mask_background: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.channels or any(c <= 0 for c in self.channels):
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {self.channels}")
        if self.input_size <= 0 or self.input_size % (2 ** len(self.channels)):
            raise ValueError(
                f"input_size {self.input_size} must be a positive multiple of 2**len(channels) = {2 ** len(self.channels)}"
            )
        for name in ("feature_dim", "decoder_hidden", "decoder_layers"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.blocks_per_stage < 0 or self.pos_freqs < 0:
            raise ValueError("blocks_per_stage and pos_freqs must be >= 0")
        if self.frame not in ("view", "world"):
            raise ValueError(f"frame must be 'view' or 'world', got {self.frame!r}")
        if not 0 <= self.ico_level <= 6:
            raise ValueError(f"ico_level must lie in [0, 6], got {self.ico_level}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ReferenceConfig":
        """Inverse of `to_dict`; unknown keys are refused (a config for another model version)."""

        def convert(kw: dict[str, Any]) -> dict[str, Any]:
            if "channels" in kw:
                kw["channels"] = tuple(kw["channels"])
            return kw

        return dataclass_from_mapping(cls, d, where="ReferenceConfig", noun="fields", convert=convert)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "ReferenceConfig":
        """A named size (`PRESETS`) with fields overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)


PRESETS: dict[str, ReferenceConfig] = {
    "tiny": ReferenceConfig(),
    "small": ReferenceConfig(channels=(16, 32, 64, 128), feature_dim=128, decoder_hidden=128),
    "base": ReferenceConfig(input_size=128, channels=(32, 64, 128, 256, 256), blocks_per_stage=1,
                            feature_dim=256, decoder_hidden=256, decoder_layers=4, ico_level=4),
    "large": ReferenceConfig(input_size=128, channels=(64, 128, 256, 512, 512), blocks_per_stage=1,
                             feature_dim=1024, decoder_hidden=512, decoder_layers=4, ico_level=4),
    "xl": ReferenceConfig(input_size=128, channels=(96, 192, 384, 768, 768), blocks_per_stage=2,
                          feature_dim=2048, decoder_hidden=1024, decoder_layers=6, ico_level=5),
}  # fmt: skip


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: a sample's output never depends on the rest of its batch, so DDP shards and
    # evaluation batches give the same numbers as one big batch.
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(min(8, c_out), c_out), nn.ReLU(inplace=True))


def _positional_encoding(x: torch.Tensor, freqs: int) -> torch.Tensor:
    """`(V, 3)` -> `(V, 3 + 6 * freqs)`: x, sin(2^k pi x), cos(2^k pi x)."""
    if freqs == 0:
        return x
    scales = (2.0 ** torch.arange(freqs, dtype=x.dtype, device=x.device)) * math.pi
    xs = x[:, None, :] * scales[None, :, None]  # (V, K, 3)
    return torch.cat([x, xs.sin().flatten(1), xs.cos().flatten(1)], 1)


class ReferenceModel(nn.Module):
    """The reference model (module docstring); implements the `Predictor` protocol.

    `forward(images (B, 3, H, W) float in [0, 1], masks (B, 1, H, W) bool or float, rotations (B, 3, 3) or
    None, scales (B,) or None)` returns verts `(B, V, 3)` (world frame) and colours `(B, V, 3)` in (0, 1), differentiable;
    `faces` `(F, 3)` int64 is the shared template connectivity. `predict` wraps it for evaluation.
    """

    name = "reference"

    def __init__(self, config: ReferenceConfig | None = None):
        super().__init__()
        self.config = config = config or ReferenceConfig()
        stages, c_in = [], 4
        for c in config.channels:
            blocks = [_conv(c_in, c, 2)] + [_conv(c, c, 1) for _ in range(config.blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            c_in = c
        self.encoder = nn.Sequential(*stages)
        side = config.input_size // 2 ** len(config.channels)
        # Flattening the last map (not pooling it) keeps where the silhouette lies, which shape needs.
        self.to_feature = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, config.feature_dim), nn.ReLU(inplace=True))

        verts, faces = icosphere(config.ico_level, config.template_radius)
        self.register_buffer("template", verts, persistent=False)
        self.register_buffer("faces", faces, persistent=False)
        h = config.decoder_hidden
        pos_dim = 3 + 6 * config.pos_freqs
        # First layer of the MLP on concat(position, feature), split so the feature half runs once per image.
        self.dec_pos = nn.Linear(pos_dim, h)
        self.dec_feat = nn.Linear(config.feature_dim, h, bias=False)
        self.dec_hidden = nn.ModuleList(nn.Linear(h, h) for _ in range(config.decoder_layers - 1))
        self.dec_out = nn.Linear(h, 6)
        # Start from the template in mid grey: offsets and colour logits begin at zero.
        nn.init.zeros_(self.dec_out.weight)
        nn.init.zeros_(self.dec_out.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """`(B, 3, H, W)`, `(B, 1, H, W)` -> `(B, feature_dim)`."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        if masks.dim() != 4 or masks.shape[1] != 1 or masks.shape[0] != images.shape[0] or masks.shape[2:] != images.shape[2:]:
            raise ValueError(f"masks must be (B, 1, H, W) matching images {tuple(images.shape)}, got {tuple(masks.shape)}")
        m = masks.to(images.dtype)
        x = images * m if self.config.mask_background else images
        x = torch.cat([x, m], 1)
        s = self.config.input_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return self.to_feature(self.encoder(x))

    def forward(
        self, images: torch.Tensor, masks: torch.Tensor, rotations: torch.Tensor | None = None,
        scales: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """rotations `(B, 3, 3)` world -> camera; scales `(B,)` world units per view unit (`camera_frames`)."""
        feat = self.encode(images, masks)
        pos = _positional_encoding(self.template.to(feat.dtype), self.config.pos_freqs)
        hid = self.dec_pos(pos)[None] + self.dec_feat(feat)[:, None]  # (B, V, h)
        hid = F.relu(hid)
        for layer in self.dec_hidden:
            hid = F.relu(layer(hid))
        out = self.dec_out(hid)
        verts = self.template.to(out.dtype)[None] + out[..., :3]
        colours = torch.sigmoid(out[..., 3:])
        if self.config.frame == "view":
            if rotations is None:
                raise ValueError("this model predicts in the camera frame (frame='view') and needs camera rotations")
            if rotations.shape != (verts.shape[0], 3, 3):
                raise ValueError(f"rotations must be ({verts.shape[0]}, 3, 3), got {tuple(rotations.shape)}")
            if scales is not None:
                verts = verts * scales.to(verts.dtype).reshape(-1, 1, 1)
            verts = verts @ rotations.to(verts.dtype)  # row vectors: x_world = R^T x_view
        return verts, colours

    def to_meshes(self, verts: torch.Tensor, colours: torch.Tensor) -> Meshes:
        """Batch of B vertex-coloured meshes from `forward`'s output (gradients kept)."""
        faces = self.faces
        return Meshes(list(verts.unbind(0)), [faces] * verts.shape[0], TexturesVertex(list(colours.unbind(0))))

    @property
    def identity(self) -> str:
        """`reference-<sha256 of config and weights, 16 hex>`: names the exact weights in result keys."""
        h = hashlib.sha256(repr(sorted(self.config.to_dict().items())).encode())
        for k, v in sorted(self.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return f"reference-{h.hexdigest()[:16]}"

    @torch.no_grad()
    def predict(self, images: torch.Tensor, masks: torch.Tensor, cameras: Any = None) -> Meshes:
        """The `Predictor` call: images `(B, 3, H, W)` float in [0, 1], masks `(B, 1, H, W)` bool, cameras a
        `PerspectiveCameras` of B cameras, a sequence of B camera records (the manifest's JSON: "R", "T",
        "K", "image_size"), or None (only for frame="world"). Returns B vertex-coloured meshes in the frame
        the cameras' extrinsics start from (the GT mesh's frame for the built-in benchmark)."""
        was_training = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            R, s = camera_frames(cameras, images.shape[0], device) if cameras is not None else (None, None)
            verts, colours = self(images.to(device), masks.to(device), R, s)
        finally:
            self.train(was_training)
        return self.to_meshes(verts, colours)


def camera_frames(cameras: Any, batch: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotations `(B, 3, 3)` (world -> camera) and scales `(B,)` of the view frame the model predicts in.

    One view unit is `depth * tan(fov_y / 2)` world units, with depth = |T| (the distance from the camera to
    the frame's origin, the object's centre) and tan(fov_y / 2) = (H / 2) / f_y: the size at the object's
    depth of half the image height, so the image fixes the shape in view units and the camera the metric
    scale. `cameras`: a `PerspectiveCameras` (B or 1 cameras) or a sequence of B dicts with "R", "T", "K"
    and "image_size" ([H, W])."""
    if isinstance(cameras, PerspectiveCameras):
        R, T, fy, H = cameras.R, cameras.T, cameras.focal_length[:, 1], float(cameras.image_size[0])
    else:
        records = list(cameras)
        if len(records) != batch or any(not isinstance(c, dict) for c in records):
            raise ValueError(f"cameras must be a PerspectiveCameras or {batch} camera dicts, got {type(cameras).__name__}")
        try:
            R = torch.tensor([c["R"] for c in records], dtype=torch.float64)
            T = torch.tensor([c["T"] for c in records], dtype=torch.float64)
            fy = torch.tensor([c["K"][1][1] for c in records], dtype=torch.float64)
            H = torch.tensor([float(c["image_size"][0]) for c in records], dtype=torch.float64)
        except (KeyError, TypeError, IndexError, ValueError) as err:
            raise ValueError(f"camera records need R (3x3), T (3), K (3x3) and image_size: {err}") from None
    if R.dim() != 3 or R.shape[1:] != (3, 3) or R.shape[0] not in (1, batch):
        raise ValueError(f"cameras must give (B, 3, 3) rotations for B = {batch}, got {tuple(R.shape)}")
    scale = T.norm(dim=-1) * (torch.as_tensor(H, dtype=T.dtype) / 2.0) / fy
    return R.expand(batch, 3, 3).float().to(device), scale.expand(batch).float().to(device)
