"""Procedural object families of the built-in benchmark: closed triangle meshes drawn from a seeded generator.

Every category maps a `numpy.random.Generator` to a mesh in its own object frame (metres, y up, resting
on y = 0 is *not* assumed: the scene places it). Shapes vary in size and proportions inside a category.
Sphere-topology families (superquadrics, lathed vessels, blobs) and tori are single watertight
2-manifolds with outward normals, extrusions are closed prisms over star-shaped outlines, and furniture is a
union of closed boxes (each part watertight; the winding number of the union is still >= 1 inside, so
volume IoU stays defined). Resolution is moderate (~1-4k faces) so that wear and dents have vertices to
move and a 256 px render stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["CATEGORIES", "ProceduralMesh", "make_object", "sphere_grid_faces", "signed_volume"]


@dataclass
class ProceduralMesh:
    """verts `(V, 3)` float64 (metres), faces `(F, 3)` int64 (outward, counter-clockwise), the family's
    parameters (JSON-ready) and whether the surface is one watertight manifold."""

    verts: np.ndarray
    faces: np.ndarray
    params: dict
    watertight: bool


def sphere_grid_faces(n_lat: int, n_lon: int) -> np.ndarray:
    """Faces `(F, 3)` of a sphere-topology grid: vertex 0 the south pole, then `n_lat - 1` rings of `n_lon`
    vertices from south to north, then the north pole; every ring wraps around."""
    rings = n_lat - 1
    faces = []
    ring = lambda i: 1 + i * n_lon + (np.arange(n_lon))  # noqa: E731
    north = 1 + rings * n_lon
    r0 = ring(0)
    faces.append(np.stack([np.zeros(n_lon, np.int64), np.roll(r0, -1), r0], 1))
    for i in range(rings - 1):
        a, b = ring(i), ring(i + 1)
        a1, b1 = np.roll(a, -1), np.roll(b, -1)
        faces.append(np.stack([a, a1, b1], 1))
        faces.append(np.stack([a, b1, b], 1))
    rl = ring(rings - 1)
    faces.append(np.stack([np.full(n_lon, north, np.int64), rl, np.roll(rl, -1)], 1))
    return np.concatenate(faces).astype(np.int64)


def signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Signed enclosed volume (positive for outward-oriented closed meshes), divergence theorem."""
    a, b, c = (verts[faces[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _orient(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return faces[:, ::-1].copy() if signed_volume(verts, faces) < 0 else faces


def _sphere_verts(pos: Callable[[np.ndarray, np.ndarray], np.ndarray], n_lat: int, n_lon: int) -> np.ndarray:
    """Vertices of `sphere_grid_faces(n_lat, n_lon)` from `pos(theta, phi)`, theta in [0, pi] from the south
    pole, phi in [0, 2 pi)."""
    theta = np.linspace(0.0, np.pi, n_lat + 1)[1:-1]
    phi = np.linspace(0.0, 2 * np.pi, n_lon, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    body = pos(t.reshape(-1), p.reshape(-1))
    south = pos(np.array([0.0]), np.array([0.0]))
    north = pos(np.array([np.pi]), np.array([0.0]))
    return np.concatenate([south, body, north])


def _spow(x: np.ndarray, e: float) -> np.ndarray:
    return np.sign(x) * np.abs(x) ** e


def superquadric(rng: np.random.Generator) -> ProceduralMesh:
    """Superellipsoid: semi-axes (a, b, c) and exponents e1 (latitude) and e2 (longitude) in [0.3, 1.8]."""
    axes = rng.uniform(0.12, 0.3, 3)
    e1, e2 = rng.uniform(0.3, 1.8, 2)

    def pos(t, p):
        lat = t - np.pi / 2
        cl, sl = np.cos(lat), np.sin(lat)
        return np.stack([axes[0] * _spow(cl, e1) * _spow(np.cos(p), e2), axes[1] * _spow(sl, e1),
                         axes[2] * _spow(cl, e1) * _spow(np.sin(p), e2)], 1)

    n_lat, n_lon = 28, 48
    v = _sphere_verts(pos, n_lat, n_lon)
    return ProceduralMesh(v, _orient(v, sphere_grid_faces(n_lat, n_lon)),
                          {"axes": axes.tolist(), "e1": float(e1), "e2": float(e2)}, True)


def vessel(rng: np.random.Generator) -> ProceduralMesh:
    """Closed lathed vessel (vase, bottle, jar): a radius profile r(y) of a base, a belly, a neck and a lip,
    revolved about y; the poles close both ends."""
    height = rng.uniform(0.3, 0.6)
    base, belly, neck, lip = rng.uniform(0.06, 0.14), rng.uniform(0.1, 0.22), rng.uniform(0.03, 0.1), rng.uniform(0.04, 0.12)
    belly_at, neck_at = rng.uniform(0.25, 0.55), rng.uniform(0.7, 0.88)
    knots_y = np.array([0.0, belly_at, neck_at, 1.0])
    knots_r = np.array([base, belly, neck, lip])

    def profile(s):
        # Monotone-free smooth interpolation (cosine between knots) keeps the outline round.
        i = np.clip(np.searchsorted(knots_y, s, side="right") - 1, 0, 2)
        u = (s - knots_y[i]) / (knots_y[i + 1] - knots_y[i])
        w = 0.5 - 0.5 * np.cos(np.pi * u)
        return knots_r[i] * (1 - w) + knots_r[i + 1] * w

    def pos(t, p):
        s = t / np.pi
        # Round the two ends so the poles close the surface without a spike.
        r = profile(s) * np.sqrt(np.clip(np.sin(t) * 4.0, 0.0, 1.0))
        return np.stack([r * np.cos(p), s * height, r * np.sin(p)], 1)

    n_lat, n_lon = 40, 40
    v = _sphere_verts(pos, n_lat, n_lon)
    return ProceduralMesh(v, _orient(v, sphere_grid_faces(n_lat, n_lon)),
                          {"height": float(height), "radii": knots_r.tolist(), "knots": knots_y.tolist()}, True)


def torus(rng: np.random.Generator) -> ProceduralMesh:
    """Torus with major radius R, tube radius r < R and an elliptic tube section (ratio in [0.6, 1.4])."""
    R = rng.uniform(0.15, 0.28)
    r = R * rng.uniform(0.2, 0.55)
    squash = rng.uniform(0.6, 1.4)
    n_u, n_v = 48, 20
    u = np.linspace(0, 2 * np.pi, n_u, endpoint=False)
    w = np.linspace(0, 2 * np.pi, n_v, endpoint=False)
    U, W = np.meshgrid(u, w, indexing="ij")
    rad = R + r * np.cos(W)
    v = np.stack([rad * np.cos(U), squash * r * np.sin(W), rad * np.sin(U)], -1).reshape(-1, 3)
    idx = np.arange(n_u * n_v).reshape(n_u, n_v)
    a, b = idx, np.roll(idx, -1, 0)
    c, d = np.roll(b, -1, 1), np.roll(a, -1, 1)
    f = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return ProceduralMesh(v, _orient(v, f), {"R": float(R), "r": float(r), "squash": float(squash)}, True)


def blob(rng: np.random.Generator) -> ProceduralMesh:
    """Star-shaped blob: a sphere of radius rho whose radius is modulated by a few random smooth lobes."""
    rho = rng.uniform(0.14, 0.26)
    k = int(rng.integers(3, 7))
    dirs = rng.normal(size=(k, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    amps = rng.uniform(0.1, 0.45, k)
    widths = rng.uniform(2.0, 6.0, k)
    stretch = rng.uniform(0.75, 1.3, 3)

    def pos(t, p):
        d = np.stack([np.sin(t) * np.cos(p), -np.cos(t), np.sin(t) * np.sin(p)], 1)
        bump = (amps * np.exp(widths * ((d @ dirs.T) - 1.0))).sum(1)
        return d * (rho * (1.0 + bump))[:, None] * stretch

    n_lat, n_lon = 32, 48
    v = _sphere_verts(pos, n_lat, n_lon)
    return ProceduralMesh(v, _orient(v, sphere_grid_faces(n_lat, n_lon)),
                          {"radius": float(rho), "lobes": k, "stretch": stretch.tolist()}, True)


def extrusion(rng: np.random.Generator) -> ProceduralMesh:
    """Prism over a star-shaped outline (star, gear, flower or polygon) with optional taper and twist; the
    caps are fans from the outline's centre, so the prism is closed."""
    kind = str(rng.choice(["star", "gear", "flower", "polygon"]))
    n = int(rng.integers(3, 9))
    r0 = rng.uniform(0.12, 0.25)
    depth = rng.uniform(0.08, 0.45)
    taper = rng.uniform(0.6, 1.0)
    twist = rng.uniform(-0.6, 0.6)
    n_out, n_layers = 96, 8
    phi = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    if kind == "star":
        inner = rng.uniform(0.4, 0.7)
        rad = r0 * (inner + (1 - inner) * np.abs(((phi * n / np.pi) % 2) - 1))
    elif kind == "gear":
        rad = r0 * (0.85 + 0.15 * (np.cos(n * 2 * phi) > 0))
    elif kind == "flower":
        rad = r0 * (0.7 + 0.3 * np.abs(np.cos(n * phi / 2)))
    else:
        # Regular n-gon: r(phi) = cos(pi/n) / cos(phi mod (2pi/n) - pi/n).
        rad = r0 * np.cos(np.pi / n) / np.cos((phi % (2 * np.pi / n)) - np.pi / n)
    layers = []
    for j, s in enumerate(np.linspace(0.0, 1.0, n_layers)):
        sc = 1.0 + (taper - 1.0) * s
        a = phi + twist * s
        layers.append(np.stack([sc * rad * np.cos(a), np.full(n_out, depth * s), sc * rad * np.sin(a)], 1))
    side = np.concatenate(layers)
    bottom_c, top_c = len(side), len(side) + 1
    v = np.concatenate([side, [[0.0, 0.0, 0.0], [0.0, depth, 0.0]]])
    idx = np.arange(n_layers * n_out).reshape(n_layers, n_out)
    a, b = idx[:-1], idx[1:]
    a1, b1 = np.roll(a, -1, 1), np.roll(b, -1, 1)
    f = [np.stack([a, b, b1], -1).reshape(-1, 3), np.stack([a, b1, a1], -1).reshape(-1, 3)]
    ring0, ring1 = idx[0], idx[-1]
    f.append(np.stack([np.full(n_out, bottom_c), ring0, np.roll(ring0, -1)], 1))
    f.append(np.stack([np.full(n_out, top_c), np.roll(ring1, -1), ring1], 1))
    f = np.concatenate(f).astype(np.int64)
    # Stand the prism up about half of the time (the outline then faces the side).
    if rng.uniform() < 0.5:
        v = v[:, [0, 2, 1]]
        f = f[:, ::-1].copy()
    return ProceduralMesh(v, _orient(v, f), {"outline": kind, "n": n, "radius": float(r0), "depth": float(depth),
                                             "taper": float(taper), "twist": float(twist)}, True)


def _box(centre, size, max_edge: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed axis-aligned box as a grid on each side (edges <= `max_edge`), outward faces, vertices shared
    along the box's edges."""
    size = np.asarray(size, dtype=np.float64)
    n = np.maximum(1, np.ceil(size / max_edge).astype(int))
    verts: dict[tuple[int, int, int], int] = {}
    pts: list[np.ndarray] = []
    faces = []

    def vid(i, j, k):
        key = (i, j, k)
        if key not in verts:
            verts[key] = len(pts)
            pts.append(np.array([i / n[0], j / n[1], k / n[2]]))
        return verts[key]

    for axis in range(3):
        u_ax, w_ax = [a for a in range(3) if a != axis]
        for side in (0, 1):
            for iu in range(n[u_ax]):
                for iw in range(n[w_ax]):
                    corners = []
                    for du, dw in ((0, 0), (1, 0), (1, 1), (0, 1)):
                        c = [0, 0, 0]
                        c[axis] = side * n[axis]
                        c[u_ax], c[w_ax] = iu + du, iw + dw
                        corners.append(vid(*c))
                    q0, q1, q2, q3 = corners
                    faces += [[q0, q1, q2], [q0, q2, q3]]
    v = (np.array(pts) - 0.5) * size + np.asarray(centre, dtype=np.float64)
    f = np.array(faces, dtype=np.int64)
    # Orient each face away from the box centre.
    cen = v[f].mean(1) - np.asarray(centre)
    nrm = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    flip = (nrm * cen).sum(1) < 0
    f[flip] = f[flip][:, ::-1]
    return v, f


def furniture(rng: np.random.Generator) -> ProceduralMesh:
    """Table, stool, chair or cabinet assembled from boxes (top, legs, back, shelves)."""
    kind = str(rng.choice(["table", "stool", "chair", "cabinet"]))
    w, d = rng.uniform(0.25, 0.55), rng.uniform(0.2, 0.45)
    h = rng.uniform(0.25, 0.55)
    t = rng.uniform(0.02, 0.05)
    leg = rng.uniform(0.025, 0.05)
    parts = []
    me = 0.04
    if kind in ("table", "stool", "chair"):
        if kind == "stool":
            w = d = min(w, d)
        parts.append(((0, h - t / 2, 0), (w, t, d)))
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append(((sx * (w - leg) / 2, (h - t) / 2, sz * (d - leg) / 2), (leg, h - t, leg)))
        if kind == "chair":
            bh = rng.uniform(0.2, 0.4)
            parts.append(((0, h + bh / 2, -(d - t) / 2), (w, bh, t)))
    else:
        parts.append(((0, t / 2, 0), (w, t, d)))
        parts.append(((0, h - t / 2, 0), (w, t, d)))
        for sx in (-1, 1):
            parts.append(((sx * (w - t) / 2, h / 2, 0), (t, h - 2 * t, d)))
        parts.append(((0, h / 2, -(d - t) / 2), (w - 2 * t, h - 2 * t, t)))
        for _ in range(int(rng.integers(0, 3))):
            y = rng.uniform(0.3, 0.7) * h
            parts.append(((0, y, t / 2), (w - 2 * t, t, d - t)))
    vs, fs, off = [], [], 0
    for c, s in parts:
        v, f = _box(c, s, me)
        vs.append(v)
        fs.append(f + off)
        off += len(v)
    v = np.concatenate(vs)
    v[:, 1] -= v[:, 1].min()
    return ProceduralMesh(v, np.concatenate(fs), {"kind": kind, "width": float(w), "depth": float(d),
                                                  "height": float(h), "parts": len(parts)}, False)


CATEGORIES: dict[str, Callable[[np.random.Generator], ProceduralMesh]] = {
    "superquadric": superquadric,
    "vessel": vessel,
    "furniture": furniture,
    "torus": torus,
    "blob": blob,
    "extrusion": extrusion,
}


def make_object(category: str, rng: np.random.Generator, size: float | None = None) -> ProceduralMesh:
    """A mesh of `category` drawn from `rng`; with `size` (metres) it is scaled so its largest bounding-box
    side equals `size`. Raises ValueError for an unknown category."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; choose from {sorted(CATEGORIES)}")
    m = CATEGORIES[category](rng)
    if size is not None:
        ext = float(np.ptp(m.verts, axis=0).max())
        m.verts = m.verts * (size / ext)
        m.params["size"] = float(size)
    return m
