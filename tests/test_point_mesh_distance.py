"""Point-to-mesh distances against pytorch3d's golden outputs, float64 closed forms, engines and gradients."""

import numpy as np
import pytest
import torch

from sam3d_eval.metrics.point_mesh_distance import (
    point_mesh_edge_distance,
    point_mesh_face_distance,
    point_mesh_surface_distance,
)
from sam3d_eval.ops.point_mesh import (
    edge_point_distance,
    face_point_distance,
    point_edge_distance,
    point_face_distance,
    point_segment_sqdist,
    point_triangle_sqdist,
)
from sam3d_eval.structures.meshes import Meshes
from sam3d_eval.structures.pointclouds import Pointclouds

Z = torch.zeros(1, dtype=torch.int64)


def _golden(g, dtype=torch.float32):
    m = Meshes([torch.tensor(g[f"mesh{i}/verts"], dtype=dtype) for i in range(2)], [torch.tensor(g[f"mesh{i}/faces"]) for i in range(2)])
    p = Pointclouds([torch.tensor(g[f"point_mesh/points{i}"], dtype=dtype) for i in range(2)])
    return m, p


def test_golden_face_distance(p3d_golden):
    m, p = _golden(p3d_golden)
    np.testing.assert_allclose(point_mesh_face_distance(m, p).item(), p3d_golden["point_mesh/face_distance"], rtol=1e-4)


def test_golden_edge_distance(p3d_golden):
    m, p = _golden(p3d_golden)
    np.testing.assert_allclose(point_mesh_edge_distance(m, p).item(), p3d_golden["point_mesh/edge_distance"], rtol=1e-4)


def test_ragged_batch_equals_singles(p3d_golden):
    m, p = _golden(p3d_golden, torch.float64)
    for fn in (point_mesh_face_distance, point_mesh_edge_distance):
        batch = fn(m, p)
        singles = [fn(m[i], p[i]) for i in range(2)]
        torch.testing.assert_close(batch, (singles[0] + singles[1]) / 2, rtol=1e-12, atol=0)
    # Per-element results do not see the other batch element.
    pts, tris = p.points_packed(), m.verts_packed()[m.faces_packed()]
    d, i = point_face_distance(pts, p.cloud_to_packed_first_idx(), tris, m.mesh_to_faces_packed_first_idx())
    d1, i1 = point_face_distance(p.points_list()[1], Z, m.verts_list()[1][m.faces_list()[1]], Z)
    torch.testing.assert_close(d[300:], d1, rtol=0, atol=0)
    assert torch.equal(i[300:], i1 + 1280) and (i[:300] < 1280).all()


# ---- float64 closed form: closest point on a triangle (Ericson, Real-Time Collision Detection 5.1.5) ---


def _closest_on_triangle(p, a, b, c):
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = ab @ ap, ac @ ap
    if d1 <= 0 and d2 <= 0:
        return a
    bp = p - b
    d3, d4 = ab @ bp, ac @ bp
    if d3 >= 0 and d4 <= d3:
        return b
    vc = d1 * d4 - d3 * d2
    if vc <= 0 and d1 >= 0 and d3 <= 0:
        return a + d1 / (d1 - d3) * ab
    cp = p - c
    d5, d6 = ab @ cp, ac @ cp
    if d6 >= 0 and d5 <= d6:
        return c
    vb = d5 * d2 - d1 * d6
    if vb <= 0 and d2 >= 0 and d6 <= 0:
        return a + d2 / (d2 - d6) * ac
    va = d3 * d6 - d5 * d4
    if va <= 0 and (d4 - d3) >= 0 and (d5 - d6) >= 0:
        return b + (d4 - d3) / ((d4 - d3) + (d5 - d6)) * (c - b)
    denom = 1 / (va + vb + vc)
    return a + ab * vb * denom + ac * vc * denom


def test_point_triangle_matches_closed_form():
    rng = np.random.default_rng(0)
    tri = rng.standard_normal((200, 3, 3))
    p = rng.standard_normal((200, 3)) * 1.5
    d = point_triangle_sqdist(*(torch.tensor(x) for x in (p, tri[:, 0], tri[:, 1], tri[:, 2])), min_triangle_area=0.0)
    ref = [np.sum((pi - _closest_on_triangle(pi, *t)) ** 2) for pi, t in zip(p, tri)]
    # Exact up to pytorch3d's 1e-8 offsets (|n| + 1e-8, det + 1e-8) on these O(1) triangles.
    np.testing.assert_allclose(d.numpy(), ref, rtol=1e-6, atol=1e-12)


