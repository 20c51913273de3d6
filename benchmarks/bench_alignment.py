"""ICP throughput on CPU: B=8 pairs of 10k points, 30 iterations, beside a numpy + pykdtree loop as a peer.

Run: pytest benchmarks/bench_alignment.py --benchmark-only (sizes: benchmarks/sizes.py, "alignment")
The convergence test is disabled (relative_rmse_thr=0) so every run does exactly 30 steps. The peer is the
usual script: per pair and step, a pykdtree query against a prebuilt tree of the target and a float64
Kabsch fit (it builds one tree per pair and reuses it; `knn_points` rebuilds the tree every call).
Ours runs inside `runtime_policy("cpu")` as the CLI and the runner call it, and once bare (torch's default
thread count) beside it: the library sets no threads itself.
"""

import math

import numpy as np
import pytest
import torch
from pykdtree.kdtree import KDTree

from sam3d_eval.metrics.chamfer import chamfer_distance
from sam3d_eval.ops.alignment import iterative_closest_point, rotation_search_icp
from sam3d_eval.runtime import runtime_policy
from sizes import sizes_for

S = sizes_for("alignment")
B, N, ITERS, ROUNDS = S.B, S.N, S.ITERS, S.ROUNDS


def _pairs(b=B, n=N):
    g = torch.Generator().manual_seed(0)
    gt = torch.randn(b, n, 3, generator=g) * torch.tensor([1.0, 0.6, 0.3])
    gt[:, : n // 5] += torch.tensor([0.8, 0.3, 0.1])
    th = math.radians(15)
    R = torch.tensor([[math.cos(th), -math.sin(th), 0.0], [math.sin(th), math.cos(th), 0.0], [0.0, 0.0, 1.0]])
    return gt @ R + 0.05, gt


def _numpy_icp(X, Y, iters):
    out = []
    for x, y in zip(X.numpy(), Y.numpy()):
        tree = KDTree(y)
        R, t = np.eye(3), np.zeros(3)
        for _ in range(iters):
            xt = (x @ R + t).astype(np.float32)
            _, idx = tree.query(xt, k=1)
            nn = y[idx].astype(np.float64)
            mx, my = x.mean(0), nn.mean(0)
            U, _, Vt = np.linalg.svd((x - mx).T @ (nn - my))
            D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
            R = U @ D @ Vt
            t = my - mx @ R
        out.append(R)
    return out


_CHECKED: dict = {}


def check_against_peer() -> None:
    """Before any timing: ours (bare and in the policy) lands on the peer's rotations, step for step."""
    if _CHECKED:
        return
    X, Y = _pairs()
    peer = torch.tensor(np.stack(_numpy_icp(X, Y, ITERS)), dtype=torch.float32)
    kw = {"max_iterations": ITERS, "relative_rmse_thr": 0.0}
    for fn in (iterative_closest_point, _in_policy(iterative_closest_point)):
        sol = fn(X, Y, **kw)
        assert sol.iterations == ITERS
        torch.testing.assert_close(sol.RTs.R, peer, atol=2e-3, rtol=0)
    _CHECKED["ok"] = True


def _in_policy(fn):
    def run(*args, **kwargs):
        with runtime_policy("cpu"):
            return fn(*args, **kwargs)

    return run


def test_icp_8x10k_30_steps(benchmark):
    check_against_peer()
    X, Y = _pairs()
    sol = benchmark.pedantic(
        _in_policy(iterative_closest_point), args=(X, Y), kwargs={"max_iterations": ITERS, "relative_rmse_thr": 0.0},
        rounds=ROUNDS, iterations=1, warmup_rounds=1,
    )
    assert sol.iterations == ITERS
    benchmark.extra_info["max_rmse"] = float(sol.rmse.max())
    if benchmark.enabled:
        benchmark.extra_info["pairs_per_s"] = B / benchmark.stats.stats.mean


def test_icp_no_policy_8x10k_30_steps(benchmark):
    check_against_peer()
    X, Y = _pairs()
    sol = benchmark.pedantic(
        iterative_closest_point, args=(X, Y), kwargs={"max_iterations": ITERS, "relative_rmse_thr": 0.0},
        rounds=ROUNDS, iterations=1, warmup_rounds=1,
    )
    assert sol.iterations == ITERS
    if benchmark.enabled:
        benchmark.extra_info["pairs_per_s"] = B / benchmark.stats.stats.mean


def test_peer_numpy_pykdtree_icp_8x10k_30_steps(benchmark):
    check_against_peer()
    X, Y = _pairs()
    benchmark.pedantic(_numpy_icp, args=(X, Y, ITERS), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    if benchmark.enabled:
        benchmark.extra_info["pairs_per_s"] = B / benchmark.stats.stats.mean


def test_rotation_search_cube24_1x5k(benchmark):
    """24 ICP starts for one pair of 5k points, 30 steps each, batched as 24 clouds."""
    X, Y = _pairs(1, S.ROT_N)
    kw = {"max_iterations": ITERS, "relative_rmse_thr": 0.0}
    # before timing: the winner's reported Chamfer is the Chamfer of its aligned cloud to the target
    best, cd = _in_policy(rotation_search_icp)(X, Y, "cube24", **kw)
    assert float(cd[0]) == pytest.approx(float(chamfer_distance(best.Xt, Y)[0]), rel=1e-4)
    benchmark.pedantic(
        _in_policy(rotation_search_icp), args=(X, Y, "cube24"), kwargs={"max_iterations": ITERS, "relative_rmse_thr": 0.0},
        rounds=min(ROUNDS, 2), iterations=1, warmup_rounds=0,
    )
