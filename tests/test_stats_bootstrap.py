"""Bootstrap intervals: equal to scipy.stats.bootstrap for the same draws, coverage by simulation, clusters,
the studentized (bootstrap-t) paired interval."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
import statsmodels.api as sm

from sam3d_eval.stats import (
    BootstrapResult,
    StatsInputError,
    bootstrap_ci,
    bootstrap_interval,
    clustered_bootstrap,
    paired_bootstrap,
    studentized_interval,
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


# ------------------------------------------------------------------------------- fewer than 2 units
def test_a_single_unit_gives_no_interval():
    with pytest.raises(StatsInputError, match="values: at least 2 values are needed for an interval, got 1"):
        bootstrap_ci([3.0])
    with pytest.raises(StatsInputError, match="at least 2 pairs are needed for an interval, got 1"):
        paired_bootstrap([1.0], [2.0])
    with pytest.raises(StatsInputError, match="x: at least 2 values"):
        two_sample_bootstrap([1.0], [1.0, 2.0], ratio)
    one_item = pd.DataFrame({"item_id": [7, 7, 7], "win": [1.0, 0.0, 1.0]})
    with pytest.raises(StatsInputError, match="'item_id': at least 2 clusters are needed for an interval, got 1"):
        clustered_bootstrap(one_item, "win", "item_id")
    with pytest.raises(StatsInputError, match="frame: at least 2 rows"):
        clustered_bootstrap(one_item.iloc[:1], "win", None)
    with pytest.raises(StatsInputError, match="'rater_id': at least 2 clusters"):
        clustered_bootstrap(pd.DataFrame({"item_id": [1, 2], "rater_id": ["r", "r"], "win": [1.0, 0.0]}), "win",
                            ["item_id", "rater_id"])
    with pytest.raises(StatsInputError, match="clusters: at least 2 clusters are needed for an interval, got 1"):
        paired_bootstrap([1.0, 2.0, 4.0], [2.0, 2.0, 2.0], clusters=["p", "p", "p"])


# ------------------------------------------------------------------------------- studentized interval
def bootstrap_t_by_hand(d, clusters, n_resamples, seed, confidence=0.95):
    """Independent bootstrap-t of the pooled mean of d, one resample at a time: draw K cluster indices
    (the same Generator calls as the vectorised code), stack the drawn clusters' rows, est* = their mean,
    se* = sqrt(K / (K - 1) sum_k (D_k - est* n_k)^2) / N* over the drawn clusters."""
    labels = list(dict.fromkeys(clusters))  # first-seen order
    rows = [d[np.asarray(clusters) == lab] for lab in labels]
    k = len(rows)

    def est_se(groups):
        stacked = np.concatenate(groups)
        est = stacked.mean()
        u = np.array([g.sum() - est * g.size for g in groups])
        return est, np.sqrt(k / (k - 1) * np.sum(u**2)) / stacked.size

    est, se = est_se(rows)
    idx = np.random.default_rng(seed).integers(0, k, (n_resamples, k))
    reps, t = np.empty(n_resamples), np.empty(n_resamples)
    for r in range(n_resamples):
        reps[r], se_r = est_se([rows[i] for i in idx[r]])
        t[r] = (reps[r] - est) / se_r
    a = 1 - confidence
    q_lo, q_hi = np.quantile(t, [a / 2, 1 - a / 2])
    return est, se, est - q_hi * se, est - q_lo * se, reps, t


def test_studentized_interval_formula():
    t = np.linspace(-3.0, 2.0, 101)  # quantiles at 0.05 / 0.95 of an evenly spaced grid: -2.75 and 1.75
    assert studentized_interval(t, 10.0, 2.0, confidence=0.9) == pytest.approx((10 - 1.75 * 2, 10 + 2.75 * 2), rel=1e-12)
    assert studentized_interval(t, 10.0, 0.0) == (10.0, 10.0)
    with pytest.raises(StatsInputError, match="unbounded: 10 of 101"):
        studentized_interval(np.r_[np.full(10, -np.inf), t[10:]], 0.0, 1.0)
    # infinite t-replicates inside the tails' share do not move the ends
    assert studentized_interval(np.r_[-np.inf, t[1:]], 0.0, 1.0, confidence=0.9) == pytest.approx((-1.75, 2.75))
    with pytest.raises(StatsInputError, match="se must be finite and >= 0"):
        studentized_interval(t, 0.0, -1.0)
    with pytest.raises(StatsInputError, match="NaN"):
        studentized_interval(np.r_[t, np.nan], 0.0, 1.0)


def test_paired_studentized_equals_a_loop_bootstrap_t():
    rng = np.random.default_rng(12)
    a = rng.random(23)
    b = a + rng.gamma(0.5, size=23)
    res = paired_bootstrap(a, b, method="studentized", n_resamples=600, seed=4)
    est, se, lo, hi, reps, t = bootstrap_t_by_hand(b - a, np.arange(23), 600, 4)
    assert se == pytest.approx(np.std(b - a, ddof=1) / np.sqrt(23), rel=1e-12)  # singleton clusters: sd / sqrt(n)
    # float64 sums of 23 terms in another order: relative differences of a few 1e-16
    assert (res.estimate, res.low, res.high) == pytest.approx((est, lo, hi), rel=1e-12)
    np.testing.assert_allclose(res.replicates, reps, rtol=1e-12)
    assert res.se == pytest.approx(np.std(reps, ddof=1), rel=1e-12)
    assert res.method == "studentized" and res.n_resamples == 600
    # drift: the intervals of the two halves of the t-replicates
    halves = [studentized_interval(h, est, se) for h in (t[:300], t[300:])]
    assert res.drift == pytest.approx(max(abs(halves[0][0] - halves[1][0]), abs(halves[0][1] - halves[1][1])),
                                      rel=1e-9)


def test_clustered_studentized_equals_a_loop_and_uses_the_cluster_robust_se():
    rng = np.random.default_rng(13)
    sizes = rng.integers(1, 5, size=17)
    clusters = np.repeat(np.array([f"pair{i}" for i in range(17)]), sizes)
    shift = np.repeat(rng.standard_normal(17), sizes)  # shared within a cluster
    a = rng.random(clusters.size)
    b = a + 0.2 + shift + 0.3 * rng.standard_normal(clusters.size)
    res = paired_bootstrap(a, b, clusters=clusters, method="studentized", n_resamples=500, seed=8)
    est, se, lo, hi, reps, _ = bootstrap_t_by_hand(b - a, clusters, 500, 8)
    # the reference's standard error is statsmodels' cluster-robust one of an intercept-only regression
    # (sandwich with the G / (G - 1) (N - 1) / (N - p) correction, p = 1)
    fit = sm.OLS(b - a, np.ones(clusters.size)).fit(cov_type="cluster",
                                                     cov_kwds={"groups": pd.factorize(clusters)[0]})
    assert se == pytest.approx(fit.bse[0], rel=1e-10)
    assert (res.estimate, res.low, res.high) == pytest.approx((est, lo, hi), rel=1e-12)
    assert res.estimate == pytest.approx(np.mean(b - a), rel=1e-12)  # the pooled mean over rows
    np.testing.assert_allclose(res.replicates, reps, rtol=1e-12)


@pytest.mark.parametrize("method", ["studentized", "percentile", "bca"])
def test_singleton_clusters_and_duplicated_rows(method):
    rng = np.random.default_rng(14)
    a = rng.random(30)
    b = a + rng.lognormal(0.0, 0.7, size=30)
    plain = paired_bootstrap(a, b, method=method, n_resamples=700, seed=2)
    singles = paired_bootstrap(a, b, clusters=np.arange(30), method=method, n_resamples=700, seed=2)
    # the same draws; the unclustered percentile/BCa path averages with np.mean, the clustered one with
    # sum / n: equal up to float64 rounding of 30-term sums
    assert (singles.estimate, singles.low, singles.high) == pytest.approx((plain.estimate, plain.low, plain.high),
                                                                          rel=1e-12)
    assert singles.method == plain.method == method
    # every pair twice, both copies in one cluster: K = 30 clusters, the same cluster draws, and every
    # cluster sum, size and residual exactly twice the undoubled one (scaling by 2 is exact in float64)
    doubled = paired_bootstrap(np.repeat(a, 2), np.repeat(b, 2), clusters=np.repeat(np.arange(30), 2),
                               method=method, n_resamples=700, seed=2)
    assert (doubled.estimate, doubled.low, doubled.high) == pytest.approx(
        (singles.estimate, singles.low, singles.high), rel=1e-12)
    np.testing.assert_allclose(doubled.replicates, singles.replicates, rtol=1e-12)


def test_auto_method_and_statistic_rules():
    rng = np.random.default_rng(15)
    a, b = rng.random(60), rng.random(60)
    assert paired_bootstrap(a[:49], b[:49], n_resamples=50).method == "studentized"
    assert paired_bootstrap(a[:50], b[:50], n_resamples=50).method == "percentile"
    assert paired_bootstrap(a[:20], b[:20], statistic=np.median, n_resamples=50).method == "percentile"
    # with clusters the units are the clusters: 60 rows in 20 clusters is below 50 units
    assert paired_bootstrap(a, b, clusters=np.arange(60) // 3, n_resamples=50).method == "studentized"
    with pytest.raises(StatsInputError, match="studentized' needs statistic=np.mean"):
        paired_bootstrap(a, b, statistic=np.median, method="studentized")
    with pytest.raises(StatsInputError, match="clusters needs statistic=np.mean"):
        paired_bootstrap(a, b, statistic=np.median, clusters=np.arange(60) // 3)
    with pytest.raises(StatsInputError, match="method must be one of"):
        paired_bootstrap(a, b, method="basic")
    with pytest.raises(StatsInputError, match=r"one label per pair, shape \(60,\)"):
        paired_bootstrap(a, b, clusters=np.arange(59))
    with pytest.raises(StatsInputError, match="clusters has 1 missing label"):
        paired_bootstrap(a, b, clusters=np.r_[np.arange(59.0), np.nan])


def test_studentized_degenerate_cases():
    # every difference equal: se = 0 on the data, the zero-width interval at the estimate
    res = paired_bootstrap([1.0, 2.0, 3.0], [1.5, 2.5, 3.5], method="studentized")
    assert (res.estimate, res.low, res.high, res.method, res.se) == (0.5, 0.5, 0.5, "studentized", 0.0)
    # clusters whose means are equal although their rows differ: se = 0 as well
    res = paired_bootstrap([0.0] * 4, [0.0, 2.0, 1.0, 1.0], clusters=[1, 1, 2, 2], method="studentized")
    assert (res.low, res.high) == (1.0, 1.0)
    # d = (0, 0, 1): a resample of three 0s (chance (2/3)^3 = 0.30) has se* = 0 and est* = 0 != 1/3, so
    # t* = -inf on 30% of resamples: the upper end is unbounded. "studentized" refuses; "auto" gives the
    # percentile interval of the same replicates and says so.
    with pytest.raises(StatsInputError, match="unbounded"):
        paired_bootstrap([0.0, 0.0, 0.0], [0.0, 0.0, 1.0], method="studentized")
    auto = paired_bootstrap([0.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    pct = paired_bootstrap([0.0, 0.0, 0.0], [0.0, 0.0, 1.0], method="percentile")
    assert auto.method == "percentile" and (auto.low, auto.high) == pytest.approx((pct.low, pct.high), rel=1e-12)


@pytest.mark.slow
def test_studentized_covers_where_percentile_undercovers():
    """Paired differences d ~ Gamma(0.5, 1) (a chi-square with 1 df, halved: skewness 2.83, a long right
    tail, true mean 0.5), n = 20, 999 resamples: the shape of a per-sample metric difference driven by a
    few large failures. There the percentile interval of the mean covers 0.881 and BCa 0.899, while the
    studentized one covers 0.944 (20,000 simulations offline, Monte Carlo SE 0.002). Lognormal(0, 1)
    differences or a t with 3 df are not used: at n = 20 the bootstrap-t itself covers only 0.913 and 0.924
    there (20,000 simulations), so no margin above 0.93 could be asserted.

    3000 simulations: the Monte Carlo SE of the studentized coverage is sqrt(0.944 * 0.056 / 3000) = 0.0042,
    at most a third of the 0.014 margin to the asserted 0.93; for the percentile share, SE 0.0059 against
    a margin of 0.029 to 0.91; for the difference of the two shares, SE <= sqrt((0.053 + 0.105) / 3000)
    = 0.0073 against a margin of 0.063."""
    rng = np.random.default_rng(2027)
    sims, n, truth = 3000, 20, 0.5
    hit_t = hit_p = 0
    zeros = np.zeros(n)
    for _ in range(sims):
        d = rng.gamma(0.5, 1.0, size=n)
        r = paired_bootstrap(zeros, d, method="studentized", n_resamples=999, seed=rng)
        hit_t += r.low <= truth <= r.high
        r = paired_bootstrap(zeros, d, method="percentile", n_resamples=999, seed=rng)
        hit_p += r.low <= truth <= r.high
    cover_t, cover_p = hit_t / sims, hit_p / sims
    assert cover_t >= 0.93
    assert cover_p < 0.91
    assert cover_p < cover_t


def test_studentized_treats_rounding_level_spread_as_zero():
    """Differences equal up to float rounding (log(1.01 v) - log(v)) must not give se* ~ 1e-17 and an
    interval end of 1e15: such resamples have se* = 0, and when there are more of them than a tail holds the
    'auto' interval is the percentile one."""
    v = np.arange(1, 11.0)
    a, b = np.log(v), np.log(v * 1.01)
    b[:2] = np.log(10.1)
    r = paired_bootstrap(a, b, n_resamples=400, seed=0)
    assert r.method == "percentile"
    assert r.low >= np.min(b - a) - 1e-12 and r.high <= np.max(b - a) + 1e-12
    with pytest.raises(StatsInputError, match="unbounded"):
        paired_bootstrap(a, b, n_resamples=400, seed=0, method="studentized")
