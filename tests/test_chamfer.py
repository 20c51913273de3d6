"""chamfer_distance: every chamfer_* golden case of pytorch3d, float64 brute force for every branch,
gradients, Pointclouds input and validation."""

import pytest
import torch
import torch.nn.functional as F

import sam3d_eval.ops.knn as knn_mod
from sam3d_eval.metrics.chamfer import chamfer_distance
from sam3d_eval.structures.pointclouds import Pointclouds


@pytest.fixture(params=["torch", "kdtree"])
def backend(request, monkeypatch):
    """Run the test with the auto dispatch forced to one CPU engine."""
    monkeypatch.setattr(knn_mod, "select_backend", lambda p1, p2, K: request.param)
    return request.param


def T(g, key):
    return torch.from_numpy(g[key])


def golden_results(g):
    """(golden key, our value) for every result key of every chamfer_* case."""
    out = {}
    x, y = T(g, "chamfer_homog/x"), T(g, "chamfer_homog/y")
    for n in (1, 2):
        p = f"chamfer_homog/norm{n}_"
        out[p + "mean_mean"] = chamfer_distance(x, y, norm=n)[0]
        out[p + "mean_none"] = chamfer_distance(x, y, norm=n, batch_reduction=None)[0]
        out[p + "sum_mean"] = chamfer_distance(x, y, norm=n, point_reduction="sum")[0]
        (px, py), nrm = chamfer_distance(x, y, norm=n, point_reduction=None, batch_reduction=None)
        assert nrm is None
        out[p + "perpoint_x"], out[p + "perpoint_y"] = px, py
        out[p + "single_dir"] = chamfer_distance(x, y, norm=n, single_directional=True)[0]
    x, y = T(g, "chamfer_hetero/x"), T(g, "chamfer_hetero/y")
    xl, yl = T(g, "chamfer_hetero/x_lengths"), T(g, "chamfer_hetero/y_lengths")
    out["chamfer_hetero/norm2_mean_none"] = chamfer_distance(x, y, xl, yl, batch_reduction=None)[0]
    out["chamfer_hetero/norm2_mean_mean"] = chamfer_distance(x, y, xl, yl)[0]
    out["chamfer_hetero/norm1_mean_none"] = chamfer_distance(x, y, xl, yl, batch_reduction=None, norm=1)[0]
    c = "chamfer_normals/"
    args = (T(g, c + "x"), T(g, c + "y"))
    kw = dict(x_normals=T(g, c + "x_normals"), y_normals=T(g, c + "y_normals"), batch_reduction=None)
    out[c + "dist"], out[c + "normals_abs"] = chamfer_distance(*args, **kw)
    out[c + "normals_signed"] = chamfer_distance(*args, **kw, abs_cosine=False)[1]
    x, y = T(g, "chamfer_large/x"), T(g, "chamfer_large/y")
    for n in (1, 2):
        out[f"chamfer_large/norm{n}_mean_none"] = chamfer_distance(x, y, norm=n, batch_reduction=None)[0]
    return out


def test_golden_every_chamfer_case(p3d_golden, backend):
    inputs = {"x", "y", "x_lengths", "y_lengths", "x_normals", "y_normals"}
    expected = {k for k in p3d_golden if k.startswith("chamfer_") and k.split("/")[1] not in inputs}
    ours = golden_results(p3d_golden)
    assert set(ours) == expected  # no result key of the golden file left unchecked
    for key, value in ours.items():
        ref = T(p3d_golden, key)
        assert value.shape == ref.shape, key
        tol = 1e-5 if "perpoint" in key else 1e-4
        torch.testing.assert_close(value, ref, rtol=tol, atol=1e-7, msg=key)


# --- float64 brute force ----------------------------------------------------------------------------


