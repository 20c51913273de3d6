"""Multi-view appearance evaluation: time per sample at 8 views of 256x256 for a 20k-face mesh pair
(render both + LPIPS-alex + PSNR + SSIM), with its parts side by side; and, on CUDA only, views/s and
LPIPS pairs/s at batch 64 (the numbers `benchmarks/RESULTS.md` records when a GPU is lent).

    python -m pytest benchmarks/bench_appearance.py --benchmark-group-by=group --benchmark-columns=min,median,mean,rounds -s

LPIPS uses the golden npz's seeded random AlexNet (speed does not depend on the weight values; the real
ImageNet weights are not on this machine). The mesh pair is a level-5 icosphere (20480 faces) with vertex
colours and a seeded noisy, recoloured copy as the prediction.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import trimesh

from sam3d_eval.evaluate.appearance import AppearanceScorer, appearance_metrics
from sam3d_eval.evaluate.protocols import get_protocol
from sam3d_eval.metrics.image_quality import psnr, ssim
from sam3d_eval.metrics.lpips import LPIPS
from sam3d_eval.render.multiview import default_views, render_views
from sam3d_eval.structures.meshes import Meshes
from sam3d_eval.structures.textures import TexturesVertex
from sizes import sizes_for

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "tests", "golden", "lpips_alex_reference.npz")
S = sizes_for("appearance")  # benchmarks/sizes.py
SIDE, VIEWS, GPU_BATCH = S.SIDE, 8, S.GPU_BATCH
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA benchmark: no GPU here")


def _alex(device: str = "cpu") -> LPIPS:
    golden = np.load(GOLDEN)
    sd = {k[len("backbone/") :]: torch.from_numpy(golden[k]) for k in golden.files if k.startswith("backbone/")}
    return LPIPS("alex", backbone_weights=sd).to(device)


def _pair(seed: int = 0) -> tuple[Meshes, Meshes]:
    s = trimesh.creation.icosphere(subdivisions=S.SUBDIV, radius=0.5)  # level 5: 20480 faces
    v = torch.tensor(s.vertices, dtype=torch.float32)
    f = torch.tensor(s.faces)
    g = torch.Generator().manual_seed(seed)
    v_pred = v * (1 + 0.03 * torch.randn(v.shape[0], 1, generator=g))
    col = v + 0.5
    col_pred = (col + 0.1 * torch.randn(v.shape, generator=g)).clamp(0, 1)
    return Meshes([v_pred], [f], TexturesVertex([col_pred])), Meshes([v], [f], TexturesVertex([col]))


@pytest.fixture(scope="module")
def pair():
    pred, gt = _pair()
    assert int(gt.num_faces_per_mesh()[0]) == 20 * 4**S.SUBDIV
    return pred, gt


@pytest.fixture(scope="module")
def alex():
    return _alex()


def _report(benchmark, name: str, samples: int = 1, views: int = VIEWS, pairs: int | None = None) -> None:
    if not benchmark.enabled:
        return
    t = benchmark.stats.stats.min
    info = {"seconds_per_sample": t / samples, "views_per_s": samples * views / t}
    if pairs is not None:
        info["lpips_pairs_per_s"] = pairs / t
    benchmark.extra_info.update(info)
    print(f"\n{name}: " + ", ".join(f"{k} {v:.3g}" for k, v in info.items()))


# ------------------------------------------------------------------------------------------ CPU, one sample


@pytest.mark.benchmark(group="appearance-cpu-8x256-20k")
def test_appearance_sample_full(benchmark, pair, alex):
    pred, gt = pair
    (r,) = appearance_metrics(pred, gt, image_size=SIDE, lpips=alex)  # before timing: against its parts
    (x, y), mask = _render_both(pred, gt)
    with torch.no_grad():
        assert r["lpips"] == pytest.approx(float(alex(x, y, normalize=True).mean()), rel=1e-4, abs=1e-6)
    assert np.isfinite([r["lpips"], r["psnr"], r["ssim"]]).all() and r["lpips"] > 0
    benchmark.pedantic(appearance_metrics, (pred, gt), {"image_size": SIDE, "lpips": alex}, rounds=3, warmup_rounds=1)
    _report(benchmark, "appearance_metrics, 1 sample, 8 views 256x256, 20k faces", pairs=VIEWS)


@pytest.mark.benchmark(group="appearance-cpu-8x256-20k")
def test_scorer_2_samples_one_lpips_pass(benchmark, pair, alex):
    """`AppearanceScorer.score_framed` (what `score_batch` calls): 2 samples, LPIPS on all 16 views at once."""
    pairs = [pair, _pair(1)]
    scorer, protocol = AppearanceScorer(lpips=alex), get_protocol("default").with_overrides(appearance_image_size=SIDE)
    values, _ = scorer.score_framed(pairs, protocol)  # before timing: finite, one value per sample
    assert torch.isfinite(values["lpips"]).all() and values["lpips"].shape == (2,)
    benchmark.pedantic(scorer.score_framed, (pairs, protocol), rounds=3, warmup_rounds=1)
    _report(benchmark, "AppearanceScorer, 2 samples, 8 views 256x256, 20k faces", samples=2, pairs=2 * VIEWS)


@pytest.mark.benchmark(group="appearance-cpu-8x256-20k")
def test_part_render_pair(benchmark, pair):
    pred, gt = pair
    cams = default_views((SIDE, SIDE))
    out = (render_views(pred, cams), render_views(gt, cams))  # before timing
    assert out[0].rgb.shape == (1, VIEWS, SIDE, SIDE, 3) and bool((out[1].mask > 0).any())
    benchmark.pedantic(lambda: (render_views(pred, cams), render_views(gt, cams)), rounds=3, warmup_rounds=1)
    _report(benchmark, "part: render pred + GT, 8 views each")


def _render_both(pred, gt):
    cams = default_views((SIDE, SIDE))
    rp, rg = render_views(pred, cams), render_views(gt, cams)
    imgs = (rp.rgb[0].permute(0, 3, 1, 2).contiguous(), rg.rgb[0].permute(0, 3, 1, 2).contiguous())
    return imgs, ((rp.mask[0] > 0) | (rg.mask[0] > 0))[:, None]


@pytest.fixture(scope="module")
def rendered(pair):
    return _render_both(*pair)


@pytest.mark.benchmark(group="appearance-cpu-8x256-20k")
def test_part_lpips_8_pairs(benchmark, rendered, alex):
    (x, y), _ = rendered
    with torch.no_grad():
        out = alex(x, y, normalize=True)  # before timing: one finite distance per view, 0 for identical views
        assert out.shape == (VIEWS,) and torch.isfinite(out).all() and bool((out > 0).all())
        assert float(alex(x, x, normalize=True).abs().max()) < 1e-6
        benchmark.pedantic(alex, (x, y), {"normalize": True}, rounds=3, warmup_rounds=1)
    _report(benchmark, "part: LPIPS-alex, 8 pairs 256x256", pairs=VIEWS)


@pytest.mark.benchmark(group="appearance-cpu-8x256-20k")
def test_part_psnr_ssim_masked(benchmark, rendered):
    (x, y), mask = rendered
    x, y = x.clamp(0, 1), y.clamp(0, 1)
    p, s = psnr(x, y, mask=mask), ssim(x, y, mask=mask)  # before timing: the masked MSE by hand (float64)
    m = mask.expand_as(x).double()
    mse = (((x.double() - y.double()) ** 2) * m).flatten(1).sum(1) / m.flatten(1).sum(1)
    torch.testing.assert_close(p.double(), -10 * torch.log10(mse), rtol=1e-4, atol=1e-4)
    assert torch.isfinite(s).all() and bool((s <= 1).all())
    benchmark.pedantic(lambda: (psnr(x, y, mask=mask), ssim(x, y, mask=mask)), rounds=3, warmup_rounds=1)
    _report(benchmark, "part: masked PSNR + SSIM, 8 views 256x256")


# ------------------------------------------------------------------------------------------ CUDA, batch 64


def _cuda_timed(fn):
    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


@pytest.fixture(scope="module")
def gpu_batch():
    """8 mesh pairs of 20k faces on the GPU: 64 views of each side at the 8 default cameras."""
    preds, gts = zip(*(_pair(seed) for seed in range(GPU_BATCH // VIEWS)))

    def cat(ms):
        return Meshes(
            [m.verts_list()[0] for m in ms], [m.faces_list()[0] for m in ms],
            TexturesVertex([m.textures.verts_features[0] for m in ms]),
        ).to("cuda")

    return cat(preds), cat(gts)


@requires_cuda
@pytest.mark.benchmark(group="appearance-cuda-batch64")
def test_cuda_render_64_views(benchmark, gpu_batch):
    _, gt = gpu_batch
    cams = default_views((SIDE, SIDE), device="cuda")
    out = render_views(gt, cams)  # before timing: the CPU render of the first mesh, pixel for pixel
    assert out.rgb.shape == (GPU_BATCH // VIEWS, VIEWS, SIDE, SIDE, 3)
    ref = render_views(gt[0].to("cpu"), default_views((SIDE, SIDE)))
    assert (out.rgb[0].cpu() - ref.rgb[0]).abs().gt(1e-3).float().mean() < 0.01  # edge ties aside
    benchmark.pedantic(_cuda_timed(lambda: render_views(gt, cams)), rounds=10, warmup_rounds=2)
    _report(benchmark, "CUDA render_views, 64 views 256x256 (8 meshes x 8 views, 20k faces)", samples=GPU_BATCH // VIEWS)


@pytest.mark.parametrize("precision", ["float32", "autocast-fp16"])
@requires_cuda
@pytest.mark.benchmark(group="appearance-cuda-batch64")
def test_cuda_lpips_64_pairs(benchmark, precision):
    lp = _alex("cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.rand(GPU_BATCH, 3, SIDE, SIDE, device="cuda", generator=g)
    y = torch.rand(GPU_BATCH, 3, SIDE, SIDE, device="cuda", generator=g)

    def run():
        with torch.no_grad(), torch.autocast("cuda", torch.float16, enabled=precision != "float32"):
            return lp(x, y, normalize=True)

    out = run()  # before timing: the CPU float32 numbers (fp16 autocast to its precision)
    assert out.shape == (GPU_BATCH,) and torch.isfinite(out).all()
    with torch.no_grad():
        ref = _alex()(x[:4].cpu(), y[:4].cpu(), normalize=True)
    tol = 1e-4 if precision == "float32" else 2e-2
    torch.testing.assert_close(out[:4].float().cpu(), ref, rtol=tol, atol=tol)
    benchmark.pedantic(_cuda_timed(run), rounds=20, warmup_rounds=3)
    _report(benchmark, f"CUDA LPIPS-alex {precision}, 64 pairs 256x256", samples=GPU_BATCH, views=1, pairs=GPU_BATCH)


@requires_cuda
@pytest.mark.benchmark(group="appearance-cuda-batch64")
def test_cuda_appearance_8_samples(benchmark, gpu_batch):
    pred, gt = gpu_batch
    lp = _alex("cuda")
    res = appearance_metrics(pred, gt, image_size=SIDE, lpips=lp)  # before timing: the CPU numbers of sample 0
    assert len(res) == GPU_BATCH // VIEWS and all(np.isfinite(r["lpips"]) for r in res)
    (cpu0,) = appearance_metrics(pred[0].to("cpu"), gt[0].to("cpu"), image_size=SIDE, lpips=_alex())
    assert res[0]["lpips"] == pytest.approx(cpu0["lpips"], rel=1e-2, abs=1e-3)
    benchmark.pedantic(
        _cuda_timed(lambda: appearance_metrics(pred, gt, image_size=SIDE, lpips=lp)), rounds=5, warmup_rounds=1
    )
    _report(benchmark, "CUDA appearance_metrics, 8 samples x 8 views 256x256", samples=GPU_BATCH // VIEWS,
            pairs=GPU_BATCH)


@requires_cuda
@pytest.mark.benchmark(group="appearance-cuda-batch64")
def test_cuda_scorer_8_samples(benchmark, gpu_batch):
    pred, gt = gpu_batch
    scorer = AppearanceScorer(lpips=_alex("cuda"))
    protocol = get_protocol("default").with_overrides(appearance_image_size=SIDE)
    pairs = [(pred[b], gt[b]) for b in range(len(gt))]
    values, _ = scorer.score_framed(pairs, protocol)  # before timing: finite, one value per sample
    assert torch.isfinite(values["lpips"]).all() and values["lpips"].shape == (len(pairs),)
    benchmark.pedantic(_cuda_timed(lambda: scorer.score_framed(pairs, protocol)), rounds=5, warmup_rounds=1)
    _report(benchmark, "CUDA AppearanceScorer, 8 samples x 8 views 256x256 (one render call per side, one LPIPS call)",
            samples=GPU_BATCH // VIEWS, pairs=GPU_BATCH)
