import numpy as np
import pytest
import torch
import trimesh

from sam3d_eval.metrics.volume_iou import occupancy_grid, volume_iou, winding_number, winding_number_grid
from sam3d_eval.structures import Meshes


def _box(lo, hi):
    m = trimesh.creation.box(bounds=np.array([lo, hi], dtype=np.float64))
    return torch.tensor(m.vertices, dtype=torch.float32), torch.tensor(m.faces, dtype=torch.int64)


def _centres(lo, hi, R):
    return lo + (np.arange(R) + 0.5) * (hi - lo) / R


def _grid_box_iou(a, b, box, R):
    """Exact grid answer for two axis-aligned boxes: occupancy is separable, so count cell centres per axis."""
    na, nb, ni = 1, 1, 1
    for d in range(3):
        c = _centres(box[0][d], box[1][d], R)
        # no centre may sit on a face plane, or the expected count would be ambiguous
        for v in (a[0][d], a[1][d], b[0][d], b[1][d]):
            assert np.abs(c - v).min() > 1e-6
        ina = (c > a[0][d]) & (c < a[1][d])
        inb = (c > b[0][d]) & (c < b[1][d])
        na, nb, ni = na * ina.sum(), nb * inb.sum(), ni * (ina & inb).sum()
    return ni / (na + nb - ni)


@pytest.mark.parametrize("method", ["winding", "parity"])
def test_offset_cubes_exact_grid_answer(method):
    a = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    b = ((0.3, 0.17, -0.21), (1.3, 1.17, 0.79))
    R = 64
    r = volume_iou(_box(*a), _box(*b), resolution=R, method=method)
    box = (np.minimum(a[0], b[0]), np.maximum(a[1], b[1]))
    expected = _grid_box_iou(a, b, box, R)
    assert r.method == method and r.resolution == R
    assert float(r.iou[0]) == pytest.approx(expected, rel=1e-6)
    # continuous answer: 0.7 * 0.83 * 0.79 overlap of two unit cubes
    inter = 0.7 * 0.83 * 0.79
    exact = inter / (2.0 - inter)
    # each of the 3 overlap lengths is counted to within one cell (h_d = extent_d / 64 < 1.5 / 64), so the
    # intersection is within prod(L_d +- h_d); this bounds |grid - exact| well below 0.03
    h = (box[1] - box[0]) / R
    lens = np.array([0.7, 0.83, 0.79])
    hi_i, lo_i = np.prod(lens + h), np.prod(lens - h)
    bound = max(hi_i / (2 - hi_i) - exact, exact - lo_i / (2 - lo_i))
    assert abs(float(r.iou[0]) - exact) <= bound
    np.testing.assert_allclose(r.bounds[0].numpy(), np.stack(box), atol=1e-6)


def test_sphere_vs_itself_and_disjoint():
    m = trimesh.creation.icosphere(3)
    v, f = torch.tensor(m.vertices, dtype=torch.float32), torch.tensor(m.faces)
    for method in ("winding", "parity"):
        assert float(volume_iou((v, f), (v, f), method=method).iou[0]) == 1.0
        r = volume_iou((v, f), (v + torch.tensor([3.0, 0.5, 0.0]), f), method=method)
        assert float(r.iou[0]) == 0.0 and int(r.intersection[0]) == 0 and int(r.union[0]) > 0


def test_sphere_occupancy_matches_analytic_ball():
    m = trimesh.creation.icosphere(3)  # inscribed radius of the faceted sphere > 0.99
    v, f = torch.tensor(m.vertices, dtype=torch.float64), torch.tensor(m.faces)
    box = torch.tensor([[-1.1, -1.05, -1.2], [1.15, 1.1, 1.0]], dtype=torch.float64)
    R = 40
    axes = [_centres(box[0, d].item(), box[1, d].item(), R) for d in range(3)]
    r = np.linalg.norm(np.stack(np.meshgrid(*axes, indexing="ij"), -1), axis=-1)
    inner = np.linalg.norm(m.triangles_center, axis=1).min()
    for method in ("winding", "parity"):
        occ = occupancy_grid(v, f, box, R, method).numpy()
        assert occ[r < inner - 1e-9].all()
        assert not occ[r > 1.0 + 1e-9].any()


