"""Runtime policy: the process-wide settings the library reads but never changes on its own.

Library functions (metrics, ops, evaluation) change no process-wide state: no torch thread count, no
environment variable. The entry points that own the process - the evaluation runner, the CLI, a training
loop - enter `runtime_policy` ONCE around their work; it sets the settings below and restores them on exit.

Thread policy (CPU). Per-point torch work after a nearest-neighbour query (gathers, differences, masks,
reductions) is memory-bound: on the busy 2-core reference machine such ops measured 5-25x slower with two
OpenMP threads than with one (100k points: 114 ms vs 5 ms), and an idle machine gains little from the
second thread. So ``torch_threads="auto"`` on a CPU device runs torch on one thread. The KD-tree queries
(pykdtree, OpenMP) do scale with cores, and ``torch.set_num_threads`` also caps their OpenMP pool
(100k x 100k query: 38 ms on 2 threads, 66 ms after ``set_num_threads(1)``): pykdtree's wheel carries its
own libgomp, but once torch is imported its OpenMP symbols bind to torch's libgomp, so both share one
pool and one thread count (imported before torch, pykdtree keeps its own pool, which neither setting
reaches). Inside an "auto" policy the queries therefore get the thread count the policy replaced, through
`kdtree_threads` (a scope the policy owns; outside a policy it does nothing). Without any policy the
library runs on whatever torch is set to.

Where no gradient is needed, the CPU KD-tree paths keep their per-point work out of torch altogether:
`metrics.chamfer_distance` does it in numpy (single-threaded element-wise passes that never wait on
torch's pool) and `ops.knn.knn_points`' KD-tree engine builds its results in numpy and wraps them. A
plain call of those costs what it costs inside a policy (100k x 100k Chamfer: the two pykdtree queries),
so the policy no longer matters for them; it still does for gradients and for the other per-point torch
work (point-to-mesh distances, ICP, training losses).

Triton switch. `triton_enabled()` says whether ops may pick the fused Triton kernel (CUDA): True unless a
policy says ``triton=False``, and only when Triton imports.

Torch's thread count is process-wide: do not enter policies with different thread counts from several
Python threads at once.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from dataclasses import dataclass
from typing import Iterator, Literal, Union

import torch

__all__ = ["RuntimePolicy", "runtime_policy", "triton_enabled", "active_policy", "kdtree_threads"]

ThreadSetting = Union[int, Literal["auto"], None]


@dataclass(frozen=True)
class RuntimePolicy:
    """The settings in force: `device`, `torch_threads` (the count set, or None if left alone),
    `kdtree_threads` (OpenMP threads for KD-tree queries, or None: same as torch's), `triton`."""

    device: torch.device
    torch_threads: int | None
    kdtree_threads: int | None
    triton: bool


_ACTIVE: contextvars.ContextVar[RuntimePolicy | None] = contextvars.ContextVar("sam3d_eval_runtime_policy", default=None)


def active_policy() -> RuntimePolicy | None:
    """The innermost `runtime_policy` in force, or None."""
    return _ACTIVE.get()


@contextlib.contextmanager
def runtime_policy(
    device: torch.device | str, *, torch_threads: ThreadSetting = "auto", triton: bool = True
) -> Iterator[RuntimePolicy]:
    """Set the process-wide runtime settings for a block of work; restore them on exit.

    Args:
        device: where the work runs (``"cpu"``, ``"cuda"``, ``torch.device``).
        torch_threads: ``"auto"`` (1 torch thread on CPU, KD-tree queries keep the previous count; untouched
            on other devices), an int >= 1 (that many threads for everything), or None (leave torch alone).
        triton: whether the Triton kernel may be picked (`triton_enabled`).

    Yields the `RuntimePolicy` in force.
    """
    dev = torch.device(device)
    if torch_threads is not None and torch_threads != "auto":
        if isinstance(torch_threads, bool) or not isinstance(torch_threads, int) or torch_threads < 1:
            raise ValueError(f"torch_threads must be 'auto', None or an int >= 1, got {torch_threads!r}")
    before = torch.get_num_threads()
    if torch_threads == "auto":
        threads = 1 if dev.type == "cpu" else None
        kd = before if threads is not None and before > 1 else None
    else:
        threads, kd = torch_threads, None
    policy = RuntimePolicy(dev, threads, kd, bool(triton))
    token = _ACTIVE.set(policy)
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        yield policy
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
        _ACTIVE.reset(token)


# Below this many query points a KD-tree query keeps the policy's single thread: OpenMP start-up and, on a
# busy machine, spinning threads cost more than the query (1,500 points: 3-4 ms on one thread, ~27 ms on two
# at load ~12; ICP's rotation search makes 24 such queries per step). At 100k points two threads win
# (38 ms vs 66 ms).
KDTREE_THREADED_MIN_QUERIES = 50_000


@contextlib.contextmanager
def kdtree_threads(num_queries: int) -> Iterator[None]:
    """Scope of one KD-tree query of `num_queries` points: the OpenMP thread count the active policy gives
    KD-trees when the query is large enough to gain from it (no-op otherwise and outside a policy)."""
    policy = _ACTIVE.get()
    want = policy.kdtree_threads if policy is not None else None
    now = torch.get_num_threads()
    if want is None or want == now or num_queries < KDTREE_THREADED_MIN_QUERIES:
        yield
        return
    torch.set_num_threads(want)
    try:
        yield
    finally:
        torch.set_num_threads(now)


def triton_enabled() -> bool:
    """Whether ops may use the Triton engine: the active policy allows it (default yes) and Triton imports."""
    policy = _ACTIVE.get()
    if policy is not None and not policy.triton:
        return False
    return _triton_importable()


@functools.lru_cache(maxsize=1)
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
