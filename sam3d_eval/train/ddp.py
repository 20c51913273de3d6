"""Distributed data parallel helpers for the training loop: torchrun's environment, gloo on CPU, nccl on CUDA.

Nothing home-made: processes are started by `torchrun` (which sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT), the process group is `torch.distributed`'s and the model is wrapped in
`torch.nn.parallel.DistributedDataParallel`. Each rank takes an equal slice of every global batch, so
the averaged gradient is the gradient of the global-batch mean loss (every loss term is a mean over its
samples), as in the one-process run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.distributed as dist

from ..distributed import dist_info, join_process_group

__all__ = ["DistContext", "average_gradients", "init_distributed", "shard", "all_reduce_sum"]


@dataclass(frozen=True)
class DistContext:
    """rank, world size, the device this rank uses, and whether this process started the process group."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str | torch.device) -> DistContext:
    """Join the torchrun job described by the environment (`distributed.join_process_group`: gloo for CPU,
    nccl for CUDA, each rank on cuda:LOCAL_RANK, unless a group exists already), or return a one-process
    context."""
    device, owns = join_process_group(device)
    rank, world = dist_info()
    return DistContext(rank, world, device, owns)


def shard(batch_indices: Sequence[int], ctx: DistContext) -> list[int]:
    """This rank's equal, contiguous share of a global batch (its size must divide by the world size)."""
    n = len(batch_indices)
    if n % ctx.world_size:
        raise ValueError(f"global batch of {n} does not split evenly over {ctx.world_size} ranks")
    k = n // ctx.world_size
    return list(batch_indices[ctx.rank * k:(ctx.rank + 1) * k])


def average_gradients(params: Iterable[torch.nn.Parameter], ctx: DistContext) -> None:
    """All-reduce and average the gradients of modules not wrapped in DDP (the discriminator)."""
    if not ctx.distributed:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(ctx.world_size)


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over ranks (a copy; the input is untouched)."""
    out = values.clone()
    if ctx.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out
