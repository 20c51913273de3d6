"""Atomic file writes: a file written through these is first written to a hidden temporary sibling and then
renamed over its target (`os.replace`, atomic on POSIX and Windows), so a reader, a resumed run or another
rank never sees half a file, and a write that raises leaves the old file (or none) and no temporary behind.
A process killed outright (SIGKILL, out of memory) can leave a ``.<stem>.<random>.tmp<suffix>`` file; readers
that list folders skip dot-files. `durable` fsyncs the file, not the folder entry.

Shared by every layer (it imports nothing of the package): data, results, checkpoints, reports and tables.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "write_bytes_atomic", "write_text_atomic"]


@contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = False) -> Iterator[Path]:
    """A temporary path to write `path`'s content to; renamed over `path` when the block ends without an
    exception, removed when it raises. The parent folder is created. The temporary is hidden
    (``.<stem>.<random>.tmp<suffix>``: readers skip dot-files, writers that go by the suffix still see it) and
    unique per call, so concurrent writers never share one. durable: fsync the file before the rename (for
    files a crash must not lose, such as result parts)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, durable: bool = False) -> Path:
    """Write `data` to `path` atomically (`atomic_path`); returns the path."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, durable: bool = False) -> Path:
    """Write `text` (UTF-8) to `path` atomically (`atomic_path`); returns the path."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
