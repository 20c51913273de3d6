"""Pairwise preference votes: Bradley-Terry strengths with (clustered) bootstrap intervals, and the analyses
of a votes file built on them.

Votes (`preference_summary`): per pair of models the win rate with ties separate and ties as half
(`win_rate`: Wilson intervals, exact binomial p), a Bradley-Terry leaderboard with bootstrap intervals
clustered by item and rater (crossed when both vary), and per rater: agreement with the other raters
(share of the rater's votes equal to the majority of the others on the same item and pair, ties of the
majority skipped), consistency with the consensus (share of the rater's decisive votes that pick the
leaderboard's stronger model) and circular triads (A>B, B>C, C>A by one rater on one item). Overall
agreement on votes: Krippendorff's alpha (nominal) over units (item, pair), the outcome oriented to the
pair's sorted names. Inputs are frames validated by `sam3d_eval.io.judgements`.

Model (Bradley & Terry 1952): P(i beats j) = exp(t_i) / (exp(t_i) + exp(t_j)) with log-strengths t. The MLE
maximises sum_ij w_ij log P(i beats j), where w_ij counts i's wins over j; with ties="half" a tie adds 1/2 to
both w_ij and w_ji (Davidson-style half wins), with ties="drop" ties are discarded. Log-strengths are natural
logs centred to mean 0; `elo` = 400 / ln(10) * t + 1000 (the Elo display scale: 400 points = 10:1 odds).

The MLE is finite iff the directed "beat" graph is strongly connected (Zermelo 1929; Ford 1957): a model that
never wins or never loses against the rest, or a comparison graph in pieces, has no finite MLE. Each is a
`StatsInputError` naming exactly those models (or groups of models), unless `regularization` > 0, which
adds the penalty regularization / 2 * sum t^2 (a Gaussian prior with variance 1 / regularization on the
log-strengths, the documented small regularisation).
A graph in pieces is refused even then: strengths in different pieces are not on one scale.

Written here (no library fits Bradley-Terry with ties, clusters and batched bootstraps): the point estimate
by scipy L-BFGS, the bootstrap replicates by a batched Newton method (all resamples at once, numpy); both
solve the same convex problem, and the tests check them against each other and against choix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import minimize
from scipy.sparse.csgraph import connected_components
from scipy.special import expit, log_expit

from ..jsonable import to_jsonable
from ._checks import StatsInputError, as_generator, check_confidence, check_frame, check_units
from .agreement import krippendorff_alpha
from .bootstrap import bootstrap_interval, resample_counts
from .intervals import win_rate

__all__ = [
    "ELO_BASE",
    "ELO_SCALE",
    "PreferenceSummary",
    "bradley_terry",
    "pairwise_win_rates",
    "preference_summary",
    "rater_agreement",
    "vote_agreement",
]

ELO_SCALE = 400.0 / np.log(10.0)
ELO_BASE = 1000.0
WINNERS = ("a", "b", "tie")
# Resamples fitted together in one batched Newton solve: bounds the (chunk, m, m) work arrays.
_NEWTON_ELEMENTS = 1 << 22


def _prepare(votes: pd.DataFrame, ties: str) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray]:
    """Validate the vote frame; return models, their codes for a and b, and each vote's outcome code."""
    check_frame(votes, ("model_a", "model_b", "winner"), "votes")
    if ties not in ("half", "drop"):
        raise StatsInputError(f"ties must be 'half' or 'drop', got {ties!r}")
    for col in ("model_a", "model_b", "winner"):
        if votes[col].isna().any():
            row = votes.index[votes[col].isna().to_numpy()][0]
            raise StatsInputError(f"votes column {col!r} has missing values (first at row {row!r})")
    winner = votes["winner"].to_numpy()
    outcome = np.full(len(votes), -1, dtype=np.int64)
    for code, label in enumerate(WINNERS):
        outcome[winner == label] = code
    if np.any(outcome < 0):
        bad = sorted({str(v) for v in winner[outcome < 0]})
        row = votes.index[np.flatnonzero(outcome < 0)[0]]
        raise StatsInputError(f"unknown winner value(s) {bad[:5]} (first at row {row!r}); expected 'a', 'b' or 'tie'")
    a = votes["model_a"].to_numpy()
    b = votes["model_b"].to_numpy()
    same = a == b
    if np.any(same):
        row = votes.index[np.flatnonzero(same)[0]]
        raise StatsInputError(f"model {a[same][0]!r} is paired with itself (first at row {row!r})")
    both = np.concatenate([a, b])
    try:
        codes, models = pd.factorize(both, sort=True)
    except TypeError:  # unorderable mix of names: keep first-seen order
        codes, models = pd.factorize(both, sort=False)
    n = len(votes)
    return list(models), codes[:n].astype(np.int64), codes[n:].astype(np.int64), outcome


