"""What a synthetic-vs-real gap is made of: the covariate-matched figure, the covariate part, the wear-free
figure and the wear part (`evaluate.summary.domain_gap`), their text and HTML, and the per-shift section.

Every figure is checked against an independent computation: the weighted mean of docs/definitions.md written
out cell by cell, and bootstrap intervals redrawn by hand from the seeded generator."""

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from sam3d_eval.evaluate.summary import domain_gap, domain_gap_runs

OCC = {"A": 0.0, "B": 0.4, "C": 0.0, "D": 0.7}  # occlusion of each planted cell: bins [0,0.1), [0.3,0.6), [0.6,1]
CAT = {"A": "mug", "B": "mug", "C": "car", "D": "car"}


def _rows(domain: str, cells: list[str], values: list[float], prefix: str) -> list[dict]:
    return [dict(sample_id=f"{prefix}{i}", domain=domain, status="ok", occlusion=OCC[c], category=CAT[c],
                 chamfer_l2=v, **{"fscore@0.05": 1.0 / (1.0 + v)}) for i, (c, v) in enumerate(zip(cells, values))]


def _cell_frame(copies: int = 1) -> pd.DataFrame:
    """Synthetic cells A [1, 2, 3], B [4, 6], C [2]; real cells A [2, 3], B [8, 10, 12], C [5] and D [20], a
    cell without any synthetic sample; `copies` times over (values scaled a little in each copy)."""
    syn = _rows("synthetic", list("AAABBC") * copies,
                [v * (1 + k / 10) for k in range(copies) for v in (1, 2, 3, 4, 6, 2)], "s")
    real = _rows("real", list("AABBBCD") * copies,
                 [v * (1 + k / 7) for k in range(copies) for v in (2, 3, 8, 10, 12, 5, 20)], "r")
    return pd.DataFrame(syn + real)


def _hand_matched(sv, sc, rv, rc) -> float:
    """mean_real / sum_c w_c mean_syn_c over the real samples whose cell holds a synthetic one, written out."""
    syn_mean = {c: np.mean([v for v, k in zip(sv, sc) if k == c]) for c in set(sc)}
    kept = [(v, c) for v, c in zip(rv, rc) if c in syn_mean]
    share = Counter(c for _, c in kept)
    denominator = sum(share[c] / len(kept) * syn_mean[c] for c in share)
    return np.mean([v for v, _ in kept]) / denominator


def _cells_of(frame: pd.DataFrame) -> np.ndarray:
    """The planted cell of each row (occlusion bin and category)."""
    inv = {(OCC[c], CAT[c]): c for c in OCC}
    return np.array([inv[(o, k)] for o, k in zip(frame["occlusion"], frame["category"])])


def test_matched_ratio_is_the_hand_weighted_mean_and_coverage_counts_the_cell_left_out():
    g = domain_gap(_cell_frame(), ["chamfer_l2"], n_resamples=200).set_index("metric").loc["chamfer_l2"]
    # covered real samples: A (2 of mean 2.5), B (3 of mean 10), C (1 of 5): mean 40/6; weights 2/6, 3/6, 1/6
    # against the synthetic cell means 2, 5, 2: 21/6. D (20) has no synthetic sample and is left out.
    assert g.matched == pytest.approx(40 / 21, rel=1e-12)
    assert g.estimate == pytest.approx((60 / 7) / 3.0, rel=1e-12)
    assert g.covariate == pytest.approx(g.estimate - 40 / 21, rel=1e-12)
    assert g.matched_coverage == pytest.approx(6 / 7) and g.matched_coverage < 1
    assert (g.matched_cells, g.unmatched_cells) == (3, 1)
    assert g.matching == "occlusion_bin x category"
    assert "[0.6,1] x car" in g.decomposition_note and "86% of the real units" in g.decomposition_note
    s = _cell_frame()
    syn, real = s[s.domain == "synthetic"], s[s.domain == "real"]
    assert g.matched == pytest.approx(_hand_matched(syn.chamfer_l2, _cells_of(syn), real.chamfer_l2, _cells_of(real)))
    # a higher-is-better metric: the analogous relative drop 1 - matched ratio
    f = domain_gap(_cell_frame(), ["fscore@0.05"], n_resamples=200).set_index("metric").loc["fscore@0.05"]
    hand = _hand_matched(syn["fscore@0.05"], _cells_of(syn), real["fscore@0.05"], _cells_of(real))
    assert f.figure == "relative_drop" and f.matched == pytest.approx(1 - hand, rel=1e-12)
    assert f.covariate == pytest.approx(f.estimate - f.matched, abs=1e-15)


