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


def _twins(seed: int = 0, n: int = 300, noise: float = 0.05) -> pd.DataFrame:
    """n twin pairs: a large shared object difficulty, shifts on half the real twins (shift_prob 0.5)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, 0.8, n)  # shared by both twins: cancels in each pair
    a = np.where(rng.uniform(size=n) < 0.5, rng.uniform(0.25, 1.0, n), 0.0)
    b = np.where(rng.uniform(size=n) < 0.5, rng.uniform(0.25, 1.0, n), 0.0)
    occ_s, occ_r = np.zeros(n), rng.uniform(0.0, 0.8, n)
    cat = np.where(rng.uniform(size=n) < 0.5, "A", "B")
    log_s = BASE + difficulty + rng.normal(0, noise, n)
    log_r = BASE + difficulty + B_A * a + B_B * b + B_OCC * occ_r + OFFSET + rng.normal(0, noise, n)
    ids = [f"pair_{i:06d}" for i in range(n)]
    syn = pd.DataFrame({"pair_id": ids, "domain": "synthetic", "shift_a": 0.0, "shift_b": 0.0, "occlusion": occ_s,
                        "category": cat, "chamfer_l2": np.exp(log_s)})
    real = pd.DataFrame({"pair_id": ids, "domain": "real", "shift_a": a, "shift_b": b, "occlusion": occ_r,
                         "category": cat, "chamfer_l2": np.exp(log_r)})
    return pd.concat([syn, real.sample(frac=1.0, random_state=1)], ignore_index=True)  # row order is irrelevant


def test_paired_attribution_recovers_planted_effects_without_extrapolating():
    f = _twins()
    out = shift_attribution(f, "chamfer_l2", ["shift_a", "shift_b"], covariates=["occlusion"],
                            pairs="pair_id").set_index("term")
    a, b, occ, res, tot = (out.loc[k] for k in ("shift_a", "shift_b", "occlusion", "residual", "total"))
    assert a.low < B_A < a.high and b.low < B_B < b.high and occ.low < B_OCC < occ.high
    assert res.low < OFFSET < res.high  # the gap at no shift: the planted offset, not extrapolated
    # per-pair differences, by hand: contributions are coef x mean intensity and sum to the mean difference
    s = f[f.domain == "synthetic"].set_index("pair_id").sort_index()
    r = f[f.domain == "real"].set_index("pair_id").sort_index()
    d = np.log(r.chamfer_l2) - np.log(s.chamfer_l2)
    assert tot.contribution == pytest.approx(d.mean(), rel=1e-12)
    assert a.contribution == pytest.approx(a.coef * r.shift_a.mean(), rel=1e-12)
    assert occ.mean_target == pytest.approx((r.occlusion - s.occlusion).mean())
    parts = out.loc[["shift_a", "shift_b", "occlusion", "residual"], "contribution"].sum()
    assert parts == pytest.approx(tot.contribution, rel=1e-10)
    # The same data unpaired: the shared object difficulty stays in the noise and widens the shift's interval.
    flat = shift_attribution(f, "chamfer_l2", ["shift_a", "shift_b"], covariates=["occlusion"]).set_index("term")
    assert (flat.loc["shift_a", "high"] - flat.loc["shift_a", "low"]) > 5 * (a.high - a.low)
    assert out.attrs["n_pairs"] == 300 and out.attrs["design"] == "paired"


def test_paired_attribution_refuses_what_a_pair_cannot_separate():
    f = _twins(n=40)
    with pytest.raises(AttributionError, match="twins share"):
        shift_attribution(f, "chamfer_l2", ["shift_a"], categorical=["category"], pairs="pair_id")
    dup = f.copy()
    dup.loc[dup.index[-1], "pair_id"] = dup.loc[dup.index[-2], "pair_id"]
    with pytest.raises(AttributionError, match="appears twice"):
        shift_attribution(dup, "chamfer_l2", ["shift_a"], pairs="pair_id")
    with pytest.raises(AttributionError, match="lacks"):
        shift_attribution(f, "chamfer_l2", ["shift_a"], pairs="twin")
