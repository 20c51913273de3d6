"""chamfer_distance called plainly (no runtime policy) changes no process-wide state, and its CPU KD-tree
shortcuts (numpy per-point work without gradients, fewest torch passes with them) give what the torch path
gives: values bitwise (large per-cloud sums to float rounding: metrics/chamfer.py's docstring) and gradients
bitwise, for every reduction, padding, both norms, weights and single_directional."""

import itertools
import os

import numpy as np
import pytest
import torch
from pykdtree.kdtree import KDTree

import sam3d_eval.metrics.chamfer as chamfer_mod
from sam3d_eval.metrics.chamfer import chamfer_distance
from sam3d_eval.runtime import KDTREE_THREADED_MIN_QUERIES, runtime_policy

pytestmark = pytest.mark.no_runtime_policy  # plain calls, as a user's script makes them; policies set explicitly

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


@pytest.fixture
def paths(monkeypatch):
    """The CPU KD-tree path each chamfer_distance call took (None: the torch path), in call order."""
    taken = []
    real = chamfer_mod._cpu_kdtree_path

    def spy(*args):
        taken.append(real(*args))
        return taken[-1]

    monkeypatch.setattr(chamfer_mod, "_cpu_kdtree_path", spy)
    return taken


def torch_path(*args, **kwargs):
    """chamfer_distance forced onto the torch path (`_single_direction`: knn_points, torch per-point work)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chamfer_mod, "_cpu_kdtree_path", lambda *a: None)
        return chamfer_distance(*args, **kwargs)


def clouds(N, P1, P2, padded, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(N, P1, 3, generator=g, dtype=dtype)
    y = torch.rand(N, P2, 3, generator=g, dtype=dtype)
    w = torch.rand(N, generator=g, dtype=dtype)
    if not padded:
        return x, y, None, None, w
    xl = torch.randint(P1 // 3, P1 + 1, (N,), generator=g)
    yl = torch.randint(P2 // 3, P2 + 1, (N,), generator=g)
    xl[0], yl[-1] = P1, 0 if N > 2 else P2  # a full cloud, and (N > 2) an empty one
    x[0, :1] = -0.0  # signed zeros are the same point to the tree
    return x, y, xl, yl, w


def flat(result):
    """(loss, loss_normals) of any shape -> a list of tensors (None dropped)."""
    out = []
    for r in result:
        out.extend(r if isinstance(r, tuple) else [] if r is None else [r])
    return out


OPTIONS = [
    dict(norm=norm, point_reduction=pr, batch_reduction=br, weighted=ww, single_directional=sd)
    for norm, pr, br, ww, sd in itertools.product(
        (1, 2), ("mean", "sum", "max", None), ("mean", "sum", None), (False, True), (False, True)
    )
    if not (pr is None and br is not None)
]


def call(fn, x, y, xl, yl, w, weighted, **kw):
    return fn(x, y, xl, yl, weights=w if weighted else None, **kw)


# --- no process-wide state ---------------------------------------------------------------------------


@pytest.mark.parametrize("start_threads", [1, 2])
@pytest.mark.parametrize("grad", [False, True])
def test_plain_call_changes_no_process_state(start_threads, grad, monkeypatch, paths):
    """No thread count set (not even temporarily), no environment variable touched, for a cloud big enough
    for the threaded KD-tree size and the numpy float64 sums."""
    before_threads = torch.get_num_threads()
    torch.set_num_threads(start_threads)
    try:
        calls = []
        for name in ("set_num_threads", "set_num_interop_threads"):
            real = getattr(torch, name)
            monkeypatch.setattr(torch, name, lambda n, _real=real, _name=name: (calls.append((_name, n)), _real(n)))
        env = dict(os.environ)
        n = KDTREE_THREADED_MIN_QUERIES + 1000
        x, y, *_ = clouds(1, n, n, False, seed=1)
        if grad:
            x.requires_grad_(True)
        loss, _ = chamfer_distance(x, y)
        if grad:
            loss.backward()
        assert calls == []
        assert torch.get_num_threads() == start_threads
        assert dict(os.environ) == env
        assert {k: os.environ.get(k) for k in THREAD_ENV} == {k: env.get(k) for k in THREAD_ENV}
        assert paths == ["torch_unpadded" if grad else "numpy"]
    finally:
        monkeypatch.undo()
        torch.set_num_threads(before_threads)


def test_inputs_are_not_written():
    """The numpy path shares the tensors' memory: it must never write into it."""
    x, y, xl, yl, w = clouds(3, 500, 400, True)
    copies = [t.clone() for t in (x, y, xl, yl, w)]
    chamfer_distance(x, y, xl, yl, weights=w)
    chamfer_distance(x, y, xl, yl, norm=1, point_reduction=None, batch_reduction=None)
    for t, c in zip((x, y, xl, yl, w), copies):
        assert torch.equal(t, c) and torch.equal(torch.signbit(t.float()), torch.signbit(c.float()))


# --- the shortcuts equal the torch path ----------------------------------------------------------------


