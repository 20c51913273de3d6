"""The bottom layer: rotations, similarity transforms, bounding-box normalisation, triangle areas and normals.

Pure functions on tensors; imports no other layer of sam3d_eval (as `pytorch3d.transforms`). Conventions:
quaternions are (w, x, y, z); rotation matrices from quaternions act on column vectors; a
`SimilarityTransform` maps row vectors `x -> s * x @ R + T` (pytorch3d).
"""

from .bbox import bbox_centre_scale, normalize_points
from .geometry import face_areas_normals
from .rotations import matrix_to_quaternion, quaternion_to_matrix
from .similarity import SimilarityTransform, apply_similarity_transform

__all__ = [
    "SimilarityTransform",
    "apply_similarity_transform",
    "bbox_centre_scale",
    "face_areas_normals",
    "matrix_to_quaternion",
    "normalize_points",
    "quaternion_to_matrix",
]
