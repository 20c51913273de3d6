"""K nearest neighbours between batched point clouds (pytorch3d `knn_points` / `knn_gather` semantics).

One public function, three engines chosen by device and size inside:

- ``"torch"``: tiled brute force in torch. It walks both clouds in tiles with a running top-K merge, so
  it never holds the full ``P1 x P2`` distance matrix. Up to 8-D it ranks by direct differences (exact);
  higher-D features go through a matmul filter with a rigorous error bound, re-ranked exactly. Works on
  any device and dtype.
- ``"triton"``: a fused CUDA kernel (distance tile and running min/argmin in registers), K=1, float32
  ranking: forcing it on float64 points is refused (``auto`` never picks it for float64). ``auto`` picks it
  only while `sam3d_eval.runtime.triton_enabled()` (a `runtime_policy(..., triton=False)` turns it off).
- ``"kdtree"``: a KD-tree on CPU (pykdtree for L2, scipy's cKDTree for L1), per batch element.

Exact ties go to the lowest index on every engine, as pytorch3d's sequential scan: the brute force keeps
the first column among equal distances, and the KD-tree is built on the distinct points (lowest index of
each set of exact copies) whenever a cheap hash check finds duplicates. Left as a tree returns them: ties
between distinct points at exactly equal distance (measure zero for sampled surfaces).

No function here changes process-wide state; thread counts are the caller's `runtime_policy`.

Whatever engine picks the neighbours, the returned distances are recomputed from the inputs by direct
differences, so they are exact in the input dtype and differentiable w.r.t. both clouds (the gradient
pytorch3d's backward gives); the indices carry no gradient.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Literal

import numpy as np
import torch

from ..runtime import kdtree_threads, triton_enabled
from ..structures.utils import lengths_mask

KNN = namedtuple("KNN", "dists idx knn")
KNN.__doc__ = """Result of `knn_points`: dists `(N, P1, K)`, idx `(N, P1, K)` int64, knn `(N, P1, K, D)` or None."""

Backend = Literal["auto", "torch", "triton", "kdtree"]

# CPU dispatch: pykdtree beats the tiled brute force on one cloud pair from ~100 points up (0.14 vs 0.31 ms
# at 100, 3 vs 226 ms at 10k, measured on the 2-core reference machine); brute force wins only for big
# batches of tiny clouds (128 x 30 points: 1.8 vs 5.2 ms), where the per-element tree overhead dominates,
# and for high-dimensional features, which defeat KD-trees (64-D, 2k points: 8 vs 77 ms).
CPU_BRUTE_FORCE_MAX_PAIRS = 4096
KDTREE_MAX_DIM = 8
# Elements of one distance tile (N_chunk x T1 x T2): 4 MiB of float32 on CPU (cache-friendly; larger
# tiles measured 2-5x slower per pair on the 2-core machine), 256 MiB on GPU.
_TILE_ELEMS_CPU = 1 << 20
_TILE_ELEMS_GPU = 1 << 26
# Up to this dimension the brute force ranks by direct differences (one pass per coordinate, exact in the
# input dtype, as the Triton kernel); above it by the matmul expansion ||b||^2 - 2ab, which is then only a
# filter (see _knn_idx_matmul).
_DIRECT_MAX_DIM = 8
# Candidates the matmul filter keeps beyond K before checking its error bound; rows whose bound admits
# more are recomputed by direct differences.
_MATMUL_EXTRA = 3


def knn_points(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: torch.Tensor | None = None,
    lengths2: torch.Tensor | None = None,
    norm: int = 2,
    K: int = 1,
    version: int = -1,
    return_nn: bool = False,
    return_sorted: bool = True,
    *,
    backend: Backend = "auto",
) -> KNN:
    """K nearest neighbours in `p2` of every point of `p1`, per batch element (pytorch3d `knn_points`).

    Args:
        p1: `(N, P1, D)` float points.
        p2: `(N, P2, D)` float points, same dtype and device.
        lengths1: optional `(N,)` integer valid lengths of `p1` (default all `P1`); values past them are
            never read (they may be NaN).
        lengths2: optional `(N,)` integer valid lengths of `p2` (default all `P2`).
        norm: 2 for squared Euclidean distances, 1 for L1 distances (neighbours also ranked by L1).
        K: number of neighbours.
        version: accepted for pytorch3d's positional order; ignored (the engine is picked by `backend`).
        return_nn: also return the neighbour coordinates `(N, P1, K, D)`.
        return_sorted: accepted for pytorch3d compatibility; results are always sorted ascending.
        backend: engine override for tests and benchmarks; ``"auto"`` picks by device and size.

    Returns:
        `KNN(dists, idx, knn)`: `dists` `(N, P1, K)` in p1's dtype, ascending (squared Euclidean distance
        in squared input units, or L1 distance in input units), `idx` `(N, P1, K)` int64 into `p2`, and
        `knn` `(N, P1, K, D)` the neighbours' coordinates with `return_nn`, else None. As in pytorch3d,
        entries past `lengths1[n]` and entries `k >= lengths2[n]` hold distance 0 and index 0.

    Raises:
        ValueError: on bad shapes, dtypes or lengths, or NaN/inf among the valid points.
    """
    del version, return_sorted  # one engine choice, always sorted
    lengths1, lengths2, padded1, padded2 = _check_inputs(p1, p2, lengths1, lengths2, norm, K)
    # Like pytorch3d, never let values past the lengths (often NaN fill) reach the arithmetic or the
    # backward: zero them (torch.where passes no gradient to the padding).
    if padded1:
        p1 = _zero_padding(p1, lengths1)
    if padded2:
        p2 = _zero_padding(p2, lengths2)
    _check_finite(p1, "p1", "lengths1")
    _check_finite(p2, "p2", "lengths2")
    N, P1, D = p1.shape
    if N == 0 or P1 == 0 or p2.shape[1] == 0:
        dists = p1.new_zeros((N, P1, K)) + 0.0 * p1.sum() + 0.0 * p2.sum()
        idx = torch.zeros((N, P1, K), dtype=torch.int64, device=p1.device)
        knn = p2.new_zeros((N, P1, K, D)) if return_nn else None
        return KNN(dists, idx, knn)

    if backend == "auto":
        backend = select_backend(p1, p2, K)
    needs_grad = torch.is_grad_enabled() and (p1.requires_grad or p2.requires_grad)
    if backend == "kdtree" and not needs_grad and not return_nn:
        # The tree's own distances are direct differences already; recomputing them buys nothing here.
        idx, dists = _knn_kdtree(p1, p2, lengths1, lengths2, norm, K)
        return KNN(dists, idx, None)
    with torch.no_grad():
        idx = knn_idx(p1.detach(), p2.detach(), lengths1, lengths2, norm=norm, K=K, backend=backend)
    return _exact_dists(p1, p2, idx, lengths1, lengths2, norm, K, return_nn)


def _exact_dists(p1, p2, idx, lengths1, lengths2, norm, K, return_nn) -> KNN:
    """Differentiable distances to the chosen neighbours, by direct differences, sorted, padding zeroed.

    `p1`, `p2` must hold zeros past their lengths (`knn_points` zeroes them): padded rows are differenced
    against `p2[:, 0]`, and a NaN there would turn the masked-out gradient into NaN * 0.
    """
    P1 = p1.shape[1]
    valid = _valid_mask(lengths1, lengths2, P1, K)  # (N, P1, K)
    idx = torch.where(valid, idx, torch.zeros_like(idx))

    nn = _gather_points(p2, idx)  # (N, P1, K, D)
    diff = p1[:, :, None, :] - nn
    d = (diff * diff).sum(-1) if norm == 2 else diff.abs().sum(-1)
    if K > 1:
        # Engines may order near-ties differently from the exact distances; sort by the exact ones.
        key = d.detach().masked_fill(~valid, float("inf"))
        order = torch.sort(key, dim=2, stable=True).indices
        d, idx = d.gather(2, order), idx.gather(2, order)
    dists = torch.where(valid, d, torch.zeros_like(d))
    knn = knn_gather(p2, idx, lengths2) if return_nn else None
    return KNN(dists, idx, knn)


def knn_gather(x: torch.Tensor, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Rows of `x` `(N, M, U)` at `idx` `(N, L, K)` -> `(N, L, K, U)` (pytorch3d `knn_gather`).

    Where `k >= lengths[n]` (the cloud had fewer than K points) the output is 0.

    Args:
        x: `(N, M, U)` features or points to gather from (any dtype).
        idx: `(N, L, K)` int64 indices into dimension 1 of `x`, e.g. `knn_points(...).idx`.
        lengths: `(N,)` integer number of valid rows of each `x[n]`, or None (all `M`).

    Returns:
        `(N, L, K, U)` gathered rows in x's dtype, 0 where `k >= lengths[n]`. Differentiable w.r.t. `x`.

    Raises:
        ValueError: if `x` and `idx` differ in batch size.
    """
    N, M, U = x.shape
    _N, L, K = idx.shape
    if N != _N:
        raise ValueError(f"knn_gather: x and idx must share the batch size, got {N} and {_N}")
    if lengths is None:
        lengths = torch.full((N,), M, dtype=torch.int64, device=x.device)
    out = _gather_points(x, idx)
    if K > 0 and bool((lengths < K).any()):
        mask = lengths[:, None] <= torch.arange(K, device=x.device)[None]  # (N, K)
        out = out.masked_fill(mask[:, None, :, None], 0.0)
    return out


