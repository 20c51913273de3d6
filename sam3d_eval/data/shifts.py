"""The "real" side of the built-in benchmark: the seed's synthetic-to-real differences as named, seeded,
switchable transforms with a strength.

Every shift has a configured strength s in [0, 1] (0 switches it off). For each real image it is applied with
probability `prob` and then at intensity `i = s * U(0.25, 1)` drawn from the sample's own stream
`(seed, sample_id, "shift:<name>")`; the image records `i` (0 when not applied) and the concrete parameters,
so a gap can be attributed to its causes. Parameters at intensity i (size = the target's largest side):

| name | stage | what it does at intensity i |
|---|---|---|
| wear | geometry | 2 + round(6 i) inward dents (depth up to 6% of size), a bend and smooth roughness of the GT mesh itself; every vertex moves by at most 0.08 * i * size |
| occluders | scene | 1 + floor(2.99 i) bars, blobs and plates between the camera and the target, nearer its line of sight as i grows |
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
from .lighting import LightRig
from .procedural import sphere_grid_faces
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
def make_occluders(target_centre: np.ndarray, target_radius: float, eye: np.ndarray, intensity: float,
                   rng: np.random.Generator) -> tuple[list[SceneObject], dict]:
    """Occluders between the camera at `eye` and the target (bounding sphere `target_centre`, `target_radius`):
    bars, blobs and plates, more and nearer the line of sight as `intensity` grows."""
    count = 1 + int(math.floor(2.99 * intensity))
    to_cam = eye - target_centre
    dist = float(np.linalg.norm(to_cam))
    fwd = to_cam / dist
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right = right / max(np.linalg.norm(right), 1e-9) if np.linalg.norm(right) > 1e-6 else np.array([1.0, 0, 0])
    up = np.cross(right, fwd)
    objs, kinds = [], []
    for _ in range(count):
        kind = str(rng.choice(["bar", "blob", "plate"]))
        tpos = rng.uniform(0.3, 0.6)
        lateral = target_radius * rng.uniform(0.1, 1.0) * (1.3 - intensity)
        ang = rng.uniform(0, 2 * np.pi)
        centre = target_centre + fwd * (tpos * (dist - target_radius) + target_radius) \
            + lateral * (math.cos(ang) * right + math.sin(ang) * up)
        scale = target_radius * rng.uniform(0.25, 0.6) * (0.6 + 0.6 * intensity) * (1 - 0.6 * tpos)
        if kind == "blob":
            n_lat, n_lon = 12, 16
            th = np.linspace(0, np.pi, n_lat + 1)[1:-1]
            ph = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
            t, p = np.meshgrid(th, ph, indexing="ij")
            d = np.stack([np.sin(t) * np.cos(p), -np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3)
            d = np.concatenate([[[0, -1, 0]], d, [[0, 1, 0]]])
            r = 1 + 0.3 * np.sin(d @ rng.normal(size=3) * 3)
            v = centre + scale * d * r[:, None] * rng.uniform(0.7, 1.3, 3)
            f = sphere_grid_faces(n_lat, n_lon)
        else:
            if kind == "bar":
                ext = np.array([0.15, 2.5, 0.15]) * scale
            else:
                ext = np.array([1.6, 1.1, 0.08]) * scale
            tilt = rng.uniform(-0.6, 0.6)
            axes = np.stack([math.cos(tilt) * right + math.sin(tilt) * up, -math.sin(tilt) * right + math.cos(tilt) * up, fwd])
            corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]) * ext
            v = centre + corners @ axes
            f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                          [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], dtype=np.int64)
        colour = rng.uniform(0.1, 0.9, 3)
        objs.append(SceneObject(v, f, np.broadcast_to(colour, v.shape).astype(np.float32).copy(),
                                Material("diffuse", 1.0, 0.05, 8.0, False, 1.0), "occluder"))
        kinds.append(kind)
    return objs, {"count": count, "kinds": kinds}


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
