"""Two-level bootstrap (runs within each side x shared sample clusters), checked against explicit loops."""

import numpy as np
import pytest

from sam3d_eval.stats import StatsInputError, bootstrap_pvalue, probability_of_improvement, two_level_bootstrap
from sam3d_eval.stats.two_level import run_means, run_medians, run_probability_of_improvement


def _identity(r, n):
    return np.arange(r)[None, :], np.ones((1, n))


def test_reducers_on_the_data_are_the_plain_figures():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 11)), rng.normal(size=(2, 11))
    runs, w = _identity(3, 11)
    assert run_means(x, w, runs)[0] == pytest.approx(x.mean(axis=1).mean(), abs=1e-15)
    assert run_medians(x, w, runs)[0] == pytest.approx(np.median(x, axis=1).mean(), abs=1e-15)
    runs_y, _ = _identity(2, 11)
    got = run_probability_of_improvement(x, y, w, runs, runs_y)[0]
    assert got == pytest.approx(probability_of_improvement(x, y), abs=1e-15)


@pytest.mark.parametrize("n", [7, 8])
def test_weighted_median_equals_the_median_of_the_repeated_sample(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(1, n))
    w = rng.integers(0, 4, size=(50, n)).astype(float)
    w[:, 0] += 1  # never an empty resample
    got = run_medians(x, w, np.zeros((50, 1), dtype=np.int64))
    want = [np.median(np.repeat(x[0], wi.astype(int))) for wi in w]
    np.testing.assert_allclose(got, want, rtol=0, atol=0)


def test_run_pick_averages_the_drawn_runs_with_repeats():
    x = np.array([[1.0, 1.0], [3.0, 3.0], [10.0, 10.0]])
    w = np.ones((2, 2))
    runs = np.array([[0, 0, 2], [1, 1, 1]])
    np.testing.assert_allclose(run_means(x, w, runs), [(1 + 1 + 10) / 3, 3.0])


def test_replicates_equal_an_explicit_two_level_loop():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 10)), rng.normal(0.3, 1, size=(2, 10))
    clusters = np.repeat(np.arange(5), 2)  # twin pairs
    stats = {"delta": lambda ra, rb, w: run_means(b, w, rb) - run_means(a, w, ra)}
    res = two_level_bootstrap(stats, (3, 2), 10, clusters=clusters, n_resamples=300, seed=7)

    g = np.random.default_rng(7)
    want = []
    for _ in range(1):  # one chunk: all 300 resamples drawn at once, in the documented order
        ia, ib = g.integers(0, 3, (300, 3)), g.integers(0, 2, (300, 2))
        units = g.integers(0, 5, (300, 5))
    for r in range(300):
        take = np.concatenate([np.flatnonzero(clusters == u) for u in units[r]])
        fa = np.mean([a[i, take].mean() for i in ia[r]])
        fb = np.mean([b[i, take].mean() for i in ib[r]])
        want.append(fb - fa)
    np.testing.assert_allclose(res.replicates["delta"], want, rtol=1e-12, atol=1e-15)
    assert res.estimates["delta"] == pytest.approx(b.mean() - a.mean(), abs=1e-14)
    assert res.interval("delta") == pytest.approx(tuple(np.quantile(want, [0.025, 0.975])), abs=1e-12)
    assert res.n_runs == (3, 2) and res.n_clusters == 5


def test_strata_keep_their_number_of_units():
    dom = np.array(["syn"] * 3 + ["real"] * 7)
    seen = []

    def count_syn(ra, rb, w):
        seen.append(w[:, :3].sum(axis=1))
        return w[:, :3].sum(axis=1)

    two_level_bootstrap({"n": count_syn}, (1, 1), 10, strata=dom, n_resamples=200, seed=0)
    assert np.all(np.concatenate(seen[1:]) == 3)  # seen[0] is the estimate's call


def test_run_variation_widens_the_interval():
    """Three seeds per side whose means scatter: the two-level interval must cover that scatter, where a
    single run per side (samples only) gives a narrow interval."""
    rng = np.random.default_rng(2)
    base = rng.normal(size=200)
    a = base + np.array([[0.0], [0.3], [-0.3]]) + rng.normal(0, 0.05, (3, 200))
    b = base + 0.1 + np.array([[0.25], [-0.25], [0.0]]) + rng.normal(0, 0.05, (3, 200))
    stat = {"d": lambda ra, rb, w: run_means(b, w, rb) - run_means(a, w, ra)}
    multi = two_level_bootstrap(stat, (3, 3), 200, n_resamples=2000, seed=0)
    one = two_level_bootstrap({"d": lambda ra, rb, w: run_means(b[:1], w, rb) - run_means(a[:1], w, ra)},
                              (1, 1), 200, n_resamples=2000, seed=0)
    w_multi = np.subtract(*multi.interval("d")[::-1])
    w_one = np.subtract(*one.interval("d")[::-1])
    assert w_multi > 5 * w_one
    per_seed = b.mean(axis=1)[:, None] - a.mean(axis=1)[None, :]  # every seed-to-seed difference
    lo, hi = multi.interval("d")
    assert lo < np.median(per_seed) < hi


def test_undefined_statistics_are_reported_not_raised():
    x = np.array([[0.0, 0.0, 1.0]])
    with np.errstate(divide="ignore"):
        res = two_level_bootstrap({"ratio": lambda ra, rb, w: 1.0 / run_means(x, w, ra)}, (1, 1), 3,
                                  n_resamples=500, seed=0)
    assert "ratio" in res.undefined and "ratio" not in res.intervals
    assert np.isnan(res.interval("ratio")[0]) and np.isnan(res.pvalue("ratio"))


def test_errors():
    f = {"m": lambda ra, rb, w: w.sum(axis=1)}
    with pytest.raises(StatsInputError, match="at least 2"):
        two_level_bootstrap(f, (1, 1), 3, clusters=["x", "x", "x"])
    with pytest.raises(StatsInputError, match="spans two strata"):
        two_level_bootstrap(f, (1, 1), 4, clusters=[0, 0, 1, 1], strata=["s", "r", "s", "r"])
    with pytest.raises(StatsInputError, match="one value per resample"):
        two_level_bootstrap({"bad": lambda ra, rb, w: np.zeros(3)}, (1, 1), 4)
    with pytest.raises(StatsInputError, match="at least one run"):
        two_level_bootstrap(f, (0, 1), 4)


def test_bootstrap_pvalue_inverts_the_percentile_interval():
    assert bootstrap_pvalue(np.linspace(0.1, 1, 99)) == pytest.approx(2 / 100)  # never 0: at least 2 / (B + 1)
    reps = np.concatenate([np.full(30, -1.0), np.full(970, 1.0)])
    assert bootstrap_pvalue(reps) == pytest.approx(2 * 31 / 1001)
    assert bootstrap_pvalue(np.zeros(10)) == 1.0  # identical sides: no evidence
    rng = np.random.default_rng(3)
    for shift in (0.5, 1.5, 2.5, 3.5):
        r = rng.normal(shift, 1.0, 4000)
        p = bootstrap_pvalue(r)
        for alpha in (0.01, 0.05, 0.2):
            lo, hi = np.quantile(r, [alpha / 2, 1 - alpha / 2], method="inverted_cdf")
            assert (p < alpha) == (lo > 0 or hi < 0) or abs(p - alpha) <= 4 / r.size
