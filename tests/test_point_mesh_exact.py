"""The exact point-to-surface distance: float32 against float64 and exact rational arithmetic (sliver triangles,
far points, CAD-like meshes with long thin triangles), and the libigl AABB-tree engine against the others."""

from fractions import Fraction

import numpy as np
import pytest
import torch

import sam3d_eval.ops.mesh_bvh as mesh_bvh
import sam3d_eval.ops.point_mesh as pm
from sam3d_eval.metrics.point_mesh_distance import point_mesh_surface_distance
from sam3d_eval.ops.point_mesh import point_face_distance, point_triangle_sqdist_exact, select_engine
from sam3d_eval.structures import Meshes, Pointclouds

Z = torch.zeros(1, dtype=torch.int64)
U32 = 2.0**-24  # float32 unit roundoff
needs_igl = pytest.mark.skipif(not mesh_bvh.available(), reason="libigl is not installed (pip install libigl)")


# ---- exact rational reference --------------------------------------------------------------------------------


def _exact_sqdist(p, a, b, c) -> float:
    """Squared distance from p to triangle abc in exact rational arithmetic on the given float values."""
    p, a, b, c = ([Fraction(float(x)) for x in v] for v in (p, a, b, c))

    def sub(x, y):
        return [x[0] - y[0], x[1] - y[1], x[2] - y[2]]

    def dot(x, y):
        return x[0] * y[0] + x[1] * y[1] + x[2] * y[2]

    def cross(x, y):
        return [x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0]]

    def seg(x, y):
        yx, px = sub(y, x), sub(p, x)
        l2 = dot(yx, yx)
        t = min(max(dot(yx, px) / l2, Fraction(0)), Fraction(1)) if l2 else Fraction(0)
        diff = [px[k] - t * yx[k] for k in range(3)]
        return dot(diff, diff)

    edge = min(seg(a, b), seg(b, c), seg(c, a))
    n = cross(sub(b, a), sub(c, a))
    nn = dot(n, n)
    if nn and all(dot(n, cross(sub(y, x), sub(p, x))) >= 0 for x, y in ((a, b), (b, c), (c, a))):
        h = dot(sub(p, a), n)
        return float(h * h / nn)
    return float(edge)


# ---- the sliver bug ------------------------------------------------------------------------------------------

# A sliver (edges ~1.1e-3 long, ~1e-6 wide) at coordinates ~2..5 and a point 67.15 away (float32 values). Ericson's
# products of dot products cancelled in float32: the projection was taken as inside and the distance reported was
# 5.0023 (the plane distance through the sliver's ill-rounded normal) instead of 67.1497.
SLIVER = [[5.081480979919434, 2.2063753604888916, 4.628016948699951],
          [5.080522537231445, 2.206428289413452, 4.627737045288086],
          [5.0810017585754395, 2.2064006328582764, 4.6278767585754395]]
FAR = [65.84207916259766, 24.734149932861328, 22.227296829223633]


def test_sliver_far_point_float32_is_exact():
    tri = torch.tensor(SLIVER, dtype=torch.float32)
    p = torch.tensor(FAR, dtype=torch.float32)
    ref = _exact_sqdist(FAR, *SLIVER) ** 0.5
    assert ref == pytest.approx(67.1497250, abs=1e-6)
    d32 = point_triangle_sqdist_exact(p, tri[0], tri[1], tri[2]).sqrt().item()
    d64 = point_triangle_sqdist_exact(p.double(), *tri.double()).sqrt().item()
    assert d64 == pytest.approx(ref, rel=1e-14)
    assert d32 == pytest.approx(ref, rel=2 * U32)
    # through the public metric, every engine
    m, pc = Meshes([tri], [torch.tensor([[0, 1, 2]])]), Pointclouds([p[None]])
    d, mean = point_mesh_surface_distance(m, pc)
    assert d.item() == pytest.approx(ref, rel=2 * U32) and mean.item() == d.item()
    for engine in ["brute", "pruned"] + (["bvh"] if mesh_bvh.available() else []):
        d2, _ = point_face_distance(p[None], Z, tri[None], Z, None, None, engine=engine)
        assert d2.sqrt().item() == pytest.approx(ref, rel=2 * U32), engine


