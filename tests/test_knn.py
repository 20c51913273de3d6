"""knn_points / knn_gather: golden pytorch3d outputs, float64 brute force, backend agreement, gradients,
edge cases, Triton (interpreted on CPU) and bounded memory."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sam3d_eval.ops.knn import KNN, knn_gather, knn_points, select_backend

CPU_BACKENDS = ["torch", "kdtree"]


def brute_knn(p1, p2, l1, l2, K, norm):
    """float64 reference: (dists, idx) sorted by (distance, index), pytorch3d zero padding."""
    p1, p2 = p1.double(), p2.double()
    N, P1, _ = p1.shape
    P2 = p2.shape[1]
    diff = p1[:, :, None] - p2[:, None]
    d = (diff**2).sum(-1) if norm == 2 else diff.abs().sum(-1)
    d = d.masked_fill((torch.arange(P2)[None] >= l2[:, None])[:, None], float("inf"))
    v, i = d.sort(dim=2, stable=True)
    v, i = v[..., :K], i[..., :K]
    if K > P2:
        v = torch.cat([v, v.new_zeros(N, P1, K - P2)], 2)
        i = torch.cat([i, i.new_zeros(N, P1, K - P2)], 2)
    valid = (torch.arange(P1)[None] < l1[:, None])[:, :, None] & (torch.arange(K)[None] < l2[:, None])[:, None]
    return v.masked_fill(~valid, 0), i.masked_fill(~valid, 0)


def random_batch(seed, N=3, P1=200, P2=150, D=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    p1 = torch.rand(N, P1, D, generator=g, dtype=dtype)
    p2 = torch.rand(N, P2, D, generator=g, dtype=dtype)
    return p1, p2


# --- golden (pytorch3d) ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto"] + CPU_BACKENDS)
@pytest.mark.parametrize("case,K", [("knn_k1", 1), ("knn_k4", 4)])
def test_golden_knn(p3d_golden, case, K, backend):
    x = torch.from_numpy(p3d_golden[f"{case}/x"])
    y = torch.from_numpy(p3d_golden[f"{case}/y"])
    out = knn_points(x, y, K=K, backend=backend)
    assert isinstance(out, KNN) and out.knn is None
    assert out.idx.dtype == torch.int64 and out.dists.dtype == torch.float32
    assert torch.equal(out.idx, torch.from_numpy(p3d_golden[f"{case}/idx"]))
    torch.testing.assert_close(out.dists, torch.from_numpy(p3d_golden[f"{case}/dists"]), rtol=1e-5, atol=0)


# --- float64 brute force, every backend, ragged ------------------------------------------------------


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("K", [1, 3, 8])
def test_matches_brute_force_ragged(backend, norm, K):
    p1, p2 = random_batch(norm * 10 + K)
    l1 = torch.tensor([200, 37, 0])
    l2 = torch.tensor([150, 5, 40])  # K=8 > 5 exercises the short-cloud padding
    out = knn_points(p1, p2, l1, l2, norm=norm, K=K, backend=backend)
    ref_d, ref_i = brute_knn(p1, p2, l1, l2, K, norm)
    assert torch.equal(out.idx, ref_i)
    torch.testing.assert_close(out.dists, ref_d, rtol=1e-12, atol=0)


@pytest.mark.parametrize("norm", [1, 2])
def test_backends_agree_float32(norm):
    p1, p2 = random_batch(7, N=2, P1=3000, P2=2500, dtype=torch.float32)
    l1, l2 = torch.tensor([3000, 1234]), torch.tensor([2500, 999])
    a = knn_points(p1, p2, l1, l2, norm=norm, K=2, backend="torch")
    b = knn_points(p1, p2, l1, l2, norm=norm, K=2, backend="kdtree")
    assert (a.idx != b.idx).float().mean() < 1e-3  # float32 near-ties only
    torch.testing.assert_close(a.dists, b.dists, rtol=1e-5, atol=1e-9)


def test_tiles_smaller_than_clouds():
    """Several P1 and P2 tiles and batch chunks: the running top-K merge must equal brute force."""
    from sam3d_eval.ops.knn import _knn_idx_torch

    p1, p2 = random_batch(3, N=3, P1=300, P2=2500)
    l1, l2 = torch.tensor([300, 299, 17]), torch.tensor([2500, 1100, 3])
    for norm in (1, 2):
        idx = _knn_idx_torch(p1, p2, l1, l2, norm, 3, tile_elems=2048 * 8)
        _, ref = brute_knn(p1, p2, l1, l2, 3, norm)
        valid = (torch.arange(300)[None] < l1[:, None])[:, :, None] & (torch.arange(3)[None] < l2[:, None])[:, None]
        assert torch.equal(idx[valid], ref[valid])


def test_cancellation_far_from_origin():
    """Clouds far from the origin with tiny spacing: ||a||^2+||b||^2-2ab alone would pick wrong neighbours."""
    g = torch.Generator().manual_seed(0)
    p1 = (1000.0 + 1e-2 * torch.rand(1, 400, 3, generator=g)).float()
    p2 = (1000.0 + 1e-2 * torch.rand(1, 500, 3, generator=g)).float()
    ref_d, ref_i = brute_knn(p1, p2, torch.tensor([400]), torch.tensor([500]), 1, 2)
    for backend in CPU_BACKENDS:
        out = knn_points(p1, p2, K=1, backend=backend)
        torch.testing.assert_close(out.dists.double(), ref_d, rtol=1e-5, atol=0)


def test_return_nn_and_knn_gather():
    p1, p2 = random_batch(1, N=2, P1=20, P2=6)
    l2 = torch.tensor([6, 2])
    out = knn_points(p1, p2, lengths2=l2, K=4, return_nn=True)
    assert out.knn.shape == (2, 20, 4, 3)
    torch.testing.assert_close(out.knn[0], p2[0][out.idx[0]])
    torch.testing.assert_close(out.knn[1, :, :2], p2[1][out.idx[1, :, :2]])
    assert (out.knn[1, :, 2:] == 0).all()  # k >= lengths2 zeroed, as pytorch3d's knn_gather
    feats = torch.arange(12.0).view(2, 6, 1)
    g = knn_gather(feats, out.idx, l2)
    assert g.shape == (2, 20, 4, 1)
    torch.testing.assert_close(g[0, :, :, 0], feats[0, :, 0][out.idx[0]])


# --- gradients ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("norm", [1, 2])
def test_gradcheck(backend, norm):
    p1, p2 = random_batch(11, N=2, P1=6, P2=5)
    p1.requires_grad_(True)
    p2.requires_grad_(True)
    l1, l2 = torch.tensor([6, 4]), torch.tensor([5, 2])

    def f(a, b):
        return knn_points(a, b, l1, l2, norm=norm, K=3, backend=backend).dists

    assert torch.autograd.gradcheck(f, (p1, p2), eps=1e-6, atol=1e-5)


def test_grad_matches_brute_force_autograd():
    p1, p2 = random_batch(5, N=2, P1=50, P2=40)
    l1, l2 = torch.tensor([50, 30]), torch.tensor([40, 3])
    w = torch.rand(2, 50, 4, dtype=torch.float64)
    a1, a2 = p1.clone().requires_grad_(), p2.clone().requires_grad_()
    (knn_points(a1, a2, l1, l2, K=4).dists * w).sum().backward()
    b1, b2 = p1.clone().requires_grad_(), p2.clone().requires_grad_()
    _, ref_i = brute_knn(p1, p2, l1, l2, 4, 2)
    diff = b1[:, :, None] - torch.stack([b2[n][ref_i[n]] for n in range(2)])
    valid = (torch.arange(50)[None] < l1[:, None])[:, :, None] & (torch.arange(4)[None] < l2[:, None])[:, None]
    ((diff**2).sum(-1) * w * valid).sum().backward()
    torch.testing.assert_close(a1.grad, b1.grad)
    torch.testing.assert_close(a2.grad, b2.grad)
    assert (a1.grad[1, 30:] == 0).all()


# --- edge cases --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto"] + CPU_BACKENDS)
def test_empty_and_single_point(backend):
    p1, p2 = random_batch(2, N=2, P1=4, P2=1)
    out = knn_points(p1, p2, K=2, backend=backend)
    assert (out.idx[..., 0] == 0).all() and (out.idx[..., 1] == 0).all()
    torch.testing.assert_close(out.dists[..., 0], ((p1 - p2) ** 2).sum(-1))
    assert (out.dists[..., 1] == 0).all()
    # every cloud of p2 empty
    out = knn_points(p1, p2, lengths2=torch.tensor([0, 0]), backend=backend)
    assert (out.dists == 0).all() and (out.idx == 0).all()
    # P2 == 0, P1 == 0 and N == 0
    out = knn_points(p1, p2[:, :0], K=2, backend=backend)
    assert out.dists.shape == (2, 4, 2) and (out.dists == 0).all() and (out.idx == 0).all()
    assert knn_points(p1[:, :0], p2, K=3, backend=backend).dists.shape == (2, 0, 3)
    assert knn_points(p1[:0], p2[:0], backend=backend).idx.shape == (0, 4, 1)


def test_bad_input_raises():
    p1, p2 = random_batch(0, N=2, P1=4, P2=3)
    with pytest.raises(ValueError, match="batch"):
        knn_points(p1, p2[:1])
    with pytest.raises(ValueError, match="point dimension"):
        knn_points(p1, p2[..., :2])
    with pytest.raises(ValueError, match="norm"):
        knn_points(p1, p2, norm=3)
    with pytest.raises(ValueError, match="K"):
        knn_points(p1, p2, K=0)
    with pytest.raises(ValueError, match="lengths2"):
        knn_points(p1, p2, lengths2=torch.tensor([4, 1]))
    with pytest.raises(ValueError, match="backend"):
        knn_points(p1, p2, backend="faiss")


def test_auto_dispatch():
    small, big = torch.zeros(1, 30, 3), torch.zeros(1, 5000, 3)
    assert select_backend(small, small, 1) == "torch"
    assert select_backend(big, big, 1) == "kdtree"
    assert select_backend(torch.zeros(1, 5000, 64), torch.zeros(1, 5000, 64), 1) == "torch"


@settings(max_examples=15, deadline=None)
@given(
    n1=st.integers(1, 40),
    n2=st.integers(1, 40),
    K=st.integers(1, 5),
    norm=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_property_backends_equal_brute_force(n1, n2, K, norm, seed):
    p1, p2 = random_batch(seed, N=1, P1=n1, P2=n2)
    shift = torch.randn(1, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 10
    ref_d, ref_i = brute_knn(p1, p2, torch.tensor([n1]), torch.tensor([n2]), K, norm)
    for backend in CPU_BACKENDS:
        out = knn_points(p1 + shift, p2 + shift, norm=norm, K=K, backend=backend)  # translation invariant
        assert torch.equal(out.idx, ref_i)
        torch.testing.assert_close(out.dists, ref_d, rtol=1e-9, atol=1e-12)
        assert (out.dists[..., 1:] >= out.dists[..., :-1]).all() or K > n2


# --- Triton kernel under the interpreter -------------------------------------------------------------

_TRITON_SCRIPT = textwrap.dedent(
    """
    import json, torch
    from sam3d_eval.ops.knn import knn_points
    from sam3d_eval.ops.knn_triton import knn1_triton
    g = torch.Generator().manual_seed(0)
    p1 = torch.rand(3, 150, 3, generator=g); p2 = torch.rand(3, 140, 3, generator=g)
    l1 = torch.tensor([150, 70, 0]); l2 = torch.tensor([140, 1, 65])
    res = {}
    for norm in (1, 2):
        a = knn_points(p1, p2, l1, l2, norm=norm, backend="triton")
        b = knn_points(p1, p2, l1, l2, norm=norm, backend="torch")
        c = knn_points(p1, p2, l1, l2, norm=norm, backend="kdtree")
        d, i = knn1_triton(p1, p2, l1, l2, norm, block_n=32, block_m=16)
        raw = (d[0] - b.dists[0, :, 0]).abs().max().item()
        res[norm] = [torch.equal(a.idx, b.idx), torch.equal(a.idx, c.idx), torch.equal(a.dists, b.dists),
                     torch.equal(i[0], b.idx[0, :, 0]), raw, bool(torch.isinf(d[1, :70]).any())]
    # a tie: two equidistant points, the lower index must win as in pytorch3d
    q = torch.tensor([[[0.0, 0, 0]]]); t = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [-1.0, 0, 0]]])
    res["tie"] = knn1_triton(q, t, torch.tensor([1]), torch.tensor([3]))[1].item()
    print(json.dumps(res))
    """
)


def test_triton_kernel_interpreted():
    pytest.importorskip("triton")
    # A subprocess: TRITON_INTERPRET must be set before triton is imported, and must not leak into this session.
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", _TRITON_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    for norm in ("1", "2"):
        same_torch, same_kd, same_dists, raw_idx_ok, raw_err, any_inf = res[norm]
        assert same_torch and same_kd and same_dists and raw_idx_ok
        assert raw_err < 1e-6 and not any_inf
    assert res["tie"] == 0


# --- bounded memory ----------------------------------------------------------------------------------

_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, torch
    from sam3d_eval.ops.knn import knn_points, select_backend
    n1, n2, backend = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, n1, 3, generator=g); y = torch.rand(1, n2, 3, generator=g)
    knn_points(x[:, :2000], y[:, :2000], backend=backend)  # warm up allocators and imports
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = knn_points(x, y, backend=backend)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    q = x[0, :50]
    ref = torch.cdist(q.double(), y[0].double()).argmin(1)
    print(json.dumps({"grow_kib": after - before, "auto": select_backend(x, y, 1),
                      "ok": bool(torch.equal(out.idx[0, :50, 0], ref))}))
    """
)


