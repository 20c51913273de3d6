"""Multi-view appearance evaluation: identities, monotone response to colour changes, alignment, the LPIPS-less path."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import trimesh

from sam3d_eval.evaluate.appearance import NO_LPIPS_REASON, appearance_metrics, load_lpips_or_none
from sam3d_eval.metrics.lpips import LPIPS
from sam3d_eval.ops.normalize import normalize_to_unit_cube, unit_cube_transform
from sam3d_eval.render.multiview import default_views, render_views
from sam3d_eval.structures.meshes import Meshes
from sam3d_eval.structures.textures import TexturesUV, TexturesVertex
from sam3d_eval.transforms import SimilarityTransform

SIZE = 64


@pytest.fixture(scope="module")
def alex(golden_dir):
    golden = np.load(golden_dir / "lpips_alex_reference.npz")
    sd = {k[len("backbone/") :]: torch.from_numpy(golden[k]) for k in golden.files if k.startswith("backbone/")}
    return LPIPS("alex", backbone_weights=sd)


def _colours(v: torch.Tensor) -> torch.Tensor:
    # Smoothly varying, non-symmetric colours so that misregistration and recolouring both show.
    return torch.stack([v[:, 0] + 0.5, 0.5 + 0.4 * torch.sin(6 * v[:, 1]), 0.5 - 0.8 * v[:, 2] * v[:, 0]], 1).clamp(0, 1)


@pytest.fixture(scope="module")
def shape():
    # An off-centre, anisotropic torus: its bounding box is not the unit cube, so normalisation matters.
    t = trimesh.creation.torus(major_radius=0.6, minor_radius=0.25, major_sections=32, minor_sections=12)
    v = torch.tensor(t.vertices, dtype=torch.float32) * torch.tensor([1.0, 1.3, 0.8]) + torch.tensor([0.3, -0.2, 0.1])
    return v, torch.tensor(t.faces)


def _mesh(v, f, colours=None) -> Meshes:
    return Meshes([v], [f], None if colours is None else TexturesVertex([colours]))


def _coloured(shape) -> Meshes:
    v, f = shape
    return _mesh(v, f, _colours(v - v.mean(0)))


def test_identical_meshes(shape, alex):
    gt = _coloured(shape)
    (r,) = appearance_metrics(gt, gt, image_size=SIZE, lpips=alex)
    assert r["psnr"] == math.inf and all(p == math.inf for p in r["psnr_views"])
    assert r["ssim"] == 1.0 and r["silhouette_iou"] == 1.0
    assert r["lpips"] == 0.0 and len(r["lpips_views"]) == 8
    assert r["lpips_unavailable"] is None and r["mask"] == "union"


def test_colour_change_monotone(shape, alex):
    v, f = shape
    base = _colours(v - v.mean(0))
    red = torch.tensor([1.0, 0.0, 0.0])
    gt = _mesh(v, f, base)
    strengths = (0.05, 0.2, 0.5, 1.0)
    preds = Meshes([v] * 4, [f] * 4, TexturesVertex([(1 - a) * base + a * red for a in strengths]))
    res = appearance_metrics(preds, Meshes([v] * 4, [f] * 4, TexturesVertex([base] * 4)), image_size=SIZE, lpips=alex)
    psnrs, lpipss, ssims = ([r[k] for r in res] for k in ("psnr", "lpips", "ssim"))
    assert all(a > b for a, b in itertools.pairwise(psnrs)), psnrs
    assert all(a < b for a, b in itertools.pairwise(lpipss)), lpipss
    assert all(a > b for a, b in itertools.pairwise(ssims)), ssims
    assert lpipss[0] > 0 and psnrs[0] < math.inf
    # Geometry untouched: the silhouettes agree exactly.
    assert all(r["silhouette_iou"] == 1.0 for r in res)
    # Batched evaluation equals evaluating the sample alone.
    (alone,) = appearance_metrics(preds[2], gt, image_size=SIZE, lpips=alex)
    np.testing.assert_allclose(alone["psnr_views"], res[2]["psnr_views"], rtol=1e-5)
    np.testing.assert_allclose(alone["lpips_views"], res[2]["lpips_views"], rtol=1e-4)


def test_scores_match_float64_reference_on_union_mask(shape, alex):
    """PSNR over the union of the silhouettes and full-image LPIPS, recomputed from the renders."""
    v, f = shape
    gt = _coloured(shape)
    pred = _mesh(v + torch.tensor([0.15, 0.0, 0.0]), f, _colours(v - v.mean(0)))
    (r,) = appearance_metrics(pred, gt, image_size=SIZE, lpips=alex, background=0.8)

    pn, gn, _, _ = normalize_to_unit_cube(pred, gt)
    cams = default_views((SIZE, SIZE))
    rp, rg = render_views(pn, cams, background=(0.8,) * 3), render_views(gn, cams, background=(0.8,) * 3)
    a, b = rp.rgb[0].double().clamp(0, 1).numpy(), rg.rgb[0].double().clamp(0, 1).numpy()
    union = ((rp.mask[0] > 0) | (rg.mask[0] > 0)).numpy()
    expected, full = [], []
    for k in range(8):
        mse = ((a[k] - b[k]) ** 2)[union[k]].mean()
        expected.append(10 * np.log10(1.0 / mse))
        full.append(10 * np.log10(1.0 / ((a[k] - b[k]) ** 2).mean()))
    np.testing.assert_allclose(r["psnr_views"], expected, rtol=1e-4)
    assert r["psnr"] == pytest.approx(np.mean(expected), rel=1e-4)
    assert np.all(np.array(full) > np.array(expected) + 1.0)  # the background would have inflated it
    lp = alex(rp.rgb[0].permute(0, 3, 1, 2), rg.rgb[0].permute(0, 3, 1, 2), normalize=True)
    np.testing.assert_allclose(r["lpips_views"], lp.numpy(), rtol=1e-5)
    iou = [(((rp.mask[0, k] > 0) & (rg.mask[0, k] > 0)).sum() / union[k].sum()).item() for k in range(8)]
    assert r["silhouette_iou"] == pytest.approx(float(np.mean(iou)), rel=1e-6)
    assert 0 < r["silhouette_iou"] < 1


def test_alignment_undoes_a_similarity(shape, alex):
    v, f = shape
    gt = _coloured(shape)
    cols = gt.textures.verts_features[0]
    c, k = unit_cube_transform(gt)
    c, k = c[0], k[0]
    # Prediction = a rotated, scaled and shifted copy of the GT in input coordinates.
    ang = 0.7
    R0 = torch.tensor([[math.cos(ang), 0.0, math.sin(ang)], [0.0, 1.0, 0.0], [-math.sin(ang), 0.0, math.cos(ang)]])
    s0, d = 1.5, torch.tensor([0.2, -0.1, 0.3])
    pred = _mesh(s0 * v @ R0.T + d, f, cols)
    (bad,) = appearance_metrics(pred, gt, image_size=SIZE, lpips=alex)
    # In the normalised frame pred_n = s0 R0 gt_n + (s0 R0 c + d - c) k; invert that similarity.
    shift = (s0 * R0 @ c + d - c) * k
    R, s = R0.T, 1.0 / s0  # column-vector form x -> s R x + t
    t = -s * (R @ shift)
    row = SimilarityTransform(R.T[None], t[None], torch.tensor([s]))  # the same map for row vectors
    for transform in (row, (R.T, t, torch.tensor(s))):
        (good,) = appearance_metrics(pred, gt, image_size=SIZE, lpips=alex, transform=transform)
        assert good["psnr"] > 35 and good["ssim"] > 0.99 and good["lpips"] < 2e-3, good
        assert good["silhouette_iou"] > 0.98
    assert bad["psnr"] < 20 and bad["ssim"] < 0.9 and bad["lpips"] > 20 * good["lpips"]
    # normalize=False: the transform acts in input coordinates.
    (raw,) = appearance_metrics(
        pred, gt, image_size=SIZE, lpips=alex, normalize=False,
        transform=SimilarityTransform(R0[None], (-(R0.T @ d) / s0)[None], torch.tensor([1.0 / s0])),
    )
    assert raw["psnr"] > 35 and raw["lpips"] < 2e-3


def test_batched_transform_acts_per_sample(shape):
    """A (B,)-element SimilarityTransform moves sample b by its own transform: equal to scoring b alone."""
    gt = _coloured(shape)
    v, f = shape
    cols = gt.textures.verts_features[0]
    preds = Meshes([v, v + 0.1], [f, f], TexturesVertex([cols, cols]))
    gts = Meshes([v, v], [f, f], TexturesVertex([cols, cols]))
    R = torch.linalg.qr(torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(1)))[0]
    R = R * torch.det(R)[:, None, None]  # proper rotations
    tr = SimilarityTransform(R, torch.tensor([[0.01, 0.0, 0.0], [0.0, -0.02, 0.0]]), torch.tensor([0.9, 1.1]))
    both = appearance_metrics(preds, gts, image_size=32, transform=tr)
    for b in range(2):
        one = SimilarityTransform(*(t[b : b + 1] for t in tr))
        (alone,) = appearance_metrics(preds[b], gts[b], image_size=32, transform=one)
        assert alone["psnr_views"] == both[b]["psnr_views"] and alone["ssim_views"] == both[b]["ssim_views"]


def test_missing_weights_gives_nan_and_reason(shape, tmp_path, monkeypatch):
    missing = tmp_path / "alexnet.pth"
    module, reason = load_lpips_or_none("alex", backbone_weights=missing)
    assert module is None and reason.startswith("LPIPS unavailable: ") and str(missing) in reason
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))  # the default location, empty
    module, reason_default = load_lpips_or_none()
    assert module is None and "alexnet-owt-7be5be79.pth" in reason_default
    with pytest.raises(ValueError, match="net"):  # only the missing-weights error is swallowed
        load_lpips_or_none("resnet")

    gt = _coloured(shape)
    pred = _mesh(shape[0], shape[1], gt.textures.verts_features[0] * 0.8)
    (r,) = appearance_metrics(pred, gt, image_size=SIZE, lpips=None, lpips_reason=reason)
    assert math.isnan(r["lpips"]) and all(math.isnan(x) for x in r["lpips_views"])
    assert r["lpips_unavailable"] == reason
    assert 10 < r["psnr"] < math.inf and 0 < r["ssim"] < 1
    (r2,) = appearance_metrics(pred, gt, image_size=SIZE)
    assert r2["lpips_unavailable"] == NO_LPIPS_REASON and r2["psnr"] == r["psnr"]


def test_load_lpips_or_none_success(golden_dir, tmp_path, alex):
    golden = np.load(golden_dir / "lpips_alex_reference.npz")
    path = tmp_path / "alex.pth"
    torch.save({k[len("backbone/") :]: torch.from_numpy(golden[k]) for k in golden.files if k.startswith("backbone/")}, path)
    module, reason = load_lpips_or_none("alex", backbone_weights=path)
    assert reason is None and isinstance(module, LPIPS)
    x = torch.from_numpy(golden["a/in0"])
    y = torch.from_numpy(golden["a/in1"])
    np.testing.assert_allclose(module(x, y).numpy(), golden["a/lpips"], rtol=1e-5)


def test_uv_and_untextured(shape, alex):
    v, f = shape
    # A UV map whose texels are a colour ramp; UVs from a cylindrical projection.
    uv = torch.stack([(torch.atan2(v[:, 2], v[:, 0]) / (2 * math.pi)) % 1.0, (v[:, 1] - v[:, 1].min()) / np.ptp(v[:, 1].numpy())], 1)
    ramp = torch.linspace(0, 1, 16)
    tex_map = torch.stack([ramp[None, :].expand(16, 16), ramp[:, None].expand(16, 16), torch.full((16, 16), 0.3)], -1)
    uv_mesh = Meshes([v], [f], TexturesUV([tex_map], [f], [uv]))
    grey = _mesh(v, f)
    (same_uv,) = appearance_metrics(uv_mesh, uv_mesh, image_size=SIZE, lpips=alex)
    (same_grey,) = appearance_metrics(grey, grey, image_size=SIZE, lpips=alex)
    (mixed,) = appearance_metrics(grey, uv_mesh, image_size=SIZE, lpips=alex)
    for r in (same_uv, same_grey):
        assert r["psnr"] == math.inf and r["ssim"] == 1.0 and r["lpips"] == 0.0
    # Same geometry, texture against grey: only colour differs.
    assert mixed["silhouette_iou"] == 1.0 and mixed["psnr"] < 30 and mixed["lpips"] > 0
    # Grey against grey: only shading and silhouette can differ.
    (shifted,) = appearance_metrics(_mesh(v + torch.tensor([0.0, 0.1, 0.0]), f), grey, image_size=SIZE, lpips=alex)
    assert shifted["silhouette_iou"] < 1 and shifted["psnr"] < 25


def test_custom_views_and_errors(shape):
    gt = _coloured(shape)
    cams = default_views((48, 40))[[0, 3]]
    (r,) = appearance_metrics(gt, gt, views=cams)
    assert len(r["psnr_views"]) == 2 and r["ssim"] == 1.0
    with pytest.raises(ValueError, match="image_size"):
        appearance_metrics(gt, gt, views=cams, image_size=64)
    with pytest.raises(ValueError, match="meshes"):
        appearance_metrics(Meshes([shape[0]] * 2, [shape[1]] * 2), gt, image_size=SIZE)
    with pytest.raises(ValueError, match="transform"):
        appearance_metrics(gt, gt, image_size=SIZE, transform=(torch.eye(3), torch.zeros(2), 1.0))
    with pytest.raises(ValueError, match="positive"):
        appearance_metrics(gt, gt, image_size=SIZE, transform=(torch.eye(3), torch.zeros(3), -1.0))
    with pytest.raises(ValueError, match="background"):
        appearance_metrics(gt, gt, image_size=SIZE, background=2.0)


def test_default_protocol_views_are_the_default_views():
    from sam3d_eval.evaluate.appearance import protocol_views
    from sam3d_eval.evaluate.protocols import get_protocol

    ours, ref = protocol_views(get_protocol("default")), default_views((256, 256))
    assert tuple(ours.image_size) == (256, 256) and len(ours) == len(ref) == 8
    torch.testing.assert_close(ours.get_camera_center(), ref.get_camera_center(), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.view_directions(), ref.view_directions(), rtol=0, atol=1e-6)
    three = protocol_views(get_protocol("default").with_overrides(appearance_views=3))
    assert len(three) == 3
