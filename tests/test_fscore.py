"""f_score / f_score_from_dists against hand-made cases, float64 brute force and properties."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sam3d_eval.metrics.fscore import FScore, f_score, f_score_from_dists
from sam3d_eval.ops.knn import knn_points
from sam3d_eval.structures.pointclouds import Pointclouds


def brute_nn(a, b):
    """Euclidean distance and index of the nearest row of b for every row of a (float64)."""
    d = torch.cdist(a.double(), b.double())
    return d.min(1)


def brute_fscore(pred, gt, taus):
    """(T,) precision, recall, F for one unbatched pair."""
    dp, _ = brute_nn(pred, gt)
    dg, _ = brute_nn(gt, pred)
    p = torch.tensor([(dp < t).double().mean().item() for t in taus], dtype=torch.float64)
    r = torch.tensor([(dg < t).double().mean().item() for t in taus], dtype=torch.float64)
    f = torch.where(p + r > 0, 2 * p * r / (p + r).clamp(min=1e-300), torch.zeros_like(p))
    return p, r, f


def test_hand_made_case():
    # GT: 4 points on a line; prediction: 2 near GT points (0.005, 0.015 away), 2 far away (1.0).
    gt = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]]])
    pred = torch.tensor([[[0.005, 0, 0], [1.015, 0, 0], [10, 0, 0], [11, 0, 0]]])
    out = f_score(pred, gt, taus=(0.01, 0.02, 0.05))
    assert isinstance(out, FScore)
    # precision: 1/4 within 0.01, 2/4 within 0.02 and 0.05; recall (GT->pred): same distances for GT 0, 1;
    # GT 2, 3 are ~1 and ~2 from the nearest prediction.
    torch.testing.assert_close(out.precision, torch.tensor([[0.25, 0.5, 0.5]]))
    torch.testing.assert_close(out.recall, torch.tensor([[0.25, 0.5, 0.5]]))
    torch.testing.assert_close(out.fscore, torch.tensor([[0.25, 0.5, 0.5]]))


def test_threshold_is_euclidean_and_strict():
    gt = torch.zeros(1, 1, 3, dtype=torch.float64)
    pred = torch.tensor([[[0.03, 0.04, 0.0]]], dtype=torch.float64)  # exactly 0.05 away, 0.0025 squared
    out = f_score(pred, gt, taus=(0.0025, 0.05, 0.0500001))
    torch.testing.assert_close(out.fscore, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64))


def test_matches_brute_force_ragged_and_from_dists():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(3, 400, 3, generator=g)
    gt = pred[:, :300] + 0.02 * torch.randn(3, 300, 3, generator=g)
    pl, gl = torch.tensor([400, 120, 33]), torch.tensor([300, 300, 250])
    taus = (0.01, 0.02, 0.05)
    out = f_score(pred, gt, taus, pl, gl)
    assert out.fscore.shape == (3, 3) and out.fscore.dtype == torch.float32
    for b in range(3):
        p, r, f = brute_fscore(pred[b, : pl[b]], gt[b, : gl[b]], taus)
        torch.testing.assert_close(out.precision[b].double(), p, rtol=0, atol=1e-6)
        torch.testing.assert_close(out.recall[b].double(), r, rtol=0, atol=1e-6)
        torch.testing.assert_close(out.fscore[b].double(), f, rtol=1e-6, atol=1e-7)
    # the shared-KNN entry point gives the same numbers
    d_pg = knn_points(pred, gt, pl, gl).dists[..., 0]
    d_gp = knn_points(gt, pred, gl, pl).dists[..., 0]
    again = f_score_from_dists(d_pg, d_gp, taus, pl, gl)
    for a, b in zip(out, again):
        assert torch.equal(a, b)
    # Pointclouds input
    pc = f_score(
        Pointclouds([pred[b, : pl[b]] for b in range(3)]), Pointclouds([gt[b, : gl[b]] for b in range(3)]), taus
    )
    assert torch.equal(pc.fscore, out.fscore)


def test_zero_precision_and_recall_give_zero_f():
    pred = torch.zeros(2, 5, 3)
    gt = torch.ones(2, 4, 3)
    out = f_score(pred, gt, taus=(0.1,))
    assert (out.fscore == 0).all() and not torch.isnan(out.fscore).any()


def test_empty_clouds():
    pred, gt = torch.rand(2, 5, 3), torch.rand(2, 4, 3)
    out = f_score(pred, gt, (0.5, 10.0), pred_lengths=torch.tensor([0, 5]), gt_lengths=torch.tensor([4, 0]))
    assert (out.precision == 0).all() and (out.recall == 0).all() and (out.fscore == 0).all()


def test_bad_input():
    x = torch.rand(2, 5, 3)
    with pytest.raises(ValueError, match="taus"):
        f_score(x, x, taus=(0.0,))
    with pytest.raises(ValueError, match="batch"):
        f_score(x, x[:1])
    with pytest.raises(ValueError, match="expected"):
        f_score_from_dists(torch.rand(2, 5), torch.rand(3, 5))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 60), m=st.integers(1, 60), tau=st.floats(0.01, 0.5))
def test_property_symmetry_and_bounds(seed, n, m, tau):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.rand(1, n, 3, generator=g), torch.rand(1, m, 3, generator=g)
    ab, ba = f_score(a, b, (tau,)), f_score(b, a, (tau,))
    assert torch.equal(ab.precision, ba.recall) and torch.equal(ab.recall, ba.precision)
    torch.testing.assert_close(ab.fscore, ba.fscore)
    assert ((ab.fscore >= 0) & (ab.fscore <= 1)).all()
    assert f_score(a, a, (tau,)).fscore.item() == 1.0


@pytest.mark.parametrize("n", [30, 3000])  # brute force and KD-tree under auto
def test_nan_inside_lengths_raises_and_padding_is_ignored(n):
    g = torch.Generator().manual_seed(4)
    pred, gt = torch.rand(2, n, 3, generator=g), torch.rand(2, n, 3, generator=g)
    lengths = torch.tensor([n - 5, n])
    clean = f_score(pred, gt, pred_lengths=lengths)
    padded = pred.clone()
    padded[0, n - 5 :] = float("nan")
    out = f_score(padded, gt, pred_lengths=lengths)
    assert all(torch.equal(a, b) for a, b in zip(out, clean))
    padded[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        f_score(padded, gt, pred_lengths=lengths)
