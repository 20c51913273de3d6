"""Scenes of the built-in benchmark: objects placed in templates, backgrounds, cameras, and the renderer that
gives the image, the target's visible and amodal masks and its occlusion fraction.

World frame: metres, y up (as `render.cameras`). A *template* says where objects go: `tabletop` puts them on
a floor at y = 0, `studio` lets them float (used for views from below, elevation < 8 degrees, and for empty
backgrounds). Objects are inserted by their centre of gravity (volume centroid): it goes to the template's
anchor plus uniform +-0.1 m noise in x and z (in y too for `studio`); on the tabletop the object is then
lowered to rest on the floor. A second object (up to 2 per scene) takes an anchor far enough from the
target that the noise cannot make them intersect, so it occludes only by the view. Occluders (role
"occluder": the synthetic overlap occluders of `data.overlap`, the real side's clutter of
`shifts.make_occluders`) float between the camera and the target.

Occlusion of the target is `1 - visible / amodal` pixel area: visible is the target's pixels in the full
render (everything in front of it drawn), amodal its pixels rendered alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..ops.rasterize import rasterize_meshes
from ..render.cameras import PerspectiveCameras, look_at_extrinsics, orbit_eye
from ..render.interpolate import interpolate_face_attributes
from ..structures.meshes import Meshes
from .appearance import Material
from .lighting import LightRig, shade_points, shadow_visibility

__all__ = [
    "ELEVATION_RANGE",
    "SceneObject",
    "SceneRender",
    "background_image",
    "centre_of_gravity",
    "floor_object",
    "make_camera",
    "occlusion_fraction",
    "place_objects",
    "render_scene",
    "silhouette",
    "target_masks",
]

AZIMUTH_RANGE = (0.0, 360.0)
ELEVATION_RANGE = (-30.0, 60.0)
PLACEMENT_NOISE = 0.1  # metres, uniform on each axis
FLOOR_MIN_ELEVATION = 8.0


@dataclass
class SceneObject:
    """A mesh in world coordinates: verts `(V, 3)` float64, faces `(F, 3)` int64, colours `(V, 3)` in [0, 1],
    its `Material` and its role ("target", "object", "occluder", "floor")."""

    verts: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    material: Material
    role: str


@dataclass
class SceneRender:
    """rgb `(H, W, 3)` float32 linear colour (not clipped), object index `(H, W)` int64 of the visible object
    (-1 background), the target's visible and amodal masks `(H, W)` bool."""

    rgb: np.ndarray
    object_index: np.ndarray
    visible: np.ndarray
    amodal: np.ndarray


def centre_of_gravity(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """`(3,)` centroid of the volume a closed, outward mesh encloses (signed tetrahedra from the origin);
    falls back to the vertex mean when the enclosed volume is ~0."""
    a, b, c = (verts[faces[:, k]] for k in range(3))
    vol = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    total = vol.sum()
    if abs(total) < 1e-12:
        return verts.mean(0)
    return ((a + b + c) / 4.0 * vol[:, None]).sum(0) / total


def _yaw(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[math.cos(t), 0.0, math.sin(t)], [0.0, 1.0, 0.0], [-math.sin(t), 0.0, math.cos(t)]])


def place_objects(
    meshes: list[tuple[np.ndarray, np.ndarray]], template: str, rng: np.random.Generator
) -> list[dict]:
    """Poses of up to two objects (object frame = centred at the centre of gravity) in `template`.

    Returns one dict per mesh: `R` `(3, 3)` (yaw about y), `t` `(3,)` (world position of the centre of
    gravity), `anchor` `(3,)` and `noise` `(3,)` (t = anchor + noise, then lowered onto the floor on the
    tabletop), `cog` `(3,)` the centre of gravity in the mesh's input frame.
    """
    if template not in ("tabletop", "studio"):
        raise ValueError(f"unknown template {template!r}; choose 'tabletop' or 'studio'")
    if not 1 <= len(meshes) <= 2:
        raise ValueError(f"a scene holds 1 or 2 objects, got {len(meshes)}")
    poses = []
    radii = []
    for k, (v, f) in enumerate(meshes):
        cog = centre_of_gravity(v, f)
        R = _yaw(float(rng.uniform(0, 360)))
        local = (v - cog) @ R.T
        radii.append(float(np.linalg.norm(local[:, [0, 2]], axis=1).max()))
        if k == 0:
            anchor = np.zeros(3)
        else:
            ang = rng.uniform(0, 2 * np.pi)
            # Bounding cylinders apart by more than the largest noise offset (0.1 * sqrt(2) per object).
            sep = radii[0] + radii[1] + 2 * math.sqrt(2) * PLACEMENT_NOISE + rng.uniform(0.0, 0.15)
            anchor = np.array([sep * math.cos(ang), 0.0, sep * math.sin(ang)])
        noise = rng.uniform(-PLACEMENT_NOISE, PLACEMENT_NOISE, 3)
        if template == "tabletop":
            noise[1] = 0.0
        t = anchor + noise
        if template == "tabletop":
            t[1] = -local[:, 1].min()  # rest on the floor
        poses.append({"R": R, "t": t, "anchor": anchor, "noise": noise, "cog": cog})
    return poses


