"""Mesh regularisers against pytorch3d's golden outputs, float64 references, ragged batches and gradients."""


import numpy as np
import pytest
import torch

from sam3d_eval.metrics.mesh_losses import (
    cot_laplacian,
    mesh_edge_loss,
    mesh_laplacian_smoothing,
    mesh_normal_consistency,
)
from sam3d_eval.structures.meshes import Meshes


def _golden_meshes(g, dtype=torch.float32):
    verts = [torch.tensor(g[f"mesh{i}/verts"], dtype=dtype) for i in range(2)]
    faces = [torch.tensor(g[f"mesh{i}/faces"]) for i in range(2)]
    return verts, faces


GOLDEN = {
    "laplacian_uniform": lambda m: mesh_laplacian_smoothing(m, "uniform"),
    "laplacian_cot": lambda m: mesh_laplacian_smoothing(m, "cot"),
    "laplacian_cotcurv": lambda m: mesh_laplacian_smoothing(m, "cotcurv"),
    "normal_consistency": mesh_normal_consistency,
    "edge_loss_0": lambda m: mesh_edge_loss(m, 0.0),
    "edge_loss_01": lambda m: mesh_edge_loss(m, 0.1),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden(p3d_golden, name):
    verts, faces = _golden_meshes(p3d_golden)
    out = GOLDEN[name](Meshes(verts, faces))
    assert out.dim() == 0
    np.testing.assert_allclose(out.item(), p3d_golden[f"mesh_losses/{name}"], rtol=1e-4)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_ragged_batch_is_mean_of_singles(p3d_golden, name):
    verts, faces = _golden_meshes(p3d_golden, torch.float64)
    # A third, smaller mesh makes the batch ragged in verts, faces and edges.
    v, f = _small_mesh()
    verts.append(torch.tensor(v))
    faces.append(torch.tensor(f))
    batch = GOLDEN[name](Meshes(verts, faces))
    singles = [GOLDEN[name](Meshes([v], [f])) for v, f in zip(verts, faces)]
    torch.testing.assert_close(batch, torch.stack(singles).mean(), rtol=1e-10, atol=0)


# ---- float64 references written from the definitions, with plain loops ------------------------------


def _edges(faces):
    return sorted({tuple(sorted((int(f[i]), int(f[j])))) for f in faces for i, j in ((0, 1), (1, 2), (2, 0))})


def _ref_uniform(v, faces):
    nbrs = {i: set() for i in range(len(v))}
    for a, b in _edges(faces):
        nbrs[a].add(b)
        nbrs[b].add(a)
    out = []
    for i in range(len(v)):
        lv = (np.mean([v[j] for j in nbrs[i]], axis=0) if nbrs[i] else 0.0) - v[i]
        out.append(np.linalg.norm(lv))
    return np.mean(out)


def _ref_cot(v, faces, method):
    V = len(v)
    L = np.zeros((V, V))
    area_sum = np.zeros(V)
    for f in faces:
        for k in range(3):
            i, j, o = f[(k + 1) % 3], f[(k + 2) % 3], f[k]  # edge (i, j) opposite vertex o
            a, b = v[i] - v[o], v[j] - v[o]
            cot = a @ b / np.linalg.norm(np.cross(a, b))
            L[i, j] += cot
            L[j, i] += cot
        area = np.linalg.norm(np.cross(v[f[1]] - v[f[0]], v[f[2]] - v[f[0]])) / 2
        area_sum[list(f)] += area
    rs = L.sum(1)
    if method == "cot":
        w = np.where(rs > 0, 1 / np.where(rs > 0, rs, 1), rs)
        lv = (L @ v) * w[:, None] - v
    else:
        lv = (L @ v - rs[:, None] * v) * (0.25 / np.where(area_sum > 0, area_sum, 1))[:, None]
    return np.mean(np.linalg.norm(lv, axis=1))


def _ref_normal_consistency(v, faces):
    # pytorch3d: per (face, edge) the normal (v1 - v0) x (opposite - v0); pairs per edge as its
    # i in [0, k-2], j in [1, k-1], i != j enumeration.
    groups = {}
    for f in faces:
        for k in range(3):
            e = tuple(sorted((int(f[(k + 1) % 3]), int(f[(k + 2) % 3]))))
            n = np.cross(v[e[1]] - v[e[0]], v[f[k]] - v[e[0]])
            groups.setdefault(e, []).append(n)
    losses = []
    for ns in groups.values():
        for i in range(len(ns) - 1):
            for j in range(1, len(ns)):
                if i != j:
                    a, b = ns[i], -ns[j]
                    losses.append(1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return np.mean(losses)


def _small_mesh(seed=0):
    import trimesh

    tm = trimesh.creation.icosphere(subdivisions=1)
    rng = np.random.default_rng(seed)
    v = tm.vertices * (1 + 0.1 * rng.standard_normal((len(tm.vertices), 1)))
    return v, np.asarray(tm.faces)


def _nonmanifold_mesh():
    # Edge (0, 1) shared by 4 faces, edge (0, 2) by 2; vertex 7 is isolated.
    v = np.array(
        [[0, 0, 0], [1, 0, 0], [0.3, 1, 0.1], [0.5, -1, 0.2], [0.4, 0.2, 1], [0.6, 0.1, -1], [0.2, 1.2, 0.9], [3, 3, 3]],
        dtype=np.float64,
    )
    f = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4], [1, 0, 5], [0, 2, 6]])
    return v, f