def test_point_segment_matches_dense_sampling():
    rng = np.random.default_rng(1)
    a, b, p = rng.standard_normal((3, 50, 3))
    d = point_segment_sqdist(*(torch.tensor(x) for x in (p, a, b))).numpy()
    t = np.linspace(0, 1, 20001)
    samples = a[:, None] + t[None, :, None] * (b - a)[:, None]
    ref = ((samples - p[:, None]) ** 2).sum(-1).min(1)
    assert np.all(d <= ref + 1e-12) and np.allclose(d, ref, rtol=1e-6)


def test_min_triangle_area_treats_small_triangles_as_edges():
    s = 0.05  # right triangle of area s^2 / 2 = 1.25e-3 < 5e-3
    v0, v1, v2 = torch.tensor([0.0, 0, 0]), torch.tensor([s, 0, 0]), torch.tensor([0, s, 0])
    p = torch.tensor([s / 4, s / 4, 0.1])
    d_default = point_triangle_sqdist(p, v0, v1, v2)  # edges only: distance to the nearest edge
    d_zero = point_triangle_sqdist(p, v0, v1, v2, min_triangle_area=0.0)  # plane distance
    assert abs(d_zero.item() - 0.01) < 1e-6
    assert abs(d_default.item() - (0.01 + (s / 4) ** 2)) < 1e-6
    # The same triangle scaled up past the threshold is a triangle again.
    k = 10.0
    assert abs(point_triangle_sqdist(p * torch.tensor([k, k, 1]), v0 * k, v1 * k, v2 * k).item() - 0.01) < 1e-5
    # The threshold reaches the batched search and the loss.
    tris = torch.stack([v0, v1, v2])[None]
    d, _ = point_face_distance(p[None], Z, tris, Z)
    torch.testing.assert_close(d, d_default[None])
    d, _ = point_face_distance(p[None], Z, tris, Z, None, 0.0)
    torch.testing.assert_close(d, d_zero[None])


def test_degenerate_triangles_and_segments():
    p = torch.tensor([[0.3, 0.4, 0.5]], dtype=torch.float64, requires_grad=True)
    # Collinear triangle: distance to the segment it spans; a point triangle: distance to the point.
    line = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]], dtype=torch.float64, requires_grad=True)
    point = torch.tensor([[[1.0, 1, 1]] * 3], dtype=torch.float64, requires_grad=True)
    for tri, ref in ((line, 0.4**2 + 0.5**2), (point, 0.7**2 + 0.6**2 + 0.5**2)):
        d, _ = point_face_distance(p, Z, tri, Z, None, 0.0)
        assert abs(d.item() - ref) < 1e-12
        g_p, g_t = torch.autograd.grad(d.sum(), (p, tri))
        assert torch.isfinite(g_p).all() and torch.isfinite(g_t).all()
    # Degenerate segment: pytorch3d's value |p - b|^2 and backward 2(p - a), -(p - a), -(p - a).
    a = torch.tensor([1.0, 1, 1], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0, 1, 1 + 1e-5], dtype=torch.float64, requires_grad=True)
    q = p[0].detach().clone().requires_grad_(True)
    d = point_segment_sqdist(q, a, b)
    assert abs(d.item() - ((q - b) ** 2).sum().item()) < 1e-15
    gq, ga, gb = torch.autograd.grad(d, (q, a, b))
    torch.testing.assert_close(gq, 2 * (q - a).detach())
    torch.testing.assert_close(ga, -(q - a).detach())
    torch.testing.assert_close(gb, -(q - a).detach())


@pytest.mark.parametrize("min_area", [5e-3, 0.0])
@pytest.mark.parametrize("fn", [point_face_distance, face_point_distance])
def test_engines_agree_exactly(p3d_golden, fn, min_area):
    m, p = _golden(p3d_golden)
    rng = np.random.default_rng(2)
    # Points on, near and far from the surfaces; noise at several scales.
    extra = [x + torch.tensor(rng.standard_normal(x.shape) * s, dtype=torch.float32) for x, s in zip(p.points_list(), (0.01, 0.3))]
    p = Pointclouds([torch.cat([a, b]) for a, b in zip(p.points_list(), extra)])
    args = (p.points_packed(), p.cloud_to_packed_first_idx(), m.verts_packed()[m.faces_packed()], m.mesh_to_faces_packed_first_idx(), None, min_area)
    d_b, i_b = fn(*args, engine="brute")
    d_p, i_p = fn(*args, engine="pruned")
    assert torch.equal(d_b, d_p) and torch.equal(i_b, i_p)


