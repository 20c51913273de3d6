"""Seed streams keyed by name: every random draw of the suite comes from one of these.

A stream is keyed by (base seed, keys...), e.g. ``(protocol.seed, sample_id, "pred_surface")``, and
hashed with BLAKE2b into a 63-bit seed, so the draws of one sample never depend on which other samples
share its batch, their order, the number of ranks or a resume (docs/architecture.md). Changing any key
gives an unrelated stream. Pure Python and torch: importable from every layer, importing none.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = ["stream_seed", "torch_generator", "numpy_generator"]

Key = str | int


def stream_seed(seed: int, *keys: Key) -> int:
    """A seed in [0, 2**63) for the stream named by `seed` and `keys` (strings or integers).

    Keys are typed in the hash ("s:" / "i:"), so the sample id "7" and the integer 7 name different streams.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    h = hashlib.blake2b(digest_size=8)
    h.update(f"i:{int(seed)}".encode())
    for key in keys:
        if isinstance(key, (bool, float)) or not isinstance(key, (str, int, np.integer)):
            raise TypeError(f"stream keys must be str or int, got {type(key).__name__}: {key!r}")
        h.update(b"\x00" + (f"s:{key}" if isinstance(key, str) else f"i:{int(key)}").encode())
    return int.from_bytes(h.digest(), "little") >> 1


def torch_generator(seed: int, *keys: Key, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh `torch.Generator` on `device` seeded with `stream_seed(seed, *keys)`."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, *keys))


def numpy_generator(seed: int, *keys: Key) -> np.random.Generator:
    """A fresh numpy `Generator` (PCG64) seeded with `stream_seed(seed, *keys)`."""
    return np.random.default_rng(stream_seed(seed, *keys))