def test_two_sample_intervals_redrawn_by_hand_share_the_raw_figures_resamples():
    f = _cell_frame(copies=4)  # enough samples that every resample keeps a covered cell
    g = domain_gap(f, ["chamfer_l2"], n_resamples=1000, seed=7).iloc[0]
    syn, real = f[f.domain == "synthetic"], f[f.domain == "real"]
    sv, sc = syn.chamfer_l2.to_numpy(), _cells_of(syn)
    rv, rc = real.chamfer_l2.to_numpy(), _cells_of(real)
    rng = np.random.default_rng(7)  # scipy's draws: all synthetic indices of the chunk, then all real ones
    i_s, i_r = rng.integers(0, len(sv), (1000, len(sv))), rng.integers(0, len(rv), (1000, len(rv)))
    raw = rv[i_r].mean(1) / sv[i_s].mean(1)
    matched = np.array([_hand_matched(sv[a], sc[a], rv[b], rc[b]) for a, b in zip(i_s, i_r)])
    q = [0.025, 0.975]
    assert (g.low, g.high) == pytest.approx(tuple(np.quantile(raw, q)), rel=1e-12)  # the raw interval as before
    assert (g.matched_low, g.matched_high) == pytest.approx(tuple(np.quantile(matched, q)), rel=1e-9)
    assert (g.covariate_low, g.covariate_high) == pytest.approx(tuple(np.quantile(raw - matched, q)), rel=1e-9)
    assert g.design == "two-sample"


def test_covariate_part_is_zero_when_both_sides_share_the_cell_distribution():
    syn = _rows("synthetic", list("AABBC"), [1, 2, 4, 6, 2], "s")
    real = _rows("real", list("AABBC") * 2, [3, 2, 9, 11, 4, 2, 4, 12, 10, 5], "r")  # each cell's share as above
    g = domain_gap(pd.DataFrame(syn + real), ["chamfer_l2", "fscore@0.05"], n_resamples=300).set_index("metric")
    for m in ("chamfer_l2", "fscore@0.05"):
        assert g.loc[m, "covariate"] == pytest.approx(0.0, abs=1e-12)
        assert g.loc[m, "matched"] == pytest.approx(g.loc[m, "estimate"], rel=1e-12)
        assert g.loc[m, "matched_coverage"] == 1.0 and g.loc[m, "unmatched_cells"] == 0
        assert g.loc[m, "covariate_low"] <= 0.0 <= g.loc[m, "covariate_high"]


def _twins(n: int = 30, seed: int = 3, noise: float = 0.3) -> pd.DataFrame:
    """n twin pairs: the synthetic twin unoccluded, the real twin often occluded (another cell), and the real
    value 1.3x its twin's, 1.6x when occluded, times noise of its own."""
    rng = np.random.default_rng(seed)
    d = np.exp(rng.normal(0, 0.7, n))
    occ = np.where(rng.uniform(size=n) < 0.5, 0.4, 0.0)
    cat = np.where(np.arange(n) % 3 == 0, "car", "mug")
    # a few synthetic twins occluded too, so the occluded real cells have synthetic samples
    syn_occ = np.where(np.arange(n) % 4 == 1, 0.4, 0.0)
    real = d * np.where(occ > 0, 1.6, 1.3) * np.exp(rng.normal(0, noise, n))
    rows = [dict(sample_id=f"s{i}", pair_id=f"p{i:03d}", domain="synthetic", status="ok", occlusion=syn_occ[i],
                 category=cat[i], chamfer_l2=d[i]) for i in range(n)]
    rows += [dict(sample_id=f"r{i}", pair_id=f"p{i:03d}", domain="real", status="ok", occlusion=occ[i],
                  category=cat[i], chamfer_l2=real[i]) for i in range(n)]
    return pd.DataFrame(rows)


