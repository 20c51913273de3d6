"""Mesh files to `Meshes` and back: round trips per format, appearance, scenes, and every load error."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
import trimesh

from sam3d_eval.io.mesh_io import MeshLoadError, load_mesh, load_meshes, save_mesh, trimesh_to_meshes
from sam3d_eval.structures import Meshes, TexturesUV, TexturesVertex



def tetra() -> tuple[torch.Tensor, torch.Tensor]:
    verts = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.3, 0.4, 0.5]], dtype=torch.float32)
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 4], [1, 4, 3], [2, 3, 4]])
    return verts, faces


def triangle_set(verts: torch.Tensor, faces: torch.Tensor) -> set:
    """Faces as sets of rounded corner coordinates, independent of vertex numbering."""
    v = verts.double().numpy().round(5)
    return {tuple(sorted(tuple(v[i]) for i in f)) for f in faces.numpy()}


def bilinear(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """float64 reference lookup: texel centres at (i + 0.5) / W, border clamp, v up from the bottom row."""
    h, w = tex.shape[:2]
    x = np.clip(uv[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip((1 - uv[:, 1]) * h - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    t = tex.astype(np.float64)
    top = t[y0, x0] * (1 - fx) + t[y0, x1] * fx
    bottom = t[y1, x0] * (1 - fx) + t[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


# ---- round trips ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["obj", "ply", "glb", "off", "stl"])
def test_geometry_round_trip(tmp_path, ext):
    verts, faces = tetra()
    path = tmp_path / f"m.{ext}"
    save_mesh(path, (verts, faces))
    mesh = load_mesh(path)
    assert isinstance(mesh, Meshes) and len(mesh) == 1
    v, f = mesh.verts_list()[0], mesh.faces_list()[0]
    assert v.dtype == torch.float32 and f.dtype == torch.int64
    if ext == "stl":  # a triangle soup: coincident corners are merged back into shared vertices
        assert v.shape == verts.shape and triangle_set(v, f) == triangle_set(verts, faces)
    else:
        assert torch.allclose(v, verts, atol=1e-7) and torch.equal(f, faces)
    assert mesh.textures is None


def test_gltf_with_external_buffers(tmp_path):
    verts, faces = tetra()
    trimesh.Trimesh(verts.numpy(), faces.numpy(), process=False).export(tmp_path / "m.gltf")
    mesh = load_mesh(tmp_path / "m.gltf")
    assert torch.allclose(mesh.verts_list()[0], verts) and torch.equal(mesh.faces_list()[0], faces)


@pytest.mark.parametrize("ext", ["obj", "ply", "glb"])
def test_vertex_colour_round_trip(tmp_path, ext):
    verts, faces = tetra()
    colours = torch.rand(verts.shape[0], 3, generator=torch.Generator().manual_seed(0))
    save_mesh(tmp_path / f"c.{ext}", Meshes([verts], [faces], TexturesVertex([colours])))
    mesh = load_mesh(tmp_path / f"c.{ext}")
    assert isinstance(mesh.textures, TexturesVertex)
    got = mesh.textures.verts_features[0]
    assert got.shape == (5, 3) and got.dtype == torch.float32
    assert torch.allclose(got, colours, atol=0.5 / 255 + 1e-6)  # stored as 8-bit
    # uint8 colours given explicitly are exact.
    c8 = (colours * 255).round().to(torch.uint8)
    save_mesh(tmp_path / f"d.{ext}", (verts, faces), colors=c8)
    assert torch.equal((load_mesh(tmp_path / f"d.{ext}").textures.verts_features[0] * 255).round().to(torch.uint8), c8)


@pytest.mark.parametrize("ext", ["off", "stl"])
def test_colours_to_formats_without_colour_raise(tmp_path, ext):
    verts, faces = tetra()
    with pytest.raises(ValueError, match="cannot store vertex colours"):
        save_mesh(tmp_path / f"c.{ext}", (verts, faces), colors=torch.ones(5, 3))


def test_save_rejects_bad_input(tmp_path):
    verts, faces = tetra()
    with pytest.raises(ValueError, match="cannot save '.xyz'"):
        save_mesh(tmp_path / "m.xyz", (verts, faces))
    with pytest.raises(ValueError, match="out of range"):
        save_mesh(tmp_path / "m.ply", (verts, faces + 3))
    with pytest.raises(ValueError, match="batch of 2"):
        save_mesh(tmp_path / "m.ply", Meshes([verts, verts], [faces, faces]))


def test_polygons_are_triangulated(tmp_path):
    (tmp_path / "q.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n")
    mesh = load_mesh(tmp_path / "q.obj")
    assert mesh.faces_list()[0].shape == (2, 3)
    assert torch.isclose(mesh.faces_areas_packed().sum(), torch.tensor(1.0))


def test_obj_negative_relative_indices_are_valid(tmp_path):
    (tmp_path / "n.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf -3 -2 -1\n")
    assert torch.equal(load_mesh(tmp_path / "n.obj").faces_list()[0], torch.tensor([[0, 1, 2]]))


def test_load_meshes_batch(tmp_path):
    verts, faces = tetra()
    save_mesh(tmp_path / "a.ply", (verts, faces), colors=torch.ones(5, 3))
    save_mesh(tmp_path / "b.obj", (verts[:4] * 2, faces[:3]), colors=torch.zeros(4, 3))
    batch = load_meshes([tmp_path / "a.ply", tmp_path / "b.obj"])
    assert batch.num_verts_per_mesh().tolist() == [5, 4] and batch.num_faces_per_mesh().tolist() == [6, 3]
    assert torch.allclose(batch.verts_list()[1], verts[:4] * 2)
    assert [t.shape[0] for t in batch.textures.verts_features] == [5, 4]
    save_mesh(tmp_path / "c.off", (verts, faces))
    with pytest.warns(UserWarning, match="textures dropped"):
        mixed = load_meshes([tmp_path / "a.ply", tmp_path / "c.off"])
    assert mixed.textures is None


# ---- scenes -----------------------------------------------------------------------------------------
def test_multi_node_glb_scene_applies_transforms(tmp_path):
    verts, faces = tetra()
    v, f = verts.double().numpy(), faces.numpy()
    red = np.tile([255, 0, 0, 255], (5, 1)).astype(np.uint8)
    blue = np.tile([0, 0, 255, 255], (5, 1)).astype(np.uint8)
    scene = trimesh.Scene()
    t_a = trimesh.transformations.translation_matrix([10, 0, 0]) @ trimesh.transformations.rotation_matrix(
        np.pi / 2, [0, 0, 1]
    )
    t_b = trimesh.transformations.translation_matrix([0, -5, 2]) @ np.diag([2.0, 2.0, 2.0, 1.0])
    scene.add_geometry(trimesh.Trimesh(v, f, vertex_colors=red, process=False), node_name="a", geom_name="a", transform=t_a)
    scene.add_geometry(trimesh.Trimesh(v, f, vertex_colors=blue, process=False), node_name="b", geom_name="b", transform=t_b)
    scene.export(tmp_path / "s.glb")
    mesh = load_mesh(tmp_path / "s.glb")
    got_v, got_f = mesh.verts_list()[0].double(), mesh.faces_list()[0]
    assert got_v.shape == (10, 3) and got_f.shape == (12, 3)
    hom = np.concatenate([v, np.ones((5, 1))], 1)
    expected = {
        "a": torch.from_numpy((hom @ t_a.T)[:, :3]),
        "b": torch.from_numpy((hom @ t_b.T)[:, :3]),
    }
    colours = mesh.textures.verts_features[0]
    # The node order of a glTF scene is not fixed; identify each part by its colour.
    for name, rgb in (("a", [1.0, 0, 0]), ("b", [0, 0, 1.0])):
        rows = (colours - torch.tensor(rgb)).abs().sum(1) < 1e-6
        assert int(rows.sum()) == 5
        assert torch.allclose(got_v[rows], expected[name], atol=1e-5)
        first = int(rows.nonzero()[0, 0])
        part_faces = got_f[(got_f >= first).all(1) & (got_f < first + 5).all(1)] - first
        assert torch.equal(part_faces, faces)
    # Surface area is preserved by the rotation and scaled by 4 for the node scaled by 2.
    assert torch.isclose(mesh.faces_areas_packed().sum().double(), 5 * Meshes([verts], [faces]).faces_areas_packed().sum().double())


class FakeImage:
    """Stands in for a decoded PIL image: all the loader asks of one is `convert("RGB")`."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def convert(self, mode: str) -> np.ndarray:
        assert mode == "RGB"
        return self.array


