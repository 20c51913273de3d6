"""Summaries of stored results: strata means with counts of what was left out, occlusion accuracy, domain gap."""

import math

import numpy as np
import pandas as pd
import pytest

from sam3d_eval.io.results import direction
from sam3d_eval.evaluate.summary import domain_gap, gap_change, occlusion_accuracy, occlusion_bin, summarize


def _frame():
    # 8 samples: 4 synthetic (chamfer 1..4), 4 real (chamfer 2x); one real failed, one synthetic NaN normal cons.
    f = pd.DataFrame({
        "sample_id": list("abcdefgh"),
        "status": ["ok"] * 7 + ["failed"],
        "domain": ["synthetic"] * 4 + ["real"] * 4,
        "occlusion": [0.0, 0.05, 0.2, 0.65, 0.0, 0.1, 0.3, 1.0],
        "category": ["mug", "mug", "car", "car", "mug", "mug", "car", "car"],
        "chamfer_l2": [1.0, 2.0, 3.0, 4.0, 2.0, 4.0, 6.0, math.nan],
        "fscore@0.05": [0.9, 0.8, 0.6, 0.4, 0.7, 0.4, 0.3, math.nan],
        "normal_consistency": [0.9, math.nan, 0.9, 0.9, 0.8, 0.8, 0.8, math.nan],
        "lpips": [0.1, 0.1, 0.1, 0.1, 0.15, 0.15, 0.15, math.nan],
    })
    f.attrs["metrics"] = ["chamfer_l2", "fscore@0.05", "normal_consistency", "lpips"]
    return f


def test_occlusion_bins_edges():
    assert list(occlusion_bin([0.0, 0.0999, 0.1, 0.3, 0.5999, 0.6, 1.0, 1.2, np.nan])) == [
        "[0,0.1)", "[0,0.1)", "[0.1,0.3)", "[0.3,0.6)", "[0.3,0.6)", "[0.6,1]", "[0.6,1]", None, None]


def test_direction():
    assert direction("chamfer_l2") == direction("emd") == direction("lpips") == "lower"
    assert direction("fscore@0.01") == direction("psnr") == direction("volume_iou") == "higher"


def test_summary_means_count_failed_and_nan_rows():
    s = summarize(_frame(), n_resamples=500).set_index(["stratum", "level", "metric"])
    row = s.loc[("all", "all", "chamfer_l2")]
    assert (row.n, row.n_failed, row.n_nan, row.n_used) == (8, 1, 0, 7)
    assert row["mean"] == pytest.approx(22.0 / 7)
    assert row.low <= row["mean"] <= row.high and row.low < row.high
    nc = s.loc[("all", "all", "normal_consistency")]
    assert (nc.n_failed, nc.n_nan, nc.n_used) == (1, 1, 6) and nc["mean"] == pytest.approx(5.1 / 6)
    real = s.loc[("domain", "real", "chamfer_l2")]
    assert (real.n, real.n_failed, real["mean"]) == (4, 1, 4.0)
    assert s.loc[("occlusion_bin", "[0.6,1]", "chamfer_l2")].n_used == 1  # d (0.65); h (1.0) failed
    assert s.loc[("category", "car", "chamfer_l2")]["mean"] == pytest.approx(13.0 / 3)


def test_all_failed_group_gives_nan_not_an_error():
    f = _frame()
    f["status"] = "failed"
    s = summarize(f, ["chamfer_l2"], n_resamples=100)
    assert s["mean"].isna().all() and (s["n_used"] == 0).all() and s.loc[0, "n_failed"] == 8


