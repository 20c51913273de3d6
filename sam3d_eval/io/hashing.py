"""Content hashes: what a stored result was computed from, by bytes rather than by path.

A stored per-sample result is reused only while the prediction file's bytes, the ground-truth file's bytes
and the manifest row it was scored from are unchanged. These functions give those keys:

- `file_sha256(path)`: SHA-256 of a file's bytes (64 hex digits), read in 1 MiB blocks;
- `json_sha256(obj)`: SHA-256 of the canonical JSON of a JSON-ready value (sorted keys, no whitespace,
  NaN written as null), so the same record hashes the same on any machine and in any key order;
- `mesh_sha256(path)`: a mesh file together with the files its loader reads beside it (an OBJ's materials
  and textures, a glTF's buffers and images; `mesh_io.referenced_files`): the file's own SHA-256 when it
  has none, else the SHA-256 of the list of (name, SHA-256 or "missing") of all of them.

Only the standard library, numpy and pandas (through `jsonable`) are used.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from ..jsonable import to_jsonable

__all__ = ["file_sha256", "json_sha256", "mesh_sha256"]

_BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of the file's bytes. Raises `OSError` when it cannot be read."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def json_sha256(obj: Any) -> str:
    """SHA-256 (hex) of `obj`'s canonical JSON (`jsonable.to_jsonable`, sorted keys, compact separators; any
    value JSON has no type for, such as a timestamp, written as its `str`)."""
    text = json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def mesh_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of what a mesh is read from (module docstring). Raises `OSError` when the file itself
    cannot be read; a missing referenced file is keyed as missing."""
    from .mesh_io import referenced_files

    own = file_sha256(path)
    others = referenced_files(path)
    if not others:
        return own
    parts = [["", own]]
    for other in others:
        try:
            parts.append([other.name, file_sha256(other)])
        except OSError:
            parts.append([other.name, "missing"])
    return json_sha256(parts)
