"""Point-cloud files to `Pointclouds`: PLY (ascii / binary, optional normals and colours) and npz.

The PLY reader is a small numpy parser of the vertex element (plyfile is not a dependency); it is shared
with `splats.py`, which reads Gaussian-splat PLYs through it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from ..structures import Pointclouds

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


class PointCloudReadError(ValueError):
    """A point-cloud or splat file is missing, corrupt, or lacks a required property; the message names the file."""


def read_ply_vertices(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every scalar property of the `vertex` element of a PLY file, as `{name: (V,) array}` in file dtype.

    Formats ascii, binary_little_endian and binary_big_endian. Elements before `vertex` are skipped (in
    binary files only when they have no list properties). Raises `PointCloudReadError`.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PointCloudReadError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data.startswith(b"ply"):
        raise PointCloudReadError(f"{path}: not a PLY file (no 'ply' magic)")
    end = data.find(b"end_header")
    if end < 0:
        raise PointCloudReadError(f"{path}: PLY header has no end_header")
    body_start = data.find(b"\n", end) + 1
    header = data[:end].decode("ascii", errors="replace").splitlines()
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str, bool]]]] = []  # name, count, [(prop, dtype, is_list)]
    for line in header[1:]:
        tok = line.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        try:
            if tok[0] == "format":
                fmt = tok[1]
            elif tok[0] == "element":
                elements.append((tok[1], int(tok[2]), []))
            elif tok[0] == "property":
                if tok[1] == "list":
                    elements[-1][2].append((tok[4], _PLY_TYPES[tok[3]], True))
                else:
                    elements[-1][2].append((tok[2], _PLY_TYPES[tok[1]], False))
        except (IndexError, KeyError, ValueError):
            raise PointCloudReadError(f"{path}: bad PLY header line {line!r}") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise PointCloudReadError(f"{path}: unsupported PLY format {fmt!r}")
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise PointCloudReadError(f"{path}: PLY has no vertex element")
    if fmt == "ascii":
        lines = data[body_start:].decode("ascii", errors="replace").splitlines()
        skip = sum(e[1] for e in elements[: names.index("vertex")])
        _, count, props = elements[names.index("vertex")]
        if any(p[2] for p in props):
            raise PointCloudReadError(f"{path}: list properties on the vertex element are not supported")
        rows = lines[skip : skip + count]
        if len(rows) < count:
            raise PointCloudReadError(f"{path}: truncated, {len(rows)} of {count} vertex lines")
        try:
            table = np.array([r.split()[: len(props)] for r in rows], dtype=np.float64).reshape(count, len(props))
        except ValueError:
            raise PointCloudReadError(f"{path}: malformed vertex lines") from None
        return {p[0]: table[:, i].astype(p[1]) for i, p in enumerate(props)}
    order = "<" if fmt == "binary_little_endian" else ">"
    offset = body_start
    for name, count, props in elements:
        if any(p[2] for p in props):
            if name == "vertex":
                raise PointCloudReadError(f"{path}: list properties on the vertex element are not supported")
            raise PointCloudReadError(f"{path}: binary element {name!r} with list properties precedes vertex")
        dt = np.dtype([(p[0], order + p[1]) for p in props])
        if name == "vertex":
            if offset + dt.itemsize * count > len(data):
                raise PointCloudReadError(f"{path}: truncated, {count} vertices need {dt.itemsize * count} bytes")
            arr = np.frombuffer(data, dtype=dt, count=count, offset=offset)
            native = "<" if sys.byteorder == "little" else ">"
            return {p[0]: arr[p[0]].astype(native + p[1]) for p in props}
        offset += dt.itemsize * count
    raise AssertionError("unreachable")


def _stack(props: dict[str, np.ndarray], keys: tuple[str, ...]) -> np.ndarray | None:
    if not all(k in props for k in keys):
        return None
    return np.stack([props[k] for k in keys], axis=1)


def _colors01(c: np.ndarray) -> np.ndarray:
    """uint8 colours to [0, 1]; float colours are taken as already in [0, 1]."""
    return c.astype(np.float32) / 255.0 if np.issubdtype(c.dtype, np.integer) else c.astype(np.float32)


def _check_finite(path: Path, points: np.ndarray, what: str) -> None:
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        raise PointCloudReadError(f"{path}: {int((~finite).sum())} of {len(points)} {what} have NaN or inf coordinates")


def load_pointcloud(path: str | os.PathLike, device: str | torch.device = "cpu") -> Pointclouds:
    """One point cloud from `.ply` (x, y, z [+ nx, ny, nz] [+ red, green, blue]) or `.npz` (`points` [+ `normals`, `colors`]).

    Points and normals are float32; colours become `features` `(P, 3)` in [0, 1] (uint8 divided by 255).
    A Gaussian-splat PLY loads as its centres here; use `splats.load_splats` to sample its Gaussians.
    Raises `PointCloudReadError` for a missing, corrupt or incomplete file, arrays that are not numbers, or
    NaN/inf point coordinates.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        props = read_ply_vertices(path)
        pts = _stack(props, ("x", "y", "z"))
        normals = _stack(props, ("nx", "ny", "nz"))
        colors = _stack(props, ("red", "green", "blue"))
        if colors is None:
            colors = _stack(props, ("r", "g", "b"))
    elif suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as e:
            raise PointCloudReadError(f"{path}: cannot read npz ({e})") from None
        pts, normals, colors = arrays.get("points"), arrays.get("normals"), arrays.get("colors")
    else:
        raise PointCloudReadError(f"{path}: unsupported point-cloud extension {suffix!r} (use .ply or .npz)")
    if pts is None:
        raise PointCloudReadError(f"{path}: no points (PLY needs x, y, z vertex properties; npz a 'points' array)")
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise PointCloudReadError(f"{path}: points must be (P, 3), got {pts.shape}")
    for name, a in (("points", pts), ("normals", normals), ("colors", colors)):
        # An npz may hold any dtype (strings, complex, bools): numpy would fail on it later with no file name.
        if a is not None and not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise PointCloudReadError(f"{path}: {name} must be integers or floats, got dtype {a.dtype}")
    _check_finite(path, pts, "points")
    for name, a in (("normals", normals), ("colors", colors)):
        if a is not None and a.shape != pts.shape:
            raise PointCloudReadError(f"{path}: {name} has shape {a.shape}, points {pts.shape}")
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32), device=device)  # noqa: E731
    return Pointclouds(
        [t(pts)],
        normals=None if normals is None else [t(normals)],
        features=None if colors is None else [t(_colors01(colors))],
    )