def _cell_matrix(m: int, ia: np.ndarray, ib: np.ndarray, outcome: np.ndarray, ties: str) -> sparse.csr_matrix:
    """(n_votes, m*m) map from votes to win counts w[i, j] (row-major cell i*m + j)."""
    rows, cols, vals = [], [], []
    idx = np.arange(ia.size)
    for code, (win, lose, val) in enumerate(((ia, ib, 1.0), (ib, ia, 1.0))):
        sel = outcome == code
        rows.append(idx[sel]), cols.append(win[sel] * m + lose[sel]), vals.append(np.full(sel.sum(), val))
    if ties == "half":
        sel = outcome == 2
        for win, lose in ((ia, ib), (ib, ia)):
            rows.append(idx[sel]), cols.append(win[sel] * m + lose[sel]), vals.append(np.full(sel.sum(), 0.5))
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(ia.size, m * m)
    )


def _existence_problem(w: np.ndarray, models: Sequence[Any], regularization: float) -> str | None:
    """Why the (penalised) MLE of win matrix `w` (m, m) is not finite, or None."""
    played = (w + w.T) > 0
    n_weak, weak = connected_components(sparse.csr_matrix(played), directed=False)
    if n_weak > 1:
        groups = [[models[i] for i in np.flatnonzero(weak == g)] for g in range(n_weak)]
        return f"the comparison graph is disconnected into {n_weak} groups {groups[:4]}; strengths across groups are not comparable"
    if regularization > 0:
        return None
    n_strong, strong = connected_components(sparse.csr_matrix(w > 0), directed=True, connection="strong")
    if n_strong > 1:
        # Groups of the condensed beat graph: a group nobody outside it ever beat never loses to the rest
        # (a source), a group that never beat anyone outside it never wins against the rest (a sink).
        i, j = np.nonzero(w > 0)  # i beat j
        cross = strong[i] != strong[j]
        beaten = np.zeros(n_strong, dtype=bool)
        beats = np.zeros(n_strong, dtype=bool)
        beaten[strong[j[cross]]] = True
        beats[strong[i[cross]]] = True

        def describe(groups: np.ndarray, verb: str, against: str) -> list[str]:
            out = []
            for g in groups[:8]:
                members = [models[k] for k in np.flatnonzero(strong == g)]
                if len(members) == 1:
                    out.append(f"model {members[0]!r} never {verb}s")
                else:
                    out.append(f"models {members[:8]} never {verb} {against} a model outside that group")
            return out

        parts = describe(np.flatnonzero(~beats), "win", "against") + describe(np.flatnonzero(~beaten), "lose", "to")
        return (
            "no finite maximum-likelihood strengths (the win graph is not strongly connected): "
            + "; ".join(parts)
            + "; collect more votes or pass regularization > 0"
        )
    return None


def _nll(theta: np.ndarray, w: np.ndarray, regularization: float) -> np.ndarray:
    """Penalised negative log-likelihood plus the gauge term (sum t)^2 / 2; theta (B, m), w (B, m, m)."""
    d = theta[:, :, None] - theta[:, None, :]
    s = theta.sum(axis=1)
    return -np.einsum("bij,bij->b", w, log_expit(d)) + 0.5 * regularization * (theta**2).sum(1) + 0.5 * s**2


def _fit_lbfgs(w: np.ndarray, regularization: float) -> np.ndarray:
    """Log-strengths (m,) by scipy L-BFGS-B on the penalised likelihood, centred to mean 0."""
    m = w.shape[0]
    n = w + w.T

    def fun(t: np.ndarray) -> tuple[float, np.ndarray]:
        d = t[:, None] - t[None, :]
        p = expit(d)
        s = t.sum()
        f = -np.sum(w * log_expit(d)) + 0.5 * regularization * t @ t + 0.5 * s * s
        g = (n * p - w).sum(axis=1) + regularization * t + s
        return float(f), g

    res = minimize(fun, np.zeros(m), jac=True, method="L-BFGS-B",
                   options={"maxiter": 10_000, "ftol": 1e-15, "gtol": 1e-11, "maxcor": 30})
    t = res.x - res.x.mean()
    if not np.all(np.isfinite(t)):
        raise StatsInputError("Bradley-Terry fit diverged (non-finite strengths)")
    return t


