"""The stage-1 and stage-2 loss mixes (training/README.md), computed with the suite's own kernels.

Terms (each logged on its own, unweighted; `LossWeights` holds every weight):
- chamfer: `metrics.chamfer_distance` (pytorch3d: squared L2, directional means summed) between points
  sampled from the predicted mesh (`ops.sample_points_from_meshes`, differentiable) and from the GT mesh.
- texture_l2, texture_perceptual: unlit renders (`render.render_views`, shade=False) of prediction and
  GT from `views` fixed orbit cameras; mean squared error of the RGB images (object over white), and a
  perceptual distance: LPIPS-alex when its weights are present (`metrics.LPIPS` lookup), else the
  substitute below. Weighted together by `texture` ("texture L2 + perceptual 0.5").
- smoothness: `metrics.mesh_normal_consistency`; laplacian: `metrics.mesh_laplacian_smoothing` (uniform).
- vgg (stage 2): LPIPS-VGG-16 on the same renders when its weights are present, else the substitute.
- gan (stage 2): non-saturating GAN (Goodfellow et al. 2014): the generator term softplus(-D(fake)) on
  renders of the prediction from the input camera; `Discriminator` is trained with softplus(-D(real)) +
  softplus(D(fake)) on the masked input images of the real domain.

Substitute perceptual network: pretrained backbones cannot be downloaded here. Without the torchvision
weights a term uses `RandomFeaturePerceptual`: a fixed 3-layer conv network (3x3 convolutions with 16, 32,
64 channels, ReLU, 2x2 average pooling between), Kaiming-normal weights drawn from a seeded stream,
never trained; distance = LPIPS's formula with unit linear weights (channel-unit-normalised features,
squared difference, spatial mean, summed over the three layers). Random conv features are a known
perceptual prior (Ulyanov et al. 2018 "Deep Image Prior"; He et al. 2016 "random weights" texture
synthesis), but they are NOT VGG: `LossMix.substitutes` says which network each term used, and the loop
writes it into every checkpoint and log.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import LPIPS, WeightsNotFoundError, chamfer_distance, mesh_laplacian_smoothing, mesh_normal_consistency
from ..ops import sample_points_from_meshes
from ..render import PerspectiveCameras, orbit_cameras, render_views
from ..seeding import stream_seed, torch_generator
from ..structures import Meshes

__all__ = [
    "Discriminator",
    "LossConfig",
    "LossMix",
    "LossWeights",
    "RandomFeaturePerceptual",
    "discriminator_loss",
    "perceptual_network",
]


@dataclass(frozen=True)
class LossWeights:
    """Weight of each term in the total (0 switches a term off and skips computing it)."""

    chamfer: float = 1.0
    texture: float = 0.5  # applied to texture_l2 + texture_perceptual
    smoothness: float = 0.1
    laplacian: float = 0.05
    vgg: float = 0.0
    gan: float = 0.0

    @classmethod
    def stage(cls, stage: int, **overrides: float) -> "LossWeights":
        """Stage 1 the four terms; stage 2 adds VGG perceptual (0.1) and GAN (0.001).

        The seed gives no GAN weight. At 0.01 the generator term (softplus, ~0.7 and rising as the
        discriminator wins) outweighed Chamfer (~2e-3 m^2) within 50 demo steps and degraded the geometry of
        both domains (training/README.md); 0.001 keeps it an appearance prior."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        base = cls() if stage == 1 else cls(vgg=0.1, gan=0.001)
        return dataclasses.replace(base, **overrides)

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LossConfig:
    """How the terms are computed: `num_points` surface samples per mesh for Chamfer; `render_size` side
    (pixels) and `view_azimuths`/`view_elevations` (degrees, orbit distance `view_distance`) of the texture
    renders; `perceptual` "auto" (LPIPS when weights exist, else the substitute) or "substitute"; the
    substitute's `perceptual_seed` (also the base of the point-sampling streams); `cache_gt` keeps each GT
    mesh's points and renders (they never change) keyed by its id."""

    weights: LossWeights = LossWeights()
    num_points: int = 1000
    render_size: int = 32
    view_azimuths: tuple[float, ...] = (30.0, 210.0)
    view_elevations: tuple[float, ...] = (20.0, 20.0)
    view_distance: float = 2.8
    perceptual: str = "auto"
    perceptual_seed: int = 0
    cache_gt: bool = True

    def __post_init__(self) -> None:
        if self.perceptual not in ("auto", "substitute"):
            raise ValueError(f"perceptual must be 'auto' or 'substitute', got {self.perceptual!r}")
        if len(self.view_azimuths) != len(self.view_elevations) or not self.view_azimuths:
            raise ValueError("view_azimuths and view_elevations need the same (non-zero) length")
        if self.num_points <= 0 or self.render_size < 16:
            raise ValueError("num_points must be positive and render_size >= 16")


