"""Mesh files to `Meshes` and back, through trimesh: obj, ply, glb/gltf, off, stl.

Loading keeps the file's own topology (trimesh's `process=False`: no vertex merging, no dropping of
degenerate faces) and validates it here, so a bad file fails with one `MeshLoadError` naming the file and
the problem instead of being silently "repaired". Two format-level conversions do happen: polygons are
triangulated (fan), and OBJ vertices are re-indexed per (position, UV) pair as trimesh does (UV seams
become duplicated vertices; unreferenced OBJ vertices are dropped). STL, a triangle soup, gets its exactly
coincident corners merged so that the mesh has shared vertices.

Appearance becomes `TexturesVertex` (per-vertex RGB in [0, 1]) or `TexturesUV` (uint8 RGB map, kept 8-bit
until sampled; origin of UVs at the image's bottom-left). PLY faces may carry their own texture coordinates
(`property list ... texcoord`); trimesh then splits vertices per (vertex, texcoord) corner. OBJ vertex
colours that are NaN or inf are refused (trimesh would load them as black). Scenes (glTF node trees) are flattened with every node's transform applied; their
parts' appearances are combined as follows:
- a single part with a UV texture image: a `TexturesUV` of its own map and UVs, as they are (UVs outside
  [0, 1] repeat the map, as in the renderer and the point sampler).
- several parts, any with a UV texture image: one `TexturesUV` whose map is an atlas of the parts' images
  (parts with only a material colour get a one-texel patch). Needs every textured part's UVs inside [0, 1]
  (no repeat wrapping); otherwise, or when other parts carry vertex colours, the textures are dropped with a
  warning.
- otherwise, any part with vertex colours or a material colour: `TexturesVertex` (material colour
  broadcast to the part's vertices, white for parts with neither; face colours are averaged onto vertices).
- otherwise no textures.
glTF `baseColorFactor` multiplies the texture map (re-quantised to 8 bits; RGB, alpha is dropped everywhere). Texture images are
decoded by Pillow through trimesh.
"""

from __future__ import annotations

import os
import pathlib
import re
import warnings
from typing import Sequence

import numpy as np
import torch
import trimesh

from ..structures.meshes import Meshes
from ..structures.textures import TexturesUV, TexturesVertex
from .errors import MeshLoadError
from .sniff import MESH_SUFFIXES as MESH_EXTENSIONS

__all__ = ["MESH_EXTENSIONS", "MeshLoadError", "load_mesh", "load_meshes", "save_mesh", "trimesh_to_meshes"]

_SAVE_EXTENSIONS = (".obj", ".ply", ".glb", ".off", ".stl")
_DEFAULT_GREY = (102, 102, 102)  # trimesh's placeholder colour for "no colour given"

PathLike = str | os.PathLike


# ---- validation -------------------------------------------------------------------------------------
def _check_obj_indices(path: pathlib.Path, data: bytes) -> None:
    """Reject OBJ face indices that trimesh would silently wrap or re-map (0, or beyond the vertex count)."""
    num_verts = len(re.findall(rb"(?m)^[ \t]*v[ \t]", data))
    face_lines = re.findall(rb"(?m)^[ \t]*f[ \t]+([^\r\n#]*)", data)
    if not face_lines:
        return
    # First number of each whitespace-separated token: the vertex index of "v", "v/vt", "v//vn", "v/vt/vn".
    tokens = re.findall(rb"(?:^|(?<=[ \t\n]))([+-]?\d+)", b"\n".join(face_lines))
    if not tokens:
        return
    try:
        idx = np.array(tokens).astype(np.int64)
    except (OverflowError, ValueError) as err:
        raise MeshLoadError(path, f"corrupt OBJ: a face index does not fit in 64 bits ({err})") from err
    bad = (idx == 0) | (idx > num_verts) | (idx < -num_verts)
    if bad.any():
        first = int(idx[bad][0])
        raise MeshLoadError(
            path,
            f"face index {first} out of range for {num_verts} vertices "
            f"(OBJ indices run 1..{num_verts}, or -{num_verts}..-1 counting back; {int(bad.sum())} bad indices)",
        )


