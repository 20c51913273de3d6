"""The built-in benchmark generator: one sample (image, masks, GT mesh, camera, record) from (seed, sample id),
and a folder of them with a manifest.

Every random draw of a sample comes from a stream `numpy_generator(seed, sample_id, role)` (roles: object,
appearance, camera, scene, background, lights, second_object, split, shift:<name>), so a sample's bytes
depend on nothing but the seed, its id and the configuration: not on the number of workers, the order in
which samples are made, or a resume. Switching one shift off leaves every other draw of the sample as it
was (`shifts.draw_intensity` always consumes its draws).

Synthetic samples (after arXiv:2503.24229): a target of one of the `procedural.CATEGORIES` (largest side
0.25-0.6 m), a material and a procedural pattern as vertex colours, with probability 0.5 a second object;
both inserted into a template by their centre of gravity with +-0.1 m noise (`scene.place_objects`);
a camera at azimuth U(0, 360), elevation U(-30, 60) degrees, vertical field of view U(35, 55) degrees,
looking at the target's centre of gravity from `U(1.2, 1.8)` times the distance at which its bounding sphere
fills the view; an environment light, a directional key light and with probability 0.5 a point light; a
background of complexity `U(0, background_complexity)`: below 0.2 empty (uniform), below 0.5 simple
(gradient, plain floor), else cluttered (gradient with shapes, checker floor). Real samples are made the
same way and then go through the shifts of `shifts.SHIFTS` at their configured strengths.

Files under the output folder: images/<id>.png (RGB), masks/<id>.png (visible mask, 0/255),
amodal/<id>.png (amodal mask), meshes/<id>.ply (GT mesh in the object frame: origin at its centre of
gravity, y up, metres, vertex colours), cameras/<id>.json, records/<id>.json (the manifest row, written
last: a sample is complete when its record exists), manifest.parquet and manifest.csv, generation.json.
"""

from __future__ import annotations

import io
import json
import math
import os
import pathlib
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..atomic import atomic_path, write_bytes_atomic
from ..config_io import check_keys, dataclass_from_mapping, field_names
from ..io.mesh_io import save_mesh
from ..seeding import numpy_generator
from .appearance import sample_material, sample_pattern, vertex_colors
from .procedural import CATEGORIES, make_object
from .overlap import Overlap, overlap_occluders
from .scene import (ELEVATION_RANGE, SceneObject, background_image, centre_of_gravity, floor_object, make_camera,
                    occlusion_fraction, place_objects, render_scene, target_masks, FLOOR_MIN_ELEVATION)
from .shifts import (SHIFTS, apply_blur, apply_color_temperature, apply_exposure, apply_hard_shadows,
                     apply_harsh_light, apply_jpeg, apply_sensor_noise, apply_wear, draw_intensity, make_occluders,
                     parse_shift_settings, photo_background)
from .lighting import LightRig

__all__ = ["BENCHMARK_KEYS", "GenerationConfig", "NoValidationSplitWarning", "Sample", "ensure_benchmark",
           "generate_sample", "make_benchmark", "sample_ids", "twin_key", "write_sample"]

# 2: synthetic overlap occluders, the real occluders' clutter pattern, meshes_unworn/ and gt_mesh_unworn (a
# folder made by version 1 is refused rather than finished with different samples).
FORMAT_VERSION = 2
SPLITS = ("train", "val", "test")


class NoValidationSplitWarning(UserWarning):
    """A benchmark is made whose `split_fractions` give the validation split no share."""


