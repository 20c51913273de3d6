"""Ground-truth surface samples kept across the runs of a comparison (`GTSampleCache`).

`compare` scores every run of both sides against the same ground truths under one protocol, and a
sample's GT surface samples depend only on the GT mesh and the protocol: they are drawn from the stream
``(protocol.seed, sample_id, "gt_surface")`` (`evaluate.scoring`) on the GT normalised by the protocol's
normalisation, which looks at the GT alone. So the first run's draws are the later runs' draws, bitwise, and
`score_batch` takes them from a cache instead of sampling again when it is given one (``gt_cache=``, with
each sample's ``gt_keys``; the runner passes both: ``run_evaluation(..., gt_cache=...)``).

An entry is keyed by everything the draw depends on: the GT file's content key (``gt_sha256``,
`evaluate.content`: its bytes with the files it references), the sample id (it keys the seed stream), the
protocol fingerprint (seed, sample count, normalisation, ...); the entry also records the loaded GT's kind,
device and dtype and answers only a GT like it. It holds the GT's surface points and normals and, for the
normalisations that act on the sampled clouds, the GT's normalisation (centre, scale). A GT without a
content key (no file, an unreadable one) is never cached.

The cache is bounded in bytes. When it is full it keeps what it holds and admits nothing more: the runs of a
comparison visit the same samples in the same (sorted) order, and under least-recently-used eviction a run
longer than the cache would evict every entry before the next run reaches it; keeping the first entries
gives the next run that many hits. Entries are stored and handed out as copies, so no caller can change
what another one gets. Thread-safe; one cache lives as long as its owner keeps it (`compare` keeps one for
all its sides, then drops it).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["DEFAULT_MAX_BYTES", "GTSampleCache", "GTSamples"]

DEFAULT_MAX_BYTES = 512 << 20  # 10k points with normals are 240 KB: ~2,200 samples
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class GTSamples:
    """One GT's surface samples as `score_batch` draws them: points `(G, 3)`, normals `(G, 3)` or None (a
    point cloud without normals), and its normalisation (centre `(3,)`, scale `()`) when the protocol's
    normalisation acts on the sampled clouds (None otherwise: the GT's box gives it, recomputed each time)."""

    points: torch.Tensor
    normals: torch.Tensor | None
    centre: torch.Tensor | None = None
    scale: torch.Tensor | None = None

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.points, self.normals, self.centre, self.scale) if t is not None]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def copy(self) -> GTSamples:
        c = lambda t: None if t is None else t.detach().clone()  # noqa: E731
        return GTSamples(c(self.points), c(self.normals), c(self.centre), c(self.scale))


