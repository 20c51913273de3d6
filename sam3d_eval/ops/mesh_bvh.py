"""Nearest triangle of many points through libigl's AABB tree (a bounding-volume hierarchy, exact float64).

The CPU search behind the exact point-to-surface distance (`point_mesh.point_face_distance` with
``min_triangle_area=None``): `nearest_triangles` returns, for every query point, the index of its nearest
triangle and libigl's float64 squared distance to it. The caller recomputes the distance of each picked pair with
its own formula (differentiable, bitwise its own) and checks it against libigl's value.

Why libigl (``igl.point_mesh_squared_distance``): a C++ AABB tree with a parallel, per-point best-first traversal,
wheels for Linux (x86_64, aarch64), macOS and Windows. On CAD meshes with long thin triangles it replaces a KD-tree
engine that took 91-99 s for 100k points near a 43k-face gear (0.24-0.36 s here, 2 busy cores;
benchmarks/bench_point_mesh.py). Two things are added here:

- Query points are visited in Morton (Z-curve) order: neighbouring queries walk the same branches of the tree,
  which more than halves libigl's time on 100k points against the same call in the given order.
- Ill-conditioned triangles do not go to libigl's triangle test: libigl decides "inside" from barycentric
  coordinates computed with a Gram determinant (|b0| + |b1| + |b2| - 1 <= 1e-10), which is garbage for (nearly)
  collinear triangles and then reports a far point at its plane distance. Triangles whose angle at the first
  vertex has sin^2 <= `SLIVER_SIN2` are searched as their three edges instead (a second libigl call on segments),
  which is their exact distance up to their width.

libigl is imported lazily; `available()` says whether it can be. Without it the callers fall back to their own
engines (point_mesh's KD-tree engine), so libigl is a dependency for speed only.
"""

from __future__ import annotations

import functools

import numpy as np

# sin^2 of the angle at the first vertex below which a triangle is searched as its edges (libigl's barycentric
# coordinates lose ~eps / sin^2 of relative precision; 1e-12 keeps that below 1e-4 in float64).
SLIVER_SIN2 = 1e-12


@functools.lru_cache(maxsize=1)
def _igl():
    try:
        import igl
    except ImportError:
        return None
    if not hasattr(igl, "point_mesh_squared_distance"):
        return None
    return igl


def available() -> bool:
    """True when libigl (``pip install libigl``) imports and has ``point_mesh_squared_distance``."""
    return _igl() is not None


def _spread_bits(x: np.ndarray) -> np.ndarray:
    """Insert two zero bits between each of the low 10 bits of `x` (uint32)."""
    x = x & np.uint32(0x3FF)
    for shift, mask in ((16, 0x030000FF), (8, 0x0300F00F), (4, 0x030C30C3), (2, 0x09249249)):
        x = (x | (x << np.uint32(shift))) & np.uint32(mask)
    return x


def morton_order(points: np.ndarray) -> np.ndarray:
    """Permutation `(P,)` int64 that sorts `(P, 3)` points along a 3D Z-order curve on a 1024^3 grid over their
    bounding box (finer cells would not change which tree branches neighbouring queries share)."""
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    xyz = np.ascontiguousarray(points.T)  # (3, P): numpy reduces (P, 3) along axis 0 several times slower
    lo, hi = xyz.min(1), xyz.max(1)
    ext = float((hi - lo).max())
    q = ((xyz - lo[:, None]) * (1023.0 / ext if ext > 0 else 0.0)).astype(np.uint32)
    code = _spread_bits(q[0]) | (_spread_bits(q[1]) << np.uint32(1)) | (_spread_bits(q[2]) << np.uint32(2))
    return np.argsort(code).astype(np.int64, copy=False)


def first_angle_sin2(tris: np.ndarray) -> np.ndarray:
    """`(T,)` float64 sin^2 of each triangle's angle at its first vertex (0 for degenerate triangles): the
    conditioning of barycentric coordinates computed from the edges leaving that vertex, as libigl does."""
    a, b, c = (np.ascontiguousarray(tris[:, k].T) for k in range(3))  # (3, T) each: row-wise numpy ops
    ab, ac = b - a, c - a
    n = (ab[1] * ac[2] - ab[2] * ac[1], ab[2] * ac[0] - ab[0] * ac[2], ab[0] * ac[1] - ab[1] * ac[0])
    nn = n[0] * n[0] + n[1] * n[1] + n[2] * n[2]
    den = (ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2]) * (ac[0] * ac[0] + ac[1] * ac[1] + ac[2] * ac[2])
    return np.where(den > 0, nn / np.where(den > 0, den, 1.0), 0.0)


def nearest_triangles(points: np.ndarray, tris: np.ndarray, sin2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest triangle of every point, through libigl's AABB tree.

    Args:
        points: `(P, 3)` float64 finite query points.
        tris: `(T, 3, 3)` float64 finite triangles (a soup: vertices are not shared), T >= 1.
        sin2: `first_angle_sin2(tris)` when the caller has it already.

    Returns:
        `(idx, sqd)`: `(P,)` int64 index of the nearest triangle and `(P,)` float64 libigl's squared distance to
        it. Triangles with `first_angle_sin2` <= `SLIVER_SIN2` are measured as their three edges (so `sqd` is their edge
        distance). Among equally near triangles any may be returned.

    Raises:
        RuntimeError: if libigl is not importable (check `available()` first).
    """
    igl = _igl()
    if igl is None:
        raise RuntimeError("libigl is not installed (pip install libigl); use point_mesh's own engines")
    P = len(points)
    order = morton_order(points)
    q = np.ascontiguousarray(points[order], dtype=np.float64)
    sliver = (first_angle_sin2(tris) if sin2 is None else sin2) <= SLIVER_SIN2
    best_d = np.full(P, np.inf)
    best_i = np.zeros(P, dtype=np.int64)
    good = np.nonzero(~sliver)[0]
    if len(good):
        verts = np.ascontiguousarray(tris[good].reshape(-1, 3), dtype=np.float64)
        faces = np.arange(3 * len(good), dtype=np.int64).reshape(-1, 3)
        sqd, idx, _ = igl.point_mesh_squared_distance(q, verts, faces)
        best_d, best_i = np.asarray(sqd, dtype=np.float64), good[np.asarray(idx, dtype=np.int64)]
    bad = np.nonzero(sliver)[0]
    if len(bad):
        verts = np.ascontiguousarray(tris[bad].reshape(-1, 3), dtype=np.float64)
        k = 3 * np.arange(len(bad), dtype=np.int64)[:, None]
        # Edges (0, 1), (1, 2), (2, 0) of each sliver; each row as (higher index, lower index): libigl measures a
        # zero-length segment as a point only when its second index is the lower one.
        segs = np.concatenate([k + [1, 0], k + [2, 1], k + [2, 0]], 0)
        sqd, idx, _ = igl.point_mesh_squared_distance(q, verts, segs)
        sqd = np.asarray(sqd, dtype=np.float64)
        take = sqd < best_d
        best_d = np.where(take, sqd, best_d)
        best_i = np.where(take, bad[np.asarray(idx, dtype=np.int64) % len(bad)], best_i)
    idx_out = np.empty(P, dtype=np.int64)
    d_out = np.empty(P, dtype=np.float64)
    idx_out[order], d_out[order] = best_i, best_d
    return idx_out, d_out
