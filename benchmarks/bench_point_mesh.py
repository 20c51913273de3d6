"""Point-to-mesh distance (pytorch3d `point_mesh_face_distance`) on CPU against its peers, side by side.

    python -m pytest benchmarks/bench_point_mesh.py --benchmark-group-by=group --benchmark-columns=min,median,mean,rounds

Groups:
- ``eval_100k_20k``: 100k points near a 20k-face mesh, both directions (the loss value), auto engine (KD-tree
  pruned on CPU) vs the tiled brute force and a float64 numpy brute force, both run on a 1k-point
  subsample of the same points (one direction, points to faces) because the full brute force takes
  minutes; `extra_info["points_per_s"]` puts the three on one scale.
- ``train_8x5k``: a training-size batch (8 meshes of 5120 faces, 5k points each), forward + backward of
  the loss, auto engine vs the tiled brute force.

trimesh.proximity.closest_point would be the other natural peer, but it needs `rtree`, not installed here.
Every engine evaluates the same per-pair formula; the test suite checks they agree bitwise.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from sam3d_eval.metrics.point_mesh_distance import point_mesh_face_distance
from sam3d_eval.ops.point_mesh import point_face_distance
from sam3d_eval.runtime import runtime_policy
from sam3d_eval.structures import Meshes, Pointclouds
from sizes import sizes_for

S = sizes_for("point_mesh")  # benchmarks/sizes.py
SUBSAMPLE = S.SUBSAMPLE


def _mesh_and_points(subdiv: int, n_points: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    import trimesh

    rng = np.random.default_rng(seed)
    tm = trimesh.creation.icosphere(subdivisions=subdiv)
    verts = tm.vertices * (1 + 0.03 * rng.standard_normal((len(tm.vertices), 1)))
    mesh = trimesh.Trimesh(verts, tm.faces, process=False)
    pts, _ = trimesh.sample.sample_surface(mesh, n_points, seed=seed)
    pts = pts + 0.02 * rng.standard_normal(pts.shape)  # a prediction's samples: near, not on, the surface
    verts_t = torch.tensor(np.asarray(verts), dtype=torch.float32)
    return verts_t, torch.tensor(np.asarray(tm.faces)), torch.tensor(pts, dtype=torch.float32)


def _numpy_point_face(points: np.ndarray, tris: np.ndarray, min_area: float = 5e-3) -> np.ndarray:
    """float64 numpy brute force of pytorch3d's point-to-face squared distance (one point at a time)."""
    a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
    e0, e1 = b - a, c - a
    raw = np.cross(c - a, b - a)
    nn = np.linalg.norm(raw, axis=1)
    n = raw / (nn + 1e-8)[:, None]
    area = np.linalg.norm(np.cross(e0, e1), axis=1) / 2
    d00, d01, d11 = (e0 * e0).sum(1), (e0 * e1).sum(1), (e1 * e1).sum(1)
    denom = d00 * d11 - d01 * d01 + 1e-8
    ok = (area >= min_area) & (nn > 1e-8)

    def seg(p, x, y):
        yx = y - x
        t = np.clip(((p - x) * yx).sum(1) / (yx * yx).sum(1), 0, 1)
        return ((p - (x + t[:, None] * yx)) ** 2).sum(1)

    out = np.empty(len(points))
    for k, p in enumerate(points):
        t = ((a - p) * n).sum(1)
        q = p + t[:, None] * n - a
        d20, d21 = (q * e0).sum(1), (q * e1).sum(1)
        w1 = (d11 * d20 - d01 * d21) / denom
        w2 = (d00 * d21 - d01 * d20) / denom
        w0 = 1 - w1 - w2
        inside = ok & (w0 >= 0) & (w0 <= 1) & (w1 >= 0) & (w1 <= 1) & (w2 >= 0) & (w2 <= 1)
        edge = np.minimum(np.minimum(seg(p, a, b), seg(p, a, c)), seg(p, b, c))
        out[k] = np.where(inside, t * t, edge).min()
    return out


@pytest.fixture(autouse=True, scope="module")
def cpu_policy():
    """Every case runs as the CLI and the runner run it: inside the CPU runtime policy (runtime.py)."""
    with runtime_policy("cpu"):
        yield