def test_occlusion_accuracy_with_wilson_intervals():
    acc = occlusion_accuracy(_frame()).set_index(["domain", "occlusion_bin"])
    # [0, 0.1): a (0.9), b (0.8), e (0.7) -> 3 of 3 accurate
    first = acc.loc[("all", "[0,0.1)")]
    assert (first.n, first.n_accurate, first.accuracy) == (3, 3, 1.0)
    # [0.6, 1]: d (0.4) and the failed h -> 0 of 2, h counted as failed
    last = acc.loc[("all", "[0.6,1]")]
    assert (last.n, last.n_failed, last.n_accurate) == (2, 1, 0) and last.low == 0.0 and 0 < last.high < 1
    assert acc.loc[("real", "[0.1,0.3)")].n_accurate == 0  # f: 0.4
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(3, 3, method="wilson")
    assert (first.low, first.high) == pytest.approx((lo, hi))


def test_domain_gap_figures():
    g = domain_gap(_frame(), n_resamples=500).set_index("metric")
    assert g.loc["chamfer_l2", "figure"] == "gap_ratio"
    assert g.loc["chamfer_l2", "estimate"] == pytest.approx(4.0 / 2.5)  # real mean 4 / synthetic mean 2.5
    assert g.loc["chamfer_l2", "n_failed_real"] == 1
    assert g.loc["fscore@0.05", "figure"] == "relative_drop"
    assert g.loc["fscore@0.05", "estimate"] == pytest.approx(1 - (1.4 / 3) / (2.7 / 4))
    assert g.loc["lpips", "figure"] == "texture_degradation"
    assert g.loc["lpips", "estimate"] == pytest.approx(0.5)
    lp = g.loc["lpips"]
    assert lp.low == pytest.approx(0.5) and lp.high == pytest.approx(0.5)  # no spread in either domain
    ch = g.loc["chamfer_l2"]
    assert ch.low < ch.estimate < ch.high
    # accuracy: synthetic 3/4 accurate, real 1/4 (e; f, g below 0.5, h failed)
    assert g.loc["accuracy", "estimate"] == pytest.approx(1 - (1 / 4) / (3 / 4))


def test_gap_needs_both_domains():
    f = _frame()
    assert len(domain_gap(f[f["domain"] == "real"])) == 0


def test_gap_interval_missing_is_said():
    f = _frame()
    f.loc[f["domain"] == "synthetic", "fscore@0.05"] = [0.6, 0.1, 0.1, 0.1]  # most synthetic resamples: 0 accurate
    g = domain_gap(f, n_resamples=200).set_index("metric")
    acc = g.loc["accuracy"]
    assert math.isnan(acc.low) and "no interval" in acc.note and acc.estimate == pytest.approx(1 - 1.0)


# ---- paired benchmarks: each real sample is the twin of a synthetic one (pair_id) --------------------------
def _twins(n=40, seed=1, real_factor=1.3):
    """n pairs whose objects differ a lot (log-normal difficulty shared by both twins) and whose real twin is
    `real_factor` x harder with a little noise of its own; one real twin failed, one pair lacks its real twin."""
    rng = np.random.default_rng(seed)
    difficulty = np.exp(rng.normal(0, 0.8, n))
    syn = difficulty * np.exp(rng.normal(0, 0.05, n))
    real = real_factor * difficulty * np.exp(rng.normal(0, 0.05, n))
    ids = [f"{i:06d}" for i in range(n)]
    rows = [dict(sample_id=f"syn_{k}", pair_id=f"pair_{k}", domain="synthetic", status="ok", chamfer_l2=c,
                 **{"fscore@0.05": 1 / (1 + c)}) for k, c in zip(ids, syn)]
    rows += [dict(sample_id=f"real_{k}", pair_id=f"pair_{k}", domain="real", status="ok", chamfer_l2=c,
                  **{"fscore@0.05": 1 / (1 + c)}) for k, c in zip(ids[:-1], real[:-1])]  # the last pair: no real twin
    rows[n + 3].update(status="failed", chamfer_l2=math.nan)  # real twin of pair 3 failed
    return pd.DataFrame(rows), syn, real


