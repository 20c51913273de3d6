"""Rubric quality control: decisions, accept-rate intervals (coverage by simulation), agreement by design,
failure-mode mix, rater bias and ratings-file validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sam3d_eval.cli.main import main
from sam3d_eval.io.judgements import JudgementFileError, read_ratings, validate_ratings
from sam3d_eval.stats import krippendorff_alpha
from sam3d_eval.stats.rubric import (
    CRITERIA, accept_rates, failure_mix, rater_bias, rating_decisions, rubric_agreement, rubric_summary,
)


def _ratings(scores, raters=None, rnd=1, occlusion=None):
    scores = np.asarray(scores, dtype=float)  # (items, raters, 4)
    rows = []
    for i in range(scores.shape[0]):
        for r in range(scores.shape[1]):
            row = {"item_id": f"i{i}", "rater_id": (raters or [f"r{k}" for k in range(scores.shape[1])])[r],
                   **dict(zip(CRITERIA, scores[i, r])), "round": rnd}
            if occlusion is not None:
                row["occlusion"] = occlusion[i]
            rows.append(row)
    return pd.DataFrame(rows)


def test_decisions_compensatory_near_and_failure_modes():
    scores = [[[10, 10, 10, 5]],   # 35: accepted with a failing criterion -> compensatory, multi-view failure
              [[8, 8, 8, 8]],      # 32: accepted, near the threshold
              [[8, 8, 5, 8]],      # 29: rejected, completeness fails; occluded item -> occlusion
              [[8, 8, 5, 8]],      # same, unoccluded -> incompleteness
              [[2, 9, 9, 9]]]      # 29: geometry fails
    d = rating_decisions(_ratings(scores, occlusion=[0, 0, 0.5, 0.1, 0]))
    assert d["total"].tolist() == [35, 32, 29, 29, 29]
    assert d["accepted"].tolist() == [True, True, False, False, False]
    assert d["compensatory"].tolist() == [True, False, False, False, False]
    assert d["near_threshold"].tolist() == [False, True, False, False, False]
    assert d["fail_occlusion"].tolist() == [False, False, True, False, False]
    assert d["fail_incompleteness"].tolist() == [False, False, False, True, False]
    mix = failure_mix(_ratings(scores, occlusion=[0, 0, 0.5, 0.1, 0])).set_index("mode")
    assert mix["count"].to_dict() == {"geometry": 1, "texture": 0, "incompleteness": 1, "occlusion": 1, "multi-view": 1}
    assert mix.loc["geometry", "share"] == pytest.approx(1 / 5)


def test_identical_raters_agree_perfectly_under_every_design():
    rng = np.random.default_rng(0)
    q = rng.integers(3, 11, size=(60, 1, 4))
    for n_raters, scores, accept in ((2, "cohen_kappa (quadratic, 0-10 scale)", "cohen_kappa"),
                                     (4, "krippendorff_alpha (interval)", "fleiss_kappa")):
        a = rubric_agreement(_ratings(np.repeat(q, n_raters, axis=1))).set_index("target")
        assert a.loc["geometry", "method"] == scores and a.loc["accept", "method"] == accept
        assert np.allclose(a["value"], 1.0) and np.allclose(a["krippendorff_alpha"], 1.0)
    # a missing rating switches to Krippendorff's alpha
    frame = _ratings(np.repeat(q, 3, axis=1)).iloc[1:]
    a = rubric_agreement(frame).set_index("target")
    assert a.loc["accept", "method"] == "krippendorff_alpha (nominal)" and a.loc["accept", "value"] == pytest.approx(1.0)


@pytest.mark.parametrize("n_raters", [2, 3])
def test_independent_random_raters_agree_near_zero(n_raters):
    rng = np.random.default_rng(n_raters)
    # scores around the threshold so accept decisions vary
    scores = rng.integers(5, 11, size=(500, n_raters, 4))
    a = rubric_agreement(_ratings(scores)).set_index("target")
    assert (a["value"].abs() < 0.08).all(), a
    assert (a["krippendorff_alpha"].abs() < 0.08).all()


def test_accept_rate_wilson_interval_covers_in_simulation():
    rng = np.random.default_rng(7)
    p, n_items, n_rounds = 0.7, 40, 400
    accepted = rng.random((n_rounds, n_items)) < p
    rows = []
    for rnd in range(n_rounds):
        for i in range(n_items):
            s = [9, 9, 9, 9] if accepted[rnd, i] else [5, 5, 5, 5]
            rows.append({"item_id": f"i{i}", "rater_id": "r", **dict(zip(CRITERIA, s)), "round": rnd})
    rates = accept_rates(pd.DataFrame(rows))
    assert len(rates) == n_rounds
    assert (rates["accepted"].to_numpy() == accepted.sum(axis=1)).all()
    cover = ((rates["low"] <= p) & (p <= rates["high"])).mean()
    assert 0.92 <= cover <= 0.98


def test_item_is_the_accept_unit_and_rater_bias_is_recovered():
    rng = np.random.default_rng(1)
    truth = rng.uniform(3, 7, size=(200, 1, 4))
    bias = np.array([[0.0, 0, 0, 0], [1.0, -1.0, 0.5, 0], [-1.0, 0, 0, 2.0]])
    scores = truth + bias[None]
    summ = rubric_summary(_ratings(scores))
    est = summ.raters.set_index("rater_id")[list(CRITERIA)].to_numpy()
    # relative to the panel: bias_r - mean of the others' biases
    expected = np.array([b - (bias.sum(0) - b) / 2 for b in bias])
    assert np.allclose(est, expected, atol=1e-9)
    acc = summ.accept.iloc[0]
    assert acc["items"] == 200 and acc["ratings"] == 600


def test_bad_ratings_name_the_line(tmp_path):
    rows = [{"item_id": "a", "rater_id": "r1", "geometry": 8, "texture": 8, "completeness": 8, "multiview": 8, "round": 1},
            {"item_id": "b", "rater_id": "r1", "geometry": 11, "texture": 8, "completeness": 8, "multiview": 8, "round": 1},
            {"item_id": "c", "rater_id": "r1", "geometry": "x", "texture": 8, "completeness": 8, "multiview": 8, "round": 1},
            {"item_id": "a", "rater_id": "r1", "geometry": 7, "texture": 8, "completeness": 8, "multiview": 8, "round": 1}]
    path = tmp_path / "r.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(JudgementFileError) as err:
        read_ratings(path)
    msg = str(err.value)
    assert "line 3 (item_id 'b', rater_id 'r1'): geometry '11' is outside 0-10" in msg
    assert "line 4 (item_id 'c', rater_id 'r1'): geometry 'x' is not a number" in msg
    # duplicates are checked once the values are usable
    pd.DataFrame([rows[0], rows[3]]).to_csv(path, index=False)
    with pytest.raises(JudgementFileError, match="line 3 .*duplicates the rating on line 2"):
        read_ratings(path)
    with pytest.raises(JudgementFileError, match=r"missing column\(s\) \['multiview'\]"):
        validate_ratings(pd.DataFrame(rows).drop(columns="multiview"))


def test_cli_ratings_table(tmp_path, capsys):
    rng = np.random.default_rng(2)
    path = tmp_path / "r.jsonl"
    _ratings(rng.integers(4, 11, size=(20, 2, 4))).to_json(path, orient="records", lines=True)
    assert main(["preference", "--ratings", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cohen_kappa (quadratic, 0-10 scale)" in out and "accept rate" in out


def test_accept_trend_detects_a_rise_and_not_a_flat_rate():
    from sam3d_eval.stats.rubric import accept_trend

    rounds = np.arange(1, 9)
    rising = accept_trend(rounds, [60, 66, 72, 76, 80, 85, 90, 95], [100] * 8)
    assert rising["low"] > 0 and rising["pvalue"] < 1e-6
    assert rising["fitted_first"] == pytest.approx(0.6, abs=0.05) and rising["fitted_last"] == pytest.approx(0.95, abs=0.03)
    flat = accept_trend(rounds, [60, 58, 62, 61, 59, 60, 61, 60], [100] * 8)
    assert flat["low"] < 0 < flat["high"]
    assert np.isnan(accept_trend([1, 2], [0, 0], [5, 5])["slope"])


def test_accept_trend_refuses_perfect_separation():
    from sam3d_eval.stats.rubric import accept_trend

    res = accept_trend([1, 2, 3], [0, 5, 5], [5, 5, 5])
    assert np.isnan(res["slope"]) and "separation" in res["note"]


# Two raters' geometry scores on 12 items: on the 0-10 scale a 2 against an 8 is 6 points apart, not the
# one rank step between the neighbouring values seen.
GEOMETRY_R1 = [2, 8, 9, 10, 10, 9, 8, 2, 9, 10, 8, 9]
GEOMETRY_R2 = [8, 8, 10, 10, 9, 9, 9, 2, 8, 10, 2, 9]


def _geometry_frame(*raters):
    scores = np.full((len(raters[0]), len(raters), 4), 9.0)
    scores[:, :, 0] = np.array(raters).T
    return _ratings(scores)


def test_score_agreement_weighs_the_0_10_distance():
    r1, r2 = np.array(GEOMETRY_R1), np.array(GEOMETRY_R2)
    # quadratic weighted kappa by hand from the 11 x 11 table over the scores 0..10
    table = np.zeros((11, 11))
    np.add.at(table, (r1, r2), 1.0)
    table /= table.sum()
    i, j = np.indices((11, 11))
    w = (i - j) ** 2.0
    kappa = 1.0 - np.sum(w * table) / np.sum(w * np.outer(table.sum(1), table.sum(0)))
    alpha = krippendorff_alpha(np.vstack([r1, r2]).astype(float), "interval")
    assert (round(kappa, 3), round(alpha, 3)) == (0.567, 0.585)
    a = rubric_agreement(_geometry_frame(GEOMETRY_R1, GEOMETRY_R2)).set_index("target")
    assert a.loc["geometry", "method"] == "cohen_kappa (quadratic, 0-10 scale)"
    assert a.loc["geometry", "value"] == pytest.approx(kappa, rel=1e-12)
    assert a.loc["geometry", "krippendorff_alpha"] == pytest.approx(alpha, rel=1e-12)


def test_three_raters_report_interval_alpha_for_scores():
    r3 = [3, 7, 9, 10, 9, 9, 8, 2, 9, 9, 4, 10]
    a = rubric_agreement(_geometry_frame(GEOMETRY_R1, GEOMETRY_R2, r3)).set_index("target")
    alpha = krippendorff_alpha(np.array([GEOMETRY_R1, GEOMETRY_R2, r3], dtype=float), "interval")
    assert a.loc["geometry", "method"] == "krippendorff_alpha (interval)"
    assert a.loc["geometry", "value"] == pytest.approx(alpha, rel=1e-12)
    assert a.loc["geometry", "raters"] == 3 and a.loc["geometry", "complete"]


def test_fractional_scores_use_interval_alpha_with_two_raters():
    r2 = np.array(GEOMETRY_R2, dtype=float)
    r2[0] = 7.5
    a = rubric_agreement(_geometry_frame(GEOMETRY_R1, r2)).set_index("target")
    assert a.loc["geometry", "method"] == "krippendorff_alpha (interval)"
    assert a.loc["geometry", "value"] == pytest.approx(
        krippendorff_alpha(np.vstack([GEOMETRY_R1, r2]).astype(float), "interval"), rel=1e-12)


def _jsonl(path, rows):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GOOD_RATING = {"item_id": "a", "rater_id": "r1", "geometry": 8, "texture": 8, "completeness": 8, "multiview": 8,
               "round": 1}


@pytest.mark.parametrize("column", ["geometry", "multiview"])
def test_boolean_scores_are_not_numbers(tmp_path, column):
    path = _jsonl(tmp_path / "r.jsonl", [GOOD_RATING, {**GOOD_RATING, "item_id": "b", column: True}])
    with pytest.raises(JudgementFileError, match=rf"r.jsonl line 2 \(item_id 'b', rater_id 'r1'\): {column} True is not a number"):
        read_ratings(path)
    path = _jsonl(tmp_path / "r.jsonl", [GOOD_RATING, {**GOOD_RATING, "item_id": "b", "occlusion": False}])
    with pytest.raises(JudgementFileError, match="line 2 .*occlusion False is not a fraction"):
        read_ratings(path)
    path = _jsonl(tmp_path / "r.jsonl", [GOOD_RATING, {**GOOD_RATING, "item_id": "b", "round": True}])
    with pytest.raises(JudgementFileError, match="line 2 .*round True is not a whole number"):
        read_ratings(path)


def test_infinite_round_is_a_one_line_error_naming_the_line(tmp_path, capsys):
    csv = tmp_path / "r.csv"
    pd.DataFrame([GOOD_RATING, {**GOOD_RATING, "item_id": "b", "round": "inf"}]).to_csv(csv, index=False)
    jl = tmp_path / "r.jsonl"
    jl.write_text('{"item_id": "a", "rater_id": "r1", "geometry": 8, "texture": 8, "completeness": 8, "multiview": 8,'
                  ' "round": 1}\n'
                  '{"item_id": "b", "rater_id": "r1", "geometry": 8, "texture": 8, "completeness": 8, "multiview": 8,'
                  ' "round": Infinity}\n')
    for path, shown in ((csv, "'inf'"), (jl, "inf")):
        line = 3 if path.suffix == ".csv" else 2  # the CSV header is line 1
        with pytest.raises(JudgementFileError, match=rf"{path.name} line {line} \(item_id 'b', rater_id 'r1'\): round {shown} is not"):
            read_ratings(path)
        assert main(["preference", "--ratings", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert f"{path} line" in err and "round" in err and "\n" not in err


def test_non_utf8_ratings_and_control_characters_in_ids(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"item_id": "a"}\n{"item_id": "\xff"}\n')
    with pytest.raises(JudgementFileError, match=r"r.jsonl line 2: not UTF-8"):
        read_ratings(path)
    path = _jsonl(path, [GOOD_RATING, {**GOOD_RATING, "rater_id": "r\u202e2"}])
    with pytest.raises(JudgementFileError, match=r"line 2 .*rater_id 'r\\u202e2' holds control or invisible character\(s\) U\+202E"):
        read_ratings(path)
