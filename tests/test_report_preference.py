"""The "Human preference" and "Rubric QC" report sections: `sam3d-eval report --votes/--ratings` (runs optional),
`sam3d-eval preference --html`, the embedded figures, and bad judgement files failing with the line named."""

import base64
import re

import numpy as np
import pandas as pd
import pytest

from compare_fixtures import PROTOCOL_SAMPLES, make_pair_dataset
from sam3d_eval.cli.main import main
from sam3d_eval.data.manifest import load_manifest
from sam3d_eval.evaluate.sides import load_side
from sam3d_eval.evaluate.protocols import get_protocol
from sam3d_eval.io.judgements import read_ratings, read_votes
from sam3d_eval.report import judgement_sections, render_html, runs_document, stacked_bar_figure
from sam3d_eval.report.figures import COLOURS
from sam3d_eval.report.tables import fmt_ci, fmt_rate
from sam3d_eval.stats.preference import preference_summary
from sam3d_eval.stats.rubric import rubric_summary

RESAMPLES = 60


def _write_votes(path, seed=0, items=8, raters=3, strengths=(0.0, 0.9, 1.8)):
    rng = np.random.default_rng(seed)
    names = ["low", "mid", "top"]
    rows = []
    for item in range(items):
        for r in range(raters):
            for i in range(3):
                for j in range(i + 1, 3):
                    p_b = 1.0 / (1.0 + np.exp(strengths[i] - strengths[j]))
                    w = "tie" if rng.random() < 0.1 else ("b" if rng.random() < p_b else "a")
                    rows.append({"item_id": f"i{item}", "model_a": names[i], "model_b": names[j], "winner": w,
                                 "rater_id": f"r{r}"})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _write_ratings(path, seed=1, rounds=(1, 2, 3), items=6, raters=2):
    rng = np.random.default_rng(seed)
    rows = []
    for rnd in rounds:
        for item in range(items):
            for r in range(raters):
                s = rng.integers(4, 11, size=4)
                rows.append({"item_id": f"i{item}", "rater_id": f"r{r}", "geometry": s[0], "texture": s[1],
                             "completeness": s[2], "multiview": s[3], "round": rnd})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _svgs(html: str) -> list[str]:
    return [base64.b64decode(d).decode("utf-8") for d in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)]


def _table(html: str, caption: str) -> list[list[str]]:
    """The body cells of the table with this caption, as text."""
    m = re.search(r"<caption>" + re.escape(caption) + r"</caption>.*?<tbody>(.*?)</tbody>", html, re.S)
    assert m, f"no table captioned {caption!r}"
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", m.group(1), re.S)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("judgements")
    return _write_votes(root / "votes.csv"), _write_ratings(root / "ratings.csv")


def test_report_without_runs_has_both_sections_built_from_the_files(files, tmp_path):
    votes, ratings = files
    out = tmp_path / "j.html"
    assert main(["report", "--votes", str(votes), "--ratings", str(ratings), "--out", str(out),
                 "--resamples", str(RESAMPLES)]) == 0
    html = out.read_text()
    assert 'id="human-preference"' in html and 'id="rubric-qc"' in html
    assert "<script" not in html and not re.findall(r'(?:src|href)="(?!data:|#)', html)

    pref = preference_summary(read_votes(votes), bootstrap=RESAMPLES, seed=0).to_dict()
    board = _table(html, "Bradley-Terry leaderboard")
    # the rows are the leaderboard, strongest first, with its Elo and interval (same seed: same numbers)
    assert [r[1] for r in board] == [b["model"] for b in pref["leaderboard"]]
    assert board[0][1] == "top" and board[-1][1] == "low"
    assert [r[2] for r in board] == [fmt_ci(b["elo"], b["elo_low"], b["elo_high"], 1) for b in pref["leaderboard"]]
    pairs = _table(html, "Pairwise win rates")
    assert len(pairs) == 3
    first = pref["pairwise"][0]
    assert pairs[0][6] == fmt_rate(first["rate"], first["low"], first["high"])
    assert pairs[0][8] == fmt_rate(first["rate_ties_half"], first["low_ties_half"], first["high_ties_half"])
    assert [r[0] for r in _table(html, "Raters")] == ["r0", "r1", "r2"]

    rub = rubric_summary(read_ratings(ratings)).to_dict()
    acc = _table(html, "Accept rate per round")
    assert [r[0] for r in acc] == ["1", "2", "3"]
    for row, a in zip(acc, rub["accept"]):
        assert row[3] == fmt_rate(a["rate"], a["low"], a["high"])
        assert (row[6], row[7]) == (str(a["compensatory"]), str(a["near_threshold"]))
    agree = _table(html, "Agreement per criterion and on the accept decision")
    assert [r[0] for r in agree] == ["geometry", "texture", "completeness", "multiview", "accept"]
    assert all(r[1].startswith("cohen_kappa") for r in agree)  # two raters on every unit: Cohen's kappa

    # leaderboard interval plot, accept rate per round, failure-mode mix: three embedded SVG figures
    svgs = _svgs(html)
    assert len(svgs) == 3 and all("<svg" in s for s in svgs)
    assert "Bradley-Terry Elo" in html and "Failure-mode mix per round" in html


