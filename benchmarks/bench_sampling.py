"""Area-weighted surface sampling, 100k points from a 20k-face mesh, against its peers in one run.

    python -m pytest benchmarks/bench_sampling.py --benchmark-columns=min,median,mean

Peers: our `sample_points_from_meshes` (points only; points + normals + vertex colours), trimesh's
`sample.sample_surface` (points + face index), and pytorch3d's algorithm written out in torch
(`torch.multinomial` face choice + advanced indexing), since pytorch3d itself is not installed here.
"""

from __future__ import annotations

import pytest
import torch
import trimesh

from sam3d_eval.ops.sample_points import sample_points_from_meshes
from sam3d_eval.structures import Meshes, TexturesVertex
from sizes import sizes_for

S = sizes_for("sampling")  # benchmarks/sizes.py
NUM_SAMPLES = S.NUM_SAMPLES


@pytest.fixture(scope="module")
def sphere():
    tm = trimesh.creation.icosphere(subdivisions=S.SUBDIV)  # level 5: 20480 faces
    verts = torch.tensor(tm.vertices, dtype=torch.float32)
    faces = torch.tensor(tm.faces, dtype=torch.int64)
    colours = torch.rand(verts.shape[0], 3, generator=torch.Generator().manual_seed(0))
    return tm, Meshes([verts], [faces], TexturesVertex([colours]))


def run(benchmark, fn):
    return benchmark.pedantic(fn, rounds=S.ROUNDS, iterations=1, warmup_rounds=2)


def check_on_surface(points, meshes: Meshes) -> None:
    """Before timing: every sample lies on the (unit, origin-centred) icosphere's surface - between the
    nearest face plane and the circumscribed sphere - and the samples are spread over it (mean near 0)."""
    p = torch.as_tensor(points, dtype=torch.float64).reshape(-1, 3)
    v = meshes.verts_packed().double()
    f = meshes.faces_packed()
    n = torch.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=1)
    inner = ((n / n.norm(dim=1, keepdim=True)) * v[f[:, 0]]).sum(1).abs().min()
    r = p.norm(dim=1)
    assert bool((r >= inner - 1e-5).all() and (r <= 1 + 1e-5).all())
    assert float(p.mean(0).norm()) < 6.0 / p.shape[0] ** 0.5


def multinomial_reference(meshes: Meshes, num_samples: int, generator: torch.Generator) -> torch.Tensor:
    """pytorch3d's sample_points_from_meshes for one mesh, written out (points only)."""
    verts, faces = meshes.verts_packed(), meshes.faces_packed()
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    areas = torch.cross(v1 - v0, v2 - v0, dim=1).norm(dim=1)
    idx = areas[None].multinomial(num_samples, replacement=True, generator=generator)
    uv = torch.rand(2, 1, num_samples, generator=generator)
    su = uv[0].sqrt()
    w0, w1, w2 = 1 - su, su * (1 - uv[1]), su * uv[1]
    return w0[..., None] * v0[idx] + w1[..., None] * v1[idx] + w2[..., None] * v2[idx]


@pytest.mark.benchmark(group="sample-100k-from-20k-faces")
def test_ours_points(benchmark, sphere):
    _, meshes = sphere
    pts = sample_points_from_meshes(meshes, NUM_SAMPLES, seed=0)
    assert pts.shape == (1, NUM_SAMPLES, 3)
    check_on_surface(pts, meshes)
    run(benchmark, lambda: sample_points_from_meshes(meshes, NUM_SAMPLES, seed=0))


@pytest.mark.benchmark(group="sample-100k-from-20k-faces")
def test_ours_points_normals_colours(benchmark, sphere):
    _, meshes = sphere
    out = sample_points_from_meshes(meshes, NUM_SAMPLES, return_normals=True, return_textures=True, seed=0)
    assert out[2].shape == (1, NUM_SAMPLES, 3)
    check_on_surface(out[0], meshes)
    torch.testing.assert_close(out[1].norm(dim=-1), torch.ones(1, NUM_SAMPLES), rtol=0, atol=1e-5)  # unit normals
    run(
        benchmark,
        lambda: sample_points_from_meshes(meshes, NUM_SAMPLES, return_normals=True, return_textures=True, seed=0),
    )


@pytest.mark.benchmark(group="sample-100k-from-20k-faces")
def test_trimesh_sample_surface(benchmark, sphere):
    tm, meshes = sphere
    pts, _ = trimesh.sample.sample_surface(tm, NUM_SAMPLES, seed=0)
    assert pts.shape == (NUM_SAMPLES, 3)
    check_on_surface(pts, meshes)
    run(benchmark, lambda: trimesh.sample.sample_surface(tm, NUM_SAMPLES, seed=0))


@pytest.mark.benchmark(group="sample-100k-from-20k-faces")
def test_pytorch3d_algorithm_multinomial(benchmark, sphere):
    _, meshes = sphere
    g = torch.Generator().manual_seed(0)
    pts = multinomial_reference(meshes, NUM_SAMPLES, g)
    assert pts.shape == (1, NUM_SAMPLES, 3)
    check_on_surface(pts, meshes)
    run(benchmark, lambda: multinomial_reference(meshes, NUM_SAMPLES, g))


@pytest.fixture(scope="module")
def batch8(sphere):
    _, m = sphere
    return Meshes(m.verts_list() * S.BATCH, m.faces_list() * S.BATCH)


@pytest.mark.benchmark(group="sample-8x10k-from-20k-faces")
def test_ours_batch8_one_seed(benchmark, batch8):
    """pytorch3d's batch-wide stream: one packed inverse-CDF search for all 8 meshes."""
    k = S.BATCH_SAMPLES
    pts = sample_points_from_meshes(batch8, k, return_normals=True, seed=0, face_order=True)
    assert pts[0].shape == (S.BATCH, k, 3)
    check_on_surface(pts[0], batch8[0])
    run(benchmark, lambda: sample_points_from_meshes(batch8, k, return_normals=True, seed=0, face_order=True))


@pytest.mark.benchmark(group="sample-8x10k-from-20k-faces")
def test_ours_batch8_per_mesh_streams(benchmark, batch8):
    """One seed per mesh (what the evaluation uses: batch-invariant): each mesh sampled on its own."""
    seeds = list(range(S.BATCH))
    k = S.BATCH_SAMPLES
    pts = sample_points_from_meshes(batch8, k, return_normals=True, seed=seeds, face_order=True)
    assert pts[0].shape == (S.BATCH, k, 3)
    check_on_surface(pts[0], batch8[0])
    run(benchmark, lambda: sample_points_from_meshes(batch8, k, return_normals=True, seed=seeds, face_order=True))
