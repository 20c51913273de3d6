"""Gaussian-splat PLY files (3DGS / SAM 3D Objects layout) and sampling them to points.

File layout (the 3DGS reference code's `save_ply`, which SAM 3D Objects' Gaussian export follows): one
`vertex` element per Gaussian with x, y, z (mean), nx, ny, nz (unused, optional), f_dc_0..2 (DC spherical
harmonic per colour channel), f_rest_0..(3K-1) (optional higher-order SH, channel-major: K coefficients of
R, then of G, then of B), opacity (a logit), scale_0..2 (log standard deviations along the Gaussian's own
axes) and rot_0..3 (a quaternion w, x, y, z, not necessarily normalised).

`splats_to_points` turns a splat into a point cloud so splats and meshes are scored on equal terms.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..structures import Pointclouds
from ..transforms import quaternion_to_matrix
from .pointcloud_io import PointCloudReadError, _check_finite, read_ply_vertices

SH_C0 = 0.28209479177387814  # Y_0^0 = 1 / (2 sqrt(pi)): rgb = 0.5 + SH_C0 * f_dc, as the 3DGS rasteriser
DEFAULT_OPACITY_THRESHOLD = 0.5
# The largest stored log scale accepted: exp overflows float32 just above 88.7 (a margin for rounding).
MAX_LOG_SCALE = 88.0

Weighting = Literal["opacity_area", "opacity_volume", "uniform"]


@dataclass
class Splats:
    """Activated Gaussians of one splat file (G Gaussians, float32).

    means `(G, 3)`; scales `(G, 3)` standard deviations (exp of the stored log scales); rotations `(G, 4)`
    unit quaternions (w, x, y, z); opacities `(G,)` in (0, 1) (sigmoid of the stored logits); sh_dc `(G, 3)`;
    sh_rest `(G, K, 3)` or None.
    """

    means: torch.Tensor
    scales: torch.Tensor
    rotations: torch.Tensor
    opacities: torch.Tensor
    sh_dc: torch.Tensor
    sh_rest: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.means.shape[0]

    def colors(self) -> torch.Tensor:
        """View-independent RGB `(G, 3)` in [0, 1] from the DC term: clamp(0.5 + SH_C0 * f_dc, 0, 1)."""
        return (0.5 + SH_C0 * self.sh_dc).clamp(0.0, 1.0)

    def rotation_matrices(self) -> torch.Tensor:
        """`(G, 3, 3)` rotations of the Gaussians' axes (columns), from the (w, x, y, z) quaternions."""
        return quaternion_to_matrix(self.rotations)

    def covariances(self) -> torch.Tensor:
        """`(G, 3, 3)` covariances R diag(scales^2) R^T, as 3DGS `build_covariance_from_scaling_rotation`."""
        M = self.rotation_matrices() * self.scales[:, None, :]
        return M @ M.transpose(1, 2)


