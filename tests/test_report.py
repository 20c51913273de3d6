"""The report layer and `sam3d-eval report` / `compare --out`: self-contained HTML, sections, figures, thumbnails."""

import base64
import io
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from compare_fixtures import PROTOCOL_SAMPLES, make_pair_dataset
from sam3d_eval.cli.main import main
from sam3d_eval.data.manifest import load_manifest
from sam3d_eval.evaluate.compare import compare_frames
from sam3d_eval.evaluate.sides import load_side
from sam3d_eval.evaluate.protocols import get_protocol
from sam3d_eval.io.mesh_io import load_mesh
from sam3d_eval.report import comparison_document, interval_figure, render_html, runs_document, thumbs_block
from sam3d_eval.report.tables import definition, fmt, fmt_ci, fmt_p
from sam3d_eval.report.thumbnails import render_thumbnails

PROTOCOL = get_protocol("default").with_overrides(num_samples=PROTOCOL_SAMPLES)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    manifest_path, a, b = make_pair_dataset(root, 10, missing_b=("s03",))
    manifest = load_manifest(manifest_path)
    side_a = load_side(a, label="A", manifest=manifest, protocol=PROTOCOL, runs_dir=root / "runs")
    side_b = load_side(b, label="B", manifest=manifest, protocol=PROTOCOL, runs_dir=root / "runs")
    return dict(root=root, manifest=manifest_path, a=side_a, b=side_b)


def _external_refs(html: str) -> list[str]:
    """Every src/href/url() target that is not an embedded data URI or an in-page anchor."""
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html) + re.findall(r"url\(([^)]*)\)", html)
    return [r for r in refs if not (r.startswith("data:") or r.startswith("#"))]


def _images(html: str) -> list[bytes]:
    out = []
    for mime, data in re.findall(r'src="data:(image/[a-z+]+);base64,([^"]+)"', html):
        out.append((mime, base64.b64decode(data)))
    return out


def test_formatting():
    assert fmt(0.12345) == "0.1235" and fmt(1.2e-4) == "1.200e-04" and fmt(float("nan")) == "-" and fmt(None) == "-"
    assert fmt_ci(0.5, 0.4, 0.6) == "0.5000 [0.4000, 0.6000]" and fmt_ci(0.5, None, 0.6) == "0.5000"
    assert fmt_p(3e-6) == "<1e-4" and fmt_p(0.0123) == "0.0123"
    assert "SQUARED" in definition("chamfer_l2") and "2PR" in definition("fscore@0.05")
    assert definition("chamfer_l1_occnet").startswith("Occupancy") and definition("unknown_metric") == ""


def test_interval_figure_is_an_embedded_svg_with_alt_text():
    fig = interval_figure([{"m": "x", "v": 1.0, "lo": 0.5, "hi": 1.5}, {"m": "y", "v": -2.0, "lo": None, "hi": None}],
                          value="v", low="lo", high="hi", label="m", title="T", xlabel="X")
    head, data = fig.uri.split(",", 1)
    assert head == "data:image/svg+xml;base64"
    svg = base64.b64decode(data).decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "http://" not in svg.split("<svg", 1)[1].split(">", 1)[1][:0]
    assert "x: 1 [0.5, 1.5]" in fig.alt and "y: -2" in fig.alt


def test_thumbnails_render_prediction_and_gt(scored):
    gt = load_mesh(scored["root"] / "gt" / "s00.ply")
    pred = load_mesh(scored["root"] / "a" / "s00.ply")
    out = render_thumbnails(pred, gt, size=64)
    for key in ("pred", "gt"):
        im = np.asarray(Image.open(io.BytesIO(base64.b64decode(out[key].split(",", 1)[1]))))
        assert im.shape == (64, 128, 3)
        assert (im < 250).any(axis=-1).mean() > 0.05  # the object covers part of the image, not a blank frame
        assert (im > 250).all(axis=-1).mean() > 0.3  # and the white background the rest
    # the prediction is framed by the GT box: a prediction moved away shows up elsewhere (or not at all)
    moved = type(pred)([pred.verts_list()[0] + torch.tensor([5.0, 0, 0])], pred.faces_list())
    far = render_thumbnails(moved, gt, size=64)
    assert far["pred"] != out["pred"] and far["gt"] == out["gt"]
    assert render_thumbnails(None, None) == {"pred": None, "gt": None}


