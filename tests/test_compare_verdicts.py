"""Verdicts a user can ship on: failures counted, twin pairs resampled whole, robust figures beside the mean,
several runs per side. Built on stored run folders written directly (no scoring), so every case is exact."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, wilcoxon
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from sam3d_eval.cli.main import main
from sam3d_eval.evaluate.compare import compare_frames
from sam3d_eval.evaluate.protocols import get_protocol
from sam3d_eval.io.results import write_results_part, write_run_json
from sam3d_eval.stats import paired_bootstrap

PROTOCOL = get_protocol("default").with_overrides(num_samples=300)
FP = PROTOCOL.fingerprint()


def frame_of(values: dict, *, failed=(), strata=None, source="src", metric="chamfer_l2"):
    """A results frame: one row per sample id, `metric` = the value, status failed for `failed` ids."""
    ids = list(values)
    rows = []
    for sid in ids:
        bad = sid in failed
        row = dict(run_id="r", sample_id=sid, status="failed" if bad else "ok",
                   error="prediction: no prediction for this sample" if bad else None, source=source,
                   fingerprint=FP, protocol=PROTOCOL.name, pred_kind=None if bad else "mesh", transform=None,
                   notes="[]", rank=0, written_at=0, pred_sha256=None, gt_sha256=None, row_sha256=None)
        row.update((strata or {}).get(sid, {}))
        row[metric] = np.nan if bad else float(values[sid])
        rows.append(row)
    f = pd.DataFrame(rows)
    f.attrs.update(metrics=[metric], strata=sorted({k for s in (strata or {}).values() for k in s}))
    return f


def write_run(folder, frame):
    """`frame` stored as a run folder of `sam3d-eval evaluate`."""
    write_run_json(folder, {"run_id": "r", "source": {"name": "x", "identity": frame["source"].iloc[0]},
                            "protocol": PROTOCOL.to_dict(), "fingerprint": FP, "manifest": None,
                            "metadata": {}, "invocations": []})
    write_results_part(folder, frame, metrics=frame.attrs["metrics"], strata=frame.attrs["strata"])
    return folder


def _cli(capsys, *argv):
    code = main([str(x) for x in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------------------------------------- failures


def test_b_failing_20_percent_more_is_a_regression_exit_1(tmp_path, capsys):
    """B = A with 8 more predictions missing out of 40: the metric table alone sees no difference; the
    exact McNemar test on the failures does (p = 2 * 0.5**8), so --fail-on-regression exits 1."""
    rng = np.random.default_rng(0)
    vals = {f"s{i:02d}": float(v) for i, v in enumerate(rng.uniform(1e-3, 2e-3, 40))}
    a = write_run(tmp_path / "a", frame_of(vals, source="a"))
    b = write_run(tmp_path / "b", frame_of(vals, failed=[f"s{i:02d}" for i in range(8)], source="b"))
    code, out, _ = _cli(capsys, "compare", a, b, "--resamples", "200", "--quiet", "--fail-on-regression")
    assert code == 1
    first = out.splitlines()
    assert first[0].startswith(f"REGRESSION: {b.name} fails on more samples than {a.name} (20.0% vs 0.0%, exact McNemar")
    p = mcnemar([[32, 0], [8, 0]], exact=True).pvalue
    assert p == pytest.approx(2 * 0.5**8)
    fail_line = next(i for i, line in enumerate(first) if line.startswith("failures:"))
    table_line = next(i for i, line in enumerate(first) if line.startswith("metric") or "delta B-A" in line)
    assert fail_line < table_line  # printed above the metric table
    assert "8 only in B" in out and f"p {p:.3g}" in out
    code, out, _ = _cli(capsys, "compare", a, b, "--resamples", "200", "--quiet", "--json")
    res = json.loads(out)
    f = res["failures"]
    assert code == 0 and res["regressed"] and f["pvalue"] == pytest.approx(p) and f["worse"] == "B"
    lo, hi = proportion_confint(8, 40, method="wilson")
    assert (f["rate_b"], f["rate_b_low"], f["rate_b_high"]) == pytest.approx((0.2, lo, hi))
    assert f["rate_a_low"] == 0.0  # Wilson at k = 0 is exactly 0
    assert any(r["metric"] == "failure rate" for r in res["regressions"])


def test_too_few_discordant_samples_are_named_not_hidden(tmp_path, capsys):
    """4 of 20 more failures: the exact test cannot reach p < 0.05 with 4 discordant samples (smallest p
    0.125); the output says so instead of a silent 'no difference'."""
    vals = {f"s{i:02d}": 1e-3 + 1e-5 * i for i in range(20)}
    a = write_run(tmp_path / "a", frame_of(vals, source="a"))
    b = write_run(tmp_path / "b", frame_of(vals, failed=["s00", "s01", "s02", "s03"], source="b"))
    code, out, _ = _cli(capsys, "compare", a, b, "--resamples", "200", "--quiet", "--fail-on-regression")
    assert code == 0
    assert "cannot reach p < 0.05" in out and "0.125" in out
    assert "4 of 20 samples (20.0%" in out


def test_failed_as_worst_scores_failures_at_the_side_worst_value():
    vals = {f"s{i}": float(i + 1) for i in range(10)}  # lower is better (chamfer)
    fa = frame_of(vals, source="a")
    fb = frame_of({k: v * 1.01 for k, v in vals.items()}, failed=["s0", "s1"], source="b")
    c = compare_frames(fa, fb, failed_as="worst", n_resamples=200, metrics=["chamfer_l2"])
    r = c.table[(c.table["stratum"] == "all")].iloc[0]
    worst_b = 10 * 1.01
    want_b = (worst_b * 2 + sum(v * 1.01 for k, v in vals.items() if k not in ("s0", "s1"))) / 10
    assert r["n"] == 10 and r["mean_b"] == pytest.approx(want_b)
    assert r["better"] == "A" and c.settings["failed_as"] == "worst"
    c2 = compare_frames(fa, fb, n_resamples=200, metrics=["chamfer_l2"])  # exclude: 8 samples
    assert c2.table.iloc[0]["n"] == 8


# ---------------------------------------------------------------------------------------------- pairs


def _twins(n_pairs, seed=0, shift=0.0):
    """Paired benchmark: each pair shares an object difficulty; B = A + shift + small noise."""
    rng = np.random.default_rng(seed)
    diff = rng.lognormal(-7, 1.0, n_pairs)
    vals_a, vals_b, strata = {}, {}, {}
    for i in range(n_pairs):
        for dom, k in (("synthetic", 1.0), ("real", 1.3)):
            sid = f"{dom[:3]}_{i:03d}"
            vals_a[sid] = diff[i] * k * rng.uniform(0.9, 1.1)
            vals_b[sid] = vals_a[sid] * (1 + shift) * rng.uniform(0.97, 1.03)
            strata[sid] = {"domain": dom, "pair_id": f"p{i:03d}", "category": ["chair", "mug"][i % 2],
                           "occlusion": 0.05}
    return vals_a, vals_b, strata


def test_every_stratum_resamples_twin_pairs_whole():
    va, vb, strata = _twins(30, shift=0.05)
    fa, fb = frame_of(va, strata=strata, source="a"), frame_of(vb, strata=strata, source="b")
    c = compare_frames(fa, fb, n_resamples=500, metrics=["chamfer_l2"])
    t = c.table
    assert c.settings["cluster"] == "pair_id" and c.settings["units"] == 30
    everything = t[t["stratum"] == "all"].iloc[0]
    assert everything["n"] == 60 and everything["n_units"] == 30
    # the mean difference's interval is the pair-clustered paired bootstrap (studentized: 30 units < 50)
    x = np.array([va[s] for s in sorted(va)])
    y = np.array([vb[s] for s in sorted(vb)])
    pairs = [strata[s]["pair_id"] for s in sorted(va)]
    ref = paired_bootstrap(x, y, clusters=pairs, n_resamples=500, seed=0)
    assert (everything["delta_low"], everything["delta_high"]) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert everything["interval_method"] == "studentized"
    # category strata hold both twins of a pair: units are pairs there too
    cat = t[(t["stratum"] == "category") & (t["level"] == "chair")].iloc[0]
    assert cat["n"] == 30 and cat["n_units"] == 15
    # in a domain stratum each pair has one twin: units are samples
    dom = t[(t["stratum"] == "domain") & (t["level"] == "real")].iloc[0]
    assert dom["n"] == 30 and dom["n_units"] == 30
    # the Wilcoxon test runs on the per-pair mean differences (pairs are the independent units)
    d = (y - x).reshape(-1)
    per_pair = pd.Series(d).groupby(pairs).mean().to_numpy()
    assert everything["pvalue"] == pytest.approx(wilcoxon(per_pair).pvalue, rel=1e-12)
    # the per-sample preference counts wins per pair too: sign-flip test of each pair's wins minus losses
    from sam3d_eval.stats import sign_flip_test

    pref = c.preference
    assert pref["interval"] == "bootstrap over units" and pref["samples"] == 60
    wins = pd.Series(np.sign(x - y), index=pairs).groupby(level=0).sum().to_numpy()  # B better: y < x
    assert pref["pvalue"] == pytest.approx(sign_flip_test(wins).pvalue)
    # treating the 60 samples as independent gives a narrower (wrong) interval on shared difficulty
    naive = compare_frames(fa, fb, n_resamples=500, metrics=["chamfer_l2"], cluster=None)
    n_all = naive.table[naive.table["stratum"] == "all"].iloc[0]
    assert n_all["n_units"] == 60
    assert (n_all["high_a"] - n_all["low_a"]) < (everything["high_a"] - everything["low_a"])


def test_gap_figures_resample_pairs_too():
    va, vb, strata = _twins(30)
    c = compare_frames(frame_of(va, strata=strata, source="a"), frame_of(vb, strata=strata, source="b"),
                       n_resamples=300, metrics=["chamfer_l2"])
    g = c.gap_a[c.gap_a["metric"] == "chamfer_l2"].iloc[0]
    assert g["design"] == "paired" and g["n_pairs"] == 30


# ---------------------------------------------------------------------------------------------- robust figures


def test_outliers_cannot_flip_the_verdict_and_are_flagged(tmp_path, capsys):
    """The issue's case: B's mean Chamfer is lower (one huge A outlier) while B is worse on 13 of 15
    samples. The Wilcoxon verdict (the named figure) says B is worse, the median and geometric-mean figures
    agree, and the outlier is listed."""
    rng = np.random.default_rng(1)
    base = rng.uniform(1e-3, 2e-3, 15)
    a = base.copy()
    b = base * 1.2
    b[[0, 1]] = base[[0, 1]] * 0.9  # B better on 2 samples
    a[2] = 0.2  # one A outlier (100x) drags A's mean up
    b[2] = 0.2 * 0.9
    ids = [f"s{i:02d}" for i in range(15)]
    fa = frame_of(dict(zip(ids, a)), source="a")
    fb = frame_of(dict(zip(ids, b)), source="b")
    c = compare_frames(fa, fb, n_resamples=1000, metrics=["chamfer_l2"])
    r = c.table[c.table["stratum"] == "all"].iloc[0]
    assert r["delta"] < 0  # the mean says B is better...
    assert r["figure"] == "wilcoxon" and r["better"] == "A"  # ...the verdict's figure says worse
    assert r["pvalue"] == pytest.approx(wilcoxon(a, b).pvalue, rel=1e-12)
    assert r["median_delta"] > 0 and r["geo_change"] > 0
    assert r["geo_change"] == pytest.approx(np.expm1(np.mean(np.log(b) - np.log(a))), rel=1e-12)
    assert r["prob_improvement"] == pytest.approx(2 / 15 + 1 / 15)  # B better on s00, s01, s02
    flagged = {(o["side"], o["sample_id"]) for o in c.outliers}
    assert ("A", "s02") in flagged and ("B", "s02") in flagged
    assert "wilcoxon" in c.settings["verdict_figures"] and "Wilcoxon" in c.verdict()
    # the geometric-mean ratio as the verdict figure: tested by the bootstrap of mean(log B - log A)
    g = compare_frames(fa, fb, n_resamples=1000, metrics=["chamfer_l2"], figure="geomean").table.iloc[0]
    assert g["figure"] == "geomean" and g["better"] == "A" and g["pvalue"] < 0.05
    # the terminal output names the figure and lists the outlier
    write_run(tmp_path / "a", fa)
    write_run(tmp_path / "b", fb)
    code, out, _ = _cli(capsys, "compare", tmp_path / "a", tmp_path / "b", "--resamples", "200", "--quiet")
    assert "verdict on paired Wilcoxon signed-rank test" in out and "outliers" in out and "s02" in out
    assert "geo-mean ratio" in out and "P(B better)" in out


# ---------------------------------------------------------------------------------------------- several runs


def _seeds(n_runs, offsets, n=60, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    base = rng.lognormal(-7, 0.5, n)
    out = []
    for r in range(n_runs):
        v = base * (1 + shift) * np.exp(offsets[r]) * rng.lognormal(0, 0.05, n)
        out.append(frame_of({f"s{i:03d}": x for i, x in enumerate(v)}, source=f"run{r}"))
    return out


def test_three_seeds_against_three_seeds_two_level_interval_and_probability_of_improvement(tmp_path, capsys):
    a = _seeds(3, [0.0, 0.15, -0.15], seed=0)
    b = _seeds(3, [0.1, -0.1, 0.0], seed=0, shift=-0.02)
    c = compare_frames(a, b, n_resamples=1000, metrics=["chamfer_l2"])
    r = c.table[c.table["stratum"] == "all"].iloc[0]
    assert c.settings["runs"] == [3, 3] and r["figure"] == "geomean"
    assert r["interval_method"] == "two-level percentile"
    # the seed-to-seed spread is inside the interval: every pair of seeds' mean difference
    means_a = [f["chamfer_l2"].mean() for f in a]
    means_b = [f["chamfer_l2"].mean() for f in b]
    assert (r["run_min_a"], r["run_max_a"]) == pytest.approx((min(means_a), max(means_a)))
    diffs = [mb - ma for ma in means_a for mb in means_b]
    assert r["delta_low"] < np.median(diffs) < r["delta_high"]
    assert r["delta_high"] - r["delta_low"] > 0.5 * (max(diffs) - min(diffs))
    # one seed per side only sees test-set noise: a much narrower interval
    one = compare_frames(a[0], b[0], n_resamples=1000, metrics=["chamfer_l2"]).table.iloc[0]
    assert (one["delta_high"] - one["delta_low"]) < 0.5 * (r["delta_high"] - r["delta_low"])
    # probability of improvement: per sample, share of the 9 run pairs where B is lower, averaged
    xa = np.stack([f["chamfer_l2"].to_numpy() for f in a])
    xb = np.stack([f["chamfer_l2"].to_numpy() for f in b])
    want = np.mean([(np.sum(xb[:, None, i] < xa[None, :, i]) + 0.5 * np.sum(xb[:, None, i] == xa[None, :, i])) / 9
                    for i in range(xa.shape[1])])
    assert r["prob_improvement"] == pytest.approx(want, abs=1e-12)
    assert r["prob_improvement_low"] <= want <= r["prob_improvement_high"]
    # the command line: quoted globs of run folders
    for i, f in enumerate(a):
        write_run(tmp_path / f"a-seed{i}", f)
    for i, f in enumerate(b):
        write_run(tmp_path / f"b-seed{i}", f)
    code, out, _ = _cli(capsys, "compare", f"{tmp_path}/a-seed*", f"{tmp_path}/b-seed*", "--resamples", "300",
                        "--quiet", "--json")
    res = json.loads(out)
    row = next(t for t in res["table"] if t["stratum"] == "all")
    assert code == 0 and res["settings"]["runs"] == [3, 3] and len(res["sides"]) == 6
    assert row["interval_method"] == "two-level percentile" and row["prob_improvement"] == pytest.approx(want)
    code, out, _ = _cli(capsys, "compare", f"{tmp_path}/a-seed0,{tmp_path}/a-seed1", f"{tmp_path}/b-seed*",
                        "--resamples", "300", "--quiet")
    assert code == 0 and "2 run(s) of A, 3 of B" in out and "A runs min-max" in out
    code, _, err = _cli(capsys, "compare", f"{tmp_path}/a-seed*", f"{tmp_path}/b-seed*", "--figure", "wilcoxon",
                        "--quiet")
    assert code == 2 and "one run of each side" in err
    code, _, err = _cli(capsys, "compare", f"{tmp_path}/nothing-*", f"{tmp_path}/b-seed*", "--quiet")
    assert code == 2 and "matches" in err


def test_single_run_keeps_the_paired_wilcoxon_output():
    a = _seeds(1, [0.0], seed=3)
    b = _seeds(1, [0.0], seed=3, shift=0.1)
    r = compare_frames(a, b, n_resamples=300, metrics=["chamfer_l2"]).table.iloc[0]
    x, y = a[0]["chamfer_l2"].to_numpy(), b[0]["chamfer_l2"].to_numpy()
    assert r["figure"] == "wilcoxon" and r["pvalue"] == pytest.approx(wilcoxon(x, y).pvalue, rel=1e-12)
    assert r["run_min_a"] == r["run_max_a"] == pytest.approx(x.mean())


def test_binomtest_reference_of_the_failure_test():
    """The failure test equals the exact binomial test on the discordant counts (independent check)."""
    vals = {f"s{i}": 1.0 + i for i in range(30)}
    fa = frame_of(vals, failed=["s0"], source="a")
    fb = frame_of(vals, failed=["s1", "s2", "s3", "s4", "s5", "s6"], source="b")
    c = compare_frames(fa, fb, n_resamples=200)
    f = c.failures
    assert (f["only_a"], f["only_b"]) == (1, 6)
    assert f["pvalue"] == pytest.approx(binomtest(1, 7, 0.5).pvalue)


def test_compare_reaches_the_protocol_from_the_command_line(tmp_path, capsys):
    """--alignment and --protocol FILE reach compare's scoring; the run records them."""
    from compare_fixtures import make_pair_dataset

    manifest, a, b = make_pair_dataset(tmp_path, 4)
    base = ["compare", a, b, "--data", manifest, "--runs-dir", tmp_path / "runs", "--samples", "300",
            "--resamples", "200", "--quiet", "--thumbnails", "0", "--json"]
    code, out, _ = _cli(capsys, *base, "--alignment", "icp")
    res = json.loads(out)
    assert code == 0 and res["protocol"]["alignment"] == "icp"
    want = get_protocol("default").with_overrides(alignment="icp", num_samples=300).fingerprint()
    assert res["fingerprint"] == want
    proto = tmp_path / "p.toml"
    proto.write_text('base = "default"\nnum_samples = 300\nalignment = "icp"\n')
    code, out, _ = _cli(capsys, *[x for x in base if x not in ("--samples", "300")], "--protocol", proto)
    assert code == 0 and json.loads(out)["fingerprint"] == want
    proto.write_text('base = "default"\nnum_sample = 300\n')
    code, _, err = _cli(capsys, *base, "--protocol", proto)
    assert code == 2 and "num_sample" in err and len(err.strip().splitlines()) == 1


