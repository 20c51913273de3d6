"""Agreement (golden, published worked examples) and paired tests / multiple-testing corrections."""

import json

import numpy as np
import pytest

from sam3d_eval.stats import (
    StatsInputError,
    benjamini_hochberg,
    cohens_kappa,
    fleiss_kappa,
    holm,
    krippendorff_alpha,
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