@dataclass(frozen=True)
class GenerationConfig:
    """What the generator makes (everything that changes bytes, besides the seed).

    image_size: square images, pixels. background_complexity: the maximum level in [0, 1] (training can step
    it up). second_object_prob: chance of a second object. shifts: strength per shift name in [0, 1]
    (missing names default to 1, 0 switches a shift off). shift_prob: chance each shift is applied to a real
    image. split_fractions: train/val/test shares; a zero validation share warns when a benchmark is made
    (`make_benchmark`) unless allow_no_validation is true. categories: the families drawn from. paired: every
    real sample is the twin of the synthetic sample with the same number (`real_000012` of `syn_000012`: the
    same object, appearance, camera, scene, lights, synthetic occluders and split), so the two differ only by
    the shifts and the gap can be measured object by object; records then carry `pair_id`.
    overlap_prob: chance a scene gets synthetic overlap occluders (`data.overlap`; 0 switches them off, and
    then every file of a synthetic sample but its record is what it was before they existed).
    overlap_count: (min, max) of their number per scene. overlap_occlusion: (low, high) of the occlusion they
    aim at, drawn uniformly per scene and capped at max_occlusion.
    """

    image_size: int = 128
    background_complexity: float = 1.0
    second_object_prob: float = 0.5
    shifts: Mapping[str, float] = field(default_factory=dict)
    shift_prob: float = 0.8
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    categories: tuple[str, ...] = tuple(CATEGORIES)
    max_occlusion: float = 0.9
    paired: bool = False
    overlap_prob: float = 0.8
    overlap_count: tuple[int, int] = (1, 2)
    overlap_occlusion: tuple[float, float] = (0.05, 0.8)
    allow_no_validation: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "shifts", parse_shift_settings(dict(self.shifts)))
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "split_fractions", tuple(float(x) for x in self.split_fractions))
        object.__setattr__(self, "overlap_count", tuple(self.overlap_count))
        object.__setattr__(self, "overlap_occlusion", tuple(float(x) for x in self.overlap_occlusion))
        if not (isinstance(self.image_size, int) and 16 <= self.image_size <= 4096):
            raise ValueError(f"image_size must be an integer in [16, 4096], got {self.image_size!r}")
        for name in ("background_complexity", "second_object_prob", "shift_prob", "max_occlusion", "overlap_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {v}")
        if len(self.split_fractions) != 3 or min(self.split_fractions) < 0 or abs(sum(self.split_fractions) - 1) > 1e-9:
            raise ValueError(f"split_fractions must be three non-negative shares summing to 1, got {self.split_fractions}")
        bad = [c for c in self.categories if c not in CATEGORIES]
        if bad or not self.categories:
            raise ValueError(f"unknown or no categories {bad}; choose from {sorted(CATEGORIES)}")
        for name in ("paired", "allow_no_validation"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        lo_hi = self.overlap_count
        if (len(lo_hi) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in lo_hi)
                or not 1 <= lo_hi[0] <= lo_hi[1] <= 8):
            raise ValueError(f"overlap_count must be two integers 1 <= min <= max <= 8, got {list(lo_hi)} "
                             "(overlap_prob = 0 switches the overlap occluders off)")
        lo_hi = self.overlap_occlusion
        if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] <= lo_hi[1] <= 1.0:
            raise ValueError(f"overlap_occlusion must be (low, high) with 0 <= low <= high <= 1, got {list(lo_hi)}")

    @property
    def has_validation(self) -> bool:
        """Whether the splits give the validation split a share (or the config says none is wanted)."""
        return self.split_fractions[1] > 0 or self.allow_no_validation

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shifts"] = dict(self.shifts)
        d["split_fractions"] = list(self.split_fractions)
        d["categories"] = list(self.categories)
        d["overlap_count"] = list(self.overlap_count)
        d["overlap_occlusion"] = list(self.overlap_occlusion)
        if not self.paired:  # benchmarks made before the setting existed keep their generation.json
            del d["paired"]
        if not self.allow_no_validation:  # changes no byte: recorded only when set
            del d["allow_no_validation"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping, *, where: str = "GenerationConfig") -> "GenerationConfig":
        """The config of settings `d` (`to_dict` inverts it); an unknown key is a ValueError starting with
        `where` that names it and the valid ones."""
        return dataclass_from_mapping(cls, d, where=where, noun="generation setting(s)")


@dataclass
class Sample:
    """One generated sample in memory: image `(H, W, 3)` uint8, visible and amodal masks `(H, W)` bool, the
    GT mesh (verts `(V, 3)` float64 in the object frame, faces `(F, 3)` int64, colours `(V, 3)` float32),
    the camera dict, the manifest record (without file paths) and, for a real sample, `unworn_verts`: the GT
    mesh before the `wear` shift in the same frame (vertex for vertex; equal to `verts` without wear; None
    for a synthetic sample, whose GT is never worn)."""

    sample_id: str
    image: np.ndarray
    mask: np.ndarray
    amodal: np.ndarray
    verts: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    camera: dict
    record: dict
    unworn_verts: np.ndarray | None = None


def sample_ids(domain: str, count: int) -> list[str]:
    """The ids of the first `count` samples of `domain`: `syn_000000`, ... or `real_000000`, ..."""
    prefix = {"synthetic": "syn", "real": "real"}.get(domain)
    if prefix is None:
        raise ValueError(f"unknown domain {domain!r}; expected synthetic or real")
    return [f"{prefix}_{i:06d}" for i in range(count)]


def twin_key(sample_id: str) -> str:
    """The pair a sample belongs to in a paired benchmark: `pair_000012` for `syn_000012` and `real_000012`."""
    prefix, sep, number = sample_id.partition("_")
    if not sep or prefix not in ("syn", "real") or not number.isdigit():
        raise ValueError(f"a paired benchmark needs ids like syn_000012 / real_000012, got {sample_id!r}")
    return f"pair_{number}"