def test_one_domain_compare_says_why_there_is_no_gap(tmp_path, capsys):
    vals = {f"s{i}": 1.0 + i for i in range(6)}
    strata = {k: {"domain": "real"} for k in vals}
    a = write_run(tmp_path / "a", frame_of(vals, strata=strata, source="a"))
    b = write_run(tmp_path / "b", frame_of(vals, strata=strata, source="b"))
    code, out, _ = _cli(capsys, "compare", a, b, "--resamples", "200", "--quiet")
    assert code == 0 and "no gap table: the manifest has only the 'real' domain" in out
    assert "gap metric" not in out


def test_several_runs_failure_rise_is_a_regression():
    """Three runs per side; every run of B fails 10 of 40 samples (not the same ones): the sign-flip test of
    the per-sample failure shares finds the rise, and each side's rate has a Wilson interval of one run."""
    vals = {f"s{i:02d}": 1e-3 * (1 + i / 40) for i in range(40)}
    a = [frame_of(vals, source=f"a{r}") for r in range(3)]
    b = [frame_of(vals, failed=[f"s{(i + 7 * r) % 40:02d}" for i in range(10)], source=f"b{r}") for r in range(3)]
    c = compare_frames(a, b, n_resamples=500, metrics=["chamfer_l2"])
    f = c.failures
    assert f["test"].startswith("sign-flip") and f["rate_b"] == pytest.approx(0.25) and f["rate_a"] == 0
    lo, hi = proportion_confint(10, 40, method="wilson")
    assert (f["rate_b_low"], f["rate_b_high"]) == pytest.approx((lo, hi))
    assert f["significant"] and f["worse"] == "B" and c.regressed


