"""Synthetic overlap occluders: objects of the targets' own procedural families, rendered clean (the
synthetic look: a procedural material and pattern), placed between the camera and the target so that
together they hide a drawn share of it. They are the synthetic side's occlusion ("synthetic overlap"); the
real side's `occluders` shift adds cluttered, photo-textured, thin or irregular shapes on top of them
(`shifts.make_occluders`).

Per scene, from the stream `overlap` (keyed by the pair in a paired benchmark, so twins share it): whether
the scene has overlap occluders at all (`prob`), how many (`count`, inclusive range) and the occlusion they
aim at, `a ~ U(occlusion)` capped at `max_occlusion`. Occluder k then draws from its own stream
`overlap:<k>` a family, a size (largest side `U(0.35, 0.9)` times the target's), a yaw, a material and a
pattern; it is put on the line from the target's centre towards the camera, at a drawn depth between the
front of the target's bounding sphere (never intersecting it) and three quarters of the way to the camera,
and then moved parallel to the image plane along a drawn direction by the pixel shift (one of 49 from 0 to
the image size) whose silhouette, with the occluders before it, covers closest to `a (k + 1) / n` of the
target's amodal mask. The aim is an aim: the occlusion a sample records is measured on its final render.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .appearance import sample_material, sample_pattern, vertex_colors
from .procedural import make_object
from .scene import SceneObject, centre_of_gravity, silhouette

__all__ = ["SHIFT_STEPS", "Overlap", "overlap_occluders"]

SHIFT_STEPS = 49  # candidate image-plane shifts per occluder


def _yaw(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[math.cos(t), 0.0, math.sin(t)], [0.0, 1.0, 0.0], [-math.sin(t), 0.0, math.cos(t)]])


def _shifted(mask: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """`mask` moved by `dr` rows and `dc` columns, zero-filled (no wrap-around)."""
    out = np.zeros_like(mask)
    H, W = mask.shape
    if abs(dr) >= H or abs(dc) >= W:
        return out
    out[max(dr, 0):H + min(dr, 0), max(dc, 0):W + min(dc, 0)] = mask[max(-dr, 0):H + min(-dr, 0),
                                                                    max(-dc, 0):W + min(-dc, 0)]
    return out


@dataclass
class Overlap:
    """The overlap occluders of a scene: `objects` (role "occluder", in placement order), their `record`
    (None when the scene has none) and the target's `amodal` silhouette they were placed around (None when
    none was rendered)."""

    objects: list[SceneObject]
    record: dict | None
    amodal: np.ndarray | None


def overlap_occluders(
    target_verts: np.ndarray,
    target_faces: np.ndarray,
    target_size: float,
    camera,
    rng: np.random.Generator,
    occluder_rng: Callable[[int], np.random.Generator],
    categories: Sequence[str],
    prob: float,
    count: tuple[int, int],
    occlusion: tuple[float, float],
    max_occlusion: float,
) -> Overlap:
    """The synthetic overlap occluders of one scene (module docstring).

    Args:
        target_verts: `(V, 3)` the target in world coordinates (the clean, unworn shape, so that twins place
            the same occluders); target_faces: `(F, 3)`.
        target_size: the target's largest side (metres).
        camera: the scene's one-camera `PerspectiveCameras` (looking at the target's centre of gravity).
        rng: the scene's `overlap` stream (decision, count, aim); always draws three numbers.
        occluder_rng: `k -> ` the stream of occluder k (`overlap:<k>`).
        categories: the procedural families drawn from.
        prob, count, occlusion: `GenerationConfig.overlap_prob`, `overlap_count`, `overlap_occlusion`.
        max_occlusion: the cap on the aim.

    Returns:
        an `Overlap`; its record holds {"count", "aim", "occluders": per occluder its family, parameters,
        size, yaw, material, pattern, centre, depth, shift_px, goal and the coverage its placement
        estimated}.
    """
    # Always three draws, so the decision does not move the draws after it.
    u = rng.uniform()
    n = int(rng.integers(count[0], count[1] + 1))
    aim = float(min(rng.uniform(occlusion[0], occlusion[1]), max_occlusion))
    if not u < prob or n == 0:
        return Overlap([], None, None)
    amodal = silhouette(target_verts, target_faces, camera)
    area = int(amodal.sum())
    if area == 0:
        return Overlap([], None, amodal)
    R_wc = camera.R[0].numpy()
    T_wc = camera.T[0].numpy()
    fx, fy = camera.focal_length[0].tolist()
    eye = camera.get_camera_center()[0].numpy()
    centre = centre_of_gravity(target_verts, target_faces)
    radius = float(np.linalg.norm(target_verts - centre, axis=1).max())
    dist = float(np.linalg.norm(eye - centre))
    fwd = (eye - centre) / dist
    H, W = amodal.shape
    covered = np.zeros_like(amodal)
    objects, records = [], []
    for k in range(n):
        rk = occluder_rng(k)
        category = str(rk.choice(list(categories)))
        size = float(target_size * rk.uniform(0.35, 0.9))
        m = make_object(category, rk, size)
        material = sample_material(rk)
        pattern = sample_pattern(rk, size)
        yaw = float(rk.uniform(0.0, 360.0))
        depth_u, angle = float(rk.uniform()), float(rk.uniform(0.0, 2 * np.pi))
        local = m.verts - centre_of_gravity(m.verts, m.faces)
        colors = vertex_colors(local, pattern)  # the pattern in the object's own frame, as on a target
        local = local @ _yaw(yaw).T
        r_k = float(np.linalg.norm(local, axis=1).max())
        # In front of the target's bounding sphere, behind three quarters of the way to the camera: shrink
        # an occluder that cannot fit (a near camera leaves little room).
        room = 0.75 * dist - 1.02 * radius
        if 2 * r_k > room:
            shrink = max(room, 1e-6) / (2 * r_k)
            local, r_k, size = local * shrink, r_k * shrink, size * shrink
        d_min = 1.02 * radius + r_k
        depth = d_min + depth_u * max(0.0, 0.75 * dist - r_k - d_min)
        p0 = centre + fwd * depth
        alone = silhouette(local + p0, m.faces, camera)
        goal = aim * (k + 1) / n
        best = (math.inf, 0.0, 0.0)
        for s in np.linspace(0.0, float(max(H, W)), SHIFT_STEPS):
            dc, dr = s * math.cos(angle), s * math.sin(angle)
            cov = float((amodal & (covered | _shifted(alone, int(round(dr)), int(round(dc))))).sum()) / area
            if abs(cov - goal) < best[0] - 1e-12:
                best = (abs(cov - goal), dc, dr)
        _, dc, dr = best
        # A pixel shift at the occluder's depth z is a camera-space shift of (dc z / fx, dr z / fy, 0).
        z = float((R_wc @ p0 + T_wc)[2])
        offset = R_wc.T @ np.array([dc * z / fx, dr * z / fy, 0.0])
        verts = local + p0 + offset
        # The shifted silhouette stands in for the placed one (a rasterisation saved; it only steers the aim).
        covered = covered | _shifted(alone, int(round(dr)), int(round(dc)))
        objects.append(SceneObject(verts, m.faces, colors, material, "occluder"))
        records.append({"category": category, "category_params": m.params, "size_m": size, "yaw_deg": yaw,
                        "material": material.to_dict(), "pattern": pattern, "centre": (p0 + offset).tolist(),
                        "depth": float(depth), "shift_px": [float(dc), float(dr)], "goal": float(goal),
                        "estimated_coverage": float((amodal & covered).sum()) / area})
    return Overlap(objects, {"count": n, "aim": aim, "occluders": records}, amodal)
