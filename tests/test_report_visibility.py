"""The report's "Visible and hidden surfaces" section (`report.build.visibility_section`): each run's
visibility split by domain and occlusion bin, the change from the first run to the last with the comparison's
paired intervals, and the sentence saying which part moved most.

Small results frames built by hand (six synthetic/real twin pairs), summarised and compared by the evaluation
layer as `sam3d-eval report` does; every mean is checked against one computed here with numpy."""

import math

import numpy as np
import pandas as pd
import pytest

from sam3d_eval.evaluate.compare import compare_frames
from sam3d_eval.evaluate.protocols import VISIBILITY_PARTS, get_protocol
from sam3d_eval.evaluate.summary import occlusion_bin, run_summary
from sam3d_eval.jsonable import to_jsonable
from sam3d_eval.report import render_html, runs_document
from sam3d_eval.report.build import visibility_change_sentences, visibility_section
from sam3d_eval.report.tables import (VISIBILITY_PARTS as REPORT_PARTS, definition, fmt_ci, visibility_change,
                                      visibility_columns, visibility_strata)

BASE = get_protocol("default")
PROTOCOL = BASE.with_overrides(metrics=(*BASE.metrics, "visibility"))
COLS = PROTOCOL.visibility_columns()
OCCLUSION = [0.0, 0.05, 0.2, 0.4, 0.45, 0.8]  # bins [0,0.1) x2, [0.1,0.3), [0.3,0.6) x2, [0.6,1]


def _frame(scale: float = 1.0, occluder_scale: float = 1.0, fail: str | None = None) -> pd.DataFrame:
    """Six twin pairs (12 rows). The unoccluded views have no occluder-hidden part (NaN), one real row no
    visible one (its accuracy NaN too); `scale` multiplies the visible and self-hidden distances,
    `occluder_scale` the occluder-hidden ones (recall moves the other way); `fail`: a sample id that failed."""
    rows = []
    for i, occ in enumerate(OCCLUSION):
        for d, domain in enumerate(("synthetic", "real")):
            k = 2 * i + d
            acc = 0.001 * (1 + k) * scale
            spread = 0.01 * ((3 * k) % 7)  # so that the recall changes differ between samples
            vals = {"chamfer_acc_visible": acc, "chamfer_comp_visible": 1.5 * acc,
                    "chamfer_comp_self_hidden": 0.004 * (1 + (k % 5)) * scale,
                    "chamfer_comp_occluder_hidden": math.nan if occ < 0.1 else 0.01 * (1 + k % 3) * occluder_scale,
                    "recall@0.05_visible": min(1.0, 0.8 / scale - 0.01 * k + spread * (1 / scale - 1)),
                    "recall@0.05_self_hidden": 0.5 / scale + 0.02 * (k % 4) + spread * (1 / scale - 1),
                    "recall@0.05_occluder_hidden": math.nan if occ < 0.1 else min(
                        1.0, 0.3 / occluder_scale + 0.05 * (k % 2) + spread * (1 / occluder_scale - 1))}
            if domain == "real" and i == 3:  # no visible GT sample: its columns NaN
                vals.update({"chamfer_acc_visible": math.nan, "chamfer_comp_visible": math.nan,
                             "recall@0.05_visible": math.nan})
            sid = f"s{k:02d}"
            failed = sid == fail
            rows.append(dict(sample_id=sid, status="failed" if failed else "ok", error="boom" if failed else None,
                             fingerprint=PROTOCOL.fingerprint(), protocol=PROTOCOL.name, domain=domain, occlusion=occ,
                             pair_id=f"p{i}", chamfer_l2=3 * acc,
                             **{c: (math.nan if failed else v) for c, v in vals.items()}))
    f = pd.DataFrame(rows)
    f.attrs["metrics"] = ["chamfer_l2"] + COLS
    return f


def _record(frame: pd.DataFrame, label: str) -> dict:
    """The run record `report_runs` hands `runs_document` (`workflows.report.summarise_run`, without a folder)."""
    return to_jsonable(dict(label=label, run_dir=f"runs/{label}", protocol=PROTOCOL.to_dict(),
                            fingerprint=PROTOCOL.fingerprint(), metadata={}, failed=[],
                            **run_summary(frame, n_resamples=200)))


def _section(html: str) -> str:
    part = html[html.index('<section id="visibility">'):]
    return part[: part.index("</section>")]


def test_the_report_restates_the_visibility_parts_of_the_evaluation():
    assert REPORT_PARTS == VISIBILITY_PARTS
    assert visibility_columns(["chamfer_l2", *reversed(COLS), "recall@0.05"]) == COLS
    assert "part's GT samples" in definition("recall@0.05_occluder_hidden")
    assert "SQUARED" in definition("chamfer_comp_self_hidden") and "SQUARED" in definition("chamfer_acc_visible")


