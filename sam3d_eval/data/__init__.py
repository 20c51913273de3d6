"""Built-in data: procedural shapes and seeded degradations."""

from .shapes import SHAPES, Degradation, degrade, make_shape

__all__ = ["SHAPES", "Degradation", "degrade", "make_shape"]