def floor_object(centre: np.ndarray, half: float, cells: int, colour_a, colour_b, checker: bool) -> SceneObject:
    """A square floor at y = 0 of side `2 * half` around `centre` (x, z) in `cells` x `cells` quads, each with
    its own vertices so a checker stays sharp."""
    xs = np.linspace(-half, half, cells + 1)
    i, j = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
    i, j = i.reshape(-1), j.reshape(-1)
    corners = [(0, 0), (1, 0), (1, 1), (0, 1)]
    v = np.stack([np.stack([xs[i + a] + centre[0], np.zeros_like(i, dtype=float), xs[j + b] + centre[2]], 1)
                  for a, b in corners], 1).reshape(-1, 3)
    base = 4 * np.arange(len(i))
    f = np.concatenate([np.stack([base, base + 2, base + 1], 1), np.stack([base, base + 3, base + 2], 1)])
    w = ((i + j) % 2).astype(np.float64) if checker else np.zeros(len(i))
    c = np.asarray(colour_a)[None] * (1 - w[:, None]) + np.asarray(colour_b)[None] * w[:, None]
    return SceneObject(v, f.astype(np.int64), np.repeat(c, 4, axis=0).astype(np.float32),
                       Material("diffuse", 1.0, 0.0, 1.0, False, 1.0), "floor")


def make_camera(
    azimuth_deg: float, elevation_deg: float, distance: float, at: np.ndarray, fov_deg: float, image_size: int
) -> PerspectiveCameras:
    """One orbit camera (`render.cameras` conventions) around `at` looking at it, float64."""
    at_t = torch.as_tensor(np.asarray(at, dtype=np.float64))
    eye = orbit_eye(azimuth_deg, elevation_deg, distance, dtype=torch.float64) + at_t
    R, T = look_at_extrinsics(eye, at_t)
    return PerspectiveCameras.from_fov(fov_deg, (image_size, image_size), R, T)