def test_uv_texture_with_pbr_factor_and_atlas_of_scene_parts():
    verts, faces = tetra()
    v, f = verts.double().numpy(), faces.numpy()
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    uv = rng.random((5, 2))
    textured = trimesh.visual.TextureVisuals(
        uv=uv,
        material=trimesh.visual.material.PBRMaterial(baseColorTexture=FakeImage(tex), baseColorFactor=[255, 128, 255, 255]),
    )
    # A single textured mesh keeps its own map (times baseColorFactor) and UVs.
    single = trimesh_to_meshes(trimesh.Trimesh(v, f, visual=textured, process=False), "one.glb")
    assert isinstance(single.textures, TexturesUV)
    expected_map = tex.astype(np.float32) / 255 * np.array([1.0, 128 / 255, 1.0], np.float32)
    # re-quantised to 8 bits after the factor: within half a level
    assert np.allclose(tex01(single.textures.maps[0]), expected_map, atol=0.5 / 255 + 1e-6)
    assert np.allclose(single.textures.verts_uvs[0].numpy(), uv, atol=1e-6)
    assert torch.equal(single.textures.faces_uvs[0], faces)
    # A scene of the textured part and a part with only a material colour: one atlas for both.
    plain = trimesh.visual.TextureVisuals(material=trimesh.visual.material.PBRMaterial(baseColorFactor=[0, 255, 0, 255]))
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.Trimesh(v, f, visual=textured, process=False), node_name="t", geom_name="t")
    scene.add_geometry(
        trimesh.Trimesh(v, f, visual=plain, process=False), node_name="p", geom_name="p",
        transform=trimesh.transformations.translation_matrix([3, 0, 0]),
    )
    mesh = trimesh_to_meshes(scene, "scene.glb")
    atlas, atlas_uv = tex01(mesh.textures.maps[0]), mesh.textures.verts_uvs[0].double().numpy()
    part = (mesh.verts_list()[0][:, 0] < 2).numpy()  # the untranslated, textured part
    assert part.sum() == 5
    assert np.allclose(bilinear(atlas, atlas_uv[part]), bilinear(expected_map, uv), atol=0.5 / 255 + 1e-5)
    assert np.allclose(bilinear(atlas, atlas_uv[~part]), [[0.0, 1.0, 0.0]] * 5, atol=1e-6)
    assert torch.equal(mesh.textures.faces_uvs[0], mesh.faces_list()[0])


