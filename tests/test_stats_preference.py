"""Bradley-Terry: golden (choix), statsmodels GLM for ties as halves, existence errors, clustered bootstrap."""

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from sam3d_eval.stats import StatsInputError, bradley_terry
from sam3d_eval.stats.bootstrap import resample_counts
from sam3d_eval.stats.preference import (
    ELO_BASE,
    ELO_SCALE,
    _cell_matrix,
    _fit_lbfgs,
    _fit_newton,
    _prepare,
    _resampled_wins,
)


@pytest.fixture(scope="module")
def golden(golden_dir):
    g = json.loads((golden_dir / "stats_reference.json").read_text())["bradley_terry"]
    return pd.DataFrame(g["votes"], columns=["model_a", "model_b", "winner"]), np.array(g["log_strength"])


def random_votes(rng, n=600, m=6, items=None):
    t = rng.normal(0, 1, m)
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    p = 1 / (1 + np.exp(-(t[a] - t[b])))
    winner = np.where(rng.random(n) < 0.15, "tie", np.where(rng.random(n) < p, "a", "b"))
    frame = pd.DataFrame({"model_a": a, "model_b": b, "winner": winner})
    if items:
        frame["item_id"] = rng.integers(0, items, n)
        frame["rater_id"] = rng.integers(0, 7, n)
    return frame


def test_matches_choix_golden_ties_dropped(golden):
    votes, ref = golden
    res = bradley_terry(votes, ties="drop", bootstrap=0)
    # choix's optimiser stops at ~3e-8 from the exact MLE (our Newton polish agrees with L-BFGS to 2e-9)
    np.testing.assert_allclose(res["log_strength"].to_numpy(), ref, atol=1e-7)
    assert res["log_strength"].sum() == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(res["elo"], 400 / np.log(10) * res["log_strength"] + 1000, rtol=1e-14)
    assert list(res.index) == [0, 1, 2, 3, 4]
    w = votes[votes.winner != "tie"]
    assert res.loc[0, "wins"] == ((w.model_a == 0) & (w.winner == "a")).sum() + ((w.model_b == 0) & (w.winner == "b")).sum()


def test_ties_half_equals_weighted_logistic_glm():
    """Ties as half a win each = a no-intercept logistic regression on e_a - e_b with weight-1/2 rows
    (statsmodels GLM, last model as the reference level)."""
    rng = np.random.default_rng(1)
    votes = random_votes(rng)
    m = 6
    x, y, wt = [], [], []
    for a, b, win in votes[["model_a", "model_b", "winner"]].itertuples(index=False):
        row = np.zeros(m)
        row[a], row[b] = 1.0, -1.0
        outcomes = {"a": [(1.0, 1.0)], "b": [(0.0, 1.0)], "tie": [(1.0, 0.5), (0.0, 0.5)]}[win]
        for yy, ww in outcomes:
            x.append(row[:-1]), y.append(yy), wt.append(ww)
    glm = sm.GLM(np.array(y), np.array(x), family=sm.families.Binomial(), freq_weights=np.array(wt)).fit(tol=1e-13)
    ref = np.append(glm.params, 0.0)
    ref -= ref.mean()
    res = bradley_terry(votes, ties="half", bootstrap=0)
    np.testing.assert_allclose(res["log_strength"].to_numpy(), ref, atol=1e-7)


def test_newton_and_lbfgs_solve_the_same_problem():
    rng = np.random.default_rng(2)
    votes = random_votes(rng, n=400, m=8)
    models, ia, ib, outcome = _prepare(votes, "half")
    w = np.asarray(_cell_matrix(len(models), ia, ib, outcome, "half").sum(axis=0)).reshape(8, 8)
    for reg in (0.0, 0.3):
        newton, ok = _fit_newton(w[None], reg)
        assert ok.all()
        np.testing.assert_allclose(newton[0], _fit_lbfgs(w, reg), atol=1e-7)


