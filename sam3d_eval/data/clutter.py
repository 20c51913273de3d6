"""Shapes of real-world clutter for the real side's `occluders` shift: thin and irregular closed meshes
(branches, wires, fences, leaves, rocks) that look nothing like the procedural families of the synthetic
side, and the photographic texture they are painted with.

Every builder takes a `numpy.random.Generator` and a length scale and returns verts `(V, 3)` float64 in a
local frame (x right, y up, z towards the camera once placed; origin near the shape's middle), faces
`(F, 3)` int64 (closed, outward) and its parameters (JSON-ready). Shapes are dense enough (a few hundred
vertices) for a photograph sampled at the vertices to show as texture.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .procedural import signed_volume, sphere_grid_faces

__all__ = ["CLUTTER_KINDS", "branch", "fence", "leaf", "make_clutter", "photo_colors", "rock", "tube", "wire"]


def _closed(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Faces turned outward (positive enclosed volume); a union of parts is oriented as one."""
    return verts, (faces[:, ::-1].copy() if signed_volume(verts, faces) < 0 else faces)


def _union(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One mesh of closed parts (each part oriented on its own: their volumes add)."""
    vs, fs, off = [], [], 0
    for v, f in parts:
        v, f = _closed(v, f)
        vs.append(v)
        fs.append(f + off)
        off += len(v)
    return np.concatenate(vs), np.concatenate(fs).astype(np.int64)


def tube(points: np.ndarray, radii: np.ndarray, sides: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A closed tube along the polyline `points` `(N, 3)` with radius `radii` `(N,)` at each point: rings of
    `sides` vertices in frames carried along the curve without twist (parallel transport), a fan at each end.

    Returns:
        verts `(N * sides + 2, 3)`, faces `(2 * sides * N, 3)` int64, outward.
    """
    p = np.asarray(points, dtype=np.float64)
    n = len(p)
    tang = np.gradient(p, axis=0)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True).clip(1e-12)
    # A first normal not parallel to the first tangent, then carried along by the smallest rotation.
    ref = np.array([0.0, 0.0, 1.0]) if abs(tang[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    normal = np.cross(tang[0], ref)
    normal /= np.linalg.norm(normal)
    rings = []
    ang = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    for i in range(n):
        if i:
            normal = normal - tang[i] * (normal @ tang[i])
            normal /= max(np.linalg.norm(normal), 1e-12)
        binormal = np.cross(tang[i], normal)
        rings.append(p[i] + radii[i] * (np.cos(ang)[:, None] * normal + np.sin(ang)[:, None] * binormal))
    verts = np.concatenate(rings + [p[:1], p[-1:]])
    idx = np.arange(n * sides).reshape(n, sides)
    a, b = idx[:-1], idx[1:]
    a1, b1 = np.roll(a, -1, 1), np.roll(b, -1, 1)
    faces = [np.stack([a, b, b1], -1).reshape(-1, 3), np.stack([a, b1, a1], -1).reshape(-1, 3)]
    start, end = n * sides, n * sides + 1
    faces.append(np.stack([np.full(sides, start), np.roll(idx[0], -1), idx[0]], 1))
    faces.append(np.stack([np.full(sides, end), idx[-1], np.roll(idx[-1], -1)], 1))
    return _closed(verts, np.concatenate(faces).astype(np.int64))


def _walk(rng: np.random.Generator, start: np.ndarray, heading: float, length: float, steps: int,
          wiggle: float) -> np.ndarray:
    """`(steps + 1, 3)` points of a jittered walk of total `length` from `start`, mostly in the x-y plane."""
    pts = [np.asarray(start, dtype=np.float64)]
    step = length / steps
    for _ in range(steps):
        heading += rng.normal(0.0, wiggle)
        pts.append(pts[-1] + step * np.array([math.cos(heading), math.sin(heading), rng.normal(0.0, 0.15)]))
    return np.stack(pts)


def branch(rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """A twig: a crooked stem of length `scale * U(1.6, 3)` tapering from radius `scale * U(0.03, 0.07)`,
    with 1-3 crooked side twigs."""
    length = scale * rng.uniform(1.6, 3.0)
    r0 = scale * rng.uniform(0.03, 0.07)
    steps = 24
    stem = _walk(rng, np.array([-length / 2, 0.0, 0.0]), rng.normal(0.0, 0.2), length, steps, 0.12)
    parts = [tube(stem, r0 * np.linspace(1.0, 0.45, steps + 1), 8)]
    n_twigs = int(rng.integers(1, 4))
    for _ in range(n_twigs):
        at = int(rng.integers(steps // 5, steps - 3))
        d = stem[at + 1] - stem[at]
        heading = math.atan2(d[1], d[0]) + rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.1)
        twig = _walk(rng, stem[at], heading, length * rng.uniform(0.2, 0.45), 10, 0.2)
        rt = r0 * (1.0 - 0.55 * at / steps) * 0.7
        parts.append(tube(twig, rt * np.linspace(1.0, 0.35, len(twig)), 6))
    v, f = _union(parts)
    return v, f, {"length": float(length), "radius": float(r0), "twigs": n_twigs}


def wire(rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """A cable across the view: length `scale * U(2.5, 4)`, radius `scale * U(0.015, 0.04)`, sagging by
    `U(0, 0.5)` of a scale, a slight wave."""
    length = scale * rng.uniform(2.5, 4.0)
    r = scale * rng.uniform(0.015, 0.04)
    sag = scale * rng.uniform(0.0, 0.5)
    t = np.linspace(-0.5, 0.5, 40)
    wave = rng.uniform(0.0, 0.1) * scale * np.sin(2 * np.pi * rng.uniform(1, 3) * t + rng.uniform(0, 2 * np.pi))
    pts = np.stack([t * length, sag * (4 * t**2 - 1) + wave, 0.05 * scale * np.sin(3 * t)], 1)
    v, f = tube(pts, np.full(len(t), r), 6)
    return v, f, {"length": float(length), "radius": float(r), "sag": float(sag)}


def _box(centre, size) -> tuple[np.ndarray, np.ndarray]:
    """A closed box, 8 corners, 12 outward faces."""
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    v = corners * np.asarray(size, dtype=np.float64) + np.asarray(centre, dtype=np.float64)
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], dtype=np.int64)
    return _closed(v, f)


def fence(rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """A railing: 3-7 thin upright slats `scale * U(0.05, 0.12)` wide with gaps of 1-3 slat widths, held by
    1-2 rails, each slat a little crooked (lean and height jitter)."""
    n = int(rng.integers(3, 8))
    w = scale * rng.uniform(0.05, 0.12)
    gap = w * rng.uniform(1.0, 3.0)
    height = scale * rng.uniform(1.5, 2.6)
    depth = w * 0.5
    span = n * w + (n - 1) * gap
    parts = []
    for k in range(n):
        x = -span / 2 + w / 2 + k * (w + gap)
        h = height * rng.uniform(0.85, 1.05)
        v, f = _box((0.0, 0.0, 0.0), (w, h, depth))
        lean = rng.normal(0.0, 0.04)
        c, s = math.cos(lean), math.sin(lean)
        v = v @ np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]).T + [x, rng.normal(0.0, 0.03) * height, 0.0]
        # Subdivide the long slats along their height so a photograph has vertices to show on.
        parts.append(_subdivided(v, f, 3))
    rails = int(rng.integers(1, 3))
    for j in range(rails):
        y = height * (0.3 if rails == 1 else (-0.25 + 0.5 * j)) * rng.uniform(0.8, 1.2)
        parts.append(_subdivided(*_box((0.0, y, -depth), (span + w, w * 0.8, depth)), 3))
    v, f = _union(parts)
    return v, f, {"slats": n, "slat_width": float(w), "gap": float(gap), "height": float(height), "rails": rails}


def _subdivided(verts: np.ndarray, faces: np.ndarray, times: int) -> tuple[np.ndarray, np.ndarray]:
    """Each triangle split into four, `times` times (midpoints shared, so the surface stays closed)."""
    v, f = verts, faces
    for _ in range(times):
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        uniq, inv = np.unique(edges, axis=0, return_inverse=True)
        mid = len(v) + inv.reshape(3, -1).T  # (F, 3): midpoints of edges 01, 12, 20
        v = np.concatenate([v, (v[uniq[:, 0]] + v[uniq[:, 1]]) / 2])
        a, b, c = f[:, 0], f[:, 1], f[:, 2]
        ab, bc, ca = mid[:, 0], mid[:, 1], mid[:, 2]
        f = np.concatenate([np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1), np.stack([ca, bc, c], 1),
                            np.stack([ab, bc, ca], 1)])
    return v, f.astype(np.int64)


def leaf(rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """A thin irregular plate (a leaf, a torn sheet): a jagged outline of radius `scale * U(0.35, 0.8)`
    (random harmonics and per-point jitter), thickness 3% of it, gently curled."""
    size = scale * rng.uniform(0.35, 0.8)
    n_out, n_rings = 48, 5
    phi = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    k = rng.integers(2, 7, 3)
    amp = rng.uniform(0.05, 0.25, 3)
    rad = 1.0 + sum(a * np.sin(kk * phi + rng.uniform(0, 2 * np.pi)) for a, kk in zip(amp, k))
    rad = rad * rng.uniform(0.8, 1.0, n_out)  # jagged edge
    elong = rng.uniform(1.0, 2.2)
    thick = 0.03 * size
    curl = rng.uniform(-0.4, 0.4)
    s = np.linspace(0.0, 1.0, n_rings + 1)[1:]
    xy = np.concatenate([[[0.0, 0.0]]] + [np.stack([si * rad * np.cos(phi) * elong, si * rad * np.sin(phi)], 1)
                                          for si in s]) * size / elong
    z = curl * (xy**2).sum(1) / max(size, 1e-9)
    top = np.column_stack([xy, z + thick / 2])
    bottom = np.column_stack([xy, z - thick / 2])
    nv = len(xy)
    ring = lambda j: 1 + j * n_out + np.arange(n_out)  # noqa: E731
    faces = [np.stack([np.zeros(n_out, np.int64), ring(0), np.roll(ring(0), -1)], 1)]
    for j in range(n_rings - 1):
        a, b = ring(j), ring(j + 1)
        faces += [np.stack([a, b, np.roll(b, -1)], 1), np.stack([a, np.roll(b, -1), np.roll(a, -1)], 1)]
    top_f = np.concatenate(faces)
    bottom_f = top_f[:, ::-1] + nv
    outer = ring(n_rings - 1)
    o1 = np.roll(outer, -1)
    rim = np.concatenate([np.stack([outer, outer + nv, o1 + nv], 1), np.stack([outer, o1 + nv, o1], 1)])
    v, f = _closed(np.concatenate([top, bottom]), np.concatenate([top_f, bottom_f, rim]).astype(np.int64))
    return v, f, {"size": float(size), "elongation": float(elong), "curl": float(curl), "lobes": k.tolist()}


def rock(rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """An irregular lump (a stone, a crumpled bag): a sphere of radius `scale * U(0.25, 0.5)` under
    three octaves of random ridged noise and a random stretch."""
    rho = scale * rng.uniform(0.25, 0.5)
    n_lat, n_lon = 16, 24
    th = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    ph = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    t, p = np.meshgrid(th, ph, indexing="ij")
    d = np.stack([np.sin(t) * np.cos(p), -np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3)
    d = np.concatenate([[[0.0, -1.0, 0.0]], d, [[0.0, 1.0, 0.0]]])
    r = np.ones(len(d))
    for octave in range(3):
        k = rng.normal(size=(3, 3)) * (2.0 * 2**octave)
        r += 0.22 / 2**octave * np.abs(np.sin(d @ k.T + rng.uniform(0, 2 * np.pi, 3))).mean(1)
    stretch = rng.uniform(0.6, 1.4, 3)
    v, f = _closed(d * (rho * r)[:, None] * stretch, sphere_grid_faces(n_lat, n_lon))
    return v, f, {"radius": float(rho), "stretch": stretch.tolist()}


CLUTTER_KINDS: dict[str, Callable[[np.random.Generator, float], tuple[np.ndarray, np.ndarray, dict]]] = {
    "branch": branch,
    "wire": wire,
    "fence": fence,
    "leaf": leaf,
    "rock": rock,
}


def make_clutter(kind: str, rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """A clutter shape of `kind` (one of `CLUTTER_KINDS`) at length scale `scale` (metres).

    Returns:
        verts `(V, 3)` centred at their bounding-box centre, faces `(F, 3)` int64 (closed, outward),
        parameters.
    """
    if kind not in CLUTTER_KINDS:
        raise ValueError(f"unknown clutter kind {kind!r}; choose from {sorted(CLUTTER_KINDS)}")
    v, f, params = CLUTTER_KINDS[kind](rng, scale)
    return v - (v.min(0) + v.max(0)) / 2, f, params


def photo_colors(verts: np.ndarray, photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Vertex colours `(V, 3)` float32 in [0, 1] of a photograph `(H, W, 3)` uint8 mapped flat onto the shape
    (its local x-y plane stretched over a random square crop), so the clutter carries real-world texture
    instead of a procedural pattern.

    Returns:
        (colours, the crop as {"crop": [row, col, side]}).
    """
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.15, 0.5))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    xy = verts[:, :2]
    lo, span = xy.min(0), np.maximum(np.ptp(xy, axis=0).max(), 1e-9)
    uv = (xy - lo) / span  # one scale on both axes: the photograph is not squashed
    rows = y0 + np.clip((1.0 - uv[:, 1]) * (side - 1), 0, side - 1).astype(np.int64)
    cols = x0 + np.clip(uv[:, 0] * (side - 1), 0, side - 1).astype(np.int64)
    return (photo[rows, cols, :3].astype(np.float32) / 255.0), {"crop": [y0, x0, side]}
