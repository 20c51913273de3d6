"""The "real" side of the built-in benchmark: the seed's synthetic-to-real differences as named, seeded,
switchable transforms with a strength.

Every shift has a configured strength s in [0, 1] (0 switches it off). For each real image it is applied with
probability `prob` and then at intensity `i = s * U(0.25, 1)` drawn from the sample's own stream
`(seed, sample_id, "shift:<name>")`; the image records `i` (0 when not applied) and the concrete parameters,
so a gap can be attributed to its causes. Parameters at intensity i (size = the target's largest side):

| name | stage | what it does at intensity i |
|---|---|---|
| wear | geometry | 2 + round(6 i) inward dents (depth up to 6% of size), a bend and smooth roughness of the GT mesh itself; every vertex moves by at most 0.08 * i * size |
| occluders | scene | 2 + floor(3.99 i) pieces of clutter (branches, wires, fences, leaves, rocks: thin or irregular) painted with photographs in rough, glossy or metallic materials, between the camera and the target, nearer its line of sight as i grows; added to the scene's synthetic overlap occluders, which stay |
| photo_background | scene | a random crop of a scikit-image photograph as the background, contrast 0.4 + 0.6 i |
| harsh_light | lighting | environment light scaled by 1 - 0.8 i, 1-2 extra strong low point lights of intensity 0.6 + 1.4 i at mixed colour temperatures (2700 K / 9000 K) |
| hard_shadows | lighting | shadow maps for every light, shadow darkness min(1, 0.3 + 0.7 i) |
| color_temperature | image | white balance of a light at 6500 K * 2^(+-i) (3250-13000 K) |
| exposure | image | gain 2^(+-(0.3 + 1.2 i)) EV, clipped |
| blur | image | Gaussian (sigma = 2 i px at 128 px, scaled with size) or motion blur of the same length |
| sensor_noise | image | shot noise (Poisson, 1 / (0.01 i) electrons at white) plus read noise (sigma 0.02 i) |
| jpeg | image | JPEG round trip at quality round(90 - 80 i) |
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .appearance import Material
from .clutter import CLUTTER_KINDS, make_clutter, photo_colors
from .lighting import LightRig
from .scene import SceneObject

__all__ = [
    "SHIFTS",
    "Shift",
    "apply_blur",
    "apply_color_temperature",
    "apply_exposure",
    "apply_harsh_light",
    "apply_hard_shadows",
    "apply_jpeg",
    "apply_sensor_noise",
    "apply_wear",
    "draw_intensity",
    "kelvin_to_rgb",
    "make_occluders",
    "parse_shift_settings",
    "photo_background",
]


@dataclass(frozen=True)
class Shift:
    """A named real-side difference: the stage it acts at and what it changes (for reports and tests)."""

    name: str
    stage: str
    changes: str


SHIFTS: dict[str, Shift] = {s.name: s for s in (
    Shift("wear", "geometry", "GT mesh: dents, bend, roughness"),
    Shift("occluders", "scene", "occlusion of the target"),
    Shift("photo_background", "scene", "background: real photograph crops"),
    Shift("harsh_light", "lighting", "contrast, mixed coloured light"),
    Shift("hard_shadows", "lighting", "cast shadows"),
    Shift("color_temperature", "image", "white balance"),
    Shift("exposure", "image", "brightness"),
    Shift("blur", "image", "sharpness"),
    Shift("sensor_noise", "image", "pixel noise"),
    Shift("jpeg", "image", "compression artefacts"),
)}


def parse_shift_settings(items: list[str] | dict | None, base: dict[str, float] | None = None) -> dict[str, float]:
    """Strengths for every shift: `base` (default 1.0 each) overridden by `NAME=STRENGTH` strings or a
    mapping; `all=S` sets every shift first. Raises ValueError naming an unknown shift or a strength outside
    [0, 1]."""
    out = {name: 1.0 for name in SHIFTS} if base is None else parse_shift_settings(base)
    if items is None:
        return out
    pairs: list[tuple[str, object]] = []
    if isinstance(items, dict):
        pairs = list(items.items())
    elif not isinstance(items, (list, tuple)):
        raise ValueError(f"shift settings must be a mapping or NAME=STRENGTH strings, got {type(items).__name__}")
    else:
        for item in items:
            if "=" not in item:
                raise ValueError(f"shift setting {item!r} must look like NAME=STRENGTH (e.g. jpeg=0.5, wear=0)")
            k, v = item.split("=", 1)
            pairs.append((k.strip(), v.strip()))
    pairs.sort(key=lambda kv: kv[0] != "all")
    for name, value in pairs:
        try:
            s = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"shift {name!r}: strength {value!r} is not a number") from None
        if not 0.0 <= s <= 1.0 or math.isnan(s):
            raise ValueError(f"shift {name!r}: strength {s} must lie in [0, 1] (0 switches it off)")
        if name == "all":
            out = {k: s for k in out}
        elif name not in SHIFTS:
            raise ValueError(f"unknown shift {name!r}; choose from {', '.join(SHIFTS)} (or all)")
        else:
            out[name] = s
    return out


def draw_intensity(strength: float, prob: float, rng: np.random.Generator) -> float:
    """Intensity of one shift on one image: 0 with probability 1 - prob (or when strength is 0), else
    `strength * U(0.25, 1)`. Always consumes two draws, so switching a shift off changes nothing else."""
    apply, u = rng.uniform(), rng.uniform(0.25, 1.0)
    return float(strength * u) if (strength > 0 and apply < prob) else 0.0


# ---- geometry ---------------------------------------------------------------------------------------
def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    fn = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    n = np.zeros_like(verts)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    return n / np.linalg.norm(n, axis=1, keepdims=True).clip(1e-12)


def apply_wear(verts: np.ndarray, faces: np.ndarray, intensity: float, rng: np.random.Generator
               ) -> tuple[np.ndarray, dict]:
    """Worn copy of `(V, 3)` verts (faces unchanged): inward Gaussian dents, a bend along the longest axis and
    smooth roughness, the displacement of every vertex clipped to `0.08 * intensity * size`."""
    v = np.asarray(verts, dtype=np.float64)
    size = float(np.ptp(v, axis=0).max())
    n = _vertex_normals(v, faces)
    disp = np.zeros_like(v)
    n_dents = 2 + int(round(6 * intensity))
    for _ in range(n_dents):
        c = v[rng.integers(len(v))]
        rad = size * rng.uniform(0.08, 0.2)
        depth = size * intensity * rng.uniform(0.02, 0.06)
        w = np.exp(-((v - c) ** 2).sum(1) / (2 * rad**2))
        disp -= depth * w[:, None] * n
    axis = int(np.argmax(np.ptp(v, axis=0)))
    side = (axis + 1 + int(rng.integers(2))) % 3
    s = (v[:, axis] - v[:, axis].min()) / max(np.ptp(v[:, axis]), 1e-9)
    bend = 0.04 * size * intensity * rng.uniform(-1, 1)
    disp[:, side] += bend * (s - 0.5) ** 2 * 4
    k = rng.normal(size=(4, 3)) * (2 * np.pi / (0.3 * size))
    ph = rng.uniform(0, 2 * np.pi, 4)
    rough = 0.006 * size * intensity * np.sin(v @ k.T + ph).mean(1)
    disp += rough[:, None] * n
    bound = 0.08 * intensity * size
    mag = np.linalg.norm(disp, axis=1, keepdims=True)
    disp *= np.minimum(1.0, bound / np.maximum(mag, 1e-12))
    return v + disp, {"dents": n_dents, "bend": float(bend), "max_displacement": float(np.linalg.norm(disp, axis=1).max()),
                      "bound": float(bound)}


# ---- scene ------------------------------------------------------------------------------------------
CLUTTER_MATERIALS = ("rough", "glossy", "metallic")
# Thin shapes (branch, wire, fence) are the common real occluders the synthetic side never shows; lumps
# (leaf, rock) are rarer. Order of `clutter.CLUTTER_KINDS`.
CLUTTER_WEIGHTS = (0.25, 0.2, 0.2, 0.2, 0.15)


def _clutter_material(rng: np.random.Generator) -> Material:
    """A real-looking opaque surface: rough (matte, faint sheen), glossy (a sharp highlight) or metallic
    (a tinted highlight), unlike the synthetic side's clean materials."""
    kind = str(rng.choice(CLUTTER_MATERIALS))
    if kind == "rough":
        return Material("rough", float(rng.uniform(0.8, 1.0)), float(rng.uniform(0.0, 0.08)), float(rng.uniform(2, 8)),
                        False, 1.0)
    if kind == "glossy":
        return Material("glossy", float(rng.uniform(0.7, 0.95)), float(rng.uniform(0.3, 0.7)),
                        float(rng.uniform(40, 120)), False, 1.0)
    return Material("metallic", float(rng.uniform(0.4, 0.7)), float(rng.uniform(0.5, 1.0)), float(rng.uniform(20, 80)),
                    True, 1.0)