@pytest.mark.parametrize("mesh", [_small_mesh, _nonmanifold_mesh])
def test_against_loop_references(mesh):
    v, f = mesh()
    m = Meshes([torch.tensor(v)], [torch.tensor(f)])
    np.testing.assert_allclose(mesh_laplacian_smoothing(m, "uniform").item(), _ref_uniform(v, f), rtol=1e-10)
    np.testing.assert_allclose(mesh_laplacian_smoothing(m, "cot").item(), _ref_cot(v, f, "cot"), rtol=1e-8)
    np.testing.assert_allclose(mesh_laplacian_smoothing(m, "cotcurv").item(), _ref_cot(v, f, "cotcurv"), rtol=1e-8)
    np.testing.assert_allclose(mesh_normal_consistency(m).item(), _ref_normal_consistency(v, f), rtol=1e-10)
    lengths = np.array([np.linalg.norm(v[a] - v[b]) for a, b in _edges(f)])
    np.testing.assert_allclose(mesh_edge_loss(m, 0.3).item(), np.mean((lengths - 0.3) ** 2), rtol=1e-12)


def test_isolated_vertex_counts_in_uniform_laplacian():
    # pytorch3d's uniform Laplacian has -1 on the whole diagonal: an isolated vertex contributes |v|.
    v, f = _nonmanifold_mesh()
    with_iso = mesh_laplacian_smoothing(Meshes([torch.tensor(v)], [torch.tensor(f)]), "uniform").item()
    without = mesh_laplacian_smoothing(Meshes([torch.tensor(v[:7])], [torch.tensor(f)]), "uniform").item()
    np.testing.assert_allclose(with_iso * 8, without * 7 + np.linalg.norm(v[7]), rtol=1e-12)


def test_nonmanifold_pair_count():
    # 4 faces on one edge give 7 pairs (pytorch3d's enumeration), 2 faces give 1: check the weighting.
    v, f = _nonmanifold_mesh()
    out = mesh_normal_consistency(Meshes([torch.tensor(v)], [torch.tensor(f)])).item()
    ref = _ref_normal_consistency(v, f)
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    groups = {}
    for face in f:
        for k in range(3):
            groups.setdefault(tuple(sorted((face[(k + 1) % 3], face[(k + 2) % 3]))), []).append(k)
    assert sum(len(g) ** 2 - 3 * len(g) + 3 for g in groups.values() if len(g) > 1) == 8


def test_cot_laplacian_matches_dense():
    v, f = _small_mesh(1)
    L, inv_areas = cot_laplacian(torch.tensor(v), torch.tensor(f))
    dense = L.to_dense().numpy()
    assert np.allclose(dense, dense.T)
    i, j = f[0, 1], f[0, 2]
    # Entry (i, j) is cot a_ij + cot b_ij over the two faces on edge (i, j).
    ref = 0.0
    for face in f:
        if {i, j} <= set(face.tolist()):
            k = next(x for x in face if x not in (i, j))
            a, b = v[i] - v[k], v[j] - v[k]
            ref += a @ b / np.linalg.norm(np.cross(a, b))
    np.testing.assert_allclose(dense[i, j], ref, rtol=1e-10)
    areas = np.zeros(len(v))
    for face in f:
        areas[face] += np.linalg.norm(np.cross(v[face[1]] - v[face[0]], v[face[2]] - v[face[0]])) / 2
    np.testing.assert_allclose(inv_areas[:, 0].numpy(), 1 / areas, rtol=1e-10)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_gradcheck(name):
    v, f = _nonmanifold_mesh()
    v = v[:7] + 0.05 * np.random.default_rng(0).standard_normal((7, 3))
    faces = torch.tensor(f)
    verts = torch.tensor(v, requires_grad=True)
    fn = GOLDEN[name]
    if name.startswith("laplacian_c"):
        # L is a constant w.r.t. verts (built without autograd, as pytorch3d): check against it.
        method = name.split("_")[1]
        L, inv_areas = cot_laplacian(verts.detach().clone(), faces)

        def fixed_L(x):
            rs = torch.sparse.sum(L, dim=1).to_dense()[:, None]
            lv = torch.sparse.mm(L, x)
            if method == "cot":
                lv = lv * torch.where(rs > 0, 1 / rs, rs) - x
            else:
                lv = (lv - rs * x) * 0.25 * inv_areas
            return lv.norm(dim=1).mean()

        g = torch.autograd.grad(fn(Meshes([verts], [faces])), verts)[0]
        g_ref = torch.autograd.grad(fixed_L(verts), verts)[0]
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
        assert torch.autograd.gradcheck(fixed_L, (verts,))
    else:
        assert torch.autograd.gradcheck(lambda x: fn(Meshes([x], [faces])), (verts,))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_gradients_finite(p3d_golden, name):
    verts, faces = _golden_meshes(p3d_golden)
    verts = [v.requires_grad_(True) for v in verts]
    GOLDEN[name](Meshes(verts, faces)).backward()
    for v in verts:
        assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_empty_meshes(name):
    m = Meshes([torch.zeros(0, 3)], [torch.zeros(0, 3, dtype=torch.int64)])
    out = GOLDEN[name](m)
    assert out.shape == (1,) and out.item() == 0.0 and out.requires_grad


def test_bad_method():
    v, f = _small_mesh()
    with pytest.raises(ValueError, match="uniform, cot, cotcurv"):
        mesh_laplacian_smoothing(Meshes([torch.tensor(v)], [torch.tensor(f)]), "bogus")


