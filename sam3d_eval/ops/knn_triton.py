"""Fused Triton kernel for the nearest neighbour (K=1) of every point, for CUDA.

Each program owns a block of query points of one batch element and streams the other cloud through
registers in blocks, keeping a running min / argmin: no distance matrix is ever written to memory.
Distances are computed by direct differences in float32 (no ||a||^2 + ||b||^2 - 2ab cancellation).
Triton is imported when this module is, so import it lazily; on CPU it runs under TRITON_INTERPRET=1.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _knn1_kernel(
    p1_ptr,
    p2_ptr,
    len1_ptr,
    len2_ptr,
    dist_ptr,
    idx_ptr,
    P1,
    stride1_b,
    stride1_p,
    stride2_b,
    stride2_p,
    D: tl.constexpr,
    NORM: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    pid = tl.program_id(0)
    b = tl.program_id(1)
    len1 = tl.load(len1_ptr + b)
    len2 = tl.load(len2_ptr + b)
    offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < len1
    best_d = tl.full([BLOCK_N], float("inf"), tl.float32)
    best_i = tl.zeros([BLOCK_N], tl.int32)
    if pid * BLOCK_N < len1:
        base1 = p1_ptr + b.to(tl.int64) * stride1_b + offs_n.to(tl.int64) * stride1_p
        base2 = p2_ptr + b.to(tl.int64) * stride2_b
        for start in range(0, len2, BLOCK_M):
            offs_m = start + tl.arange(0, BLOCK_M)
            mask_m = offs_m < len2
            dist = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)
            for d in tl.static_range(D):
                a = tl.load(base1 + d, mask=mask_n, other=0.0).to(tl.float32)
                c = tl.load(base2 + offs_m.to(tl.int64) * stride2_p + d, mask=mask_m, other=0.0).to(tl.float32)
                diff = a[:, None] - c[None, :]
                if NORM == 1:
                    dist += tl.abs(diff)
                else:
                    dist += diff * diff
            dist = tl.where(mask_m[None, :], dist, float("inf"))
            tile_d = tl.min(dist, axis=1)
            # argmin as the smallest column holding the row minimum: ties go to the lower index,
            # like pytorch3d's sequential scan.
            cols = tl.where(dist == tile_d[:, None], offs_m[None, :], 2147483647)
            tile_i = tl.min(cols, axis=1)
            upd = tile_d < best_d
            best_d = tl.where(upd, tile_d, best_d)
            best_i = tl.where(upd, tile_i, best_i)
    out = b.to(tl.int64) * P1 + offs_n
    tl.store(dist_ptr + out, best_d, mask=offs_n < P1)
    tl.store(idx_ptr + out, best_i.to(tl.int64), mask=offs_n < P1)


def knn1_triton(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: torch.Tensor,
    lengths2: torch.Tensor,
    norm: int = 2,
    block_n: int = 64,
    block_m: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest neighbour in `p2` `(N, P2, D)` of each point of `p1` `(N, P1, D)`.

    Returns float32 `(N, P1)` distances (squared L2 or L1; inf where `lengths2` is 0) and int64 `(N, P1)`
    indices, both undefined past `lengths1`. No autograd: `knn_points` recomputes differentiable dists.

    Args:
        p1: `(N, P1, D)` float query points on CUDA (or CPU under ``TRITON_INTERPRET=1``); ranked in float32.
        p2: `(N, P2, D)` float points, same device.
        lengths1: `(N,)` integer number of valid points of each `p1[n]`.
        lengths2: `(N,)` integer number of valid points of each `p2[n]`.
        norm: 2 (default) for squared Euclidean distances, 1 for L1 distances.
        block_n: query points per program (a power of two; default 64).
        block_m: `p2` points per streamed block (a power of two; default 64).

    Returns:
        `(dists, idx)`: `(N, P1)` float32 distance to the nearest neighbour (squared input units for
        `norm=2`, input units for `norm=1`; inf where `lengths2[n]` is 0) and `(N, P1)` int64 its index in
        `p2` (ties to the lowest index), both undefined past `lengths1[n]`.

    Raises:
        ValueError: if `norm` is not 1 or 2.
    """
    if norm not in (1, 2):
        raise ValueError(f"norm must be 1 or 2, got {norm}")
    N, P1, D = p1.shape
    p1 = p1.contiguous()
    p2 = p2.contiguous()
    dists = torch.empty((N, P1), dtype=torch.float32, device=p1.device)
    idx = torch.empty((N, P1), dtype=torch.int64, device=p1.device)
    if N == 0 or P1 == 0:
        return dists, idx
    lengths1 = lengths1.to(device=p1.device, dtype=torch.int64).contiguous()
    lengths2 = lengths2.to(device=p1.device, dtype=torch.int64).contiguous()
    grid = (triton.cdiv(P1, block_n), N)
    _knn1_kernel[grid](
        p1,
        p2,
        lengths1,
        lengths2,
        dists,
        idx,
        P1,
        p1.stride(0),
        p1.stride(1),
        p2.stride(0),
        p2.stride(1),
        D=D,
        NORM=norm,
        BLOCK_N=block_n,
        BLOCK_M=block_m,
    )
    return dists, idx