class RandomFeaturePerceptual(nn.Module):
    """The documented substitute perceptual distance (module docstring); `(B, 3, H, W)` images in [0, 1]
    -> `(B,)`. Frozen; differentiable w.r.t. its inputs."""

    def __init__(self, seed: int = 0, channels: Sequence[int] = (16, 32, 64)):
        super().__init__()
        gen = torch_generator(seed, "random-feature-perceptual")
        convs, c_in = [], 3
        for c in channels:
            conv = nn.Conv2d(c_in, c, 3, 1, 1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / (9 * c_in)) ** 0.5)
                conv.bias.zero_()
            convs.append(conv)
            c_in = c
        self.convs = nn.ModuleList(convs)
        self.description = f"random-features(conv3x3 {list(channels)}, seed={seed})"
        self.requires_grad_(False)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = x * 2.0 - 1.0
        for i, conv in enumerate(self.convs):
            if i:
                x = F.avg_pool2d(x, 2)
            x = F.relu(conv(x))
            feats.append(x)
        return feats

    def forward(self, in0: torch.Tensor, in1: torch.Tensor) -> torch.Tensor:
        total = in0.new_zeros(in0.shape[0])
        for f0, f1 in zip(self._features(in0), self._features(in1)):
            f0 = f0 / (f0.norm(dim=1, keepdim=True) + 1e-10)
            f1 = f1 / (f1.norm(dim=1, keepdim=True) + 1e-10)
            total = total + ((f0 - f1) ** 2).sum(1).mean(dim=(1, 2))
        return total


class _LPIPSTerm(nn.Module):
    """LPIPS on [0, 1] images with the same call as the substitute."""

    def __init__(self, lpips: LPIPS):
        super().__init__()
        self.lpips = lpips
        self.description = f"lpips-{lpips.net_name} v{lpips.version} (pretrained torchvision backbone)"

    def forward(self, in0: torch.Tensor, in1: torch.Tensor) -> torch.Tensor:
        return self.lpips(in0, in1, normalize=True)


def perceptual_network(net: str, mode: str = "auto", seed: int = 0) -> nn.Module:
    """LPIPS(`net`) when its weights are found (mode "auto"), else `RandomFeaturePerceptual(seed)`.

    The module's `description` names what it is, for checkpoints and logs."""
    if mode == "auto":
        try:
            return _LPIPSTerm(LPIPS(net=net))
        except WeightsNotFoundError:
            pass
    return RandomFeaturePerceptual(seed=stream_seed(seed, net))