def test_paired_gap_is_over_matched_pairs_and_resamples_pairs():
    f, syn, real = _twins()
    g = domain_gap(f, ["chamfer_l2"], n_resamples=2000, seed=0).set_index("metric").loc["chamfer_l2"]
    keep = np.ones(len(syn), bool)
    keep[[3, len(syn) - 1]] = False  # the failed twin and the missing one drop their pairs
    xs, xr = syn[keep], real[keep]
    assert g.design == "paired" and g.n_pairs == keep.sum()
    assert g.estimate == pytest.approx(xr.mean() / xs.mean())
    assert (g.n_real, g.n_failed_real) == (len(syn) - 1, 1)  # counts stay per domain
    # The interval is the percentile interval of pairs drawn with the seeded generator, by hand.
    idx = np.random.default_rng(0).integers(0, keep.sum(), (2000, keep.sum()))
    reps = xr[idx].mean(1) / xs[idx].mean(1)
    assert (g.low, g.high) == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])), rel=1e-12)
    # Pairing removes the object spread both twins share: far narrower than the two-sample interval.
    t = domain_gap(f, ["chamfer_l2"], n_resamples=2000, seed=0, pairs=None).set_index("metric").loc["chamfer_l2"]
    assert t.design == "two-sample" and pd.isna(t.n_pairs)
    assert (g.high - g.low) < 0.3 * (t.high - t.low)
    assert g.low > 1.2 and t.low < 1.0  # the paired design sees the 1.3x gap the two-sample one cannot


def test_paired_gap_refuses_a_pair_twice_in_a_domain_and_unknown_columns():
    f, _, _ = _twins(6)
    f.loc[1, "pair_id"] = f.loc[0, "pair_id"]
    with pytest.raises(ValueError, match="appears twice"):
        domain_gap(f, ["chamfer_l2"], n_resamples=50)
    with pytest.raises(ValueError, match="not in the results"):
        domain_gap(f, ["chamfer_l2"], pairs="twin", n_resamples=50)


def test_gap_change_exact_when_every_resample_agrees():
    # Real twins 2x the synthetic ones at A, 1.5x at B: every resample gives ratio 2 then 1.5.
    n = 12
    x = np.linspace(1.0, 3.0, n)
    def run(factor):
        rows = [dict(sample_id=f"syn_{i}", pair_id=f"p{i}", domain="synthetic", status="ok", chamfer_l2=x[i],
                     **{"fscore@0.05": 0.8}) for i in range(n)]
        rows += [dict(sample_id=f"real_{i}", pair_id=f"p{i}", domain="real", status="ok", chamfer_l2=factor * x[i],
                      **{"fscore@0.05": 0.8 / factor}) for i in range(n)]
        return pd.DataFrame(rows)
    c = gap_change(run(2.0), run(1.5), n_resamples=300).set_index("metric")
    ch = c.loc["chamfer_l2"]
    assert (ch.estimate_a, ch.estimate_b, ch.change, ch.closed) == pytest.approx((2.0, 1.5, -0.5, 0.5))
    assert (ch.change_low, ch.change_high, ch.closed_low, ch.closed_high) == pytest.approx((-0.5, -0.5, 0.5, 0.5))
    f = c.loc["fscore@0.05"]  # relative drop 1 - 1/2 = 0.5 -> 1 - 1/1.5 = 1/3: a sixth, a third of the drop closed
    assert f.figure == "relative_drop" and f.change == pytest.approx(1 / 3 - 0.5) and f.closed == pytest.approx(1 / 3)
    assert ch.design == "paired" and ch.n_units_real == n