def test_repeating_a_run_adds_no_evidence_about_failures():
    """The same run twice per side must not turn a non-significant failure rise into a significant one: the
    per-unit shares are those of one run, so the test equals the one-run exact McNemar test."""
    vals = {f"s{i:03d}": 1e-3 for i in range(100)}
    fa = frame_of(vals, source="a")
    fb = frame_of(vals, failed=[f"s{i:03d}" for i in range(4)], source="b")
    one = compare_frames(fa, fb, n_resamples=300, metrics=["chamfer_l2"]).failures
    two = compare_frames([fa, fa], [fb, fb], n_resamples=300, metrics=["chamfer_l2"]).failures
    assert one["pvalue"] == pytest.approx(0.125) and two["pvalue"] == pytest.approx(0.125)
    assert not one["significant"] and not two["significant"]


def test_failures_are_counted_per_pair_on_a_paired_benchmark():
    """A pair fails when either twin fails; McNemar counts pairs, and the direction follows the pair counts
    (A fails one twin in 40 pairs, B both twins in 21 pairs: more failed samples in B, more failed pairs in
    A)."""
    va, _, strata = _twins(80)
    ids = sorted(va)
    syn = [s for s in ids if s.startswith("syn")]
    rea = [s for s in ids if s.startswith("rea")]
    fa = frame_of(va, failed=syn[:40], strata=strata, source="a")
    fb = frame_of(va, failed=syn[40:61] + rea[40:61], strata=strata, source="b")
    c = compare_frames(fa, fb, n_resamples=300, metrics=["chamfer_l2"])
    f = c.failures
    assert f["unit"] == "cluster" and f["units"] == 80 and (f["only_a"], f["only_b"]) == (40, 21)
    assert f["failed_a"] == 40 and f["failed_b"] == 42
    assert f["pvalue"] == pytest.approx(mcnemar([[0, 40], [21, 0]], exact=True).pvalue)
    assert f["significant"] and f["worse"] == "A" and not c.regressed
    # errors are listed per side, under the sides' labels
    assert set(c.samples["errors"]) == {"A", "B"} and len(c.samples["errors"]["B"]) == 42