class GTSampleCache:
    """A bounded in-process store of GT surface samples (module docstring).

    Args:
        max_bytes: the most tensor bytes held; once reached, new entries are not admitted. Default
            `DEFAULT_MAX_BYTES` (512 MiB).

    Attributes:
        hits, misses: lookups answered and not (a GT without a content key is not looked up); stored: entries
            admitted; refused: entries not admitted because the cache was full.

    A cache pickles (its tensors as arrays): the runner's scoring processes get the entries of their batch
    (`subset`) and send back what they drew (`added`, taken in with `merge`).
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._entries: dict[tuple, tuple[tuple, GTSamples]] = {}  # key -> ((kind, device, dtype), samples)
        self._added: set[tuple] = set()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.stored = self.refused = 0

    @staticmethod
    def key(gt_sha256: Any, sample_id: str, fingerprint: str) -> tuple | None:
        """The entry key of one sample's GT samples, or None when the GT has no content key (`NO_FILE`, an
        unreadable file, None): such a GT is never cached.

        Args:
            gt_sha256: the GT's content key (`evaluate.content.SampleKey.gt_sha256`).
            sample_id: the sample id (keys the seed stream).
            fingerprint: the protocol fingerprint (`Protocol.fingerprint`).
        """
        if not isinstance(gt_sha256, str) or not _SHA256.fullmatch(gt_sha256):
            return None
        return (gt_sha256, str(sample_id), str(fingerprint))

    @staticmethod
    def _meta(gt: Any) -> tuple[str, str, str]:
        """What else the draws depend on: the loaded GT's kind, device and dtype."""
        points = gt.verts_list()[0] if hasattr(gt, "verts_list") else gt.points_list()[0]
        return (type(gt).__name__, str(points.device), str(points.dtype))

    def get(self, key: tuple | None, gt: Any) -> GTSamples | None:
        """A copy of the entry under `key` drawn from a GT like `gt` (a one-element `Meshes` or `Pointclouds`:
        same kind, device and dtype), or None (a miss; a None key is neither a hit nor a miss)."""
        if key is None:
            return None
        meta = self._meta(gt)
        with self._lock:
            held = self._entries.get(key)
            if held is None or held[0] != meta:
                self.misses += 1
                return None
            self.hits += 1
        return held[1].copy()

    def put(self, key: tuple | None, gt: Any, samples: GTSamples) -> bool:
        """Store a copy of `samples`, drawn from `gt`, under `key` unless the key is None, already held, or the
        cache would pass `max_bytes`; returns whether it was stored."""
        return key is not None and self._admit(key, self._meta(gt), samples.copy())

    def _admit(self, key: tuple, meta: tuple, samples: GTSamples) -> bool:
        size = samples.nbytes()
        with self._lock:
            if key in self._entries:
                return False
            if self._bytes + size > self.max_bytes:
                self.refused += 1
                return False
            self._entries[key] = (meta, samples)
            self._added.add(key)
            self._bytes += size
            self.stored += 1
        return True

    def subset(self, keys) -> GTSampleCache:
        """A cache holding this one's entries under `keys` (those it has; the tensors shared, not copied),
        unbounded, with nothing `added` and zero counters."""
        out = GTSampleCache(max_bytes=1 << 62)
        with self._lock:
            for k in keys:
                if k in self._entries:
                    out._entries[k] = self._entries[k]
                    out._bytes += self._entries[k][1].nbytes()
        return out

    def added(self) -> GTSampleCache:
        """A cache of the entries admitted since this one was made (or unpickled), with its counters."""
        out = GTSampleCache(max_bytes=1 << 62)
        with self._lock:
            for k in self._added:
                out._entries[k] = self._entries[k]
                out._bytes += self._entries[k][1].nbytes()
            out.hits, out.misses, out.stored, out.refused = self.hits, self.misses, self.stored, self.refused
        return out

    def merge(self, other: GTSampleCache) -> None:
        """Take in `other`'s entries (as `put` would, within `max_bytes`) and add its counters to this one's
        (`other.stored` is not added: what is stored here is counted here)."""
        for key, (meta, samples) in list(other._entries.items()):
            self._admit(key, meta, samples)
        with self._lock:
            self.hits += other.hits
            self.misses += other.misses
            self.refused += other.refused

    def __getstate__(self) -> dict:
        import numpy as np  # noqa: F401 - the arrays below

        arr = lambda t: None if t is None else t.detach().cpu().numpy()  # noqa: E731
        with self._lock:
            entries = [(k, meta, [arr(t) for t in (s.points, s.normals, s.centre, s.scale)])
                       for k, (meta, s) in self._entries.items()]
            counters = (self.hits, self.misses, self.stored, self.refused)
        return {"max_bytes": self.max_bytes, "entries": entries, "counters": counters}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_bytes"])
        ten = lambda a, device: None if a is None else torch.from_numpy(a).to(device)  # noqa: E731
        for k, meta, arrays in state["entries"]:
            samples = GTSamples(*(ten(a, meta[1]) for a in arrays))
            self._entries[k] = (meta, samples)
            self._bytes += samples.nbytes()
        self.hits, self.misses, self.stored, self.refused = state["counters"]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Tensor bytes held now."""
        return self._bytes

    def clear(self) -> None:
        """Drop every entry (the counters stay)."""
        with self._lock:
            self._entries.clear()
            self._added.clear()
            self._bytes = 0

    def stats(self) -> dict[str, int]:
        """``{"entries", "bytes", "hits", "misses", "stored", "refused"}``."""
        with self._lock:
            return {"entries": len(self._entries), "bytes": self._bytes, "hits": self.hits, "misses": self.misses,
                    "stored": self.stored, "refused": self.refused}