def _fit_newton(w: np.ndarray, regularization: float, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Batched damped Newton on the penalised likelihood: w (B, m, m) -> (log-strengths (B, m) centred,
    converged (B,) bool). The gauge term makes the Hessian L + reg I + 11^T positive definite on a
    connected graph."""
    bsz, m, _ = w.shape
    n = w + np.swapaxes(w, 1, 2)
    theta = np.zeros((bsz, m))
    f = _nll(theta, w, regularization)
    done = np.zeros(bsz, dtype=bool)
    eye = np.eye(m)
    scale = np.maximum(n.sum(axis=(1, 2)), 1.0)
    for _ in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        t, wa, na = theta[act], w[act], n[act]
        p = expit(t[:, :, None] - t[:, None, :])
        s = t.sum(axis=1, keepdims=True)
        g = (na * p - wa).sum(axis=2) + regularization * t + s
        q = na * p * (1.0 - p)
        h = -q + eye * (q.sum(axis=2)[:, :, None] + regularization) + 1.0
        step = np.linalg.solve(h, g[:, :, None])[:, :, 0]
        # converged when the Newton decrement is negligible next to the data size
        dec = np.einsum("bi,bi->b", g, step)
        fin = dec < 1e-20 * scale[act] + 1e-24
        done[act[fin]] = True
        act, t, step, fa = act[~fin], t[~fin], step[~fin], f[act[~fin]]
        if act.size == 0:
            break
        lr = np.ones(act.size)
        for _ in range(40):
            cand = t - lr[:, None] * step
            fc = _nll(cand, w[act], regularization)
            ok = fc <= fa + 1e-12 * np.abs(fa)
            if ok.all():
                break
            lr = np.where(ok, lr, lr * 0.5)
        theta[act] = cand
        f[act] = fc
    theta -= theta.mean(axis=1, keepdims=True)
    return theta, done


def _strongly_connected(w: np.ndarray) -> np.ndarray:
    """(B, m, m) win matrices -> (B,) whether each directed beat graph is strongly connected."""
    m = w.shape[1]
    reach = ((w > 0) | np.eye(m, dtype=bool)).astype(np.float64)
    for _ in range(int(np.ceil(np.log2(max(m, 2))))):
        reach = np.minimum(reach @ reach, 1.0)
    return reach.reshape(reach.shape[0], -1).min(axis=1) > 0


def _resampled_wins(
    rng: np.random.Generator,
    votes: pd.DataFrame,
    cells: sparse.csr_matrix,
    cluster: list[str],
    n_resamples: int,
    m: int,
) -> np.ndarray:
    """Win matrices of the bootstrap resamples: (n_resamples, m, m)."""
    n_rows = cells.shape[0]
    if not cluster:
        # Resampling single votes = a multinomial over the distinct vote patterns (same distribution,
        # far fewer draws than rows).
        pattern, inv = _distinct_rows(cells)
        freq = np.bincount(inv, minlength=pattern.shape[0]) / n_rows
        counts = rng.multinomial(n_rows, freq, size=n_resamples).astype(np.float64)
        return (counts @ pattern).reshape(n_resamples, m, m)
    codes = []
    for col in cluster:
        if col not in votes.columns:
            raise StatsInputError(f"cluster column {col!r} is not in votes (columns: {list(votes.columns)})")
        if votes[col].isna().any():
            raise StatsInputError(f"cluster column {col!r} has missing values")
        codes.append(pd.factorize(votes[col], sort=True)[0].astype(np.int64))
    sizes = [int(c.max()) + 1 for c in codes]
    out = np.empty((n_resamples, m * m))
    if len(codes) == 1:
        member = sparse.csr_matrix((np.ones(n_rows), (codes[0], np.arange(n_rows))), shape=(sizes[0], n_rows))
        table = (member @ cells).tocsc()  # (clusters, m*m)
        per = max(1, (1 << 24) // sizes[0])
        for start in range(0, n_resamples, per):
            c = min(per, n_resamples - start)
            k = resample_counts(rng, sizes[0], c).astype(np.float64)
            out[start : start + c] = (table.T @ k.T).T
    else:
        cells_t = cells.T.tocsr()
        per = max(1, (1 << 23) // n_rows)
        for start in range(0, n_resamples, per):
            c = min(per, n_resamples - start)
            wt = resample_counts(rng, sizes[0], c)[:, codes[0]].astype(np.float64)
            for code, size in zip(codes[1:], sizes[1:]):
                wt *= resample_counts(rng, size, c)[:, code]
            out[start : start + c] = (cells_t @ wt.T).T
    return out.reshape(n_resamples, m, m)


def _distinct_rows(cells: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of the vote -> cell map (dense, (P, m*m)) and each vote's pattern index."""
    coo = cells.tocoo()
    order = np.lexsort((coo.col, coo.row))
    row, col, val = coo.row[order], coo.col[order], coo.data[order]
    # each vote has 1 (win) or 2 (tie halves) or 0 (dropped tie) cells: key = (first cell, second cell, value)
    n = cells.shape[0]
    first = np.full(n, -1, dtype=np.int64)
    second = np.full(n, -1, dtype=np.int64)
    value = np.zeros(n)
    starts = np.searchsorted(row, np.arange(n))
    ends = np.searchsorted(row, np.arange(n), side="right")
    has1 = ends > starts
    first[has1] = col[starts[has1]]
    value[has1] = val[starts[has1]]
    has2 = ends - starts > 1
    second[has2] = col[starts[has2] + 1]
    keys = np.stack([first, second, (value * 2).astype(np.int64)], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    pattern = np.zeros((uniq.shape[0], cells.shape[1]))
    for p, (c1, c2, v2) in enumerate(uniq):
        if c1 >= 0:
            pattern[p, c1] = v2 / 2.0
        if c2 >= 0:
            pattern[p, c2] = v2 / 2.0
    return pattern, inv.ravel()


def bradley_terry(
    votes: pd.DataFrame,
    ties: str = "half",
    bootstrap: int = 1000,
    cluster: Sequence[str] | str | None = None,
    seed: int | np.random.Generator = 0,
    *,
    confidence: float = 0.95,
    regularization: float = 0.0,
) -> pd.DataFrame:
    """Bradley-Terry log-strengths and Elo-scale ratings of the models in `votes`, with bootstrap intervals.

    votes: a frame with `model_a`, `model_b`, `winner` ("a" | "b" | "tie") and optional `item_id`,
    `rater_id`. ties: "half" (a tie is half a win for each) or "drop". bootstrap: number of resamples (0 for
    none). cluster: None resamples single votes (what public arenas do; overstates certainty when votes share
    items), "item_id" resamples items with all their votes, ["item_id", "rater_id"] resamples items and raters
    crossed (pigeonhole bootstrap). Intervals are percentile intervals of the centred log-strengths.

    Definition and existence rules: module docstring.

    Args:
        votes: non-empty frame with `model_a`, `model_b`, `winner` columns (no missing values, no model paired
            with itself) and, when used as clusters, `item_id` / `rater_id`.
        ties: "half" (default) or "drop", as above.
        bootstrap: number of bootstrap resamples, an integer that is 0 (no intervals) or >= 2. Default 1000.
        cluster: None (default), one column name or up to two column names to resample by, as above; each
            cluster column needs at least 2 distinct values and no missing value.
        seed: integer seed or a `np.random.Generator` for the resamples. Default 0.
        confidence: two-sided level of the percentile intervals, in (0, 1). Default 0.95.
        regularization: penalty weight on the squared log-strengths, finite and >= 0; 0 (default) is the plain
            MLE, which must exist.

    Returns:
        A frame indexed by model (sorted; first-seen order when the names cannot be sorted) with
        `log_strength` (natural log, mean 0), `elo`, `wins`, `losses`, `ties` (vote counts per model), and with
        bootstrap > 0 also `log_strength_low`, `log_strength_high`, `elo_low`, `elo_high`, `se` (standard
        deviation of the log-strength replicates); `attrs` records ties, regularization, cluster (list of
        columns) and, with bootstrap > 0, n_resamples, confidence and `drift` (largest interval drift between
        the two halves of the resamples, log-strength units).

    Raises:
        StatsInputError: `votes` is not a non-empty frame with the needed columns, has missing values, an
            unknown winner or a model paired with itself; `ties` is unknown; fewer than two models;
            `regularization` is negative or not finite; every vote is a tie with ties="drop"; a cluster column
            is absent, has missing values or fewer than 2 clusters, or more than two are given; `confidence`
            is outside (0, 1); the MLE has no finite solution (comparison graph in pieces, or, without
            regularization, a model or group that never wins or never loses), in the data or in a resample;
            `bootstrap` is not 0 or an integer >= 2; a bad `seed`; or a fit diverges or does not converge.
    """
    models, ia, ib, outcome = _prepare(votes, ties)
    m = len(models)
    if m < 2:
        raise StatsInputError("Bradley-Terry needs at least two models")
    if not (regularization >= 0 and np.isfinite(regularization)):
        raise StatsInputError(f"regularization must be finite and >= 0, got {regularization}")
    if ties == "drop" and np.all(outcome == 2):
        raise StatsInputError("every vote is a tie and ties='drop': no information on strengths")
    if cluster is None:
        cluster_cols: list[str] = []
    elif isinstance(cluster, str):
        cluster_cols = [cluster]
    else:
        cluster_cols = list(cluster)
    missing = [c for c in cluster_cols if c not in votes.columns]
    if missing:
        raise StatsInputError(f"cluster column(s) {missing} not in votes (columns: {list(votes.columns)})")
    if len(cluster_cols) > 2:
        raise StatsInputError(f"at most two crossed cluster columns are supported, got {cluster_cols}")
    confidence = check_confidence(confidence)
    cells = _cell_matrix(m, ia, ib, outcome, ties)
    w = np.asarray(cells.sum(axis=0)).reshape(m, m)
    problem = _existence_problem(w, models, regularization)
    if problem:
        raise StatsInputError(problem)
    theta = _fit_lbfgs(w, regularization)

    wins = np.bincount(np.where(outcome == 0, ia, ib)[outcome < 2], minlength=m)
    losses = np.bincount(np.where(outcome == 0, ib, ia)[outcome < 2], minlength=m)
    tie_count = np.bincount(np.concatenate([ia[outcome == 2], ib[outcome == 2]]), minlength=m)
    out = pd.DataFrame(
        {"log_strength": theta, "elo": ELO_SCALE * theta + ELO_BASE, "wins": wins, "losses": losses, "ties": tie_count},
        index=pd.Index(models, name="model"),
    )
    out.attrs.update({"ties": ties, "regularization": float(regularization), "cluster": cluster_cols})
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise StatsInputError(f"bootstrap must be a number of resamples >= 0, got {bootstrap!r}")
    if bootstrap == 0:
        return out
    if bootstrap < 2:
        raise StatsInputError("bootstrap needs at least 2 resamples (or 0 for none)")
    if cluster_cols:
        for col in cluster_cols:
            check_units(int(votes[col].nunique()), f"cluster column {col!r}", "clusters")
    else:
        check_units(len(votes), "votes", "votes")
    rng = as_generator(seed)
    wb = _resampled_wins(rng, votes, cells, cluster_cols, int(bootstrap), m)
    if regularization == 0:
        ok = _strongly_connected(wb)
        if not ok.all():
            raise StatsInputError(
                f"{int((~ok).sum())} of {bootstrap} bootstrap resamples have no finite strengths (some model "
                "never wins or never loses, or is absent, in them); pass regularization > 0 for a penalised estimate"
            )
    reps = np.empty((int(bootstrap), m))
    per = max(1, _NEWTON_ELEMENTS // (m * m))
    for start in range(0, int(bootstrap), per):
        th, conv = _fit_newton(wb[start : start + per], regularization)
        if not conv.all():
            raise StatsInputError(f"{int((~conv).sum())} bootstrap fits did not converge")
        reps[start : start + per] = th
    lows, highs, ses, drifts = [], [], [], []
    for i in range(m):
        r = bootstrap_interval(reps[:, i], theta[i], confidence=confidence)
        lows.append(r.low), highs.append(r.high), ses.append(r.se), drifts.append(r.drift)
    out["log_strength_low"] = lows
    out["log_strength_high"] = highs
    out["elo_low"] = ELO_SCALE * np.asarray(lows) + ELO_BASE
    out["elo_high"] = ELO_SCALE * np.asarray(highs) + ELO_BASE
    out["se"] = ses
    out.attrs.update({"n_resamples": int(bootstrap), "confidence": confidence, "drift": float(np.max(drifts))})
    return out


# ---------------------------------------------------------------------------------------------------------
# Analyses of a votes file
# ---------------------------------------------------------------------------------------------------------
def _oriented(votes: pd.DataFrame) -> pd.DataFrame:
    """Votes with the pair in sorted order: `first`, `second`, `outcome` in {"first", "second", "tie"}."""
    a, b = votes["model_a"].astype(str).to_numpy(), votes["model_b"].astype(str).to_numpy()
    swap = a > b
    first, second = np.where(swap, b, a), np.where(swap, a, b)
    w = votes["winner"].to_numpy()
    winner_name = np.where(w == "a", a, np.where(w == "b", b, None))
    outcome = np.where(w == "tie", "tie", np.where(winner_name == first, "first", "second"))
    out = votes.copy()
    out["first"], out["second"], out["outcome"] = first, second, outcome
    return out


def pairwise_win_rates(votes: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """One row per compared pair (model < opponent by name): wins/losses/ties of `model` over `opponent`,
    the win rate with ties excluded and with ties as half (Wilson intervals, exact two-sided p against
    0.5; `stats.win_rate`), the number of votes, items and raters.

    Args:
        votes: non-empty frame with `model_a`, `model_b`, `winner` ("a" | "b" | "tie", not checked here: a
            frame validated by `sam3d_eval.io.judgements`), optional `item_id` and `rater_id`. Model names are
            compared as strings.
        confidence: two-sided level of the Wilson intervals, in (0, 1). Default 0.95.

    Returns:
        A frame, one row per pair sorted by (model, opponent), with columns model, opponent (str), votes, the
        `WinRate.as_dict` fields (wins, losses, ties, rate, low, high, pvalue, rate_ties_half, low_ties_half,
        high_ties_half, pvalue_ties_half, confidence; the ties-excluded ones NaN when a pair has only ties),
        items (distinct `item_id`, or the vote count without that column) and raters (distinct `rater_id`, or
        1 without that column).

    Raises:
        StatsInputError: `votes` is not a non-empty DataFrame with `model_a`, `model_b` and `winner`, or
            `confidence` is outside (0, 1).
    """
    check_frame(votes, ("model_a", "model_b", "winner"), "votes")
    o = _oriented(votes)
    rows = []
    for (x, y), g in o.groupby(["first", "second"], sort=True):
        res = win_rate(int((g["outcome"] == "first").sum()), int((g["outcome"] == "second").sum()),
                       int((g["outcome"] == "tie").sum()), confidence=confidence)
        row = {"model": x, "opponent": y, "votes": len(g), **res.as_dict()}
        row["items"] = int(g["item_id"].nunique()) if "item_id" in g.columns else len(g)
        row["raters"] = int(g["rater_id"].nunique()) if "rater_id" in g.columns else 1
        rows.append(row)
    return pd.DataFrame(rows)


def _units(o: pd.DataFrame) -> pd.Series:
    item = o["item_id"].astype(str) if "item_id" in o.columns else pd.Series(np.arange(len(o)).astype(str), index=o.index)
    return item + "\x1f" + o["first"] + "\x1f" + o["second"]


def vote_agreement(votes: pd.DataFrame) -> dict[str, Any]:
    """Agreement between raters on votes: Krippendorff's alpha (nominal: first / second / tie) over units
    (item, pair) judged by two or more raters; `units_shared` counts them. alpha is None (with `note`) when
    no unit is shared or every shared vote is the same outcome.

    Args:
        votes: non-empty frame with `model_a`, `model_b`, `winner` ("a" | "b" | "tie", validated upstream) and
            `rater_id`; optional `item_id` (without it every vote is its own unit, so nothing is shared). At
            most one vote per rater on an item and pair.

    Returns:
        Dict with keys `method` ("krippendorff_alpha (nominal)"), `units_shared` (int), `raters` (int),
        `alpha` (float, or None) and `note` (None, or why alpha is None: no shared unit, or the
        `krippendorff_alpha` error message).

    Raises:
        StatsInputError: `votes` is not a non-empty DataFrame with the four columns.
        ValueError: a rater voted twice on the same item and pair (pandas cannot pivot duplicates).
    """
    check_frame(votes, ("model_a", "model_b", "winner", "rater_id"), "votes")
    o = _oriented(votes)
    o["unit"] = _units(o)
    code = o["outcome"].map({"first": 0.0, "second": 1.0, "tie": 2.0})
    table = pd.DataFrame({"unit": o["unit"], "rater": o["rater_id"].astype(str), "v": code}).pivot(
        index="rater", columns="unit", values="v")
    shared = int((table.notna().sum(axis=0) >= 2).sum())
    out: dict[str, Any] = {"method": "krippendorff_alpha (nominal)", "units_shared": shared,
                           "raters": int(table.shape[0]), "alpha": None, "note": None}
    if shared == 0:
        out["note"] = "no item and pair was judged by two raters"
        return out
    try:
        out["alpha"] = krippendorff_alpha(table.to_numpy(), "nominal")
    except StatsInputError as err:
        out["note"] = str(err)
    return out


def rater_agreement(votes: pd.DataFrame, leaderboard: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per rater (module docstring): votes, ties, `shared` (votes on an item and pair another rater also
    judged with a clear majority), `agreement` (share of those equal to the others' majority), `consistency`
    (share of decisive votes for the leaderboard's stronger model; needs `leaderboard` from
    `stats.bradley_terry`) and `circular_triads` (intransitive triples on one item).

    Args:
        votes: non-empty frame with `model_a`, `model_b`, `winner` ("a" | "b" | "tie", validated upstream) and
            `rater_id`; optional `item_id` (without it every vote is its own unit, so nothing is shared, and
            triads are counted over all of a rater's votes; votes with a missing item skip the triad count).
        leaderboard: frame indexed by model with a `log_strength` column (as `bradley_terry` returns); models
            absent from it count as strength 0. None (default) leaves `consistency` NaN.

    Returns:
        A frame, one row per rater sorted by `rater_id` (as str), with columns rater_id, votes, ties, shared,
        agreement (NaN when `shared` is 0), consistency (NaN without `leaderboard` or without decisive votes;
        a vote counts as consistent when it picks the model with the larger or equal strength) and
        circular_triads (int).

    Raises:
        StatsInputError: `votes` is not a non-empty DataFrame with the four columns.
    """
    check_frame(votes, ("model_a", "model_b", "winner", "rater_id"), "votes")
    o = _oriented(votes)
    # Array code throughout (per-vote pandas look-ups took ~45 s on 150k votes): outcome 0 first, 1 second, 2 tie.
    outcome = o["outcome"].to_numpy()
    oc = np.where(outcome == "first", 0, np.where(outcome == "second", 1, 2))
    rater_code, raters = pd.factorize(o["rater_id"].astype(str).to_numpy(), sort=True)
    n_raters, n = len(raters), len(o)
    if n == 0:
        return pd.DataFrame([])
    unit_code = pd.factorize(_units(o).to_numpy(), use_na_sentinel=False)[0]  # a missing item: one unit
    counts = np.bincount(unit_code * 3 + oc, minlength=3 * (int(unit_code.max()) + 1)).reshape(-1, 3)
    others = counts[unit_code]
    others[np.arange(n), oc] -= 1  # the other votes on the same unit (item and pair)
    top = others.max(axis=1)
    # a clear majority: someone else voted and exactly one outcome has the most votes
    shared = (others.sum(axis=1) > 0) & ((others == top[:, None]).sum(axis=1) == 1)
    agree = shared & (others.argmax(axis=1) == oc)

    def per_rater(mask: np.ndarray) -> np.ndarray:
        return np.bincount(rater_code[mask], minlength=n_raters)

    n_votes, n_ties = per_rater(np.ones(n, dtype=bool)), per_rater(oc == 2)
    n_shared, n_agree = per_rater(shared), per_rater(agree)
    decisive = oc != 2
    n_decisive = per_rater(decisive)
    consistent = None
    if leaderboard is not None:
        strength = leaderboard["log_strength"].to_dict()
        first, second = o["first"].to_numpy(), o["second"].to_numpy()
        names, inv = np.unique(np.concatenate([first, second]), return_inverse=True)
        s = np.array([strength.get(x, 0.0) for x in names], dtype=np.float64)[inv]
        fav_first = s[:n] >= s[n:]
        consistent = per_rater(decisive & (fav_first == (oc == 0)))
    triads = _circular_triads(o, rater_code, oc, n_raters)
    rows = []
    for r, rater in enumerate(raters):
        k = int(n_shared[r])
        consistency = math.nan
        if consistent is not None and n_decisive[r]:
            consistency = float(consistent[r] / n_decisive[r])
        rows.append({"rater_id": rater, "votes": int(n_votes[r]), "ties": int(n_ties[r]), "shared": k,
                     "agreement": int(n_agree[r]) / k if k else math.nan, "consistency": consistency,
                     "circular_triads": int(triads[r])})
    return pd.DataFrame(rows)


# Elements (groups x models x models) of one batch of circular-triad adjacency matrices.
_TRIAD_ELEMENTS = 1 << 20


def _circular_triads(o: pd.DataFrame, rater_code: np.ndarray, oc: np.ndarray, n_raters: int) -> np.ndarray:
    """Per rater: intransitive triples (A>B, B>C, C>A) among the rater's decisive votes, counted per item
    (over all the rater's votes when there is no `item_id` column; votes whose item is missing are skipped).

    With A the beat graph of one rater on one item (A[x, y] = 1 when x beat y at least once), the triples
    holding a directed 3-cycle number trace(A^3) / 3 - trace(M^3) / 6 with M = A and A^T: trace(A^3) / 3
    counts each cycle orientation present, and a triple holds both orientations exactly when all its pairs
    are mutual, a triangle of M (trace(M^3) = 6 triangles)."""
    out = np.zeros(n_raters, dtype=np.int64)
    dec = np.flatnonzero(oc != 2)
    if "item_id" in o.columns:
        item = pd.factorize(o["item_id"].to_numpy())[0][dec]  # -1 for a missing item, as groupby drops it
        dec, item = dec[item >= 0], item[item >= 0]
    else:
        item = np.zeros(dec.size, dtype=np.int64)
    if dec.size < 3:
        return out
    models = pd.factorize(np.concatenate([o["first"].to_numpy()[dec], o["second"].to_numpy()[dec]]))[0]
    n_models = int(models.max()) + 1
    first, second = models[: dec.size], models[dec.size :]
    win = np.where(oc[dec] == 0, first, second)
    lose = np.where(oc[dec] == 0, second, first)
    group = pd.factorize(rater_code[dec].astype(np.int64) * (int(item.max()) + 1) + item)[0]
    rater_of = np.zeros(int(group.max()) + 1, dtype=np.int64)
    rater_of[group] = rater_code[dec]
    # a 3-cycle needs three distinct edges: only groups with three decisive votes or more can hold one
    keep = (np.bincount(group)[group] >= 3) & (win != lose)
    if not keep.any():
        return out
    eg, ew, el = np.unique(np.stack([group[keep], win[keep], lose[keep]], axis=1), axis=0).T  # distinct edges
    # number each group's models 0..k-1: node keys sorted by group, then position within the group's block
    nodes, node_of = np.unique(np.concatenate([eg * n_models + ew, eg * n_models + el]), return_inverse=True)
    node_of = node_of.ravel()
    node_group = nodes // n_models
    local = np.arange(nodes.size) - np.searchsorted(node_group, node_group)
    lw, ll = local[node_of[: eg.size]], local[node_of[eg.size :]]
    size = np.bincount(node_group, minlength=rater_of.size)
    for k in np.unique(size[size >= 3]):
        in_k = np.flatnonzero(size == k)
        per = max(1, _TRIAD_ELEMENTS // int(k * k))
        slot = np.full(size.size, -1, dtype=np.int64)
        for start in range(0, in_k.size, per):
            chunk = in_k[start : start + per]
            slot[chunk] = np.arange(chunk.size)
            e = np.flatnonzero(slot[eg] >= 0)
            adj = np.zeros((chunk.size, k, k))
            adj[slot[eg[e]], lw[e], ll[e]] = 1.0
            adj_t = np.swapaxes(adj, 1, 2)
            mutual = adj * adj_t
            cycles = ((adj @ adj) * adj_t).sum(axis=(1, 2)) / 3.0 - ((mutual @ mutual) * mutual).sum(axis=(1, 2)) / 6.0
            np.add.at(out, rater_of[chunk], np.rint(cycles).astype(np.int64))
            slot[chunk] = -1
    return out


@dataclass
class PreferenceSummary:
    """What `preference_summary` measured; `to_dict()` is the JSON the CLI prints and the report renders.

    Attributes:
        pairwise: `pairwise_win_rates` frame, one row per pair of models.
        leaderboard: `bradley_terry` frame indexed by model.
        raters: `rater_agreement` frame (with the leaderboard), one row per rater.
        agreement: `vote_agreement` dict (Krippendorff's alpha over shared units).
        counts: votes, items, raters, models and ties (ints).
        settings: bootstrap, cluster, confidence, ties, regularization, seed and drift as used.
        notes: human-readable remarks, e.g. that the fit was repeated with regularization.
    """

    pairwise: pd.DataFrame
    leaderboard: pd.DataFrame
    raters: pd.DataFrame
    agreement: dict[str, Any]
    counts: dict[str, int]
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data (`to_jsonable`: frames become lists of records, NaN/inf become None).

        Returns:
            Dict with keys counts, pairwise, leaderboard (records with a `model` column, sorted by Elo,
            strongest first), raters, agreement, settings and notes.
        """
        board = self.leaderboard.reset_index().sort_values("elo", ascending=False)
        return to_jsonable({"counts": self.counts, "pairwise": self.pairwise, "leaderboard": board,
                      "raters": self.raters, "agreement": self.agreement, "settings": self.settings,
                      "notes": self.notes})


def preference_summary(
    votes: pd.DataFrame,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    ties: str = "half",
) -> PreferenceSummary:
    """Everything the module docstring lists for a validated votes frame. The Bradley-Terry bootstrap is
    clustered by item and rater (crossed) when both vary, by whichever varies otherwise. When the plain MLE
    does not exist (a model never loses) the fit is repeated with the documented small penalty
    (regularization 0.01, a N(0, 100) prior on log-strengths) and a note says so.

    Args:
        votes: non-empty frame with `item_id`, `model_a`, `model_b`, `winner` ("a" | "b" | "tie") and
            `rater_id`, as validated by `sam3d_eval.io.judgements`.
        bootstrap: Bradley-Terry bootstrap resamples, 0 (no intervals) or >= 2. Default 1000.
        seed: integer seed of the bootstrap. Default 0.
        confidence: two-sided level of every interval, in (0, 1). Default 0.95.
        ties: "half" (default) or "drop", for the Bradley-Terry fit.

    Returns:
        A `PreferenceSummary`.

    Raises:
        StatsInputError: `votes` lacks a column or is empty; the comparison graph is disconnected; or any
            other `bradley_terry` error (the regularised refit's included, bad arguments included).
        ValueError: a rater voted twice on the same item and pair (from `vote_agreement`).
    """
    check_frame(votes, ("item_id", "model_a", "model_b", "winner", "rater_id"), "votes")
    cluster = [c for c in ("item_id", "rater_id") if votes[c].nunique() > 1]
    notes: list[str] = []
    reg = 0.0
    try:
        board = bradley_terry(votes, ties=ties, bootstrap=bootstrap, cluster=cluster or None, seed=seed,
                              confidence=confidence)
    except StatsInputError as err:
        if "disconnected" in str(err):
            raise
        reg = 0.01
        notes.append(f"Bradley-Terry: {err}; refitted with regularization {reg}")
        board = bradley_terry(votes, ties=ties, bootstrap=bootstrap, cluster=cluster or None, seed=seed,
                              confidence=confidence, regularization=reg)
    counts = {"votes": len(votes), "items": int(votes["item_id"].nunique()),
              "raters": int(votes["rater_id"].nunique()),
              "models": int(len(board)), "ties": int((votes["winner"] == "tie").sum())}
    settings = {"bootstrap": bootstrap, "cluster": cluster, "confidence": confidence, "ties": ties,
                "regularization": reg, "seed": seed, "drift": board.attrs.get("drift")}
    return PreferenceSummary(pairwise_win_rates(votes, confidence=confidence), board,
                             rater_agreement(votes, board), vote_agreement(votes), counts, settings, notes)