def test_comparison_document_is_self_contained_and_escaped(scored):
    c = compare_frames(scored["a"].frame, scored["b"].frame, labels=("base<script>", "cand"), protocol=PROTOCOL,
                       n_resamples=200)
    doc = comparison_document(c.to_dict(), sides=[scored["a"].describe(), scored["b"].describe()])
    assert doc["verdict"]["level"] == "regression"
    ids = [s["id"] for s in doc["sections"]]
    assert ids[:3] == ["metrics", "domain", "occlusion-bin"] and ids[-1] == "methods"
    assert {"gap", "occlusion", "category", "preference", "samples"} <= set(ids)
    html = render_html(doc)
    assert "<script" not in html and "base&lt;script&gt;" in html  # labels are escaped, and there is no script
    assert _external_refs(html) == []
    assert html.index('class="verdict regression"') < html.index('id="metrics"')  # verdict first
    assert "s03" in html and "no prediction" in html  # B's failed sample is listed with its reason
    assert PROTOCOL.fingerprint() in html and "@media print" in html
    kinds = {m for m, _ in _images(html)}
    assert kinds == {"image/svg+xml"}


def test_report_cli_on_a_run_and_a_training_folder(scored, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(scored["b"].run_dir), "--out", str(out), "--resamples", "200", "--thumbnails", "3"]) == 0
    html = out.read_text()
    assert _external_refs(html) == []
    pngs = [d for m, d in _images(html) if m == "image/png"]
    assert len(pngs) == 6  # the 3 worst scored samples, prediction and GT each
    assert all(Image.open(io.BytesIO(d)).size == (320, 160) for d in pngs)
    worst = html[html.index('id="worst"'):html.index('id="methods"')]
    assert "<h3>s03</h3>" not in worst and "worst scored samples" in worst  # s03 failed: listed with its reason
    assert "no prediction for this sample" in html[html.index('id="samples"'):html.index('id="worst"')]
    assert "Per-category breakdown" in html and "Occlusion-stratified accuracy" in html

    # a training output folder: phase-boundary runs under stage*/eval/ and gap.csv across phases
    train = tmp_path / "train"
    shutil.copytree(scored["a"].run_dir, train / "stage1" / "eval" / "stage1-phase1")
    shutil.copytree(scored["b"].run_dir, train / "stage2" / "eval" / "stage2-final")
    rows = [dict(stage=s, phase=p, metric=m, figure=f, estimate=e, low=e - 0.1, high=e + 0.1, mean_synthetic=1.0,
                 mean_real=e)
            for s, p, e in ((1, "synthetic", 2.5), (2, "p1", 2.0), (2, "p2", 1.6), (2, "final", 1.2))
            for m, f in (("chamfer_l2", "gap_ratio"), ("fscore@0.05", "relative_drop"))]
    pd.DataFrame(rows).to_csv(train / "gap.csv", index=False)
    pd.DataFrame([dict(metric="chamfer_l2", figure="gap_ratio", design="paired", n_units_synthetic=9, n_units_real=9,
                       estimate_a=2.5, estimate_a_low=2.0, estimate_a_high=3.0, estimate_b=1.2, change=-1.3,
                       change_low=-1.9, change_high=-0.7, closed=0.8667, closed_low=0.5, closed_high=1.1,
                       closed_by_real=0.6, closed_by_real_low=0.3, closed_by_real_high=0.9, note=None)]).to_csv(train / "gap_change.csv", index=False)
    out2 = tmp_path / "t.html"
    assert main(["report", str(train), "--out", str(out2), "--resamples", "200", "--thumbnails", "0"]) == 0
    html2 = out2.read_text()
    assert "gap across curriculum phases" in html2 and "s2 final" in html2
    assert "2.500 (s1 synthetic) -&gt; 1.200 (s2 final)" in html2  # the verdict says how the gap moved
    assert "stage2-final" in html2  # the last phase's evaluation is the one reported
    assert "How the gap moved from stage 1 to stage 2" in html2 and "-1.300 [-1.900, -0.700]" in html2
    assert "0.87 [0.50, 1.10]" in html2 and "0.60 [0.30, 0.90]" in html2  # share closed, and by the real split
    # not a run: a clear error
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.html")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "x.html")]) == 2
    assert "neither a run folder" in capsys.readouterr().err