def brute_direction(x, y, xl, yl, norm, xn=None, yn=None, abs_cos=True):
    """Per-point terms (N, P1) of one direction, 0 on padding, and the normal term if normals given."""
    d_all, n_all = [], []
    for b in range(x.shape[0]):
        a, c = x[b, : xl[b]], y[b, : yl[b]]
        diff = a[:, None] - c[None]
        d = (diff**2).sum(-1) if norm == 2 else diff.abs().sum(-1)
        v, i = d.min(1)
        row = x.new_zeros(x.shape[1])
        row[: xl[b]] = v
        d_all.append(row)
        if xn is not None:
            cos = F.cosine_similarity(xn[b, : xl[b]], yn[b][i], dim=1, eps=1e-6)
            nrow = x.new_zeros(x.shape[1])
            nrow[: xl[b]] = 1 - (cos.abs() if abs_cos else cos)
            n_all.append(nrow)
    return torch.stack(d_all), (torch.stack(n_all) if xn is not None else None)


def ragged_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 60, 3, generator=g, dtype=torch.float64)
    y = torch.rand(3, 45, 3, generator=g, dtype=torch.float64)
    xn = torch.randn(3, 60, 3, generator=g, dtype=torch.float64)
    yn = torch.randn(3, 45, 3, generator=g, dtype=torch.float64)
    xl, yl = torch.tensor([60, 31, 7]), torch.tensor([45, 45, 2])
    w = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    return x, y, xn, yn, xl, yl, w


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize(
    "point_reduction,batch_reduction",
    [(p, b) for p in ("mean", "sum", "max") for b in ("mean", "sum", None)] + [(None, None)],
)
@pytest.mark.parametrize("weighted", [False, True])
def test_every_reduction_matches_brute_force(norm, point_reduction, batch_reduction, weighted):
    x, y, xn, yn, xl, yl, w = ragged_inputs()
    w = w if weighted else None
    use_normals = point_reduction != "max"
    kw = dict(x_normals=xn, y_normals=yn) if use_normals else {}
    loss, loss_n = chamfer_distance(
        x, y, xl, yl, weights=w, norm=norm, point_reduction=point_reduction, batch_reduction=batch_reduction, **kw
    )
    cx, nx = brute_direction(x, y, xl, yl, norm, *((xn, yn) if use_normals else ()))
    cy, ny = brute_direction(y, x, yl, xl, norm, *((yn, xn) if use_normals else ()))
    ww = torch.ones(3, dtype=torch.float64) if w is None else w
    cx, cy = cx * ww[:, None], cy * ww[:, None]
    if use_normals:
        nx, ny = nx * ww[:, None], ny * ww[:, None]

    def pr(t, lengths):
        if point_reduction == "sum":
            return t.sum(1)
        if point_reduction == "mean":
            return t.sum(1) / lengths
        return t.max(1).values

    if point_reduction is None:
        torch.testing.assert_close(loss[0], cx)
        torch.testing.assert_close(loss[1], cy)
        torch.testing.assert_close(loss_n[0], nx)
        torch.testing.assert_close(loss_n[1], ny)
        return
    ref = torch.maximum(pr(cx, xl), pr(cy, yl)) if point_reduction == "max" else pr(cx, xl) + pr(cy, yl)
    ref_n = None if not use_normals else pr(nx, xl) + pr(ny, yl)
    if batch_reduction is not None:
        div = (1.0 if batch_reduction == "sum" else ww.sum()) if weighted else (1.0 if batch_reduction == "sum" else 3)
        ref = ref.sum() / div
        ref_n = None if ref_n is None else ref_n.sum() / div
    torch.testing.assert_close(loss, ref)
    if ref_n is None:
        assert loss_n is None
    else:
        torch.testing.assert_close(loss_n, ref_n)


def test_single_directional_shapes():
    x, y, xn, yn, xl, yl, _ = ragged_inputs(1)
    loss, loss_n = chamfer_distance(x, y, xl, yl, point_reduction=None, batch_reduction=None, single_directional=True)
    assert torch.is_tensor(loss) and loss.shape == (3, 60) and loss_n is None
    cx, _ = brute_direction(x, y, xl, yl, 2)
    torch.testing.assert_close(loss, cx)
    loss, _ = chamfer_distance(x, y, xl, yl, single_directional=True, point_reduction="max", batch_reduction=None)
    torch.testing.assert_close(loss, cx.max(1).values)