def _check_obj_colours(path: pathlib.Path, data: bytes) -> None:
    """Reject OBJ vertex colours (`v x y z r g b`) that are NaN or inf: trimesh turns them into black."""
    lowered = data.lower()
    if b"nan" not in lowered and b"inf" not in lowered:
        return
    bad = 0
    for line in re.findall(rb"(?m)^[ \t]*v[ \t]+([^\r\n#]*)", data):
        tokens = line.split()
        if len(tokens) > 3:
            try:
                values = np.array(tokens[3:], dtype=np.float64)
            except ValueError:
                continue
            bad += int(not np.isfinite(values).all())
    if bad:
        raise MeshLoadError(path, f"{bad} vertices have NaN or inf colours (refused rather than loaded as black)")


def _check_ply_counts(path: pathlib.Path, data: bytes, num_verts: int, num_faces: int) -> None:
    """Catch truncated ASCII PLY bodies, which trimesh reads without complaint as fewer elements.

    When the face element carries its own texture coordinates (`property list ... texcoord`), trimesh splits
    vertices per (vertex, texcoord) corner, so the vertex count may differ from the header's; the face
    count, which a truncated body cannot reach, is still checked.
    """
    end = data.find(b"end_header")
    header = data[: max(end, 0)]
    declared = {k.decode(): int(n) for k, n in re.findall(rb"(?m)^element[ \t]+(\w+)[ \t]+(\d+)", header)}
    want_v, want_f = declared.get("vertex", 0), declared.get("face", 0)
    face_block = re.search(rb"(?ms)^element[ \t]+face\b(.*?)(?=^element\b|\Z)", header)
    split = face_block is not None and re.search(rb"(?m)^property[ \t]+list\b.*\btexcoord\b", face_block.group(1))
    if (num_verts != want_v and not split) or num_faces < want_f:
        raise MeshLoadError(
            path,
            f"truncated or corrupt PLY: the header declares {want_v} vertices and {want_f} faces, "
            f"the body holds {num_verts} vertices and {num_faces} faces",
        )


def _validate(path: pathlib.Path, verts: np.ndarray, faces: np.ndarray) -> None:
    if faces.size and (faces.min() < 0 or faces.max() >= len(verts)):
        lo, hi = int(faces.min()), int(faces.max())
        raise MeshLoadError(path, f"face indices out of range: found [{lo}, {hi}] for {len(verts)} vertices")
    finite = np.isfinite(verts).all(axis=1)
    if not finite.all():
        raise MeshLoadError(path, f"{int((~finite).sum())} of {len(verts)} vertices have NaN or inf coordinates")


def _check_float32_range(path: pathlib.Path, verts: np.ndarray, verts32: np.ndarray, faces: np.ndarray) -> None:
    """Refuse coordinates that float32 (the dtype of `Meshes`) cannot carry through the face areas.

    Areas are |e1 x e2| / 2 computed in float32 (`transforms.face_areas_normals`), and the norm squares the
    cross product first: coordinates of ~1e10 or more overflow it to inf, which the sampler then reads as a
    mesh of zero surface area. Computed here with the same float32 arithmetic, so exactly the meshes that
    would fail are refused, with the cause named."""
    big = float(np.abs(verts).max()) if verts.size else 0.0
    if not np.isfinite(verts32).all():
        raise MeshLoadError(path, f"vertex coordinates too large for float32 (largest |coordinate| {big:.3g}, "
                                  f"float32 holds up to {np.finfo(np.float32).max:.3g}); rescale the mesh")
    # an edge is at most 2 big long, so |e1 x e2|^2 <= (2 big)^4: below float32's max (with room for rounding)
    # no face can overflow, and the per-face check (a cross product of every face) is not needed
    if (2.0 * big) ** 4 < float(np.finfo(np.float32).max) / 4:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        v0, v1, v2 = (verts32[faces[:, k]] for k in range(3))
        cross = np.cross(v1 - v0, v2 - v0)
        squared = np.einsum("ij,ij->i", cross, cross)
    bad = ~np.isfinite(squared)
    if bad.any():
        raise MeshLoadError(
            path,
            f"vertex coordinates too large (largest |coordinate| {big:.3g}): the squared area of {int(bad.sum())} of "
            f"{len(faces)} faces overflows float32 (max {np.finfo(np.float32).max:.3g}), so the surface cannot be "
            "measured or sampled; rescale the mesh (e.g. to metres)",
        )