def test_geomean_with_a_zero_falls_back_to_the_mean_and_says_so():
    rng = np.random.default_rng(4)
    x = rng.uniform(1e-3, 2e-3, 30)
    x[0] = 0.0
    ids = [f"s{i:02d}" for i in range(30)]
    fa = [frame_of(dict(zip(ids, x * k)), source=f"a{k}") for k in (1.0, 1.05)]
    fb = [frame_of(dict(zip(ids, 2 * x * k)), source=f"b{k}") for k in (1.0, 1.05)]
    c = compare_frames(fa, fb, n_resamples=500, metrics=["chamfer_l2"])
    r = c.table[c.table["stratum"] == "all"].iloc[0]
    assert r["figure"] == "mean" and "undefined" in r["figure_note"] and r["pvalue"] < 0.05
    assert c.regressed and "not testable" not in c.verdict()


def test_one_run_bootstrap_figure_p_agrees_with_its_interval():
    """With --figure mean and one run per side, the printed interval is the one the p-value inverts."""
    rng = np.random.default_rng(56)
    x = rng.lognormal(-7, 1, 15)
    y = x * rng.lognormal(0.1, 0.5, 15)
    ids = [f"s{i:02d}" for i in range(15)]
    r = compare_frames(frame_of(dict(zip(ids, x))), frame_of(dict(zip(ids, y))), n_resamples=2000,
                       metrics=["chamfer_l2"], figure="mean").table.iloc[0]
    excludes = r["delta_low"] > 0 or r["delta_high"] < 0
    assert (r["pvalue"] < 0.05) == excludes or abs(r["pvalue"] - 0.05) < 4 / 2000
    assert r["interval_method"] == "percentile"