def knn_idx(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: torch.Tensor,
    lengths2: torch.Tensor,
    *,
    norm: int = 2,
    K: int = 1,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Neighbour indices only `(N, P1, K)` int64, no autograd; entries outside the lengths are undefined.

    The engine behind `knn_points`; `p1`, `p2` `(N, P*, D)`, lengths `(N,)` int64 (already validated).

    Args:
        p1: `(N, P1, D)` float query points, finite within `lengths1`.
        p2: `(N, P2, D)` float points, same dtype and device, finite and zero past `lengths2`.
        lengths1: `(N,)` int64 number of valid points of each `p1[n]`.
        lengths2: `(N,)` int64 number of valid points of each `p2[n]`.
        norm: 2 (default) ranks by squared Euclidean distance, 1 by L1 distance.
        K: number of neighbours, >= 1 (default 1).
        backend: ``"auto"`` (default; `select_backend`), ``"torch"``, ``"triton"`` (K = 1, not float64) or
            ``"kdtree"`` (CPU only).

    Returns:
        `(N, P1, K)` int64 indices into `p2`, sorted by distance (exact ties as in the module docstring);
        undefined past `lengths1[n]` and for `k >= lengths2[n]`.

    Raises:
        ValueError: on an unknown backend, ``"triton"`` with K != 1 or float64 points, or ``"kdtree"`` on
            non-CPU tensors.
    """
    if backend == "auto":
        backend = select_backend(p1, p2, K)
    if backend == "torch":
        return _knn_idx_torch(p1, p2, lengths1, lengths2, norm, K)
    if backend == "kdtree":
        return _knn_idx_kdtree(p1, p2, lengths1, lengths2, norm, K)
    if backend == "triton":
        if K != 1:
            raise ValueError(f"backend='triton' supports K=1 only, got K={K}")
        if p1.dtype == torch.float64:
            # The kernel differences and ranks in float32: float64 inputs would be ranked at float32 precision.
            raise ValueError("backend='triton' ranks in float32; use backend='torch' (or 'auto') for float64 points")
        from .knn_triton import knn1_triton

        return knn1_triton(p1, p2, lengths1, lengths2, norm)[1][..., None]
    raise ValueError(f"unknown backend {backend!r}; expected auto, torch, triton or kdtree")


def select_backend(p1: torch.Tensor, p2: torch.Tensor, K: int) -> str:
    """The engine `auto` uses for these inputs: by device, dtype, dimension, K and size.

    Args:
        p1: `(N, P1, D)` query points.
        p2: `(N, P2, D)` points searched.
        K: number of neighbours.

    Returns:
        ``"triton"`` on CUDA for K = 1, non-float64 points and `runtime.triton_enabled()`, else ``"torch"``
        on CUDA; on CPU ``"torch"`` when D > `KDTREE_MAX_DIM` (8) or P1 * P2 <= `CPU_BRUTE_FORCE_MAX_PAIRS`
        (4096), else ``"kdtree"``; ``"torch"`` on any other device.
    """
    D = p1.shape[2]
    if p1.is_cuda:
        if K == 1 and p1.dtype != torch.float64 and triton_enabled():
            return "triton"
        return "torch"
    if p1.device.type != "cpu" or D > KDTREE_MAX_DIM:
        return "torch"
    if p1.shape[1] * p2.shape[1] <= CPU_BRUTE_FORCE_MAX_PAIRS:
        return "torch"
    return "kdtree"


# ----------------------------------------------------------------------------------------------------
# helpers


def _check_inputs(p1, p2, lengths1, lengths2, norm, K):
    if not (torch.is_tensor(p1) and torch.is_tensor(p2)):
        raise ValueError("knn_points: p1 and p2 must be tensors")
    if p1.dim() != 3 or p2.dim() != 3:
        raise ValueError(f"knn_points: p1, p2 must be (N, P, D), got {tuple(p1.shape)} and {tuple(p2.shape)}")
    if p1.shape[0] != p2.shape[0]:
        raise ValueError("knn_points: pts1 and pts2 must have the same batch dimension.")
    if p1.shape[2] != p2.shape[2]:
        raise ValueError("knn_points: pts1 and pts2 must have the same point dimension.")
    if not p1.is_floating_point() or p1.dtype != p2.dtype:
        raise ValueError(f"knn_points: p1, p2 must share one floating dtype, got {p1.dtype} and {p2.dtype}")
    if p1.device != p2.device:
        raise ValueError(f"knn_points: p1 on {p1.device}, p2 on {p2.device}")
    if norm not in (1, 2):
        raise ValueError(f"knn_points: norm must be 1 or 2, got {norm}")
    if not isinstance(K, int) or K < 1:
        raise ValueError(f"knn_points: K must be a positive int, got {K!r}")
    N = p1.shape[0]
    out = []
    padded = []
    for name, lengths, P in (("lengths1", lengths1, p1.shape[1]), ("lengths2", lengths2, p2.shape[1])):
        if lengths is None:
            lengths = torch.full((N,), P, dtype=torch.int64, device=p1.device)
            padded.append(False)
        else:
            if not torch.is_tensor(lengths) or lengths.shape != (N,):
                raise ValueError(f"knn_points: {name} must be a ({N},) tensor")
            if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
                raise ValueError(f"knn_points: {name} must have an integer dtype, got {lengths.dtype}")
            lengths = lengths.to(device=p1.device, dtype=torch.int64)
            lo, hi = (int(v) for v in torch.aminmax(lengths)) if N else (P, P)
            if lo < 0 or hi > P:
                raise ValueError(f"knn_points: {name} values must lie in [0, {P}]")
            padded.append(lo < P)
        out.append(lengths)
    return out[0], out[1], padded[0], padded[1]


def _zero_padding(p: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """`p` `(N, P, D)` with the rows past `lengths` set to 0 (differentiable; no gradient to the padding)."""
    valid = lengths_mask(lengths, p.shape[1])
    return torch.where(valid[..., None], p, p.new_zeros(()))


def _check_finite(p: torch.Tensor, name: str, lengths_name: str) -> None:
    """Raise if `p` (padding already zeroed) holds NaN or inf: KD-trees and the brute force misbehave on them."""
    if p.numel() == 0:
        return
    if p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64):
        # numpy on CPU: a single-threaded pass, clear of torch's OpenMP pool (runtime.py's docstring: a
        # parallel torch reduction of 300k floats measured 7-20 ms on the busy 2-core machine, numpy 0.05 ms).
        check_finite_numpy(p.detach().resolve_neg().numpy(), name, lengths_name)
        return
    # One sum is ~25x cheaper than isfinite().all() (100k points: 0.02 vs 0.55 ms); NaN and inf always make
    # it non-finite, and only an overflowing sum of huge finite values needs the elementwise check.
    if bool(torch.isfinite(p.detach().sum())):
        return
    if not bool(torch.isfinite(p.detach()).all()):
        raise ValueError(f"knn_points: {name} has NaN or inf values among its valid points (within {lengths_name})")


def check_finite_numpy(a: np.ndarray, name: str, lengths_name: str) -> None:
    """`_check_finite` for a numpy array of valid points (any shape): ValueError on NaN or inf."""
    # One sum, then the elementwise check only when the sum is not finite (NaN/inf, or an overflow).
    with np.errstate(over="ignore", invalid="ignore"):
        if a.size == 0 or np.isfinite(a.sum()):
            return
    if not np.isfinite(a).all():
        raise ValueError(f"knn_points: {name} has NaN or inf values among its valid points (within {lengths_name})")


def _valid_mask(lengths1: torch.Tensor, lengths2: torch.Tensor, P1: int, K: int) -> torch.Tensor:
    in1 = lengths_mask(lengths1, P1)  # (N, P1)
    ink = lengths_mask(lengths2, K)  # (N, K)
    return in1[:, :, None] & ink[:, None, :]


def _gather_points(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    N, L, K = idx.shape
    U = x.shape[2]
    flat = idx.reshape(N, L * K, 1).expand(-1, -1, U)
    return x.gather(1, flat).view(N, L, K, U)


# ----------------------------------------------------------------------------------------------------
# tiled brute force


def _knn_idx_torch(p1, p2, lengths1, lengths2, norm, K, tile_elems: int | None = None) -> torch.Tensor:
    """Tiled brute force: `(N, P1, K)` indices, sorted by distance then index (undefined past `lengths1`)."""
    N, P1, D = p1.shape
    out = torch.zeros((N, P1, K), dtype=torch.int64, device=p1.device)
    # Trim the padding no element uses.
    P1u, P2u = int(lengths1.max()), int(lengths2.max())
    if P1u == 0 or P2u == 0:
        return out
    p1, p2 = p1[:, :P1u], p2[:, :P2u]
    if tile_elems is None:
        tile_elems = _TILE_ELEMS_GPU if p1.is_cuda else _TILE_ELEMS_CPU
    valid2 = lengths_mask(lengths2, P2u)  # (N, P2u)
    if int(lengths2.min()) < P2u:
        # Padding (possibly NaN) must not reach the centring or a tile; knn_points zeroes it already.
        p2 = torch.where(valid2[..., None], p2, p2.new_zeros(()))
    if norm == 2 and D > _DIRECT_MAX_DIM:
        idx = _knn_idx_matmul(p1, p2, lengths1, lengths2, valid2, K, tile_elems)
    else:
        idx = _knn_idx_direct(p1, p2, valid2, norm, K, tile_elems)
    out[:, :P1u, : idx.shape[2]] = idx
    return out


def _tiles(N, P1u, P2u, tile_elems):
    """(batch chunk, rows, cols) tile sizes with NB * T1 * T2 <= tile_elems (at least one row and column)."""
    T2 = min(P2u, 1024)
    T1 = max(1, min(P1u, tile_elems // T2))
    NB = max(1, min(N, tile_elems // (T1 * T2)))
    return NB, T1, T2


def _direct_tile(a, b, norm):
    """`(n, t1, t2)` distances (squared L2 or L1) between rows `a` `(n, t1, D)` and `b` `(n, t2, D)`.

    Direct differences, one coordinate at a time and in place: two `(n, t1, t2)` buffers whatever D,
    and bitwise the values `_exact_dists` computes (same operations, same summation order).
    """
    at, bt = a.transpose(1, 2), b.transpose(1, 2)  # (n, D, t)
    s = at[:, 0, :, None] - bt[:, 0, None, :]
    s = s.mul_(s) if norm == 2 else s.abs_()
    if a.shape[2] > 1:
        d = torch.empty_like(s)
        for k in range(1, a.shape[2]):
            torch.sub(at[:, k, :, None], bt[:, k, None, :], out=d)
            s.add_(d.mul_(d) if norm == 2 else d.abs_())
    return s


def _knn_idx_direct(a_all, b_all, valid2, norm, K, tile_elems):
    """Exact K nearest by direct differences, tile by tile with a running top-K merge. `(N, P1u, Kc)`."""
    N, P1u, D = a_all.shape
    P2u = b_all.shape[1]
    Kc = min(K, P2u)
    out = torch.empty((N, P1u, Kc), dtype=torch.int64, device=a_all.device)
    if norm == 1 and D > _DIRECT_MAX_DIM:
        # cdist's L1 is direct differences too, and faster than a pass per coordinate at high D.
        dist_fn = lambda a, b: torch.cdist(a, b, p=1.0)  # noqa: E731
    else:
        dist_fn = lambda a, b: _direct_tile(a, b, norm)  # noqa: E731
    NB, T1, T2 = _tiles(N, P1u, P2u, tile_elems)
    for n0 in range(0, N, NB):
        nsl = slice(n0, n0 + NB)
        for i0 in range(0, P1u, T1):
            a = a_all[nsl, i0 : i0 + T1]
            best_d = best_i = None
            for j0 in range(0, P2u, T2):
                s = dist_fn(a, b_all[nsl, j0 : j0 + T2])
                s.masked_fill_(~valid2[nsl, None, j0 : j0 + T2], float("inf"))
                best_d, best_i = _merge_topk(best_d, best_i, s, j0, Kc)
            out[nsl, i0 : i0 + T1] = _sort_candidates(best_d, best_i, Kc)
    return out


def _knn_idx_matmul(p1, p2, lengths1, lengths2, valid2, K, tile_elems):
    """K nearest (squared L2) for high-D features: ||b||^2 - 2ab by matmul as a filter, then exact.

    The expansion's float error is bounded per row by err = c * u * (||a|| + max ||b||)^2 (u the unit
    roundoff, c = 2D + 16 covering the dot products, the final add, the centring and the exact distances'
    own rounding; norms after centring). Every column within 2 * err of the K-th best key may be a true
    neighbour: the kept Kc = K + _MATMUL_EXTRA candidates are re-ranked by exact distances when they
    include all such columns, and rows whose bound admits more are recomputed by direct differences.
    """
    N, P1u, D = p1.shape
    P2u = p2.shape[1]
    Kc = min(K + _MATMUL_EXTRA, P2u)
    # Centre on the valid p2 points (padding is zero): the error bound scales with the norms.
    centre = p2.sum(1) / lengths2.clamp(min=1).to(p2.dtype)[:, None]  # (N, D)
    a_all = p1 - centre[:, None]
    b_all = p2 - centre[:, None]
    bsq_all = (b_all * b_all).sum(-1).masked_fill(~valid2, float("inf"))  # (N, P2u)
    bmax = (b_all * b_all).sum(-1).masked_fill(~valid2, 0.0).amax(1).sqrt()  # (N,)
    u = torch.finfo(p1.dtype).eps / 2
    err = (2 * D + 16) * u * (a_all.norm(dim=-1) + bmax[:, None]) ** 2 * (1 + 1e-3)  # (N, P1u)

    valid1 = lengths_mask(lengths1, P1u)  # (N, P1u)
    out = torch.empty((N, P1u, min(K, P2u)), dtype=torch.int64, device=p1.device)
    NB, T1, T2 = _tiles(N, P1u, P2u, tile_elems)
    for n0 in range(0, N, NB):
        nsl = slice(n0, n0 + NB)
        for i0 in range(0, P1u, T1):
            isl = slice(i0, i0 + T1)
            a = a_all[nsl, isl]
            best_d = best_i = None
            for j0 in range(0, P2u, T2):
                b = b_all[nsl, j0 : j0 + T2]
                # ||b||^2 - 2ab ranks like the squared distance (||a||^2 is constant per row).
                s = torch.baddbmm(bsq_all[nsl, None, j0 : j0 + T2], a, b.transpose(1, 2), alpha=-2.0)
                best_d, best_i = _merge_topk(best_d, best_i, s, j0, Kc)
            keys, order = best_d.sort(dim=2)
            cand = best_i.gather(2, order)
            out[nsl, isl] = _refine(p1[nsl, isl], p2[nsl], keys, cand, K)
            if Kc == P2u:
                continue
            # A column left out has a key >= the last kept one; if that is within the bound, it may belong.
            kth = keys[..., K - 1]
            last = keys[..., -1]
            unsure = (last <= kth + 2 * err[nsl, isl]) & torch.isfinite(last) & valid1[nsl, isl]
            if bool(unsure.any()):
                for n in unsure.any(1).nonzero()[:, 0].tolist():
                    rows = unsure[n].nonzero()[:, 0]
                    nn = n0 + n
                    out[nn, i0 + rows] = _knn_idx_direct(
                        p1[nn, None, i0 + rows], p2[nn, None], valid2[nn, None], 2, K, tile_elems
                    )[0]
    return out


def _merge_topk(best_d, best_i, s, offset, Kc):
    """Merge the K smallest of tile `s` (rows x cols) into the running (best_d, best_i); among exact ties
    the lowest index is kept, as pytorch3d's sequential scan."""
    if Kc == 1:
        d, i = s.min(dim=2, keepdim=True)  # first column among equal minima
        i = i + offset
        if best_d is None:
            return d, i
        # Strict < keeps the lower index on ties, as pytorch3d's sequential scan does.
        upd = d < best_d
        return torch.where(upd, d, best_d), torch.where(upd, i, best_i)
    d, i = _topk_lowest(s, min(Kc, s.shape[2]))
    i = i + offset
    if best_d is not None:
        d = torch.cat([best_d, d], dim=2)
        i = torch.cat([best_i, i], dim=2)
        if d.shape[2] > Kc:
            order = torch.argsort(i, dim=2)  # few candidates: order by (distance, index) exactly
            d, i = d.gather(2, order), i.gather(2, order)
            sel = torch.sort(d, dim=2, stable=True).indices[..., :Kc]
            d, i = d.gather(2, sel), i.gather(2, sel)
    return d, i


