"""Wilson interval, exact binomial test and win rates: golden values, exact and simulated coverage."""

import json

import numpy as np
import pytest
from scipy.stats import binom

from sam3d_eval.stats import StatsInputError, binomial_test, wilson_interval, win_rate


@pytest.fixture(scope="module")
def golden(golden_dir):
    return json.loads((golden_dir / "stats_reference.json").read_text())


def test_win_rate_matches_golden(golden):
    g = golden["win_rate_0_vs_1"]
    res = win_rate(g["wins"], g["losses"], g["ties"])
    assert res.rate == pytest.approx(g["win_rate_ties_excluded"], rel=1e-12)
    assert res.interval == pytest.approx(tuple(g["wilson95"]), rel=1e-10)
    assert res.pvalue == pytest.approx(g["binomtest_two_sided_p"], rel=1e-9)
    assert wilson_interval(g["wins"], g["wins"] + g["losses"]) == pytest.approx(tuple(g["wilson95"]), rel=1e-10)
    assert binomial_test(g["wins"], g["wins"] + g["losses"]) == pytest.approx(g["binomtest_two_sided_p"], rel=1e-9)


def test_wilson_closed_form():
    k, n, z = 7, 20, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(k, n) == pytest.approx((centre - half, centre + half), rel=1e-12)
    lo, hi = wilson_interval(np.array([0, 5]), np.array([10, 10]))
    assert lo[0] == 0.0 and hi[0] > 0.0 and lo.shape == (2,)


def test_ties_as_half_and_ties_reported_separately():
    res = win_rate(10, 4, 3)
    assert res.ties == 3 and res.rate == pytest.approx(10 / 14)
    assert res.rate_ties_half == pytest.approx(11.5 / 17)
    assert res.interval_ties_half == pytest.approx(wilson_interval(11.5, 17))
    # odd ties: the conservative (larger) of the exact tests at 11 and 12 of 17
    assert res.pvalue_ties_half == pytest.approx(max(binomial_test(11, 17), binomial_test(12, 17)))
    only_ties = win_rate(0, 0, 4)
    assert np.isnan(only_ties.rate) and only_ties.rate_ties_half == 0.5
    assert set(res.as_dict()) >= {"rate", "low", "high", "pvalue", "rate_ties_half", "ties"}


def test_wilson_coverage_exact_and_simulated():
    """n=60, p=0.25: exact coverage 0.949; 4000 simulated studies (binomial noise 0.35 points)."""
    n, p = 60, 0.25
    k = np.arange(n + 1)
    lo, hi = wilson_interval(k, np.full(n + 1, n))
    exact = binom.pmf(k, n, p)[(lo <= p) & (p <= hi)].sum()
    assert 0.93 <= exact <= 0.97
    draws = np.random.default_rng(0).binomial(n, p, size=4000)
    lo, hi = wilson_interval(draws, np.full(draws.shape, n))
    simulated = np.mean((lo <= p) & (p <= hi))
    assert 0.93 <= simulated <= 0.97
    assert abs(simulated - exact) < 4 * np.sqrt(exact * (1 - exact) / 4000)


def test_bad_counts_are_named():
    with pytest.raises(StatsInputError, match="exceed"):
        wilson_interval(5, 4)
    with pytest.raises(StatsInputError, match="n must be > 0"):
        wilson_interval(0, 0)
    with pytest.raises(StatsInputError, match="wins"):
        win_rate(-1, 3)
    with pytest.raises(StatsInputError, match="at least one comparison"):
        win_rate(0, 0, 0)
    with pytest.raises(StatsInputError, match="whole number"):
        binomial_test(2.5, 10)
    with pytest.raises(StatsInputError, match="p must"):
        binomial_test(2, 10, p=1.5)


def test_wilson_ends_are_exactly_0_and_1_at_the_extremes():
    """The closed form gives lo = 0 at k = 0 and hi = 1 at k = n exactly (centre = half there); rounding
    in the library left 2.8e-17 at k = 0, n = 7, which reads as a lower end above 0."""
    n = np.arange(1, 200)
    for conf in (0.9, 0.95, 0.99):
        lo, hi = wilson_interval(np.zeros(n.size), n, conf)
        assert np.all(lo == 0.0) and np.all(hi > 0.0)
        lo, hi = wilson_interval(n, n, conf)
        assert np.all(hi == 1.0) and np.all(lo < 1.0)
    assert wilson_interval(0, 7)[0] == 0.0 and wilson_interval(7, 7)[1] == 1.0
    assert isinstance(wilson_interval(0, 7)[0], float)
    # other counts keep the closed form (k = 1 of 7 here)
    z = 1.959963984540054
    p, m = 1 / 7, 7
    centre = (p + z * z / (2 * m)) / (1 + z * z / m)
    half = z / (1 + z * z / m) * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m))
    assert wilson_interval(1, 7) == pytest.approx((centre - half, centre + half), rel=1e-12)
