"""sam3d-eval: evaluation and synthetic-vs-real domain-gap analysis for single-image-to-3D models."""

__version__ = "0.1.0"