def _topk_lowest(s, k):
    """The k smallest of each row of `s` `(n, t, c)` (unsorted), ties at the k-th value going to the lowest
    columns (torch.topk picks an arbitrary one). Fixed up only in rows where topk left a tie behind."""
    d, i = torch.topk(s, k, dim=2, largest=False, sorted=False)
    kth = d.amax(dim=2, keepdim=True)
    eq = s == kth
    bad = eq.sum(2) > (d == kth).sum(2)
    if bool(bad.any()):
        less = s < kth
        need = k - less.sum(2, keepdim=True)
        take = less | (eq & (eq.cumsum(2) <= need))  # exactly k per row, lowest columns at the k-th value
        cols = take.nonzero()[:, -1].view(s.shape[0], s.shape[1], k)
        i = torch.where(bad[..., None], cols, i)
        d = torch.where(bad[..., None], s.gather(2, cols), d)
    return d, i


def _sort_candidates(d, i, K):
    """Candidates `i` with distances `d` (n, t, Kc) sorted by distance, ties by index (a sequential scan's
    order); the first K."""
    if d.shape[2] == 1:
        return i
    order = torch.argsort(i, dim=2)
    d, i = d.gather(2, order), i.gather(2, order)
    sel = torch.sort(d, dim=2, stable=True).indices
    return i.gather(2, sel[..., : min(K, sel.shape[2])])


