"""Bilinear lookup of a UV texture map, the one convention shared by the point sampler and the renderer.

UVs have their origin at the image's bottom-left (v runs up, as OpenGL/glTF/pytorch3d `TexturesUV`) and
repeat: they are wrapped into [0, 1) (glTF's default `REPEAT`). The lookup is bilinear with texel centres
at (i + 0.5) / W (`grid_sample(align_corners=False)`, as OpenGL/nvdiffrast) and clamps at the border
(lookups do not wrap across the map's edge).

Maps may be float (values as they are, differentiable) or uint8 (0..255, read as value / 255): a uint8 map
is never converted whole (a 2k x 10k atlas would take 250 MB as float32); only the four texels of each
lookup are gathered and converted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sample_uv"]


def sample_uv(texture_map: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Colours of `texture_map` `(H, W, C)` at texture coordinates `uv` `(..., 2)` -> `(..., C)` in uv's dtype.

    `texture_map` float (values as stored) or uint8 (read as value / 255). Differentiable w.r.t. `uv`
    (inside a texel; the wrap carries no gradient) and a float `texture_map`.

    Args:
        texture_map: `(H, W, C)` float or uint8 texture image, row 0 at the top.
        uv: `(..., 2)` float texture coordinates (u right, v up from the bottom-left corner), wrapped into
            [0, 1) (repeat) before the lookup.

    Returns:
        `(..., C)` bilinearly interpolated colours in uv's dtype (uint8 maps scaled to [0, 1]).

    Raises:
        ValueError: if `texture_map` is not 3-D or `uv`'s last dimension is not 2.
    """
    if texture_map.dim() != 3:
        raise ValueError(f"texture_map must be (H, W, C), got {tuple(texture_map.shape)}")
    if uv.shape[-1] != 2:
        raise ValueError(f"uv must be (..., 2), got {tuple(uv.shape)}")
    uv = uv - torch.floor(uv.detach())
    if texture_map.dtype == torch.uint8:
        return _sample_uint8(texture_map, uv)
    # grid_sample's (-1, -1) is the top-left corner; UV's v runs up from the bottom.
    grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], dim=-1)
    # uv's leading dim (e.g. views) becomes grid_sample's batch over an expanded map, so the map's gradient
    # is summed per batch entry and then across entries: the same float rounding as looking up each view.
    grid = grid.flatten(1, -2)[:, :, None] if uv.dim() >= 3 else grid.reshape(1, -1, 1, 2)  # (b, P, 1, 2)
    img = texture_map.permute(2, 0, 1)[None].expand(grid.shape[0], -1, -1, -1).to(uv.dtype)
    colours = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (b, C, P, 1)
    return colours[..., 0].transpose(1, 2).reshape(*uv.shape[:-1], texture_map.shape[2])


def _sample_uint8(texture_map: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """`sample_uv` for a uint8 map: grid_sample's bilinear, align_corners=False, border padding, computed on
    the four gathered texels only. `uv` already wrapped into [0, 1)."""
    H, W, C = texture_map.shape
    # grid_sample's unnormalised coordinates (align_corners=False), clamped to the border.
    x = (uv[..., 0] * W - 0.5).clamp(0, W - 1)
    y = ((1 - uv[..., 1]) * H - 0.5).clamp(0, H - 1)
    x0f, y0f = torch.floor(x.detach()), torch.floor(y.detach())
    wx, wy = (x - x0f)[..., None], (y - y0f)[..., None]
    x0, y0 = x0f.long(), y0f.long()
    x1, y1 = (x0 + 1).clamp(max=W - 1), (y0 + 1).clamp(max=H - 1)
    flat = texture_map.reshape(H * W, C)

    def texel(yy, xx):
        return flat[(yy * W + xx).reshape(-1)].reshape(*uv.shape[:-1], C).to(uv.dtype)

    top = texel(y0, x0) * (1 - wx) + texel(y0, x1) * wx
    bottom = texel(y1, x0) * (1 - wx) + texel(y1, x1) * wx
    return (top * (1 - wy) + bottom * wy) / 255.0
