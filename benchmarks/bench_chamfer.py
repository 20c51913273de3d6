"""Chamfer distance (both directions, one pair) against its peers, side by side in one run.

    python -m pytest benchmarks/bench_chamfer.py --benchmark-group-by=param:n --benchmark-columns=min,median,mean

Peers: our `chamfer_distance` (auto dispatch) inside `runtime_policy` as the CLI runs it, and called bare
(`ours_no_policy`, torch's default threads), scipy cKDTree (workers=-1, two-way query), pykdtree
directly (two-way query), torch.cdist (only where the n x n matrix fits: 2k, 10k). Every peer returns
the same number (mean squared nearest distance, summed over the two directions). A CUDA-only group
compares the Triton kernel with torch.cdist and the tiled torch brute force when a GPU is present.

The interleaved case (`test_chamfer_interleaved_vs_pykdtree`, 100k x 100k) is the figure to quote for
"library call vs pykdtree": our `chamfer_distance` called plainly (no policy, as a user's script calls it)
and inside `runtime_policy("cpu")` (as the CLI calls it), each alternated round by round with the same work
in pykdtree (two trees, two queries with sqr_dists, two means), so load swings on a shared machine hit both
alike. Its extra_info holds both sides' median seconds, the median of the per-round ratios ours / peer, and
the load average before and after.

    python -m pytest benchmarks/bench_chamfer.py -k interleaved -s
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from pykdtree.kdtree import KDTree
from scipy.spatial import cKDTree

from sam3d_eval.metrics.chamfer import chamfer_distance
from sam3d_eval.ops.knn import knn_points
from sam3d_eval.runtime import runtime_policy
from sizes import sizes_for

S = sizes_for("chamfer")  # sizes and peers: benchmarks/sizes.py
SIZES, CDIST_MAX = S.SIZES, S.CDIST_MAX
# interleaved case: one pair of this many points each, this many rounds of (ours, peer) alternated
INTERLEAVED_N = 300 if S.QUICK else 100_000
INTERLEAVED_ROUNDS = 1 if S.QUICK else 9


def clouds(n: int, batch: int = 1, device: str = "cpu", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, n, 3, generator=g)
    y = torch.rand(batch, n, 3, generator=g)
    return x.to(device), y.to(device)


def run(benchmark, fn, n, slow: bool = False):
    """Fewer rounds for big or slow cases so a full run stays within a few minutes on 2 cores."""
    if slow or n >= 1_000_000:
        rounds, warmup = 2, 0
    elif n >= 100_000:
        rounds, warmup = 5, 1
    else:
        rounds, warmup = 15, 1
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=warmup)


_REFERENCE: dict[tuple[int, int], float] = {}


def reference(x, y):
    """Our value, computed once per input, that every peer must reproduce."""
    key = (x.shape[0], x.shape[1])
    if key not in _REFERENCE:
        _REFERENCE[key] = ours_no_policy(x, y)
    return _REFERENCE[key]


def ours(x, y):
    """As the CLI and the runner call it: inside the CPU runtime policy (runtime.py)."""
    with runtime_policy(x.device):
        return chamfer_distance(x, y)[0].item()


def ours_no_policy(x, y):
    """The library called bare, on torch's default thread count."""
    return chamfer_distance(x, y)[0].item()


def ckdtree(x, y):
    total = 0.0
    for a, b in zip(x.numpy(), y.numpy()):
        da, _ = cKDTree(b).query(a, k=1, workers=-1)
        db, _ = cKDTree(a).query(b, k=1, workers=-1)
        total += float(np.mean(da.astype(np.float64) ** 2) + np.mean(db.astype(np.float64) ** 2))
    return total / x.shape[0]


def pykdtree(x, y):
    total = 0.0
    for a, b in zip(x.numpy(), y.numpy()):
        da, _ = KDTree(b).query(a, k=1)
        db, _ = KDTree(a).query(b, k=1)
        total += float(np.mean(da.astype(np.float64) ** 2) + np.mean(db.astype(np.float64) ** 2))
    return total / x.shape[0]


def cdist(x, y):
    d = torch.cdist(x, y) ** 2
    return (d.min(2).values.mean(1) + d.min(1).values.mean(1)).mean().item()


_IMPLS = {"ours": ours, "ours_no_policy": ours_no_policy, "ckdtree": ckdtree, "pykdtree": pykdtree, "cdist": cdist}
PEERS = {name: _IMPLS[name] for name in S.PEERS}


@pytest.mark.parametrize("peer", list(PEERS))
@pytest.mark.parametrize("n", SIZES)
def test_chamfer_one_pair(benchmark, n, peer):
    if peer == "cdist" and n > CDIST_MAX:
        pytest.skip(f"torch.cdist needs the {n} x {n} matrix ({4 * n * n / 2**30:.0f} GiB)")
    x, y = clouds(n)
    benchmark.group = f"chamfer 1 pair n={n}"
    assert PEERS[peer](x, y) == pytest.approx(reference(x, y), rel=1e-4)  # same number before timing
    run(benchmark, lambda: PEERS[peer](x, y), n, slow=peer == "cdist")


@pytest.mark.parametrize("peer", list(PEERS))
def test_chamfer_four_pairs_10k(benchmark, peer):
    n = S.FOUR_PAIRS_N
    x, y = clouds(n, batch=4)
    benchmark.group = f"chamfer 4 pairs n={n}"
    assert PEERS[peer](x, y) == pytest.approx(reference(x, y), rel=1e-4)  # same number before timing
    run(benchmark, lambda: PEERS[peer](x, y), n, slow=peer == "cdist")


