"""Bradley-Terry strengths from pairwise votes, with (clustered) bootstrap intervals.

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

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import minimize
from scipy.sparse.csgraph import connected_components
from scipy.special import expit, log_expit

from ._checks import StatsInputError, as_generator, check_confidence, check_frame, check_units
from .bootstrap import bootstrap_interval, resample_counts

__all__ = ["bradley_terry", "ELO_SCALE", "ELO_BASE"]

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

    Returns a frame indexed by model (sorted) with `log_strength`, `elo`, `wins`, `losses`, `ties`, and with
    bootstrap > 0 also `log_strength_low`, `log_strength_high`, `elo_low`, `elo_high`, `se`; `attrs` records
    n_resamples, confidence, cluster, ties, regularization and `drift` (largest interval drift between the
    two halves of the resamples, log-strength units). Definition and existence rules: module docstring.
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
