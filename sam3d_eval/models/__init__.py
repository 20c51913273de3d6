"""Models: the `Predictor` interface (and, later, the reference model and its checkpoints)."""

from .predictor import Predictor

__all__ = ["Predictor"]
