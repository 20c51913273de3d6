"""Aggregates over several runs (Agarwal et al. 2021, rliable): IQM, probability of improvement and the
stratified bootstrap, against hand computations and an independent re-implementation of the draws."""

import numpy as np
import pytest
import scipy.stats as st

from sam3d_eval.stats import (
    BootstrapResult,
    StatsInputError,
    iqm,
    probability_of_improvement,
    stratified_bootstrap_ci,
)
from sam3d_eval.stats import runs


# ------------------------------------------------------------------------------------------------------ IQM
def test_iqm_by_hand():
    scores = np.array([[10.0, -3.0, 2.0, 7.0], [1.0, 100.0, 4.0, 5.0]])
    # sorted: -3 1 | 2 4 5 7 | 10 100: 8 entries, 2 cut at each end, mean of the middle four
    assert iqm(scores) == pytest.approx((2 + 4 + 5 + 7) / 4)
    # 9 entries: int(0.25 * 9) = 2 cut at each end, the middle five remain (0..8 -> 2..6)
    assert iqm(np.arange(9.0)[::-1].reshape(3, 3)) == pytest.approx(4.0)


@pytest.mark.parametrize("shape", [(5, 17), (3, 1), (10, 40), (1, 7)])
def test_iqm_equals_scipy_trim_mean(shape):
    x = np.random.default_rng(sum(shape)).standard_cauchy(shape)
    assert iqm(x) == pytest.approx(st.trim_mean(x, proportiontocut=0.25, axis=None), rel=1e-14)
    assert isinstance(iqm(x), float)


# ------------------------------------------------------------------------------- probability of improvement
X = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 6.0]])  # 3 runs x 2 tasks
Y = np.array([[2.0, 5.0], [2.0, 4.0], [0.0, 7.0]])


def test_probability_of_improvement_by_hand():
    # task 0: x = {1, 2, 3}, y = {2, 2, 0}
    #   x=1: beats 0 -> 1;  x=2: ties 2, 2 (0.5 + 0.5), beats 0 -> 2;  x=3: beats all three -> 3;  U = 6 of 9
    # task 1: x = {5, 5, 6}, y = {5, 4, 7}
    #   x=5: tie 5 (0.5), beats 4 -> 1.5 (twice);  x=6: beats 5, 4 -> 2;  U = 5 of 9
    # mean over tasks: (6/9 + 5/9) / 2 = 11/18
    assert probability_of_improvement(X, Y) == pytest.approx(11 / 18, abs=1e-15)
    # the other way: 9 - 6 = 3 and 9 - 5 = 4 -> 7/18
    assert probability_of_improvement(Y, X) == pytest.approx(7 / 18, abs=1e-15)


def test_identical_columns_give_one_half():
    assert probability_of_improvement(X, X) == 0.5
    z = X.copy()
    z[:, 1] = Y[:, 1]
    # z vs X: task 0 identical -> 0.5; task 1 is Y's column against X's -> 9 - 5 = 4 of 9
    assert probability_of_improvement(z, X) == pytest.approx((0.5 + 4 / 9) / 2, abs=1e-15)
    const = np.full((4, 3), 2.0)
    assert probability_of_improvement(const, const) == 0.5


def test_unequal_run_counts():
    # one task, x = {1, 4} (2 runs), y = {0, 2, 4} (3 runs):
    #   x=1: beats 0 -> 1;  x=4: beats 0 and 2, ties 4 -> 2.5;  U = 3.5 of 2 * 3 = 6
    x = np.array([[1.0], [4.0]])
    y = np.array([[0.0], [2.0], [4.0]])
    assert probability_of_improvement(x, y) == pytest.approx(3.5 / 6, abs=1e-15)
    assert probability_of_improvement(y, x) == pytest.approx(2.5 / 6, abs=1e-15)


def test_equals_mann_whitney_and_symmetry():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 6, size=(5, 30)).astype(float)  # integer scores: many ties
    y = rng.integers(0, 6, size=(8, 30)).astype(float)
    per_task = [
        0.5
        if np.array_equal(x[:, j], y[:, j])
        else st.mannwhitneyu(x[:, j], y[:, j], alternative="greater").statistic / (5 * 8)
        for j in range(30)
    ]
    p = probability_of_improvement(x, y)
    assert p == pytest.approx(np.mean(per_task), abs=1e-14)
    assert p + probability_of_improvement(y, x) == pytest.approx(1.0, abs=1e-14)
    # lower-is-better: negate both (the same as swapping the arguments)
    assert probability_of_improvement(-x, -y) == pytest.approx(probability_of_improvement(y, x), abs=1e-14)


