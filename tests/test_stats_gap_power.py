"""Feature-space gap (MMD^2, KID, proxy A-distance) and study sizing (votes_needed)."""

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.special import ndtri
from scipy.stats import kstest

from sam3d_eval.stats import StatsInputError, kid, mmd2_unbiased, proxy_a_distance, votes_needed, wilson_interval
from sam3d_eval.stats.gap import _fit_logistic, _permutation_mmd2
from sam3d_eval.stats.power import win_rate_claim_power


def naive_mmd2(x, y, k):
    n, m = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return sxx + syy - 2 * sxy


def test_mmd2_matches_the_double_sum():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 3)), rng.normal(0.3, 1.2, size=(7, 3))
    s = 1.7
    rbf = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * s * s))
    poly = lambda a, b: (a @ b / 3 + 1) ** 3
    assert mmd2_unbiased(x, y, bandwidth=s, n_permutations=0).mmd2 == pytest.approx(naive_mmd2(x, y, rbf), rel=1e-10)
    assert mmd2_unbiased(x, y, kernel="polynomial", n_permutations=0).mmd2 == pytest.approx(naive_mmd2(x, y, poly), rel=1e-10)
    pooled = np.concatenate([x, y])
    d = np.sqrt(((pooled[:, None] - pooled[None]) ** 2).sum(-1))[np.triu_indices(16, 1)]
    assert mmd2_unbiased(x, y, n_permutations=0).bandwidth == pytest.approx(np.median(d), rel=1e-10)


def test_vectorised_permutations_equal_direct_recomputation():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(5, 2))
    pooled = np.concatenate([x, y])
    k = np.exp(-((pooled[:, None] - pooled[None]) ** 2).sum(-1) / 2.0)
    perms = np.array([rng.permutation(11) for _ in range(20)])
    k0 = k.copy()
    np.fill_diagonal(k0, 0.0)
    fast = _permutation_mmd2(k0, 6, perms < 6)
    rbf = lambda a, b: np.exp(-np.sum((a - b) ** 2) / 2.0)
    for p, order in enumerate(perms):
        xs, ys = pooled[order < 6], pooled[order >= 6]
        assert fast[p] == pytest.approx(naive_mmd2(xs, ys, rbf), rel=1e-10)


def test_permutation_pvalues_uniform_under_null_and_small_under_shift():
    """300 null studies (x, y from one distribution): the p-values pass a KS test for uniformity (their grid
    step 1/200 is far below the KS tolerance at 300 draws); a 1-sd shift is detected every time."""
    rng = np.random.default_rng(2)
    pv = [mmd2_unbiased(rng.normal(size=(20, 3)), rng.normal(size=(25, 3)), n_permutations=199, seed=rng).pvalue for _ in range(300)]
    assert kstest(pv, "uniform").pvalue > 0.01
    assert 0.4 < np.mean(pv) < 0.6
    shifted = [mmd2_unbiased(rng.normal(size=(40, 3)), rng.normal(1.0, 1, size=(40, 3)), n_permutations=199, seed=rng) for _ in range(10)]
    assert all(r.pvalue == 1 / 200 for r in shifted)
    assert all(r.mmd2 > 0 for r in shifted)


def test_kid_subsets():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 4)), rng.normal(0.5, 1, size=(40, 4))
    full = mmd2_unbiased(x, y, kernel="polynomial", n_permutations=0).mmd2
    one = kid(x, y, n_subsets=3, subset_size=1000)  # every subset is a permutation of all rows
    assert one.subset_size == 40 and one.mean == pytest.approx(full, rel=1e-10) and one.std == pytest.approx(0.0, abs=1e-12)
    x, y = rng.normal(size=(200, 4)), rng.normal(0.5, 1, size=(200, 4))
    res = kid(x, y, n_subsets=50, subset_size=100, seed=4)
    assert res.subset_size == 100
    assert res.mean == pytest.approx(res.values.mean()) and res.std == pytest.approx(res.values.std(ddof=0))
    same = kid(x, rng.normal(size=(200, 4)), n_subsets=50, subset_size=100, seed=4)
    assert res.mean > 10 * abs(same.mean) and res.mean > 2 * res.std


def test_logistic_fit_equals_statsmodels_mle():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 3))
    y = (rng.random(300) < 1 / (1 + np.exp(-(x @ [1.0, -0.5, 0.2] + 0.3)))).astype(float)
    w, b = _fit_logistic(x, y, 0.0)
    ref = sm.Logit(y, sm.add_constant(x)).fit(disp=0, method="newton", tol=1e-12).params
    np.testing.assert_allclose(np.append(b, w), ref, atol=1e-6)


def test_proxy_a_distance():
    rng = np.random.default_rng(6)
    same = proxy_a_distance(rng.normal(size=(200, 5)), rng.normal(size=(150, 5)), seed=1)
    assert same.low < 0.0 < same.high and abs(same.pad) < 0.3
    apart = proxy_a_distance(rng.normal(size=(200, 5)), rng.normal(3.0, 1, size=(150, 5)), seed=1)
    assert apart.pad > 1.8 and apart.low > 1.5
    assert apart.pad == pytest.approx(2 * (1 - 2 * apart.error)) and apart.fold_values.shape == (5,)
    assert apart.pad == pytest.approx(apart.fold_values.mean())


def test_gap_bad_input_is_named():
    x = np.ones((10, 3))
    with pytest.raises(StatsInputError, match="same number of features"):
        mmd2_unbiased(x, np.ones((10, 2)))
    with pytest.raises(StatsInputError, match=r"all-NaN feature column\(s\) \[1\]"):
        kid(x, np.where(np.arange(3) == 1, np.nan, np.ones((10, 3))))
    with pytest.raises(StatsInputError, match="y is empty"):
        proxy_a_distance(x, np.ones((0, 3)))
    with pytest.raises(StatsInputError, match="kernel"):
        mmd2_unbiased(x, x, kernel="laplace")
    with pytest.raises(StatsInputError, match="at least 5 rows"):
        proxy_a_distance(x, np.ones((3, 3)))


