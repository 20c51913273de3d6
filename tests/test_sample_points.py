"""Area-weighted surface sampling: determinism, distribution, on-surface, normals, colours, gradients, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sam3d_eval.ops.sample_points import _inverse_cdf, sample_points_from_meshes
from sam3d_eval.structures import Meshes, TexturesUV, TexturesVertex


def two_triangles() -> Meshes:
    """Two disjoint triangles in the z=0 and z=1 planes with areas 0.5 and 2.0."""
    verts = torch.tensor(
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [2, 0, 1], [0, 2, 1]], dtype=torch.float32
    )
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    return Meshes([verts], [faces])


def random_mesh(seed: int, num_verts: int = 30, num_faces: int = 50) -> Meshes:
    g = torch.Generator().manual_seed(seed)
    verts = torch.randn(num_verts, 3, generator=g)
    faces = torch.stack([torch.randperm(num_verts, generator=g)[:3] for _ in range(num_faces)])
    return Meshes([verts], [faces])


def barycentrics(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """float64 barycentric coordinates `(N, 3)` of points `(N, 3)` in triangles `(N, 3, 3)` (least squares)."""
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    d = points - tri[:, 0]
    a = np.stack([e1, e2], axis=2)  # (N, 3, 2)
    uv = np.linalg.solve(np.einsum("nki,nkj->nij", a, a), np.einsum("nki,nk->ni", a, d)[..., None])[..., 0]
    return np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)


def test_seed_is_deterministic_and_leaves_global_rng_alone():
    mesh = random_mesh(0)
    state = torch.get_rng_state()
    a, na = sample_points_from_meshes(mesh, 500, return_normals=True, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    b, nb = sample_points_from_meshes(mesh, 500, return_normals=True, seed=7)
    c = sample_points_from_meshes(mesh, 500, seed=8)
    assert torch.equal(a, b) and torch.equal(na, nb)
    assert not torch.equal(a, c)
    g = torch.Generator().manual_seed(7)
    assert torch.equal(sample_points_from_meshes(mesh, 500, generator=g), a)
    with pytest.raises(ValueError, match="not both"):
        sample_points_from_meshes(mesh, 10, seed=1, generator=torch.Generator())


def test_area_weighting_binomial():
    n = 20000
    pts = sample_points_from_meshes(two_triangles(), n, seed=0)[0]
    on_big = int((pts[:, 2] > 0.5).sum())
    p = 2.0 / 2.5
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(on_big - n * p) < 5 * sigma, (on_big, n * p, sigma)


def test_face_order_same_distribution_grouped_by_face():
    n = 20000
    mesh = two_triangles()  # face 0 at z = 0 (area 0.5), face 1 at z = 1 (area 2)
    pts = sample_points_from_meshes(mesh, n, seed=0, face_order=True)[0]
    on_big = (pts[:, 2] > 0.5).long()
    p = 2.0 / 2.5
    assert abs(int(on_big.sum()) - n * p) < 5 * math.sqrt(n * p * (1 - p))
    # grouped in face-index order: every face-0 point comes before every face-1 point
    assert torch.equal(on_big, torch.sort(on_big).values)
    again = sample_points_from_meshes(mesh, n, seed=0, face_order=True)[0]
    assert torch.equal(pts, again)
    # points within a face are still uniform (barycentric means 1/3)
    verts = mesh.verts_packed().double().numpy()
    sel = pts[pts[:, 2] > 0.5].double().numpy()
    bary = barycentrics(sel, np.broadcast_to(verts[[3, 4, 5]], (len(sel), 3, 3)))
    assert np.abs(bary.mean(0) - 1 / 3).max() < 5 / math.sqrt(18 * len(sel))


def test_points_lie_on_their_faces_and_uniform_within():
    mesh = two_triangles()
    pts = sample_points_from_meshes(mesh, 4000, seed=1)[0].double().numpy()
    verts = mesh.verts_packed().double().numpy()
    for z, face in ((0.0, [0, 1, 2]), (1.0, [3, 4, 5])):
        sel = pts[np.abs(pts[:, 2] - z) < 0.25]
        assert np.abs(sel[:, 2] - z).max() < 1e-6
        tri = np.broadcast_to(verts[face], (len(sel), 3, 3))
        bary = barycentrics(sel, tri)
        assert bary.min() > -1e-6 and bary.max() < 1 + 1e-6
        # Uniform in the triangle: each barycentric has mean 1/3 (std of a coordinate is 1/sqrt(18)).
        assert np.abs(bary.mean(0) - 1 / 3).max() < 5 / math.sqrt(18 * len(sel))


def convex_mesh(seed: int, num_points: int = 30) -> Meshes:
    """Triangulated convex hull of random points: faces never intersect except along shared edges."""
    from scipy.spatial import ConvexHull

    pts = np.random.default_rng(seed).normal(size=(num_points, 3))
    hull = ConvexHull(pts)
    return Meshes([torch.tensor(pts, dtype=torch.float32)], [torch.tensor(hull.simplices, dtype=torch.int64)])


def test_points_on_mesh_surface_and_normals_equal_face_normals():
    mesh = convex_mesh(3)
    pts, nrm = sample_points_from_meshes(mesh, 3000, return_normals=True, seed=2)
    verts = mesh.verts_packed().double()
    faces = mesh.faces_packed()
    tri = verts[faces]  # (F, 3, 3)
    fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1)
    fn = fn / fn.norm(dim=1, keepdim=True)
    # Identify each point's face: distance to its plane ~0 and barycentrics in [0, 1].
    p = pts[0].double()
    plane = ((p[:, None, :] - tri[None, :, 0]) * fn[None]).sum(-1).abs()  # (N, F)
    cand = plane < 1e-5
    found = torch.zeros(p.shape[0], dtype=torch.bool)
    for f in range(faces.shape[0]):
        rows = cand[:, f].nonzero()[:, 0]
        if rows.numel() == 0:
            continue
        bary = barycentrics(p[rows].numpy(), np.broadcast_to(tri[f].numpy(), (rows.numel(), 3, 3)))
        inside = torch.from_numpy((bary > -1e-5).all(1) & (bary < 1 + 1e-5).all(1))
        hit = rows[inside]
        # Normals equal the face normal (sign included) for points well inside face f (not on a shared edge).
        interior = rows[torch.from_numpy((bary > 1e-4).all(1))]
        assert torch.allclose(nrm[0, interior].double(), fn[f].expand(interior.numel(), 3), atol=1e-5)
        found[hit] = True
    assert found.all()


def test_vertex_colours_constant_and_linear():
    mesh = random_mesh(4)
    verts = mesh.verts_packed()
    const = torch.tensor([0.2, 0.5, 0.9]).expand(verts.shape[0], 3)
    pts, col = sample_points_from_meshes(
        Meshes(mesh.verts_list(), mesh.faces_list(), TexturesVertex([const])), 2000, return_textures=True, seed=0
    )
    assert torch.allclose(col, torch.tensor([0.2, 0.5, 0.9]).expand_as(col), atol=1e-6)
    # A linear field c(x) = A x + b is reproduced exactly by barycentric interpolation.
    A = torch.tensor([[0.3, -0.2, 0.1], [0.0, 0.5, 0.25], [-0.4, 0.1, 0.2]])
    b = torch.tensor([0.5, 0.1, -0.3])
    lin = verts @ A.T + b
    pts, nrm, col = sample_points_from_meshes(
        Meshes(mesh.verts_list(), mesh.faces_list(), TexturesVertex([lin])), 2000, True, True, seed=0
    )
    assert torch.allclose(col, pts @ A.T + b, atol=1e-5)
    assert nrm.shape == pts.shape == (1, 2000, 3)


def test_uv_texture_lookup_linear_in_u_and_constant():
    # A square in z=0 with UV = (x, y); a map whose red channel rises linearly across texel centres.
    verts = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=torch.float32)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    W, H = 8, 4
    tex_map = torch.zeros(H, W, 3)
    tex_map[..., 0] = torch.arange(W, dtype=torch.float32)[None, :] / (W - 1)
    tex_map[..., 1] = 0.25
    uvs = verts[:, :2].clone()
    tex = TexturesUV([tex_map], [faces], [uvs])
    pts, col = sample_points_from_meshes(Meshes([verts], [faces], tex), 3000, return_textures=True, seed=5)
    u = pts[0, :, 0].double()
    # Texel centres at (i + 0.5) / W (align_corners=False), clamped at the border.
    expected_r = ((u * W - 0.5) / (W - 1)).clamp(0, 1)
    assert torch.allclose(col[0, :, 0].double(), expected_r, atol=1e-5)
    assert torch.allclose(col[0, :, 1], torch.full_like(col[0, :, 1], 0.25))
    assert torch.all(col[0, :, 2] == 0)


def test_gradient_flows_to_vertices():
    mesh = random_mesh(5)
    verts = mesh.verts_packed().clone().requires_grad_(True)
    m = Meshes([verts], mesh.faces_list())
    pts, nrm = sample_points_from_meshes(m, 500, return_normals=True, seed=0)
    (pts.sum() + nrm[..., 0].sum()).backward()
    assert verts.grad is not None and verts.grad.abs().sum() > 0
    # Translating all vertices translates the samples (same faces and barycentrics for the same seed).
    shifted = sample_points_from_meshes(Meshes([verts.detach() + 3.0], mesh.faces_list()), 500, seed=0)
    assert torch.allclose(shifted, pts.detach() + 3.0, atol=1e-5)


def test_ragged_batch_matches_single_mesh_distribution_and_zero_area():
    big = random_mesh(6, 40, 80)
    small = two_triangles()
    flat = Meshes([torch.zeros(3, 3)], [torch.tensor([[0, 1, 2]])])  # zero area
    empty = Meshes([torch.zeros(0, 3)], [torch.zeros(0, 3, dtype=torch.int64)])
    batch = Meshes(
        [small.verts_list()[0], flat.verts_list()[0], big.verts_list()[0], empty.verts_list()[0]],
        [small.faces_list()[0], flat.faces_list()[0], big.faces_list()[0], empty.faces_list()[0]],
        TexturesVertex([torch.ones(6, 3), torch.ones(3, 3), torch.ones(40, 3), torch.ones(0, 3)]),
    )
    pts, nrm, col = sample_points_from_meshes(batch, 5000, return_normals=True, return_textures=True, seed=3)
    assert pts.shape == (4, 5000, 3) and col.shape == (4, 5000, 3)
    for b in (1, 3):
        assert torch.all(pts[b] == 0) and torch.all(nrm[b] == 0) and torch.all(col[b] == 0)
    assert torch.allclose(col[0], torch.ones_like(col[0])) and torch.allclose(col[2], torch.ones_like(col[2]))
    # Element 0 samples only its own two triangles with the right area split.
    z = pts[0, :, 2]
    assert torch.all((z.abs() < 1e-6) | ((z - 1).abs() < 1e-6))
    n, p = 5000, 0.8
    assert abs(int((z > 0.5).sum()) - n * p) < 5 * math.sqrt(n * p * (1 - p))
    # Element 2's points lie on mesh `big`: compare against sampling it alone (same support, bbox).
    alone = sample_points_from_meshes(big, 5000, seed=3)[0]
    lo, hi = big.verts_packed().amin(0), big.verts_packed().amax(0)
    assert torch.all(pts[2] >= lo - 1e-5) and torch.all(pts[2] <= hi + 1e-5)
    assert torch.allclose(pts[2].mean(0), alone.mean(0), atol=0.1)


def test_errors():
    with pytest.raises(ValueError, match="empty"):
        sample_points_from_meshes(Meshes([torch.zeros(0, 3)], [torch.zeros(0, 3, dtype=torch.int64)]), 10)
    with pytest.raises(ValueError, match="no textures"):
        sample_points_from_meshes(two_triangles(), 10, return_textures=True)
    bad = two_triangles().verts_packed().clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sample_points_from_meshes(Meshes([bad], two_triangles().faces_list()), 10)


def test_inverse_cdf_matches_searchsorted_with_zero_weights():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(5000, generator=g, dtype=torch.float64)
    w[torch.rand(5000, generator=g) < 0.3] = 0  # zero-area faces must never be chosen
    w[:100] = 1e-9  # a dense cluster of tiny faces: long runs in one guide slice
    cum = torch.cumsum(w, 0)
    x = torch.rand(20000, generator=g, dtype=torch.float64) * cum[-1]
    idx = _inverse_cdf(cum, x)
    ref = torch.from_numpy(np.searchsorted(cum.numpy(), x.numpy(), side="right"))
    assert torch.equal(idx, ref)
    assert torch.all(w[idx] > 0)


# ---- the shared UV lookup (ops.texture_lookup) ------------------------------------------------------
def _bilinear_uv_reference(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """float64 brute force: wrap UVs into [0, 1), flip v, texel centres at (i + 0.5) / W, clamp at the border."""
    H, W, _ = tex.shape
    u, v = uv[..., 0] - np.floor(uv[..., 0]), uv[..., 1] - np.floor(uv[..., 1])
    x = np.clip(u * W - 0.5, 0, W - 1)
    y = np.clip((1 - v) * H - 0.5, 0, H - 1)
    x0, y0 = np.minimum(np.floor(x).astype(int), W - 2), np.minimum(np.floor(y).astype(int), H - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    return (
        tex[y0, x0] * (1 - fx) * (1 - fy) + tex[y0, x0 + 1] * fx * (1 - fy)
        + tex[y0 + 1, x0] * (1 - fx) * fy + tex[y0 + 1, x0 + 1] * fx * fy
    )


def test_sample_uv_matches_float64_reference_with_tiling_and_any_leading_shape():
    from sam3d_eval.ops.texture_lookup import sample_uv

    rng = np.random.default_rng(7)
    tex = rng.random((5, 7, 4))
    uv = rng.uniform(-2.0, 3.0, size=(2, 3, 4, 2))  # tiled UVs, outside [0, 1]
    uv[0, 0, 0] = [0.01, 0.99]  # inside the half-texel border: clamped, not wrapped
    got = sample_uv(torch.from_numpy(tex), torch.from_numpy(uv))
    assert got.shape == (2, 3, 4, 4) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), _bilinear_uv_reference(tex, uv), rtol=0, atol=1e-12)
    # The bottom-left texel is at v = 0 (the image's last row): a corner lookup returns it.
    corner = sample_uv(torch.from_numpy(tex), torch.tensor([0.0, 0.0], dtype=torch.float64))
    np.testing.assert_allclose(corner.numpy(), tex[-1, 0], atol=1e-12)
    # Leading dims are only layout: the same points flattened give the same colours, bit for bit.
    flat = sample_uv(torch.from_numpy(tex), torch.from_numpy(uv).reshape(-1, 2))
    assert torch.equal(flat.reshape(got.shape), got)
    # The map is cast to the UVs' dtype.
    assert sample_uv(torch.from_numpy(tex).float(), torch.rand(3, 2, dtype=torch.float64)).dtype == torch.float64


def test_sample_uv_gradients_match_finite_differences():
    from sam3d_eval.ops.texture_lookup import sample_uv

    gen = torch.Generator().manual_seed(1)
    tex = torch.rand(4, 6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    uv = (torch.rand(2, 5, 2, generator=gen, dtype=torch.float64) * 3 - 1).requires_grad_()
    assert torch.autograd.gradcheck(sample_uv, (tex, uv), eps=1e-7, atol=1e-6)


def test_sample_uv_bad_shapes():
    from sam3d_eval.ops.texture_lookup import sample_uv

    with pytest.raises(ValueError, match=r"texture_map must be \(H, W, C\)"):
        sample_uv(torch.rand(4, 4), torch.rand(3, 2))
    with pytest.raises(ValueError, match=r"uv must be \(\.\.\., 2\)"):
        sample_uv(torch.rand(4, 4, 3), torch.rand(3, 3))


def test_per_mesh_generators_make_each_mesh_independent_of_the_batch():
    """A sequence of seeds (or generators) gives every mesh its own stream: bitwise the same points, normals
    and colours alone or at any position of any batch (a single seed depends on the meshes drawn before)."""
    a, b = random_mesh(1), random_mesh(2, num_verts=40, num_faces=70)
    tex = lambda m, c: Meshes(m.verts_list(), m.faces_list(), TexturesVertex([torch.full((m.verts_list()[0].shape[0], 3), c)]))  # noqa: E731
    a, b = tex(a, 0.25), tex(b, 0.75)
    empty = Meshes([torch.zeros(0, 3)], [torch.zeros(0, 3, dtype=torch.int64)], TexturesVertex([torch.zeros(0, 3)]))
    kw = dict(return_normals=True, return_textures=True, face_order=True)
    alone = sample_points_from_meshes(b, 300, seed=[11], **kw)
    batch = Meshes(a.verts_list() + empty.verts_list() + b.verts_list(), a.faces_list() + empty.faces_list() + b.faces_list(),
                   TexturesVertex(a.textures.verts_features + empty.textures.verts_features + b.textures.verts_features))
    together = sample_points_from_meshes(batch, 300, seed=[5, 7, 11], **kw)
    for x, y in zip(alone, together):
        assert torch.equal(x[0], y[2])
    assert all(torch.all(t[1] == 0) for t in together)  # the mesh without faces gets zeros, as batched draws
    gens = [torch.Generator().manual_seed(s) for s in (5, 7, 11)]
    assert all(torch.equal(x, y) for x, y in zip(together, sample_points_from_meshes(batch, 300, generator=gens, **kw)))
    # the single-seed draw of the same batch differs for mesh 2 (its stream follows mesh 0's draws)
    assert not torch.equal(sample_points_from_meshes(batch, 300, seed=11, face_order=True)[2], alone[0][0])
    with pytest.raises(ValueError, match="one per mesh"):
        sample_points_from_meshes(batch, 10, seed=[1, 2])
    with pytest.raises(ValueError, match="empty"):
        sample_points_from_meshes(empty, 10, seed=[1])