def test_compare_out_writes_the_report_with_thumbnails(scored, tmp_path, capsys):
    out = tmp_path / "c.html"
    code = main(["compare", str(scored["a"].run_dir), str(scored["b"].run_dir), "--data", str(scored["manifest"]),
                 "--out", str(out), "--resamples", "200", "--thumbnails", "2", "--quiet"])
    assert code == 0
    html = out.read_text()
    assert _external_refs(html) == []
    worst = html[html.index('id="worst"'):html.index('id="methods"')]
    assert "<h3>s03</h3>" not in worst  # B failed on s03: listed under "Samples left out", not in the gallery
    left_out = html[html.index('id="samples"'):html.index('id="worst"')]
    assert "<td>s03</td>" in left_out and "no prediction for this sample" in left_out
    pngs = [d for m, d in _images(html) if m == "image/png"]
    assert len(pngs) == 6  # the 2 scored samples where B lost most: A, B and GT each
    assert "not rendered" not in html


def test_runs_document_degrades_without_domains_or_phases():
    summary = [dict(stratum="all", level="all", metric="chamfer_l2", n=3, n_failed=0, n_nan=0, n_used=3, mean=0.1,
                    low=0.05, high=0.2)]
    run = dict(label="r", run_dir="x", protocol=PROTOCOL.to_dict(), fingerprint=PROTOCOL.fingerprint(),
               counts={"samples": 3, "failed": 0}, summary=summary, occlusion_accuracy=None, domain_gap=[], metadata={})
    html = render_html(runs_document([run], metrics=["chamfer_l2"]))
    assert "Not available: the runs do not hold samples of both domains." in html
    assert "0.1000 [0.0500, 0.2000]" in html and "gap across" not in html
    with pytest.raises(ValueError):
        runs_document([], metrics=[])
    json.dumps(run)  # the record a report takes is plain JSON


def test_report_of_a_data_engine_folder_plots_rounds_and_tables_them(scored, tmp_path):
    eng = tmp_path / "engine"
    shutil.copytree(scored["a"].run_dir, eng / "rounds" / "00" / "eval")
    shutil.copytree(scored["b"].run_dir, eng / "rounds" / "01" / "eval")
    pd.DataFrame([dict(round=k, metric="chamfer_l2", figure="gap_ratio", estimate=e, low=e - 0.2, high=e + 0.2)
                  for k, e in ((0, 2.4), (1, 1.9))]).to_csv(eng / "rounds.csv", index=False)
    pd.DataFrame([dict(round=1, images=20, accepted=12, accept_rate=0.6, accept_low=0.39, accept_high=0.78,
                       cost_per_accepted=15.0, agreement_accept=0.41, failure_geometry=0.5, failure_texture=0.25)]
                 ).to_csv(eng / "engine_rounds.csv", index=False)
    out = tmp_path / "e.html"
    assert main(["report", str(eng), "--out", str(out), "--resamples", "200", "--thumbnails", "0"]) == 0
    html = out.read_text()
    assert "gap across data-engine rounds" in html and "2.400 (round 0) -&gt; 1.900 (round 1)" in html
    assert "Data-engine rounds" in html and "0.600 [0.390, 0.780]" in html and "$15.00" in html
    assert "geometry" in html and _external_refs(html) == []