def background_image(kind: str, complexity: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """`(size, size, 3)` float32 background: "empty" a uniform light colour, "simple" a vertical gradient,
    "cluttered" a gradient under `round(40 * complexity)` random rectangles, ellipses and bars."""
    if kind == "empty":
        return np.broadcast_to(rng.uniform(0.75, 1.0, 3), (size, size, 3)).astype(np.float32).copy()
    top, bottom = rng.uniform(0.4, 1.0, 3), rng.uniform(0.2, 0.8, 3)
    t = np.linspace(0, 1, size)[:, None, None]
    img = np.broadcast_to(top * (1 - t) + bottom * t, (size, size, 3)).copy()
    if kind == "simple":
        return img.astype(np.float32)
    if kind != "cluttered":
        raise ValueError(f"unknown background kind {kind!r}")
    yy, xx = np.mgrid[0:size, 0:size] / size
    for _ in range(int(round(40 * complexity))):
        colour = rng.uniform(0.0, 1.0, 3)
        cx, cy = rng.uniform(0, 1, 2)
        sx, sy = rng.uniform(0.02, 0.25, 2)
        shape = rng.integers(3)
        if shape == 0:
            m = (np.abs(xx - cx) < sx) & (np.abs(yy - cy) < sy)
        elif shape == 1:
            m = ((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2 < 1
        else:
            ang = rng.uniform(0, np.pi)
            m = np.abs((xx - cx) * math.sin(ang) - (yy - cy) * math.cos(ang)) < 0.1 * sx
        img[m] = colour
    return img.astype(np.float32)


def occlusion_fraction(visible: np.ndarray, amodal: np.ndarray) -> float:
    """`1 - |visible| / |amodal|` for `(H, W)` bool masks (0 when the amodal mask is empty)."""
    a = int(np.count_nonzero(amodal))
    if a == 0:
        return 0.0
    return float(1.0 - np.count_nonzero(visible & amodal) / a)


def _join(objects: list[SceneObject]):
    verts = torch.from_numpy(np.concatenate([o.verts for o in objects]).astype(np.float64))
    offs = np.cumsum([0] + [len(o.verts) for o in objects])[:-1]
    faces = torch.from_numpy(np.concatenate([o.faces + k for o, k in zip(objects, offs)]).astype(np.int64))
    colors = torch.from_numpy(np.concatenate([o.colors for o in objects]).astype(np.float64))
    face_obj = torch.from_numpy(np.concatenate([np.full(len(o.faces), i) for i, o in enumerate(objects)]))
    return verts, faces, colors, face_obj


def _rasterize(objects: list[SceneObject], camera: PerspectiveCameras):
    verts, faces, colors, face_obj = _join(objects)
    mesh = Meshes([verts], [faces])
    H, W = camera.image_size
    # Coverage and depth order in float32 (the z-buffer keys are float32 anyway): ~2x faster than float64.
    frags = rasterize_meshes(mesh, camera.project(verts).to(torch.float32), (H, W))
    return mesh, verts, faces, colors, face_obj, frags


def _shade_layer(objects, camera, rig, background, shadow_scene, centre, radius, shadow_res):
    """Opaque-and-translucent shading of one layer; returns rgb `(H, W, 3)` float64 and the object index."""
    H, W = camera.image_size
    mesh, verts, faces, colors, face_obj, frags = _rasterize(objects, camera)
    p2f = frags.pix_to_face[0]
    covered = p2f >= 0
    obj_index = torch.where(covered, face_obj[p2f.clamp(min=0)], torch.full_like(p2f, -1))
    rgb = torch.from_numpy(np.asarray(background, dtype=np.float64)).clone()
    if not bool(covered.any()):
        return rgb, obj_index
    f = p2f[covered]
    bary = frags.bary_coords[0][covered]
    vn = mesh.verts_normals_packed()
    pix = f[:, None]
    interp = lambda attr: interpolate_face_attributes(pix, bary[:, None], attr[faces])[:, 0]  # noqa: E731
    points, normals, albedo = interp(verts), interp(vn), interp(colors)
    eye = camera.get_camera_center()[0]
    view = points - eye
    normals = torch.nn.functional.normalize(normals, dim=-1, eps=1e-8)
    normals = torch.where((normals * view).sum(-1, keepdim=True) > 0, -normals, normals)
    mats = [o.material for o in objects]
    table = torch.tensor([[m.diffuse, m.specular, m.shininess, float(m.metal)] for m in mats], dtype=torch.float64)
    opacity = torch.tensor([m.opacity for m in mats], dtype=torch.float64)
    fo = face_obj[f]
    vis = None
    if any(s > 0 for s in rig.shadow_strength):
        vis = [shadow_visibility(points, normals, lt, shadow_scene, centre, radius, shadow_res, s) if s > 0
               else torch.ones(points.shape[0], dtype=points.dtype)
               for lt, s in zip(rig.lights, rig.shadow_strength)]
    colour = shade_points(albedo, normals, points, view, table[fo], rig, vis)
    alpha = opacity[fo]
    if bool((alpha < 1).any()):
        # What is behind a translucent surface: the scene without the translucent objects.
        opaque = [o for o in objects if o.material.opacity >= 1]
        behind = _shade_layer(opaque, camera, rig, background, shadow_scene, centre, radius, shadow_res)[0] \
            if opaque else rgb
        cos = (normals * torch.nn.functional.normalize(view, dim=-1)).sum(-1).abs()
        a = alpha + (1 - alpha) * (1 - cos) ** 3  # Fresnel-like: more opaque at grazing angles
        colour = a[:, None] * colour + (1 - a[:, None]) * behind[covered]
    rgb[covered] = colour
    return rgb, obj_index


def silhouette(verts: np.ndarray, faces: np.ndarray, camera: PerspectiveCameras) -> np.ndarray:
    """The pixels `(H, W)` bool a mesh (world verts `(V, 3)`, faces `(F, 3)`) covers seen alone by a
    one-camera batch (the rasteriser of `render_scene`, no shading)."""
    obj = SceneObject(np.asarray(verts, dtype=np.float64), np.asarray(faces, dtype=np.int64),
                      np.zeros((len(verts), 3), np.float32), Material(), "target")
    return (_rasterize([obj], camera)[-1].pix_to_face[0] >= 0).numpy()


def _harmless(objects: list[SceneObject], camera: PerspectiveCameras, target: SceneObject) -> bool:
    """Whether nothing in `objects` can hide the target (a floor under it, seen from above, never does)."""
    eye_y = float(camera.get_camera_center()[0, 1])
    low = float(target.verts[:, 1].min())
    return all(o.role == "target" or (o.role == "floor" and float(o.verts[:, 1].max()) <= min(low, eye_y))
               for o in objects)


def target_masks(objects: list[SceneObject], camera: PerspectiveCameras, amodal: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The target's visible and amodal masks `(H, W)` bool exactly as `render_scene` makes them (the same
    rasterisation, no shading): the cheap pass that decides which occluders a scene keeps.

    Args:
        objects: the scene, exactly one object with role "target".
        camera: a one-camera batch.
        amodal: the target's silhouette alone (`silhouette`) when already known; it depends on the target
            and the camera only.

    Returns:
        (visible, amodal).
    """
    ti = [i for i, o in enumerate(objects) if o.role == "target"]
    if len(ti) != 1:
        raise ValueError(f"a scene needs exactly one target object, got {len(ti)}")
    *_, face_obj, frags = _rasterize(objects, camera)
    p2f = frags.pix_to_face[0]
    covered = p2f >= 0
    visible = (covered & (face_obj[p2f.clamp(min=0)] == ti[0])).numpy()
    if _harmless(objects, camera, objects[ti[0]]):
        return visible, visible.copy()
    if amodal is None:
        amodal = (_rasterize([objects[ti[0]]], camera)[-1].pix_to_face[0] >= 0).numpy()
    return visible, amodal.copy()


def render_scene(
    objects: list[SceneObject],
    camera: PerspectiveCameras,
    rig: LightRig,
    background: np.ndarray,
    shadow_resolution: int = 256,
    amodal: np.ndarray | None = None,
) -> SceneRender:
    """Render `objects` (exactly one with role "target") seen by a one-camera batch over `background`
    `(H, W, 3)`; shadows where `rig.shadow_strength` asks for them. Float64 on the CPU. `amodal`: the
    target's silhouette alone when already known (`silhouette`: saves a rasterisation)."""
    targets = [i for i, o in enumerate(objects) if o.role == "target"]
    if len(targets) != 1:
        raise ValueError(f"a scene needs exactly one target object, got {len(targets)}")
    if len(camera) != 1:
        raise ValueError(f"render_scene takes one camera, got {len(camera)}")
    H, W = camera.image_size
    if tuple(background.shape) != (H, W, 3):
        raise ValueError(f"background must be ({H}, {W}, 3), got {tuple(background.shape)}")
    target = objects[targets[0]]
    centre = torch.from_numpy(target.verts.mean(0))
    casters = [o for o in objects]
    sverts, sfaces, _, _ = _join(casters)
    radius = float(torch.linalg.norm(sverts - centre, dim=1).max())
    shadow_scene = Meshes([sverts], [sfaces])
    rgb, obj_index = _shade_layer(objects, camera, rig, background, shadow_scene, centre, radius, shadow_resolution)
    visible = (obj_index == targets[0]).numpy()
    if _harmless(objects, camera, target):
        # Nothing can hide the target (a floor under it, seen from above, never does): amodal = visible.
        amodal = visible.copy()
    elif amodal is None:
        _, _, _, _, _, frags_t = _rasterize([target], camera)
        amodal = (frags_t.pix_to_face[0] >= 0).numpy()
    else:
        amodal = np.array(amodal, dtype=bool)
    return SceneRender(rgb.numpy().astype(np.float32), obj_index.numpy(), visible, amodal)