def test_stacked_bar_figure_stacks_the_failure_mix(files):
    rub = rubric_summary(read_ratings(files[1])).to_dict()
    fig = stacked_bar_figure(rub["failure_mix"], x="round", stack="mode", value="share_of_failures",
                             order=rub["definitions"]["failure_modes"], title="mix", ylabel="share")
    assert fig.uri.startswith("data:image/svg+xml;base64,")
    svg = base64.b64decode(fig.uri.split(",", 1)[1]).decode()
    # one segment per (round, mode) in the mode's colour, plus its legend patch: 3 + 1 per mode
    for colour in COLOURS[:5]:
        assert svg.lower().count(f"fill: {colour.lower()}") == 3 + 1
    for r in rub["failure_mix"]:
        assert f"{r['mode']} {r['share_of_failures'] or 0:.2f}" in fig.alt


def test_runs_document_appends_the_judgement_sections(files):
    protocol = get_protocol("default")
    summary = [dict(stratum="all", level="all", metric="chamfer_l2", n=3, n_failed=0, n_nan=0, n_used=3, mean=0.1,
                    low=0.05, high=0.2)]
    run = dict(label="r", run_dir="x", protocol=protocol.to_dict(), fingerprint=protocol.fingerprint(),
               counts={"samples": 3, "failed": 0}, summary=summary, occlusion_accuracy=None, domain_gap=[], metadata={})
    pref = preference_summary(read_votes(files[0]), bootstrap=0).to_dict()
    doc = runs_document([run], metrics=["chamfer_l2"], judgements=judgement_sections(pref, None))
    ids = [s["id"] for s in doc["sections"]]
    assert "human-preference" in ids and "rubric-qc" not in ids
    assert ids.index("human-preference") < ids.index("samples") < ids.index("methods")
    html = render_html(doc)
    assert "Bradley-Terry leaderboard" in html
    assert len(_svgs(html)) == 0  # no bootstrap, no intervals: the table alone


def test_report_with_a_run_and_votes(files, tmp_path):
    manifest, a, _ = make_pair_dataset(tmp_path, 4)
    protocol = get_protocol("default").with_overrides(num_samples=PROTOCOL_SAMPLES)
    run_dir = load_side(a, label="A", manifest=load_manifest(manifest), protocol=protocol,
                        runs_dir=tmp_path / "runs").run_dir
    out = tmp_path / "r.html"
    assert main(["report", str(run_dir), "--votes", str(files[0]), "--out", str(out), "--resamples", "50",
                 "--thumbnails", "0"]) == 0
    html = out.read_text()
    assert 'id="metrics"' in html and 'id="human-preference"' in html and 'id="rubric-qc"' not in html


def test_preference_html_flag(files, tmp_path, capsys):
    out = tmp_path / "p.html"
    assert main(["preference", "--ratings", str(files[1]), "--html", str(out)]) == 0
    html = out.read_text()
    assert 'id="rubric-qc"' in html and 'id="human-preference"' not in html
    assert len(_svgs(html)) == 2  # accept rate per round, failure mix
    assert main(["preference", str(files[0]), "--html", str(tmp_path / "p.txt")]) == 2
    assert "--html" in capsys.readouterr().err