def test_gap_change_interval_matches_a_hand_bootstrap_both_designs():
    a, _, _ = _twins(30, seed=2)
    b, _, _ = _twins(30, seed=2, real_factor=1.1)
    c = gap_change(a, b, ["chamfer_l2"], n_resamples=1000, seed=3).set_index("metric").loc["chamfer_l2"]
    key = lambda f, d: f[(f.domain == d) & (f.status == "ok")].set_index("pair_id")["chamfer_l2"]
    t = pd.concat([key(a, "synthetic"), key(a, "real"), key(b, "synthetic"), key(b, "real")], axis=1,
                  join="inner").dropna().sort_index().to_numpy()
    assert c.n_units_real == len(t) == 28
    idx = np.random.default_rng(3).integers(0, len(t), (1000, len(t)))
    m = t[idx].mean(1)  # (1000, 4): means of syn_a, real_a, syn_b, real_b
    reps = m[:, 3] / m[:, 2] - m[:, 1] / m[:, 0]
    assert c.change == pytest.approx(t[:, 3].mean() / t[:, 2].mean() - t[:, 1].mean() / t[:, 0].mean())
    assert (c.change_low, c.change_high) == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])), rel=1e-12)
    assert c.change_high < 0  # 1.3x -> 1.1x is seen
    # Without pairs each domain's samples are resampled on their own, keeping their A and B values together.
    u = gap_change(a.drop(columns="pair_id"), b.drop(columns="pair_id"), ["chamfer_l2"], n_resamples=1000,
                   seed=3).set_index("metric").loc["chamfer_l2"]
    assert u.design == "two-sample" and (u.n_units_synthetic, u.n_units_real) == (30, 28)
    key2 = lambda f, d: f[(f.domain == d) & (f.status == "ok")].set_index("sample_id")["chamfer_l2"]
    s = pd.concat([key2(a, "synthetic"), key2(b, "synthetic")], axis=1, join="inner").to_numpy()
    r = pd.concat([key2(a, "real"), key2(b, "real")], axis=1, join="inner").to_numpy()
    rng = np.random.default_rng(3)  # one (synthetic, real) index draw per chunk, as scipy draws two samples
    i_s, i_r = rng.integers(0, len(s), (1000, len(s))), rng.integers(0, len(r), (1000, len(r)))
    ms, mr = s[i_s].mean(1), r[i_r].mean(1)  # each sample keeps its A and B values: one index for both
    reps = mr[:, 1] / ms[:, 1] - mr[:, 0] / ms[:, 0]
    assert (u.change_low, u.change_high) == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])), rel=1e-12)
    assert (u.change_high - u.change_low) > (c.change_high - c.change_low)


def test_gap_change_without_a_gap_at_a_has_no_share_closed():
    def run(factor):
        rows = [dict(sample_id=f"s{i}", pair_id=f"p{i}", domain="synthetic", status="ok", chamfer_l2=1.0 + i)
                for i in range(6)]
        rows += [dict(sample_id=f"r{i}", pair_id=f"p{i}", domain="real", status="ok", chamfer_l2=(1.0 + i) * factor)
                 for i in range(6)]
        return pd.DataFrame(rows)
    c = gap_change(run(1.0), run(1.2), ["chamfer_l2"], n_resamples=100).iloc[0]
    assert c.change == pytest.approx(0.2) and (c.change_low, c.change_high) == pytest.approx((0.2, 0.2))
    assert math.isnan(c.closed) and math.isnan(c.closed_low) and "includes no gap" in c.note


def test_printed_gap_table_says_it_resampled_pairs():
    from sam3d_eval.cli.table import format_gap

    f, _, _ = _twins(12)
    paired = format_gap(domain_gap(f, ["chamfer_l2"], n_resamples=100))
    assert "intervals resample whole pairs" in paired
    assert "12/11 (10 pairs)" in paired  # 12 pairs: one real twin failed, one missing
    unpaired = format_gap(domain_gap(f, ["chamfer_l2"], n_resamples=100, pairs=None))
    assert "twin pairs" not in unpaired and "pairs)" not in unpaired


def test_rows_without_a_pair_id_are_left_out_of_paired_figures():
    f, syn, real = _twins(8)
    extra = pd.DataFrame([dict(sample_id="real_x", pair_id=None, domain="real", status="ok", chamfer_l2=100.0,
                               **{"fscore@0.05": 0.0}),
                          dict(sample_id="real_y", pair_id=None, domain="real", status="ok", chamfer_l2=100.0,
                               **{"fscore@0.05": 0.0})])
    g = domain_gap(pd.concat([f, extra], ignore_index=True), ["chamfer_l2"], n_resamples=100).iloc[0]
    assert g.design == "paired" and g.n_pairs == 6 and g.n_real == 9  # counted in the domain, not in a pair
    keep = [0, 1, 2, 4, 5, 6]  # pair 3's real twin failed, pair 7 has none
    assert g.estimate == pytest.approx(real[keep].mean() / syn[keep].mean())


