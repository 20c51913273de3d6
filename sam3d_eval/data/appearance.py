"""Materials and procedural textures of the built-in benchmark.

A `Material` is what the scene shader needs besides the albedo: a diffuse weight, a Blinn-Phong specular
strength and exponent, whether the highlight takes the albedo's tint (metals) and an opacity (translucent
objects blend with what is behind them, more opaque at grazing angles). Colours are vertex colours made by
evaluating a seeded procedural pattern (solid, stripes, checker, smooth noise, gradient, spots) at the
vertices in the object's own frame, so the ground-truth mesh carries the same colours the image shows.
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["MATERIAL_KINDS", "PATTERNS", "Material", "sample_material", "sample_pattern", "vertex_colors"]

MATERIAL_KINDS = ("diffuse", "metallic", "translucent")
PATTERNS = ("solid", "stripes", "checker", "noise", "gradient", "spots")


@dataclass(frozen=True)
class Material:
    """kind in `MATERIAL_KINDS`; diffuse and specular weights, Blinn-Phong `shininess`, `metal` (highlight
    tinted by the albedo) and `opacity` in (0, 1] (1 = opaque)."""

    kind: str = "diffuse"
    diffuse: float = 1.0
    specular: float = 0.05
    shininess: float = 8.0
    metal: bool = False
    opacity: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def sample_material(rng: np.random.Generator, kind: str | None = None) -> Material:
    """A seeded material; `kind` None draws one of `MATERIAL_KINDS` (diffuse 50%, metallic 30%, translucent 20%)."""
    if kind is None:
        kind = str(rng.choice(MATERIAL_KINDS, p=[0.5, 0.3, 0.2]))
    if kind == "diffuse":
        return Material("diffuse", 1.0, float(rng.uniform(0.0, 0.15)), float(rng.uniform(4, 16)), False, 1.0)
    if kind == "metallic":
        return Material("metallic", float(rng.uniform(0.4, 0.7)), float(rng.uniform(0.6, 1.2)),
                        float(rng.uniform(24, 96)), True, 1.0)
    if kind == "translucent":
        return Material("translucent", 0.9, float(rng.uniform(0.2, 0.5)), float(rng.uniform(16, 64)), False,
                        float(rng.uniform(0.35, 0.7)))
    raise ValueError(f"unknown material kind {kind!r}; choose from {MATERIAL_KINDS}")


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    h, s, v = rng.uniform(), rng.uniform(0.25, 0.9), rng.uniform(0.45, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def sample_pattern(rng: np.random.Generator, size: float, pattern: str | None = None) -> dict:
    """Parameters (JSON-ready) of a procedural pattern for an object of `size` metres."""
    if pattern is None:
        pattern = str(rng.choice(PATTERNS))
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose from {PATTERNS}")
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return {
        "pattern": pattern,
        "colour_a": _random_colour(rng).tolist(),
        "colour_b": _random_colour(rng).tolist(),
        "axis": axis.tolist(),
        "period": float(size * rng.uniform(0.12, 0.4)),
        "phase": rng.uniform(0, 2 * np.pi, 3).tolist(),
        "spots": (rng.normal(size=(6, 3)) * size * 0.4).tolist(),
    }


def vertex_colors(points: np.ndarray, params: dict) -> np.ndarray:
    """RGB `(V, 3)` float32 in [0, 1] of the pattern `params` (from `sample_pattern`) at `(V, 3)` points."""
    p = np.asarray(points, dtype=np.float64)
    a, b = np.asarray(params["colour_a"]), np.asarray(params["colour_b"])
    axis, period = np.asarray(params["axis"]), params["period"]
    phase = np.asarray(params["phase"])
    kind = params["pattern"]
    if kind == "solid":
        w = np.zeros(len(p))
    elif kind == "stripes":
        w = (np.sin(2 * np.pi * (p @ axis) / period + phase[0]) > 0).astype(np.float64)
    elif kind == "checker":
        w = (np.floor(p / period + phase / (2 * np.pi)).sum(1) % 2).astype(np.float64)
    elif kind == "noise":
        w = 0.5 + np.sin(2 * np.pi * p / period + phase).sum(1) / 6.0
    elif kind == "gradient":
        t = p @ axis
        w = (t - t.min()) / max(float(np.ptp(t)), 1e-9)
    else:  # spots
        d = np.linalg.norm(p[:, None, :] - np.asarray(params["spots"])[None], axis=-1).min(1)
        w = (d < 0.6 * period).astype(np.float64)
    rgb = a[None] * (1 - w[:, None]) + b[None] * w[:, None]
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)