def make_occluders(target_centre: np.ndarray, target_radius: float, eye: np.ndarray, intensity: float,
                   rng: np.random.Generator) -> tuple[list[SceneObject], dict]:
    """Real-world clutter between the camera at `eye` and the target (bounding sphere `target_centre`,
    `target_radius`): `2 + floor(3.99 * intensity)` thin or irregular shapes (`clutter.CLUTTER_KINDS`:
    branches, wires, fences, leaves, rocks) painted with a photograph (`clutter.photo_colors`) in
    real-looking materials, each crossing the view at its own depth and angle, nearer the line of sight as
    `intensity` grows. They never reach into the target's bounding sphere.

    Returns:
        (the occluders, role "occluder"; {"count", "kinds", "occluders": one dict of parameters each}).
    """
    count = 1 + int(math.floor(3.99 * intensity))
    to_cam = eye - target_centre
    dist = float(np.linalg.norm(to_cam))
    fwd = to_cam / dist
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right = right / max(np.linalg.norm(right), 1e-9) if np.linalg.norm(right) > 1e-6 else np.array([1.0, 0, 0])
    up = np.cross(right, fwd)
    objs, kinds, params = [], [], []
    for k in range(count):
        kind = str(rng.choice(list(CLUTTER_KINDS), p=CLUTTER_WEIGHTS))
        tpos = rng.uniform(0.3, 0.6)
        # Clutter is spread over the view (some misses the target), nearer the line of sight as i grows; the
        # first piece always crosses near the target's centre, so the shift never leaves it untouched.
        lateral = target_radius * rng.uniform(0.1, 0.5 if k == 0 else 1.5) * (1.2 - 0.5 * intensity)
        ang = rng.uniform(0, 2 * np.pi)
        depth = tpos * (dist - target_radius) + target_radius
        centre = target_centre + fwd * depth + lateral * (math.cos(ang) * right + math.sin(ang) * up)
        # Nearer the camera a shape looks larger: shrink it so it crosses the target rather than fills the view.
        scale = target_radius * rng.uniform(0.4, 0.8) * (1 - 0.5 * tpos)
        local, faces, shape = make_clutter(kind, rng, scale)
        photo = str(rng.choice(PHOTOS))
        colors, texture = photo_colors(local, _photo(photo), rng)
        material = _clutter_material(rng)
        roll, tilt = rng.uniform(-np.pi, np.pi), rng.uniform(-0.3, 0.3)
        # Local x-y spans the image plane (rolled), a small tilt out of it; z points to the camera.
        cr, sr, ct, st = math.cos(roll), math.sin(roll), math.cos(tilt), math.sin(tilt)
        ax = cr * right + sr * up
        ay = -sr * right + cr * up
        ay, az = ct * ay + st * fwd, -st * ay + ct * fwd
        # Keep the shape clear of the target: its extent along the line of sight from its centre.
        world = local @ np.stack([ax, ay, az])
        reach = float(-(world @ fwd).min())
        clearance = depth - target_radius - reach
        if clearance < 0.02 * target_radius:
            centre = centre + fwd * (0.02 * target_radius - clearance)
        v = world + centre
        objs.append(SceneObject(v, faces, colors, material, "occluder"))
        kinds.append(kind)
        params.append({"kind": kind, "shape": shape, "scale": float(scale), "centre": centre.tolist(),
                       "roll": float(roll), "tilt": float(tilt), "lateral": float(lateral),
                       "texture": {"photo": photo, **texture}, "material": material.to_dict()})
    return objs, {"count": count, "kinds": kinds, "occluders": params}


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "brick", "grass", "gravel", "coins", "camera", "moon")


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img[:, :, :3]