def _runs(syn_a, real_a, syn_b, real_b):
    """Two checkpoints' results on the same n twin pairs."""
    def run(syn, real):
        n = len(syn)
        rows = [dict(sample_id=f"syn_{i}", pair_id=f"p{i}", domain="synthetic", status="ok", chamfer_l2=syn[i])
                for i in range(n)]
        rows += [dict(sample_id=f"real_{i}", pair_id=f"p{i}", domain="real", status="ok", chamfer_l2=real[i])
                 for i in range(n)]
        return pd.DataFrame(rows)
    return run(syn_a, real_a), run(syn_b, real_b)


def test_share_closed_tells_a_better_real_split_from_a_worse_synthetic_one():
    x = np.linspace(1.0, 3.0, 20)
    # B leaves the real split as it was and makes the synthetic one 1.3x worse: ratio 1.3 -> 1.0
    a, b = _runs(x, 1.3 * x, 1.3 * x, 1.3 * x)
    c = gap_change(a, b, ["chamfer_l2"], n_resamples=200).iloc[0]
    assert c.closed == pytest.approx(1.0) and c.closed_by_real == pytest.approx(0.0, abs=1e-12)
    # B improves the real split instead: both say the whole gap closed
    a, b = _runs(x, 1.3 * x, x, x)
    c = gap_change(a, b, ["chamfer_l2"], n_resamples=200).iloc[0]
    assert c.closed == pytest.approx(1.0) and c.closed_by_real == pytest.approx(1.0)
    # A reversed gap (ratio 0.9) that moves further from 1 (0.8) widened: a negative share, not "narrower"
    a, b = _runs(x, 0.9 * x, x, 0.8 * x)
    c = gap_change(a, b, ["chamfer_l2"], n_resamples=200).iloc[0]
    assert c.change == pytest.approx(-0.1) and c.closed == pytest.approx(-1.0)


def test_no_share_closed_when_the_first_gap_may_not_exist():
    rng = np.random.default_rng(5)
    syn = np.exp(rng.normal(0, 0.5, 60))
    real = syn * np.exp(rng.normal(0.0, 0.3, 60))  # no systematic gap at A
    a, b = _runs(syn, real, syn, syn * 0.9)
    c = gap_change(a, b, ["chamfer_l2"], n_resamples=500).iloc[0]
    assert c.estimate_a_low < 1.0 < c.estimate_a_high
    assert math.isnan(c.closed) and math.isnan(c.closed_by_real) and "includes no gap" in c.note
    assert c.change_low < c.change < c.change_high  # the change itself still has its interval


def test_auto_pairs_fall_back_when_the_ids_never_meet_and_say_what_was_left_out():
    f, _, _ = _twins(10)
    g = domain_gap(f, ["chamfer_l2"], n_resamples=100).iloc[0]
    assert g.n_pairs == 8 and "2 value(s) without a usable twin left out" in g.note  # syn 3 and syn 9
    one_side = f.copy()
    one_side.loc[one_side.domain == "real", "pair_id"] = None  # paired synthetic beside unpaired real data
    h = domain_gap(one_side, ["chamfer_l2"], n_resamples=100).iloc[0]
    assert h.design == "two-sample" and math.isfinite(h.estimate) and pd.isna(h.note)


