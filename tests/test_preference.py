"""Preference votes: file validation naming rows, pairwise win rates, Bradley-Terry leaderboard, per-rater
agreement/consistency, and the `sam3d-eval preference` command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sam3d_eval.cli.main import main
from sam3d_eval.io.judgements import JudgementFileError, read_votes, validate_votes
from sam3d_eval.stats.preference import pairwise_win_rates, preference_summary, rater_agreement, vote_agreement


def _simulated_votes(seed=0, items=40, raters=3, strengths=(0.0, 0.8, 1.6), tie_p=0.1):
    rng = np.random.default_rng(seed)
    models = [f"m{i}" for i in range(len(strengths))]
    rows = []
    for item in range(items):
        for r in range(raters):
            for i in range(len(models)):
                for j in range(i + 1, len(models)):
                    p_b = 1.0 / (1.0 + np.exp(strengths[i] - strengths[j]))
                    w = "tie" if rng.random() < tie_p else ("b" if rng.random() < p_b else "a")
                    rows.append({"item_id": f"i{item}", "model_a": models[i], "model_b": models[j], "winner": w,
                                 "rater_id": f"r{r}"})
    return pd.DataFrame(rows)


def test_pairwise_counts_and_both_tie_conventions():
    votes = pd.DataFrame({"item_id": list("pqrstu"), "model_a": ["x", "y", "x", "x", "y", "x"],
                          "model_b": ["y", "x", "y", "y", "x", "y"], "winner": ["a", "a", "tie", "a", "b", "b"],
                          "rater_id": ["r"] * 6})
    row = pairwise_win_rates(validate_votes(votes)).iloc[0]
    # x beats y: rows 0, 3, 4 (b of a y-x vote); y beats x: rows 1, 5; one tie
    assert (row["model"], row["opponent"], row["wins"], row["losses"], row["ties"]) == ("x", "y", 3, 2, 1)
    assert row["rate"] == pytest.approx(3 / 5)
    assert row["rate_ties_half"] == pytest.approx(3.5 / 6)
    assert row["low"] < 0.6 < row["high"]


def test_bradley_terry_orders_simulated_models_and_clusters_by_item_and_rater():
    s = preference_summary(_simulated_votes(), bootstrap=200, seed=1)
    board = s.leaderboard.sort_values("elo")
    assert list(board.index) == ["m0", "m1", "m2"]
    assert s.settings["cluster"] == ["item_id", "rater_id"]
    assert (board["elo_low"] < board["elo"]).all() and (board["elo"] < board["elo_high"]).all()
    # the true log-strength gap m2 - m0 (1.6) lies inside the difference of the loose bounds
    assert board.loc["m2", "log_strength_high"] - board.loc["m0", "log_strength_low"] > 1.6 * 0.7
    doc = s.to_dict()
    json.dumps(doc)  # JSON-ready: the report renders it
    assert doc["leaderboard"][0]["model"] == "m2"


def test_rater_agreement_identical_vs_contrarian():
    base = _simulated_votes(seed=3, raters=1, tie_p=0.0)
    same = [base.assign(rater_id=f"r{k}") for k in range(3)]
    flip = base.assign(rater_id="contrarian", winner=base["winner"].map({"a": "b", "b": "a"}))
    votes = pd.concat([*same, flip], ignore_index=True)
    res = rater_agreement(votes).set_index("rater_id")
    assert (res.loc[["r0", "r1", "r2"], "agreement"] == 1.0).all()
    assert res.loc["contrarian", "agreement"] == 0.0
    assert vote_agreement(pd.concat(same, ignore_index=True))["alpha"] == pytest.approx(1.0)


def test_circular_triad_is_counted_and_consistency_uses_the_leaderboard():
    votes = pd.DataFrame({"item_id": ["i"] * 3, "model_a": ["a", "b", "c"], "model_b": ["b", "c", "a"],
                          "winner": ["a", "a", "a"], "rater_id": ["r"] * 3})
    res = rater_agreement(votes)
    assert res.loc[0, "circular_triads"] == 1
    board = pd.DataFrame({"log_strength": [1.0, 0.0, -1.0]}, index=["a", "b", "c"])
    # a>b and b>c agree with the board, c>a does not
    assert rater_agreement(votes, board).loc[0, "consistency"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("rows, message", [
    ([{"item_id": "i1", "model_a": "x", "model_b": "x", "winner": "a", "rater_id": "r"}], "compared with itself"),
    ([{"item_id": "i1", "model_a": "x", "model_b": "zz", "winner": "a", "rater_id": "r"}], "unknown model"),
    ([{"item_id": "i1", "model_a": "x", "model_b": "y", "winner": "maybe", "rater_id": "r"}], "not a, b or tie"),
    ([{"item_id": "i1", "model_a": "x", "model_b": "y", "winner": "a", "rater_id": "r"},
      {"item_id": "i1", "model_a": "y", "model_b": "x", "winner": "b", "rater_id": "r"}], "duplicates the vote on line 3"),
])
def test_bad_votes_name_the_line(tmp_path, rows, message):
    good = {"item_id": "i0", "model_a": "x", "model_b": "y", "winner": "tie", "rater_id": "r"}
    path = tmp_path / "votes.csv"
    pd.DataFrame([good, *rows]).to_csv(path, index=False)
    with pytest.raises(JudgementFileError, match=message) as err:
        read_votes(path, models=["x", "y"])
    bad_line = len(rows) + 2  # header, the good row, then the offending row last
    assert f"line {bad_line}" in str(err.value)


def test_missing_column_and_jsonl_lines(tmp_path):
    path = tmp_path / "votes.csv"
    pd.DataFrame({"item_id": ["i"], "model_a": ["x"], "winner": ["a"]}).to_csv(path, index=False)
    with pytest.raises(JudgementFileError, match=r"missing column\(s\) \['model_b'\]"):
        read_votes(path)
    jl = tmp_path / "votes.jsonl"
    jl.write_text('{"item_id": "i", "model_a": "x", "model_b": "y", "winner": "a"}\n\n'
                  '{"item_id": "j", "model_a": "x", "model_b": "y", "winner": ""}\n')
    with pytest.raises(JudgementFileError, match="line 3.*empty winner"):
        read_votes(jl)


def test_cli_json_and_bad_file(tmp_path, capsys):
    path = tmp_path / "votes.csv"
    _simulated_votes(items=10).to_csv(path, index=False)
    out = tmp_path / "pref.json"
    assert main(["preference", str(path), "--resamples", "50", "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads(out.read_text())
    assert doc["preference"]["counts"]["votes"] == 10 * 3 * 3
    assert {r["model"] for r in doc["preference"]["leaderboard"]} == {"m0", "m1", "m2"}
    assert main(["preference", str(path), "--models", "m0", "m1"]) == 2
    assert "unknown model(s) ['m2']" in capsys.readouterr().err


def test_empty_and_non_utf8_files_are_one_line_errors_naming_them(tmp_path, capsys):
    empty = tmp_path / "votes.csv"
    empty.write_bytes(b"")
    with pytest.raises(JudgementFileError, match="votes.csv: the file is empty"):
        read_votes(empty)
    assert main(["preference", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(empty) in err and "\n" not in err
    good = b'{"item_id": "i", "model_a": "x", "model_b": "y", "winner": "a"}\n'
    for name in ("votes.jsonl", "votes2.csv"):
        path = tmp_path / name
        body = good if name.endswith(".jsonl") else b"item_id,model_a,model_b,winner\ni,x,y,a\n"
        path.write_bytes(body + b'{"item_id": "caf\xe9"}\n' if name.endswith(".jsonl") else body + b"caf\xe9,x,y,b\n")
        with pytest.raises(JudgementFileError, match=rf"{name} line {2 if name.endswith('.jsonl') else 3}: not UTF-8"):
            read_votes(path)
        assert main(["preference", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert str(path) in err and "not UTF-8" in err and "\n" not in err


@pytest.mark.parametrize("column, value, code", [
    ("item_id", "i\x00", "U+0000"), ("model_a", "x\u202ey", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("rater_id", "r\x1f1", "U+001F"),  # the separator rubric's unit keys use: ids may not forge one
    ("model_b", "y\u2067", "U+2067 RIGHT-TO-LEFT ISOLATE"),
])
def test_ids_and_names_with_control_or_bidi_characters_are_refused(tmp_path, column, value, code):
    rows = [{"item_id": "i0", "model_a": "x", "model_b": "y", "winner": "a", "rater_id": "r"},
            {"item_id": "i1", "model_a": "x", "model_b": "y", "winner": "b", "rater_id": "r"}]
    rows[1][column] = value
    path = tmp_path / "votes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(JudgementFileError) as err:
        read_votes(path)
    msg = str(err.value)
    assert "votes.jsonl line 2" in msg and f"{column} {value!r} holds control or invisible character(s) {code}" in msg
    assert "\n" not in msg


def test_out_is_written_atomically(tmp_path, monkeypatch):
    """A write that fails halfway leaves the previous analysis whole (and no temporary file behind)."""
    import pathlib

    votes = tmp_path / "votes.csv"
    _simulated_votes(items=4).to_csv(votes, index=False)
    out = tmp_path / "pref.json"
    out.write_text('{"previous": true}\n')
    real = pathlib.Path.write_text

    def half_then_fail(self, data, *args, **kwargs):
        real(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(pathlib.Path, "write_text", half_then_fail)
    assert main(["preference", str(votes), "--resamples", "20", "--out", str(out)]) != 0
    monkeypatch.undo()
    assert out.read_text() == '{"previous": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pref.json", "votes.csv"]


def test_large_vote_files_are_validated_and_summarised_per_rater_in_array_code(tmp_path):
    """50k votes through the reader and the per-rater agreement: every vote is counted once. (Their speed is
    measured in benchmarks/bench_preference.py: a timing bound here would depend on the machine's load.)"""
    from sam3d_eval.stats.preference import rater_agreement

    rng = np.random.default_rng(5)
    n = 50_000
    a = rng.integers(0, 10, n)
    b = (a + rng.integers(1, 10, n)) % 10
    votes = pd.DataFrame({"item_id": [f"i{k}" for k in rng.integers(0, 10_000, n)], "model_a": [f"m{k}" for k in a],
                          "model_b": [f"m{k}" for k in b], "winner": rng.choice(["a", "b", "tie"], n),
                          "rater_id": [f"r{k}" for k in rng.integers(0, 20, n)]})
    key = pd.DataFrame({"i": votes["item_id"], "r": votes["rater_id"], "lo": np.minimum(a, b), "hi": np.maximum(a, b)})
    path = tmp_path / "votes.csv"
    votes[~key.duplicated()].to_csv(path, index=False)
    table = rater_agreement(read_votes(path))
    assert len(table) == 20 and table["votes"].sum() == (~key.duplicated()).sum()