# ---- appearance -------------------------------------------------------------------------------------
def _image_to_array(image) -> np.ndarray | None:
    """RGB uint8 `(H, W, 3)`: texture maps stay 8-bit until they are sampled (a 2k x 10k atlas is 60 MB, not 250)."""
    if image is None or not hasattr(image, "convert"):
        return None
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _appearance(mesh: trimesh.Trimesh) -> tuple[str, object]:
    """One part's appearance: ("uv", (map, uv)), ("vertex", (V, 3)), ("const", (3,)) or ("none", None)."""
    visual = mesh.visual
    if isinstance(visual, trimesh.visual.ColorVisuals):
        if visual.kind in ("vertex", "face"):  # face colours: trimesh averages them onto the vertices
            return "vertex", np.asarray(visual.vertex_colors, dtype=np.float32)[:, :3] / 255.0
        return "none", None
    if not isinstance(visual, trimesh.visual.TextureVisuals):
        return "none", None
    material = visual.material
    factor, image = None, None
    if isinstance(material, trimesh.visual.material.PBRMaterial):
        image = material.baseColorTexture
        if material.baseColorFactor is not None:
            factor = np.asarray(material.baseColorFactor, dtype=np.float32)[:3] / 255.0
    elif isinstance(material, trimesh.visual.material.SimpleMaterial):
        image = material.image
        diffuse = np.asarray(material.diffuse, dtype=np.float32)[:3]
        if tuple(int(c) for c in diffuse) != _DEFAULT_GREY:
            factor = diffuse / 255.0
    tex = _image_to_array(image)
    uv = visual.uv
    if tex is not None and uv is not None and len(uv) == len(mesh.vertices):
        if factor is not None and isinstance(material, trimesh.visual.material.PBRMaterial) and (factor != 1).any():
            # glTF: colour = texture * baseColorFactor, re-quantised to 8 bits (within 0.5 / 255)
            tex = np.round(tex * factor).astype(np.uint8)
        return "uv", (tex, np.asarray(uv, dtype=np.float32))
    if factor is not None:
        return "const", factor
    return "none", None


