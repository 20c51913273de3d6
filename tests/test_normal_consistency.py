"""Evaluation normal consistency against float64 brute force, orientation cases and the shared-KNN entry."""

import pytest
import torch
import torch.nn.functional as F

from sam3d_eval.metrics.normal_consistency import normal_consistency, normal_consistency_from_idx
from sam3d_eval.ops.knn import knn_points
from sam3d_eval.structures.pointclouds import Pointclouds


def brute_nn(a, b):
    """Nearest row of b for every row of a (float64): (distance, index)."""
    return torch.cdist(a.double(), b.double()).min(1)


def brute_nc(p, n_p, g, n_g, absolute=True):
    _, i_pg = brute_nn(p, g)
    _, i_gp = brute_nn(g, p)
    c1 = F.cosine_similarity(n_p.double(), n_g.double()[i_pg], dim=1, eps=1e-6)
    c2 = F.cosine_similarity(n_g.double(), n_p.double()[i_gp], dim=1, eps=1e-6)
    if absolute:
        c1, c2 = c1.abs(), c2.abs()
    return 0.5 * (c1.mean() + c2.mean())


@pytest.mark.parametrize("absolute", [True, False])
def test_normal_consistency_matches_brute_force(absolute):
    g = torch.Generator().manual_seed(1)
    p, q = torch.rand(2, 300, 3, generator=g), torch.rand(2, 250, 3, generator=g)
    n_p, n_q = torch.randn(2, 300, 3, generator=g), torch.randn(2, 250, 3, generator=g)
    pl, ql = torch.tensor([300, 77]), torch.tensor([250, 250])
    out = normal_consistency(p, q, n_p, n_q, pl, ql, absolute=absolute)
    assert out.shape == (2,)
    for b in range(2):
        ref = brute_nc(p[b, : pl[b]], n_p[b, : pl[b]], q[b, : ql[b]], n_q[b, : ql[b]], absolute)
        torch.testing.assert_close(out[b].double(), ref, rtol=1e-5, atol=1e-6)
    idx_pq = knn_points(p, q, pl, ql).idx[..., 0]
    idx_qp = knn_points(q, p, ql, pl).idx[..., 0]
    again = normal_consistency_from_idx(n_p, n_q, idx_pq, idx_qp, pl, ql, absolute=absolute)
    assert torch.equal(again, out)


def test_normal_consistency_orientation():
    g = torch.Generator().manual_seed(2)
    p = torch.rand(1, 100, 3, generator=g)
    n = F.normalize(torch.randn(1, 100, 3, generator=g), dim=2)
    pc = Pointclouds(p, normals=n)
    assert normal_consistency(pc, pc).item() == pytest.approx(1.0, abs=1e-6)
    flipped = Pointclouds(p, normals=-n)
    assert normal_consistency(pc, flipped).item() == pytest.approx(1.0, abs=1e-6)
    assert normal_consistency(pc, flipped, absolute=False).item() == pytest.approx(-1.0, abs=1e-6)


def test_normal_consistency_needs_normals():
    x = torch.rand(1, 5, 3)
    with pytest.raises(ValueError, match="normals"):
        normal_consistency(x, x)


def test_normal_consistency_empty_clouds():
    """An empty cloud has no nearest neighbours: both directions contribute 0 for that element."""
    g = torch.Generator().manual_seed(3)
    p, n = torch.rand(2, 10, 3, generator=g), torch.randn(2, 10, 3, generator=g)
    out = normal_consistency(p, p, n, n, torch.tensor([10, 0]), torch.tensor([10, 10]))
    assert out[0].item() == pytest.approx(1.0, abs=1e-6) and out[1].item() == 0.0


@pytest.mark.parametrize("n", [30, 3000])  # brute force and KD-tree under auto
def test_nan_point_inside_lengths_raises(n):
    g = torch.Generator().manual_seed(5)
    p, nrm = torch.rand(1, n, 3, generator=g), torch.randn(1, n, 3, generator=g)
    q = p.clone()
    q[0, n // 2] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        normal_consistency(q, p, nrm, nrm)
    with pytest.raises(ValueError, match="NaN or inf"):
        normal_consistency(p, q, nrm, nrm)