def test_paired_intervals_resample_whole_pairs():
    f = _twins()
    g = domain_gap(f, ["chamfer_l2"], n_resamples=800, seed=5).iloc[0]
    assert g.design == "paired" and g.n_pairs == 30
    syn = f[f.domain == "synthetic"].set_index("pair_id").sort_index()
    real = f[f.domain == "real"].set_index("pair_id").sort_index()
    sv, rv = syn.chamfer_l2.to_numpy(), real.chamfer_l2.to_numpy()
    sc = np.array([f"{o >= 0.3}{c}" for o, c in zip(syn.occlusion, syn.category)])
    rc = np.array([f"{o >= 0.3}{c}" for o, c in zip(real.occlusion, real.category)])
    assert g.matched == pytest.approx(_hand_matched(sv, sc, rv, rc), rel=1e-12)
    idx = np.random.default_rng(5).integers(0, 30, (800, 30))  # one draw of pairs: both twins go together
    raw = rv[idx].mean(1) / sv[idx].mean(1)
    matched = np.array([_hand_matched(sv[i], sc[i], rv[i], rc[i]) for i in idx])
    q = [0.025, 0.975]
    assert (g.low, g.high) == pytest.approx(tuple(np.quantile(raw, q)), rel=1e-12)
    assert (g.matched_low, g.matched_high) == pytest.approx(tuple(np.quantile(matched, q)), rel=1e-9)
    assert (g.covariate_low, g.covariate_high) == pytest.approx(tuple(np.quantile(raw - matched, q)), rel=1e-9)


def test_perfectly_correlated_twins_give_a_narrower_paired_interval_than_the_two_sample_one():
    # twins in one cell, the real twin exactly 1.3x its synthetic twin, objects spread widely: every pair
    # resample gives 1.3, while resampling each domain on its own sees the objects' spread
    f = _twins(40, seed=8, noise=0.0)
    real = f.domain == "real"
    f.loc[real, "occlusion"] = f.loc[~real, "occlusion"].to_numpy()
    f.loc[real, "chamfer_l2"] = 1.3 * f.loc[~real, "chamfer_l2"].to_numpy()
    p = domain_gap(f, ["chamfer_l2"], n_resamples=1000).iloc[0]
    t = domain_gap(f, ["chamfer_l2"], n_resamples=1000, pairs=None).iloc[0]
    assert (p.design, t.design) == ("paired", "two-sample")
    assert p.matched == pytest.approx(1.3) and t.matched == pytest.approx(1.3)  # same units, same figure
    for k in ("matched", "covariate"):
        assert (p[f"{k}_high"] - p[f"{k}_low"]) < 0.05 * (t[f"{k}_high"] - t[f"{k}_low"]), k
    assert (p.matched_low, p.matched_high) == pytest.approx((1.3, 1.3))
    # twins in different cells (the real one often occluded) still share their object: narrower, not zero
    g = _twins(40, seed=8, noise=0.0)
    p, t = (domain_gap(g, ["chamfer_l2"], n_resamples=1000, pairs=x).iloc[0] for x in ("auto", None))
    assert (p.matched_high - p.matched_low) < (t.matched_high - t.matched_low)


@pytest.mark.parametrize("pairs", ["auto", None])
def test_wear_free_equals_raw_when_the_unworn_values_are_the_real_ones(pairs):
    f = _twins(20)
    f["fscore@0.05"] = 1.0 / (1.0 + f["chamfer_l2"])
    unworn = f[f.domain == "real"].sample(frac=1.0, random_state=0)  # any order: matched by sample_id
    unworn = pd.concat([unworn, f[f.domain == "synthetic"].head(2)])  # synthetic rows are ignored
    g = domain_gap(f, ["chamfer_l2", "fscore@0.05"], n_resamples=400, pairs=pairs, unworn=unworn).set_index("metric")
    for m in ("chamfer_l2", "fscore@0.05", "accuracy"):
        r = g.loc[m]
        assert r.wear_free == pytest.approx(r.estimate, rel=1e-12, abs=1e-15) and r.n_unworn == 20
        assert (r.wear_free_low, r.wear_free_high) == pytest.approx((r.low, r.high), rel=1e-9, abs=1e-12)
        assert (r.wear, r.wear_low, r.wear_high) == pytest.approx((0.0, 0.0, 0.0), abs=1e-12)
    assert "wear" not in (g.loc["chamfer_l2", "decomposition_note"] or "")