def test_never_losing_model_and_disconnected_graph_are_named():
    # x beats y and z, y and z beat each other: x never loses, and y, z never beat x (but do beat each other)
    v = pd.DataFrame({"model_a": ["x", "x", "y", "z"], "model_b": ["y", "z", "z", "y"], "winner": ["a", "a", "a", "a"]})
    with pytest.raises(StatsInputError) as err:
        bradley_terry(v, bootstrap=0)
    msg = str(err.value)
    assert "model 'x' never loses;" in msg and "models ['y', 'z'] never win against a model outside that group" in msg
    assert "'x' never win" not in msg
    # the documented regularised answer: finite, x on top, shrinking towards 0 as the prior tightens
    loose = bradley_terry(v, bootstrap=0, regularization=0.01)
    tight = bradley_terry(v, bootstrap=0, regularization=1.0)
    assert np.all(np.isfinite(loose["log_strength"])) and loose["log_strength"].idxmax() == "x"
    assert loose.loc["x", "log_strength"] > tight.loc["x", "log_strength"] > 0
    split = pd.DataFrame({"model_a": ["x", "y", "p", "q"], "model_b": ["y", "x", "q", "p"], "winner": ["a"] * 4})
    with pytest.raises(StatsInputError, match="disconnected"):
        bradley_terry(split, bootstrap=0, regularization=1.0)


def test_bad_votes_are_named():
    v = pd.DataFrame({"model_a": ["x", "y"], "model_b": ["y", "x"], "winner": ["a", "b"]})
    with pytest.raises(StatsInputError, match=r"unknown winner value\(s\) \['A'\]"):
        bradley_terry(v.assign(winner=["a", "A"]), bootstrap=0)
    with pytest.raises(StatsInputError, match="'x' is paired with itself"):
        bradley_terry(v.assign(model_b=["x", "x"]), bootstrap=0)
    with pytest.raises(StatsInputError, match="empty"):
        bradley_terry(v.iloc[:0])
    with pytest.raises(StatsInputError, match="lacks column"):
        bradley_terry(v.drop(columns="winner"))
    with pytest.raises(StatsInputError, match="ties must be"):
        bradley_terry(v, ties="ignore")
    with pytest.raises(StatsInputError, match="every vote is a tie"):
        bradley_terry(v.assign(winner="tie"), ties="drop")
    with pytest.raises(StatsInputError, match=r"cluster column\(s\) \['item_id'\]"):
        bradley_terry(v.assign(winner=["a", "a"]), bootstrap=10, cluster="item_id")


def test_clustered_resampled_wins_are_cluster_sums():
    rng = np.random.default_rng(3)
    votes = random_votes(rng, n=300, m=5, items=40)
    models, ia, ib, outcome = _prepare(votes, "half")
    cells = _cell_matrix(5, ia, ib, outcome, "half")
    wb = _resampled_wins(np.random.default_rng(9), votes, cells, ["item_id"], 7, 5)
    counts = resample_counts(np.random.default_rng(9), 40, 7)
    codes = pd.factorize(votes["item_id"], sort=True)[0]
    dense = cells.toarray()
    for r in range(7):
        expect = (dense * counts[r][codes][:, None]).sum(axis=0).reshape(5, 5)
        np.testing.assert_allclose(wb[r], expect, atol=1e-12)
    # crossed items x raters: a vote's weight is its item's count times its rater's count
    wb2 = _resampled_wins(np.random.default_rng(5), votes, cells, ["item_id", "rater_id"], 6, 5)
    g = np.random.default_rng(5)
    ci, cr = resample_counts(g, 40, 6), resample_counts(g, 7, 6)
    raters = pd.factorize(votes["rater_id"], sort=True)[0]
    for r in range(6):
        weight = ci[r][codes] * cr[r][raters]
        np.testing.assert_allclose(wb2[r], (dense * weight[:, None]).sum(axis=0).reshape(5, 5), atol=1e-12)
    # single-vote resampling keeps the vote total; ties count once per vote (two halves)
    wv = _resampled_wins(np.random.default_rng(0), votes, cells, [], 50, 5)
    np.testing.assert_allclose(wv.sum(axis=(1, 2)), len(votes))


