"""Files to structures and back: meshes through trimesh, point clouds, Gaussian splats."""

from .errors import MeshLoadError
from .mesh_io import MESH_EXTENSIONS, load_mesh, load_meshes, save_mesh, trimesh_to_meshes
from .pointcloud_io import PointCloudReadError, load_pointcloud, read_ply_vertices
from .results import read_results
from .sniff import prediction_kind
from .splats import DEFAULT_OPACITY_THRESHOLD, Splats, load_splats, splats_to_points

__all__ = [
    "DEFAULT_OPACITY_THRESHOLD",
    "MESH_EXTENSIONS",
    "MeshLoadError",
    "PointCloudReadError",
    "Splats",
    "load_mesh",
    "load_meshes",
    "load_pointcloud",
    "load_splats",
    "prediction_kind",
    "read_ply_vertices",
    "read_results",
    "save_mesh",
    "splats_to_points",
    "trimesh_to_meshes",
]