def test_pointclouds_input_equals_padded():
    x, y, xn, yn, xl, yl, _ = ragged_inputs(2)
    px = Pointclouds([x[b, : xl[b]] for b in range(3)], normals=[xn[b, : xl[b]] for b in range(3)])
    py = Pointclouds([y[b, : yl[b]] for b in range(3)], normals=[yn[b, : yl[b]] for b in range(3)])
    a = chamfer_distance(px, py, batch_reduction=None)
    b = chamfer_distance(x, y, xl, yl, xn, yn, batch_reduction=None)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_zero_weights_give_zero_with_graph():
    x, y, *_ = ragged_inputs(3)
    x = x.clone().requires_grad_()
    loss, loss_n = chamfer_distance(x, y, weights=torch.zeros(3, dtype=torch.float64))
    assert loss.item() == 0.0 and loss_n.item() == 0.0
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_empty_cloud_in_batch():
    """A cloud of length 0 contributes 0 (pytorch3d clamps the mean's denominator to 1, and a point with no
    neighbour has distance 0); the other batch elements are unaffected."""
    x, y, *_ = ragged_inputs(4)
    xl, yl = torch.tensor([60, 0, 5]), torch.tensor([45, 10, 1])
    loss, _ = chamfer_distance(x, y, xl, yl, batch_reduction=None)
    assert loss[1].item() == 0.0
    keep = torch.tensor([0, 2])
    cx, _ = brute_direction(x[keep], y[keep], xl[keep], yl[keep], 2)
    cy, _ = brute_direction(y[keep], x[keep], yl[keep], xl[keep], 2)
    torch.testing.assert_close(loss[keep], cx.sum(1) / xl[keep] + cy.sum(1) / yl[keep])