def photo_background(size: int, intensity: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """`(size, size, 3)` float32 crop of a scikit-image photograph (bundled, no download), resized with
    Pillow, its contrast around the mean scaled by `0.4 + 0.6 * intensity`."""
    from PIL import Image

    name = str(rng.choice(PHOTOS))
    img = _photo(name)
    h, w = img.shape[:2]
    side = int(min(h, w) * rng.uniform(0.3, 1.0))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(img[y0 : y0 + side, x0 : x0 + side]).resize((size, size), Image.BILINEAR)
    out = np.asarray(crop, dtype=np.float64) / 255.0
    contrast = 0.4 + 0.6 * intensity
    out = out.mean() + contrast * (out - out.mean())
    return np.clip(out, 0, 1).astype(np.float32), {"photo": name, "crop": [y0, x0, side], "contrast": contrast}


# ---- lighting ---------------------------------------------------------------------------------------
def kelvin_to_rgb(kelvin: float) -> np.ndarray:
    """`(3,)` RGB of a black body at `kelvin` (Tanner Helland's fit to Mitchell Charity's table), in [0, 1]."""
    t = kelvin / 100.0
    r = 1.0 if t <= 66 else 1.292936186 * (t - 60) ** -0.1332047592
    g = (0.39008157876 * math.log(t) - 0.63184144378) if t <= 66 else 1.129890861 * (t - 60) ** -0.0755148492
    b = 1.0 if t >= 66 else (0.0 if t <= 19 else 0.54320678911 * math.log(t - 10) - 1.19625408914)
    return np.clip(np.array([r, g, b]), 0.0, 1.0)


def apply_harsh_light(rig: LightRig, centre: np.ndarray, radius: float, intensity: float,
                      rng: np.random.Generator) -> tuple[LightRig, dict]:
    """Mixed harsh light: a dimmer environment and 1-2 strong low point lights of mixed colour temperature."""
    from ..render.shading import PointLight

    dim = 1 - 0.8 * intensity
    lights = list(rig.lights)
    temps = []
    for _ in range(1 + int(rng.integers(2))):
        kelvin = float(rng.choice([2700.0, 9000.0]))
        temps.append(kelvin)
        az, el = rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.6)
        d = rng.uniform(2.0, 4.0) * radius
        loc = centre + d * np.array([math.cos(el) * math.cos(az), math.sin(el), math.cos(el) * math.sin(az)])
        lights.append(PointLight(location=tuple(loc.tolist()),
                                 color=tuple((kelvin_to_rgb(kelvin) * (0.6 + 1.4 * intensity)).tolist())))
    out = LightRig(tuple(float(x) * dim for x in rig.sky), tuple(float(x) * dim for x in rig.ground), lights,
                   list(rig.shadow_strength) + [0.0] * (len(lights) - len(rig.lights)))
    return out, {"environment_scale": dim, "extra_lights_kelvin": temps}