def test_claim_power_closed_form_equals_wilson_inversion():
    z = ndtri(0.975)
    for n in (5, 40, 123, 300):
        k = np.arange(n + 1)
        lo, _ = wilson_interval(k, np.full(n + 1, n))
        passing = k[lo > 0.75]
        k_min = passing[0] if passing.size else n + 1
        assert k_min == np.floor(n * 0.75 + z * np.sqrt(n * 0.75 * 0.25)) + 1


def test_votes_needed_is_the_smallest_stable_n_and_simulation_agrees():
    res = votes_needed(0.83, 0.75, power=0.8)
    n = res.effective_votes
    pw = win_rate_claim_power(np.arange(n - 1, 2 * n + 1), 0.83, 0.75)
    assert pw[0] < 0.8 and np.all(pw[1:] >= 0.8) and res.power == pytest.approx(pw[1])
    assert res.votes == n and res.items is None and res.design_effect == 1.0
    # normal approximation (score test) lands within 15%
    approx = ((1.959964 * np.sqrt(0.75 * 0.25) + 0.841621 * np.sqrt(0.83 * 0.17)) / 0.08) ** 2
    assert abs(n - approx) / approx < 0.15
    # 4000 simulated studies of n votes: the share whose Wilson lower bound clears 0.75 matches the power
    wins = np.random.default_rng(0).binomial(n, 0.83, size=4000)
    lo, _ = wilson_interval(wins, np.full(wins.shape, n))
    assert abs(np.mean(lo > 0.75) - res.power) < 4 * np.sqrt(res.power * (1 - res.power) / 4000)


def test_design_effect_inflates_votes_and_gives_items():
    base = votes_needed(0.83, 0.75)
    clustered = votes_needed(0.83, 0.75, votes_per_item=5, icc=0.1)
    assert clustered.design_effect == pytest.approx(1.4)
    assert clustered.effective_votes == base.effective_votes
    assert clustered.votes == int(np.ceil(base.effective_votes * 1.4)) and clustered.items == int(np.ceil(clustered.votes / 5))
    assert votes_needed(0.83, 0.75, design_effect=2.0).votes == 2 * base.effective_votes
    with pytest.raises(StatsInputError, match="threshold < true_rate"):
        votes_needed(0.7, 0.75)
    with pytest.raises(StatsInputError, match="icc needs votes_per_item"):
        votes_needed(0.83, 0.75, icc=0.1)
    with pytest.raises(StatsInputError, match="power"):
        votes_needed(0.83, 0.75, power=1.0)


def test_logistic_fit_high_dimensional_path_is_stationary():
    """d > 512 uses scipy L-BFGS: the penalised gradient vanishes at its answer."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(80, 520))
    y = (rng.random(80) < 0.5).astype(float)
    w, b = _fit_logistic(x, y, 0.5)
    r = 1 / (1 + np.exp(-(x @ w + b))) - y
    assert np.max(np.abs(x.T @ r / 80 + 0.5 * w)) < 1e-6 and abs(r.mean()) < 1e-6


@pytest.mark.parametrize("kw, message", [
    ({"n_subsets": 2.5}, "n_subsets must be an integer >= 1, got 2.5"),
    ({"n_subsets": 0}, "n_subsets must be an integer >= 1, got 0"),
    ({"n_subsets": True}, "n_subsets must be an integer >= 1"),
    ({"subset_size": 10.5}, "subset_size must be an integer >= 2, got 10.5"),
    ({"subset_size": 1}, "subset_size must be an integer >= 2, got 1"),
])
def test_kid_counts_must_be_integers(kw, message):
    x = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(StatsInputError, match=message):
        kid(x, x + 1.0, **kw)
    assert kid(x, x + 1.0, n_subsets=np.int64(2), subset_size=10).n_subsets == 2  # numpy integers are fine


@pytest.mark.parametrize("args, message", [
    ((100, 0.8, 1.2), r"threshold must lie in \(0, 1\), got 1.2"),
    ((100, 0.8, 0.0), r"threshold must lie in \(0, 1\)"),
    ((100, 1.3, 0.75), r"true_rate must lie in \[0, 1\], got 1.3"),
    ((100, -0.1, 0.75), r"true_rate must lie in \[0, 1\]"),
    ((-5, 0.8, 0.75), "n must be a positive whole number of votes"),
    ((0, 0.8, 0.75), "n must be a positive whole number of votes"),
    ((12.5, 0.8, 0.75), "n must be a positive whole number of votes"),
    ((np.array([10, -1]), 0.8, 0.75), "n must be a positive whole number of votes"),
    ((np.array([]), 0.8, 0.75), "n must be a positive whole number of votes"),
])
def test_claim_power_arguments_are_validated(args, message):
    with pytest.raises(StatsInputError, match=message):
        win_rate_claim_power(*args)


def test_claim_power_edges_are_exact():
    # true rate 1: every vote is a win, the claim holds once n is large enough for the Wilson bound
    z = ndtri(0.975)
    n = np.arange(1, 40)
    k_min = np.floor(n * 0.75 + z * np.sqrt(n * 0.75 * 0.25)) + 1
    np.testing.assert_array_equal(win_rate_claim_power(n, 1.0, 0.75), (k_min <= n).astype(float))
    assert win_rate_claim_power(50, 0.0, 0.75) == 0.0