def _light_rig(rng: np.random.Generator, centre: np.ndarray, radius: float) -> LightRig:
    from ..render.shading import DirectionalLight, PointLight

    tint = rng.uniform(0.9, 1.1, 3)
    env = rng.uniform(0.4, 0.65)
    sky = tuple((env * tint).tolist())
    ground = tuple((env * 0.6 * tint).tolist())
    az, el = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 1.3)
    direction = (math.cos(el) * math.cos(az), math.sin(el), math.cos(el) * math.sin(az))
    lights = [DirectionalLight(direction=direction, color=tuple((rng.uniform(0.5, 0.85) * tint).tolist()))]
    if rng.uniform() < 0.5:
        az, el = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 1.2)
        d = rng.uniform(2.0, 5.0) * radius
        loc = centre + d * np.array([math.cos(el) * math.cos(az), math.sin(el), math.cos(el) * math.sin(az)])
        lights.append(PointLight(location=tuple(loc.tolist()), color=tuple((rng.uniform(0.2, 0.4) * tint).tolist())))
    return LightRig(sky, ground, lights, [0.0] * len(lights))


def _object(rng_obj: np.random.Generator, rng_app: np.random.Generator, categories: Sequence[str]):
    category = str(rng_obj.choice(list(categories)))
    size = float(rng_obj.uniform(0.25, 0.6))
    m = make_object(category, rng_obj, size)
    material = sample_material(rng_app)
    pattern = sample_pattern(rng_app, size)
    cog = centre_of_gravity(m.verts, m.faces)
    verts = m.verts - cog
    return category, size, m, verts, material, pattern


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


class _Shifts:
    """The real-side shifts of one sample: each one's stream (keyed by the sample's own id, also in a twin
    pair), its intensity (drawn for every shift, so switching one off moves no other draw; 0 on the
    synthetic side: off) and the parameters of those applied."""

    def __init__(self, seed: int, sample_id: str, config: GenerationConfig, real: bool):
        self.rng = {name: numpy_generator(seed, sample_id, f"shift:{name}") for name in SHIFTS}
        self.intensity = {name: (draw_intensity(config.shifts[name], config.shift_prob, self.rng[name]) if real else 0.0)
                          for name in SHIFTS}
        self.applied: dict[str, dict] = {}

    def on(self, name: str) -> bool:
        return self.intensity[name] > 0


@dataclass
class _Layout:
    """The scene around the target: background level and kind, template, the placed objects (target first)
    and their poses, the second object's draw (or None)."""

    level: float
    bg_kind: str
    template: str
    objects: list[SceneObject]
    poses: list[dict]
    second: tuple | None


@dataclass
class _Target:
    """The target: category, size, procedural mesh, verts (object frame), faces, colours, material, pattern;
    `clean` the unworn verts in their own object frame (what a twin without wear has: the synthetic occluders
    are placed around it) and `unworn` the same shape in the frame of `verts` (vertex i of `verts` is vertex i
    of `unworn` moved by the wear)."""

    category: str
    size: float
    mesh: Any
    verts: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    material: Any
    pattern: dict
    clean: np.ndarray
    unworn: np.ndarray


def _target(rng: Callable[[str], np.random.Generator], config: GenerationConfig, shifts: _Shifts) -> _Target:
    """The target, worn by the `wear` shift when it is on (the paint stays where the clean shape had it). The
    worn shape is re-centred at its own centre of gravity (the GT frame's origin); the unworn shape moves with
    it, so both files share one frame and the recorded camera sees each where the scene had it."""
    category, size, m, verts, material, pattern = _object(rng("object"), rng("appearance"), config.categories)
    colors = vertex_colors(verts, pattern)  # on the clean shape: wear moves geometry, not the paint
    faces = m.faces
    clean = unworn = verts
    if shifts.on("wear"):
        verts, params = apply_wear(verts, faces, shifts.intensity["wear"], shifts.rng["wear"])
        cog = centre_of_gravity(verts, faces)
        verts = verts - cog
        unworn = clean - cog
        params["unworn_centre_of_gravity"] = (-cog).tolist()  # where the unworn shape's own origin sits
        shifts.applied["wear"] = params
    return _Target(category, size, m, verts, faces, colors, material, pattern, clean, unworn)


def _view(rc: np.random.Generator) -> tuple[float, float, float, float]:
    """The camera draw: azimuth, elevation, vertical field of view (degrees) and the fill factor."""
    azimuth = float(rc.uniform(0.0, 360.0))
    elevation = float(rc.uniform(*ELEVATION_RANGE))
    fov = float(rc.uniform(35.0, 55.0))
    fill = float(rc.uniform(1.2, 1.8))
    return azimuth, elevation, fov, fill


