"""Models: the `Predictor` interface (and, later, the reference model and its checkpoints)."""

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from .predictor import Predictor
from .reference import ReferenceConfig, ReferenceModel, icosphere

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "Predictor",
    "ReferenceConfig",
    "ReferenceModel",
    "icosphere",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]