def test_gap_change_runs_with_one_run_per_side_is_gap_change():
    from sam3d_eval.evaluate.summary import gap_change_runs

    a, _, _ = _twins(30, seed=2)
    b, _, _ = _twins(30, seed=2, real_factor=1.1)
    one = gap_change(a, b, ["chamfer_l2", "fscore@0.05"], n_resamples=200).set_index("metric")
    runs = gap_change_runs([a], [b], ["chamfer_l2", "fscore@0.05"], n_resamples=200).set_index("metric")
    for m in one.index:
        for col in ("estimate_a", "estimate_b", "change", "closed", "closed_by_real", "n_units_real"):
            assert runs.loc[m, col] == pytest.approx(one.loc[m, col], rel=1e-12), (m, col)
    # weighted sums against plain means: the same sums in another order
    assert (runs.n_runs_a == 1).all()
    assert runs.loc["chamfer_l2", "run_min_a"] == pytest.approx(runs.loc["chamfer_l2", "estimate_a"], rel=1e-12)


def test_gap_change_runs_averages_runs_and_widens_with_run_variation():
    from sam3d_eval.evaluate.summary import gap_change_runs

    n = 12
    x = np.linspace(1.0, 3.0, n)

    def run(syn_scale, real_factor):
        rows = [dict(sample_id=f"syn_{i}", pair_id=f"p{i}", domain="synthetic", status="ok", chamfer_l2=syn_scale * x[i])
                for i in range(n)]
        rows += [dict(sample_id=f"real_{i}", pair_id=f"p{i}", domain="real", status="ok",
                      chamfer_l2=syn_scale * real_factor * x[i]) for i in range(n)]
        return pd.DataFrame(rows)
    # A: ratios 2.0 and 2.4 (mean 2.2); B: 1.5 and 1.3 (mean 1.4); every pair keeps the ratio, so only the runs vary.
    a = [run(1.0, 2.0), run(1.0, 2.4)]
    b = [run(2.0, 1.5), run(1.0, 1.3)]
    c = gap_change_runs(a, b, ["chamfer_l2"], n_resamples=400, seed=1).iloc[0]
    assert (c.estimate_a, c.estimate_b, c.change) == pytest.approx((2.2, 1.4, -0.8))
    assert c.closed == pytest.approx((1.2 - 0.4) / 1.2)
    assert (c.run_min_a, c.run_max_a, c.run_min_b, c.run_max_b) == pytest.approx((2.0, 2.4, 1.3, 1.4 + 0.1))
    # B's real means against A's synthetic means, every (A run, B run) couple: real = 3x and 1.3x the synthetic
    mix = np.mean([2.0 * 1.5, 1.3, 2.0 * 1.5, 1.3])
    assert c.closed_by_real == pytest.approx((1.2 - (mix - 1.0)) / 1.2)
    # with the runs resampled the interval spans the run-to-run spread; it cannot exceed the extremes
    assert c.estimate_a_low == pytest.approx(2.0) and c.estimate_a_high == pytest.approx(2.4)
    assert c.change_low < c.change < c.change_high
    assert c.n_runs_a == c.n_runs_b == 2 and c.design == "paired" and c.note is None


def test_gap_change_runs_uses_units_usable_in_every_run():
    from sam3d_eval.evaluate.summary import gap_change_runs

    a1, _, _ = _twins(20, seed=4)
    a2 = a1.copy()
    a2.loc[a2.index[0], "status"] = "failed"  # that pair leaves every run's figure
    b, _, _ = _twins(20, seed=4, real_factor=1.05)
    c = gap_change_runs([a1, a2], [b, b], ["chamfer_l2"], n_resamples=100).iloc[0]
    one = gap_change(a1, b, ["chamfer_l2"], n_resamples=100).iloc[0]
    assert c.n_units_real == one.n_units_real - 1
    with pytest.raises(ValueError, match="at least one run"):
        gap_change_runs([], [b])


def test_run_summary_names_a_metric_without_values_instead_of_summarising_it():
    from sam3d_eval.evaluate.summary import run_summary

    f = _frame()
    f["lpips"] = math.nan  # LPIPS scored without its backbone weights
    out = run_summary(f, n_resamples=50)
    assert out["metrics_without_values"] == ["lpips"] and "lpips" not in out["metrics"]
    assert not any(r["metric"] == "lpips" for r in out["summary"]) and "chamfer_l2" in out["metrics"]
    assert not any(r["metric"] == "lpips" for r in out["domain_gap"])