def test_wear_free_replaces_real_values_and_drops_pairs_without_an_unworn_score():
    f = _twins(20)
    real = f[f.domain == "real"]
    unworn = real.assign(chamfer_l2=real.chamfer_l2 / 1.25).iloc[1:]  # worn GT made every real value 1.25x; r0 missing
    g = domain_gap(f, ["chamfer_l2"], n_resamples=300, unworn=unworn).iloc[0]
    syn = f[f.domain == "synthetic"].set_index("pair_id").sort_index().chamfer_l2.to_numpy()
    rv = real.set_index("pair_id").sort_index().chamfer_l2.to_numpy()
    keep = np.arange(20) != 0  # pair p000 has no unworn score: both twins leave the wear-free figure
    assert g.n_unworn == 19 and "19 of 20 real units" in g.decomposition_note
    assert g.wear_free == pytest.approx((rv[keep] / 1.25).mean() / syn[keep].mean(), rel=1e-12)
    assert g.wear == pytest.approx(g.estimate - g.wear_free, rel=1e-12)
    assert g.wear_low < g.wear < g.wear_high
    with pytest.raises(ValueError, match="twice"):
        domain_gap(f, ["chamfer_l2"], n_resamples=50, unworn=pd.concat([unworn, unworn]))


def test_without_covariates_or_unworn_the_parts_are_nan_with_a_note():
    f = _twins(10).drop(columns=["occlusion", "category"])
    g = domain_gap(f, ["chamfer_l2"], n_resamples=100).iloc[0]
    assert math.isnan(g.matched) and math.isnan(g.covariate_low) and math.isnan(g.wear_free) and math.isnan(g.wear)
    assert "none of the covariates occlusion_bin, category" in g.decomposition_note
    assert "no results scored against the unworn GT" in g.decomposition_note
    assert g.matching is None and g.matched_cells == 0
    h = domain_gap(_twins(10), ["chamfer_l2"], n_resamples=100, covariates=None).iloc[0]
    assert math.isnan(h.matched) and "no covariates asked" in h.decomposition_note
    # a covariate of one's own: category alone
    c = domain_gap(_twins(10), ["chamfer_l2"], n_resamples=100, covariates=("category", "nope")).iloc[0]
    assert c.matching == "category" and c.matched_coverage == 1.0


def test_existing_columns_unchanged_and_parts_add_up():
    f = _twins(25)
    g = domain_gap(f, ["chamfer_l2"], n_resamples=300)
    off = domain_gap(f, ["chamfer_l2"], n_resamples=300, covariates=None)
    base = ["metric", "figure", "direction", "mean_synthetic", "mean_real", "estimate", "low", "high", "n_synthetic",
            "n_failed_synthetic", "n_nan_synthetic", "n_real", "n_failed_real", "n_nan_real", "design", "n_pairs", "note"]
    assert list(g.columns[: len(base)]) == base
    pd.testing.assert_frame_equal(g[base], off[base])
    r = g.iloc[0]
    assert r.matched + r.covariate == pytest.approx(r.estimate, rel=1e-12)
    assert g.attrs["matching"] == ["occlusion_bin", "category"]