@pytest.mark.parametrize("drop", range(6))
def test_cube_with_one_face_removed_winding(drop):
    m = trimesh.creation.box(bounds=np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    normals = m.face_normals
    axis, sign = drop // 2, 1 if drop % 2 else -1
    keep = ~np.isclose(normals[:, axis], sign)  # drops the 2 triangles of one side
    assert keep.sum() == 10
    full = (torch.tensor(m.vertices), torch.tensor(m.faces))
    open_ = (torch.tensor(m.vertices), torch.tensor(m.faces[keep]))
    r = volume_iou(open_, full, method="winding")
    # w = 1/2 exactly on the plane of the hole, > 1/2 inside: the open cube still fills the full cube
    assert float(r.iou[0]) == 1.0
    # parity is wrong for it: with the +x side removed every +x ray from inside leaves through the hole
    if drop == 1:
        assert float(volume_iou(open_, full, method="parity").iou[0]) == 0.0


def test_unwelded_and_flipped_faces_under_winding():
    m = trimesh.creation.icosphere(2)
    v, f = torch.tensor(m.vertices), torch.tensor(m.faces)
    soup_v = v[f].reshape(-1, 3)  # one vertex per face corner: every edge looks like a boundary by index
    soup_f = torch.arange(soup_v.shape[0]).reshape(-1, 3)
    assert float(volume_iou((soup_v, soup_f), (v, f), resolution=32).iou[0]) == 1.0


def test_grid_winding_equals_direct_sum_on_open_inconsistent_mesh():
    m = trimesh.creation.icosphere(2)
    v = torch.tensor(m.vertices * [1.0, 0.8, 1.2] + 0.1)
    f = torch.tensor(m.faces)
    f[::7] = f[::7][:, [0, 2, 1]]  # inconsistently oriented faces
    f = f[v[f].mean(1)[:, 2] < 0.5]  # and a hole
    box = torch.tensor([[-1.2, -1.1, -1.3], [1.3, 1.0, 1.4]], dtype=torch.float64)
    R = 14
    wg = winding_number_grid(v, f, box, R)
    axes = [torch.tensor(_centres(box[0, d].item(), box[1, d].item(), R)) for d in range(3)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    wd = winding_number(v, f, pts, chunk_size=5000).view(R, R, R)
    assert wd.min() < 0 and ((wd > 0.05) & (wd < 0.95)).any()  # really fractional, non-trivial
    torch.testing.assert_close(wg, wd, atol=1e-10, rtol=0)


def test_meshes_batch_and_given_bounds():
    a, b, c = _box((0, 0, 0), (1, 1, 1)), _box((0.5, 0, 0), (1.5, 1, 1)), _box((0, 0, 0), (1, 1, 0.5))
    pred = Meshes([a[0], a[0]], [a[1], a[1]])
    gt = Meshes([b[0], c[0]], [b[1], c[1]])
    r = volume_iou(pred, gt, resolution=32)
    # x: 0.5-offset on [0, 1.5] with 32 cells: centres split 10.67 cells per half... count exactly
    exp0 = _grid_box_iou(((0, 0, 0), (1, 1, 1)), ((0.5, 0, 0), (1.5, 1, 1)), ((0, 0, 0), (1.5, 1, 1)), 32)
    assert r.iou.shape == (2,)
    assert float(r.iou[0]) == pytest.approx(exp0, rel=1e-6)
    assert float(r.iou[1]) == pytest.approx(0.5, rel=1e-6)  # 16 of 32 z-cells
    box = torch.tensor([[-1.0, -1.0, -1.0], [2.0, 2.0, 2.0]])
    r2 = volume_iou(a, c, resolution=30, bounds=box)
    assert float(r2.iou[0]) == pytest.approx(0.5, rel=1e-6)  # cell edges at multiples of 0.1
    assert int(r2.union[0]) == 10 * 10 * 10


def test_bad_input():
    a = _box((0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="method"):
        volume_iou(a, a, method="rays")
    with pytest.raises(ValueError, match="meshes"):
        volume_iou(Meshes([a[0]], [a[1]]), Meshes([a[0], a[0]], [a[1], a[1]]))
    with pytest.raises(ValueError, match="faces"):
        volume_iou((a[0], a[1].float()), a)


# --- open meshes closed by caps, inverted faces, notes ------------------------------------------------


def _grid_pts(box, R):
    axes = [torch.tensor(_centres(box[0, d].item(), box[1, d].item(), R)) for d in range(3)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def _holey_sphere(frac=0.06, seed=0, flip_every=0):
    m = trimesh.creation.icosphere(2)
    rng = np.random.default_rng(seed)
    v = torch.tensor(m.vertices * [1.0, 0.8, 1.2] + 0.1)
    f = torch.tensor(m.faces)
    if flip_every:
        f[::flip_every] = f[::flip_every][:, [0, 2, 1]]
    return v, f[torch.from_numpy(rng.random(len(f)) > frac)]


@pytest.mark.parametrize(
    "case", ["many_holes", "top_cut", "inconsistent_holes", "all_inverted_holes", "sheet"]
)
def test_open_mesh_occupancy_equals_direct_winding(case):
    """The cap-closed fast path decides |w| > 1/2 exactly as the direct O(points x faces) sum does."""
    from sam3d_eval.ops.winding import occupancy

    if case == "many_holes":
        v, f = _holey_sphere()
    elif case == "top_cut":
        v, f = _holey_sphere(0.0)
        f = f[v[f].mean(1)[:, 2] < 0.6]
    elif case == "inconsistent_holes":
        v, f = _holey_sphere(0.05, seed=1, flip_every=5)
    elif case == "all_inverted_holes":
        v, f = _holey_sphere(0.05, seed=2)
        f = f[:, [0, 2, 1]]
    else:  # a curved open sheet: half a sphere
        v, f = _holey_sphere(0.0)
        f = f[v[f].mean(1)[:, 2] < 0.1]
    box = torch.tensor([[-1.2, -1.1, -1.3], [1.3, 1.0, 1.4]], dtype=torch.float64)
    R = 14
    occ = occupancy(v, f, box, R)
    assert occ.boundary_edges > 0 and occ.method == "winding"
    wd = winding_number(v, f, _grid_pts(box, R), chunk_size=200_000).view(R, R, R)
    clear = ((wd.abs() - 0.5).abs() > 1e-9)
    assert torch.equal(occ.inside[clear], (wd.abs() > 0.5)[clear])
    assert clear.float().mean() > 0.98
    if case != "sheet":
        assert occ.inside.float().mean() > 0.1  # a real solid, not trivially empty


def test_all_faces_inverted_is_still_solid():
    """Winding numbers are -1 inside a mesh whose faces are all inverted: |w| keeps it solid (was IoU 0)."""
    m = trimesh.creation.icosphere(3)
    v, f = torch.tensor(m.vertices, dtype=torch.float32), torch.tensor(m.faces)
    inv = f[:, [0, 2, 1]]
    for open_ in (False, True):
        fi = inv if not open_ else inv[3:]  # with a few faces removed too
        r = volume_iou((v, fi), (v, f), resolution=32)
        assert float(r.iou[0]) > 0.97, open_
        r_self = volume_iou((v, fi), (v, fi), resolution=32)
        assert float(r_self.iou[0]) == 1.0 and int(r_self.union[0]) > 0


def test_notes_for_open_and_flat_meshes():
    box_v, box_f = _box((0, 0, 0), (1, 1, 1))
    m = trimesh.creation.box(bounds=np.array([[0.0, 0, 0], [1, 1, 1]]))
    side = torch.from_numpy(~np.isclose(m.face_normals[:, 0], -1.0))  # drop the two x = 0 triangles
    flat_v = torch.tensor([[0.0, 0, 0.5], [1, 0, 0.5], [1, 1, 0.5], [0, 1, 0.5]])
    flat_f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    r = volume_iou([(flat_v, flat_f), (box_v, box_f[side])], [(box_v, box_f), (box_v, box_f)], resolution=16)
    assert r.method == "winding" and len(r.notes) == 2
    assert float(r.iou[0]) == 0.0
    assert any("pred mesh is open (4 boundary edges)" in n for n in r.notes[0])
    assert any("pred mesh encloses no grid cell" in n for n in r.notes[0])
    assert float(r.iou[1]) == 1.0 and any("open" in n for n in r.notes[1])
    assert r.open_edges.tolist() == [[4, 0], [4, 0]]
    closed = volume_iou((box_v, box_f), (box_v, box_f), resolution=8)
    assert closed.notes == [[]] and closed.open_edges.tolist() == [[0, 0]]
    par = volume_iou((box_v, box_f[side]), (box_v, box_f), resolution=8, method="parity")
    assert any("parity is unreliable" in n for n in par.notes[0])
