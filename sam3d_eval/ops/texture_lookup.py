"""Bilinear lookup of a UV texture map, the one convention shared by the point sampler and the renderer.

UVs have their origin at the image's bottom-left (v runs up, as OpenGL/glTF/pytorch3d `TexturesUV`) and
repeat: they are wrapped into [0, 1) (glTF's default `REPEAT`). The lookup is bilinear with texel centres
at (i + 0.5) / W (`grid_sample(align_corners=False)`, as OpenGL/nvdiffrast) and clamps at the border
(lookups do not wrap across the map's edge).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sample_uv"]


def sample_uv(texture_map: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Colours of `texture_map` `(H, W, C)` at texture coordinates `uv` `(..., 2)` -> `(..., C)` in uv's dtype.

    Differentiable w.r.t. `uv` (inside a texel; the wrap carries no gradient) and `texture_map`.
    """
    if texture_map.dim() != 3:
        raise ValueError(f"texture_map must be (H, W, C), got {tuple(texture_map.shape)}")
    if uv.shape[-1] != 2:
        raise ValueError(f"uv must be (..., 2), got {tuple(uv.shape)}")
    uv = uv - torch.floor(uv.detach())
    # grid_sample's (-1, -1) is the top-left corner; UV's v runs up from the bottom.
    grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], dim=-1)
    # uv's leading dim (e.g. views) becomes grid_sample's batch over an expanded map, so the map's gradient
    # is summed per batch entry and then across entries: the same float rounding as looking up each view.
    grid = grid.flatten(1, -2)[:, :, None] if uv.dim() >= 3 else grid.reshape(1, -1, 1, 2)  # (b, P, 1, 2)
    img = texture_map.permute(2, 0, 1)[None].expand(grid.shape[0], -1, -1, -1).to(uv.dtype)
    colours = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (b, C, P, 1)
    return colours[..., 0].transpose(1, 2).reshape(*uv.shape[:-1], texture_map.shape[2])