def _refine(a, p2, approx_d, cand, K):
    """Sort candidate indices `cand` (n, t, Kc) of rows `a` (n, t, D) by exact squared distances; keep K."""
    diff = a[:, :, None, :] - _gather_points(p2, cand)
    exact = (diff * diff).sum(-1)
    exact = exact.masked_fill(torch.isinf(approx_d), float("inf"))  # padding candidates stay last
    return _sort_candidates(exact, cand, K)


# ----------------------------------------------------------------------------------------------------
# KD-tree (CPU)


def _knn_idx_kdtree(p1, p2, lengths1, lengths2, norm, K) -> torch.Tensor:
    return _knn_kdtree(p1, p2, lengths1, lengths2, norm, K)[0]


def _knn_kdtree(p1, p2, lengths1, lengths2, norm, K) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices `(N, P1, K)` int64 and the tree's distances `(N, P1, K)` (squared L2 or L1, `p1`'s dtype).

    Entries past `lengths1` or with `k >= lengths2` hold index 0 and distance 0, as pytorch3d. Among exact
    duplicates of a point the lowest index wins, as pytorch3d and the torch engine (a tree returns an
    arbitrary copy): the tree is built on the distinct points only when a cheap hash check finds copies.

    Everything around the queries is numpy, wrapped as tensors without a copy at the end: no torch op on
    the per-point arrays, so nothing here waits on torch's OpenMP pool (runtime.py's docstring).
    """
    if p1.device.type != "cpu":
        raise ValueError("backend='kdtree' runs on CPU tensors only")
    N, P1, _ = p1.shape
    # pykdtree handles float32 and float64; half precision goes through float32.
    dt = p1.dtype if p1.dtype in (torch.float32, torch.float64) else torch.float32
    a1, a2 = kdtree_arrays(p1, dt), kdtree_arrays(p2, dt)
    # cKDTree's float64 (L1) distances are rounded to p1's float32 here, by numpy (round to nearest, as
    # torch's .to); for half inputs torch rounds the tree's own dtype once, at the end.
    np_dt = {torch.float32: np.float32, torch.float64: np.float64}.get(p1.dtype)
    l1s, l2s = lengths1.tolist(), lengths2.tolist()
    idx = dists = None
    for n in range(N):
        l1, l2 = l1s[n], l2s[n]
        k = min(K, l2)
        if l1 == 0 or k == 0:
            continue
        d, i = kdtree_query(a1[n, :l1], a2[n, :l2], norm, k)
        if N == 1 and l1 == P1 and k == K:  # one full cloud: the query's own arrays, no padded copy
            idx, dists = i.reshape(1, P1, K), d.astype(np_dt or d.dtype, copy=False).reshape(1, P1, K)
            break
        if idx is None:
            idx = np.zeros((N, P1, K), np.int64)
            dists = np.zeros((N, P1, K), np_dt or d.dtype)
        idx[n, :l1, :k] = i
        dists[n, :l1, :k] = d
    if idx is None:
        return torch.zeros((N, P1, K), dtype=torch.int64), torch.zeros((N, P1, K), dtype=p1.dtype)
    idx_t, dists_t = torch.from_numpy(idx), torch.from_numpy(dists)
    if dists_t.dtype != p1.dtype:  # half inputs
        dists_t = dists_t.to(p1.dtype)
    return idx_t, dists_t


def kdtree_arrays(p: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """`p` `(N, P, D)` as a numpy array of `dtype` (float32 or float64) sharing memory where it can."""
    p = p.detach()
    if p.dtype != dtype:
        p = p.to(dtype)
    return p.resolve_neg().numpy()


def kdtree_query(
    q: np.ndarray, data: np.ndarray, norm: int, k: int, *, return_index: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """The `k` nearest rows of `data` `(M, D)` to each row of `q` `(L, D)` (same float dtype, L, M, k >= 1,
    k <= M) by one KD-tree: pykdtree for `norm=2` (squared distances), scipy's cKDTree for `norm=1`.

    Returns `(dists (L, k), idx (L, k) int64)`, sorted by distance: float distances in `data`'s dtype for
    pykdtree, float64 for cKDTree. With `return_index`, among exact copies of a point the lowest index wins
    (module docstring); without it `idx` is None and the copy check is skipped (every copy of a point is at
    the same distance, so the distances do not depend on it).

    The query runs on the KD-tree library's own OpenMP/worker threads; inside a `runtime_policy` the
    `runtime.kdtree_threads` scope applies.
    """
    L = q.shape[0]
    q = np.ascontiguousarray(q)
    data = np.ascontiguousarray(data)
    groups = None
    if return_index:
        # + 0.0 turns -0.0 into 0.0, so that bitwise equal means equal for the duplicate check.
        data = data + 0.0
        groups = _duplicate_groups(data)
    tree_data = data if groups is None else data[groups[0]]
    kq = min(k, tree_data.shape[0])
    with kdtree_threads(L):
        if norm == 2:
            from pykdtree.kdtree import KDTree

            d, i = KDTree(tree_data).query(q, k=kq, sqr_dists=True)
        else:
            from scipy.spatial import cKDTree

            d, i = cKDTree(tree_data).query(q, k=kq, p=1, workers=-1)
    d = np.asarray(d).reshape(L, kq)
    if not return_index:
        return d, None
    i = np.asarray(i).astype(np.int64, copy=False).reshape(L, kq)
    if groups is not None:
        d, i = _expand_copies(d, i, groups, k)
    return d, i


def _duplicate_groups(data: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """None when the rows of `data` `(M, D)` are distinct; else (first index of each distinct row `(U,)`,
    row indices grouped by distinct row and ascending within a group `(M,)`, group starts `(U,)`, sizes `(U,)`).

    A 64-bit hash of the bits, sorted, screens for copies (100k points: ~1.5 ms next to a ~90 ms query);
    only when two hashes collide are the rows compared exactly.
    """
    if data.shape[0] < 2:
        return None
    bits = data.view(np.uint32 if data.dtype == np.float32 else np.uint64).astype(np.uint64)
    mult = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], np.uint64)
    h = np.zeros(data.shape[0], np.uint64)
    for c in range(data.shape[1]):
        h ^= bits[:, c] * mult[c % 3] + np.uint64(c)
    h.sort()
    if not bool((h[1:] == h[:-1]).any()):
        return None
    rows = np.ascontiguousarray(data).view(np.dtype((np.void, data.dtype.itemsize * data.shape[1]))).ravel()
    _, first, inverse, counts = np.unique(rows, return_index=True, return_inverse=True, return_counts=True)
    if len(first) == data.shape[0]:
        return None
    members = np.argsort(inverse.ravel(), kind="stable")
    starts = np.cumsum(counts) - counts
    return first, members, starts, counts


def _expand_copies(d: np.ndarray, i: np.ndarray, groups: tuple[np.ndarray, ...], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours among distinct rows `(L, kq)` -> the k nearest rows of the full cloud, copies included,
    sorted by distance then index (the torch engine's order)."""
    _, members, starts, counts = groups
    L, kq = i.shape
    j = np.arange(k)
    # Up to k copies of each of the kq distinct neighbours: (L, kq, k) candidates.
    have = j[None, None, :] < counts[i][..., None]
    pos = starts[i][..., None] + np.minimum(j[None, None, :], counts[i][..., None] - 1)
    cand = members[pos]
    cd = np.where(have, d[..., None], np.inf).reshape(L, kq * k)
    cand = np.where(have, cand, np.iinfo(np.int64).max).reshape(L, kq * k)
    order = np.lexsort((cand, cd), axis=-1)[:, :k]
    return np.take_along_axis(cd, order, 1), np.take_along_axis(cand, order, 1)
