"""PSNR closed forms and SSIM against a float64 scipy.ndimage reference (skimage's definition)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from sam3d_eval.metrics.image_quality import psnr, ssim, ssim_map


def _images(shape, seed, noise=0.1, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    y = (x + noise * torch.randn(shape, generator=g)).clamp(0, 1)
    return x * scale, y * scale


def _reference_ssim_maps(x, y, data_range=1.0, sigma=1.5, radius=5, k1=0.01, k2=0.03):
    """skimage.metrics.structural_similarity(gaussian_weights=True, use_sample_covariance=False) per channel,
    in float64: scipy Gaussian filtering, then the map cropped by the window radius. Returns (B, C, h, w)."""
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    maps = []
    for a, b in zip(x.double().numpy(), y.double().numpy()):
        per_channel = []
        for ca, cb in zip(a, b):

            def filt(im):
                return gaussian_filter(im, sigma, radius=radius, mode="reflect")

            ux, uy = filt(ca), filt(cb)
            vx, vy, vxy = filt(ca * ca) - ux * ux, filt(cb * cb) - uy * uy, filt(ca * cb) - ux * uy
            s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
            per_channel.append(s[radius:-radius, radius:-radius])
        maps.append(per_channel)
    return np.array(maps)


# ----------------------------------------------------------------------------------------------- PSNR


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_psnr_constant_offset_closed_form(data_range):
    target = torch.rand(3, 3, 16, 20, generator=torch.Generator().manual_seed(0)) * 0.5 * data_range
    deltas = torch.tensor([0.01, 0.05, 0.2]) * data_range
    pred = target + deltas.view(3, 1, 1, 1)
    expected = [20 * math.log10(data_range / d) for d in deltas.tolist()]
    out = psnr(pred, target, data_range=data_range)
    assert out.shape == (3,) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(psnr(target, pred, data_range=data_range).numpy(), expected, rtol=1e-5)


def test_psnr_masked_uses_only_object_pixels():
    target = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(2, 1, 12, 12, dtype=torch.bool)
    mask[0, :, 2:7, 3:9] = True
    mask[1, :, :, :4] = True
    pred = target + 0.5  # large error everywhere...
    pred = torch.where(mask, target + torch.tensor([0.02, 0.1]).view(2, 1, 1, 1), pred)  # ...small on the object
    np.testing.assert_allclose(psnr(pred, target, mask=mask).numpy(), [20 * math.log10(1 / 0.02), 20.0], rtol=1e-5)
    np.testing.assert_allclose(psnr(pred, target).numpy()[0], 10 * math.log10(1 / np.mean(
        (pred[0] - target[0]).double().numpy() ** 2)), rtol=1e-5)  # fmt: skip


def test_psnr_identical_is_inf_and_empty_mask_nan():
    x = torch.rand(2, 3, 8, 8)
    assert torch.isinf(psnr(x, x)).all() and (psnr(x, x) > 0).all()
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[0, 0, 0, 0] = True
    out = psnr(x + 0.1, x, mask=mask)
    assert torch.isfinite(out[0]) and torch.isnan(out[1])


def test_psnr_float64():
    x, y = _images((2, 3, 9, 7), seed=2)
    expected = [10 * math.log10(1 / np.mean((a - b) ** 2)) for a, b in zip(x.double().numpy(), y.double().numpy())]
    out = psnr(x.double(), y.double())
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


# ----------------------------------------------------------------------------------------------- SSIM


@pytest.mark.parametrize("shape", [(2, 3, 40, 37), (1, 1, 11, 11), (3, 2, 64, 48)])
def test_ssim_matches_scipy_reference(shape):
    x, y = _images(shape, seed=sum(shape))
    ref = _reference_ssim_maps(x, y)
    np.testing.assert_allclose(ssim_map(x, y).double().numpy(), ref, rtol=0, atol=2e-6)
    out = ssim(x, y)
    assert out.shape == (shape[0],)
    np.testing.assert_allclose(out.numpy(), ref.reshape(shape[0], -1).mean(1), rtol=1e-5)
    np.testing.assert_allclose(ssim(x.double(), y.double()).numpy(), ref.reshape(shape[0], -1).mean(1), rtol=1e-12)


def test_ssim_other_window_and_range():
    x, y = _images((2, 3, 30, 33), seed=7, noise=0.3, scale=255.0)
    ref = _reference_ssim_maps(x, y, data_range=255.0, sigma=1.0, radius=3, k1=0.02, k2=0.05)
    out = ssim(x.double(), y.double(), data_range=255.0, window_size=7, sigma=1.0, k1=0.02, k2=0.05)
    np.testing.assert_allclose(out.numpy(), ref.reshape(2, -1).mean(1), rtol=1e-12)
    # Scaling both images and the range together leaves SSIM unchanged.
    np.testing.assert_allclose(
        ssim(x, y, data_range=255.0).numpy(), ssim(x / 255, y / 255, data_range=1.0).numpy(), rtol=1e-5
    )


def test_ssim_identical_is_one():
    x = torch.rand(3, 3, 32, 24, generator=torch.Generator().manual_seed(3))
    assert torch.equal(ssim(x, x), torch.ones(3))
    mask = torch.zeros(3, 1, 32, 24, dtype=torch.bool)
    mask[:, :, 8:20, 6:18] = True
    assert torch.equal(ssim(x, x, mask=mask), torch.ones(3))


def test_ssim_masked_mean_over_object():
    x, y = _images((2, 3, 36, 30), seed=4, noise=0.2)
    ref = _reference_ssim_maps(x, y)  # (B, C, 26, 20) for pixel centres 5..30, 5..24
    mask = torch.zeros(2, 1, 36, 30, dtype=torch.bool)
    mask[0, :, 10:22, 8:17] = True
    mask[1, :, 0:12, 0:30] = True  # rows 0..4 lie within the radius of the border: no valid window
    out = ssim(x, y, mask=mask).numpy()
    m = mask[:, 0, 5:-5, 5:-5].numpy()
    expected = [ref[i][:, m[i]].mean() for i in range(2)]
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert not np.allclose(out, ssim(x, y).numpy(), rtol=1e-3)  # the mask changes the answer
    full = torch.ones(2, 1, 36, 30, dtype=torch.bool)
    torch.testing.assert_close(ssim(x, y, mask=full), ssim(x, y), rtol=1e-6, atol=0)
    border_only = torch.zeros(2, 1, 36, 30, dtype=torch.bool)
    border_only[:, :, :5] = True
    assert torch.isnan(ssim(x, y, mask=border_only)).all()


def test_ssim_differentiable():
    x, y = _images((1, 3, 20, 20), seed=5)
    x = x.double().requires_grad_(True)
    out = ssim(x, y.double())
    (grad,) = torch.autograd.grad(out.sum(), x)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    h = 1e-6
    with torch.no_grad():
        fd = (ssim(x + h * v, y.double()) - ssim(x - h * v, y.double())).item() / (2 * h)
    np.testing.assert_allclose((grad * v).sum().item(), fd, rtol=1e-6)


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("fn", [psnr, ssim])
def test_bad_shapes_raise(fn):
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="shapes differ"):
        fn(x, torch.rand(2, 3, 16, 15))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        fn(x[0], x[0])
    with pytest.raises(ValueError, match="mask must be"):
        fn(x, x, mask=torch.ones(2, 3, 16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        fn(x, x, mask=torch.ones(2, 1, 16, 16))
    with pytest.raises(ValueError, match="floating point"):
        fn(x.to(torch.uint8), x.to(torch.uint8))


def test_ssim_bad_window_raises():
    x = torch.rand(1, 1, 10, 16)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x, x)
    with pytest.raises(ValueError, match="odd"):
        ssim(x, x, window_size=4)
