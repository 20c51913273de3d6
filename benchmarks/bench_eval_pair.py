"""End-to-end geometry evaluation of one mesh pair, ours against the usual script, side by side.

    python -m pytest benchmarks/bench_eval_pair.py --benchmark-columns=min,median,rounds

Work: 100k area-uniform samples on each surface, Chamfer-L2 (both directions), F-score at 3 taus and
normal consistency, for one (prediction, GT) pair of ~20k-face meshes already in memory.
Peer (0.22 s on this machine class): trimesh.sample.sample_surface for both meshes,
then a scipy cKDTree (workers=-1) query in each direction. Both compute the same quantities; the test
checks they agree to sampling noise before timing. Ours runs inside `runtime_policy("cpu")`, as the CLI and
the runner call it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from sam3d_eval.data.shapes import Degradation, degrade
from sam3d_eval.evaluate.surface import surface_metrics
from sam3d_eval.runtime import runtime_policy
from sam3d_eval.structures import Meshes
from sizes import sizes_for

S = sizes_for("eval_pair")  # benchmarks/sizes.py
N = S.N
TAUS = (0.01, 0.02, 0.05)


@pytest.fixture(scope="module")
def pair():
    gt = trimesh.creation.icosphere(subdivisions=S.SUBDIV, radius=0.5)  # level 5: 20480 faces; fits the unit cube
    v, f = degrade(np.asarray(gt.vertices, np.float32), np.asarray(gt.faces), Degradation(noise=0.004, dent=0.05), 0)
    pred = trimesh.Trimesh(v, f, process=False)
    return pred, gt


def peer_script(pred: trimesh.Trimesh, gt: trimesh.Trimesh) -> dict[str, float]:
    """What evaluation scripts in the field do: trimesh sampling + cKDTree, metrics in numpy."""
    p, pf = trimesh.sample.sample_surface(pred, N, seed=1)
    g, gf = trimesh.sample.sample_surface(gt, N, seed=0)
    pn, gn = pred.face_normals[pf], gt.face_normals[gf]
    d_pg, i_pg = cKDTree(g).query(p, workers=-1)
    d_gp, i_gp = cKDTree(p).query(g, workers=-1)
    out = {"chamfer_l2": float((d_pg**2).mean() + (d_gp**2).mean())}
    for tau in TAUS:
        prec, rec = (d_pg < tau).mean(), (d_gp < tau).mean()
        out[f"fscore@{tau:g}"] = float(2 * prec * rec / (prec + rec)) if prec + rec > 0 else 0.0
    nc_pg = np.abs((pn * gn[i_pg]).sum(1)).mean()
    nc_gp = np.abs((gn * pn[i_gp]).sum(1)).mean()
    out["normal_consistency"] = float(0.5 * (nc_pg + nc_gp))
    return out


def ours(pred_m: Meshes, gt_m: Meshes) -> dict[str, float]:
    # Inside the runtime policy, as the CLI and the runner call it (one torch thread on the CPU).
    with runtime_policy("cpu"):
        return surface_metrics(pred_m, gt_m, num_samples=N, taus=TAUS, seed=0, normalize=False).rows()[0]


def _meshes(m: trimesh.Trimesh) -> Meshes:
    return Meshes([torch.tensor(m.vertices, dtype=torch.float32)], [torch.tensor(m.faces)])


@pytest.fixture(scope="module")
def same_numbers(pair):
    """Ours and the peer agree to sampling noise; every timing below depends on this check."""
    pred, gt = pair
    a, b = ours(_meshes(pred), _meshes(gt)), peer_script(pred, gt)
    assert a["chamfer_l2"] == pytest.approx(b["chamfer_l2"], rel=0.05)
    for key in ("fscore@0.01", "fscore@0.02", "fscore@0.05", "normal_consistency"):
        assert a[key] == pytest.approx(b[key], abs=0.01)
    return a, b


def test_same_numbers(same_numbers):
    a, b = same_numbers
    assert set(b) <= set(a)


@pytest.mark.benchmark(group="eval-pair-100k")
def test_ours(benchmark, pair, same_numbers):
    pred, gt = map(_meshes, pair)
    benchmark.pedantic(ours, args=(pred, gt), rounds=S.ROUNDS, warmup_rounds=1)


@pytest.mark.benchmark(group="eval-pair-100k")
def test_peer_trimesh_ckdtree(benchmark, pair, same_numbers):
    benchmark.pedantic(peer_script, args=pair, rounds=S.ROUNDS, warmup_rounds=1)


def test_interleaved_ratio(pair, same_numbers):
    """Ours and the peer alternated round by round, so a noisy neighbour on the host hits both alike."""
    import time

    pred, gt = pair
    pm, gm = _meshes(pred), _meshes(gt)
    ours_t, peer_t = [], []
    for _ in range(S.INTERLEAVED):
        t0 = time.perf_counter()
        ours(pm, gm)
        t1 = time.perf_counter()
        peer_script(pred, gt)
        t2 = time.perf_counter()
        ours_t.append(t1 - t0)
        peer_t.append(t2 - t1)
    ours_t, peer_t = np.array(ours_t[1:]), np.array(peer_t[1:])  # first round warms up
    print(
        f"\neval-pair-100k interleaved: ours min {ours_t.min() * 1e3:.1f} ms median {np.median(ours_t) * 1e3:.1f} ms; "
        f"peer min {peer_t.min() * 1e3:.1f} ms median {np.median(peer_t) * 1e3:.1f} ms; "
        f"speed-up min {peer_t.min() / ours_t.min():.2f}x median {np.median(peer_t / ours_t):.2f}x"
    )
    if not S.QUICK:  # tiny sizes time fixed overheads, not the work
        assert np.median(peer_t / ours_t) > 1.0  # sanity: a regression below the peer fails loudly