def test_gap_section_says_when_intervals_resample_pairs():
    summary = [dict(stratum="all", level="all", metric="chamfer_l2", n=6, n_failed=0, n_nan=0, n_used=6, mean=0.1,
                    low=0.05, high=0.2)]
    gap = dict(metric="chamfer_l2", figure="gap_ratio", direction="lower", mean_synthetic=0.1, mean_real=0.13,
               estimate=1.3, low=1.1, high=1.5, n_synthetic=3, n_failed_synthetic=0, n_nan_synthetic=0, n_real=3,
               n_failed_real=0, n_nan_real=0, note=None)
    def doc(**extra):
        run = dict(label="r", run_dir="x", protocol=PROTOCOL.to_dict(), fingerprint=PROTOCOL.fingerprint(),
                   counts={"samples": 6, "failed": 0}, summary=summary, occlusion_accuracy=None,
                   domain_gap=[{**gap, **extra}], metadata={})
        return render_html(runs_document([run], metrics=["chamfer_l2"]))
    paired, unpaired = doc(design="paired", n_pairs=3), doc(design="two-sample", n_pairs=None)
    assert "resample whole pairs" in paired and "3/3 (3 pairs)" in paired
    assert "two-sample bootstrap intervals" in unpaired and "pairs)" not in unpaired


def test_occlusion_figure_takes_wilson_ends_a_rounding_error_inside_the_estimate():
    from sam3d_eval.report.figures import occlusion_figure
    from sam3d_eval.stats import wilson_interval

    lo, hi = wilson_interval(0, 3)  # 0/3 accurate: the low end is 0 up to rounding
    recs = [dict(occlusion_bin="[0,0.1)", n=3, accuracy=0.0, low=lo + 1e-17, high=hi),
            dict(occlusion_bin="[0.1,0.3)", n=2, accuracy=0.5, low=0.3, high=0.5 - 1e-12)]  # an upper end inside
    fig = occlusion_figure({"all": recs}, title="t")
    assert "all [0,0.1): 0.00 (n=3)" in fig.alt


def _sentence_payload(rows, failures, regressions=()):
    """A comparison payload with just what `decision_sentence` reads."""
    table = [dict(stratum="all", level="all", metric=m, significant=sig, better=bet, p_holm=p) for m, sig, bet, p in rows]
    table.append(dict(stratum="domain", level="real", metric="fscore@0.05", significant=True, better="A", p_holm=1e-3))
    return {"labels": ["stage 1", "stage 2 (final)"], "table": table, "failures": failures,
            "regressions": [{"metric": m} for m in regressions]}


def test_decision_sentence_says_the_verdict_in_words():
    from sam3d_eval.report import decision_sentence

    same = dict(rate_a=0.0, rate_b=0.0, significant=False, worse=None, pvalue=1.0, unit="sample")
    p = _sentence_payload([("chamfer_l2", False, "B", 0.3), ("normal_consistency", True, "B", 0.01),
                           ("fscore@0.05", False, "A", 0.6)], same)
    # the domain stratum's significant row does not count: only the "all" rows decide
    assert decision_sentence(p) == ("stage 2 (final) is better than stage 1 on normal_consistency and no worse "
                                    "elsewhere; failures are the same (0.0% of the samples).")
    more = dict(rate_a=0.05, rate_b=0.2, significant=True, worse="B", pvalue=0.01, unit="sample")
    p = _sentence_payload([("chamfer_l2", True, "A", 0.01), ("normal_consistency", True, "B", 0.01),
                           ("fscore@0.05", True, "A", 0.02)], more, regressions=["chamfer_l2", "failure rate"])
    assert decision_sentence(p) == ("stage 2 (final) is better than stage 1 on normal_consistency but worse on "
                                    "chamfer_l2 and fscore@0.05 (a regression on chamfer_l2); stage 2 (final) fails "
                                    "more often (20.0% against 5.0%, a regression).")
    apart = dict(rate_a=0.05, rate_b=0.1, significant=False, worse=None, pvalue=0.5, unit="cluster")
    p = _sentence_payload([("chamfer_l2", True, "A", 0.01), ("normal_consistency", False, "B", None)], apart)
    assert decision_sentence(p) == ("stage 2 (final) is worse than stage 1 on chamfer_l2 (not counted as a "
                                    "regression); not testable: normal_consistency; failures do not differ "
                                    "significantly (stage 1 5.0%, stage 2 (final) 10.0%).")
    fewer = dict(rate_a=0.1, rate_b=0.0, significant=True, worse="A", pvalue=0.01, unit="sample")
    p = _sentence_payload([("chamfer_l2", False, "A", 0.4)], fewer)
    assert decision_sentence(p) == ("stage 2 (final) and stage 1 do not differ significantly on any metric; "
                                    "stage 2 (final) fails less often (0.0% against 10.0%).")


