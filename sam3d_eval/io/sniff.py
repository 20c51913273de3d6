"""What kind of prediction a file holds (mesh, point cloud or Gaussian splat), from its suffix and header.

Pure standard library: reading a PLY header needs neither torch nor trimesh, so folder listings and the
command line can sniff files cheaply.
"""

from __future__ import annotations

import os
import pathlib

__all__ = ["MESH_SUFFIXES", "PRED_SUFFIXES", "PREDICTION_KINDS", "ply_kind", "prediction_kind"]

# The mesh formats `mesh_io.load_mesh` reads (its `MESH_EXTENSIONS`); kept here so sniffing needs no torch.
MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf", ".off", ".stl")
PRED_SUFFIXES = MESH_SUFFIXES + (".npz",)
PREDICTION_KINDS = ("mesh", "pointcloud", "splat")

_SPLAT_PROPERTIES = {"opacity", "scale_0", "rot_0"}  # the 3DGS vertex layout


def ply_kind(path: str | os.PathLike) -> str:
    """"splat", "pointcloud" or "mesh" from a PLY header (vertex properties and face count).

    A splat has the 3DGS vertex properties (opacity, scale_*, rot_*); otherwise a file with at least one face
    is a mesh and one without faces a point cloud. A header that cannot be read counts as "mesh", so the
    mesh loader reports the problem with its own message.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError:
        return "mesh"
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        return "mesh"
    element, props, faces = None, set(), 0
    for line in head[:end].decode("latin-1").splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "element":
            element = words[1]
            if element == "face" and words[2].isdigit():
                faces = int(words[2])
        elif len(words) >= 3 and words[0] == "property" and element == "vertex":
            props.add(words[-1])
    if _SPLAT_PROPERTIES <= props:
        return "splat"
    return "mesh" if faces > 0 else "pointcloud"


def prediction_kind(path: str | os.PathLike) -> str:
    """"mesh", "pointcloud" or "splat" for a prediction file.

    `.npz` is a point cloud (arrays ``points`` [+ ``normals``]); `.ply` is decided by `ply_kind`; the other
    `MESH_SUFFIXES` are meshes. Raises `ValueError` for any other suffix.
    """
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "pointcloud"
    if suffix == ".ply":
        return ply_kind(path)
    if suffix in MESH_SUFFIXES:
        return "mesh"
    raise ValueError(f"{path}: not a prediction file (expected one of {', '.join(PRED_SUFFIXES)})")