def test_random_slivers_far_and_near_points():
    """20k slivers (edges 1e-4..1e-2, widths 1e-7..1e-5) at coordinates 1..10, points at 1e-3..67 in random
    directions: float32 equals the float64 evaluation to float32 rounding of the result (the inputs are the same
    float32 values); 40 of them against exact rational arithmetic."""
    rng = np.random.default_rng(0)
    n = 20_000
    a = rng.uniform(1, 10, (n, 3))
    u = rng.standard_normal((n, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = np.cross(u, rng.standard_normal((n, 3)))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    length, width = 10 ** rng.uniform(-4, -2, (n, 1)), 10 ** rng.uniform(-7, -5, (n, 1))
    tri = np.stack([a, a + length * u, a + rng.uniform(0, 1, (n, 1)) * length * u + width * w], 1)
    dirs = rng.standard_normal((n, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    p = a + 10 ** rng.uniform(-3, np.log10(67), (n, 1)) * dirs
    t32, p32 = torch.tensor(tri, dtype=torch.float32), torch.tensor(p, dtype=torch.float32)
    d32 = point_triangle_sqdist_exact(p32, t32[:, 0], t32[:, 1], t32[:, 2]).double()
    d64 = point_triangle_sqdist_exact(p32.double(), t32[:, 0].double(), t32[:, 1].double(), t32[:, 2].double())
    np.testing.assert_allclose(d32.numpy(), d64.numpy(), rtol=2 * U32, atol=0)
    for k in range(0, n, n // 40):
        ref = _exact_sqdist(p32[k].tolist(), *t32[k].tolist())
        assert d64[k].item() == pytest.approx(ref, rel=1e-12, abs=1e-24)


# ---- CAD-like meshes: float32 against float64 ----------------------------------------------------------------


def _clip_ears(ring: np.ndarray) -> np.ndarray:
    """Triangulate a CCW polygon by ear-clipping passes (every other convex vertex per pass, as earcut does on a
    many-sided outline): tiny triangles at the rim, long thin chords inside."""
    live, tris = list(range(len(ring))), []
    while len(live) > 3:
        out, k, m, clipped = [], 0, len(live), 0
        while k < m:
            a, b, c = live[k], live[k + 1] if k + 1 < m else -1, live[k + 2] if k + 2 < m else -1
            e1, e2 = ring[b] - ring[a], ring[c] - ring[b]
            if k + 2 < m and m - clipped > 3 and e1[0] * e2[1] - e1[1] * e2[0] > 0:
                tris.append([a, b, c])
                clipped += 1
                k += 2
            else:
                k += 1
            out.append(a)
        assert clipped, "no ear clipped"
        live = out
    tris.append(live)
    return np.array(tris)


def gear_mesh(teeth: int = 40, per_tooth: int = 12, height: float = 0.3):
    """Extruded gear outline (CAD-like: ear-clipped caps of long thin triangles, thin wall quads)."""
    n = teeth * per_tooth
    th = np.arange(n) * 2 * np.pi / n
    r = np.where(((np.arange(n) % per_tooth) / per_tooth > 0.25) & ((np.arange(n) % per_tooth) / per_tooth < 0.75), 1.0, 0.9)
    ring = np.stack([r * np.cos(th), r * np.sin(th)], 1)
    verts = np.concatenate([np.c_[ring, np.zeros(n)], np.c_[ring, np.full(n, height)]])
    cap = _clip_ears(ring)
    i = np.arange(n)
    j = (i + 1) % n
    wall = np.concatenate([np.c_[i, j, n + j], np.c_[i, n + j, n + i]])
    return verts, np.concatenate([cap[:, ::-1], cap + n, wall])


def _rotation(seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    return q * np.sign(np.linalg.det(q))


def _cad_meshes():
    import trimesh

    gv, gf = gear_mesh()
    cyl = trimesh.creation.cylinder(radius=2.0, height=40.0, sections=400)  # fan caps: 400 slivers each
    ico = trimesh.creation.icosphere(subdivisions=3)
    return {
        # a gear in millimetres, off the origin (CAD coordinates)
        "gear_mm": (gv * 25.0 + [120.0, -40.0, 7.5], gf),
        "cylinder_rot": (np.asarray(cyl.vertices) @ _rotation(1).T + [250.0, -80.0, 40.0], np.asarray(cyl.faces)),
        "icosphere_squashed": ((np.asarray(ico.vertices) * [30.0, 1.0, 0.05]) @ _rotation(2).T, np.asarray(ico.faces)),
    }


def _points(verts: np.ndarray, faces: np.ndarray, seed: int) -> np.ndarray:
    import trimesh

    rng = np.random.default_rng(seed)
    lo, hi = verts.min(0), verts.max(0)
    ext = float((hi - lo).max())
    surf, _ = trimesh.sample.sample_surface(trimesh.Trimesh(verts, faces, process=False), 1500, seed=seed)
    near = surf + 10 ** rng.uniform(-6, -1, (len(surf), 1)) * ext * rng.standard_normal(surf.shape)
    far = (lo + hi) / 2 + rng.uniform(-3, 3, (500, 3)) * (hi - lo) / 2  # up to 3x the bounding box
    return np.concatenate([near, far])


@pytest.mark.parametrize("name", ["gear_mm", "cylinder_rot", "icosphere_squashed"])
@pytest.mark.parametrize("engine", ["auto", "brute", "pruned"])
def test_float32_equals_float64_on_cad_meshes(name, engine):
    """float32 inputs give the float64 distance up to what rounding the inputs to float32 can change.

    Tolerance: rounding moves each coordinate x by at most u |x| (u = 2^-24), so the query point and every vertex
    move by at most sqrt(3) u C (C = the largest coordinate magnitude). The distance to a triangle is 1-Lipschitz in
    the point and in its vertices (each point of the triangle is a convex combination of them), and so is the
    minimum over triangles: |D(float32 inputs) - D(float64 inputs)| <= 2 sqrt(3) u C. On top of that the engines
    choose the nearest triangle from float32 evaluations (errors of a few u of the distance and of C) and the
    result is rounded to float32 (u of the squared distance): rtol 8u and atol 4 * 2 sqrt(3) u C cover both."""
    verts, faces = _cad_meshes()[name]
    pts = _points(verts, faces, seed=len(name))
    if engine == "auto" and not mesh_bvh.available():
        pytest.skip("auto is the pruned engine without libigl")
    tris64 = torch.tensor(verts)[torch.tensor(faces)]
    p64 = torch.tensor(pts)
    d64, _ = point_face_distance(p64, Z, tris64, Z, None, None, engine=engine)
    d32, _ = point_face_distance(p64.float(), Z, tris64.float(), Z, None, None, engine=engine)
    c = float(max(np.abs(verts).max(), np.abs(pts).max()))
    r64, r32 = d64.sqrt().numpy(), d32.double().sqrt().numpy()
    np.testing.assert_allclose(r32, r64, rtol=8 * U32, atol=4 * 2 * np.sqrt(3) * U32 * c)
    # and the float64 result is the exact distance: a float64 brute force of the same formula
    if engine == "auto":
        ref, _ = point_face_distance(p64, Z, tris64, Z, None, None, engine="brute")
        np.testing.assert_allclose(r64, ref.sqrt().numpy(), rtol=1e-13, atol=1e-13 * c)


# ---- the libigl AABB-tree engine ------------------------------------------------------------------------------


def test_auto_engine_choice(monkeypatch):
    cpu = torch.device("cpu")
    big = (100_000, 50_000)
    assert select_engine(*big, cpu) == "pruned"  # not a query the tree serves
    assert select_engine(10, 10, cpu, bvh=True) == "brute"
    monkeypatch.setattr(mesh_bvh, "available", lambda: False)
    assert select_engine(*big, cpu, bvh=True) == "pruned"
    monkeypatch.setattr(mesh_bvh, "available", lambda: True)
    assert select_engine(*big, cpu, bvh=True) == "bvh"
    if torch.cuda.is_available():
        assert select_engine(*big, torch.device("cuda"), bvh=True) == "brute"


def test_fallback_without_libigl(monkeypatch):
    """Without libigl the auto engine is the KD-tree one, with the same distances; engine='bvh' says why it fails."""
    import trimesh

    ico = trimesh.creation.icosphere(subdivisions=3)
    tris = torch.tensor(np.asarray(ico.vertices), dtype=torch.float32)[torch.tensor(np.asarray(ico.faces))]
    pts = torch.randn(2000, 3, generator=torch.Generator().manual_seed(0)) * 1.2
    calls = []
    real_pruned = pm._pruned
    monkeypatch.setattr(pm, "_pruned", lambda *a: calls.append(1) or real_pruned(*a))
    monkeypatch.setattr(mesh_bvh, "available", lambda: False)
    d, i = point_face_distance(pts, Z, tris, Z, None, None)
    assert calls, "the pruned engine was not used"
    d_p, i_p = point_face_distance(pts, Z, tris, Z, None, None, engine="pruned")
    assert torch.equal(d, d_p) and torch.equal(i, i_p)
    with pytest.raises(ValueError, match="libigl"):
        point_face_distance(pts, Z, tris, Z, None, None, engine="bvh")


@needs_igl
def test_bvh_engine_is_used_and_matches_brute(monkeypatch):
    rng = np.random.default_rng(3)
    tris = torch.tensor(rng.uniform(-1, 1, (400, 1, 3)) + 0.1 * rng.standard_normal((400, 3, 3)))
    pts = torch.tensor(rng.uniform(-1.5, 1.5, (3000, 3)))
    calls = []
    real = mesh_bvh.nearest_triangles
    monkeypatch.setattr(mesh_bvh, "nearest_triangles", lambda *a: calls.append(1) or real(*a))
    d, i = point_face_distance(pts, Z, tris, Z, None, None)
    assert calls, "the bvh engine was not used"
    d_b, i_b = point_face_distance(pts, Z, tris, Z, None, None, engine="brute")
    torch.testing.assert_close(d, d_b, rtol=1e-14, atol=1e-16)
    # any other pick is a tie: the same distance to float64 rounding
    assert (i == i_b).float().mean() > 0.99


@needs_igl
def test_bvh_degenerate_triangles():
    """Collinear, nearly collinear, two- and three-coincident-vertex triangles: libigl's barycentric test reports
    far points at their plane distance for (nearly) collinear ones; they go to libigl as edges instead."""
    rng = np.random.default_rng(4)
    t = 300
    a, b = rng.uniform(-1, 1, (t, 3)), rng.uniform(-1, 1, (t, 3))
    tris = np.stack([a, b, a + 0.3 * (b - a)], 1)  # collinear
    tris[:40, 2] = tris[:40, 0] + 1.7 * (tris[:40, 1] - tris[:40, 0])  # collinear, third vertex outside
    tris[40:80, 2] += 1e-13 * rng.standard_normal((40, 3))  # nearly collinear
    tris[80:120, 2] = tris[80:120, 0]
    tris[120:160, 1:] = tris[120:160, :1]
    tris[160:] += 0.2 * rng.standard_normal((t - 160, 3, 3))  # ordinary triangles
    pts = torch.tensor(rng.uniform(-1.5, 1.5, (3000, 3)))
    tris = torch.tensor(tris)
    d, _ = point_face_distance(pts, Z, tris, Z, None, None, engine="bvh")
    d_b, _ = point_face_distance(pts, Z, tris, Z, None, None, engine="brute")
    torch.testing.assert_close(d, d_b, rtol=1e-12, atol=1e-15)
    # slivers only (no ordinary triangle at all), float32
    d, _ = point_face_distance(pts.float(), Z, tris[:160].float(), Z, None, None, engine="bvh")
    d_b, _ = point_face_distance(pts.float(), Z, tris[:160].float(), Z, None, None, engine="brute")
    torch.testing.assert_close(d, d_b, rtol=4 * U32, atol=1e-7)


@needs_igl
def test_bvh_checks_ill_conditioned_picks(monkeypatch):
    """A pick on an ill-conditioned triangle whose libigl distance disagrees with the formula is searched again."""
    rng = np.random.default_rng(5)
    tris = rng.uniform(-1, 1, (300, 1, 3)) + 0.2 * rng.standard_normal((300, 3, 3))
    tris[:10, 2] = tris[:10, 0] + 0.5 * (tris[:10, 1] - tris[:10, 0]) + 1e-4 * rng.standard_normal((10, 3))
    tris = torch.tensor(tris)
    pts = torch.tensor(rng.uniform(-1.5, 1.5, (2000, 3)))
    real = mesh_bvh.nearest_triangles

    def lying(points, t, sin2=None):
        idx, sqd = real(points, t, sin2)
        idx[::7], sqd[::7] = 3, 0.0  # a misjudged sliver: "distance 0" to triangle 3
        return idx, sqd

    monkeypatch.setattr(mesh_bvh, "nearest_triangles", lying)
    d, i = point_face_distance(pts, Z, tris, Z, None, None, engine="bvh")
    d_b, i_b = point_face_distance(pts, Z, tris, Z, None, None, engine="brute")
    torch.testing.assert_close(d, d_b, rtol=1e-14, atol=1e-16)


@needs_igl
def test_bvh_ragged_batch_gradients_and_nonfinite():
    rng = np.random.default_rng(6)
    tris = torch.tensor(rng.uniform(-1, 1, (500, 1, 3)) + 0.1 * rng.standard_normal((500, 3, 3)))
    pts = torch.tensor(rng.uniform(-1.5, 1.5, (1200, 3)))
    pf, tf = torch.tensor([0, 700]), torch.tensor([0, 200])
    d, i = point_face_distance(pts, pf, tris, tf, None, None, engine="bvh")
    d_b, i_b = point_face_distance(pts, pf, tris, tf, None, None, engine="brute")
    torch.testing.assert_close(d, d_b, rtol=1e-14, atol=1e-16)
    assert (i[:700] < 200).all() and (i[700:] >= 200).all()
    # gradients: those of the picked pair (float64 gradcheck), and float32 inputs get float32 gradients
    x = pts[:40].clone().requires_grad_(True)
    t = tris[:30].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, t: point_face_distance(x, Z, t, Z, None, None, engine="bvh")[0], (x, t))
    x32, t32 = pts.float().requires_grad_(True), tris.float().requires_grad_(True)
    d32, _ = point_face_distance(x32, Z, t32, Z, None, None, engine="bvh")
    d32.sum().backward()
    assert d32.dtype == x32.grad.dtype == t32.grad.dtype == torch.float32
    x64, t64 = pts.clone().requires_grad_(True), tris.clone().requires_grad_(True)
    point_face_distance(x64, Z, t64, Z, None, None, engine="brute")[0].sum().backward()
    torch.testing.assert_close(x32.grad.double(), x64.grad, rtol=1e-4, atol=1e-5)
    # a NaN point gets NaN (libigl never sees it); the other points keep their distances
    bad = pts.clone()
    bad[5, 1] = float("nan")
    d_nan, _ = point_face_distance(bad, Z, tris, Z, None, None, engine="bvh")
    keep = torch.arange(len(pts)) != 5
    assert torch.isnan(d_nan[5])
    d_ok, _ = point_face_distance(pts, Z, tris, Z, None, None, engine="brute")
    torch.testing.assert_close(d_nan[keep], d_ok[keep], rtol=1e-14, atol=1e-16)


def test_morton_order_is_a_permutation():
    rng = np.random.default_rng(7)
    pts = rng.standard_normal((5000, 3))
    o = mesh_bvh.morton_order(pts)
    assert np.array_equal(np.sort(o), np.arange(5000))
    assert len(mesh_bvh.morton_order(np.zeros((0, 3)))) == 0
    assert np.array_equal(np.sort(mesh_bvh.morton_order(np.ones((4, 3)))), np.arange(4))
    # consecutive points in Z-order are close: far closer on average than in the given order
    step = np.linalg.norm(np.diff(pts[o], axis=0), axis=1).mean()
    assert step < 0.25 * np.linalg.norm(np.diff(pts, axis=0), axis=1).mean()
