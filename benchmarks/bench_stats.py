"""Statistics against the straightforward way, side by side in one run.

    OPENBLAS_NUM_THREADS=1 python -m pytest benchmarks/bench_stats.py -q -s --benchmark-group-by=group \
        --benchmark-columns=min,median,rounds

(OPENBLAS_NUM_THREADS=1: on a shared 2-core host OpenBLAS threads inside scipy's L-BFGS-B spin against the
other jobs and make the loop peer's many small fits 5-8x slower; run without it to see that too.)

- Paired bootstrap, 20,000 pairs (and 200 pairs) x 10,000 resamples (percentile interval of the mean difference): our
  `paired_bootstrap` (chunked index matrices) beside a Python loop of one resample per iteration and
  `scipy.stats.bootstrap(paired=True, vectorized=True)` in batches of 500 resamples (without a batch scipy
  would hold two 10,000 x 20,000 float64 matrices, 3.2 GB).
- Bradley-Terry, 100,000 votes among 20 models on 5,000 items (10% ties, ties as halves), 1,000 resamples of
  items: our `bradley_terry(cluster="item_id")` (sparse item table, batched Newton) beside the loop a user
  would write: per resample draw items, gather their votes, count wins, fit with scipy L-BFGS.

- Two-level bootstrap, 3 runs per side on 150 twin pairs (300 samples) x 2,000 resamples, the mean
  difference, the median difference and the probability of improvement from one set of draws (what
  `compare` computes per stratum and metric with several runs per side): our `two_level_bootstrap` beside
  the loop a user would write, one resample per iteration (draw runs, draw pairs, gather, compute).

Every peer must land on our interval (bootstrap noise aside), checked in the benchmark itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from sam3d_eval.stats import bradley_terry, paired_bootstrap, two_level_bootstrap
from sam3d_eval.stats.two_level import run_means, run_medians, run_probability_of_improvement
from sizes import sizes_for

S = sizes_for("stats")  # benchmarks/sizes.py
N_PAIRS, N_RESAMPLES = S.N_PAIRS, S.N_RESAMPLES
N_SMALL = S.N_SMALL  # a per-category comparison: per-resample Python overhead is what vectorising removes
N_VOTES, N_MODELS, N_ITEMS, BT_RESAMPLES = S.N_VOTES, S.N_MODELS, S.N_ITEMS, S.BT_RESAMPLES
# Monte Carlo noise of a percentile bound shrinks as 1/sqrt(resamples): the tolerances are set at the full
# sizes (5% and 15% of the interval's width) and widen with fewer resamples in quick mode.
PAIRED_TOL = 0.05 * max(1.0, (10_000 / N_RESAMPLES) ** 0.5)
BT_TOL = 0.15 * max(1.0, (1_000 / BT_RESAMPLES) ** 0.5)
TL_RUNS, TL_PAIRS, TL_RESAMPLES = S.TL_RUNS, S.TL_PAIRS, S.TL_RESAMPLES
TL_TOL = 0.1 * max(1.0, (2_000 / TL_RESAMPLES) ** 0.5)


def run(benchmark, fn, rounds=2):
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    a = rng.gamma(2.0, 0.01, N_PAIRS)
    return a, a * (1.0 + 0.05 * rng.standard_normal(N_PAIRS)) - 0.0005


@pytest.fixture(scope="module")
def paired_reference(pairs):
    a, b = pairs
    return paired_bootstrap(a, b, n_resamples=N_RESAMPLES, seed=1)


def loop_paired(a, b, seed=2):
    rng = np.random.default_rng(seed)
    d = b - a
    reps = np.array([d[rng.integers(0, d.size, d.size)].mean() for _ in range(N_RESAMPLES)])
    return tuple(np.quantile(reps, [0.025, 0.975]))


def scipy_paired(a, b, seed=3):
    res = st.bootstrap(
        (a, b), lambda u, v, axis=-1: np.mean(v - u, axis=axis), paired=True, vectorized=True,
        n_resamples=N_RESAMPLES, batch=500, method="percentile", rng=np.random.default_rng(seed),
    )
    return tuple(res.confidence_interval)


@pytest.fixture(scope="module")
def scipy_reference(pairs):
    return scipy_paired(*pairs)


def check_interval(got, ref):
    width = ref.high - ref.low
    assert abs(got[0] - ref.low) < PAIRED_TOL * width and abs(got[1] - ref.high) < PAIRED_TOL * width


@pytest.mark.benchmark(group="paired bootstrap 20k x 10k")
def test_paired_ours(benchmark, pairs, paired_reference, scipy_reference):
    res = paired_bootstrap(*pairs, n_resamples=N_RESAMPLES, seed=1)  # checks before timing, in every test
    assert (res.low, res.high) == (paired_reference.low, paired_reference.high)
    check_interval(scipy_reference, paired_reference)  # ours lands on scipy's interval
    run(benchmark, lambda: paired_bootstrap(*pairs, n_resamples=N_RESAMPLES, seed=1))


@pytest.mark.benchmark(group="paired bootstrap 20k x 10k")
def test_paired_python_loop(benchmark, pairs, paired_reference):
    check_interval(loop_paired(*pairs), paired_reference)
    run(benchmark, lambda: loop_paired(*pairs))


@pytest.mark.benchmark(group="paired bootstrap 20k x 10k")
def test_paired_scipy(benchmark, pairs, paired_reference, scipy_reference):
    check_interval(scipy_reference, paired_reference)
    run(benchmark, lambda: scipy_paired(*pairs))


@pytest.fixture(scope="module")
def small_pairs():
    rng = np.random.default_rng(4)
    a = rng.gamma(2.0, 0.01, N_SMALL)
    return a, a * (1.0 + 0.05 * rng.standard_normal(N_SMALL)) - 0.0005


@pytest.mark.benchmark(group="paired bootstrap 200 x 10k")
def test_small_paired_ours(benchmark, small_pairs):
    ref = paired_bootstrap(*small_pairs, n_resamples=N_RESAMPLES, seed=1)
    check_interval(scipy_paired(*small_pairs), ref)
    run(benchmark, lambda: paired_bootstrap(*small_pairs, n_resamples=N_RESAMPLES, seed=1), rounds=5)


@pytest.mark.benchmark(group="paired bootstrap 200 x 10k")
def test_small_paired_python_loop(benchmark, small_pairs):
    ref = paired_bootstrap(*small_pairs, n_resamples=N_RESAMPLES, seed=1)
    check_interval(loop_paired(*small_pairs), ref)
    run(benchmark, lambda: loop_paired(*small_pairs), rounds=5)


@pytest.mark.benchmark(group="paired bootstrap 200 x 10k")
def test_small_paired_scipy(benchmark, small_pairs):
    ref = paired_bootstrap(*small_pairs, n_resamples=N_RESAMPLES, seed=1)
    check_interval(scipy_paired(*small_pairs), ref)
    run(benchmark, lambda: scipy_paired(*small_pairs), rounds=5)


@pytest.fixture(scope="module")
def votes():
    rng = np.random.default_rng(0)
    t = rng.normal(0, 1, N_MODELS)
    a = rng.integers(0, N_MODELS, N_VOTES)
    b = (a + rng.integers(1, N_MODELS, N_VOTES)) % N_MODELS
    item = rng.integers(0, N_ITEMS, N_VOTES)
    p = expit(t[a] - t[b] + rng.normal(0, 0.5, N_ITEMS)[item])
    winner = np.where(rng.random(N_VOTES) < 0.1, "tie", np.where(rng.random(N_VOTES) < p, "a", "b"))
    return pd.DataFrame({"model_a": a, "model_b": b, "winner": winner, "item_id": item})


@pytest.fixture(scope="module")
def bt_reference(votes):
    return bradley_terry(votes, bootstrap=BT_RESAMPLES, cluster="item_id", seed=1)


@pytest.fixture(scope="module")
def bt_loop_reference(votes):
    return loop_bradley_terry(votes)


def loop_bradley_terry(votes, seed=2):
    """The straightforward clustered bootstrap: resample items, gather their votes, refit with L-BFGS."""
    rng = np.random.default_rng(seed)
    m = N_MODELS
    a = votes["model_a"].to_numpy()
    b = votes["model_b"].to_numpy()
    win = votes["winner"].to_numpy()
    wa = np.where(win == "a", 1.0, np.where(win == "tie", 0.5, 0.0))
    rows_of = votes.groupby("item_id").indices
    items = np.array(sorted(rows_of))

    def fit(w):
        n = w + w.T

        def fun(t):
            d = t[:, None] - t[None, :]
            s = t.sum()
            return -np.sum(w * log_expit(d)) + 0.5 * s * s, (n * expit(d) - w).sum(1) + s

        x = minimize(fun, np.zeros(m), jac=True, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-11}).x
        return x - x.mean()

    reps = np.empty((BT_RESAMPLES, m))
    for r in range(BT_RESAMPLES):
        pick = rng.choice(items, items.size, replace=True)
        rows = np.concatenate([rows_of[i] for i in pick])
        w = np.zeros((m, m))
        np.add.at(w, (a[rows], b[rows]), wa[rows])
        np.add.at(w, (b[rows], a[rows]), 1.0 - wa[rows])
        reps[r] = fit(w)
    return np.quantile(reps, [0.025, 0.975], axis=0)


@pytest.mark.benchmark(group="Bradley-Terry 100k votes, 1k item resamples")
def test_bradley_terry_ours(benchmark, votes, bt_reference, bt_loop_reference):
    pd.testing.assert_frame_equal(bradley_terry(votes, bootstrap=BT_RESAMPLES, cluster="item_id", seed=1), bt_reference)
    check_bt(bt_loop_reference, bt_reference)  # ours lands on the L-BFGS loop's intervals
    run(benchmark, lambda: bradley_terry(votes, bootstrap=BT_RESAMPLES, cluster="item_id", seed=1))


@pytest.mark.benchmark(group="Bradley-Terry 100k votes, 1k item resamples")
def test_bradley_terry_loop_lbfgs(benchmark, votes, bt_reference, bt_loop_reference):
    check_bt(bt_loop_reference, bt_reference)
    run(benchmark, lambda: loop_bradley_terry(votes), rounds=1)


def check_bt(loop_bounds, ref) -> None:
    lo, hi = loop_bounds
    width = (ref["log_strength_high"] - ref["log_strength_low"]).to_numpy()
    assert np.all(np.abs(lo - ref["log_strength_low"].to_numpy()) < BT_TOL * width)
    assert np.all(np.abs(hi - ref["log_strength_high"].to_numpy()) < BT_TOL * width)


# ---------------------------------------------------------------------------------------------- two-level


@pytest.fixture(scope="module")
def seeds():
    """TL_RUNS runs per side on TL_PAIRS twin pairs: per-pair difficulty, a per-run offset, B 3% lower."""
    rng = np.random.default_rng(5)
    difficulty = np.repeat(rng.lognormal(-6, 0.6, TL_PAIRS), 2) * np.tile([1.0, 1.3], TL_PAIRS)
    a = difficulty * rng.lognormal(0, 0.1, (TL_RUNS, 1)) * rng.lognormal(0, 0.2, (TL_RUNS, difficulty.size))
    b = 0.97 * difficulty * rng.lognormal(0, 0.1, (TL_RUNS, 1)) * rng.lognormal(0, 0.2, (TL_RUNS, difficulty.size))
    return a, b, np.repeat(np.arange(TL_PAIRS), 2)


def ours_two_level(a, b, pairs):
    stats = {"delta": lambda ra, rb, w: run_means(b, w, rb) - run_means(a, w, ra),
             "median_delta": lambda ra, rb, w: run_medians(b, w, rb) - run_medians(a, w, ra),
             "poi": lambda ra, rb, w: run_probability_of_improvement(-b, -a, w, rb, ra)}
    res = two_level_bootstrap(stats, (a.shape[0], b.shape[0]), a.shape[1], clusters=pairs,
                              n_resamples=TL_RESAMPLES, seed=1)
    return {k: res.interval(k) for k in stats}


def loop_two_level(a, b, pairs, seed=2):
    """One resample per iteration: runs of each side, pairs shared by both, then the three figures."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(pairs == p) for p in range(TL_PAIRS)]
    reps = {"delta": [], "median_delta": [], "poi": []}
    for _ in range(TL_RESAMPLES):
        ra, rb = rng.integers(0, a.shape[0], a.shape[0]), rng.integers(0, b.shape[0], b.shape[0])
        take = np.concatenate([members[p] for p in rng.integers(0, TL_PAIRS, TL_PAIRS)])
        xa, xb = a[ra][:, take], b[rb][:, take]
        reps["delta"].append(xb.mean(axis=1).mean() - xa.mean(axis=1).mean())
        reps["median_delta"].append(np.median(xb, axis=1).mean() - np.median(xa, axis=1).mean())
        better = (xb[:, None, :] < xa[None, :, :]) + 0.5 * (xb[:, None, :] == xa[None, :, :])
        reps["poi"].append(better.mean())
    return {k: tuple(np.quantile(v, [0.025, 0.975])) for k, v in reps.items()}


def check_two_level(got, ref):
    for k, (lo, hi) in ref.items():
        width = hi - lo
        assert abs(got[k][0] - lo) < TL_TOL * width and abs(got[k][1] - hi) < TL_TOL * width, (k, got[k], ref[k])


@pytest.fixture(scope="module")
def two_level_reference(seeds):
    return ours_two_level(*seeds)


@pytest.mark.benchmark(group="two-level bootstrap 3+3 runs x 300 samples x 2k")
def test_two_level_ours(benchmark, seeds, two_level_reference):
    check_two_level(loop_two_level(*seeds), two_level_reference)  # the loop lands on our intervals
    run(benchmark, lambda: ours_two_level(*seeds), rounds=5)


@pytest.mark.benchmark(group="two-level bootstrap 3+3 runs x 300 samples x 2k")
def test_two_level_python_loop(benchmark, seeds, two_level_reference):
    run(benchmark, lambda: loop_two_level(*seeds), rounds=2)
