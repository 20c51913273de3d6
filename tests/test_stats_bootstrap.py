"""Bootstrap intervals: equal to scipy.stats.bootstrap for the same draws, coverage by simulation, clusters."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

from sam3d_eval.stats import (
    BootstrapResult,
    StatsInputError,
    bootstrap_ci,
    bootstrap_interval,
    clustered_bootstrap,
    paired_bootstrap,
    two_sample_bootstrap,
)


def ratio(s, r, axis=-1):
    return np.mean(r, axis=axis) / np.mean(s, axis=axis)


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_one_sample_equals_scipy(method):
    x = np.random.default_rng(1).exponential(size=57)
    ours = bootstrap_ci(x, np.mean, n_resamples=999, method=method, seed=3)
    ref = st.bootstrap((x,), np.mean, n_resamples=999, method=method, rng=np.random.default_rng(3))
    assert ours.low == pytest.approx(ref.confidence_interval.low, rel=1e-12)
    assert ours.high == pytest.approx(ref.confidence_interval.high, rel=1e-12)
    assert ours.se == pytest.approx(ref.standard_error, rel=1e-12)
    np.testing.assert_allclose(ours.replicates, ref.bootstrap_distribution, rtol=1e-12)
    assert ours.estimate == pytest.approx(x.mean())
    assert ours.n_resamples == 999 and ours.method == method and ours.confidence == 0.95


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_two_sample_ratio_equals_scipy(method):
    rng = np.random.default_rng(2)
    syn, real = rng.gamma(2.0, size=40), 2.5 * rng.gamma(2.0, size=33)
    ours = two_sample_bootstrap(syn, real, ratio, n_resamples=800, method=method, seed=5)
    ref = st.bootstrap((syn, real), ratio, n_resamples=800, method=method, rng=np.random.default_rng(5))
    assert (ours.low, ours.high) == pytest.approx(tuple(ref.confidence_interval), rel=1e-12)
    assert ours.estimate == pytest.approx(real.mean() / syn.mean())


def test_non_vectorised_statistic_gives_same_numbers():
    rng = np.random.default_rng(4)
    syn, real = rng.random(25), rng.random(30)
    vec = two_sample_bootstrap(syn, real, ratio, n_resamples=300, method="bca", seed=1)
    loop = two_sample_bootstrap(syn, real, lambda s, r: r.mean() / s.mean(), n_resamples=300, method="bca", seed=1)
    assert (vec.low, vec.high, vec.se) == pytest.approx((loop.low, loop.high, loop.se), rel=1e-12)


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_paired_equals_scipy_paired(method):
    rng = np.random.default_rng(6)
    a = rng.random(80)
    b = a + 0.05 + 0.1 * rng.standard_normal(80)
    ours = paired_bootstrap(a, b, n_resamples=700, method=method, seed=9)
    ref = st.bootstrap(
        (a, b), lambda u, v, axis=-1: np.mean(v - u, axis=axis), paired=True, n_resamples=700, method=method,
        rng=np.random.default_rng(9),
    )
    assert (ours.low, ours.high) == pytest.approx(tuple(ref.confidence_interval), rel=1e-12)
    assert ours.estimate == pytest.approx(np.mean(b - a))


def test_chunked_draws_match_unchunked(monkeypatch):
    import sam3d_eval.stats.bootstrap as bs

    x = np.random.default_rng(0).random(50)
    whole = bootstrap_ci(x, np.median, n_resamples=500, seed=2, method="bca")
    monkeypatch.setattr(bs, "_CHUNK_ELEMENTS", 50 * 7)  # 7 resamples per chunk, 3 jackknife chunks
    parts = bootstrap_ci(x, np.median, n_resamples=500, seed=2, method="bca")
    np.testing.assert_array_equal(whole.replicates, parts.replicates)
    assert (whole.low, whole.high) == (parts.low, parts.high)


def test_drift_is_half_interval_disagreement_and_shrinks():
    x = np.random.default_rng(8).standard_normal(60)
    res = bootstrap_ci(x, n_resamples=400, seed=0)
    h = res.replicates[:200], res.replicates[200:]
    q = [np.quantile(r, [0.025, 0.975]) for r in h]
    assert res.drift == pytest.approx(np.max(np.abs(q[0] - q[1])))
    big = bootstrap_ci(x, n_resamples=40_000, seed=0)
    assert big.drift < res.drift
    assert big.drift < 0.1 * (big.high - big.low)


def test_bootstrap_interval_and_result_fields():
    reps = np.linspace(-1.0, 1.0, 101)
    res = bootstrap_interval(reps, 0.0, confidence=0.9)
    assert (res.low, res.high) == pytest.approx((-0.9, 0.9))
    assert isinstance(res, BootstrapResult)
    d = res.as_dict()
    assert set(d) == {"estimate", "low", "high", "confidence", "method", "n_resamples", "drift", "se"}
    with pytest.raises(StatsInputError, match="not finite"):
        bootstrap_interval(np.array([1.0, np.nan, 2.0]), 1.0)


def test_percentile_and_bca_cover_95_percent():
    """1200 seeded studies each: normal mean (percentile) and skewed gamma mean (BCa). Binomial noise of the
    coverage share is 0.63 percentage points, so a correct 95% interval lands in [0.93, 0.97]."""
    rng = np.random.default_rng(2024)
    studies = 1200
    hit_p = hit_b = 0
    for _ in range(studies):
        x = rng.standard_normal(200)
        r = bootstrap_ci(x, np.mean, n_resamples=400, seed=rng)
        hit_p += r.low <= 0.0 <= r.high
        g = rng.gamma(4.0, size=200)
        r = bootstrap_ci(g, np.mean, n_resamples=400, method="bca", seed=rng)
        hit_b += r.low <= 4.0 <= r.high
    assert 0.93 <= hit_p / studies <= 0.97
    assert 0.93 <= hit_b / studies <= 0.97


def clustered_votes(rng, items=60, per_item=8):
    """Votes correlated within an item: item win probability ~ Beta(2.8, 1.2) (mean 0.7, intra-item
    correlation 1 / (2.8 + 1.2 + 1) = 0.2, design effect 1 + 7 * 0.2 = 2.4 at 8 votes per item)."""
    p = rng.beta(2.8, 1.2, size=items)
    win = (rng.random((items, per_item)) < p[:, None]).astype(float)
    return pd.DataFrame({"item_id": np.repeat(np.arange(items), per_item), "win": win.ravel()})


def test_clustered_covers_and_naive_vote_bootstrap_undercovers():
    """100 items x 8 votes, 1000 resamples (with 250 the noise of the 2.5% quantile alone costs a point of
    coverage). The clustered interval's coverage in this design is 0.946 (4000 studies offline); over 1000
    studies the binomial noise is 0.7 points, so it lands in [0.93, 0.97]. The naive vote bootstrap's
    interval is 1/sqrt(2.4) as wide as it should be and covers about P(|Z| < 1.96 / 1.55) = 0.79 (0.81
    offline; 150 studies: noise 3.2 points, so below 0.90 with room)."""
    rng = np.random.default_rng(7)
    studies, naive_studies = 1000, 150
    hit_c = hit_n = 0
    for s in range(studies):
        f = clustered_votes(rng, items=100)
        r = clustered_bootstrap(f, "win", ["item_id"], n_resamples=1000, seed=rng)
        hit_c += r.low <= 0.7 <= r.high
        if s < naive_studies:
            r = clustered_bootstrap(f, "win", None, n_resamples=1000, seed=rng)
            hit_n += r.low <= 0.7 <= r.high
    assert 0.93 <= hit_c / studies <= 0.97
    assert hit_n / naive_studies < 0.90


def test_clustered_statistic_forms_agree():
    rng = np.random.default_rng(3)
    f = clustered_votes(rng, items=30, per_item=5)
    f["rater_id"] = rng.integers(0, 6, len(f))
    f["score"] = f["win"] + rng.random(len(f))  # continuous: every cluster distinct

    def weighted(column):
        return lambda frame, weights: weights @ frame[column].to_numpy() / weights.sum(axis=1)

    for cluster in (["item_id"], None, ["item_id", "rater_id"]):
        a = clustered_bootstrap(f, "score", cluster, n_resamples=200, seed=11)
        b = clustered_bootstrap(f, weighted("score"), cluster, n_resamples=200, seed=11)
        c = clustered_bootstrap(f, lambda fr: fr["score"].mean(), cluster, n_resamples=200, seed=11)
        np.testing.assert_allclose(a.replicates, b.replicates, rtol=1e-12)
        np.testing.assert_allclose(a.replicates, c.replicates, rtol=1e-12)
        assert a.estimate == pytest.approx(f["score"].mean())


@pytest.mark.parametrize("cluster", [["item_id"], None])
def test_clustered_mean_by_cluster_type_has_the_index_bootstrap_distribution(cluster):
    """Binary votes, equal items: few (sum, size) types, drawn as one multinomial per resample. Its
    replicates have the distribution of the index-drawing bootstrap (the weighted form, same data)."""
    f = clustered_votes(np.random.default_rng(8), items=40, per_item=5)
    fast = clustered_bootstrap(f, "win", cluster, n_resamples=20_000, seed=1)
    slow = clustered_bootstrap(
        f, lambda frame, weights: weights @ frame["win"].to_numpy() / weights.sum(axis=1), cluster,
        n_resamples=20_000, seed=2,
    )
    assert fast.estimate == slow.estimate == pytest.approx(f["win"].mean())
    assert fast.replicates.mean() == pytest.approx(slow.replicates.mean(), abs=4 * slow.se / np.sqrt(10_000))
    assert fast.se == pytest.approx(slow.se, rel=0.03)  # sd of an sd estimate at 20k draws: 0.5%
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high), abs=0.1 * slow.se)


def test_clustered_bca_uses_cluster_jackknife():
    rng = np.random.default_rng(5)
    f = clustered_votes(rng, items=25, per_item=4)
    f["score"] = f["win"] + rng.gamma(1.0, size=len(f))  # continuous: the cluster-index draws are used
    res = clustered_bootstrap(f, "score", "item_id", n_resamples=500, method="bca", seed=0)
    slow = clustered_bootstrap(f, lambda fr: fr["score"].mean(), "item_id", n_resamples=500, method="bca", seed=0)
    assert (res.low, res.high) == pytest.approx((slow.low, slow.high), rel=1e-12)
    # Equal cluster sizes: the statistic is the mean of item means, so the acceleration is the one of a
    # one-sample BCa over item means with the same draws.
    item_means = f.groupby("item_id")["score"].mean().to_numpy()
    ref = st.bootstrap((item_means,), np.mean, n_resamples=500, method="bca", rng=np.random.default_rng(0))
    assert (res.low, res.high) == pytest.approx(tuple(ref.confidence_interval), rel=1e-12)


def test_bad_input_is_named():
    with pytest.raises(StatsInputError, match="empty"):
        bootstrap_ci([])
    with pytest.raises(StatsInputError, match="non-finite"):
        bootstrap_ci([1.0, np.nan])
    with pytest.raises(StatsInputError, match="same length"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(StatsInputError, match="method"):
        bootstrap_ci([1.0, 2.0], method="basic")
    with pytest.raises(StatsInputError, match="n_resamples"):
        bootstrap_ci([1.0, 2.0], n_resamples=1)
    with pytest.raises(StatsInputError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=95)
    f = pd.DataFrame({"item_id": [1, 1, 2], "win": [1.0, 0.0, 1.0]})
    with pytest.raises(StatsInputError, match="'rater'"):
        clustered_bootstrap(f, "win", ["rater"])
    with pytest.raises(StatsInputError, match="empty"):
        clustered_bootstrap(f.iloc[:0], "win")
    with pytest.raises(StatsInputError, match="at most one cluster"):
        clustered_bootstrap(f.assign(r=0), "win", ["item_id", "r"], method="bca")
    with pytest.raises(StatsInputError, match="degenerate"):
        bootstrap_interval(np.arange(1.0, 10.0), 0.0, method="bca")