def test_bootstrap_intervals_and_item_clustering():
    """Votes that share an item share its outcome (the item decides who wins): resampling single votes
    treats 8 copies of one outcome as 8 pieces of evidence, the item bootstrap does not."""
    rng = np.random.default_rng(4)
    items = 60
    t = np.array([0.6, 0.0, -0.6])
    rows = []
    for item in range(items):
        a, b = rng.choice(3, size=2, replace=False)
        win = "a" if rng.random() < 1 / (1 + np.exp(-(t[a] - t[b]))) else "b"
        rows += [(a, b, win, item)] * 8
    votes = pd.DataFrame(rows, columns=["model_a", "model_b", "winner", "item_id"])
    naive = bradley_terry(votes, bootstrap=400, seed=1)
    clustered = bradley_terry(votes, bootstrap=400, cluster="item_id", seed=1)
    assert np.all(clustered["se"] > 2.0 * naive["se"])  # sqrt(8) in theory
    for res in (naive, clustered):
        assert np.all(res["log_strength_low"] < res["log_strength"]) and np.all(res["log_strength"] < res["log_strength_high"])
        np.testing.assert_allclose(res["elo_low"], ELO_SCALE * res["log_strength_low"] + ELO_BASE)
        assert res.attrs["n_resamples"] == 400 and res.attrs["drift"] > 0
    assert clustered.attrs["cluster"] == ["item_id"]


def test_bootstrap_without_finite_resamples_is_an_error_not_infinity():
    # y beats z once only: many vote resamples drop that vote and leave z never winning / y never losing
    v = pd.DataFrame({"model_a": ["x", "y", "z", "x"], "model_b": ["y", "z", "x", "z"], "winner": ["a", "a", "a", "b"]})
    with pytest.raises(StatsInputError, match="bootstrap resamples have no finite strengths"):
        bradley_terry(v, bootstrap=200, seed=0)
    res = bradley_terry(v, bootstrap=200, seed=0, regularization=0.5)
    assert np.all(np.isfinite(res[["log_strength_low", "log_strength_high"]].to_numpy()))


def test_never_winning_model_is_named_exactly():
    # y and z beat each other and both beat x: x never wins; y and z do lose (to each other), never to x
    v = pd.DataFrame({"model_a": ["y", "z", "y", "z"], "model_b": ["z", "y", "x", "x"], "winner": ["a"] * 4})
    with pytest.raises(StatsInputError) as err:
        bradley_terry(v, bootstrap=0)
    msg = str(err.value)
    assert "model 'x' never wins;" in msg
    assert "models ['y', 'z'] never lose to a model outside that group" in msg
    assert "'y' never" not in msg and "'z' never" not in msg
    # a chain a > b > c: a never loses, c never wins, b is neither
    chain = pd.DataFrame({"model_a": ["a", "b"], "model_b": ["b", "c"], "winner": ["a", "a"]})
    with pytest.raises(StatsInputError) as err:
        bradley_terry(chain, bootstrap=0)
    msg = str(err.value)
    assert "model 'c' never wins" in msg and "model 'a' never loses" in msg and "'b'" not in msg


def test_bootstrap_on_one_cluster_is_refused():
    v = pd.DataFrame({"model_a": ["x", "y", "x", "y"], "model_b": ["y", "x", "y", "x"], "winner": ["a", "a", "b", "a"],
                      "item_id": [1, 1, 1, 1], "rater_id": ["r1", "r2", "r1", "r2"]})
    with pytest.raises(StatsInputError, match="'item_id': at least 2 clusters are needed for an interval, got 1"):
        bradley_terry(v, bootstrap=50, cluster="item_id")
    with pytest.raises(StatsInputError, match="'item_id': at least 2 clusters"):
        bradley_terry(v, bootstrap=50, cluster=["item_id", "rater_id"])
    assert bradley_terry(v, bootstrap=0, cluster="item_id")["log_strength"].notna().all()  # no interval asked
    res = bradley_terry(v, bootstrap=50, cluster="rater_id", regularization=0.5)
    assert np.all(res["log_strength_low"] < res["log_strength_high"])