def _scene_draws(rs: np.random.Generator, config: GenerationConfig, elevation: float) -> tuple[float, str, str, bool]:
    """The first draws of the scene stream: background level, its kind, the template, a second object or not."""
    level = float(rs.uniform(0.0, config.background_complexity))
    bg_kind = "empty" if level < 0.2 else ("simple" if level < 0.5 else "cluttered")
    template = "tabletop" if (elevation >= FLOOR_MIN_ELEVATION and bg_kind != "empty") else "studio"
    two = bool(rs.uniform() < config.second_object_prob)
    return level, bg_kind, template, two


def _layout(rng: Callable[[str], np.random.Generator], config: GenerationConfig, elevation: float, verts: np.ndarray,
            faces: np.ndarray, colors: np.ndarray, material) -> _Layout:
    """Background level and kind, template, an optional second object, and every object placed in the world."""
    rs = rng("scene")
    level, bg_kind, template, two = _scene_draws(rs, config, elevation)
    meshes = [(verts, faces)]
    second = None
    if two:
        second = _object(rng("second_object"), rng("second_object:appearance"), config.categories)
        meshes.append((second[3], second[2].faces))
    poses = place_objects(meshes, template, rs)
    # Object frames are centred at the centre of gravity already, so pose["cog"] is ~0.
    objects = []
    for k, pose in enumerate(poses):
        v, f = meshes[k]
        world = (v - pose["cog"]) @ pose["R"].T + pose["t"]
        if k == 0:
            objects.append(SceneObject(world, f, colors, material, "target"))
        else:
            objects.append(SceneObject(world, f, vertex_colors(second[3], second[5]), second[4], "object"))
    return _Layout(level, bg_kind, template, objects, poses, second)


def _frame(world: np.ndarray, pose: dict, view: tuple[float, float, float, float], size_px: int):
    """The camera of a target placed at `pose` (world verts `world`): it looks at the target's centre of
    gravity from `fill` times the distance at which its bounding sphere fills the view.

    Returns:
        (centre, radius, distance, camera).
    """
    azimuth, elevation, fov, fill = view
    centre = pose["t"] + pose["R"] @ (-pose["cog"])
    radius = float(np.linalg.norm(world - centre, axis=1).max())
    distance = radius / math.sin(math.radians(fov) / 2) * fill
    return centre, radius, distance, make_camera(azimuth, elevation, distance, centre, fov, size_px)


def _clean_scene(rng: Callable[[str], np.random.Generator], config: GenerationConfig, target: _Target,
                 view: tuple[float, float, float, float], layout: _Layout, size_px: int):
    """The clean target's world verts and camera: what the twin without wear has. With wear off they are the
    scene's own; with wear on the scene stream is replayed for the clean shape (the target's pose draws come
    first and do not depend on the shape), so both twins place their synthetic occluders from equal inputs.

    Returns:
        (world verts, camera), or None when the target is not worn (use the scene's own).
    """
    if target.clean is target.unworn:
        return None
    rs = rng("scene")
    _scene_draws(rs, config, view[1])
    pose = place_objects([(target.clean, target.faces)], layout.template, rs)[0]
    world = (target.clean - pose["cog"]) @ pose["R"].T + pose["t"]
    return world, _frame(world, pose, view, size_px)[3]


def _overlap(rng: Callable[[str], np.random.Generator], config: GenerationConfig, target: _Target, world: np.ndarray,
             camera) -> Overlap:
    """The scene's synthetic overlap occluders (`overlap.overlap_occluders`), from the pair's streams."""
    return overlap_occluders(world, target.faces, target.size, camera, rng("overlap"),
                             lambda k: rng(f"overlap:{k}"), config.categories, config.overlap_prob,
                             config.overlap_count, config.overlap_occlusion, config.max_occlusion)


def _backdrop(rb: np.random.Generator, layout: _Layout, size_px: int, centre: np.ndarray, radius: float,
              eye: np.ndarray, shifts: _Shifts) -> np.ndarray:
    """The background image; adds the tabletop floor and the occluders (shift) to `layout.objects`."""
    background = background_image(layout.bg_kind, layout.level, size_px, rb)
    if layout.template == "tabletop":
        colour_a, colour_b = rb.uniform(0.3, 0.9, 3), rb.uniform(0.1, 0.7, 3)
        layout.objects.append(floor_object(centre, 3.0, 12, colour_a, colour_b, checker=layout.bg_kind == "cluttered"))
    if shifts.on("photo_background"):
        background, shifts.applied["photo_background"] = photo_background(
            size_px, shifts.intensity["photo_background"], shifts.rng["photo_background"])
    if shifts.on("occluders"):
        occ, shifts.applied["occluders"] = make_occluders(centre, radius, eye, shifts.intensity["occluders"],
                                                          shifts.rng["occluders"])
        layout.objects.extend(occ)
    return background