def _pack_atlas(
    parts: list[tuple[str, object]], num_verts: list[int]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Side-by-side atlas of the parts' maps and every part's UVs moved into it, or None if UVs repeat."""
    patches, uvs = [], []
    for (kind, value), n in zip(parts, num_verts):
        if kind == "uv":
            tex, uv = value
            if uv.size and (uv.min() < -1e-6 or uv.max() > 1 + 1e-6):
                return None
            patches.append(tex)
            uvs.append(np.clip(uv, 0.0, 1.0))
        else:
            colour = value if kind == "const" else np.ones(3, np.float32)
            colour8 = np.round(np.clip(np.asarray(colour, np.float64), 0, 1) * 255).astype(np.uint8)
            patches.append(np.broadcast_to(colour8, (1, 1, 3)))
            uvs.append(np.full((n, 2), 0.5, np.float32))
    # One texel of edge padding around each patch keeps bilinear lookups from bleeding into a neighbour.
    padded = [np.pad(p, ((1, 1), (1, 1), (0, 0)), mode="edge") for p in patches]
    height, width = max(p.shape[0] for p in padded), sum(p.shape[1] for p in padded)
    atlas = np.zeros((height, width, 3), np.uint8)
    out_uv, x0 = [], 0
    for p, patch, uv in zip(padded, patches, uvs):
        h, w = patch.shape[:2]
        atlas[: p.shape[0], x0 : x0 + p.shape[1]] = p
        u = (x0 + 1 + uv[:, 0] * w) / width
        v = 1.0 - (1 + (1.0 - uv[:, 1]) * h) / height  # patch sits at the atlas's top rows
        out_uv.append(np.stack([u, v], axis=1))
        x0 += p.shape[1]
    return atlas, np.concatenate(out_uv, 0).astype(np.float32)


def _combine_textures(
    path: pathlib.Path, parts: list[tuple[str, object]], num_verts: list[int], faces: torch.Tensor, device
) -> TexturesVertex | TexturesUV | None:
    kinds = {k for k, _ in parts}
    if "uv" in kinds:
        if len(parts) == 1:  # a single textured mesh keeps its own map and UVs untouched (repeating UVs too)
            atlas, uv = parts[0][1]
        else:
            packed = None if "vertex" in kinds else _pack_atlas(parts, num_verts)
            if packed is None:
                warnings.warn(f"{path}: texture dropped (parts mix UV textures with vertex colours, or UVs repeat)")
                return None
            atlas, uv = packed
        return TexturesUV(
            [torch.from_numpy(np.array(atlas, dtype=np.uint8, order="C", copy=True)).to(device)],
            [faces.clone()],
            [torch.from_numpy(np.ascontiguousarray(uv)).to(device)],
        )
    if kinds <= {"none"}:
        return None
    colours = []
    for (kind, value), n in zip(parts, num_verts):
        if kind == "vertex":
            colours.append(np.asarray(value, np.float32))
        else:
            colour = value if kind == "const" else np.ones(3, np.float32)
            colours.append(np.broadcast_to(np.asarray(colour, np.float32), (n, 3)))
    return TexturesVertex([torch.from_numpy(np.concatenate(colours, 0)).to(device)])


# ---- the files a mesh is read from ------------------------------------------------------------------
_MTL_MAPS = ("map_ka", "map_kd", "map_ks", "map_ns", "map_d", "map_bump", "bump", "disp", "decal", "norm",
             "map_pr", "map_pm", "map_ke", "refl")


def referenced_files(path: PathLike) -> list[pathlib.Path]:
    """The other files that loading `path` reads, beside it: an OBJ's ``mtllib`` files and the texture
    images they name, a ``.gltf``'s external buffers and images (``data:`` URIs are inside the file). Paths
    are resolved against the file's folder, sorted, and listed whether they exist or not (a missing one is
    part of what the mesh is made from too). Other formats are self-contained: []."""
    path = pathlib.Path(path)
    ext = path.suffix.lower()
    folder = path.parent
    names: list[str] = []
    try:
        if ext == ".obj":
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.lstrip().lower().startswith("mtllib"):
                    names += line.split()[1:]
            for mtl in list(names):
                mtl_path = folder / mtl
                if mtl_path.is_file():
                    for line in mtl_path.read_text(encoding="utf-8", errors="replace").splitlines():
                        parts = line.split()
                        if parts and parts[0].lower() in _MTL_MAPS and len(parts) > 1:
                            names.append(parts[-1])  # options (-s 1 1 1, ...) come before the file name
        elif ext == ".gltf":
            import json

            doc = json.loads(path.read_text(encoding="utf-8"))
            for key in ("buffers", "images"):
                for item in doc.get(key) or []:
                    uri = item.get("uri") if isinstance(item, dict) else None
                    if isinstance(uri, str) and not uri.startswith("data:"):
                        from urllib.parse import unquote

                        names.append(unquote(uri))
    except (OSError, ValueError):
        return []  # an unreadable file fails when loaded; its own bytes are its key
    return sorted({folder / n for n in names})


# ---- loading ----------------------------------------------------------------------------------------
def _merge_coincident(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, inverse = np.unique(verts, axis=0, return_inverse=True)
    return unique, inverse.reshape(-1)[faces]


def _scene_geometries(scene: trimesh.Scene) -> list:
    """The scene's geometries with their node transforms applied. A scene of one geometry at the identity (every
    PLY, STL, OFF and most OBJ files) gives that geometry itself: `Scene.dump` would copy it (re-hashing every
    array) only to apply the identity, about 1.7 ms of a 10k-vertex file's 2.3 ms."""
    nodes = scene.graph.nodes_geometry
    if len(nodes) == 1 and len(scene.geometry) == 1:
        transform, name = scene.graph[nodes[0]]
        if np.array_equal(transform, np.eye(4)):
            return [scene.geometry[name]]
    return scene.dump()  # copies with node transforms baked in


