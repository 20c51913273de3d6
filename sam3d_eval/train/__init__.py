"""Training core: loss mixes, the curriculum, the loop (one file, top to bottom), DDP helpers, recipes and
the phase-boundary evaluation hook (training/README.md)."""

from .curriculum import STAGE1_SCHEDULE, STAGE2_SCHEDULE, Phase, curriculum_phases, lr_at, phase_of
from .data import ManifestTrainData, camera_from_record
from .ddp import DistContext, init_distributed
from .hooks import PhaseEvaluator, compare_stage_runs, stage_gap_change
from .loop import Batch, TrainConfig, TrainData, TrainingInterrupted, TrainResult, collate, train
from .losses import Discriminator, LossConfig, LossMix, LossWeights, RandomFeaturePerceptual, discriminator_loss
from .recipe import Recipe, RecipeError, load_recipe

__all__ = [
    "STAGE1_SCHEDULE",
    "STAGE2_SCHEDULE",
    "Batch",
    "Discriminator",
    "DistContext",
    "LossConfig",
    "LossMix",
    "LossWeights",
    "ManifestTrainData",
    "Phase",
    "PhaseEvaluator",
    "RandomFeaturePerceptual",
    "Recipe",
    "RecipeError",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "TrainingInterrupted",
    "camera_from_record",
    "collate",
    "compare_stage_runs",
    "curriculum_phases",
    "discriminator_loss",
    "init_distributed",
    "load_recipe",
    "lr_at",
    "phase_of",
    "stage_gap_change",
    "train",
]