def test_bad_votes_file_exits_2_naming_the_line(tmp_path, capsys):
    bad = tmp_path / "votes.csv"
    bad.write_text("item_id,model_a,model_b,winner,rater_id\ni1,x,y,a,r1\ni2,x,y,b,r1\ni3,y,y,a,r1\n")
    out = tmp_path / "r.html"
    assert main(["report", "--votes", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "line 4" in err and "compared with itself" in err
    assert not out.exists()
    assert main(["preference", str(bad), "--html", str(out)]) == 2
    assert "line 4" in capsys.readouterr().err and not out.exists()
    assert main(["report", "--out", str(out)]) == 2  # neither runs nor judgements


MATH_NAMES = ("$\\frac{$", "$5 vs $10")  # one breaks matplotlib's math parser, one would be typeset as math


@pytest.fixture()
def text_svgs(monkeypatch):
    """The SVG of every figure drawn, with text kept as text (svg.fonttype none) to read what was drawn."""
    import matplotlib

    from sam3d_eval.report import figures

    drawn: list[str] = []
    real = figures.figure_uri

    def keep_text(fig, fmt="svg"):
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            uri = real(fig, fmt)
        drawn.append(base64.b64decode(uri.split(",", 1)[1]).decode("utf-8"))
        return uri

    monkeypatch.setattr(figures, "figure_uri", keep_text)
    return drawn


def test_names_with_dollar_signs_are_drawn_as_written(text_svgs):
    from sam3d_eval.report.figures import interval_figure, occlusion_figure, phase_gap_figure

    a, b = MATH_NAMES
    interval_figure([{"m": a, "v": 1.0, "lo": 0.5, "hi": 1.5}, {"m": b, "v": 2.0, "lo": 1.0, "hi": 3.0}],
                    value="v", low="lo", high="hi", label="m", title=f"{a} vs {b}", xlabel=b)
    occlusion_figure({a: [{"occlusion_bin": b, "n": 3, "accuracy": 0.5, "low": 0.2, "high": 0.8}],
                      b: [{"occlusion_bin": b, "n": 3, "accuracy": 0.6, "low": 0.3, "high": 0.9}]}, title=a)
    phase_gap_figure([{"metric": a, "figure": "gap", "estimate": 0.1, "low": 0.0, "high": 0.2, "label": b}],
                     metrics=[a], title=b)
    stacked_bar_figure([{"round": a, "mode": b, "share": 0.5}], x="round", stack="mode", value="share",
                       title=a, ylabel=b, totals={a: b})
    assert len(text_svgs) == 4
    for svg in text_svgs:  # titles, tick labels, legends and annotations: each name literally, $ and all
        for name in MATH_NAMES:
            assert name in svg, (name, svg[:200])
    # the stacked bars draw the name as an x tick, a legend entry, the total above the bar and the title
    assert text_svgs[3].count(a) >= 2 and text_svgs[3].count(b) >= 3


def test_report_votes_with_math_like_model_names(tmp_path, capsys):
    rng = np.random.default_rng(3)
    names = [*MATH_NAMES, "plain"]
    rows = [{"item_id": f"i{k}", "model_a": names[i], "model_b": names[j],
             "winner": ["a", "b", "tie"][int(rng.integers(0, 3))], "rater_id": f"r{k % 2}"}
            for k in range(12) for i in range(3) for j in range(i + 1, 3)]
    votes = tmp_path / "votes.csv"
    pd.DataFrame(rows).to_csv(votes, index=False)
    out = tmp_path / "r.html"
    assert main(["report", "--votes", str(votes), "--out", str(out), "--resamples", str(RESAMPLES)]) == 0, \
        capsys.readouterr().err
    board = _table(out.read_text(), "Bradley-Terry leaderboard")
    assert {r[1] for r in board} == {"$\\frac{$", "$5 vs $10", "plain"}