# --- gradients ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", [1, 2])
def test_gradcheck(norm, backend):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    xn = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    yn = torch.randn(2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    xl, yl = torch.tensor([5, 3]), torch.tensor([4, 2])

    def f(a, b, an, bn):
        loss, loss_n = chamfer_distance(a, b, xl, yl, an, bn, norm=norm)
        return loss + 0.3 * loss_n

    assert torch.autograd.gradcheck(f, (x, y, xn, yn), eps=1e-6, atol=1e-5)


def test_grad_matches_brute_force_float32_large():
    """Gradients through the KD-tree path equal autograd through a brute-force Chamfer."""
    g = torch.Generator().manual_seed(6)
    x = torch.rand(1, 3000, 3, generator=g)
    y = torch.rand(1, 2000, 3, generator=g)
    a, b = x.clone().requires_grad_(), y.clone().requires_grad_()
    chamfer_distance(a, b)[0].backward()
    c, d = x.clone().requires_grad_(), y.clone().requires_grad_()
    dd = ((c[0, :, None] - d[0, None]) ** 2).sum(-1)
    (dd.min(1).values.mean() + dd.min(0).values.mean()).backward()
    torch.testing.assert_close(a.grad, c.grad, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(b.grad, d.grad, rtol=1e-4, atol=1e-9)


# --- validation --------------------------------------------------------------------------------------


def test_validation():
    x, y, xn, yn, *_ = ragged_inputs(7)
    with pytest.raises(ValueError, match="batch_reduction"):
        chamfer_distance(x, y, batch_reduction="max")
    with pytest.raises(ValueError, match="point_reduction"):
        chamfer_distance(x, y, point_reduction="median")
    with pytest.raises(ValueError, match="Batch reduction must be None"):
        chamfer_distance(x, y, point_reduction=None)
    with pytest.raises(ValueError, match="norm"):
        chamfer_distance(x, y, norm=3)
    with pytest.raises(ValueError, match="Normals must be None"):
        chamfer_distance(x, y, x_normals=xn, y_normals=yn, point_reduction="max")
    with pytest.raises(ValueError, match="too long"):
        chamfer_distance(x, y, x_lengths=torch.tensor([61, 1, 1]))
    with pytest.raises(ValueError, match="weights"):
        chamfer_distance(x, y, weights=torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="correct shape"):
        chamfer_distance(x, y[:2])
    with pytest.raises(ValueError, match="Pointclouds"):
        chamfer_distance(x.numpy(), y)


# --- non-finite input and padding --------------------------------------------------------------------


@pytest.mark.parametrize("norm", [1, 2])
def test_nan_padding_changes_nothing(norm, backend):
    """NaN past x_lengths (pytorch3d never reads padding): same loss as clean input, finite gradients."""
    g = torch.Generator().manual_seed(8)
    x = torch.rand(2, 40, 3, generator=g)
    y = torch.rand(2, 35, 3, generator=g)
    xl = torch.tensor([30, 40])
    clean, _ = chamfer_distance(x, y, x_lengths=xl, norm=norm)
    xd = x.clone()
    xd[0, 30:] = float("nan")
    xd.requires_grad_(True)
    yd = y.clone().requires_grad_(True)
    loss, _ = chamfer_distance(xd, yd, x_lengths=xl, norm=norm)
    assert torch.equal(loss, clean)
    loss.backward()
    assert torch.isfinite(yd.grad).all() and torch.isfinite(xd.grad).all()
    assert (xd.grad[0, 30:] == 0).all()


def test_nan_inside_lengths_raises(backend):
    x = torch.rand(1, 300, 3)
    y = torch.rand(1, 200, 3)
    x[0, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        chamfer_distance(x, y)
    with pytest.raises(ValueError, match="NaN or inf"):
        chamfer_distance(y, x)


def test_normals_shape_mismatch_raises():
    x, y = torch.rand(1, 5, 3), torch.rand(1, 6, 3)
    with pytest.raises(ValueError, match=r"x_normals.*\(1, 4, 3\).*\(1, 5, 3\)"):
        chamfer_distance(x, y, x_normals=torch.rand(1, 4, 3), y_normals=torch.rand(1, 6, 3))
    with pytest.raises(ValueError, match=r"y_normals.*\(1, 6, 2\)"):
        chamfer_distance(x, y, x_normals=torch.rand(1, 5, 3), y_normals=torch.rand(1, 6, 2))


def test_empty_batch_is_zero():
    """pytorch3d returns 0 for an empty batch; per-cloud reductions give an empty tensor."""
    for x, y in ((Pointclouds([]), Pointclouds([])), (torch.zeros(0, 5, 3), torch.zeros(0, 4, 3))):
        loss, nrm = chamfer_distance(x, y)
        assert loss.shape == () and loss.item() == 0.0 and nrm is None
        assert chamfer_distance(x, y, batch_reduction="sum")[0].item() == 0.0
        assert chamfer_distance(x, y, batch_reduction=None)[0].shape == (0,)


def test_duplicate_points_normals_term_agrees_between_engines():
    """With exact duplicate points carrying different normals, both engines pick the lowest index (as
    pytorch3d), so the normals term is identical; it differs from what a later copy would give."""
    g = torch.Generator().manual_seed(3)
    base = torch.rand(800, 3, generator=g)
    y = torch.cat([base, base[:400]])[None]  # copies at 800..1199 of points 0..399
    y_normals = F.normalize(torch.randn(1, 1200, 3, generator=g), dim=-1)
    x = (base[:600] + 0.0)[None]  # queries exactly on the duplicated points
    x_normals = F.normalize(torch.randn(1, 600, 3, generator=g), dim=-1)
    results = {}
    for engine in ("torch", "kdtree"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(knn_mod, "select_backend", lambda p1, p2, K: engine)
            results[engine] = chamfer_distance(x, y, x_normals=x_normals, y_normals=y_normals)
    assert torch.equal(results["torch"][0], results["kdtree"][0])
    assert torch.equal(results["torch"][1], results["kdtree"][1])
    # reference: x -> y term by the lowest index
    cos = F.cosine_similarity(x_normals[0], y_normals[0, :600], dim=1, eps=1e-6)
    ref_x = (1 - cos.abs()).mean()
    nn_y = torch.cdist(y[0].double(), x[0].double()).argmin(1)  # argmin = lowest index among ties
    ref_y = (1 - F.cosine_similarity(y_normals[0], x_normals[0, nn_y], dim=1, eps=1e-6).abs()).mean()
    torch.testing.assert_close(results["kdtree"][1], ref_x + ref_y)