@pytest.mark.parametrize("backend", ["torch", "kdtree"])
@pytest.mark.parametrize("batch,n", S.KNN_CASES)
def test_cpu_dispatch_knn_one_way(benchmark, batch, n, backend):
    """The measurement behind the CPU auto-dispatch threshold (ops/knn.py CPU_BRUTE_FORCE_MAX_PAIRS)."""
    x, y = clouds(n, batch=batch)
    benchmark.group = f"knn one way {batch} x n={n}"
    # before timing: the squared distances of a float64 cKDTree query
    ref = torch.tensor(np.stack([cKDTree(b).query(a, k=1)[0] ** 2 for a, b in zip(x.double().numpy(), y.double().numpy())]))
    torch.testing.assert_close(knn_points(x, y, backend=backend).dists[..., 0].double(), ref, rtol=1e-4, atol=1e-7)
    run(benchmark, lambda: knn_points(x, y, backend=backend), n, slow=backend == "torch" and n >= 10_000)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("peer", ["triton", "torch", "cdist"])
@pytest.mark.parametrize("n", S.GPU_SIZES)
def test_gpu_knn_one_way(benchmark, n, peer):
    if peer == "cdist" and n > S.GPU_CDIST_MAX:
        pytest.skip("torch.cdist matrix does not fit")
    x, y = clouds(n, device="cuda")
    benchmark.group = f"gpu knn one way n={n}"
    if peer != "cdist":  # before timing: the CPU KD-tree's squared distances
        got = knn_points(x, y, backend=peer).dists[..., 0].cpu()
        torch.testing.assert_close(got, knn_points(x.cpu(), y.cpu(), backend="kdtree").dists[..., 0], rtol=1e-4, atol=1e-6)

    def fn():
        if peer == "cdist":
            out = torch.cdist(x, y).argmin(2)
        else:
            out = knn_points(x, y, backend=peer).idx
        torch.cuda.synchronize()
        return out

    run(benchmark, fn, n)


def pykdtree_same_work(x, y):
    """The work of one plain B=1 `chamfer_distance` in pykdtree: a tree on y queried with x, a tree on x
    queried with y (squared distances), the two means (float32, as ours)."""
    a, b = x[0].numpy(), y[0].numpy()
    da, _ = KDTree(b).query(a, k=1, sqr_dists=True)
    db, _ = KDTree(a).query(b, k=1, sqr_dists=True)
    return float(da.mean()) + float(db.mean())


def one_round(fns: dict, times: dict[str, list[float]]) -> None:
    """One call of each function in `fns`, appending its seconds to `times`; the order rotates every round
    (by the rounds already in `times`), so no function always runs right after the same one (OpenMP threads
    still spinning, warm caches)."""
    names = list(fns)
    r = len(times[names[0]]) % len(names)
    for name in names[r:] + names[:r]:
        t0 = time.perf_counter()
        fns[name]()
        times[name].append(time.perf_counter() - t0)


@pytest.mark.parametrize("mode", ["plain", "policy"])
def test_chamfer_interleaved_vs_pykdtree(benchmark, mode):
    """Plain call (or inside the CPU policy) vs pykdtree doing the same work, interleaved, 100k x 100k.

    The benchmark row times one round; extra_info holds each side's median and the median of the per-round
    ratios ours / pykdtree (goal: <= 1.0 in both modes), with the load average. An A/A control - pykdtree
    timed twice per round, ``aa_ratio_median`` - shows how far two identical calls drift apart on this
    machine: a ratio within that distance of 1 is parity.
    """
    n = INTERLEAVED_N
    x, y = clouds(n)
    benchmark.group = f"chamfer interleaved vs pykdtree n={n} {mode}"
    ours_fn = ours if mode == "policy" else ours_no_policy
    fns = {"ours": lambda: ours_fn(x, y), "pykdtree": lambda: pykdtree_same_work(x, y),
           "pykdtree_again": lambda: pykdtree_same_work(x, y)}
    assert fns["ours"]() == pytest.approx(fns["pykdtree"](), rel=1e-5)  # same number before timing
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {k: [] for k in fns}
    if not S.QUICK:
        one_round(fns, {k: [] for k in fns})  # warm-up, not recorded
    benchmark.pedantic(lambda: one_round(fns, times), rounds=INTERLEAVED_ROUNDS, iterations=1)
    ratios = [a / b for a, b in zip(times["ours"], times["pykdtree"])]
    aa = [a / b for a, b in zip(times["pykdtree_again"], times["pykdtree"])]
    info = {
        "mode": mode, "n": n, "rounds": len(ratios),
        "ours_median_s": float(np.median(times["ours"])), "pykdtree_median_s": float(np.median(times["pykdtree"])),
        "ratio_median": float(np.median(ratios)), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "aa_ratio_median": float(np.median(aa)),
        "loadavg_before": load_before[0], "loadavg_after": os.getloadavg()[0],
    }
    benchmark.extra_info.update(info)
    print(f"\nchamfer {mode} vs pykdtree, interleaved, n={n}: ours {info['ours_median_s'] * 1e3:.1f} ms, "
          f"pykdtree {info['pykdtree_median_s'] * 1e3:.1f} ms, ratio median {info['ratio_median']:.3f} "
          f"(min {info['ratio_min']:.3f}, max {info['ratio_max']:.3f}, {len(ratios)} rounds; A/A "
          f"{info['aa_ratio_median']:.3f}), load {info['loadavg_before']:.2f} -> {info['loadavg_after']:.2f}")
