"""Alignment: closed-form Umeyama against a float64 reference, ICP and rotation search recovering known poses."""

import math

import numpy as np
import pytest
import torch

from sam3d_eval.ops.alignment import (
    align,
    bbox_alignment,
    corresponding_points_alignment,
    cube_rotations,
    iterative_closest_point,
    rotation_search_icp,
    so3_grid,
)
from sam3d_eval.transforms import SimilarityTransform, apply_similarity_transform


def _rot(axis, deg) -> torch.Tensor:
    """Row-convention rotation (X @ R) by `deg` about `axis` (float64)."""
    a = torch.tensor(axis, dtype=torch.float64)
    a = a / a.norm()
    K = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], dtype=torch.float64)
    th = math.radians(deg)
    col = torch.eye(3, dtype=torch.float64) + math.sin(th) * K + (1 - math.cos(th)) * K @ K
    return col.T


def _angle_deg(R1: torch.Tensor, R2: torch.Tensor) -> float:
    c = ((R1.double().T @ R2.double()).trace() - 1) / 2
    return math.degrees(math.acos(float(c.clamp(-1, 1))))


def _blob(n: int, seed: int) -> torch.Tensor:
    """A non-symmetric cloud: an anisotropic Gaussian with a lump off to one side."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 0.6, 0.3], dtype=torch.float64)
    x[: n // 5] += torch.tensor([0.8, 0.3, 0.1], dtype=torch.float64)
    return x


def _umeyama_ref(x: np.ndarray, y: np.ndarray, with_scale: bool):
    """Umeyama (1991) in float64, column convention y ~ c R x + t; returned as (row R, t, c)."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    sigma = yc.T @ xc / len(x)
    U, D, Vt = np.linalg.svd(sigma)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    c = np.trace(np.diag(D) @ S) / (xc**2).sum(1).mean() if with_scale else 1.0
    t = my - c * R @ mx
    return R.T, t, c


@pytest.mark.parametrize("with_scale", [False, True])
def test_umeyama_matches_float64_closed_form(with_scale):
    g = np.random.default_rng(0)
    x = g.normal(size=(2, 200, 3))
    y = 1.7 * x @ _rot([1, 2, 3], 70).numpy() + np.array([0.3, -1.0, 2.0]) + 0.05 * g.normal(size=x.shape)
    tr = corresponding_points_alignment(torch.from_numpy(x), torch.from_numpy(y), estimate_scale=with_scale)
    for b in range(2):
        R, t, c = _umeyama_ref(x[b], y[b], with_scale)
        np.testing.assert_allclose(tr.R[b].numpy(), R, atol=1e-10)
        np.testing.assert_allclose(tr.T[b].numpy(), t, atol=1e-10)
        np.testing.assert_allclose(float(tr.s[b]), c, rtol=1e-10)
    # float32 input agrees with the float64 reference to float32 precision
    tr32 = corresponding_points_alignment(torch.from_numpy(x).float(), torch.from_numpy(y).float(), estimate_scale=with_scale)
    np.testing.assert_allclose(tr32.R.numpy(), tr.R.numpy(), atol=1e-5)


def test_umeyama_weights_equal_dropping_points():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 50, 3, generator=g, dtype=torch.float64)
    y = x @ _rot([0, 1, 1], 40) + torch.randn(1, 50, 3, generator=g, dtype=torch.float64) * 0.1
    w = torch.zeros(1, 50, dtype=torch.float64)
    w[:, :30] = 1
    a = corresponding_points_alignment(x, y, weights=w, estimate_scale=True)
    b = corresponding_points_alignment(x[:, :30], y[:, :30], estimate_scale=True)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)


def test_reflections_are_never_returned():
    x = _blob(300, 2)[None]
    mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    y = x @ mirror  # the best orthogonal fit is the reflection itself
    tr = corresponding_points_alignment(x, y)
    assert torch.det(tr.R[0]) == pytest.approx(1.0, abs=1e-12)
    assert torch.det(corresponding_points_alignment(x, y, allow_reflection=True).R[0]) == pytest.approx(-1.0, abs=1e-12)
    for method in ("icp", "scale_icp", "rotation_search_icp"):
        res = align(x.float(), y.float(), method, max_iterations=5)
        assert torch.det(res.transform.R.double()).item() == pytest.approx(1.0, abs=1e-5), method
    grids = torch.cat([cube_rotations(torch.float64), so3_grid(50, torch.float64)])
    torch.testing.assert_close(torch.det(grids), torch.ones(74, dtype=torch.float64))
    torch.testing.assert_close(grids @ grids.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(74, 3, 3))
    assert len({tuple(r.flatten().tolist()) for r in cube_rotations()}) == 24


def test_icp_recovers_rotation_and_translation_batched():
    gt = torch.stack([_blob(3000, 3), _blob(3000, 4)]).float()
    R_true = torch.stack([_rot([0.3, 1, 0.2], 20), _rot([1, -0.5, 0.4], -20)]).float()
    T_true = torch.tensor([[0.10, -0.05, 0.08], [-0.2, 0.1, 0.0]])
    # pred @ R + T = gt  <=>  pred = (gt - T) @ R^T
    pred = torch.bmm(gt - T_true[:, None], R_true.transpose(1, 2))
    sol = iterative_closest_point(pred, gt, max_iterations=60)
    assert bool(sol.converged.all())
    assert (sol.RTs.R - R_true).abs().max() < 1e-3
    assert (sol.RTs.T - T_true).abs().max() < 1e-3
    torch.testing.assert_close(sol.RTs.s, torch.ones(2))
    assert (sol.Xt - gt).abs().max() < 1e-3