def test_several_runs_average_each_runs_parts_on_shared_resamples():
    a, b = _twins(24, seed=1), _twins(24, seed=1)
    b.loc[b.domain == "real", "chamfer_l2"] *= 1.1  # run 2: the real side 10% worse
    one = [domain_gap(x, ["chamfer_l2"], n_resamples=100).iloc[0] for x in (a, b)]
    unworn = [x[x.domain == "real"] for x in (a, b)]
    g = domain_gap_runs([a, b], ["chamfer_l2"], n_resamples=300, unworn=unworn).iloc[0]
    assert g.n_runs == 2 and g.design == "paired"
    assert g.matched == pytest.approx(np.mean([o.matched for o in one]), rel=1e-12)
    assert g.covariate == pytest.approx(g.estimate - g.matched, rel=1e-12)
    assert g.matched_low < g.matched < g.matched_high and g.covariate_low < g.covariate < g.covariate_high
    assert g.wear == pytest.approx(0.0, abs=1e-12) and g.wear_free == pytest.approx(g.estimate, rel=1e-12)
    assert (g.wear_free_low, g.wear_free_high) == pytest.approx((g.low, g.high), rel=1e-9)
    single = domain_gap_runs(a, ["chamfer_l2"], n_resamples=100)
    assert list(single.columns) == list(g.index) and single.iloc[0].matched == pytest.approx(one[0].matched)
    with pytest.raises(ValueError, match="one per run"):
        domain_gap_runs([a, b], ["chamfer_l2"], n_resamples=50, unworn=unworn[:1])


# ---- text and HTML ----------------------------------------------------------------------------------------
def test_format_gap_shows_the_decomposition():
    from sam3d_eval.cli.table import format_gap

    f = _twins(20)
    text = format_gap(domain_gap(f, ["chamfer_l2"], n_resamples=200, unworn=f[f.domain == "real"]))
    assert "what the gap is made of" in text and "occlusion-and-category mix" in text and "wear-free" in text
    assert "cells)" in text  # the coverage column
    plain = format_gap(domain_gap(f.drop(columns=["occlusion", "category"]), ["chamfer_l2"], n_resamples=100))
    assert "what the gap is made of" not in plain


def _run_record(gap_rows: list[dict]) -> dict:
    from sam3d_eval.evaluate.protocols import get_protocol
    from sam3d_eval.jsonable import to_jsonable

    proto = get_protocol("default")
    summary = [dict(stratum="all", level="all", metric="chamfer_l2", n=40, n_failed=0, n_nan=0, n_used=40,
                    mean=0.1, low=0.05, high=0.2)]
    return to_jsonable(dict(label="r", run_dir="x", protocol=proto.to_dict(), fingerprint=proto.fingerprint(),
                            counts={"samples": 40, "failed": 0}, summary=summary, occlusion_accuracy=None,
                            domain_gap=gap_rows, metadata={}))


def test_report_leads_the_gap_section_with_the_decomposition_sentence():
    from sam3d_eval.report import render_html, runs_document

    f = _twins(30)
    gap = domain_gap(f, ["chamfer_l2"], n_resamples=300, unworn=f[f.domain == "real"]).to_dict("records")
    html = render_html(runs_document([_run_record(gap)], metrics=["chamfer_l2"]))
    section = html[html.index('<section id="gap">'):]
    section = section[: section.index("</section>")]
    assert "is the occlusion-and-category mix" in section and "at matched occlusion-and-category" in section
    assert "GT wear accounts for" in section and "cells cover" in section
    assert section.index("is the occlusion-and-category mix") < section.index("<table>")  # it leads the section
    assert "what the gap is made of" in section and "Covariate part of the gap" in html  # table, definitions
    without = domain_gap(f, ["chamfer_l2"], n_resamples=100, covariates=None).to_dict("records")
    plain = render_html(runs_document([_run_record(without)], metrics=["chamfer_l2"]))
    assert "mix" not in plain[plain.index('<section id="gap">'):].split("</section>")[0]