def load_mesh(path: PathLike, device: str | torch.device = "cpu") -> Meshes:
    """Read one mesh file into a batch of one `Meshes` (float32 vertices, int64 faces) on `device`.

    Raises:
        MeshLoadError: missing, empty, unsupported, unparseable file; no faces (a point cloud); NaN/inf
            vertices or (OBJ) vertex colours; face indices out of range or negative; coordinates so large that
            the face areas overflow float32.
    """
    path = pathlib.Path(path)
    ext = path.suffix.lower()
    if not path.is_file():
        raise MeshLoadError(path, "no such file" if not path.exists() else "not a file")
    if ext not in MESH_EXTENSIONS:
        raise MeshLoadError(path, f"unsupported extension {ext or '(none)'!r}; expected one of {', '.join(MESH_EXTENSIONS)}")
    data = path.read_bytes()
    if len(data.strip()) == 0:
        raise MeshLoadError(path, "file is empty")
    if ext in (".obj", ".off") and b"\x00" in data:
        raise MeshLoadError(path, f"not a valid {ext[1:].upper()} file: it is a text format but holds binary data")
    if ext == ".obj":
        _check_obj_indices(path, data)
        _check_obj_colours(path, data)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # trimesh's own parse warnings; we validate below
            scene = trimesh.load_scene(str(path), file_type=ext[1:], process=False)
            geoms = _scene_geometries(scene)
    except MeshLoadError:
        raise
    except Exception as err:  # trimesh raises anything from IndexError to struct.error on bad input
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, ImportError):  # trimesh fell back to decoding bytes as text and lacked a helper
            raise MeshLoadError(path, f"could not parse the file as {ext[1:].upper()}: truncated or not {ext[1:].upper()} data") from err
        if isinstance(err, IndexError) or "index" in message.lower():
            raise MeshLoadError(path, f"face indices out of range ({message})") from err
        raise MeshLoadError(path, f"could not parse the file as {ext[1:].upper()} ({type(err).__name__}: {message})") from err

    if ext == ".ply":
        _check_ply_counts(
            path,
            data,
            sum(len(getattr(g, "vertices", ())) for g in geoms),
            sum(len(getattr(g, "faces", ())) for g in geoms),
        )
    return _geoms_to_meshes(geoms, path, device)


def trimesh_to_meshes(
    geometry: trimesh.Scene | trimesh.Trimesh, name: PathLike = "<trimesh>", device: str | torch.device = "cpu"
) -> Meshes:
    """Convert a trimesh `Trimesh` or `Scene` (flattened, node transforms applied) to a batch of one `Meshes`.

    Validates like `load_mesh`; `name` labels the errors. Appearance is kept as described in the module doc.
    """
    geoms = geometry.dump() if isinstance(geometry, trimesh.Scene) else [geometry]
    return _geoms_to_meshes(geoms, pathlib.Path(str(name)), device)


