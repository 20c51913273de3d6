"""Rasteriser against float64 references: pixel-centre inclusion, area, occlusion, watertightness, batches."""

import numpy as np
import pytest
import torch

from sam3d_eval.ops.rasterize import extended_face_index, rasterize_meshes
from sam3d_eval.structures.meshes import Meshes


def _tri_mesh(xy, z=(2.0, 2.0, 2.0), dtype=torch.float32):
    """One triangle given directly in screen space; returns (Meshes, verts_screen)."""
    v = torch.tensor([[x, y, zz] for (x, y), zz in zip(xy, z)], dtype=dtype)
    return Meshes([v], [torch.tensor([[0, 1, 2]])]), v


def _inside_f64(xy, H, W):
    """Float64 pixel-centre inclusion (either winding) and the distance of each centre to the nearest edge."""
    p = np.asarray(xy, dtype=np.float64)
    cy, cx = np.mgrid[0:H, 0:W] + 0.5
    e, dist = [], []
    for k in range(3):
        a, b = p[(k + 1) % 3], p[(k + 2) % 3]
        ek = (b[0] - a[0]) * (cy - a[1]) - (b[1] - a[1]) * (cx - a[0])
        e.append(ek)
        dist.append(np.abs(ek) / np.hypot(*(b - a)))
    e = np.stack(e)
    inside = (e > 0).all(0) | (e < 0).all(0)
    return inside, np.min(dist, axis=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_triangles_match_float64_inclusion_and_area(dtype):
    rng = np.random.default_rng(0)
    H, W = 48, 64
    ambiguous = 0
    for _ in range(20):
        xy = rng.uniform([-10, -10], [W + 10, H + 10], size=(3, 2))
        mesh, v = _tri_mesh(xy.tolist(), dtype=dtype)
        frag = rasterize_meshes(mesh, v, (H, W))
        got = (frag.pix_to_face[0] >= 0).numpy()
        ref, dist = _inside_f64(xy, H, W)
        clear = dist > (1e-4 if dtype == torch.float32 else 1e-9)
        ambiguous += int((~clear).sum())
        np.testing.assert_array_equal(got[clear], ref[clear])
    assert ambiguous < 5


def test_covered_count_matches_analytic_area():
    rng = np.random.default_rng(1)
    H = W = 256
    checked = 0
    while checked < 4:
        xy = rng.uniform(20, 236, size=(3, 2))
        d1, d2 = xy[1] - xy[0], xy[2] - xy[0]
        area = 0.5 * abs(d1[0] * d2[1] - d1[1] * d2[0])
        if area < 5000:
            continue
        checked += 1
        mesh, v = _tri_mesh(xy.tolist())
        count = int((rasterize_meshes(mesh, v, (H, W)).pix_to_face >= 0).sum())
        assert abs(count - area) < 0.01 * area


def test_barycentrics_and_depth_constant_depth():
    xy = [(3.3, 2.1), (27.9, 5.2), (8.4, 29.7)]
    mesh, v = _tri_mesh(xy, z=(4.0, 4.0, 4.0), dtype=torch.float64)
    frag = rasterize_meshes(mesh, v, (32, 32))
    mask = frag.pix_to_face[0] >= 0
    r, c = np.nonzero(mask.numpy())
    p = np.stack([c + 0.5, r + 0.5], 1)
    a = np.asarray(xy)
    T = np.stack([a[1] - a[0], a[2] - a[0]], 1)
    l12 = np.linalg.solve(T, (p - a[0]).T).T
    ref = np.concatenate([1 - l12.sum(1, keepdims=True), l12], 1)
    np.testing.assert_allclose(frag.bary_coords[0][mask].numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(frag.zbuf[0][mask].numpy(), 4.0, atol=1e-12)
    assert (frag.zbuf[0][~mask] == -1).all() and (frag.bary_coords[0][~mask] == -1).all()


@pytest.mark.parametrize("near_first", [True, False])
def test_occlusion_order(near_first):
    near = [[2.0, 2.0, 2.0], [30.0, 4.0, 2.0], [6.0, 30.0, 2.0]]
    far = [[1.0, 1.0, 5.0], [31.0, 1.0, 5.0], [16.0, 31.0, 5.0]]
    verts = torch.tensor(near + far if near_first else far + near)
    near_id = 0 if near_first else 1
    mesh = Meshes([verts], [torch.tensor([[0, 1, 2], [3, 4, 5]])])
    frag = rasterize_meshes(mesh, verts, (32, 32))
    near_in, _ = _inside_f64(np.array(near)[:, :2], 32, 32)
    far_in, _ = _inside_f64(np.array(far)[:, :2], 32, 32)
    p2f = frag.pix_to_face[0].numpy()
    assert (near_in & far_in).sum() > 100
    assert (p2f[near_in] == near_id).all()
    assert (p2f[far_in & ~near_in] == 1 - near_id).all()
    np.testing.assert_allclose(frag.zbuf[0].numpy()[near_in], 2.0, rtol=1e-6)
    np.testing.assert_allclose(frag.zbuf[0].numpy()[far_in & ~near_in], 5.0, rtol=1e-6)


def _per_face_coverage(verts_xy, faces, H, W):
    """Render every face as its own mesh and count how often each pixel is covered."""
    v = torch.as_tensor(verts_xy, dtype=torch.float32)
    v = torch.cat([v, torch.full((v.shape[0], 1), 3.0)], 1)
    faces = torch.as_tensor(faces)
    mesh = Meshes([v] * faces.shape[0], [f[None] for f in faces])
    frag = rasterize_meshes(mesh, v.repeat(faces.shape[0], 1), (H, W))
    return (frag.pix_to_face >= 0).sum(0).numpy()


def test_shared_diagonal_on_pixel_centres_is_covered_once():
    # A square with corners on pixel centres: its diagonal and sides run through pixel centres (all ties).
    verts = [(2.5, 3.5), (12.5, 3.5), (12.5, 13.5), (2.5, 13.5)]
    cover = _per_face_coverage(verts, [[0, 1, 2], [0, 2, 3]], 16, 16)
    expected = np.zeros((16, 16), dtype=np.int64)
    expected[3:13, 2:12] = 1  # top and left sides are in, bottom and right are out (top-left rule)
    np.testing.assert_array_equal(cover, expected)


def test_jittered_grid_and_fan_are_watertight():
    rng = np.random.default_rng(2)
    H, W, n = 40, 40, 8
    g = np.linspace(4.0, 36.0, n + 1)
    gx, gy = np.meshgrid(g, g)
    pts = np.stack([gx, gy], -1)
    interior = (slice(1, n), slice(1, n))
    jitter = rng.uniform(-1.5, 1.5, size=pts[interior].shape)
    jitter[::2, ::2] = np.round(jitter[::2, ::2]) + 0.5 - (pts[interior][::2, ::2] % 1)  # some on centres
    pts[interior] += jitter
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    cover = _per_face_coverage(pts.reshape(-1, 2), faces, H, W)
    assert cover.max() == 1
    centres = np.arange(40) + 0.5
    strictly_inside = (centres > 4.0) & (centres < 36.0)
    assert (cover[np.ix_(strictly_inside, strictly_inside)] == 1).all()

    # A fan of 12 triangles around a vertex on a pixel centre, spokes through pixel centres.
    angles = np.sort(np.concatenate([np.arange(8) * np.pi / 4, rng.uniform(0, 2 * np.pi, 4)]))
    ring = np.stack([20.5 + 12 * np.cos(angles), 20.5 + 12 * np.sin(angles)], 1)
    ring[::2] = np.round(ring[::2] - 0.5) + 0.5
    verts = np.concatenate([[[20.5, 20.5]], ring])
    faces = [[0, 1 + i, 1 + (i + 1) % 12] for i in range(12)]
    cover = _per_face_coverage(verts, faces, H, W)
    assert cover.max() == 1 and cover[20, 20] == 1
    assert cover[14:27, 14:27].sum() > 100 and (cover[18:23, 18:23] == 1).all()


def test_backface_culling_and_near_plane():
    xy = [(2.0, 2.0), (30.0, 3.0), (5.0, 29.0)]  # clockwise with y down: a back face
    mesh, v = _tri_mesh(xy)
    assert (rasterize_meshes(mesh, v, (32, 32)).pix_to_face >= 0).sum() > 300
    assert (rasterize_meshes(mesh, v, (32, 32), cull_backfaces=True).pix_to_face < 0).all()
    flipped = Meshes([v], [torch.tensor([[0, 2, 1]])])
    assert (rasterize_meshes(flipped, v, (32, 32), cull_backfaces=True).pix_to_face >= 0).sum() > 300
    behind = v.clone()
    behind[1, 2] = -1.0
    assert (rasterize_meshes(mesh, behind, (32, 32)).pix_to_face < 0).all()


def _random_meshes(seed):
    g = torch.Generator().manual_seed(seed)
    verts, faces = [], []
    for nv, nf in [(30, 40), (12, 9), (50, 70)]:
        verts.append(torch.rand(nv, 3, generator=g) * torch.tensor([40.0, 30.0, 3.0]) + torch.tensor([-2.0, -2.0, 1.0]))
        faces.append(torch.randint(0, nv, (nf, 3), generator=g))
    return verts, faces


def test_ragged_multiview_equals_per_mesh_renders_and_extend_order():
    verts, faces = _random_meshes(3)
    V, H, W = 3, 30, 36
    shifts = torch.tensor([[0.0, 0.0, 0.0], [3.0, -2.0, 0.5], [-4.0, 1.0, 1.0]])
    batch = Meshes(verts, faces)
    screen = torch.stack([batch.verts_packed() + s for s in shifts])
    frag = rasterize_meshes(batch, screen, (H, W), max_candidates=257)  # many small chunks
    face_first = batch.mesh_to_faces_packed_first_idx()
    ext_first = 0
    for b in range(3):
        for v in range(V):
            single = rasterize_meshes(Meshes([verts[b]], [faces[b]]), verts[b] + shifts[v], (H, W))
            n = b * V + v
            hit = single.pix_to_face[0] >= 0
            assert hit.sum() > 20
            torch.testing.assert_close(frag.pix_to_face[n], torch.where(hit, single.pix_to_face[0] + ext_first, -1))
            torch.testing.assert_close(frag.pix_to_mesh_face[n], torch.where(hit, single.pix_to_face[0] + face_first[b], -1))
            torch.testing.assert_close(frag.zbuf[n], single.zbuf[0])
            torch.testing.assert_close(frag.bary_coords[n], single.bary_coords[0])
            ext_first += faces[b].shape[0]
    view_of, face_of, image_of = extended_face_index(batch, V)
    assert torch.equal(face_of[frag.pix_to_face.clamp(min=0)][frag.pix_to_face >= 0], frag.pix_to_mesh_face[frag.pix_to_face >= 0])
    assert image_of.tolist() == sorted(image_of.tolist())


def test_bad_inputs_raise():
    mesh, v = _tri_mesh([(0, 0), (1, 0), (0, 1)])
    with pytest.raises(ValueError, match="verts_screen"):
        rasterize_meshes(mesh, v[:2], (8, 8))
    with pytest.raises(ValueError, match="image_size"):
        rasterize_meshes(mesh, v, (0, 8))