def test_gap_decomposition_sentence_in_words():
    from sam3d_eval.report import gap_decomposition_sentence

    row = dict(metric="chamfer_l2", figure="gap_ratio", estimate=1.5, low=1.3, high=1.7, matching="occlusion_bin x category",
               matched=1.1, matched_low=1.0, matched_high=1.2, covariate=0.4, covariate_low=0.3, covariate_high=0.5,
               matched_coverage=0.44, wear_free=1.4, wear_free_low=1.2, wear_free_high=1.6, wear=0.1, wear_low=0.05,
               wear_high=0.15)
    text = gap_decomposition_sentence(row, "stage 2")
    assert text.startswith("stage 2: chamfer_l2 gap_ratio 1.500 [1.300, 1.700]")
    assert "0.400 [0.300, 0.500] of it (80% of the excess over 1) is the occlusion-and-category mix" in text
    assert "the figure is 1.100 [1.000, 1.200]" in text and "cover 44% of the real samples" in text
    assert "GT wear accounts for 0.100 [0.050, 0.150] (20% of the excess over 1)" in text
    # no share of a gap whose interval includes none
    assert "% of the excess" not in gap_decomposition_sentence({**row, "low": 0.9})
    assert gap_decomposition_sentence({**row, "matched": None, "wear_free": None}) is None


# ---- the per-shift attribution section ---------------------------------------------------------------------
def test_gap_attribution_record_only_with_shift_columns():
    from sam3d_eval.evaluate.attribution import gap_attribution

    f = _twins(40)
    assert gap_attribution(f) is None
    rng = np.random.default_rng(0)
    real = f.domain == "real"
    f["shift_blur"] = np.where(real, rng.uniform(0, 1, len(f)), 0.0)
    f["shift_jpeg"] = np.where(real, rng.uniform(0, 1, len(f)), 0.0)
    f["shift_off"] = 0.0  # a shift switched off: left out, and said
    rec = gap_attribution(f, ["chamfer_l2"])
    m = rec["metrics"][0]
    assert rec["design"] == "paired" and m["log"] and m["shifts"] == ["shift_blur", "shift_jpeg"]
    assert m["constant_shifts"] == ["shift_off"] and m["n_pairs"] == 40
    terms = {r["term"]: r for r in m["rows"]}
    total = np.log(f[real].set_index("pair_id").sort_index().chamfer_l2.to_numpy()
                   / f[~real].set_index("pair_id").sort_index().chamfer_l2.to_numpy()).mean()
    assert terms["total"]["contribution"] == pytest.approx(total, rel=1e-12)
    assert sum(r["contribution"] for r in m["rows"] if r["kind"] != "total") == pytest.approx(total, rel=1e-9)


def _stored_run(root, shifts: bool):
    """A stored evaluation run of the compare fixtures' predictions A, its manifest given overlapping occlusion
    cells in both domains and, with `shifts`, the real rows' shift intensities."""
    from compare_fixtures import PROTOCOL_SAMPLES, make_pair_dataset

    from sam3d_eval.data.manifest import load_manifest
    from sam3d_eval.evaluate.protocols import get_protocol
    from sam3d_eval.evaluate.sides import load_side

    manifest_path, a, _ = make_pair_dataset(root, 16)
    m = pd.read_csv(manifest_path)
    m["occlusion"] = [0.05 if i % 4 < 2 else 0.45 for i in range(len(m))]  # both domains in both bins
    if shifts:
        rng = np.random.default_rng(1)
        for name in ("blur", "jpeg"):
            m[f"shift_{name}"] = np.where(m["domain"] == "real", rng.uniform(0.2, 1.0, len(m)), 0.0)
    m.to_csv(manifest_path, index=False)
    proto = get_protocol("default").with_overrides(num_samples=PROTOCOL_SAMPLES)
    side = load_side(a, label="A", manifest=load_manifest(manifest_path), protocol=proto, runs_dir=root / "runs")
    return side.run_dir


def test_report_has_the_gap_by_shift_section_with_shift_columns_and_not_without(tmp_path):
    from sam3d_eval.workflows.report import report_runs

    html = {}
    for shifts in (True, False):
        run = _stored_run(tmp_path / str(shifts), shifts)
        out = report_runs([run], tmp_path / f"{shifts}.html", thumbnails=0, n_resamples=200)
        html[shifts] = out.read_text()
    assert '<section id="gap-attribution">' in html[True] and "Gap by shift" in html[True]
    assert "blur" in html[True].split('<section id="gap-attribution">')[1].split("</section>")[0]
    assert '<section id="gap-attribution">' not in html[False] and "Gap by shift" not in html[False]
    for text in html.values():  # the gap section leads with its decomposition in words
        assert "is the occlusion-and-category mix" in text
