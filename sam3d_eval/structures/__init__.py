"""Ragged batches of meshes and point clouds: the types every other layer passes around."""

from .meshes import Meshes, face_areas_normals
from .pointclouds import Pointclouds
from .textures import Textures, TexturesUV, TexturesVertex
from .utils import list_to_padded, padded_to_list

__all__ = [
    "Meshes",
    "Pointclouds",
    "Textures",
    "TexturesUV",
    "TexturesVertex",
    "face_areas_normals",
    "list_to_padded",
    "padded_to_list",
]