def test_strata_means_are_the_hand_means_per_domain_and_occlusion_bin():
    frame = _frame(fail="s05")
    rows = visibility_strata(_record(frame, "stage 1")["summary"])
    assert [(r["stratum"], r["level"]) for r in rows] == [
        ("all", "all"), ("domain", "synthetic"), ("domain", "real"), ("occlusion_bin", "[0,0.1)"),
        ("occlusion_bin", "[0.1,0.3)"), ("occlusion_bin", "[0.3,0.6)"), ("occlusion_bin", "[0.6,1]")]
    ok = frame[frame.status == "ok"]
    bins = occlusion_bin(ok.occlusion)
    masks = {("all", "all"): np.ones(len(ok), bool), ("domain", "synthetic"): (ok.domain == "synthetic").to_numpy(),
             ("domain", "real"): (ok.domain == "real").to_numpy()}
    masks.update({("occlusion_bin", b): bins == b for b in ("[0,0.1)", "[0.1,0.3)", "[0.3,0.6)", "[0.6,1]")})
    for r in rows:
        m = masks[(r["stratum"], r["level"])]
        for c in COLS:
            v = ok[c].to_numpy()[m]
            v = v[np.isfinite(v)]
            assert r[f"{c}_n"] == v.size, (r["level"], c)
            if v.size:
                assert r[c] == pytest.approx(v.mean(), rel=1e-12), (r["level"], c)
            else:
                assert math.isnan(r[c])
        assert r["n"] == max(r[f"{c}_n"] for c in COLS)
    # the failed sample is in no mean; the unoccluded bin has no occluder-hidden value at all
    assert rows[0]["n"] == 11 and rows[3]["chamfer_comp_occluder_hidden_n"] == 0


def test_change_table_is_the_hand_paired_mean_difference_inside_its_interval():
    a, b = _frame(), _frame(scale=0.8, occluder_scale=0.5, fail="s07")
    payload = compare_frames(a, b, labels=("stage 1", "stage 2 (final)"), protocol=PROTOCOL, n_resamples=400).to_dict()
    assert payload["settings"]["cluster"] == "pair_id"
    rows = visibility_change(payload)
    assert {r["metric"] for r in rows} == set(COLS)
    assert [r["level"] for r in rows] == ["all"] * 7 + ["synthetic"] * 7 + ["real"] * 7
    for r in rows:
        keep = (b.status == "ok") & (a.status == "ok") & a[r["metric"]].notna() & b[r["metric"]].notna()
        if r["level"] != "all":
            keep &= a.domain == r["level"]
        hand = (b[r["metric"]][keep] - a[r["metric"]][keep]).to_numpy()
        assert r["n"] == hand.size and r["delta"] == pytest.approx(hand.mean(), rel=1e-9, abs=1e-15)
        assert r["delta_low"] <= r["delta"] <= r["delta_high"], r

    doc = runs_document([_record(a, "stage 1"), _record(b, "stage 2 (final)")], metrics=["chamfer_l2"],
                        comparison=payload)
    html = render_html(doc)
    section = _section(html)
    assert "<h2>Visible and hidden surfaces</h2>" in section
    assert "<caption>Change from stage 1 to stage 2 (final) (same samples)</caption>" in section
    occ = next(r for r in rows if r["level"] == "all" and r["metric"] == "chamfer_comp_occluder_hidden")
    assert fmt_ci(occ["delta"], occ["delta_low"], occ["delta_high"]) in section
    # both runs' strata tables, and the columns' definitions in the methods
    assert "stage 1: by domain and occlusion bin" in section and "stage 2 (final): by domain and occlusion bin" in section
    assert "squared" in section and "completeness, occluder-hidden" in section
    assert "Completeness of one part of the GT surface" in html


def test_sentence_names_the_part_that_moved_most_and_its_figure():
    a, b = _frame(), _frame(scale=0.9, occluder_scale=0.5)  # occluder-hidden: -50%, the others -10%
    payload = compare_frames(a, b, labels=("stage 1", "stage 2 (final)"), protocol=PROTOCOL, n_resamples=200).to_dict()
    completeness, recall = visibility_change_sentences(payload)
    overall = {r["metric"]: r for r in visibility_change(payload) if r["stratum"] == "all"}
    occ = overall["chamfer_comp_occluder_hidden"]
    assert completeness.startswith("From stage 1 to stage 2 (final), completeness on the occluder-hidden part changed "
                                   f"by {fmt_ci(occ['delta'], occ['delta_low'], occ['delta_high'])} (-50% of stage 1's mean)")
    assert completeness.index("occluder-hidden part changed") < completeness.index("on the self-hidden part by")
    assert ": the occluder-hidden part moved most relative to stage 1's mean" in completeness
    assert "figure: the mean paired difference stage 2 (final) - stage 1 of chamfer_comp_<part>" in completeness
    assert "resampling whole pair_id groups" in completeness
    assert recall.startswith("From stage 1 to stage 2 (final), recall@0.05 on the ") and "recall@0.05_<part>" in recall
    doc = runs_document([_record(a, "stage 1"), _record(b, "stage 2 (final)")], metrics=["chamfer_l2"],
                        comparison=payload)
    section = _section(render_html(doc))
    assert "moved most relative to stage 1&#39;s mean" in section or "moved most relative to stage 1's mean" in section
    assert section.index("moved most") < section.index("<table>")  # the sentences lead the section


def test_no_section_without_the_columns_and_unavailable_when_all_nan():
    plain = _frame().drop(columns=COLS)
    plain.attrs["metrics"] = ["chamfer_l2"]
    run = _record(plain, "r")
    assert visibility_section([run]) is None
    html = render_html(runs_document([run], metrics=["chamfer_l2"]))
    assert 'id="visibility"' not in html and "Visible and hidden surfaces" not in html

    no_camera = _frame()
    no_camera[COLS] = math.nan  # what a manifest without cameras gives: every visibility column NaN
    html = render_html(runs_document([_record(no_camera, "r")], metrics=["chamfer_l2"]))
    section = _section(html)
    assert "<h2>Visible and hidden surfaces</h2>" in section
    assert "visibility split unavailable: the manifest has no camera" in section and "<table>" not in section