def _geoms_to_meshes(geoms: list, path: pathlib.Path, device: str | torch.device) -> Meshes:
    ext = path.suffix.lower()
    meshes = [g for g in geoms if isinstance(g, trimesh.Trimesh)]
    if not meshes:
        if any(isinstance(g, trimesh.PointCloud) for g in geoms):
            raise MeshLoadError(path, "no faces: the file holds a point cloud, a mesh is needed")
        raise MeshLoadError(path, f"no geometry found: the file is corrupt or not a valid {ext[1:].upper()} file")

    verts_parts, faces_parts, appearances, counts, offset = [], [], [], [], 0
    for m in meshes:
        v = np.asarray(m.vertices, dtype=np.float64)
        f = np.asarray(m.faces, dtype=np.int64)
        # trimesh hands over what the file declared: an OBJ "v 0 0" gives vertices of 2 coordinates
        if v.size % 3 or (v.ndim == 2 and v.shape[1] != 3):
            raise MeshLoadError(path, f"vertices must have 3 coordinates, the file gives shape {tuple(v.shape)}")
        if f.size % 3 or (f.ndim == 2 and f.shape[1] != 3):
            raise MeshLoadError(path, f"faces must be triangles after triangulation, the file gives shape {tuple(f.shape)}")
        v, f = v.reshape(-1, 3), f.reshape(-1, 3)
        _validate(path, v, f)
        if ext == ".stl":
            v, f = _merge_coincident(v, f)
            appearance = ("none", None)
        else:
            appearance = _appearance(m)
        verts_parts.append(v)
        faces_parts.append(f + offset)
        appearances.append(appearance)
        counts.append(len(v))
        offset += len(v)
    verts = np.concatenate(verts_parts, 0)
    faces = np.concatenate(faces_parts, 0)
    if len(faces) == 0:
        kind = "a point cloud" if len(verts) else "no vertices either"
        raise MeshLoadError(path, f"no faces: the file holds {kind}, a mesh is needed")

    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused just below
        verts32 = verts.astype(np.float32)
    _check_float32_range(path, verts, verts32, faces)
    verts_t = torch.from_numpy(verts32).to(device)
    faces_t = torch.from_numpy(faces).to(device)
    textures = _combine_textures(path, appearances, counts, faces_t, device)
    return Meshes([verts_t], [faces_t], textures)


def load_meshes(paths: Sequence[PathLike], device: str | torch.device = "cpu") -> Meshes:
    """Read several files into one batch. Textures are kept when every file has the same kind
    (all vertex colours or all UV maps); otherwise they are dropped with a warning."""
    if len(paths) == 0:
        raise ValueError("load_meshes needs at least one path")
    loaded = [load_mesh(p, device) for p in paths]
    tex = [m.textures for m in loaded]
    textures = None
    if all(isinstance(t, TexturesVertex) for t in tex):
        textures = TexturesVertex([t.verts_features[0] for t in tex])
    elif all(isinstance(t, TexturesUV) for t in tex):
        textures = TexturesUV([t.maps[0] for t in tex], [t.faces_uvs[0] for t in tex], [t.verts_uvs[0] for t in tex])
    elif any(t is not None for t in tex):
        warnings.warn("load_meshes: files have different kinds of textures (or none); textures dropped")
    return Meshes([m.verts_list()[0] for m in loaded], [m.faces_list()[0] for m in loaded], textures)


