"""evaluate.attribution.shift_attribution on synthetic frames with planted effects."""

import numpy as np
import pandas as pd
import pytest

from sam3d_eval.evaluate.attribution import AttributionError, shift_attribution

# Planted on the log scale: shift "a" matters, shift "b" does not, occlusion and category do, and a real-domain
# offset no recorded column explains.
B_A, B_B, B_OCC, B_CAT, OFFSET, BASE = 0.8, 0.0, 0.3, 0.2, 0.1, -5.0


def _frame(seed: int = 0, n_real: int = 400, n_syn: int = 300, noise: float = 0.1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_real + n_syn
    real = np.arange(n) < n_real
    a = np.where(real, rng.uniform(0.0, 1.0, n), 0.0)
    b = np.where(real, rng.uniform(0.0, 1.0, n), 0.0)
    occ = np.where(real, rng.uniform(0.0, 1.0, n), 0.0)
    # category B is more frequent among real samples: a composition effect on the gap
    cat = np.where(rng.uniform(size=n) < np.where(real, 0.7, 0.3), "B", "A")
    logy = BASE + B_A * a + B_B * b + B_OCC * occ + B_CAT * (cat == "B") + OFFSET * real + rng.normal(0, noise, n)
    return pd.DataFrame({"domain": np.where(real, "real", "synthetic"), "shift_a": a, "shift_b": b,
                         "occlusion": occ, "category": cat, "chamfer_l2": np.exp(logy)})


def test_planted_effects_recovered_and_contributions_sum_to_the_gap():
    f = _frame()
    out = shift_attribution(f, "chamfer_l2", ["shift_a", "shift_b"], covariates=["occlusion"],
                            categorical=["category"]).set_index("term")
    a, b, occ = out.loc["shift_a"], out.loc["shift_b"], out.loc["occlusion"]
    assert a.low < B_A < a.high and a.low > 0.5 and a.pvalue < 1e-6
    assert b.low < 0.0 < b.high
    assert occ.low < B_OCC < occ.high
    # contributions: coef x (mean_real - mean_syn); synthetic shifts are 0
    real = f[f.domain == "real"]
    assert a.contribution == pytest.approx(a.coef * real.shift_a.mean(), rel=1e-12)
    assert a.mean_reference == 0.0
    logy = np.log(f.chamfer_l2)
    total = logy[f.domain == "real"].mean() - logy[f.domain == "synthetic"].mean()
    assert out.loc["total", "contribution"] == pytest.approx(total, rel=1e-12)
    parts = out.loc[out.kind.isin(["shift", "covariate", "categorical", "residual"]), "contribution"].sum()
    assert parts == pytest.approx(total, abs=1e-12)
    # the unexplained real-domain offset lands in the residual, the category mix in "category"
    res = out.loc["residual"]
    assert res.contribution_low < OFFSET < res.contribution_high
    cat = out.loc["category"]
    share_b = lambda d: (f[f.domain == d].category == "B").mean()  # noqa: E731
    expected_cat = B_CAT * (share_b("real") - share_b("synthetic"))
    assert cat.contribution_low < expected_cat < cat.contribution_high and cat.pvalue < 1e-6
    assert out.loc["total", "share"] == pytest.approx(1.0)


def test_coefficients_match_float64_least_squares_and_linear_scale():
    f = _frame(seed=1, n_real=120, n_syn=80)
    real = f[f.domain == "real"]
    x = np.column_stack([np.ones(len(real)), real.shift_a, real.shift_b])
    ref = np.linalg.lstsq(x, np.log(real.chamfer_l2.to_numpy()), rcond=None)[0]
    out = shift_attribution(f, "chamfer_l2", ["shift_a", "shift_b"]).set_index("term")
    np.testing.assert_allclose(out.loc[["intercept", "shift_a", "shift_b"], "coef"], ref, rtol=1e-10)
    lin = shift_attribution(f, "chamfer_l2", ["shift_a", "shift_b"], log=False).set_index("term")
    ref_lin = np.linalg.lstsq(x, real.chamfer_l2.to_numpy(), rcond=None)[0]
    np.testing.assert_allclose(lin.loc[["intercept", "shift_a", "shift_b"], "coef"], ref_lin, rtol=1e-10)
    gap = real.chamfer_l2.mean() - f[f.domain == "synthetic"].chamfer_l2.mean()
    assert lin.loc["total", "contribution"] == pytest.approx(gap, rel=1e-12)


def test_bad_input_is_refused_by_name():
    f = _frame(seed=2, n_real=60, n_syn=40)
    with pytest.raises(AttributionError, match="shift_c"):
        shift_attribution(f, "chamfer_l2", ["shift_a", "shift_c"])
    g = f.copy()
    g.loc[0, "chamfer_l2"] = 0.0
    with pytest.raises(AttributionError, match="positive"):
        shift_attribution(g, "chamfer_l2", ["shift_a"])
    g = f.copy()
    g["shift_const"] = np.where(g.domain == "real", 1.0, 0.0)
    with pytest.raises(AttributionError, match="collinear"):
        shift_attribution(g, "chamfer_l2", ["shift_a", "shift_const"])
    with pytest.raises(AttributionError, match="'nowhere'"):
        shift_attribution(f, "chamfer_l2", ["shift_a"], target="nowhere")
    with pytest.raises(AttributionError, match="too few"):
        shift_attribution(f.iloc[list(range(3)) + list(range(60, 100))], "chamfer_l2", ["shift_a", "shift_b"])
