"""Summaries of stored results: strata means with counts of what was left out, occlusion accuracy, domain gap."""

import math

import numpy as np
import pandas as pd
import pytest

from sam3d_eval.evaluate.summary import direction, domain_gap, occlusion_accuracy, occlusion_bin, summarize


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
