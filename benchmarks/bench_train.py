"""Training steps per second at the demo size (training/demo.toml: tiny model, global batch 16, 64 px inputs,
1000 surface points, two 32 px texture views), with the time split between data, forward, each loss term,
backward and the optimiser step; stage 1 and stage 2 (VGG-substitute perceptual + GAN + discriminator).
GT points and renders are cached per sample as in training (after each sample's first use); the loss-term
times include each term's own forward only.

Run: `python -m pytest benchmarks/bench_train.py --benchmark-only -s`
(on a GPU machine add `--device cuda` support by setting SAM3D_BENCH_DEVICE=cuda).
"""

import os
import time

import pytest
import torch

from sam3d_eval.data.shapes import SHAPES, make_shape, shape_colors
from sam3d_eval.models.reference import ReferenceModel, camera_frames
from sam3d_eval.render import orbit_cameras, render_views
from sam3d_eval.runtime import runtime_policy
from sam3d_eval.structures import Meshes, TexturesVertex
from sam3d_eval.train.loop import collate
from sam3d_eval.train.losses import Discriminator, LossConfig, LossMix, LossWeights, discriminator_loss
from sizes import sizes_for

S = sizes_for("train")  # benchmarks/sizes.py
DEVICE = torch.device(os.environ.get("SAM3D_BENCH_DEVICE", "cpu"))
BATCH, NUM_POINTS, RENDER_SIZE = S.BATCH, S.NUM_POINTS, S.RENDER_SIZE
pytestmark = pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(),
                                reason="SAM3D_BENCH_DEVICE=cuda but CUDA is not available")
TERMS = ("chamfer", "texture", "smoothness", "laplacian", "vgg", "gan")


@pytest.fixture(scope="module")
def items():
    names = sorted(SHAPES)
    out = []
    for i in range(BATCH):
        v, f = make_shape(names[i % len(names)])
        v, f, c = torch.tensor(v), torch.tensor(f), torch.tensor(shape_colors(v))
        cam = orbit_cameras(37.0 * i, 20.0, 2.8, (64, 64))
        r = render_views(Meshes([v], [f], TexturesVertex([c])), cam)
        out.append({"image": r.rgb[0, 0].permute(2, 0, 1).contiguous(), "mask": r.mask[0, 0][None] > 0, "camera": cam,
                    "gt_verts": v, "gt_faces": f, "gt_colors": c, "sample_id": f"s{i}", "domain": "real" if i % 2 else "synthetic"})
    return out


def _timed(fn, reps=3):
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        out = fn()
    return (time.perf_counter() - t) / reps, out


def _split(items, stage: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = ReferenceModel().to(DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    mix = LossMix(LossConfig(weights=LossWeights.stage(stage), num_points=NUM_POINTS, render_size=RENDER_SIZE)).to(DEVICE)
    disc = Discriminator().to(DEVICE) if stage == 2 else None
    times: dict[str, float] = {}
    times["data"], batch = _timed(lambda: collate(items).to(DEVICE))
    R, s = camera_frames(batch.cameras, BATCH, DEVICE)
    keys = [f"0/{sid}" for sid in batch.sample_ids]
    times["forward"], (verts, col) = _timed(lambda: model(batch.images, batch.masks, R, s))
    pred = model.to_meshes(verts, col)
    kw = dict(images=batch.images, masks=batch.masks, cameras=batch.cameras, discriminator=disc)
    w = mix.config.weights
    for term in TERMS:
        if getattr(w, term):
            only = LossWeights(**{t: (getattr(w, t) if t == term else 0.0) for t in TERMS})
            one = LossMix(LossConfig(weights=only, num_points=NUM_POINTS, render_size=RENDER_SIZE)).to(DEVICE)
            times[f"loss:{term}"], _ = _timed(lambda: one(pred, batch.gt, keys, **kw))

    def full_backward():
        v, c = model(batch.images, batch.masks, R, s)
        terms = mix(model.to_meshes(v, c), batch.gt, keys, **kw)
        opt.zero_grad(set_to_none=True)
        t = time.perf_counter()
        terms["total"].backward()
        return time.perf_counter() - t, terms

    full_backward()
    bw = [full_backward()[0] for _ in range(3)]
    times["backward"] = sum(bw) / len(bw)
    times["optimizer"], _ = _timed(lambda: opt.step())
    if disc is not None:
        _, terms = full_backward()
        times["discriminator"], _ = _timed(lambda: discriminator_loss(disc, terms["gan_real"], terms["gan_fake"]).backward())
    return times


def _step_fn(items, stage):
    torch.manual_seed(0)
    model = ReferenceModel().to(DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    mix = LossMix(LossConfig(weights=LossWeights.stage(stage), num_points=NUM_POINTS, render_size=RENDER_SIZE)).to(DEVICE)
    disc = Discriminator().to(DEVICE) if stage == 2 else None
    d_opt = torch.optim.AdamW(disc.parameters(), lr=1e-4) if disc is not None else None

    def step():
        batch = collate(items).to(DEVICE)
        R, s = camera_frames(batch.cameras, BATCH, DEVICE)
        v, c = model(batch.images, batch.masks, R, s)
        terms = mix(model.to_meshes(v, c), batch.gt, [f"0/{sid}" for sid in batch.sample_ids], images=batch.images,
                    masks=batch.masks, cameras=batch.cameras, discriminator=disc)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if disc is not None:
            d_opt.zero_grad(set_to_none=True)
            discriminator_loss(disc, terms["gan_real"], terms["gan_fake"]).backward()
            d_opt.step()
        return terms

    return step


@pytest.fixture(autouse=True)
def policy():
    # As the training loop does: one torch thread on CPU (the runtime policy of sam3d_eval.runtime).
    with runtime_policy(DEVICE):
        yield


@pytest.mark.parametrize("stage", [1, 2])
def test_train_step_demo_size(benchmark, items, stage):
    split = _split(items, stage)
    step = _step_fn(items, stage)
    first = step()  # before timing: a finite loss with every term of the stage's recipe present
    assert torch.isfinite(first["total"])
    assert all(torch.isfinite(first[t]) for t in TERMS if t in first)
    if stage == 2:
        assert "gan_real" in first and "gan_fake" in first
    terms = benchmark.pedantic(step, rounds=S.ROUNDS, warmup_rounds=1)
    assert torch.isfinite(terms["total"])
    if not benchmark.enabled:
        return
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(steps_per_s=1.0 / mean, samples_per_s=BATCH / mean,
                                split_s={k: round(v, 5) for k, v in split.items()}, device=str(DEVICE))
    print(f"\nstage {stage} train step, batch {BATCH}, {DEVICE}: {mean:.3f} s/step = {1 / mean:.2f} steps/s "
          f"({BATCH / mean:.0f} samples/s); split (s): " + ", ".join(f"{k} {v:.4f}" for k, v in split.items()))
