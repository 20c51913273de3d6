"""Optimal one-to-one matching of two equal-size point sets (the solvers behind `metrics.earth_movers_distance`).

- ``"auction"`` (default on GPU): Bertsekas' auction (Jacobi bidding, all unassigned points bid at once) with
  epsilon scaling down to `eps` times the largest pairwise distance. It returns a true bijection whose cost
  is within n * eps_abs of optimal, so the mean matched distance lies in [EMD, EMD + eps * max distance]
  (one-sided, never below the exact optimum).
- ``"exact"`` (default on CPU): `scipy.optimize.linear_sum_assignment` (shortest augmenting paths) in
  float64, which on CPU is faster than the auction's many small tensor rounds.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

MatchingMethod = Literal["auto", "auction", "exact"]

__all__ = ["MatchingMethod", "auction_assignment", "exact_assignment", "min_cost_matching"]


def auction_assignment(cost: torch.Tensor, eps: float = 1e-4, scaling: float = 5.0) -> torch.Tensor:
    """Near-optimal assignment for a square `(n, n)` cost matrix: `(n,)` int64 column of each row.

    The total cost is within n * eps * cost.max() of the minimum (epsilon-complementary slackness at the
    final epsilon). Epsilon starts at cost.max() / 2 and is divided by `scaling` down to eps * cost.max();
    prices carry over between scales, assignments restart.

    Args:
        cost: `(n, n)` float finite cost matrix (pairwise distances in practice), on any device.
        eps: final epsilon relative to `cost.max()` (default 1e-4; floored at 1e-12 absolute).
        scaling: factor epsilon is divided by between scales, > 1 (default 5).

    Returns:
        `(n,)` int64 column assigned to each row (a permutation), on cost's device. Not differentiable.

    Raises:
        ValueError: if `cost` is not square or holds NaN/inf.
    """
    n = cost.shape[0]
    if cost.dim() != 2 or cost.shape[1] != n:
        raise ValueError(f"auction_assignment needs a square cost matrix, got {tuple(cost.shape)}")
    if not bool(torch.isfinite(cost).all()):
        # NaN never wins a bid and inf never stops raising prices: the auction would not terminate.
        raise ValueError("auction_assignment: the cost matrix has NaN or inf entries; it must be finite")
    dev = cost.device
    if n == 1:
        return torch.zeros(1, dtype=torch.int64, device=dev)
    top_cost = float(cost.max())
    eps_final = max(eps * top_cost, 1e-12)
    prices = torch.zeros(n, dtype=cost.dtype, device=dev)
    e = max(top_cost / 2.0, eps_final)
    while True:
        owner = torch.full((n,), -1, dtype=torch.int64, device=dev)
        assigned = torch.full((n,), -1, dtype=torch.int64, device=dev)
        while True:
            U = (assigned < 0).nonzero().squeeze(1)
            if U.numel() == 0:
                break
            # each unassigned row bids for its cheapest column, raising its price by the margin over the
            # second cheapest plus e; the highest bid per column wins it
            top = (-(cost[U] + prices[None])).topk(2, dim=1)
            cols = top.indices[:, 0]
            bids = prices[cols] + (top.values[:, 0] - top.values[:, 1]) + e
            best = torch.full((n,), -math.inf, dtype=cost.dtype, device=dev).scatter_reduce(0, cols, bids, "amax")
            win = bids == best[cols]
            winner = torch.full((n,), -1, dtype=torch.int64, device=dev).scatter_reduce(0, cols[win], U[win], "amax")
            J = (winner >= 0).nonzero().squeeze(1)
            old = owner[J]
            assigned[old[old >= 0]] = -1
            owner[J] = winner[J]
            assigned[winner[J]] = J
            prices[J] = best[J]
        if e <= eps_final:
            return assigned
        e = max(e / scaling, eps_final)


def exact_assignment(cost: torch.Tensor) -> torch.Tensor:
    """Optimal assignment for a square `(n, n)` cost matrix: `(n,)` int64 column of each row, on cost's device.

    `scipy.optimize.linear_sum_assignment` in float64 on the CPU.

    Args:
        cost: `(n, n)` real cost matrix on any device (copied to the CPU as float64, detached).

    Returns:
        `(n,)` int64 column assigned to each row (a permutation minimising the total cost), on cost's
        device. Not differentiable.

    Raises:
        ValueError: if `cost` is not square (scipy raises its own errors for invalid entries).
    """
    from scipy.optimize import linear_sum_assignment

    n = cost.shape[0]
    if cost.dim() != 2 or cost.shape[1] != n:
        raise ValueError(f"exact_assignment needs a square cost matrix, got {tuple(cost.shape)}")
    rows, cols = linear_sum_assignment(cost.detach().double().cpu().numpy())
    out = torch.empty(n, dtype=torch.int64)
    out[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.int64)
    return out.to(cost.device)


def min_cost_matching(
    p: torch.Tensor, q: torch.Tensor, method: MatchingMethod = "auto", eps: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bijection of two equal-size sets `(n, D)` minimising the summed Euclidean distance.

    Args:
        p, q: `(n, D)` float points, finite.
        method: ``"auto"`` (default; exact on CPU, auction elsewhere), ``"auction"`` or ``"exact"``.
        eps: auction accuracy (relative to the largest pairwise distance; default 1e-4).

    Returns:
        `(cols, dists)`: `(n,)` int64 q index matched to each p point, and `(n,)` float64 matched Euclidean
        distances in the points' units (their mean is the Earth Mover's Distance of the two sets), both on
        p's device. Not differentiable.

    Raises:
        ValueError: if p and q are not two `(n, D)` tensors of one shape, `method` is unknown, or (auction)
            the distances are not finite.
    """
    if p.dim() != 2 or p.shape != q.shape:
        raise ValueError(f"min_cost_matching needs two (n, D) sets of equal sizes, got {tuple(p.shape)} and {tuple(q.shape)}")
    if method == "auto":
        method = "exact" if p.device.type == "cpu" else "auction"
    if method not in ("auction", "exact"):
        raise ValueError(f"method must be 'auto', 'auction' or 'exact', got {method!r}")
    C = torch.cdist(p.detach().to(torch.float64)[None], q.detach().to(torch.float64)[None])[0]
    cols = exact_assignment(C) if method == "exact" else auction_assignment(C, eps=eps)
    return cols, C[torch.arange(C.shape[0], device=C.device), cols]
