"""A seeded sampler that mixes synthetic and real samples at a given ratio per epoch (the training
curriculum sets the ratio, e.g. 80/20 -> 50/50 -> 20/80 -> 100% real).

Each of the `num_samples` draws of an epoch is synthetic with probability `ratio_synthetic` (a Bernoulli
draw, so the synthetic count is Binomial(num_samples, ratio)); inside a domain, samples come from a
seeded permutation walked in order and reshuffled when used up, so an epoch covers a domain evenly. The
draws of epoch e come from the stream `(seed, "mixing_sampler", e)`: the same for the same seed and epoch,
whatever happened before. With `num_replicas > 1` each rank takes every `num_replicas`-th index of the
epoch's sequence (as `torch.utils.data.DistributedSampler`).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from ..seeding import torch_generator

__all__ = ["MixingSampler"]


class MixingSampler(torch.utils.data.Sampler[int]):
    """Indices into a dataset whose items have `domains` ("synthetic" / "real", one per item).

    Args:
        domains: the domain of every dataset item (e.g. `ManifestDataset.domains`).
        ratio_synthetic: share of synthetic draws in [0, 1]; change it between epochs with `set_ratio`.
        num_samples: draws per epoch (per rank the epoch holds `ceil(num_samples / num_replicas)`).
        seed: base seed; epoch: the starting epoch (`set_epoch` moves it).
        num_replicas, rank: split each epoch's draws across ranks.
    """

    def __init__(
        self,
        domains: Sequence[str],
        ratio_synthetic: float,
        num_samples: int,
        seed: int = 0,
        epoch: int = 0,
        *,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.synthetic = [i for i, d in enumerate(domains) if d == "synthetic"]
        self.real = [i for i, d in enumerate(domains) if d == "real"]
        unknown = sorted({d for d in domains if d not in ("synthetic", "real")})
        if unknown:
            raise ValueError(f"unknown domain(s) {unknown}; expected synthetic or real")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if not (num_replicas >= 1 and 0 <= rank < num_replicas):
            raise ValueError(f"need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}")
        self.num_samples, self.seed, self.epoch = int(num_samples), int(seed), int(epoch)
        self.num_replicas, self.rank = num_replicas, rank
        self.set_ratio(ratio_synthetic)

    def set_ratio(self, ratio_synthetic: float) -> None:
        """Set the synthetic share; raises ValueError outside [0, 1] or when it needs a domain with no items."""
        r = float(ratio_synthetic)
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"ratio_synthetic must lie in [0, 1], got {ratio_synthetic}")
        if r > 0 and not self.synthetic:
            raise ValueError(f"ratio_synthetic={r} but the dataset has no synthetic samples")
        if r < 1 and not self.real:
            raise ValueError(f"ratio_synthetic={r} asks for real samples but the dataset has none")
        self.ratio_synthetic = r

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-self.num_samples // self.num_replicas)

    def _walk(self, pool: list[int], count: int, g: torch.Generator) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            perm = torch.randperm(len(pool), generator=g).tolist()
            out.extend(pool[i] for i in perm[: count - len(out)])
        return out

    def epoch_indices(self) -> list[int]:
        """All `num_samples` indices of the current epoch (every rank's, interleaved)."""
        g = torch_generator(self.seed, "mixing_sampler", self.epoch)
        is_syn = (torch.rand(self.num_samples, generator=g, dtype=torch.float64) < self.ratio_synthetic).tolist()
        n_syn = sum(is_syn)
        syn = iter(self._walk(self.synthetic, n_syn, g))
        real = iter(self._walk(self.real, self.num_samples - n_syn, g))
        return [next(syn) if s else next(real) for s in is_syn]

    def __iter__(self) -> Iterator[int]:
        idx = self.epoch_indices()
        total = len(self) * self.num_replicas
        idx = idx + idx[: total - len(idx)]  # pad so every rank gets the same count
        return iter(idx[self.rank :: self.num_replicas])
