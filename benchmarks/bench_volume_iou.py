"""Voxel IoU throughput at 64^3 for a ~5k-face mesh pair on CPU: both inside tests and trimesh as a peer.

Run: pytest benchmarks/bench_volume_iou.py --benchmark-only
Peers: trimesh's `Trimesh.contains` (ray-based; needs rtree, skipped where it is not installed) on the same
grid points, and the direct O(points x faces) winding-number sum (on a 16^3 grid: 1/64 of the points).
"""

import numpy as np
import pytest
import torch
import trimesh

from sam3d_eval.metrics.volume_iou import volume_iou, winding_number
from sizes import sizes_for

S = sizes_for("volume_iou")  # benchmarks/sizes.py
R = S.R


def _pair():
    a = trimesh.creation.icosphere(subdivisions=S.SUBDIV)  # level 4: 5120 faces
    b = a.copy()
    b.vertices = b.vertices * [1.1, 0.9, 1.0] + [0.2, 0.1, -0.1]
    rng = np.random.default_rng(0)
    b.vertices = b.vertices + rng.normal(scale=0.01, size=b.vertices.shape)
    return a, b


def _t(m):
    return torch.tensor(m.vertices, dtype=torch.float32), torch.tensor(m.faces, dtype=torch.int64)


def _grid_points(a, b, res):
    lo = np.minimum(a.vertices.min(0), b.vertices.min(0))
    hi = np.maximum(a.vertices.max(0), b.vertices.max(0))
    ax = [lo[d] + (np.arange(res) + 0.5) * (hi[d] - lo[d]) / res for d in range(3)]
    return np.stack(np.meshgrid(*ax, indexing="ij"), -1).reshape(-1, 3)


_REF: dict = {}


def reference_iou() -> float:
    """The direct O(points x faces) winding-number IoU on a PEER_R^3 grid of cell centres over the pair's
    joint box (the full R^3 grid would take minutes); computed once."""
    if "iou" not in _REF:
        a, b = _pair()
        (va, fa), (vb, fb) = _t(a), _t(b)
        pts = torch.tensor(_grid_points(a, b, S.PEER_R))
        ia, ib = winding_number(va, fa, pts) > 0.5, winding_number(vb, fb, pts) > 0.5
        _REF["iou"] = float((ia & ib).sum() / (ia | ib).sum())
    return _REF["iou"]


@pytest.mark.parametrize("method", ["winding", "parity"])
def test_volume_iou_64(benchmark, method):
    a, b = _pair()
    pa, pb = _t(a), _t(b)
    # before timing: the method on the peer's coarse grid lands on the direct winding sum
    got = float(volume_iou(pa, pb, resolution=S.PEER_R, method=method).iou[0])
    assert got == pytest.approx(reference_iou(), abs=0.02)
    r = benchmark.pedantic(volume_iou, args=(pa, pb), kwargs={"resolution": R, "method": method}, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["iou"] = float(r.iou[0])


def test_volume_iou_64_open_mesh_winding(benchmark):
    """The winding path's extra cost on a mesh with one wide hole (cells within ~1.75 hole radii sum the cap)."""
    a, b = _pair()
    pa, (vb, fb) = _t(a), _t(b)
    fb = fb[vb[fb].mean(1)[:, 2] < 0.8]  # cut the top cap off
    closed = float(volume_iou(pa, _t(b), resolution=R, method="winding").iou[0])
    got = float(volume_iou(pa, (vb, fb), resolution=R, method="winding").iou[0])
    assert got == pytest.approx(closed, abs=0.05)  # before timing: a cut cap keeps the winding IoU near the closed one
    r = benchmark.pedantic(volume_iou, args=(pa, (vb, fb)), kwargs={"resolution": R, "method": "winding"}, rounds=2, iterations=1)
    benchmark.extra_info["iou"] = float(r.iou[0])


def test_volume_iou_64_many_holes_winding(benchmark):
    """An open mesh with a few hundred boundary edges (3% of the faces missing, ~450 edges in ~150 holes):
    the caps' bound confines the direct winding sum to cells near the holes (was one curtain term per
    boundary edge per cell: ~45 s)."""
    a, b = _pair()
    pa, (vb, fb) = _t(a), _t(b)
    keep = torch.from_numpy(np.random.default_rng(0).random(fb.shape[0]) > 0.03)
    closed = float(volume_iou(pa, _t(b), resolution=R, method="winding").iou[0])
    got = float(volume_iou(pa, (vb, fb[keep]), resolution=R, method="winding").iou[0])
    assert got == pytest.approx(closed, abs=0.02)  # before timing: small holes barely change the winding IoU
    r = benchmark.pedantic(volume_iou, args=(pa, (vb, fb[keep])), kwargs={"resolution": R, "method": "winding"}, rounds=2, iterations=1)
    benchmark.extra_info["iou"] = float(r.iou[0])
    benchmark.extra_info["notes"] = r.notes[0]


def test_peer_trimesh_contains_64(benchmark):
    pytest.importorskip("rtree", reason="trimesh.contains needs rtree (not installed here)")
    a, b = _pair()
    pts = _grid_points(a, b, R)

    def run():
        ia, ib = a.contains(pts), b.contains(pts)
        return (ia & ib).sum() / (ia | ib).sum()

    ours = float(volume_iou(_t(a), _t(b), resolution=R, method="winding").iou[0])
    assert float(run()) == pytest.approx(ours, abs=0.02)  # before timing

    benchmark.extra_info["iou"] = float(benchmark.pedantic(run, rounds=1, iterations=1))


def test_peer_direct_winding_16(benchmark):
    a, b = _pair()
    (va, fa), (vb, fb) = _t(a), _t(b)
    pts = torch.tensor(_grid_points(a, b, S.PEER_R))

    def run():
        ia, ib = winding_number(va, fa, pts) > 0.5, winding_number(vb, fb, pts) > 0.5
        return (ia & ib).sum() / (ia | ib).sum()

    ours = float(volume_iou(_t(a), _t(b), resolution=S.PEER_R, method="winding").iou[0])
    assert reference_iou() == pytest.approx(ours, abs=0.02)  # before timing, at the peer's coarse grid

    benchmark.extra_info["iou"] = float(benchmark.pedantic(run, rounds=1, iterations=1))
