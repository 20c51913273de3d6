import contextlib
import signal

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from sam3d_eval.metrics.emd import earth_movers_distance
from sam3d_eval.ops.emd import auction_assignment, exact_assignment, min_cost_matching
from sam3d_eval.structures import Pointclouds


def _exact(x: np.ndarray, y: np.ndarray) -> float:
    C = cdist(x, y)
    r, c = linear_sum_assignment(C)
    return float(C[r, c].mean())


@pytest.mark.parametrize("n", [16, 64, 150])
def test_auction_vs_linear_sum_assignment(n):
    rng = np.random.default_rng(n)
    for _ in range(3):
        x = rng.normal(size=(n, 3))
        y = rng.normal(size=(n, 3)) * 0.7 + rng.normal(size=3) * 0.3
        exact = _exact(x, y)
        eps = 1e-4
        got = float(earth_movers_distance(torch.tensor(x)[None], torch.tensor(y)[None], num_points=None, method="auction", eps=eps)[0])
        # documented bound: a true bijection (>= exact), within eps * max distance of it
        bound = eps * cdist(x, y).max()
        assert exact - 1e-12 <= got <= exact + bound
        # measured: relative excess below 1e-4 at eps=1e-4
        assert (got - exact) / exact < 1e-4


def test_auction_returns_a_permutation():
    C = torch.rand(40, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cols = auction_assignment(C)
    assert sorted(cols.tolist()) == list(range(40))


def test_assignment_solvers_and_matching():
    g = torch.Generator().manual_seed(2)
    C = torch.rand(30, 30, dtype=torch.float64, generator=g)
    r, c = linear_sum_assignment(C.numpy())
    cols = exact_assignment(C)
    assert cols.dtype == torch.int64 and sorted(cols.tolist()) == list(range(30))
    assert float(C[torch.arange(30), cols].sum()) == pytest.approx(float(C.numpy()[r, c].sum()), rel=1e-14)
    # a known matching: q is p permuted and shifted by t, so q[perm[i]] = p[i] + t is optimal
    p = torch.randn(25, 3, generator=g, dtype=torch.float64)
    perm = torch.randperm(25, generator=g)
    q = torch.empty_like(p)
    q[perm] = p + torch.tensor([0.01, 0.0, 0.0], dtype=torch.float64)
    for method in ("exact", "auction", "auto"):
        idx, d = min_cost_matching(p, q, method)
        assert torch.equal(idx, perm), method
        torch.testing.assert_close(d, torch.full((25,), 0.01, dtype=torch.float64))
    with pytest.raises(ValueError, match="equal sizes"):
        min_cost_matching(p, q[:20])
    with pytest.raises(ValueError, match="method"):
        min_cost_matching(p, q, "hungarian")
    with pytest.raises(ValueError, match="square"):
        exact_assignment(C[:, :5])


def test_exact_method_and_auto_on_cpu():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2, 50, 3)), rng.normal(size=(2, 50, 3)) + 0.2
    got = earth_movers_distance(torch.tensor(x), torch.tensor(y), num_points=None)
    assert got.dtype == torch.float64 and got.shape == (2,)
    for b in range(2):
        assert float(got[b]) == pytest.approx(_exact(x[b], y[b]), rel=1e-12)


@pytest.mark.parametrize("method", ["auction", "exact"])
def test_translate_gives_norm_of_t(method):
    # sum_i |x_i - y_s(i)| >= |sum_i (y_s(i) - x_i)| = n |t|, attained by the identity: EMD = |t| exactly
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 120, 3, generator=g, dtype=torch.float64)
    for t in ([0.05, 0.0, 0.0], [0.3, -0.4, 1.2], [5.0, 1.0, -2.0]):
        tt = torch.tensor(t, dtype=torch.float64)
        got = float(earth_movers_distance(x, x + tt, num_points=None, method=method)[0])
        bound = 1e-4 * float(torch.cdist(x[0], x[0] + tt).max()) if method == "auction" else 1e-12
        assert float(tt.norm()) - 1e-12 <= got <= float(tt.norm()) + bound


def test_subsampling_is_seeded_and_ragged_pointclouds():
    g = torch.Generator().manual_seed(2)
    a = [torch.randn(300, 3, generator=g), torch.randn(80, 3, generator=g)]
    b = [torch.randn(250, 3, generator=g), torch.randn(90, 3, generator=g)]
    r1 = earth_movers_distance(Pointclouds(a), Pointclouds(b), num_points=100, seed=7)
    r2 = earth_movers_distance(Pointclouds(a), Pointclouds(b), num_points=100, seed=7)
    r3 = earth_movers_distance(Pointclouds(a), Pointclouds(b), num_points=100, seed=8)
    assert torch.equal(r1, r2) and not torch.equal(r1, r3)
    assert r1.dtype == torch.float32 and r1.shape == (2,)
    # pair 0 uses 100 of each; pair 1 min(100, 80, 90) = 80 points of each
    gen = torch.Generator().manual_seed(7)
    i0, j0 = torch.randperm(300, generator=gen)[:100], torch.randperm(250, generator=gen)[:100]
    i1, j1 = torch.arange(80), torch.randperm(90, generator=gen)[:80]  # a cloud of exactly n is used as is
    assert float(r1[0]) == pytest.approx(_exact(a[0][i0].double().numpy(), b[0][j0].double().numpy()), rel=1e-6)
    assert float(r1[1]) == pytest.approx(_exact(a[1][i1].double().numpy(), b[1][j1].double().numpy()), rel=1e-6)


def test_bad_input():
    x = torch.randn(1, 10, 3)
    with pytest.raises(ValueError, match="equal sizes"):
        earth_movers_distance(x, torch.randn(1, 12, 3), num_points=None)
    with pytest.raises(ValueError, match="method"):
        earth_movers_distance(x, x, method="sinkhorn")
    with pytest.raises(ValueError, match="clouds"):
        earth_movers_distance(x, torch.randn(2, 10, 3))


@contextlib.contextmanager
def _deadline(seconds):
    """Fail instead of hanging: the auction is a Python loop, so SIGALRM interrupts it."""

    def _raise(*_):
        raise TimeoutError(f"did not return within {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("method", ["auction", "exact", "auto"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_points_raise(method, bad):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1, 20, 3, generator=g), torch.randn(1, 20, 3, generator=g)
    x[0, 4, 1] = bad
    with _deadline(20):
        with pytest.raises(ValueError, match="NaN or inf"):
            earth_movers_distance(x, y, num_points=None, method=method)
        with pytest.raises(ValueError, match="NaN or inf"):
            earth_movers_distance(y, x, num_points=None, method=method)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_auction_non_finite_cost_raises(bad):
    C = torch.rand(10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    C[3, 5] = bad
    with _deadline(20):
        with pytest.raises(ValueError, match="finite"):
            auction_assignment(C)
