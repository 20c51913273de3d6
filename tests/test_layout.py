import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from sam3d_eval.metrics.layout import (
    add_s,
    box3d_overlap,
    points_diameter,
    pose_add_s,
    pose_box_corners,
    quaternion_to_matrix,
    rotation_error_deg,
    transform_points,
)


def _quat(axis, deg):
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    h = math.radians(deg) / 2
    return torch.tensor([math.cos(h), *(math.sin(h) * axis)], dtype=torch.float64)


def test_quaternion_to_matrix_matches_scipy():
    q = torch.randn(20, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    R = quaternion_to_matrix(q)
    qn = (q / q.norm(dim=1, keepdim=True)).numpy()
    ref = Rotation.from_quat(qn[:, [1, 2, 3, 0]]).as_matrix()  # scipy is scalar-last
    np.testing.assert_allclose(R.numpy(), ref, atol=1e-12)
    torch.testing.assert_close(quaternion_to_matrix(-q), R)


def test_identical_and_half_offset_boxes():
    q = _quat([1, 2, 3], 37.0)[None]
    size = torch.tensor([[2.0, 1.0, 0.5]], dtype=torch.float64)
    box = torch.stack([-size / 2, size / 2], dim=1)  # (1, 2, 3) object-frame box
    a = pose_box_corners(q, torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64), 1.5, box)
    # offset by half the width along the box's own x axis (its width there is 1.5 * 2.0)
    shift = quaternion_to_matrix(q)[0] @ torch.tensor([1.5, 0.0, 0.0], dtype=torch.float64)
    b = a + shift
    vol, iou = box3d_overlap(torch.cat([a, b]), torch.cat([a, b]))
    box_vol = 1.5**3 * 2.0 * 1.0 * 0.5
    torch.testing.assert_close(torch.diagonal(iou), torch.ones(2, dtype=torch.float64), atol=1e-12, rtol=0)
    assert float(vol[0, 0]) == pytest.approx(box_vol, rel=1e-12)
    assert float(iou[0, 1]) == pytest.approx(1.0 / 3.0, rel=1e-12)
    assert float(vol[0, 1]) == pytest.approx(box_vol / 2, rel=1e-12)


def test_disjoint_and_touching_boxes():
    q = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64)
    a = pose_box_corners(q, torch.zeros(1, 3, dtype=torch.float64), 1.0)
    b = pose_box_corners(q, torch.tensor([[1.0, 0, 0]], dtype=torch.float64), 1.0)  # shares a face
    c = pose_box_corners(q, torch.tensor([[3.0, 0, 0]], dtype=torch.float64), 1.0)
    vol, iou = box3d_overlap(a, torch.cat([b, c]))
    assert float(iou[0, 0]) == pytest.approx(0.0, abs=1e-12) and float(iou[0, 1]) == 0.0


def _mc_iou(c1, c2, n, seed):
    """Monte Carlo IoU of two boxes given by corners: uniform samples in the joint axis-aligned box."""
    rng = np.random.default_rng(seed)
    lo = np.minimum(c1.min(0), c2.min(0))
    hi = np.maximum(c1.max(0), c2.max(0))
    p = rng.uniform(lo, hi, size=(n, 3))

    def inside(c):
        o = c[0]
        axes = np.stack([c[1] - o, c[3] - o, c[4] - o])
        t = np.linalg.solve(axes.T, (p - o).T).T
        return ((t >= 0) & (t <= 1)).all(1)

    i1, i2 = inside(c1), inside(c2)
    return (i1 & i2).sum() / (i1 | i2).sum(), (i1 | i2).sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rotated_boxes_vs_monte_carlo(seed):
    rng = np.random.default_rng(seed)
    q = torch.tensor(Rotation.random(2, random_state=seed).as_quat()[:, [3, 0, 1, 2]])
    t = torch.tensor(rng.uniform(-0.3, 0.3, size=(2, 3)))
    s = torch.tensor(rng.uniform(0.8, 1.2, size=(2, 3)))  # per-axis scale: non-cubic boxes
    c = pose_box_corners(q, t, s)
    _, iou = box3d_overlap(c[:1], c[1:])
    est, n_union = _mc_iou(c[0].numpy(), c[1].numpy(), 400_000, seed)
    # binomial standard error of the share of union samples in the intersection; 5 sigma
    se = math.sqrt(est * (1 - est) / n_union)
    assert 0.05 < est < 0.95
    assert abs(float(iou[0, 0]) - est) < 5 * se


def test_rotation_error_sign_and_forms():
    a = _quat([0, 0, 1], 10.0)
    for deg in (0.0, 1e-4, 30.0, 179.9, 180.0):
        b = _quat([0, 0, 1], 10.0 + deg)
        for sb in (b, -b):  # q and -q are the same rotation
            assert float(rotation_error_deg(a, sb)) == pytest.approx(deg, abs=1e-9)
        Ra, Rb = quaternion_to_matrix(a), quaternion_to_matrix(b)
        assert float(rotation_error_deg(Ra, Rb)) == pytest.approx(deg, abs=1e-6)
    qa = torch.tensor(Rotation.random(10, random_state=3).as_quat()[:, [3, 0, 1, 2]])
    qb = torch.tensor(Rotation.random(10, random_state=4).as_quat()[:, [3, 0, 1, 2]])
    ref = np.degrees((Rotation.from_quat(qa.numpy()[:, [1, 2, 3, 0]]).inv() * Rotation.from_quat(qb.numpy()[:, [1, 2, 3, 0]])).magnitude())
    np.testing.assert_allclose(rotation_error_deg(qa, qb).numpy(), ref, atol=1e-9)
    np.testing.assert_allclose(rotation_error_deg(quaternion_to_matrix(qa), quaternion_to_matrix(qb)).numpy(), ref, atol=1e-6)