def _lighting(rl: np.random.Generator, centre: np.ndarray, radius: float, shifts: _Shifts) -> LightRig:
    """The light rig, made harsh and / or hard-shadowed by those shifts."""
    rig = _light_rig(rl, centre, radius)
    if shifts.on("harsh_light"):
        rig, shifts.applied["harsh_light"] = apply_harsh_light(rig, centre, radius, shifts.intensity["harsh_light"],
                                                               shifts.rng["harsh_light"])
    if shifts.on("hard_shadows"):
        rig, shifts.applied["hard_shadows"] = apply_hard_shadows(rig, shifts.intensity["hard_shadows"])
    return rig


def _render(objects: list[SceneObject], camera, rig: LightRig, background: np.ndarray, size_px: int,
            max_occlusion: float, amodal: np.ndarray | None) -> tuple[Any, list[SceneObject]]:
    """Render; while the target is hidden beyond `max_occlusion`, drop the last occluder (the real side's
    clutter before the synthetic overlap occluders, which come earlier in `objects`) and render again. The
    drops are decided on the masks alone (`scene.target_masks`, the render's own), so a scene over the cap
    costs one more render, not one per dropped occluder. `amodal`: the target's silhouette when known.

    Returns:
        (the `SceneRender`, the dropped occluders).
    """
    res = max(256, size_px)
    out = render_scene(objects, camera, rig, background, shadow_resolution=res, amodal=amodal)
    vis, amo = out.visible, out.amodal
    dropped = []
    while occlusion_fraction(vis, amo) > max_occlusion:
        last = [i for i, o in enumerate(objects) if o.role == "occluder"]
        if not last:
            break
        dropped.append(objects.pop(last[-1]))
        vis, amo = target_masks(objects, camera, amodal=amo)
    if dropped:
        out = render_scene(objects, camera, rig, background, shadow_resolution=res, amodal=amo)
    return out, dropped


def _photo_shifts(rgb: np.ndarray, shifts: _Shifts) -> np.ndarray:
    """The rendered image through the image-space shifts: exposure and colour temperature (linear), clip, blur
    and sensor noise, uint8, JPEG."""
    img = rgb.astype(np.float64)
    for name, fn in (("exposure", apply_exposure), ("color_temperature", apply_color_temperature)):
        if shifts.on(name):
            img, shifts.applied[name] = fn(img, shifts.intensity[name], shifts.rng[name])
    img = np.clip(img, 0.0, 1.0)
    for name, fn in (("blur", apply_blur), ("sensor_noise", apply_sensor_noise)):
        if shifts.on(name):
            img, shifts.applied[name] = fn(img, shifts.intensity[name], shifts.rng[name])
    img_u8 = _to_u8(img)
    if shifts.on("jpeg"):
        img_u8, shifts.applied["jpeg"] = apply_jpeg(img_u8, shifts.intensity["jpeg"])
    return img_u8


def _camera_record(camera, pose: dict, size_px: int, fov: float, azimuth: float, elevation: float,
                   distance: float) -> dict:
    """The camera file: intrinsics and the extrinsics of the GT mesh's frame, x_cam = R_wc (R_obj x + t_obj)
    + T_wc, besides the world camera and the object pose."""
    R_wc, T_wc = camera.R[0].numpy(), camera.T[0].numpy()
    R_obj, t_obj = pose["R"], pose["t"] - pose["R"] @ pose["cog"]
    fx, fy = camera.focal_length[0].tolist()
    cx, cy = camera.principal_point[0].tolist()
    return {
        "convention": "opencv: x right, y down, z forward; pixel (r, c) centred at (c + 0.5, r + 0.5)",
        "frame": "gt_mesh",
        "image_size": [size_px, size_px],
        "K": [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]],
        "R": (R_wc @ R_obj).tolist(),
        "T": (R_wc @ t_obj + T_wc).tolist(),
        "world_R": R_wc.tolist(),
        "world_T": T_wc.tolist(),
        "object_R": R_obj.tolist(),
        "object_t": t_obj.tolist(),
        "fov_deg": fov,
        "azimuth_deg": azimuth,
        "elevation_deg": elevation,
        "distance": distance,
    }


