"""Procedural ground-truth shapes and seeded degradations: the built-in data the small evaluation runs on.

The shapes are closed triangle meshes made with trimesh's primitives; the degradations imitate what a
reconstruction gets wrong (surface noise, a wrong aspect ratio, a dent, a missing part) so that the metrics
have something to measure. Every random choice takes a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import trimesh


def _torus() -> trimesh.Trimesh:
    return trimesh.creation.torus(major_radius=0.35, minor_radius=0.12, major_sections=48, minor_sections=24)


SHAPES: dict[str, Callable[[], trimesh.Trimesh]] = {
    "sphere": lambda: trimesh.creation.icosphere(subdivisions=4, radius=0.5),
    "box": lambda: trimesh.creation.box(extents=(0.8, 0.5, 0.3)).subdivide().subdivide().subdivide(),
    "cylinder": lambda: trimesh.creation.cylinder(radius=0.3, height=0.9, sections=64),
    "capsule": lambda: trimesh.creation.capsule(height=0.6, radius=0.2, count=(32, 32)),
    "cone": lambda: trimesh.creation.cone(radius=0.4, height=0.8, sections=64),
    "torus": _torus,
}


def make_shape(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices `(V, 3)` float32 and faces `(F, 3)` int64 of a built-in shape named in `SHAPES`."""
    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; choose from {sorted(SHAPES)}")
    mesh = SHAPES[name]()
    return np.asarray(mesh.vertices, dtype=np.float32), np.asarray(mesh.faces, dtype=np.int64)


def shape_colors(verts: np.ndarray) -> np.ndarray:
    """A smooth RGB field in [0.1, 0.9] over a shape's surface, `(V, 3)` float32, so renders have texture."""
    v = np.asarray(verts, dtype=np.float64)
    phase = np.array([0.0, 2.1, 4.2])
    rgb = 0.5 + 0.4 * np.sin(4.0 * v @ np.array([[1.0, 0.3, -0.5], [0.2, 1.0, 0.4], [-0.4, 0.6, 1.0]]) + phase)
    return rgb.astype(np.float32)


@dataclass(frozen=True)
class Degradation:
    """How far a simulated prediction departs from its ground truth (lengths in the shape's own units)."""

    noise: float = 0.0  # std of Gaussian vertex noise
    stretch: float = 0.0  # relative scale error along a random axis
    dent: float = 0.0  # depth of a smooth inward dent at a random surface point
    drop_fraction: float = 0.0  # share of faces removed around a random point (an incomplete prediction)
    color_shift: float = 0.0  # amplitude of a smooth seeded colour error (RGB in [0, 1])


def degrade(
    verts: np.ndarray, faces: np.ndarray, degradation: Degradation, seed: int, colors: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded, degraded copy of a mesh: new `(V, 3)` float32 vertices and `(F', 3)` int64 faces, and
    with `colors` `(V, 3)` in [0, 1] also the degraded colours (vertex count is kept, so they stay aligned)."""
    rng = np.random.default_rng(seed)
    v = verts.astype(np.float64).copy()
    scale = float(np.ptp(v, axis=0).max())
    if degradation.stretch:
        axis = rng.integers(3)
        v[:, axis] *= 1.0 + degradation.stretch
    if degradation.dent:
        centre = v[rng.integers(len(v))]
        r2 = ((v - centre) ** 2).sum(1) / (0.25 * scale) ** 2
        inward = v - v.mean(0)
        inward /= np.linalg.norm(inward, axis=1, keepdims=True).clip(1e-9)
        v -= degradation.dent * np.exp(-r2)[:, None] * inward
    if degradation.noise:
        v += rng.normal(scale=degradation.noise, size=v.shape)
    f = faces
    if degradation.drop_fraction:
        centroids = v[faces].mean(1)
        centre = centroids[rng.integers(len(faces))]
        order = np.argsort(((centroids - centre) ** 2).sum(1))
        keep = np.sort(order[int(round(degradation.drop_fraction * len(faces))):])
        f = faces[keep]
    out = v.astype(np.float32), f.astype(np.int64)
    if colors is None:
        return out
    c = np.asarray(colors, dtype=np.float64)
    if degradation.color_shift:
        direction = rng.normal(size=(3, 3))
        c = c + degradation.color_shift * np.sin(3.0 * verts.astype(np.float64) @ direction + rng.uniform(0, 6.3, 3))
    return (*out, np.clip(c, 0.0, 1.0).astype(np.float32))
