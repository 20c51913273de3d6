"""Agreement (golden, published worked examples) and paired tests / multiple-testing corrections."""

import json
import warnings

import numpy as np
import pytest
from scipy.stats import wilcoxon
from statsmodels.stats.contingency_tables import mcnemar

from sam3d_eval.stats import (
    StatsInputError,
    benjamini_hochberg,
    cohens_kappa,
    fleiss_kappa,
    holm,
    krippendorff_alpha,
    mcnemar_exact,
    wilcoxon_signed_rank,
)

nan = np.nan
# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: observers A-D x units 1-12.
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
)
# Fleiss (1971)-style table (Wikipedia, "Fleiss' kappa", worked example): 10 subjects x 5 categories, 14 raters.
FLEISS_EXAMPLE = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


@pytest.fixture(scope="module")
def golden(golden_dir):
    return json.loads((golden_dir / "stats_reference.json").read_text())


@pytest.mark.parametrize("level, published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)])
def test_krippendorff_2011_published_values(level, published):
    assert krippendorff_alpha(KRIPPENDORFF_2011, level) == pytest.approx(published, abs=5e-4)


def test_krippendorff_nominal_exact_fraction_and_invariances():
    # the paper's nominal computation: n = 40 pairable values, n_c = (9, 13, 10, 5, 3) for values 1..5,
    # 8 off-diagonal coincidences: alpha = 1 - (n - 1) * 8 / (n^2 - sum n_c^2)
    n_c = np.array([9, 13, 10, 5, 3])
    assert krippendorff_alpha(KRIPPENDORFF_2011) == pytest.approx(1 - 39 * 8 / (40**2 - np.sum(n_c**2)), rel=1e-12)
    # rater order and unit order do not matter; adding a rater with no ratings changes nothing
    perm = KRIPPENDORFF_2011[::-1][:, ::-1]
    padded = np.vstack([KRIPPENDORFF_2011, np.full(12, nan)])
    for level in ("nominal", "ordinal", "interval", "ratio"):
        ref = krippendorff_alpha(KRIPPENDORFF_2011, level)
        assert krippendorff_alpha(perm, level) == pytest.approx(ref, rel=1e-12)
        assert krippendorff_alpha(padded, level) == pytest.approx(ref, rel=1e-12)
    # interval alpha is invariant to affine rescaling, nominal to relabelling
    assert krippendorff_alpha(3 * KRIPPENDORFF_2011 + 7, "interval") == pytest.approx(
        krippendorff_alpha(KRIPPENDORFF_2011, "interval"), rel=1e-12
    )
    assert krippendorff_alpha(KRIPPENDORFF_2011**2, "nominal") == pytest.approx(krippendorff_alpha(KRIPPENDORFF_2011), rel=1e-12)
    # perfect agreement
    assert krippendorff_alpha(np.array([[1, 2, 3, nan], [1, 2, 3, 4.0]])) == 1.0


def test_krippendorff_two_raters_no_missing_nominal_matches_scott_pi_limit():
    """With two raters and no missing data, nominal alpha = 1 - (n - 1) * (1 - p_o) / (n - sum n_c^2 / n)
    (Krippendorff 2011, section A: Scott's pi corrected for small samples)."""
    rng = np.random.default_rng(0)
    r = rng.integers(0, 3, size=(2, 40)).astype(float)
    r[1, :25] = r[0, :25]
    n = r.size
    p_o = np.mean(r[0] == r[1])
    n_c = np.array([np.sum(r == c) for c in range(3)])
    expect = 1 - (n - 1) * (1 - p_o) / (n - np.sum(n_c**2) / n)
    assert krippendorff_alpha(r) == pytest.approx(expect, rel=1e-12)


def test_krippendorff_bad_input():
    with pytest.raises(StatsInputError, match="all NaN"):
        krippendorff_alpha(np.full((3, 4), nan))
    with pytest.raises(StatsInputError, match="pairable"):
        krippendorff_alpha(np.array([[1.0, nan], [nan, 2.0]]))
    with pytest.raises(StatsInputError, match="level"):
        krippendorff_alpha(KRIPPENDORFF_2011, "cardinal")
    with pytest.raises(StatsInputError, match=">= 0"):
        krippendorff_alpha(KRIPPENDORFF_2011 - 3, "ratio")
    with pytest.raises(StatsInputError, match="no variation"):
        krippendorff_alpha(np.ones((2, 3)))


def test_fleiss_published_example_and_golden(golden):
    assert fleiss_kappa(FLEISS_EXAMPLE) == pytest.approx(0.210, abs=5e-4)
    # hand computation of the same: P_bar = 0.378, P_e = 0.213
    t = FLEISS_EXAMPLE.astype(float)
    n = 14
    p_i = (np.sum(t * t, axis=1) - n) / (n * (n - 1))
    p_j = t.sum(0) / t.sum()
    assert fleiss_kappa(FLEISS_EXAMPLE) == pytest.approx((p_i.mean() - np.sum(p_j**2)) / (1 - np.sum(p_j**2)), rel=1e-12)
    assert fleiss_kappa(golden["fleiss"]["counts"]) == pytest.approx(golden["fleiss"]["kappa"], rel=1e-10)


def test_fleiss_bad_input():
    with pytest.raises(StatsInputError, match="same number of raters: row 0 has 14, row 1 has 13"):
        fleiss_kappa(np.vstack([FLEISS_EXAMPLE[0], FLEISS_EXAMPLE[1] - [0, 1, 0, 0, 0]]))
    with pytest.raises(StatsInputError, match="whole numbers"):
        fleiss_kappa([[1.5, 0.5], [1, 1]])
    with pytest.raises(StatsInputError, match="shape"):
        fleiss_kappa(np.zeros((0, 3)))


def test_cohen_golden_and_weighted(golden):
    c = golden["cohen"]
    assert cohens_kappa(c["rater1"], c["rater2"]) == pytest.approx(c["kappa"], rel=1e-10)
    r1 = np.array([1, 2, 3, 3, 2, 1, 1, 3, 2, 2])
    r2 = np.array([1, 3, 3, 2, 2, 1, 2, 3, 1, 2])
    k = 3
    table = np.zeros((k, k))
    np.add.at(table, (r1 - 1, r2 - 1), 1)
    table /= table.sum()
    expected = np.outer(table.sum(1), table.sum(0))
    i, j = np.indices((k, k))
    for weights, d in ((None, (i != j).astype(float)), ("linear", np.abs(i - j)), ("quadratic", (i - j) ** 2.0)):
        ref = 1 - np.sum(d * table) / np.sum(d * expected)
        assert cohens_kappa(r1, r2, weights) == pytest.approx(ref, rel=1e-12)
    # an unused category changes the rank distances of weighted kappa
    assert cohens_kappa(r1, r2, "linear", categories=[1, 2, 3]) == pytest.approx(cohens_kappa(r1, r2, "linear"))


def test_cohen_bad_input():
    with pytest.raises(StatsInputError, match=r"r2 has ratings outside the categories \[0, 1\]: \[2\]"):
        cohens_kappa([0, 1, 1], [0, 1, 2], categories=[0, 1])
    with pytest.raises(StatsInputError, match="same length"):
        cohens_kappa([0, 1], [0, 1, 1])
    with pytest.raises(StatsInputError, match="all NaN"):
        cohens_kappa([nan, nan], [0.0, 1.0])
    with pytest.raises(StatsInputError, match="missing rating"):
        cohens_kappa([nan, 1.0], [0.0, 1.0])
    with pytest.raises(StatsInputError, match="weights"):
        cohens_kappa([0, 1], [0, 1], "cubic")
    with pytest.raises(StatsInputError, match="empty"):
        cohens_kappa([], [])


def test_wilcoxon_golden(golden):
    g = golden["paired"]
    res = wilcoxon_signed_rank(g["a"], g["b"])
    assert res.pvalue == pytest.approx(g["wilcoxon_p"], rel=1e-9)
    assert res.mean_diff == pytest.approx(g["mean_diff"], rel=1e-12)
    assert res.n == 200


def test_wilcoxon_small_exact_by_enumeration():
    """n=8 distinct |differences|: the exact two-sided p from all 2^8 sign patterns."""
    d = np.array([0.3, -0.1, 0.5, 0.7, -0.2, 0.9, 1.1, 0.4])
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    w_plus = ranks[d > 0].sum()
    signs = (np.arange(256)[:, None] >> np.arange(8)) & 1
    null = (signs * ranks).sum(1)
    p = np.mean(np.abs(null - 18) >= abs(w_plus - 18))
    res = wilcoxon_signed_rank(np.zeros(8), d)
    assert res.pvalue == pytest.approx(p, rel=1e-12)
    with pytest.raises(StatsInputError, match="every difference"):
        wilcoxon_signed_rank([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(StatsInputError, match="same length"):
        wilcoxon_signed_rank([1.0, 2.0], [1.0])


def test_holm_and_bh_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2])
    order = np.argsort(p)
    m = p.size
    holm_ref = np.minimum(1, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    bh_ref = np.minimum(1, np.minimum.accumulate((m / np.arange(m, 0, -1) * p[order][::-1]))[::-1])
    h, b = holm(p), benjamini_hochberg(p)
    np.testing.assert_allclose(h.pvalues[order], holm_ref, rtol=1e-12)
    np.testing.assert_allclose(b.pvalues[order], bh_ref, rtol=1e-12)
    np.testing.assert_array_equal(h.reject, h.pvalues <= 0.05)
    np.testing.assert_array_equal(b.reject, b.pvalues <= 0.05)
    with pytest.raises(StatsInputError, match=r"\[0, 1\]"):
        holm([0.5, 1.5])
    with pytest.raises(StatsInputError, match="empty"):
        benjamini_hochberg([])


# Two raters' 0-10 scores on 12 items (rubric example): the quadratic weights must be the score distance.
SCORES_R1 = np.array([2, 8, 9, 10, 10, 9, 8, 2, 9, 10, 8, 9])
SCORES_R2 = np.array([8, 8, 10, 10, 9, 9, 9, 2, 8, 10, 2, 9])


def quadratic_kappa_by_hand(r1, r2, k):
    """Weighted kappa 1 - sum w O / sum w E with w = (i - j)^2 on the k x k table of categories 0..k-1."""
    table = np.zeros((k, k))
    np.add.at(table, (r1, r2), 1.0)
    table /= table.sum()
    expected = np.outer(table.sum(1), table.sum(0))
    i, j = np.indices((k, k))
    w = (i - j) ** 2.0
    return 1.0 - np.sum(w * table) / np.sum(w * expected)


def test_weighted_kappa_on_the_score_scale():
    on_scale = quadratic_kappa_by_hand(SCORES_R1, SCORES_R2, 11)
    assert round(on_scale, 3) == 0.567
    assert cohens_kappa(SCORES_R1, SCORES_R2, "quadratic", categories=range(11)) == pytest.approx(on_scale, rel=1e-12)
    # the default categories are the values seen (2, 8, 9, 10): ranks, not scores, as sklearn's default labels
    _, rank1 = np.unique(np.r_[SCORES_R1, SCORES_R2], return_inverse=True)
    by_rank = quadratic_kappa_by_hand(rank1[:12], rank1[12:], 4)
    assert cohens_kappa(SCORES_R1, SCORES_R2, "quadratic") == pytest.approx(by_rank, rel=1e-12)
    assert round(by_rank, 3) == 0.763


def test_kappa_refuses_missing_ratings_in_object_arrays_and_a_single_category():
    for r1 in ([1, None, 2], np.array([1, np.nan, 2], dtype=object), ["a", None, "b"]):
        with pytest.raises(StatsInputError, match="r1 has 1 missing rating.*first at index 1.*krippendorff_alpha"):
            cohens_kappa(r1, [1, 2, 2])
    with pytest.raises(StatsInputError, match="r2 is all NaN"):
        cohens_kappa(["a", "b"], [None, None])
    with pytest.raises(StatsInputError, match="every rating is 1: chance agreement is 1"):
        cohens_kappa([1, 1, 1], [1, 1, 1], categories=[0, 1])


def test_fleiss_refuses_a_single_category_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(StatsInputError, match="every rating is in one category"):
            fleiss_kappa([[3, 0], [3, 0]])
        with pytest.raises(StatsInputError, match=r"one category \(column 1\)"):
            fleiss_kappa([[0, 2, 0], [0, 2, 0]])


def test_wilcoxon_one_sided_tests_b_minus_a():
    """b - a = 1..12, all positive: W+ = 78 is the largest value, reached by 1 of the 2^12 sign patterns,
    so P(W+ >= 78) = 2^-12 under the null ("greater": b above a) and "less" has p = 1."""
    a, b = np.zeros(12), np.arange(1.0, 13.0)
    assert wilcoxon_signed_rank(a, b, alternative="greater").pvalue == pytest.approx(2.0**-12, rel=1e-12)
    assert wilcoxon_signed_rank(a, b, alternative="less").pvalue == pytest.approx(1.0, rel=1e-12)
    assert wilcoxon_signed_rank(b, a, alternative="less").pvalue == pytest.approx(2.0**-12, rel=1e-12)
    rng = np.random.default_rng(3)
    x, y = rng.random(30), rng.random(30) + 0.1
    for alt in ("two-sided", "greater", "less"):
        assert wilcoxon_signed_rank(x, y, alternative=alt).pvalue == pytest.approx(
            wilcoxon(y - x, alternative=alt).pvalue, rel=1e-12)
    with pytest.raises(StatsInputError, match="alternative"):
        wilcoxon_signed_rank(x, y, alternative="larger")


def test_mcnemar_exact_equals_statsmodels():
    for only_a in range(0, 31):
        for only_b in range(0, 31):
            res = mcnemar_exact(only_a, only_b)
            ref = mcnemar([[0, only_a], [only_b, 0]], exact=True).pvalue
            assert res.pvalue == pytest.approx(ref, rel=1e-12, abs=0.0)
            assert res.n_discordant == only_a + only_b
            assert res.min_attainable_p == pytest.approx(min(1.0, 2.0 * 0.5 ** (only_a + only_b)), rel=1e-15)
    # by hand: 1 vs 8 discordant: 2 * P(X <= 1), X ~ Bin(9, 1/2) = 2 * 10 / 512
    assert mcnemar_exact(1, 8).pvalue == pytest.approx(20 / 512, rel=1e-12)
    assert mcnemar_exact(0, 0).pvalue == 1.0 and mcnemar_exact(0, 0).min_attainable_p == 1.0
    # 4 discordant samples, all one way: the smallest p possible with 4 is 2 / 16 = 0.125
    res = mcnemar_exact(4, 0)
    assert res.pvalue == res.min_attainable_p == 0.125
    assert res.as_dict() == {"only_a": 4, "only_b": 0, "n_discordant": 4, "pvalue": 0.125, "min_attainable_p": 0.125}


@pytest.mark.parametrize("bad", [-1, 2.5, np.nan, "3", True, None])
def test_mcnemar_counts_are_validated(bad):
    with pytest.raises(StatsInputError, match="only_b must be a whole number >= 0"):
        mcnemar_exact(3, bad)


# ---------------------------------------------------------------------------------------------- sign flip


def test_sign_flip_on_minus_one_zero_one_is_the_exact_mcnemar_test():
    from sam3d_eval.stats import mcnemar_exact, sign_flip_test

    for only_a in range(0, 9):
        for only_b in range(0, 12 - only_a):
            d = np.array([-1.0] * only_a + [1.0] * only_b + [0.0] * 7)
            r = sign_flip_test(d)
            assert r.exact and r.n_nonzero == only_a + only_b
            assert r.pvalue == pytest.approx(mcnemar_exact(only_a, only_b).pvalue, abs=1e-12)


def test_sign_flip_exact_p_by_hand_and_monte_carlo_agrees():
    from itertools import product

    from sam3d_eval.stats import sign_flip_test

    d = np.array([0.5, 1.0, 0.25, -0.25, 0.75, 0.0])
    t = d.sum()
    nz = d[d != 0]
    sums = [abs(np.dot(s, nz)) for s in product([1, -1], repeat=nz.size)]
    want = np.mean([s >= abs(t) - 1e-12 for s in sums])
    r = sign_flip_test(d)
    assert r.pvalue == pytest.approx(want) and r.min_attainable_p == pytest.approx(2 * 0.5**5)
    mc = sign_flip_test(d, max_exact=0, n_resamples=40_000, seed=1)
    assert not mc.exact and abs(mc.pvalue - want) < 4 * np.sqrt(want * (1 - want) / 40_000) + 1e-4
    assert sign_flip_test(np.zeros(4)).pvalue == 1.0
    with pytest.raises(StatsInputError):
        sign_flip_test([np.nan, 1.0])
