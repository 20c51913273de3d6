"""`sam3d-eval preference` on a large votes file, and its per-rater agreement against the loop it replaced.

    OPENBLAS_NUM_THREADS=1 python -m pytest benchmarks/bench_preference.py -q -s --benchmark-group-by=group \
        --benchmark-columns=min,median,rounds

- The whole analysis the command runs (`cli.preference.analyse`): read and check a CSV of 150,000 votes among
  20 models on 30,000 items by 50 raters (10% ties), pairwise win rates, the Bradley-Terry leaderboard with
  1,000 bootstrap resamples of items and raters crossed, per-rater agreement, consistency and circular
  triads, and Krippendorff's alpha. Target: under 10 s on the 2-core CPU.
- `stats.preference.rater_agreement` (array code) beside the per-vote loop it replaced (pandas row look-ups per
  vote, a triple loop per rater and item); the loop must give the identical frame, checked here.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from sam3d_eval.workflows import analyse_judgements
from sam3d_eval.io.judgements import read_votes
from sam3d_eval.stats import bradley_terry
from sam3d_eval.stats.preference import rater_agreement
from sizes import sizes_for

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from rater_agreement_loop import reference_rater_agreement  # noqa: E402  (the loop it replaced, one copy)

S = sizes_for("preference")  # benchmarks/sizes.py


def run(benchmark, fn, rounds=2):
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)


def make_votes(seed: int = 0) -> pd.DataFrame:
    """Bradley-Terry votes with an item effect; one vote per (item, rater, pair) as a validated file has."""
    rng = np.random.default_rng(seed)
    n, m = S.N_VOTES, S.N_MODELS
    t = rng.normal(0, 1, m)
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    item = rng.integers(0, S.N_ITEMS, n)
    rater = rng.integers(0, S.N_RATERS, n)
    p = expit(t[a] - t[b] + rng.normal(0, 0.5, S.N_ITEMS)[item])
    winner = np.where(rng.random(n) < S.TIE_P, "tie", np.where(rng.random(n) < p, "a", "b"))
    frame = pd.DataFrame({"item_id": [f"item{i:05d}" for i in item], "model_a": [f"model{i:02d}" for i in a],
                          "model_b": [f"model{i:02d}" for i in b], "winner": winner,
                          "rater_id": [f"r{i:02d}" for i in rater]})
    key = pd.DataFrame({"i": item, "r": rater, "lo": np.minimum(a, b), "hi": np.maximum(a, b)})
    return frame[~key.duplicated()].reset_index(drop=True)


@pytest.fixture(scope="module")
def votes_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("preference") / "votes.csv"
    make_votes().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def votes(votes_file):
    return read_votes(votes_file)


@pytest.fixture(scope="module")
def leaderboard(votes):
    return bradley_terry(votes, bootstrap=0)


def test_preference_ours(benchmark, votes_file, votes):
    doc = analyse_judgements(votes_file, resamples=S.RESAMPLES)  # checked before timing
    pref = doc["preference"]
    assert pref["counts"] == {"votes": len(votes), "items": votes["item_id"].nunique(),
                              "raters": votes["rater_id"].nunique(), "models": S.N_MODELS,
                              "ties": int((votes["winner"] == "tie").sum())}
    assert sum(r["votes"] for r in pref["raters"]) == len(votes)
    assert all(r.get("elo_low") is not None for r in pref["leaderboard"])
    run(benchmark, lambda: analyse_judgements(votes_file, resamples=S.RESAMPLES))


@pytest.mark.benchmark(group="rater agreement 150k votes")
def test_rater_agreement_ours(benchmark, votes, leaderboard):
    run(benchmark, lambda: rater_agreement(votes, leaderboard), rounds=5)


@pytest.mark.benchmark(group="rater agreement 150k votes")
def test_rater_agreement_python_loop(benchmark, votes, leaderboard):
    want = run(benchmark, lambda: reference_rater_agreement(votes, leaderboard), rounds=1)
    pd.testing.assert_frame_equal(rater_agreement(votes, leaderboard), want, check_exact=True)