def _peak_growth(n1, n2, backend):
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(n1), str(n2), backend], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_memory_bounded_1m_by_1m_cpu():
    """1M x 1M on CPU (the auto path, a KD-tree): peak RSS grows by O(N + M), not by an N x M matrix (4 TB)."""
    res = _peak_growth(1_000_000, 1_000_000, "auto")
    assert res["auto"] == "kdtree" and res["ok"]
    # inputs are 24 MB; outputs (dists, idx, gathered neighbours) and the tree are tens of MB
    assert res["grow_kib"] < 256 * 1024, res  # measured ~50 MB


def test_memory_bounded_tiled_torch():
    """The tiled brute force on 20k x 8k never builds the 640 MB distance matrix."""
    res = _peak_growth(20_000, 8_000, "torch")
    assert res["ok"]
    assert res["grow_kib"] < 64 * 1024, res  # measured ~15 MB


def test_works_without_triton():
    """Triton is optional: with it unimportable, the module imports and the CPU paths run."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["triton"] = None  # makes `import triton` raise ImportError
        import torch
        from sam3d_eval.ops.knn import knn_points
        from sam3d_eval.runtime import triton_enabled
        x = torch.rand(1, 3000, 3)
        out = knn_points(x, x)
        assert not triton_enabled()
        assert torch.equal(out.idx[0, :, 0], torch.arange(3000)) and (out.dists == 0).all()
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


# --- spread-out clouds, non-finite input, padding ----------------------------------------------------


def _wrong_rows(p1, p2, idx):
    """Rows whose chosen neighbours are farther (float64) than the true K nearest, beyond float32 rounding."""
    d64 = torch.cdist(p1.double(), p2.double()).pow(2)
    ref = d64.topk(idx.shape[2], dim=2, largest=False).values  # ascending
    chosen = d64.gather(2, idx)
    return int(((chosen - ref).abs() > 1e-6 * ref + 1e-9).any(-1).sum())


def test_two_tight_clusters_far_apart_auto():
    """p2 in two clusters at +-1e3: centring on p2's mean (the origin) must not cost the near cluster its
    precision. 60 points, so auto picks the brute force."""
    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.rand(1, 30, 3, generator=g) * 0.1 + 1e3, torch.rand(1, 30, 3, generator=g) * 0.1 - 1e3], 1)
    x = torch.rand(1, 60, 3, generator=g) * 0.1 + 1e3
    assert select_backend(x, y, 1) == "torch"
    for K in (1, 3):
        out = knn_points(x, y, K=K)
        assert _wrong_rows(x, y, out.idx) == 0
        ref_d, _ = brute_knn(x, y, torch.tensor([60]), torch.tensor([60]), K, 2)
        torch.testing.assert_close(out.dists.double(), ref_d, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("K", [1, 4])
def test_two_clusters_at_100_torch(K):
    g = torch.Generator().manual_seed(1)
    y = torch.cat([torch.rand(1, 2000, 3, generator=g) + 100, torch.rand(1, 2000, 3, generator=g) - 100], 1)
    x = torch.rand(1, 2000, 3, generator=g) + 100
    out = knn_points(x, y, K=K, backend="torch")
    assert _wrong_rows(x, y, out.idx) == 0
    ref_d, _ = brute_knn(x, y, torch.tensor([2000]), torch.tensor([4000]), K, 2)
    torch.testing.assert_close(out.dists.double(), ref_d, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("tile_elems", [None, 4096])
def test_high_dim_features_far_apart(tile_elems):
    """D > 8 ranks by the matmul expansion: its error bound must send the rows it cannot decide to the
    exact path (clusters at +-300 with 1e-2 spread: the expansion alone swaps most neighbours)."""
    from sam3d_eval.ops.knn import _knn_idx_torch

    g = torch.Generator().manual_seed(2)
    D = 16
    y = torch.cat([torch.rand(2, 150, D, generator=g) * 1e-2 + 300, torch.rand(2, 150, D, generator=g) - 300], 1)
    x = torch.rand(2, 120, D, generator=g) * 1e-2 + 300
    l1, l2 = torch.tensor([120, 77]), torch.tensor([300, 151])
    for K in (1, 5):
        idx = _knn_idx_torch(x, y, l1, l2, 2, K, tile_elems=tile_elems)
        ref_d, _ = brute_knn(x, y, l1, l2, K, 2)
        got = knn_points(x, y, l1, l2, K=K, backend="torch").dists
        torch.testing.assert_close(got.double(), ref_d, rtol=1e-5, atol=1e-9)
        for n in range(2):
            a, b = x[n : n + 1, : l1[n]], y[n : n + 1, : l2[n]]
            assert _wrong_rows(a, b, idx[n : n + 1, : l1[n]]) == 0


@pytest.mark.parametrize("backend", ["auto"] + CPU_BACKENDS)
def test_nan_padding_is_never_read(backend):
    """NaN past the lengths (a common fill) changes neither results nor gradients, as in pytorch3d."""
    p1, p2 = random_batch(4, N=2, P1=40, P2=50, dtype=torch.float32)
    l1, l2 = torch.tensor([30, 40]), torch.tensor([50, 20])
    clean = knn_points(p1, p2, l1, l2, K=2, backend=backend)
    q1, q2 = p1.clone(), p2.clone()
    q1[0, 30:] = float("nan")
    q2[1, 20:] = float("inf")
    q1.requires_grad_(True)
    q2.requires_grad_(True)
    out = knn_points(q1, q2, l1, l2, K=2, return_nn=True, backend=backend)
    assert torch.equal(out.idx, clean.idx) and torch.equal(out.dists, clean.dists)
    assert torch.isfinite(out.knn).all()
    out.dists.sum().backward()
    assert torch.isfinite(q1.grad).all() and torch.isfinite(q2.grad).all()
    assert (q1.grad[0, 30:] == 0).all() and (q2.grad[1, 20:] == 0).all()


def test_nan_padding_of_empty_cloud_gives_finite_grad():
    """lengths2 = 0: padded rows are differenced against p2[:, 0], which must not be the NaN fill."""
    p1 = torch.rand(1, 5, 3, requires_grad=True)
    p2 = torch.full((1, 4, 3), float("nan"), requires_grad=True)
    out = knn_points(p1, p2, lengths2=torch.tensor([0]), K=2, backend="torch")
    assert (out.dists == 0).all()
    out.dists.sum().backward()
    assert torch.isfinite(p1.grad).all() and torch.isfinite(p2.grad).all()


@pytest.mark.parametrize("backend", ["auto", "torch", "kdtree", "triton"])
@pytest.mark.parametrize("which", ["p1", "p2"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_valid_points_raise(backend, which, bad):
    p1, p2 = random_batch(5, N=2, P1=300, P2=200, dtype=torch.float32)
    (p1 if which == "p1" else p2)[1, 7, 2] = bad
    with pytest.raises(ValueError, match=f"{which} has NaN or inf"):
        knn_points(p1, p2, backend=backend)


def test_non_finite_check_does_not_flag_huge_finite_values():
    """The cheap finiteness check (one sum) overflows on huge values; it must fall back, not raise."""
    p = torch.full((1, 10, 3), 3e38)
    out = knn_points(p, p.clone())
    assert (out.dists == 0).all()


def test_float_lengths_raise():
    p1, p2 = random_batch(0, N=1, P1=10, P2=10)
    with pytest.raises(ValueError, match="lengths1 must have an integer dtype"):
        knn_points(p1, p2, lengths1=torch.tensor([5.7]))
    with pytest.raises(ValueError, match="lengths2 must have an integer dtype"):
        knn_points(p1, p2, lengths2=torch.tensor([5.0]))
    assert knn_points(p1, p2, lengths1=torch.tensor([5], dtype=torch.int32)).dists[0, 5:].eq(0).all()


# --- exact ties: the lowest index wins on every engine (pytorch3d's sequential scan) --------------------


def _with_copies(seed, n=900, copies=4, dtype=torch.float32):
    """A cloud where many points have exact copies (shuffled, some at -0.0 vs 0.0), and queries on them."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, generator=g, dtype=dtype)
    base[:10, 0] = 0.0
    p2 = torch.cat([base] + [base[: n // 3]] * (copies - 1))
    p2 = p2[torch.randperm(p2.shape[0], generator=g)]
    p2[p2 == 0] = -0.0  # bitwise different, numerically equal: still exact ties
    p2[: p2.shape[0] // 2][p2[: p2.shape[0] // 2] == 0] = 0.0
    p1 = torch.cat([base[:200], torch.rand(200, 3, generator=g, dtype=dtype)])
    return p1[None], p2[None]


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("norm", [1, 2])
def test_duplicate_points_lowest_index_every_engine(K, norm):
    p1, p2 = _with_copies(0)
    ref_d, ref_i = brute_knn(p1, p2, torch.tensor([p1.shape[1]]), torch.tensor([p2.shape[1]]), K, norm)
    for backend in ("torch", "kdtree"):
        out = knn_points(p1, p2, norm=norm, K=K, backend=backend)
        assert torch.equal(out.idx, ref_i), backend
        torch.testing.assert_close(out.dists.double(), ref_d, rtol=1e-6, atol=1e-7)
        # also the differentiable path (recomputes distances) and return_nn
        out_g = knn_points(p1.clone().requires_grad_(), p2, norm=norm, K=K, backend=backend, return_nn=True)
        assert torch.equal(out_g.idx, ref_i), backend


def test_duplicates_more_copies_than_k_and_fewer_distinct_than_k():
    """Five copies of one point and two of another: K=4 takes the four lowest copies; K past the distinct
    count still fills with the remaining copies in index order."""
    p2 = torch.tensor([[[1.0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]])
    q = torch.tensor([[[0.1, 0, 0]]])
    for backend in ("torch", "kdtree"):
        assert knn_points(q, p2, K=4, backend=backend).idx[0, 0].tolist() == [1, 3, 4, 5], backend
        assert knn_points(q, p2, K=7, backend=backend).idx[0, 0].tolist() == [1, 3, 4, 5, 6, 0, 2], backend


def test_triton_refuses_float64():
    p = torch.rand(1, 10, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="float32"):
        knn_points(p, p, backend="triton")


def test_duplicate_points_normal_consistency_engines_agree():
    """Exact duplicate GT points with different normals: the KD-tree and torch engines pick the same
    (lowest-index) copy, so normal consistency agrees bitwise."""
    import torch.nn.functional as F

    import sam3d_eval.ops.knn as knn_mod
    from sam3d_eval.metrics.normal_consistency import normal_consistency
    from sam3d_eval.structures.pointclouds import Pointclouds

    g = torch.Generator().manual_seed(5)
    base = torch.rand(700, 3, generator=g)
    gt = torch.cat([base, base[:300]])[None]
    n_gt = F.normalize(torch.randn(1, 1000, 3, generator=g), dim=-1)
    pred = base[:500][None]
    n_pred = F.normalize(torch.randn(1, 500, 3, generator=g), dim=-1)
    vals = {}
    for engine in ("torch", "kdtree"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(knn_mod, "select_backend", lambda p1, p2, K: engine)
            vals[engine] = normal_consistency(Pointclouds(pred, normals=n_pred), Pointclouds(gt, normals=n_gt))
    assert torch.equal(vals["torch"], vals["kdtree"])
    i_pg = torch.cdist(pred[0].double(), gt[0].double()).argmin(1)  # argmin: lowest index among ties
    i_gp = torch.cdist(gt[0].double(), pred[0].double()).argmin(1)
    c1 = F.cosine_similarity(n_pred[0].double(), n_gt[0].double()[i_pg], dim=1, eps=1e-6).abs().mean()
    c2 = F.cosine_similarity(n_gt[0].double(), n_pred[0].double()[i_gp], dim=1, eps=1e-6).abs().mean()
    torch.testing.assert_close(vals["kdtree"][0].double(), 0.5 * (c1 + c2), rtol=1e-5, atol=1e-6)