def test_comparison_report_opens_with_the_decision_before_the_points(scored):
    from sam3d_eval.report import decision_sentence

    payload = compare_frames(scored["a"].frame, scored["b"].frame, labels=("stage 1", "stage 2"), protocol=PROTOCOL,
                             n_resamples=200).to_dict()
    doc = comparison_document(payload)
    v = doc["verdict"]
    assert v["headline"] == decision_sentence(payload)
    worse = [r["metric"] for r in payload["table"] if r["stratum"] == "all" and r["significant"] and r["better"] == "A"]
    assert worse and v["headline"].startswith(f"stage 2 is worse than stage 1 on {worse[0]}")
    assert "(a regression)" in v["headline"] and "failures do not differ significantly" in v["headline"]
    assert v["points"][0] == payload["verdict"]  # then the verdict as the comparison states it, and the rest
    assert any(p.startswith(f"Regression on {worse[0]}: ") for p in v["points"])
    html = render_html(doc)
    sentence = html.index(f"<h2>{v['headline']}</h2>")
    assert sentence < html.index("<li>") < html.index('id="metrics"')
    # the methods section names the definitions by where they are written down (the protocol's own
    # description, printed as it is, is left out here: the report's text alone is checked)
    html = render_html(comparison_document({**payload, "protocol": {**payload["protocol"], "source": "registry"}}))
    assert "DESIGN.md" not in html and "Metric definitions (docs/definitions.md)" in html


def _run(label, mean):
    summary = [dict(stratum="all", level="all", metric="chamfer_l2", n=3, n_failed=0, n_nan=0, n_used=3, mean=mean,
                    low=mean / 2, high=mean * 2)]
    return dict(label=label, run_dir=f"runs/{label}", protocol=PROTOCOL.to_dict(), fingerprint=PROTOCOL.fingerprint(),
                counts={"samples": 3, "failed": 0}, summary=summary, occlusion_accuracy=None, domain_gap=[], metadata={})