def test_icp_ignores_padding():
    gt = _blob(1000, 5).float()
    pred = (gt - 0.05) @ _rot([0, 0, 1], 15).float().T
    pad = torch.full((1, 200, 3), 1e3)  # garbage past the lengths would wreck the fit if used
    sol = iterative_closest_point(
        torch.cat([pred[None], pad], 1), torch.cat([gt[None], pad], 1), max_iterations=60,
        X_lengths=torch.tensor([1000]), Y_lengths=torch.tensor([1000]),
    )
    assert _angle_deg(sol.RTs.R[0], _rot([0, 0, 1], 15)) < 0.06  # 1e-3 rad


def test_scale_icp_recovers_similarity():
    gt = _blob(3000, 6).float()[None]
    R, s, T = _rot([1, 1, 0], 15).float(), 1.3, torch.tensor([0.2, 0.0, -0.1])
    pred = ((gt - T) @ R.T) / s
    res = align(pred, gt, "scale_icp", max_iterations=80)
    assert abs(float(res.transform.s[0]) - s) < 1e-3
    assert (res.transform.R[0] - R).abs().max() < 1e-3
    assert (res.transform.T[0] - T).abs().max() < 1e-3
    # rigid ICP cannot absorb the scale
    assert float(align(pred, gt, "icp", max_iterations=80).rmse[0]) > 0.05


def test_rotation_search_recovers_what_plain_icp_cannot():
    gt = _blob(1500, 7).float()[None]
    R_true = _rot([0.2, 0.1, 1.0], 120).float()  # not one of the 24 cube rotations
    pred = (gt - gt.mean(1, keepdim=True)) @ R_true.T + torch.tensor([0.3, 0.0, 0.0])
    plain = iterative_closest_point(pred, gt, max_iterations=60)
    assert _angle_deg(plain.RTs.R[0], R_true) > 10  # stuck in a local minimum
    sol, cham = rotation_search_icp(pred, gt, "cube24", max_iterations=60)
    assert (sol.RTs.R[0] - R_true).abs().max() < 1e-3
    assert (sol.Xt - gt).abs().max() < 1e-3
    assert float(cham[0]) < 1e-8
    res = align(pred, gt, "rotation_search_icp", max_iterations=60)
    torch.testing.assert_close(res.transform.R, sol.RTs.R)


def test_bbox_alignment_closed_form():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 100, 3, generator=g) * torch.tensor([2.0, 1.0, 0.5]) + 3.0  # box [3,5]x[3,4]x[3,3.5]
    gt = torch.rand(2, 100, 3, generator=g) - 0.5
    gt[:, 0] = -0.5
    gt[:, 1] = 0.5  # gt box [-0.5, 0.5]^3
    pred[:, 0] = torch.tensor([3.0, 3.0, 3.0])
    pred[:, 1] = torch.tensor([5.0, 4.0, 3.5])
    tr = bbox_alignment(pred, gt)
    torch.testing.assert_close(tr.s, torch.full((2,), 0.5))
    torch.testing.assert_close(tr.T, torch.tensor([-2.0, -1.75, -1.625]).expand(2, 3))
    out = apply_similarity_transform(pred, tr)
    torch.testing.assert_close(out.amax(1) - out.amin(1), torch.tensor([1.0, 0.5, 0.25]).expand(2, 3))
    cube = bbox_alignment(pred, gt, target="unit_cube")
    torch.testing.assert_close(cube.s, torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="zero extent"):
        bbox_alignment(torch.ones(1, 5, 3), gt[:1])
    with pytest.raises(ValueError, match="ground truth 0 is degenerate"):
        bbox_alignment(pred[:1], torch.ones(1, 5, 3))
    # padding is ignored: a far padded point changes nothing
    padded = torch.cat([pred, torch.full((2, 1, 3), 100.0)], 1)
    tr_p = bbox_alignment(padded, gt, X_lengths=torch.tensor([100, 100]))
    torch.testing.assert_close(tr_p.T, tr.T)


def test_none_is_identity_and_bad_method_errors():
    x = torch.randn(2, 10, 3)
    res = align(x, x, "none")
    assert res.points is x
    assert res.to_dicts()[0] == {"method": "none", "R": torch.eye(3).tolist(), "T": [0.0] * 3, "s": 1.0}
    with pytest.raises(ValueError, match="unknown alignment 'foo'"):
        align(x, x, "foo")
    with pytest.raises(ValueError, match="rotation grid"):
        align(x, x, "rotation_search_icp", rotations="nope")
    assert isinstance(res.transform, SimilarityTransform)


def test_alignment_records_round_trip():
    g = torch.Generator().manual_seed(5)
    gt = torch.randn(2, 200, 3, generator=g, dtype=torch.float64)
    pred = gt @ _rot([0, 0, 1], 10.0) + 0.05
    res = align(pred, gt, "icp")
    recs = res.to_dicts()
    assert recs[0]["method"] == "icp" and set(recs[0]) == {"method", "R", "T", "s", "converged", "rmse"}
    back = SimilarityTransform.from_dicts(recs)
    torch.testing.assert_close(back.apply(pred), res.points, atol=1e-12, rtol=0)