def _split(rng: np.random.Generator, fractions: Sequence[float]) -> str:
    split_u = rng.uniform()
    cum = np.cumsum(fractions)
    return SPLITS[int(np.searchsorted(cum, split_u, side="right"))] if split_u < cum[-1] else SPLITS[-1]


def generate_sample(seed: int, sample_id: str, domain: str, config: GenerationConfig) -> Sample:
    """Make one sample (module docstring) in memory; deterministic in (seed, sample_id, domain, config)."""
    if domain not in ("synthetic", "real"):
        raise ValueError(f"unknown domain {domain!r}; expected synthetic or real")
    pair_id = twin_key(sample_id) if config.paired else None
    # Twins share every stream but the shifts', which stay keyed by the sample's own id.
    rng = lambda role: numpy_generator(seed, pair_id or sample_id, role)  # noqa: E731
    size_px = config.image_size
    shifts = _Shifts(seed, sample_id, config, real=domain == "real")

    target = _target(rng, config, shifts)
    category, size, m, verts, faces = target.category, target.size, target.mesh, target.verts, target.faces
    material, pattern = target.material, target.pattern
    view = _view(rng("camera"))
    azimuth, elevation, fov, fill = view
    layout = _layout(rng, config, elevation, verts, faces, target.colors, material)
    pose = layout.poses[0]
    centre, radius, distance, camera = _frame(layout.objects[0].verts, pose, view, size_px)
    eye = camera.get_camera_center()[0].numpy()
    clean = _clean_scene(rng, config, target, view, layout, size_px)
    placed = _overlap(rng, config, target, *(clean or (layout.objects[0].verts, camera)))
    overlap, overlap_record = placed.objects, placed.record
    layout.objects.extend(overlap)  # before the floor and the real side's clutter: dropped last
    background = _backdrop(rng("background"), layout, size_px, centre, radius, eye, shifts)
    clutter = [o for o in layout.objects[len(layout.poses) + len(overlap):] if o.role == "occluder"]
    rig = _lighting(rng("lights"), centre, radius, shifts)
    # The silhouette the overlap occluders were placed around is this scene's amodal mask unless it was the
    # clean twin's (a worn target).
    known = placed.amodal if clean is None else None
    out, dropped = _render(layout.objects, camera, rig, background, size_px, config.max_occlusion, known)
    img_u8 = _photo_shifts(out.rgb, shifts)
    gone = {id(o) for o in dropped}
    if overlap_record is not None:
        for obj, rec in zip(overlap, overlap_record["occluders"]):
            rec["kept"] = id(obj) not in gone
        overlap_record["dropped_for_max_occlusion"] = sum(id(o) in gone for o in overlap)
    if clutter:
        for obj, rec in zip(clutter, shifts.applied["occluders"]["occluders"]):
            rec["kept"] = id(obj) not in gone
        n_gone = sum(id(o) in gone for o in clutter)
        if n_gone:
            shifts.applied["occluders"]["dropped_for_max_occlusion"] = n_gone

    applied = shifts.applied
    for name, params in applied.items():
        params["intensity"] = shifts.intensity[name]
    record = {
        "sample_id": sample_id,
        "domain": domain,
        "occlusion": round(occlusion_fraction(out.visible, out.amodal), 6),
        "category": category,
        "split": _split(rng("split"), config.split_fractions),
        "material": material.kind,
        "pattern": pattern["pattern"],
        "size_m": round(size, 6),
        "template": layout.template,
        "num_objects": len(layout.poses),
        "background": "photo" if "photo_background" in applied else layout.bg_kind,
        "background_complexity": round(layout.level, 6),
        "azimuth_deg": round(azimuth, 4),
        "elevation_deg": round(elevation, 4),
        "visible_px": int(np.count_nonzero(out.visible)),
        "amodal_px": int(np.count_nonzero(out.amodal)),
        "num_occluders": sum(o.role == "occluder" for o in layout.objects),
        **{f"shift_{name}": shifts.intensity[name] for name in SHIFTS},
    }
    if pair_id is not None:
        record["pair_id"] = pair_id
    second = layout.second
    details = {"category_params": m.params, "material": material.to_dict(), "pattern": pattern,
               "lights": rig.to_dict(), "shifts": applied, "placement": [
                   {"anchor": p["anchor"].tolist(), "noise": p["noise"].tolist(), "t": p["t"].tolist()}
                   for p in layout.poses],
               "second_category": second[0] if second else None, "overlap": overlap_record}
    record["details"] = details
    cam = _camera_record(camera, pose, size_px, fov, azimuth, elevation, distance)
    unworn = target.unworn if domain == "real" else None
    return Sample(sample_id, img_u8, out.visible, out.amodal, verts, faces, target.colors, cam, record, unworn)