def test_material_colour_and_face_colours_become_vertex_colours():
    verts, faces = tetra()
    v, f = verts.double().numpy(), faces.numpy()
    plain = trimesh.visual.TextureVisuals(material=trimesh.visual.material.PBRMaterial(baseColorFactor=[255, 0, 0, 255]))
    mesh = trimesh_to_meshes(trimesh.Trimesh(v, f, visual=plain, process=False), "m.glb")
    assert torch.allclose(mesh.textures.verts_features[0], torch.tensor([[1.0, 0, 0]] * 5))
    face_col = np.tile([0, 255, 0, 255], (6, 1)).astype(np.uint8)
    mesh = trimesh_to_meshes(trimesh.Trimesh(v, f, face_colors=face_col, process=False), "m.ply")
    assert torch.allclose(mesh.textures.verts_features[0], torch.tensor([[0, 1.0, 0]] * 5))


def tex01(m: torch.Tensor) -> np.ndarray:
    """A loaded texture map (uint8, kept 8-bit until sampled) as float64 values in [0, 1]."""
    assert m.dtype == torch.uint8
    return m.double().numpy() / 255.0


def png_bytes(rgb: np.ndarray) -> bytes:
    """A minimal 8-bit RGB PNG encoder (filter 0), so texture files can be written without Pillow."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[i].tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(
        b"IDAT", zlib.compress(raw)
    ) + chunk(b"IEND", b"")


def write_textured_obj(tmp_path, tex: np.ndarray, kd: str = "1 1 1") -> None:
    (tmp_path / "t.png").write_bytes(png_bytes(tex))
    (tmp_path / "t.mtl").write_text(f"newmtl skin\nKd {kd}\nmap_Kd t.png\n")
    (tmp_path / "t.obj").write_text(
        "mtllib t.mtl\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nusemtl skin\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n"
    )


def test_textured_obj_mtl_png(tmp_path):
    tex = np.random.default_rng(1).integers(0, 256, size=(4, 8, 3), dtype=np.uint8)
    write_textured_obj(tmp_path, tex)
    mesh = load_mesh(tmp_path / "t.obj")
    assert isinstance(mesh.textures, TexturesUV)
    assert np.allclose(tex01(mesh.textures.maps[0]), tex / 255.0, atol=1e-6)
    v = mesh.verts_list()[0].numpy()
    assert np.allclose(mesh.textures.verts_uvs[0].numpy(), v[:, :2], atol=1e-6)  # vt = (x, y) here


@pytest.mark.parametrize("ext", ["glb", "obj"])
def test_textured_round_trip(tmp_path, ext):
    verts = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=torch.float32)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    tex_map = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (4, 8, 3)).astype(np.float32) / 255)
    uvs = torch.tensor([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]])
    save_mesh(tmp_path / f"t.{ext}", Meshes([verts], [faces], TexturesUV([tex_map], [faces], [uvs])))
    mesh = load_mesh(tmp_path / f"t.{ext}")
    assert isinstance(mesh.textures, TexturesUV)
    assert np.allclose(tex01(mesh.textures.maps[0]), tex_map.double().numpy(), atol=1e-6)
    got = bilinear(tex01(mesh.textures.maps[0]), mesh.textures.verts_uvs[0].double().numpy())
    order = [int(np.argmin(np.abs(verts.numpy() - p).sum(1))) for p in mesh.verts_list()[0].numpy()]
    assert np.allclose(got, bilinear(tex_map.double().numpy(), uvs.double().numpy()[order]), atol=1e-5)


# ---- errors -----------------------------------------------------------------------------------------
PLY_HEADER = (
    "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
    "element face {nf}\nproperty list uchar int vertex_indices\nend_header\n"
)


def ply_text(face_rows: list[str], vert_rows: str = "0 0 0\n1 0 0\n0 1 0\n") -> str:
    return PLY_HEADER.format(nf=len(face_rows)) + vert_rows + "".join(r + "\n" for r in face_rows)


ERROR_CASES = {
    "empty.obj": ("", "file is empty"),
    "blank.ply": ("  \n\n", "file is empty"),
    "mesh.xyz": ("0 0 0\n", "unsupported extension '.xyz'"),
    "noext": ("v 0 0 0\n", r"unsupported extension '\(none\)'"),
    "binary.obj": (b"\x00\x01\x02garbage\xff", "holds binary data"),
    "junk.glb": (b"glTF\x02\x00\x00\x00garbage", "could not parse the file as GLB"),
    "words.obj": ("hello world\nnot an obj\n", "no geometry found"),
    "words.stl": ("solid x\nfoo bar\n", "no geometry found"),
    "points.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces: the file holds a point cloud"),
    "points.ply": (
        "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
        "end_header\n0 0 0\n1 1 1\n",
        "no faces: the file holds a point cloud",
    ),
    "nan.obj": ("v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "1 of 3 vertices have NaN or inf"),
    "inf.ply": (ply_text(["3 0 1 2"], "0 0 0\n1 inf 0\n0 1 0\n"), "1 of 3 vertices have NaN or inf"),
    "big.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nf 1 2 7\n", "face index 7 out of range for 3 vertices"),
    "zero.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "face index 0 out of range"),
    "backwards.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf -1 -2 -9\n", "face index -9 out of range"),
    "slashes.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 4/1\n", "face index 4 out of range"),
    "big.ply": (ply_text(["3 0 1 2", "3 0 1 5"]), r"face indices out of range: found \[0, 5\] for 3 vertices"),
    "negative.ply": (ply_text(["3 0 1 2", "3 0 -1 2"]), r"face indices out of range: found \[-1, 2\]"),
    "big.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 9\n", "face indices out of range"),
    "truncated.ply": (ply_text(["3 0 1 2", "3 0 1 2"], "0 0 0\n1 0 0\n")[:-10], "truncated or corrupt PLY"),
}


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_load_errors_name_file_and_problem(tmp_path, name):
    content, message = ERROR_CASES[name]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(MeshLoadError, match=message) as info:
        load_mesh(path)
    assert str(info.value).startswith(f"{path}: ")
    assert isinstance(info.value, ValueError) and info.value.path == str(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(MeshLoadError, match="no such file") as info:
        load_mesh(tmp_path / "nope.glb")
    assert str(tmp_path / "nope.glb") in str(info.value)
    (tmp_path / "dir.obj").mkdir()
    with pytest.raises(MeshLoadError, match="not a file"):
        load_mesh(tmp_path / "dir.obj")


def test_truncated_binary_ply_and_stl(tmp_path):
    sphere = trimesh.creation.icosphere(2)
    # trimesh either raises on the cut file or returns an empty scene, by version and optional packages: both
    # must end in one MeshLoadError that names the file as unreadable in its format
    for ext, message in (("ply", "could not parse the file as PLY"),
                         ("stl", "could not parse the file as STL|not a valid STL file")):
        sphere.export(tmp_path / f"full.{ext}")
        data = (tmp_path / f"full.{ext}").read_bytes()
        (tmp_path / f"cut.{ext}").write_bytes(data[: len(data) // 2])
        with pytest.raises(MeshLoadError, match=message):
            load_mesh(tmp_path / f"cut.{ext}")


def test_loaded_mesh_is_not_repaired(tmp_path):
    # Duplicate vertices and a degenerate face survive: trimesh's processing is off.
    (tmp_path / "d.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 0\nf 1 2 3\nf 4 2 3\nf 1 1 2\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mesh = load_mesh(tmp_path / "d.obj")
    assert mesh.num_verts_per_mesh().item() == 4 and mesh.num_faces_per_mesh().item() == 3


def test_single_textured_glb_keeps_repeating_uvs(tmp_path):
    """A lone textured mesh whose UVs tile the map (outside [0, 1]) keeps its map and UVs: no atlas needed."""
    from PIL import Image

    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], float)
    f = np.array([[0, 1, 2], [1, 3, 2]])
    uv = np.array([[0, 0], [2, 0], [0, 2], [2, 2]], float)  # the texture repeats twice each way
    tex = np.random.default_rng(3).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    visual = trimesh.visual.TextureVisuals(
        uv=uv, material=trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(tex))
    )
    trimesh.Trimesh(v, f, visual=visual, process=False).export(tmp_path / "tiled.glb")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "texture dropped" warning
        mesh = load_mesh(tmp_path / "tiled.glb")
    assert isinstance(mesh.textures, TexturesUV)
    assert np.allclose(tex01(mesh.textures.maps[0]), tex / 255.0, atol=1e-6)
    order = [int(np.argmin(np.abs(v - p).sum(1))) for p in mesh.verts_list()[0].numpy()]
    assert np.allclose(mesh.textures.verts_uvs[0].numpy(), uv[order], atol=1e-6)
    assert torch.equal(mesh.textures.faces_uvs[0], mesh.faces_list()[0])


@pytest.mark.parametrize("ext", ["ply", "off", "stl"])
def test_save_uv_texture_to_format_without_textures_raises(tmp_path, ext):
    verts, faces = tetra()
    tex = TexturesUV([torch.rand(4, 4, 3)], [faces], [torch.rand(5, 2)])
    with pytest.raises(ValueError, match=r"UV texture.*\.obj.*\.glb"):
        save_mesh(tmp_path / f"m.{ext}", Meshes([verts], [faces], tex))
    assert not (tmp_path / f"m.{ext}").exists()
    save_mesh(tmp_path / f"m.{ext}", (verts, faces))  # geometry alone still saves
    assert (tmp_path / f"m.{ext}").exists()


# --- PLY faces with their own texture coordinates, NaN colours, compact texture maps ------------------

_FACE_TEX_PLY = """ply
format ascii 1.0
comment TextureFile t.png
element vertex 4
property float x
property float y
property float z
element face 2
property list uchar int vertex_indices
property list uchar float texcoord
end_header
0 0 0
1 0 0
1 1 0
0 1 0
3 0 1 2 6 0 0 1 0 1 1
3 0 2 3 6 0.5 0.5 1 1 0 1
"""


def test_ply_face_texcoords_load_with_texture(tmp_path):
    """Per-face texture coordinates make trimesh split vertex 0 (two UVs): valid, loaded with its texture
    (was rejected as truncated because the vertex count differs from the header's)."""
    tex = np.random.default_rng(4).integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    (tmp_path / "t.png").write_bytes(png_bytes(tex))
    (tmp_path / "m.ply").write_text(_FACE_TEX_PLY)
    mesh = load_mesh(tmp_path / "m.ply")
    v, f = mesh.verts_list()[0].numpy(), mesh.faces_list()[0].numpy()
    assert len(v) == 5 and len(f) == 2
    assert isinstance(mesh.textures, TexturesUV)
    assert np.array_equal(mesh.textures.maps[0].numpy(), tex)
    uv = mesh.textures.verts_uvs[0].numpy()[mesh.textures.faces_uvs[0].numpy()]  # (F, 3, 2) per corner
    want = np.array([[[0, 0], [1, 0], [1, 1]], [[0.5, 0.5], [1, 1], [0, 1]]])
    assert np.allclose(uv, want)
    assert np.allclose(v[f], [[[0, 0, 0], [1, 0, 0], [1, 1, 0]], [[0, 0, 0], [1, 1, 0], [0, 1, 0]]])
    # a body with fewer faces than declared is still refused (header says 3 faces, body holds 2)
    (tmp_path / "cut.ply").write_text(_FACE_TEX_PLY.replace("element face 2", "element face 3"))
    with pytest.raises(MeshLoadError, match="truncated or corrupt PLY|could not parse"):
        load_mesh(tmp_path / "cut.ply")


def test_nan_vertex_colour_is_refused(tmp_path):
    path = tmp_path / "c.obj"
    path.write_text("v 0 0 0 1 0 0\nv 1 0 0 nan 0.5 0\nv 0 1 0 0 0 inf\nf 1 2 3\n")
    with pytest.raises(MeshLoadError, match="2 vertices have NaN or inf colours") as info:
        load_mesh(path)
    assert str(path) in str(info.value)
    path.write_text("v 0 0 0 1 0 0\nv 1 0 0 0 0.5 0\nv 0 1 0 0 0 1\nf 1 2 3\n")  # finite colours still load
    assert torch.allclose(load_mesh(path).textures.verts_features[0][1], torch.tensor([0.0, 128 / 255, 0]))


def test_texture_maps_stay_uint8_until_sampled(tmp_path):
    """The loader keeps maps 8-bit (4x smaller than float32); sampling reads them as value / 255, equal to
    sampling the float map (also for the uv gradient)."""
    from sam3d_eval.ops.texture_lookup import sample_uv

    tex = np.random.default_rng(1).integers(0, 256, size=(5, 9, 3), dtype=np.uint8)
    write_textured_obj(tmp_path, tex)
    m = load_mesh(tmp_path / "t.obj").textures.maps[0]
    assert m.dtype == torch.uint8 and m.element_size() == 1
    uv = (torch.rand(3, 200, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 - 1).requires_grad_()
    uv_f = uv.detach().clone().requires_grad_()
    a, b = sample_uv(m, uv), sample_uv(m.double() / 255, uv_f)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(uv.grad, uv_f.grad, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="uint8 or float"):
        TexturesUV([torch.zeros(2, 2, 3, dtype=torch.int32)], [torch.zeros(1, 3, dtype=torch.int64)], [torch.zeros(3, 2)])


@pytest.mark.parametrize("big, message", [
    (1e20, r"vertex coordinates too large \(largest \|coordinate\| 1e\+20\): the squared area of 3 of 4 faces overflows float32"),
    (1e39, r"vertex coordinates too large for float32 \(largest \|coordinate\| 1e\+39"),
])
def test_coordinates_whose_area_overflows_float32_are_named(tmp_path, big, message):
    """Not "zero surface area" later in scoring: the loader names the cause (float32 squared areas overflow)."""
    path = tmp_path / "big.obj"
    path.write_text(f"v 0 0 0\nv {big:g} 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 3 4\nf 1 2 4\nf 2 3 4\n")
    with pytest.raises(MeshLoadError, match=message) as info:
        load_mesh(path)
    assert str(path) in str(info.value)
    path.write_text("v 0 0 0\nv 1e9 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 3 4\nf 1 2 4\nf 2 3 4\n")
    mesh = load_mesh(path)  # large but measurable: the areas stay finite in float32
    from sam3d_eval.transforms import face_areas_normals

    assert torch.isfinite(face_areas_normals(mesh.verts_packed(), mesh.faces_packed())[0]).all()


def test_one_geometry_at_the_identity_skips_the_scene_copy_and_loads_the_same(tmp_path, monkeypatch):
    from sam3d_eval.io import mesh_io

    sphere = trimesh.creation.icosphere(2)
    sphere.visual.vertex_colors = np.tile(np.array([[10, 200, 30, 255]], np.uint8), (len(sphere.vertices), 1))
    moved = trimesh.Scene()
    moved.add_geometry(trimesh.creation.box(), transform=trimesh.transformations.translation_matrix([1.0, 2.0, 3.0]))
    moved.export(tmp_path / "moved.glb")
    dumps = []
    real_dump = trimesh.Scene.dump
    monkeypatch.setattr(trimesh.Scene, "dump", lambda self, *a, **k: dumps.append(1) or real_dump(self, *a, **k))
    for ext in ("ply", "obj", "stl", "glb"):
        sphere.export(tmp_path / f"s.{ext}")
        fast = load_mesh(tmp_path / f"s.{ext}")
        monkeypatch.setattr(mesh_io, "_scene_geometries", lambda scene: real_dump(scene))
        slow = load_mesh(tmp_path / f"s.{ext}")
        monkeypatch.undo()
        monkeypatch.setattr(trimesh.Scene, "dump", lambda self, *a, **k: dumps.append(1) or real_dump(self, *a, **k))
        assert torch.equal(fast.verts_packed(), slow.verts_packed()) and torch.equal(fast.faces_packed(), slow.faces_packed())
        assert type(fast.textures) is type(slow.textures)
        if isinstance(fast.textures, TexturesVertex):
            assert all(torch.equal(a, b) for a, b in zip(fast.textures.verts_features, slow.textures.verts_features))
    assert not dumps  # the fast path never copied a scene
    # a node transform still goes through the copy that applies it
    box = load_mesh(tmp_path / "moved.glb")
    assert dumps and torch.allclose(box.verts_packed().mean(0), torch.tensor([1.0, 2.0, 3.0]))