def test_runs_report_states_the_last_run_against_the_first(scored):
    from sam3d_eval.report import decision_sentence

    payload = compare_frames(scored["a"].frame, scored["b"].frame, labels=("stage 1", "stage 2"), protocol=PROTOCOL,
                             n_resamples=200).to_dict()
    runs = [_run("stage 1", 0.1), _run("stage 2", 0.2)]
    doc = runs_document(runs, metrics=["chamfer_l2"], comparison=payload)
    v = doc["verdict"]
    assert v["level"] == "regression" and v["headline"] == decision_sentence(payload)
    assert v["headline"].startswith("stage 2 is worse than stage 1") and "latest" not in v["headline"]
    assert v["points"][0] == f"stage 2 against stage 1: {payload['verdict']}"
    assert any(p.startswith("Regression on chamfer_l2: ") for p in v["points"])
    metrics = next(s for s in doc["sections"] if s["id"] == "metrics")
    table = next(b for b in metrics["blocks"] if b.get("caption") == "stage 2 against stage 1")
    overall = [r for r in payload["table"] if r["stratum"] == "all"]
    assert [row[0] for row in table["rows"]] == [r["metric"] for r in overall]
    assert table["rows"][0][5]["text"] == fmt_ci(overall[0]["delta"], overall[0]["delta_low"], overall[0]["delta_high"])
    assert "worse" in table["rows"][0][5]["cls"]  # coloured by the comparison's significance
    html = render_html(doc)
    assert html.index("<caption>stage 2 against stage 1</caption>") < html.index('id="strata"' if 'id="strata"' in html else 'id="gap"')

    # without a comparison the report says so, and shows no B-against-A table
    plain = runs_document(runs, metrics=["chamfer_l2"])
    assert plain["verdict"]["level"] == "info"
    assert plain["verdict"]["headline"] == ("2 runs; the last is stage 2 (3 of 3 samples scored); no comparison between "
                                            "the runs was computed.")
    assert "against" not in render_html(plain).split('id="metrics"', 1)[1].split("</section>", 1)[0]
    one = runs_document(runs[1:], metrics=["chamfer_l2"])
    assert one["verdict"]["headline"] == "stage 2: 3 of 3 samples scored; mean chamfer_l2 0.2000 [0.1000, 0.4000]."


def test_worst_samples_gallery_gives_a_failed_sample_its_reason():
    thumbs = [
        {"title": "s03", "caption": "failed: no prediction for this sample (domain real, category box)",
         "images": [{"label": "prediction", "uri": None, "missing": "prediction not stored (the run's source cannot be rebuilt)"},
                    {"label": "ground truth", "uri": None}]},
        {"title": "s05", "caption": "chamfer_l2 0.2", "error": "CUDA out of memory",
         "images": [{"label": "prediction", "uri": None}, {"label": "ground truth", "uri": None}]},
        {"title": "s07", "caption": "chamfer_l2 0.1",
         "images": [{"label": "prediction", "uri": None, "missing": "the prediction cannot be read again"}]},
    ]
    html = render_html(runs_document([_run("r", 0.1)], metrics=["chamfer_l2"], thumbnails=thumbs))
    worst = html[html.index('id="worst"'):html.index('id="methods"')]
    assert "prediction not stored" not in worst and "cannot be rebuilt" not in worst
    assert '<div class="missing">failed: no prediction for this sample</div>' in worst
    assert '<div class="missing">failed: CUDA out of memory</div>' in worst
    assert '<div class="missing">the prediction cannot be read again</div>' in worst  # a scored sample: as given
    assert worst.count("not rendered") == 2  # the ground truths, whatever the prediction did
    assert "The worst scored samples of r" in worst and "Failed samples" in worst
    assert thumbs_block(thumbs)["items"][0]["images"][0]["missing"] == "failed: no prediction for this sample"


def test_one_number_format_for_terminal_and_html():
    from sam3d_eval.cli.table import _fmt
    from sam3d_eval.report.tables import fmt, fmt_ci, fmt_fixed, fmt_rate

    assert fmt(0.5) == "0.5000" and fmt(1.234e-3) == "1.234e-03" and fmt(float("inf")) == "inf"
    assert fmt(float("nan")) == "-" and fmt(None, missing="nan") == "nan" and fmt(-float("inf")) == "-inf"
    assert _fmt(1.234e-3) == fmt(1.234e-3) and _fmt(float("nan")) == "nan"  # the terminal table's missing value
    assert fmt_ci(0.5, 0.4, float("nan")) == "0.5000" and fmt_ci(0.5, 0.4, 0.6) == "0.5000 [0.4000, 0.6000]"
    assert fmt_fixed(1503.4, 0) == "1503" and fmt_fixed(None) == "-"
    assert fmt_rate(0.25, 0.089, 0.532) == "0.250 [0.089, 0.532]" and fmt_rate(0.25) == "0.250"