def test_add_s_known_answers():
    ident = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64)
    # a single model point: ADD-S is the distance between its two posed copies
    x = torch.tensor([[[0.2, -0.1, 0.4]]], dtype=torch.float64)
    qp, tp, tg = _quat([0, 1, 0], 90.0)[None], torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)
    err, _, _ = pose_add_s(x, (qp, tp, 2.0), (ident, tg, 1.0))
    R = quaternion_to_matrix(qp)[0]
    assert float(err[0]) == pytest.approx(float((2.0 * R @ x[0, 0] + tp[0] - x[0, 0]).norm()), rel=1e-12)
    # a grid of spacing d translated by |t| < d/2: every point's closest is its own translate, ADD-S = |t|
    g = torch.stack(torch.meshgrid(*[torch.arange(4, dtype=torch.float64)] * 3, indexing="ij"), -1).reshape(1, -1, 3)
    t = torch.tensor([[0.2, -0.25, 0.1]], dtype=torch.float64)
    err, norm, ok = pose_add_s(g, (ident, t, 1.0), (ident, torch.zeros_like(t), 1.0))
    assert float(err[0]) == pytest.approx(float(t.norm()), rel=1e-12)
    assert float(norm[0]) == pytest.approx(float(t.norm()) / math.sqrt(27), rel=1e-12)  # diameter 3 sqrt(3)
    assert bool(ok[0]) == (float(t.norm()) / math.sqrt(27) < 0.1)
    # a symmetric object (cube corners) rotated by its symmetry: ADD-S 0 although the rotation is 90 degrees
    cube = pose_box_corners(ident, torch.zeros(1, 3, dtype=torch.float64), 1.0)
    err, _, ok = pose_add_s(cube, (_quat([0, 0, 1], 90.0)[None], torch.zeros(1, 3, dtype=torch.float64), 1.0), (ident, torch.zeros(1, 3, dtype=torch.float64), 1.0))
    assert float(err[0]) == pytest.approx(0.0, abs=1e-12) and bool(ok[0])


def test_add_s_vs_float64_brute_force_with_lengths():
    g = torch.Generator().manual_seed(5)
    pred, gt = torch.randn(2, 50, 3, generator=g, dtype=torch.float64), torch.randn(2, 40, 3, generator=g, dtype=torch.float64)
    pl, gl = torch.tensor([50, 31]), torch.tensor([40, 22])
    got = add_s(pred, gt, pl, gl)
    for b in range(2):
        ref = torch.cdist(gt[b, : gl[b]], pred[b, : pl[b]]).min(1).values.mean()
        assert float(got[b]) == pytest.approx(float(ref), rel=1e-12)
    d = points_diameter(gt, gl)
    assert float(d[1]) == pytest.approx(float(torch.cdist(gt[1, :22], gt[1, :22]).max()), rel=1e-12)


def test_transform_points_convention():
    q = _quat([0, 0, 1], 90.0)[None]
    p = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=torch.float64)
    out = transform_points(p, q, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([[[0.0, 2.0, 1.0]]], dtype=torch.float64))  # s R x + t


def test_bad_input():
    with pytest.raises(ValueError, match="8, 3"):
        box3d_overlap(torch.zeros(1, 4, 3), torch.zeros(1, 8, 3))
    with pytest.raises(ValueError, match="quaternions"):
        rotation_error_deg(torch.zeros(2, 3), torch.zeros(2, 3))


def test_transform_points_scale_shapes():
    rng = np.random.default_rng(5)
    q = torch.tensor(rng.normal(size=(3, 4)))
    t = torch.tensor(rng.normal(size=(3, 3)))
    p = torch.tensor(rng.normal(size=(3, 7, 3)))
    R = torch.tensor(Rotation.from_quat(q.numpy()[:, [1, 2, 3, 0]]).as_matrix())
    # Per-axis scale (B, 3) scales the object-frame axes before rotating, for B = 1 and B = 3 alike.
    s3 = torch.tensor(rng.uniform(0.5, 2.0, size=(3, 3)))
    ref = torch.einsum("bij,bnj->bni", R, p * s3[:, None, :]) + t[:, None, :]
    torch.testing.assert_close(transform_points(p, q, t, s3), ref)
    torch.testing.assert_close(transform_points(p[:1], q[:1], t[:1], s3[:1]), ref[:1])
    # Uniform scale: float, () or (B,).
    su = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    ref_u = torch.einsum("bij,bnj->bni", R, p * su[:, None, None]) + t[:, None, :]
    torch.testing.assert_close(transform_points(p, q, t, su), ref_u)
    torch.testing.assert_close(transform_points(p[:1], q[:1], t[:1], torch.tensor(0.5)), ref_u[:1])
    torch.testing.assert_close(transform_points(p[:1], q[:1], t[:1], 0.5), ref_u[:1])
    # One object with a per-axis scale given as (3,) is ambiguous with three uniform scales: refused.
    with pytest.raises(ValueError, match=r"scale.*\(3,\).*\(\), \(B,\) or \(B, 3\)"):
        transform_points(p[:1], q[:1], t[:1], s3[0])
    with pytest.raises(ValueError, match="scale"):
        transform_points(p, q, t, torch.ones(2))
    with pytest.raises(ValueError, match="scale"):
        transform_points(p, q, t, torch.ones(3, 2))