@pytest.mark.parametrize("fn", [point_edge_distance, edge_point_distance])
def test_edge_engines_agree_exactly(p3d_golden, fn):
    m, p = _golden(p3d_golden)
    args = (p.points_packed(), p.cloud_to_packed_first_idx(), m.verts_packed()[m.edges_packed()], m.mesh_to_edges_packed_first_idx())
    d_b, i_b = fn(*args, engine="brute")
    d_p, i_p = fn(*args, engine="pruned")
    assert torch.equal(d_b, d_p) and torch.equal(i_b, i_p)


def test_brute_force_matches_dense_reference():
    # Min over all pairs of the per-pair formula, float64, ragged batch of 2.
    rng = np.random.default_rng(3)
    pts = torch.tensor(rng.standard_normal((30, 3)))
    tris = torch.tensor(rng.standard_normal((17, 3, 3)))
    pf, tf = torch.tensor([0, 12]), torch.tensor([0, 5])
    d, idx = point_face_distance(pts, pf, tris, tf, None, 0.0)
    dt, idxt = face_point_distance(pts, pf, tris, tf, None, 0.0)
    full = point_triangle_sqdist(pts[:, None], tris[None, :, 0], tris[None, :, 1], tris[None, :, 2], 0.0)
    for (ps, pe), (ts, te) in (((0, 12), (0, 5)), ((12, 30), (5, 17))):
        block = full[ps:pe, ts:te]
        torch.testing.assert_close(d[ps:pe], block.min(1).values, rtol=0, atol=0)
        torch.testing.assert_close(idx[ps:pe], block.argmin(1) + ts, rtol=0, atol=0)
        torch.testing.assert_close(dt[ts:te], block.min(0).values, rtol=0, atol=0)
        torch.testing.assert_close(idxt[ts:te], block.argmin(0) + ps, rtol=0, atol=0)


def test_ties_go_to_last_index():
    # pytorch3d's CPU loop keeps the last of equally distant elements (`<=`).
    tri = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    tris = torch.stack([tri, tri, tri])
    p = torch.tensor([[0.2, 0.2, 1.0]])
    for engine in ("brute", "pruned"):
        _, i = point_face_distance(p, Z, tris, Z, None, 0.0, engine=engine)
        assert i.item() == 2
        _, i = face_point_distance(torch.cat([p, p]), Z, tris, Z, None, 0.0, engine=engine)
        assert i.tolist() == [1, 1, 1]


def test_gradcheck_point_face():
    rng = np.random.default_rng(4)
    pts = torch.tensor(rng.standard_normal((6, 3)), requires_grad=True)
    tris = torch.tensor(rng.standard_normal((4, 3, 3)), requires_grad=True)
    f = torch.tensor([0, 3]), torch.tensor([0, 2])
    # min_triangle_area=0 so both the plane and the edge branches are exercised.
    assert torch.autograd.gradcheck(lambda x, t: point_face_distance(x, f[0], t, f[1], None, 0.0)[0], (pts, tris))
    assert torch.autograd.gradcheck(lambda x, t: face_point_distance(x, f[0], t, f[1], None, 0.0)[0], (pts, tris))
    segs = tris[:, :2].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, s: point_edge_distance(x, f[0], s, f[1])[0], (pts, segs))
    assert torch.autograd.gradcheck(lambda x, s: edge_point_distance(x, f[0], s, f[1])[0], (pts, segs))