# ---- files ------------------------------------------------------------------------------------------
def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _atomic_mesh(path: pathlib.Path, verts: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> None:
    with atomic_path(path) as tmp:  # keeps the suffix: save_mesh picks the format by it
        save_mesh(tmp, (verts.astype(np.float32), faces), colors=colors)


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=1) + "\n").encode()


def write_sample(sample: Sample, out: str | os.PathLike) -> dict:
    """Write a sample's files under `out` (each atomically, the record last); returns the manifest row with
    paths relative to `out`.

    A real sample also gets meshes_unworn/<id>.ply (`Sample.unworn_verts`: its GT before the wear shift, in
    the GT mesh's frame, so the recorded camera sees it where the scene had the object; the same bytes as
    meshes/<id>.ply when wear was off); `gt_mesh_unworn` names it, and names the GT mesh itself for a
    synthetic sample (never worn).
    """
    out = pathlib.Path(out)
    sid = sample.sample_id
    paths = {"image": f"images/{sid}.png", "mask": f"masks/{sid}.png", "amodal_mask": f"amodal/{sid}.png",
             "gt_mesh": f"meshes/{sid}.ply", "camera_file": f"cameras/{sid}.json"}
    paths["gt_mesh_unworn"] = paths["gt_mesh"] if sample.unworn_verts is None else f"meshes_unworn/{sid}.ply"
    for rel in paths.values():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / paths["image"], _png(sample.image))
    write_bytes_atomic(out / paths["mask"], _png(sample.mask.astype(np.uint8) * 255))
    write_bytes_atomic(out / paths["amodal_mask"], _png(sample.amodal.astype(np.uint8) * 255))
    _atomic_mesh(out / paths["gt_mesh"], sample.verts, sample.faces, sample.colors)
    if sample.unworn_verts is not None:
        _atomic_mesh(out / paths["gt_mesh_unworn"], sample.unworn_verts, sample.faces, sample.colors)
    write_bytes_atomic(out / paths["camera_file"], _json_bytes(sample.camera))
    record = {**sample.record, **paths, "camera": json.dumps(sample.camera, sort_keys=True)}
    (out / "records").mkdir(parents=True, exist_ok=True)
    data = _json_bytes(record)
    write_bytes_atomic(out / "records" / f"{sid}.json", data)
    return json.loads(data)  # as a resume reads it back


def _complete(out: pathlib.Path, sid: str) -> dict | None:
    """The record of a finished sample (its record and every file it names exist), else None."""
    path = out / "records" / f"{sid}.json"
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    keys = ("image", "mask", "amodal_mask", "gt_mesh", "gt_mesh_unworn", "camera_file")
    if not all(k in record and (out / record[k]).is_file() for k in keys):
        return None
    return record


def _job(args) -> dict:
    seed, sid, domain, config_dict, out = args
    sample = generate_sample(seed, sid, domain, GenerationConfig.from_dict(config_dict))
    return write_sample(sample, out)


def _one_thread():
    """The runtime policy of in-process generation: torch on one thread (as each pool worker; the bytes do
    not depend on it, the speed does: per-sample work is small and memory-bound)."""
    from ..runtime import runtime_policy

    return runtime_policy("cpu", torch_threads=1)


def _init_worker() -> None:
    # A worker process of our own pool: one torch thread each (the pool is the parallelism).
    import torch

    torch.set_num_threads(1)


def manifest_frame(records: Sequence[dict]):
    """The manifest (pandas frame) of `records`: the manifest columns (docs/data.md) first, then the strata the
    generator records (shift intensities, background, material, ...); the `details` stay in records/."""
    import pandas as pd

    first = ["sample_id", "image", "mask", "gt_mesh", "domain", "occlusion", "category", "camera", "split"]
    rows = [{k: v for k, v in r.items() if k != "details"} for r in records]
    frame = pd.DataFrame(rows)
    rest = sorted(c for c in frame.columns if c not in first)
    return frame[first + rest]


