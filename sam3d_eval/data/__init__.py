"""Built-in data: the procedural benchmark (synthetic and "real" domains with named shifts), the manifest,
a Dataset over any manifest, the synthetic/real mixing sampler, and the demo shapes."""

from .shapes import SHAPES, Degradation, degrade, make_shape

__all__ = ["SHAPES", "Degradation", "degrade", "make_shape"]