class Discriminator(nn.Module):
    """A small patch discriminator: `(B, 3, H, W)` images in [0, 1] -> `(B,)` logits (mean over patches).
    GroupNorm (not BatchNorm) keeps a sample's logit independent of its batch."""

    def __init__(self, channels: Sequence[int] = (16, 32, 64)):
        super().__init__()
        layers, c_in = [], 3
        for i, c in enumerate(channels):
            layers.append(nn.Conv2d(c_in, c, 4, 2, 1))
            if i:
                layers.append(nn.GroupNorm(min(8, c), c))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c
        layers.append(nn.Conv2d(c_in, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0).mean(dim=(1, 2, 3))


def discriminator_loss(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN discriminator loss: mean softplus(-D(real)) + mean softplus(D(fake)).
    `fake` is detached here so only the discriminator learns from it."""
    return F.softplus(-disc(real)).mean() + F.softplus(disc(fake.detach())).mean()


class LossMix(nn.Module):
    """One stage's loss mix (module docstring). Holds the frozen perceptual networks; the discriminator
    lives in the loop (it has its own optimiser) and is passed to `forward`.

    `forward(pred, gt, sample_keys, *, images, masks, cameras, discriminator)` returns a dict of 0-dim
    tensors: every active term unweighted, "total" (the weighted sum the generator minimises), and, for the
    GAN, "gan_real" `(B_r, 3, S, S)` / "gan_fake" images to train the discriminator on.
    """

    def __init__(self, config: LossConfig | None = None):
        super().__init__()
        self.config = config = config or LossConfig()
        w = config.weights
        self.texture_net = perceptual_network("alex", config.perceptual, config.perceptual_seed) if w.texture else None
        self.vgg_net = perceptual_network("vgg", config.perceptual, config.perceptual_seed) if w.vgg else None
        self._cameras: dict[tuple, PerspectiveCameras] = {}
        self._gt_cache: dict[str, dict[str, torch.Tensor]] = {}

    @property
    def substitutes(self) -> dict[str, str]:
        """Which network each perceptual term runs ("texture_perceptual", "vgg")."""
        out = {}
        if self.texture_net is not None:
            out["texture_perceptual"] = self.texture_net.description
        if self.vgg_net is not None:
            out["vgg"] = self.vgg_net.description
        return out

    def _gt(self, kind: str, gt: Meshes, ids: Sequence[str], make) -> torch.Tensor:
        """GT points `(B, P, 3)` or renders, made without autograd, cached per id when `cache_gt`."""
        if not self.config.cache_gt:
            with torch.no_grad():
                return make(gt, ids)
        cache = self._gt_cache.setdefault(kind, {})
        missing = [b for b, i in enumerate(ids) if i not in cache]
        if missing:
            with torch.no_grad():
                made = make(gt[missing], [ids[b] for b in missing])
            for j, b in enumerate(missing):
                cache[ids[b]] = made[j]
        return torch.stack([cache[i] for i in ids])

    def views(self, dtype: torch.dtype, device: torch.device) -> PerspectiveCameras:
        key = (dtype, str(device))
        if key not in self._cameras:
            c = self.config
            s = c.render_size
            self._cameras[key] = orbit_cameras(c.view_azimuths, c.view_elevations, c.view_distance, (s, s),
                                               dtype=dtype, device=device)
        return self._cameras[key]

    def forward(
        self,
        pred: Meshes,
        gt: Meshes,
        sample_keys: Sequence[int | str],
        *,
        images: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        cameras: PerspectiveCameras | None = None,
        discriminator: nn.Module | None = None,
        real_rows: torch.Tensor | None = None,
        gt_ids: Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Args: pred / gt B vertex-coloured meshes; `sample_keys` one key per sample naming its random
        streams (e.g. "step/sample_id"), so a sample's draws never depend on its batch; for the GAN the input
        `images` `(B, 3, H, W)`, `masks` `(B, 1, H, W)`, the input `cameras` (B cameras, or None: the first
        loss view), the `discriminator` and `real_rows` `(B,)` bool (which images are real-domain).
        `gt_ids` name the GT meshes (default `sample_keys`): the GT points (stream (seed, id, "gt_points"))
        and renders depend on nothing else, so with `cache_gt` they are computed once per id."""
        c, w = self.config, self.config.weights
        if len(pred) != len(gt) or len(sample_keys) != len(pred):
            raise ValueError(f"pred ({len(pred)}), gt ({len(gt)}) and sample_keys ({len(sample_keys)}) differ in length")
        seed = c.perceptual_seed
        if gt_ids is None:
            gt_ids = [str(k) for k in sample_keys]
        elif len(gt_ids) != len(gt):
            raise ValueError(f"gt_ids has {len(gt_ids)} entries for {len(gt)} meshes")
        terms: dict[str, torch.Tensor] = {}
        dtype, device = pred.verts_packed().dtype, pred.device
        if w.chamfer:
            pseeds = [stream_seed(seed, str(k), "pred_points") for k in sample_keys]
            x = sample_points_from_meshes(pred, c.num_points, seed=pseeds)
            y = self._gt("points", gt, gt_ids, lambda m, ids: sample_points_from_meshes(
                m, c.num_points, seed=[stream_seed(seed, str(i), "gt_points") for i in ids]))
            terms["chamfer"] = chamfer_distance(x, y)[0]
        if w.texture or w.vgg:
            views = self.views(dtype, device)
            rp = render_views(pred, views, shade=False).rgb  # (B, V, S, S, 3)
            rg = self._gt("renders", gt, gt_ids, lambda m, ids: render_views(m, views, shade=False).rgb)
            rp = rp.flatten(0, 1).permute(0, 3, 1, 2)
            rg = rg.flatten(0, 1).permute(0, 3, 1, 2)
            V = len(views)
            if w.texture:
                terms["texture_l2"] = F.mse_loss(rp, rg)
                terms["texture_perceptual"] = self.texture_net(rp, rg).reshape(-1, V).mean()
            if w.vgg:
                terms["vgg"] = self.vgg_net(rp, rg).reshape(-1, V).mean()
        if w.smoothness:
            terms["smoothness"] = mesh_normal_consistency(pred)
        if w.laplacian:
            terms["laplacian"] = mesh_laplacian_smoothing(pred, method="uniform")
        total = sum(
            (getattr(w, name) * terms[name] for name in ("chamfer", "smoothness", "laplacian", "vgg") if name in terms),
            torch.zeros((), dtype=dtype, device=device),
        )
        if w.texture:
            total = total + w.texture * (terms["texture_l2"] + terms["texture_perceptual"])
        if w.gan:
            if discriminator is None or images is None or masks is None:
                raise ValueError("the GAN term needs images, masks and the discriminator")
            fake, real = self.gan_images(pred, images, masks, cameras, real_rows)
            terms["gan"] = F.softplus(-discriminator(fake)).mean()
            total = total + w.gan * terms["gan"]
            terms["gan_fake"], terms["gan_real"] = fake, real
        terms["total"] = total
        return terms

    def gan_images(
        self,
        pred: Meshes,
        images: torch.Tensor,
        masks: torch.Tensor,
        cameras: PerspectiveCameras | None,
        real_rows: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fake: the prediction rendered (unlit, over black) from each input camera, `(B, 3, S, S)`; real:
        the real-domain input images masked to the object (over black), resized to S (all rows when the
        batch holds no real-domain image)."""
        s = self.config.render_size
        if cameras is None:
            fake = render_views(pred, self.views(images.dtype, images.device)[0], shade=False, background=(0, 0, 0)).rgb
        else:
            cams = _resized(cameras, s)
            fake = render_views(pred, cams, per_mesh_cameras=True, shade=False, background=(0, 0, 0)).rgb
        fake = fake[:, 0].permute(0, 3, 1, 2)
        real = F.interpolate(images * masks.to(images.dtype), size=(s, s), mode="bilinear", align_corners=False,
                             antialias=True)
        if real_rows is not None and bool(real_rows.any()):
            real = real[real_rows]
        return fake, real


def _resized(cameras: PerspectiveCameras, side: int) -> PerspectiveCameras:
    """The same cameras seeing a `side` x `side` image (focal length and principal point rescaled)."""
    H, W = cameras.image_size
    scale = torch.tensor([side / W, side / H], dtype=cameras.R.dtype, device=cameras.R.device)
    return PerspectiveCameras(cameras.R, cameras.T, cameras.focal_length * scale, (side, side),
                              cameras.principal_point * scale)


def weighted_terms(terms: Mapping[str, Any]) -> dict[str, float]:
    """Scalar terms as floats for logging (images and non-scalars left out)."""
    return {k: float(v.detach()) for k, v in terms.items() if torch.is_tensor(v) and v.dim() == 0}
