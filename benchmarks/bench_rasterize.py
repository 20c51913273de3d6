"""Rasteriser throughput: 8 views of 256x256 of a 20k-face mesh (reference anchor, not rerun here because pytorch3d does not install: pytorch3d CPU
31 s on the 2-core machine; target under 3 s), the full shaded `render_views`, and a dense per-(pixel,
face) torch reference at a size where it is feasible.

Run: `python -m pytest benchmarks/bench_rasterize.py --benchmark-only -s`
"""

import time

import pytest
import torch
import trimesh

from sam3d_eval.ops.rasterize import rasterize_meshes
from sam3d_eval.render.multiview import default_views, render_views
from sam3d_eval.structures.meshes import Meshes
from sam3d_eval.structures.textures import TexturesVertex
from sizes import sizes_for

S = sizes_for("rasterize")  # benchmarks/sizes.py
SIDE = S.SIDE
PYTORCH3D_CPU_SECONDS = 31.0  # the anchor is for the full size only


def _icosphere(subdivisions: int) -> Meshes:
    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.5)  # fits the unit cube
    v = torch.tensor(s.vertices, dtype=torch.float32)
    return Meshes([v], [torch.tensor(s.faces)], TexturesVertex([v + 0.5]))


def _report(benchmark, name: str, views: int) -> None:
    if not benchmark.enabled:
        return
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(seconds=mean, views_per_s=views / mean, vs_pytorch3d_cpu=PYTORCH3D_CPU_SECONDS / mean)
    print(f"\n{name}: {mean:.3f} s, {views / mean:.1f} views/s, {PYTORCH3D_CPU_SECONDS / mean:.0f}x the pytorch3d CPU anchor")


@pytest.fixture(scope="module")
def sphere20k():
    mesh = _icosphere(S.SUBDIV)
    assert int(mesh.num_faces_per_mesh()[0]) == 20 * 4**S.SUBDIV  # level 5: 20480
    return mesh


def test_rasterize_8_views_256_20k_faces(benchmark, sphere20k):
    screen = default_views((SIDE, SIDE)).project(sphere20k.verts_packed())
    frags = rasterize_meshes(sphere20k, screen, (SIDE, SIDE))  # before timing: the sphere covers its share
    assert (frags.pix_to_face >= 0).float().mean() > 0.15  # (a 0.5-radius sphere: ~20% of each view)
    benchmark.pedantic(rasterize_meshes, (sphere20k, screen, (SIDE, SIDE)), rounds=S.ROUNDS, warmup_rounds=1)
    _report(benchmark, f"rasterize 8x{SIDE}x{SIDE}, {sphere20k.num_faces_per_mesh()[0]} faces", 8)


def test_render_views_8_views_256_20k_faces(benchmark, sphere20k):
    out = render_views(sphere20k, image_size=(SIDE, SIDE))  # before timing: shape and colours in range
    assert out.rgb.shape == (1, 8, SIDE, SIDE, 3) and torch.isfinite(out.rgb).all()
    benchmark.pedantic(render_views, (sphere20k,), {"image_size": (SIDE, SIDE)}, rounds=S.ROUNDS, warmup_rounds=1)
    _report(benchmark, "render_views (shaded, vertex colours) 8x256x256, 20k faces", 8)


def _dense_reference(mesh: Meshes, screen: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Every (pixel, face) pair of each view at once: pix_to_face `(V, H, W)` (strict inside test)."""
    tri = screen[:, mesh.faces_packed()]  # (V, F, 3, 3)
    py, px = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    p = torch.stack([px, py], -1).reshape(1, -1, 1, 2)  # (1, HW, 1, 2)
    a, b, c = (tri[:, None, :, k, :2] for k in range(3))

    def edge(u, v):
        return (v[..., 0] - u[..., 0]) * (p[..., 1] - u[..., 1]) - (v[..., 1] - u[..., 1]) * (p[..., 0] - u[..., 0])

    e0, e1, e2 = edge(b, c), edge(c, a), edge(a, b)  # (V, HW, F)
    inside = ((e0 > 0) & (e1 > 0) & (e2 > 0)) | ((e0 < 0) & (e1 < 0) & (e2 < 0))
    z = tri[:, None, :, :, 2]
    area = e0 + e1 + e2
    depth = area / (e0 / z[..., 0] + e1 / z[..., 1] + e2 / z[..., 2])
    depth = torch.where(inside, depth, torch.inf)
    best, face = depth.min(-1)
    return torch.where(torch.isfinite(best), face, -1).reshape(-1, H, W)


def test_dense_reference_comparison_small(benchmark):
    mesh = _icosphere(S.DENSE_SUBDIV)  # level 3: 1280 faces
    H = W = S.DENSE_SIDE
    screen = default_views((H, W)).project(mesh.verts_packed())
    t0 = time.perf_counter()
    ref = _dense_reference(mesh, screen, H, W)
    dense_s = time.perf_counter() - t0
    agree = (rasterize_meshes(mesh, screen, (H, W)).pix_to_mesh_face == ref).float().mean().item()
    assert agree > 0.999  # before timing; differences only at exact ties on shared edges
    benchmark.pedantic(rasterize_meshes, (mesh, screen, (H, W)), rounds=S.ROUNDS, warmup_rounds=1)
    if not benchmark.enabled:
        return
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(dense_seconds=dense_s, speedup_vs_dense=dense_s / mean, agreement=agree)
    print(f"\n8x64x64, 1280 faces: binned {mean * 1e3:.1f} ms vs dense per-pixel torch {dense_s * 1e3:.0f} ms "
          f"({dense_s / mean:.0f}x), pixel agreement {agree:.5f}")