def test_inside_branch_gradient_is_plane_gradient():
    # Inside a large triangle the distance is the squared plane distance: d/dp = -2 t n, vertices share it.
    v = torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 2, 0]], dtype=torch.float64, requires_grad=True)
    p = torch.tensor([0.5, 0.5, 0.3], dtype=torch.float64, requires_grad=True)
    d = point_triangle_sqdist(p, v[0], v[1], v[2])
    gp, gv = torch.autograd.grad(d, (p, v))
    torch.testing.assert_close(gp, torch.tensor([0.0, 0, 0.6], dtype=torch.float64), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(gv.sum(0), -gp, rtol=1e-6, atol=1e-9)


def test_golden_gradients_finite(p3d_golden):
    m, p = _golden(p3d_golden)
    verts = [v.requires_grad_(True) for v in m.verts_list()]
    pts = [x.requires_grad_(True) for x in p.points_list()]
    m, p = Meshes(verts, m.faces_list()), Pointclouds(pts)
    (point_mesh_face_distance(m, p) + point_mesh_edge_distance(m, p)).backward()
    for x in verts + pts:
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def _np_point_mesh_dist(pts, tris):
    """float64 Euclidean point-to-surface distance (P,): plane distance where the projection falls inside
    a triangle (exact barycentrics), else the nearest point of the triangle's edges; min over triangles."""
    a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    out = np.empty(len(pts))
    for k, p in enumerate(pts):
        h = np.einsum("ij,ij->i", p - a, n)
        q = p - h[:, None] * n
        w = [np.einsum("ij,ij->i", np.cross(y - x, q - x), n) for x, y in ((a, b), (b, c), (c, a))]
        inside = (w[0] >= 0) & (w[1] >= 0) & (w[2] >= 0)
        seg = []
        for x, y in ((a, b), (b, c), (c, a)):
            t = np.clip(np.einsum("ij,ij->i", p - x, y - x) / np.einsum("ij,ij->i", y - x, y - x), 0, 1)
            seg.append(np.linalg.norm(p - (x + t[:, None] * (y - x)), axis=1))
        out[k] = np.where(inside, np.abs(h), np.minimum.reduce(seg)).min()
    return out


def test_surface_distance_euclidean(p3d_golden):
    m, p = _golden(p3d_golden, torch.float64)
    d, mean = point_mesh_surface_distance(m, p)
    for i, (pts, v, f) in enumerate(zip(p.points_list(), m.verts_list(), m.faces_list())):
        ref = _np_point_mesh_dist(pts.numpy(), v.numpy()[f.numpy()])
        sl = slice(0, 300) if i == 0 else slice(300, 500)
        np.testing.assert_allclose(d[sl].numpy(), ref, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(mean[i].item(), ref.mean(), rtol=1e-6)
    # Gradients are finite even for a point exactly on the surface.
    v = m.verts_list()[0]
    on = ((v[m.faces_list()[0][0]]).mean(0, keepdim=True)).requires_grad_(True)
    d, _ = point_mesh_surface_distance(m[0], Pointclouds([on]))
    assert d.item() < 1e-7
    (g,) = torch.autograd.grad(d.sum(), on)
    assert torch.isfinite(g).all()


def test_bad_inputs(p3d_golden):
    m, p = _golden(p3d_golden)
    with pytest.raises(ValueError, match="equal sized"):
        point_mesh_face_distance(m, p[0])
    with pytest.raises(ValueError, match="empty"):
        point_mesh_face_distance(m[0], Pointclouds([torch.zeros(0, 3)]))
    with pytest.raises(ValueError, match="tris must be"):
        point_face_distance(torch.zeros(3, 3), Z, torch.zeros(4, 3), Z)
    with pytest.raises(ValueError, match="share dtype"):
        point_face_distance(torch.zeros(3, 3), Z, torch.zeros(4, 3, 3, dtype=torch.float64), Z)


@pytest.mark.parametrize("fn", [point_face_distance, face_point_distance])
def test_engines_agree_on_slivers_and_tiny_triangles(fn):
    # Slivers (ill-conditioned barycentrics) and tiny triangles (the +1e-8 offsets inflate the "inside"
    # region) take the pruned engine's brute-force fallback or its widened radii; results stay identical.
    rng = np.random.default_rng(5)
    base = rng.uniform(-1, 1, (300, 1, 3))
    tris = base + 0.2 * rng.standard_normal((300, 3, 3))
    tris[:20, 2] = tris[:20, 0] + (tris[:20, 1] - tris[:20, 0]) * 0.5 + 1e-4 * rng.standard_normal((20, 3))
    tris[20:40] = tris[20:40, :1] + 1e-4 * rng.standard_normal((20, 3, 3))
    tris = torch.tensor(tris, dtype=torch.float32)
    pts = torch.tensor(rng.uniform(-1.2, 1.2, (400, 3)), dtype=torch.float32)
    for min_area in (0.0, 5e-3):
        d_b, i_b = fn(pts, Z, tris, Z, None, min_area, engine="brute")
        d_p, i_p = fn(pts, Z, tris, Z, None, min_area, engine="pruned")
        assert torch.equal(d_b, d_p) and torch.equal(i_b, i_p)


# --- the evaluation's exact point-to-surface distance ------------------------------------------------


def test_surface_distance_exact_on_tiny_triangle():
    """pytorch3d's +1e-8 in the Gram determinant swamps a 1e-3-sided triangle: the far point (1, 1, 0.5)
    counted as "inside" and got its plane distance 0.495; the exact distance is 1.4993 (float64 reference)."""
    v = torch.tensor([[0.0, 0, 0], [1e-3, 0, 0], [0, 1e-3, 0]])
    f = torch.tensor([[0, 1, 2]])
    p = torch.tensor([[1.0, 1.0, 0.5]])
    ref = _np_point_mesh_dist(p.double().numpy(), v.double().numpy()[f.numpy()])[0]
    d, mean = point_mesh_surface_distance(Meshes([v], [f]), Pointclouds([p]))
    assert ref == pytest.approx(1.49933, abs=1e-5)
    assert d.item() == pytest.approx(ref, rel=1e-6) and mean.item() == pytest.approx(ref, rel=1e-6)
    # the loss keeps pytorch3d's formula (and golden values): 0.495 there
    d_p3d, _ = point_mesh_surface_distance(Meshes([v], [f]), Pointclouds([p]), min_triangle_area=0.0)
    assert d_p3d.item() == pytest.approx(0.495, abs=1e-3)


@pytest.mark.parametrize("engine", ["brute", "pruned"])
@pytest.mark.parametrize("scale", [1e-4, 1e-2, 1.0, 100.0])
def test_exact_point_triangle_any_scale(engine, scale):
    """Random triangles and points at any scale: exact to float32 rounding (relative), both engines."""
    g = torch.Generator().manual_seed(int(scale * 1e4) % 997)
    tris = (torch.rand(300, 1, 3, generator=g) * 4 + torch.randn(300, 3, 3, generator=g) * 0.05) * scale
    pts = torch.randn(400, 3, generator=g) * 2 * scale
    ref = _np_point_mesh_dist(pts.double().numpy(), tris.double().numpy())
    d2, _ = point_face_distance(pts, Z, tris, Z, None, None, engine=engine)
    np.testing.assert_allclose(d2.sqrt().double().numpy(), ref, rtol=2e-6, atol=1e-6 * scale)
    d2_64, _ = point_face_distance(pts.double(), Z, tris.double(), Z, None, None, engine=engine)
    np.testing.assert_allclose(d2_64.sqrt().numpy(), ref, rtol=1e-11, atol=1e-13 * scale)


def test_surface_distance_exact_on_fine_icosphere():
    """Icosphere level 6 (81920 faces, sides ~0.015): the pytorch3d formula errs by up to ~5e-4 on distances
    of ~0.06; the evaluation distance matches a float64 brute force to float32 rounding."""
    import trimesh

    tm = trimesh.creation.icosphere(subdivisions=6)
    v = torch.tensor(np.asarray(tm.vertices), dtype=torch.float32)
    f = torch.tensor(np.asarray(tm.faces))
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(150, 3, generator=g), dim=1)
    pts = dirs * (1 + 0.12 * (torch.rand(150, 1, generator=g) - 0.5))
    tris = v.double().numpy()[f.numpy()]
    centres = tris.mean(1)
    # Each point is within 0.06 of the sphere, so its nearest face has its centre within 0.1: brute-force those.
    ref = np.array([_np_point_mesh_dist(q[None], tris[np.linalg.norm(centres - q, axis=1) < 0.1])[0] for q in pts.double().numpy()])
    d, _ = point_mesh_surface_distance(Meshes([v], [f]), Pointclouds([pts]))
    np.testing.assert_allclose(d.double().numpy(), ref, rtol=1e-5, atol=2e-7)
    d_p3d, _ = point_mesh_surface_distance(Meshes([v], [f]), Pointclouds([pts]), min_triangle_area=0.0)
    assert np.abs(d_p3d.double().numpy() - ref).max() > 1e-5  # what the exact path fixes


def test_exact_point_triangle_gradcheck_and_degenerate():
    from sam3d_eval.ops.point_mesh import point_triangle_sqdist_exact

    g = torch.Generator().manual_seed(2)
    p = torch.randn(40, 3, generator=g, dtype=torch.float64, requires_grad=True)
    tri = (torch.randn(40, 3, 3, generator=g, dtype=torch.float64) * 0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, t: point_triangle_sqdist_exact(x, t[:, 0], t[:, 1], t[:, 2]), (p, tri))
    # a degenerate (collinear) triangle is its longest segment; a point triangle is a point
    seg = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]], dtype=torch.float64)
    q = torch.tensor([3.0, 1, 0], dtype=torch.float64)
    assert point_triangle_sqdist_exact(q, seg[0], seg[1], seg[2]).item() == pytest.approx(2.0)
    z = torch.zeros(3, dtype=torch.float64)
    assert point_triangle_sqdist_exact(q, z, z, z).item() == pytest.approx(10.0)