def load_splats(path: str | os.PathLike, device: str | torch.device = "cpu") -> Splats:
    """Read a Gaussian-splat PLY; opacity is sigmoid-activated, scales exp-activated, quaternions normalised.

    Raises `PointCloudReadError` (a `ValueError`) naming the file when it is missing or corrupt or lacks
    one of x, y, z, f_dc_0..2, opacity, scale_0..2, rot_0..3, or when a mean is NaN or inf. A log scale that
    is NaN or above `MAX_LOG_SCALE` (88, where exp overflows float32) gives a NaN or infinite scale here;
    `splats_to_points` refuses it only when the Gaussian is kept (a transparent floater with an absurd scale
    is dropped by the opacity threshold anyway), rather than clamping it, since no clamp gives it a
    meaningful size.
    """
    props = read_ply_vertices(path)
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [k for k in required if k not in props]
    if missing:
        raise PointCloudReadError(f"{path}: not a Gaussian-splat PLY, missing vertex properties {missing}")
    _check_finite(path, np.stack([props[k] for k in ("x", "y", "z")], axis=1), "Gaussian means")
    f = lambda keys: torch.as_tensor(np.stack([props[k] for k in keys], axis=1).astype(np.float32), device=device)  # noqa: E731
    rot = f(["rot_0", "rot_1", "rot_2", "rot_3"])
    norm = rot.norm(dim=1, keepdim=True)
    if bool((norm == 0).any()) or not bool(torch.isfinite(rot).all()):
        raise PointCloudReadError(f"{path}: zero or non-finite rotation quaternions")
    rest_keys = sorted((k for k in props if k.startswith("f_rest_")), key=lambda k: int(k[7:]))
    sh_rest = None
    if rest_keys:
        if len(rest_keys) % 3 or rest_keys != [f"f_rest_{i}" for i in range(len(rest_keys))]:
            raise PointCloudReadError(f"{path}: f_rest_* properties must be f_rest_0..f_rest_(3K-1), got {len(rest_keys)}")
        sh_rest = f(rest_keys).reshape(-1, 3, len(rest_keys) // 3).transpose(1, 2).contiguous()
    return Splats(
        means=f(["x", "y", "z"]),
        scales=torch.exp(f(["scale_0", "scale_1", "scale_2"])),
        rotations=rot / norm,
        opacities=torch.sigmoid(f(["opacity"])[:, 0]),
        sh_dc=f(["f_dc_0", "f_dc_1", "f_dc_2"]),
        sh_rest=sh_rest,
    )


def splats_to_points(
    splats: Splats,
    num_points: int,
    opacity_threshold: float = DEFAULT_OPACITY_THRESHOLD,
    weighting: Weighting = "opacity_area",
    seed: int = 0,
) -> Pointclouds:
    """Sample `num_points` points from the Gaussians whose opacity is at least `opacity_threshold`.

    Each point picks a kept Gaussian at random with probability proportional to its weight, then is drawn
    from that Gaussian, x = mean + R diag(scales) z with z ~ N(0, I) (untruncated, so the samples have
    exactly the Gaussian's mean and covariance).

    opacity_threshold: 0.5 by default: a Gaussian that is more transparent than opaque at its centre is
        treated as a floater or fill-in, not as surface. 0 keeps every Gaussian.
    weighting: how points are shared among Gaussians:
        ``"opacity_area"`` (default) opacity x s1 * s2, the product of the two largest scales: splats of
        a trained model are flat discs along the surface, so this is opacity times the disc's area and
        makes the sample roughly uniform over the surface, as area-weighted sampling of a mesh is;
        ``"opacity_volume"`` opacity x s0 * s1 * s2; ``"uniform"`` the same for every kept Gaussian.

    Returns a one-cloud `Pointclouds` with float32 points, normals (each Gaussian's shortest axis, sign
    arbitrary) and features = the Gaussian's DC colour in [0, 1]. Raises `ValueError` when no Gaussian is
    kept, when a kept Gaussian's scale is NaN or overflowed float32 (a log scale above `MAX_LOG_SCALE`), or
    when the weights overflow float32 (scales so large that no surface is meant).
    """
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    keep = splats.opacities >= opacity_threshold
    if not bool(keep.any()):
        raise ValueError(f"no Gaussian has opacity >= {opacity_threshold} (max {float(splats.opacities.max()):.3g})")
    op, sc = splats.opacities[keep], splats.scales[keep]
    bad = ~torch.isfinite(sc).all(dim=1)
    if bool(bad.any()):
        raise ValueError(f"{int(bad.sum())} of {int(keep.sum())} kept Gaussians have log scales (scale_*) that are "
                         f"NaN or above {MAX_LOG_SCALE:g}, where exp overflows float32; not a usable splat")
    if weighting == "uniform":
        w = torch.ones_like(op)
    elif weighting == "opacity_volume":
        w = op * sc.prod(1)
    elif weighting == "opacity_area":
        top2 = sc.topk(2, dim=1).values
        w = op * top2[:, 0] * top2[:, 1]
    else:
        raise ValueError(f"weighting must be 'opacity_area', 'opacity_volume' or 'uniform', got {weighting!r}")
    if not bool(torch.isfinite(w).all()):
        # Huge (finite) scales overflow the float32 product; torch.multinomial would reject it without a reason.
        big = float(sc.max())
        raise ValueError(f"the Gaussians' sampling weights overflow float32: the largest standard deviation is "
                         f"{big:.3g} (log scale {float(torch.log(sc.max())):.3g}); not a usable splat")
    if not bool(w.sum() > 0):
        raise ValueError("all kept Gaussians have zero weight")
    gen = torch.Generator().manual_seed(seed)
    dev = splats.means.device
    idx = torch.multinomial(w.double().cpu(), num_points, replacement=True, generator=gen).to(dev)
    z = torch.randn(num_points, 3, generator=gen).to(dev)
    R = splats.rotation_matrices()[keep][idx]
    s = sc[idx]
    pts = splats.means[keep][idx] + (R @ (s * z)[:, :, None])[:, :, 0]
    shortest = s.argmin(1)
    normals = R.gather(2, shortest[:, None, None].expand(-1, 3, 1))[:, :, 0]
    colors = splats.colors()[keep][idx]
    return Pointclouds([pts.float()], normals=[normals.float()], features=[colors.float()])