def make_benchmark(
    out: str | os.PathLike,
    num_synthetic: int,
    num_real: int,
    seed: int,
    config: GenerationConfig | None = None,
    *,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
):
    """Generate (or finish) the benchmark under `out`; returns the manifest frame (also written as
    manifest.parquet and manifest.csv, and validated with `data.manifest.validate_manifest`).

    Samples whose record and files exist are kept as they are (a resume); the rest are made by `workers`
    processes (1: in this process; otherwise a pool forked on Linux, spawned elsewhere, one torch thread
    per worker). Same seed and config, same bytes, whatever `workers`. `progress(done,
    total)` is called after each sample. Raises ValueError when `out` holds a benchmark made with another
    seed or configuration. Warns (`NoValidationSplitWarning`) when the config gives the validation split no
    share and does not say `allow_no_validation`.
    """
    config = config or GenerationConfig()
    if num_synthetic < 0 or num_real < 0 or num_synthetic + num_real == 0:
        raise ValueError(f"need a positive number of samples, got synthetic={num_synthetic}, real={num_real}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not config.has_validation:
        # A warning, not a refusal: recipes and tests made before the rule keep running, and say so loudly.
        warnings.warn(f"split_fractions {list(config.split_fractions)} give the validation split no share: "
                      f"{out} will have no 'val' samples to choose checkpoints or settings on without touching the "
                      "test split; give it a share (e.g. [0.6, 0.1, 0.3]) or set allow_no_validation = true",
                      NoValidationSplitWarning, stacklevel=2)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format_version": FORMAT_VERSION, "seed": int(seed), "config": config.to_dict()}
    meta_path = out / "generation.json"
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            old = None
        if old != meta:
            raise ValueError(f"{out} holds a benchmark made with another seed or configuration "
                             f"({meta_path}); choose another --out or remove it")
    else:
        write_bytes_atomic(meta_path, _json_bytes(meta))

    jobs = [(sid, d) for d, n in (("synthetic", num_synthetic), ("real", num_real)) for sid in sample_ids(d, n)]
    records: dict[str, dict] = {}
    todo = []
    for sid, d in jobs:
        rec = _complete(out, sid)
        if rec is None:
            todo.append((int(seed), sid, d, config.to_dict(), str(out)))
        else:
            records[sid] = rec
    done, total = len(records), len(jobs)
    if progress:
        progress(done, total)
    if todo and workers == 1:
        with _one_thread():
            for job in todo:
                rec = _job(job)
                records[rec["sample_id"]] = rec
                done += 1
                if progress:
                    progress(done, total)
    elif todo:
        import multiprocessing
        import sys

        # Fork on Linux (as torch's DataLoader workers: no re-import, one torch thread each); spawn elsewhere.
        ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ctx.Pool(min(workers, len(todo)), initializer=_init_worker) as pool:
            for rec in pool.imap_unordered(_job, todo, chunksize=1):
                records[rec["sample_id"]] = rec
                done += 1
                if progress:
                    progress(done, total)
    frame = manifest_frame([records[sid] for sid, _ in jobs])
    _write_manifest(frame, out)
    from .manifest import validate_manifest

    validate_manifest(frame, out)
    return frame


# The keys of a [data.generate] table (recipes, the engine config) beside the `GenerationConfig` fields.
BENCHMARK_KEYS = ("synthetic", "real", "seed", "workers", "out")


def ensure_benchmark(generate: Mapping[str, Any], out: str | os.PathLike, log: Callable[[str], None] | None = None,
                     *, where: str = "[data.generate]") -> pathlib.Path:
    """Generate (or finish: `make_benchmark` keeps complete samples) the built-in benchmark a [data.generate]
    table describes; returns the path of its manifest.csv.

    generate: `synthetic` and `real` (sample counts, required), `seed` (default 0), `workers` (default 1),
        `out` (the folder; default the argument `out`) and any `GenerationConfig` field.
    log: called with a line before and after the generation. Raises ValueError starting with `where` for an
    unknown key or a missing count, and as `make_benchmark` does.
    """
    log = log or (lambda line: None)
    gen = dict(generate)
    check_keys(gen, BENCHMARK_KEYS + field_names(GenerationConfig), where=where)
    missing = [k for k in ("synthetic", "real") if k not in gen]
    if missing:
        raise ValueError(f"{where}: needs {' and '.join(missing)} (how many samples of each domain to make)")
    folder = pathlib.Path(gen.pop("out", out))
    n_syn, n_real = int(gen.pop("synthetic")), int(gen.pop("real"))
    seed, workers = int(gen.pop("seed", 0)), int(gen.pop("workers", 1))
    config = GenerationConfig.from_dict(gen, where=where)
    t0 = time.perf_counter()
    log(f"built-in benchmark: {n_syn} synthetic + {n_real} real samples in {folder}")
    make_benchmark(folder, n_syn, n_real, seed, config, workers=workers)
    log(f"  ready in {time.perf_counter() - t0:.0f} s")
    return folder / "manifest.csv"


def _write_manifest(frame, out: pathlib.Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n")
    write_bytes_atomic(out / "manifest.csv", buf.getvalue().encode())
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_bytes_atomic(out / "manifest.parquet", sink.getvalue().to_pybytes())
