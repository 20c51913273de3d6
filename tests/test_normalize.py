"""Joint unit-cube normalisation of (prediction, GT) pairs (the default protocol)."""

from __future__ import annotations

import pytest
import torch

from sam3d_eval.ops.normalize import normalize_to_unit_cube, unit_cube_transform
from sam3d_eval.structures import Meshes, Pointclouds, TexturesVertex


def box_verts(lo, hi, n: int = 50, seed: int = 0) -> torch.Tensor:
    """Random points inside [lo, hi] plus the two extreme corners, float64."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)
    pts = lo + (hi - lo) * torch.rand(n, 3, generator=g, dtype=torch.float64)
    return torch.cat([lo[None], hi[None], pts])


def tri_faces(n: int) -> torch.Tensor:
    return torch.stack([torch.arange(n - 2), torch.arange(1, n - 1), torch.arange(2, n)], 1)


def test_gt_box_maps_to_unit_cube_and_pred_follows():
    gt = [box_verts([1, 2, 3], [5, 3, 4]), box_verts([-10, -10, 0], [10, 0, 2], seed=1)]
    pred = [box_verts([0, 0, 0], [2, 2, 2], seed=2), box_verts([-1, -1, -1], [1, 1, 1], seed=3)]
    faces_g = [tri_faces(v.shape[0]) for v in gt]
    faces_p = [tri_faces(v.shape[0]) for v in pred]
    colours = TexturesVertex([torch.rand(v.shape[0], 3) for v in pred])
    pred_n, gt_n, centre, scale = normalize_to_unit_cube(Meshes(pred, faces_p, colours), Meshes(gt, faces_g))
    expected_centre = torch.tensor([[3.0, 2.5, 3.5], [0.0, -5.0, 1.0]], dtype=torch.float64)
    expected_scale = torch.tensor([1 / 4.0, 1 / 20.0], dtype=torch.float64)
    assert torch.allclose(centre, expected_centre) and torch.allclose(scale, expected_scale)
    for i in range(2):
        g = gt_n.verts_list()[i]
        lo, hi = g.amin(0), g.amax(0)
        assert torch.allclose((lo + hi) / 2, torch.zeros(3, dtype=torch.float64), atol=1e-12)
        assert torch.isclose((hi - lo).max(), torch.tensor(1.0, dtype=torch.float64))
        assert torch.all(lo >= -0.5 - 1e-12) and torch.all(hi <= 0.5 + 1e-12)
        ref = (pred[i] - expected_centre[i]) * expected_scale[i]  # same transform as the GT's
        assert torch.allclose(pred_n.verts_list()[i], ref)
        assert torch.equal(pred_n.faces_list()[i], faces_p[i])
    assert pred_n.textures is colours


def test_pointclouds_tensors_and_mixed_types():
    gt = box_verts([0, 0, 0], [2, 1, 1]).float()
    pred = box_verts([0.5, 0, 0], [1.5, 2, 1], seed=4).float()
    normals = torch.nn.functional.normalize(torch.randn_like(pred), dim=1)
    p_n, g_n, c, s = normalize_to_unit_cube(Pointclouds([pred], normals=[normals]), Pointclouds([gt]))
    assert torch.allclose(p_n.points_list()[0], (pred - torch.tensor([1.0, 0.5, 0.5])) * 0.5)
    assert torch.equal(p_n.normals_list()[0], normals)
    # Raw (V, 3) tensors: centre (3,), scale ().
    p_t, g_t, c_t, s_t = normalize_to_unit_cube(pred, gt)
    assert c_t.shape == (3,) and s_t.shape == ()
    assert torch.allclose(p_t, p_n.points_list()[0]) and torch.allclose(g_t, g_n.points_list()[0])
    # A point-cloud prediction against a mesh GT.
    p_m, _, _, _ = normalize_to_unit_cube(Pointclouds([pred]), Meshes([gt], [tri_faces(gt.shape[0])]))
    assert torch.allclose(p_m.points_list()[0], p_t)
    # Batched (B, V, 3) tensors.
    p_b, g_b, c_b, s_b = normalize_to_unit_cube(torch.stack([pred, pred]), torch.stack([gt, gt * 2]))
    assert c_b.shape == (2, 3) and torch.allclose(s_b, torch.tensor([0.5, 0.25]))
    assert torch.allclose(p_b[0], p_t)


def test_gradients_flow_to_prediction():
    pred = box_verts([0, 0, 0], [1, 1, 1]).requires_grad_(True)
    gt = box_verts([0, 0, 0], [4, 1, 1], seed=5)
    p_n = normalize_to_unit_cube(pred, gt)[0]
    p_n.sum().backward()
    assert torch.allclose(pred.grad, torch.full_like(pred, 0.25))


def test_degenerate_and_bad_gt_raise():
    point = torch.ones(5, 3)
    with pytest.raises(ValueError, match="degenerate"):
        normalize_to_unit_cube(torch.rand(4, 3), point)
    with pytest.raises(ValueError, match="no vertices"):
        unit_cube_transform(torch.zeros(0, 3))
    bad = torch.rand(4, 3)
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        unit_cube_transform(bad)
    with pytest.raises(ValueError, match="2 elements for 1"):
        normalize_to_unit_cube(torch.rand(2, 4, 3), torch.rand(4, 3))
    with pytest.raises(ValueError, match=r"\(V, 3\)"):
        normalize_to_unit_cube(torch.rand(4, 2), torch.rand(4, 3))
    # A flat GT (zero extent along one axis only) is fine: the longest side sets the scale.
    flat = torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 1, 0]])
    assert torch.isclose(unit_cube_transform(flat)[1][0], torch.tensor(0.5))