# ---- saving -----------------------------------------------------------------------------------------
def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def save_mesh(
    path: PathLike,
    meshes_or_verts_faces: Meshes | tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray],
    colors: torch.Tensor | np.ndarray | None = None,
) -> None:
    """Write one mesh to obj, ply, glb, off or stl (chosen by the extension).

    Args:
        meshes_or_verts_faces: a `Meshes` batch of one, or `(verts (V, 3), faces (F, 3))`.
        colors: optional `(V, 3)` or `(V, 4)` vertex colours, float in [0, 1] or uint8. Defaults to the
            mesh's `TexturesVertex`. A `TexturesUV` is written as a texture to obj (+mtl+png) and glb;
            ply, off and stl cannot store it, and off and stl cannot store colours: either is an error.
    """
    path = pathlib.Path(path)
    ext = path.suffix.lower()
    if ext not in _SAVE_EXTENSIONS:
        raise ValueError(f"{path}: cannot save {ext or '(no extension)'!r}; expected one of {', '.join(_SAVE_EXTENSIONS)}")
    textures = None
    if isinstance(meshes_or_verts_faces, Meshes):
        if len(meshes_or_verts_faces) != 1:
            raise ValueError(f"save_mesh writes one mesh, got a batch of {len(meshes_or_verts_faces)}")
        verts = _to_numpy(meshes_or_verts_faces.verts_list()[0])
        faces = _to_numpy(meshes_or_verts_faces.faces_list()[0])
        textures = meshes_or_verts_faces.textures
    else:
        verts, faces = (_to_numpy(x) for x in meshes_or_verts_faces)
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if verts.ndim != 2 or verts.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"save_mesh needs verts (V, 3) and faces (F, 3), got {verts.shape} and {faces.shape}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(verts)):
        raise ValueError(f"face indices [{faces.min()}, {faces.max()}] out of range for {len(verts)} vertices")
    if colors is None and isinstance(textures, TexturesVertex):
        colors = textures.verts_features[0]
    visual = None
    if colors is not None:
        if ext in (".off", ".stl"):
            raise ValueError(f"{path}: {ext[1:].upper()} cannot store vertex colours; use ply, obj or glb")
        c = _to_numpy(colors)
        if c.shape[0] != len(verts) or c.ndim != 2 or c.shape[1] not in (3, 4):
            raise ValueError(f"colors must be (V, 3) or (V, 4) for {len(verts)} vertices, got {c.shape}")
        if c.dtype != np.uint8:
            c = np.round(np.clip(c.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8)
        visual = trimesh.visual.ColorVisuals(vertex_colors=c)
    elif isinstance(textures, TexturesUV):
        if ext not in (".obj", ".glb"):
            raise ValueError(
                f"{path}: {ext[1:].upper()} cannot store a UV texture; save to .obj or .glb to keep it, "
                "or pass (verts, faces) to save the geometry alone"
            )
        verts, faces, visual = _uv_visual(verts, faces, textures)
    mesh = trimesh.Trimesh(verts, faces, visual=visual, process=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".obj" and isinstance(visual, trimesh.visual.TextureVisuals):
        # trimesh writes "<stem>.mtl" and the texture image beside the OBJ (through a path resolver).
        mesh.export(str(path), file_type="obj", mtl_name=f"{path.stem}.mtl")
    else:
        mesh.export(str(path), file_type=ext[1:])


def _uv_visual(verts: np.ndarray, faces: np.ndarray, tex: TexturesUV):
    """Split vertices per (vertex, uv) corner pair so trimesh's per-vertex UVs can hold `faces_uvs`."""
    from PIL import Image
    faces_uvs = _to_numpy(tex.faces_uvs[0]).astype(np.int64)
    verts_uvs = _to_numpy(tex.verts_uvs[0]).astype(np.float64)
    pairs = np.stack([faces.reshape(-1), faces_uvs.reshape(-1)], 1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    tex_map = _to_numpy(tex.maps[0])[..., :3]
    image = tex_map if tex_map.dtype == np.uint8 else np.round(np.clip(tex_map, 0, 1) * 255).astype(np.uint8)
    material = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(image), diffuse=(255, 255, 255, 255))
    visual = trimesh.visual.TextureVisuals(uv=verts_uvs[unique[:, 1]], material=material)
    return verts[unique[:, 0]], inverse.reshape(-1, 3), visual