def apply_hard_shadows(rig: LightRig, intensity: float) -> tuple[LightRig, dict]:
    """Every light casts hard shadows of darkness `min(1, 0.3 + 0.7 * intensity)`."""
    dark = min(1.0, 0.3 + 0.7 * intensity)
    return LightRig(rig.sky, rig.ground, list(rig.lights), [dark] * len(rig.lights)), {"darkness": dark}


# ---- image (float RGB (H, W, 3) in linear [0, 1+], before quantisation unless said) ----------------
def apply_exposure(img: np.ndarray, intensity: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Exposure shift of +-(0.3 + 1.2 * intensity) EV (sign drawn)."""
    ev = (0.3 + 1.2 * intensity) * (1 if rng.uniform() < 0.5 else -1)
    return img * 2.0**ev, {"ev": float(ev)}


def apply_color_temperature(img: np.ndarray, intensity: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """White balance of a scene lit at `6500 K * 2^(+-intensity)` rendered as if at 6500 K (gains relative to
    6500 K, green kept)."""
    kelvin = 6500.0 * 2.0 ** (intensity * (1 if rng.uniform() < 0.5 else -1))
    gain = kelvin_to_rgb(kelvin) / kelvin_to_rgb(6500.0)
    gain = gain / gain[1]
    return img * gain, {"kelvin": float(kelvin), "gain": gain.tolist()}


def apply_blur(img: np.ndarray, intensity: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Gaussian blur of sigma `2 * intensity * size / 128` px, or a motion blur line of 3 sigma length."""
    from scipy import ndimage

    sigma = 2.0 * intensity * img.shape[0] / 128.0
    if rng.uniform() < 0.5:
        out = ndimage.gaussian_filter(img, sigma=(sigma, sigma, 0), mode="nearest")
        return out, {"kind": "gaussian", "sigma_px": float(sigma)}
    length = max(2, int(round(3 * sigma)))
    ang = rng.uniform(0, np.pi)
    k = np.zeros((2 * length + 1, 2 * length + 1))
    for s in np.linspace(-length, length, 4 * length + 1):
        k[int(round(length + s * math.sin(ang))), int(round(length + s * math.cos(ang)))] = 1.0
    k /= k.sum()
    out = np.stack([ndimage.convolve(img[..., c], k, mode="nearest") for c in range(3)], -1)
    return out, {"kind": "motion", "length_px": length, "angle": float(ang)}


def apply_sensor_noise(img: np.ndarray, intensity: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Shot noise (Poisson counts of `1 / (0.01 * intensity)` electrons at white) plus Gaussian read noise of
    sigma `0.02 * intensity`, on the clipped image."""
    full_well = 1.0 / (0.01 * max(intensity, 1e-6))
    x = np.clip(img, 0, 1)
    out = rng.poisson(x * full_well) / full_well + rng.normal(0.0, 0.02 * intensity, x.shape)
    return out, {"full_well": float(full_well), "read_sigma": float(0.02 * intensity)}


def apply_jpeg(img_u8: np.ndarray, intensity: float) -> tuple[np.ndarray, dict]:
    """JPEG round trip (Pillow, 4:2:0) of a `(H, W, 3)` uint8 image at quality `round(90 - 80 * intensity)`."""
    from PIL import Image

    quality = int(round(90 - 80 * intensity))
    buf = io.BytesIO()
    Image.fromarray(img_u8).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB")), {"quality": quality}
