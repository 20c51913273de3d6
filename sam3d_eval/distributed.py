"""torch.distributed for every layer: one way to join torchrun's process group and to exchange objects.

Processes are started by ``torchrun`` (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT);
the process group is `torch.distributed`'s: gloo on the CPU, nccl on CUDA with one GPU per rank. Nothing
home-made. Outside torchrun (or with WORLD_SIZE 1) every function here is the one-process answer, so callers
need no branch. Imports torch, and no layer of the package (evaluation and training both use it).
"""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["all_gather_object", "barrier", "broadcast_object", "dist_info", "join_process_group"]


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def join_process_group(device: str | torch.device) -> tuple[torch.device, bool]:
    """Join the torchrun job the environment describes, when WORLD_SIZE > 1 and no group exists yet.

    Returns (this rank's device: ``cuda:LOCAL_RANK`` on CUDA, else `device`; whether this call created the
    group, so the caller destroys it when done).
    """
    device = torch.device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
        return device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, True


def barrier() -> None:
    """Wait for every rank (nothing with one process)."""
    if dist_info()[1] > 1:
        torch.distributed.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (pickled by torch.distributed)."""
    if dist_info()[1] == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    world = dist_info()[1]
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out
