"""Full-reference image quality: PSNR and SSIM per image, optionally restricted to an object mask.

SSIM is Wang et al. 2004 with a Gaussian window, equal to skimage's
`structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=R,
channel_axis=0)` and torchmetrics' `structural_similarity_index_measure(gaussian_kernel=True, sigma=1.5,
kernel_size=11, data_range=R)` (whose variances are additionally clamped at 0; a no-op up to rounding).
Border handling: all three average the SSIM map only over pixels whose whole window lies inside the image
(a `(H - k + 1, W - k + 1)` "valid" map for an odd window of k pixels), so no padding value enters the result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "ssim_map"]


def _check_pair(name: str, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> None:
    if pred.dim() != 4:
        raise ValueError(f"{name}: pred must be (B, C, H, W), got {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred and target shapes differ ({tuple(pred.shape)} vs {tuple(target.shape)})")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise ValueError(f"{name}: images must be floating point, got {pred.dtype} and {target.dtype}")
    if mask is not None:
        b, _, h, w = pred.shape
        if mask.shape != (b, 1, h, w):
            raise ValueError(f"{name}: mask must be (B, 1, H, W) = {(b, 1, h, w)}, got {tuple(mask.shape)}")
        if mask.dtype != torch.bool:
            raise ValueError(f"{name}: mask must be bool, got {mask.dtype}")


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `(B, C, h, w)` values per batch element over the `(B, 1, h, w)` mask (all pixels if None)."""
    if mask is None:
        return values.flatten(1).mean(1)
    m = mask.to(values.dtype)
    total = (values * m).flatten(1).sum(1)
    count = m.flatten(1).sum(1) * values.shape[1]
    return total / count  # 0 / 0 = NaN for an empty mask


def psnr(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Peak signal-to-noise ratio `(B,)` in dB: `10 log10(data_range^2 / MSE)` per image.

    Identical images (MSE = 0) give `+inf`; an empty mask gives NaN for that image.
    Computed in float32 (float64 for float64 inputs).

    Args:
        pred: `(B, C, H, W)` float image with values in `[0, data_range]`.
        target: `(B, C, H, W)` float reference image, same shape.
        data_range: positive peak-to-peak value range (default 1.0 for [0, 1] images; 255 for 8-bit).
        mask: `(B, 1, H, W)` bool, or None (every pixel); the MSE is then over the masked pixels (all
            channels).

    Returns:
        `(B,)` PSNR in dB, float32 (float64 when `pred` is float64); `+inf` where the images are
        identical, NaN where the mask is empty. Differentiable.

    Raises:
        ValueError: if `pred` is not 4-D, the shapes differ, an image is not floating point, `mask` is not
            a `(B, 1, H, W)` bool tensor, or `data_range <= 0`.
    """
    _check_pair("psnr", pred, target, mask)
    if data_range <= 0:
        raise ValueError(f"psnr: data_range must be positive, got {data_range}")
    dt = _compute_dtype(pred)
    err = (pred.to(dt) - target.to(dt)).square()
    mse = _masked_mean(err, mask)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(window_size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(window_size, dtype=torch.float64) - (window_size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim_map(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """SSIM map `(B, C, H - window_size + 1, W - window_size + 1)` over the valid (fully inside) windows.

    Entry `[..., i, j]` is the SSIM of the window centred on pixel `(i + r, j + r)`, r = window_size // 2.
    Local means, variances and covariance are Gaussian-weighted population (biased) moments, as skimage.

    Args:
        pred: `(B, C, H, W)` float image with values in `[0, data_range]`; H, W >= window_size.
        target: `(B, C, H, W)` float reference image, same shape.
        data_range: positive peak-to-peak value range (default 1.0); C1 = (k1 * data_range)^2,
            C2 = (k2 * data_range)^2.
        window_size: side of the Gaussian window in pixels, a positive odd integer (default 11).
        sigma: positive standard deviation of the Gaussian window in pixels (default 1.5).
        k1: luminance stabilising constant (default 0.01).
        k2: contrast stabilising constant (default 0.03).

    Returns:
        `(B, C, H - window_size + 1, W - window_size + 1)` per-window SSIM, float32 (float64 when `pred` is
        float64). Differentiable.

    Raises:
        ValueError: if `pred` is not 4-D, the shapes differ, an image is not floating point, `window_size`
            is not a positive odd integer, `sigma` or `data_range` is not positive, or the images are
            smaller than the window.
    """
    _check_pair("ssim", pred, target, None)
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"ssim: window_size must be a positive odd integer, got {window_size}")
    if sigma <= 0 or data_range <= 0:
        raise ValueError(f"ssim: sigma and data_range must be positive, got {sigma}, {data_range}")
    b, c, h, w = pred.shape
    if h < window_size or w < window_size:
        raise ValueError(f"ssim: images must be at least {window_size}x{window_size}, got {h}x{w}")
    dt = _compute_dtype(pred)
    x, y = pred.to(dt), target.to(dt)
    g = _gaussian_window(window_size, sigma, dt, pred.device)
    # Separable Gaussian filtering ("valid" convolution) of the five moments in one batched pass.
    stack = torch.stack([x, y, x * x, y * y, x * y]).reshape(5 * b * c, 1, h, w)
    stack = F.conv2d(stack, g.view(1, 1, window_size, 1))
    stack = F.conv2d(stack, g.view(1, 1, 1, window_size))
    mu_x, mu_y, e_xx, e_yy, e_xy = stack.reshape(5, b, c, h - window_size + 1, w - window_size + 1)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x, var_y, cov = e_xx - mu_xx, e_yy - mu_yy, e_xy - mu_xy  # population (biased) moments, as skimage
    return ((2 * mu_xy + c1) * (2 * cov + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    mask: torch.Tensor | None = None,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean structural similarity `(B,)` per image, Gaussian window (Wang et al. 2004).

    Matches skimage and torchmetrics (module docstring); identical images give exactly 1; a mask with no
    countable pixel gives NaN. The mean is over channels and valid pixels. Differentiable.

    Args:
        pred: `(B, C, H, W)` float image with values in `[0, data_range]`; H, W >= window_size.
        target: `(B, C, H, W)` float reference image, same shape.
        data_range: positive peak-to-peak value range (default 1.0); C1 = (k1 * data_range)^2,
            C2 = (k2 * data_range)^2.
        mask: `(B, 1, H, W)` bool, or None (every valid pixel); the SSIM map is then averaged over the
            masked pixels only (the pixel at a window's centre decides; masked pixels within
            window_size // 2 of the border have no valid window and are not counted, as unmasked SSIM
            does not count them either).
        window_size: side of the Gaussian window in pixels, a positive odd integer (default 11).
        sigma: positive standard deviation of the Gaussian window in pixels (default 1.5).
        k1: luminance stabilising constant (default 0.01).
        k2: contrast stabilising constant (default 0.03).

    Returns:
        `(B,)` mean SSIM per image (1 for identical images), float32 (float64 when `pred` is float64);
        NaN where the mask leaves no countable pixel.

    Raises:
        ValueError: if `pred` is not 4-D, the shapes differ, an image is not floating point, `mask` is not
            a `(B, 1, H, W)` bool tensor, `window_size` is not a positive odd integer, `sigma` or
            `data_range` is not positive, or the images are smaller than the window.
    """
    _check_pair("ssim", pred, target, mask)
    s = ssim_map(pred, target, data_range, window_size, sigma, k1, k2)
    if mask is not None:
        r = window_size // 2
        mask = mask[:, :, r : mask.shape[2] - r, r : mask.shape[3] - r]
    return _masked_mean(s, mask)