def test_probability_of_improvement_chunks_tasks(monkeypatch):
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(4, 50)), rng.normal(size=(3, 50))
    whole = probability_of_improvement(x, y)
    monkeypatch.setattr(runs, "_CHUNK_ELEMENTS", 25)  # 2 tasks per chunk
    assert probability_of_improvement(x, y) == pytest.approx(whole, abs=1e-15)


# ------------------------------------------------------------------------------------- stratified bootstrap
def loop_replicates(arrays, statistic, n_resamples, seed, chunk_elements):
    """Independent re-implementation of the documented draws: chunks of c resamples; per chunk, per array,
    rng.integers(0, n_k, (c, n_k, num_tasks)); entry (i, j) of a resample is array[idx[b, i, j], j]."""
    rng = np.random.default_rng(seed)
    tasks = arrays[0].shape[1]
    per = max(1, chunk_elements // sum(a.shape[0] * tasks for a in arrays))
    reps = []
    for start in range(0, n_resamples, per):
        c = min(per, n_resamples - start)
        idx = [rng.integers(0, a.shape[0], size=(c, a.shape[0], tasks)) for a in arrays]
        for b in range(c):
            resampled = []
            for a, ix in zip(arrays, idx):
                r = np.empty_like(a)
                for i in range(a.shape[0]):
                    for j in range(tasks):
                        r[i, j] = a[ix[b, i, j], j]
                resampled.append(r)
            reps.append(statistic(*resampled))
    return np.array(reps)


def test_bootstrap_reproduces_loop_and_quantiles():
    scores = np.random.default_rng(11).gamma(2.0, size=(5, 7))
    res = stratified_bootstrap_ci(scores, iqm, n_resamples=300, confidence=0.9, seed=4)
    reps = loop_replicates([scores], iqm, 300, 4, runs._CHUNK_ELEMENTS)
    np.testing.assert_allclose(res.replicates, reps, rtol=1e-14)
    lo, hi = np.quantile(reps, [0.05, 0.95], method="linear")
    assert res.low == pytest.approx(lo, rel=1e-12) and res.high == pytest.approx(hi, rel=1e-12)
    assert isinstance(res, BootstrapResult)
    assert res.estimate == pytest.approx(iqm(scores))
    assert res.se == pytest.approx(np.std(reps, ddof=1), rel=1e-12)
    assert res.n_resamples == 300 and res.method == "percentile" and res.confidence == 0.9
    assert np.isfinite(res.drift)


def test_bootstrap_reproduces_loop_across_chunks(monkeypatch):
    monkeypatch.setattr(runs, "_CHUNK_ELEMENTS", 100)  # 4 x 6 = 24 indices per resample: 4 resamples a chunk
    scores = np.random.default_rng(12).normal(size=(4, 6))
    res = stratified_bootstrap_ci(scores, np.mean, n_resamples=37, seed=9)
    reps = loop_replicates([scores], np.mean, 37, 9, 100)
    np.testing.assert_allclose(res.replicates, reps, rtol=1e-14)
    lo, hi = np.quantile(reps, [0.025, 0.975])
    assert res.low == pytest.approx(lo, rel=1e-12) and res.high == pytest.approx(hi, rel=1e-12)


def test_bootstrap_of_probability_of_improvement_resamples_each_array(monkeypatch):
    rng = np.random.default_rng(13)
    x, y = rng.normal(0.3, 1.0, size=(5, 9)), rng.normal(size=(3, 9))  # unequal run counts
    res = stratified_bootstrap_ci((x, y), probability_of_improvement, n_resamples=250, seed=2)
    reps = loop_replicates([x, y], probability_of_improvement, 250, 2, runs._CHUNK_ELEMENTS)
    np.testing.assert_allclose(res.replicates, reps, rtol=1e-14)
    assert res.estimate == pytest.approx(probability_of_improvement(x, y))
    lo, hi = np.quantile(reps, [0.025, 0.975])
    assert res.low == pytest.approx(lo, rel=1e-12) and res.high == pytest.approx(hi, rel=1e-12)
    # a list of 2-D arrays is several arrays too; several chunks draw x then y per chunk
    monkeypatch.setattr(runs, "_CHUNK_ELEMENTS", 200)  # (5 + 3) x 9 = 72 per resample: 2 a chunk
    res2 = stratified_bootstrap_ci([x, y], probability_of_improvement, n_resamples=21, seed=2)
    np.testing.assert_allclose(
        res2.replicates, loop_replicates([x, y], probability_of_improvement, 21, 2, 200), rtol=1e-14
    )


def test_columns_only_draw_from_their_own_column():
    runs_, tasks = 6, 5
    rng = np.random.default_rng(14)
    scores = 10.0 * np.arange(tasks) + rng.random((runs_, tasks))  # task j in [10 j, 10 j + 1)
    other = 1000.0 + 10.0 * np.arange(tasks) + rng.random((3, tasks))
    seen = []

    def record(a, b=None):
        seen.append((a.copy(), None if b is None else b.copy()))
        return float(a.mean())

    stratified_bootstrap_ci(scores, record, n_resamples=200, seed=1)
    stratified_bootstrap_ci((scores, other), record, n_resamples=200, seed=1)
    assert len(seen) == 2 * 201  # the estimate plus one call per resample, per bootstrap
    for a, b in seen:
        assert a.shape == (runs_, tasks)
        for j in range(tasks):
            assert np.isin(a[:, j], scores[:, j]).all()
        if b is not None:
            assert b.shape == (3, tasks)
            for j in range(tasks):
                assert np.isin(b[:, j], other[:, j]).all()
    # the runs are really resampled: some resample repeats a run within a task
    assert any(len(np.unique(a[:, 0])) < runs_ for a, _ in seen)


def test_bootstrap_is_deterministic_for_a_seed():
    scores = np.random.default_rng(15).normal(size=(4, 10))
    a = stratified_bootstrap_ci(scores, iqm, n_resamples=200, seed=5)
    b = stratified_bootstrap_ci(scores, iqm, n_resamples=200, seed=5)
    c = stratified_bootstrap_ci(scores, iqm, n_resamples=200, seed=np.random.default_rng(5))
    d = stratified_bootstrap_ci(scores, iqm, n_resamples=200, seed=6)
    np.testing.assert_array_equal(a.replicates, b.replicates)
    np.testing.assert_array_equal(a.replicates, c.replicates)
    assert a == b
    assert not np.array_equal(a.replicates, d.replicates)


# ------------------------------------------------------------------------------------------------- errors
def test_errors_name_the_argument_and_problem():
    good = np.ones((3, 4))
    with pytest.raises(StatsInputError, match=r"scores needs at least 2 runs"):
        stratified_bootstrap_ci(np.ones((1, 4)), iqm)
    with pytest.raises(StatsInputError, match=r"scores\[1\] needs at least 2 runs"):
        stratified_bootstrap_ci((good, np.ones((1, 4))), probability_of_improvement)
    bad = good.copy()
    bad[1, 2] = np.nan
    with pytest.raises(StatsInputError, match=r"scores has 1 non-finite value.*run 1, task 2"):
        stratified_bootstrap_ci(bad, iqm)
    with pytest.raises(StatsInputError, match=r"scores_y has 1 non-finite"):
        probability_of_improvement(good, np.where(bad == 1, 1.0, np.inf))
    with pytest.raises(StatsInputError, match=r"scores must be 2-D"):
        stratified_bootstrap_ci(np.arange(5.0), np.mean)
    with pytest.raises(StatsInputError, match=r"scores must be 2-D"):
        iqm(np.arange(8.0))
    with pytest.raises(StatsInputError, match=r"scores_x must be 2-D"):
        probability_of_improvement(np.ones(3), good)
    with pytest.raises(StatsInputError, match=r"scores is empty"):
        iqm(np.empty((0, 3)))
    with pytest.raises(StatsInputError, match=r"scores_y has 5 tasks .* scores_x has 4"):
        probability_of_improvement(good, np.ones((3, 5)))
    with pytest.raises(StatsInputError, match=r"scores\[1\] has 5 tasks"):
        stratified_bootstrap_ci((good, np.ones((3, 5))), probability_of_improvement)
    with pytest.raises(StatsInputError, match=r"must return one number"):
        stratified_bootstrap_ci(good, lambda a: a.mean(axis=0))
    with pytest.raises(StatsInputError, match=r"confidence"):
        stratified_bootstrap_ci(good, iqm, confidence=1.5)
    with pytest.raises(StatsInputError, match=r"n_resamples"):
        stratified_bootstrap_ci(good, iqm, n_resamples=1)
    with pytest.raises(StatsInputError, match=r"seed"):
        stratified_bootstrap_ci(good, iqm, seed=1.5)
    with pytest.raises(StatsInputError, match=r"must be a numeric"):
        iqm([["a", "b"], ["c", "d"]])