@pytest.mark.parametrize("case", [(1, 300, 200, False), (3, 500, 700, True), (2, 400, 350, True)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_numpy_path_equals_torch_path_bitwise(case, dtype, paths):
    """Below 32768 per-point terms (every sum runs in torch, serially): bitwise the torch path."""
    x, y, xl, yl, w = clouds(*case, dtype=dtype, seed=2)
    for opts in OPTIONS:
        kw = dict(opts)
        weighted = kw.pop("weighted")
        ours = flat(call(chamfer_distance, x, y, xl, yl, w, weighted, **kw))
        ref = flat(call(torch_path, x, y, xl, yl, w, weighted, **kw))
        assert len(ours) == len(ref), opts
        for a, b in zip(ours, ref):
            assert a.shape == b.shape and a.dtype == b.dtype, opts
            assert torch.equal(a, b), opts
            assert a.grad_fn is None
    assert set(paths) == {"numpy"}


@pytest.mark.parametrize("in_policy", [False, True])
def test_numpy_path_large_equals_torch_path_to_rounding(in_policy, paths):
    """At >= 32768 terms the per-cloud sums accumulate in float64 (numpy): within float32 rounding of the
    torch path's float32 sums; per-point terms and max stay bitwise. Same result plain and in a policy."""
    x, y, xl, yl, w = clouds(2, 20_000, 17_000, True, seed=3)  # (2, 20000) terms: the float64 sums
    for opts in [o for o in OPTIONS if o["norm"] == 2 and not o["single_directional"] and o["batch_reduction"] != "sum"]:
        kw = dict(opts)
        weighted = kw.pop("weighted")
        if in_policy:
            with runtime_policy("cpu"):
                ours = flat(call(chamfer_distance, x, y, xl, yl, w, weighted, **kw))
        else:
            ours = flat(call(chamfer_distance, x, y, xl, yl, w, weighted, **kw))
        ref = flat(call(torch_path, x, y, xl, yl, w, weighted, **kw))
        for a, b in zip(ours, ref):
            assert a.shape == b.shape and a.dtype == b.dtype, opts
            if kw["point_reduction"] in ("max", None):
                assert torch.equal(a, b), opts
            else:
                torch.testing.assert_close(a, b, rtol=1e-6, atol=0, msg=str(opts))
    assert set(paths) == {"numpy"}


def test_numpy_path_equals_pykdtree():
    """The plain-call number is pykdtree's: mean squared nearest distance both ways."""
    x, y, *_ = clouds(1, 40_000, 35_000, False, seed=4)
    a, b = x[0].numpy(), y[0].numpy()
    da, _ = KDTree(b).query(a, k=1, sqr_dists=True)
    db, _ = KDTree(a).query(b, k=1, sqr_dists=True)
    ref = float(np.float32(da.sum(dtype=np.float64)) / np.float32(len(a))) + float(
        np.float32(db.sum(dtype=np.float64)) / np.float32(len(b))
    )
    assert chamfer_distance(x, y)[0].item() == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("case", [(1, 300, 200, False), (3, 500, 700, True), (2, 400, 350, False)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_grad_path_equals_torch_path_bitwise(case, dtype, paths):
    """With requires_grad: values and gradients (points and weights) bitwise those of the torch path."""
    x0, y0, xl, yl, w0 = clouds(*case, dtype=dtype, seed=5)
    for opts in OPTIONS:
        kw = dict(opts)
        weighted = kw.pop("weighted")
        results = []
        for fn in (chamfer_distance, torch_path):
            x, y, w = (t.clone().requires_grad_(True) for t in (x0, y0, w0))
            out = flat(call(fn, x, y, xl, yl, w, weighted, **kw))
            g = torch.Generator().manual_seed(7)
            sum(((o * torch.randn(o.shape, generator=g, dtype=dtype)).sum() for o in out)).backward()
            results.append((out, x.grad, y.grad, w.grad))
        (ours, *ours_grads), (ref, *ref_grads) = results
        for a, b in zip(ours, ref):
            assert torch.equal(a.detach(), b.detach()), opts
        for a, b in zip(ours_grads, ref_grads):
            assert (a is None) == (b is None), opts
            if a is not None:
                assert torch.equal(a, b), opts
    expected = "torch_unpadded" if not case[3] else None
    assert set(paths) == {expected}


def test_no_grad_mode_takes_numpy_path(paths):
    x, y, *_ = clouds(1, 300, 200, False, seed=6)
    x.requires_grad_(True)
    with torch.no_grad():
        loss, _ = chamfer_distance(x, y)
    assert loss.grad_fn is None and paths == ["numpy"]


def test_other_inputs_take_torch_path(paths):
    """Normals, half precision, padded clouds with gradients, mismatched weight dtypes: the torch path."""
    x, y, xl, yl, w = clouds(2, 300, 200, True, seed=7)
    chamfer_distance(x, y, x_normals=torch.rand(2, 300, 3), y_normals=torch.rand(2, 200, 3))
    chamfer_distance(x.half(), y.half())
    chamfer_distance(x.requires_grad_(True), y, xl, yl)
    chamfer_distance(x.detach(), y, weights=w.double())
    assert paths == [None, None, None, None]


@pytest.mark.parametrize("grad", [False, True])
def test_nan_handling_on_shortcuts(grad, paths):
    """NaN past the lengths is never read; NaN or inf inside them raises, naming p1 (x) or p2 (y) as
    knn_points does."""
    x, y, *_ = clouds(2, 300, 200, False, seed=8)
    xl = torch.tensor([250, 300])
    xd = x.clone()
    xd[0, 250:] = float("nan")
    if not grad:
        assert torch.equal(chamfer_distance(xd, y, xl)[0], torch_path(x, y, xl)[0])
    for bad, where in ((x, "p1"), (y, "p2")):
        b = bad.clone()
        b[1, 7, 2] = float("inf")
        args = (b, y) if where == "p1" else (x, b)
        args = tuple(a.clone().requires_grad_(grad) for a in args)
        with pytest.raises(ValueError, match=f"{where} has NaN or inf"):
            chamfer_distance(*args)
    assert None not in paths[-2:]