@pytest.fixture(scope="module")
def eval_case():
    """Level 5: 20480 faces. Before any timing: on the subsample, the auto engine matches the float64 numpy
    brute force and the tiled torch brute force bitwise."""
    verts, faces, pts = _mesh_and_points(S.SUBDIV, S.N, 0)
    tris, z = verts[faces], torch.zeros(1, dtype=torch.int64)
    auto, _ = point_face_distance(pts[:SUBSAMPLE], z, tris, z)
    brute, _ = point_face_distance(pts[:SUBSAMPLE], z, tris, z, engine="brute")
    assert torch.equal(auto, brute)
    ref = _numpy_point_face(pts[:SUBSAMPLE].double().numpy(), tris.double().numpy())
    np.testing.assert_allclose(auto.numpy(), ref, rtol=1e-4, atol=1e-7)
    return verts, faces, pts


def _rate(benchmark, n_points: int) -> None:
    if benchmark.enabled:
        benchmark.extra_info["points_per_s"] = n_points / benchmark.stats.stats.min


@pytest.mark.benchmark(group="eval_100k_20k")
def test_ours_auto_full(benchmark, eval_case):
    verts, faces, pts = eval_case
    meshes, pcls = Meshes([verts], [faces]), Pointclouds([pts])
    benchmark.pedantic(lambda: point_mesh_face_distance(meshes, pcls), rounds=3, iterations=1, warmup_rounds=0)
    _rate(benchmark, pts.shape[0])


@pytest.mark.benchmark(group="eval_100k_20k")
def test_ours_auto_point_to_face_only(benchmark, eval_case):
    verts, faces, pts = eval_case
    tris, z = verts[faces], torch.zeros(1, dtype=torch.int64)
    benchmark.pedantic(lambda: point_face_distance(pts, z, tris, z), rounds=3, iterations=1, warmup_rounds=0)
    _rate(benchmark, pts.shape[0])


@pytest.mark.benchmark(group="eval_100k_20k")
def test_ours_brute_subsample(benchmark, eval_case):
    verts, faces, pts = eval_case
    tris, z = verts[faces], torch.zeros(1, dtype=torch.int64)
    sub = pts[:SUBSAMPLE]
    benchmark.pedantic(
        lambda: point_face_distance(sub, z, tris, z, engine="brute"), rounds=1, iterations=1, warmup_rounds=0
    )
    _rate(benchmark, SUBSAMPLE)


@pytest.mark.benchmark(group="eval_100k_20k")
def test_numpy_float64_subsample(benchmark, eval_case):
    verts, faces, pts = eval_case
    tris = verts[faces].double().numpy()
    sub = pts[:SUBSAMPLE].double().numpy()
    benchmark.pedantic(lambda: _numpy_point_face(sub, tris), rounds=1, iterations=1, warmup_rounds=0)
    _rate(benchmark, SUBSAMPLE)


@pytest.fixture(scope="module")
def train_case():
    cases = [_mesh_and_points(S.TRAIN_SUBDIV, S.TRAIN_N, seed) for seed in range(S.TRAIN_B)]  # level 4: 5120 faces
    verts, faces, pts = [c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases]
    # before timing: the auto engine's loss and gradients equal the tiled brute force's
    import sam3d_eval.ops.point_mesh as pm

    out = {}
    for engine in ("auto", "brute"):
        v = [x.clone().requires_grad_(True) for x in verts]
        with pytest.MonkeyPatch.context() as mp:
            if engine == "brute":
                mp.setattr(pm, "select_engine", lambda *a: "brute")
            loss = point_mesh_face_distance(Meshes(v, faces), Pointclouds(pts))
            loss.backward()
        out[engine] = (loss.detach(), torch.cat([x.grad for x in v]))
    torch.testing.assert_close(out["auto"], out["brute"], rtol=1e-5, atol=1e-8)
    return verts, faces, pts


@pytest.mark.parametrize("engine", ["auto", "brute"])
@pytest.mark.benchmark(group="train_8x5k")
def test_train_forward_backward(benchmark, train_case, engine, monkeypatch):
    verts, faces, pts = train_case
    if engine == "brute":
        import sam3d_eval.ops.point_mesh as pm

        monkeypatch.setattr(pm, "select_engine", lambda *a: "brute")

    def step():
        v = [x.clone().requires_grad_(True) for x in verts]
        loss = point_mesh_face_distance(Meshes(v, faces), Pointclouds(pts))
        loss.backward()
        return loss

    rounds = 3 if engine == "auto" else 1
    t0 = time.perf_counter()
    benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=0)
    benchmark.extra_info["wall_s"] = time.perf_counter() - t0