def test_min_effect_uses_the_verdict_figure_signed_shift():
    """With the Wilcoxon verdict, --min-effect compares the Hodges-Lehmann shift of the per-unit differences
    (signed, relative to A's median), not the mean's change, which one outlier can flip."""
    rng = np.random.default_rng(1)
    a = rng.uniform(1e-3, 2e-3, 15)
    b = a * 1.2
    a[2], b[2] = 0.2, 0.02  # one outlier makes B's mean far lower
    ids = [f"s{i:02d}" for i in range(15)]
    fa, fb = frame_of(dict(zip(ids, a))), frame_of(dict(zip(ids, b)))
    d = b - a
    walsh = [(d[i] + d[j]) / 2 for i in range(15) for j in range(i, 15)]
    shift = np.median(walsh) / np.median(a)
    c = compare_frames(fa, fb, n_resamples=300, metrics=["chamfer_l2"], min_effect=0.5 * shift)
    r = c.table.iloc[0]
    assert r["effect"] == pytest.approx(shift, rel=1e-12) and r["rel_delta"] < 0 < shift
    assert c.regressed  # B is worse by the signed shift, although its mean is lower
    assert not compare_frames(fa, fb, n_resamples=300, metrics=["chamfer_l2"], min_effect=2 * shift).regressed
