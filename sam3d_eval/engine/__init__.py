"""The model-in-the-loop data engine: rounds of proposals, verification (simulated raters or imported human
ratings), pool growth and fine-tuning, with a documented annotation cost model."""

from .config import TRAIN_DEFAULTS, EngineConfig, EngineConfigError, load_engine_config, train_config
from .costs import CostModel
from .raters import (
    DEFAULT_MAPPING, CriterionMap, ImportedVerifier, SimulatedRater, SimulatedVerifier, Verifier, colour_error,
    simulated_panel, true_scores,
)
from .rounds import EngineResult, PoolData, read_engine_run, run_engine

__all__ = [
    "CostModel", "CriterionMap", "DEFAULT_MAPPING", "EngineConfig", "EngineConfigError", "EngineResult",
    "ImportedVerifier", "PoolData", "SimulatedRater", "SimulatedVerifier", "TRAIN_DEFAULTS", "Verifier",
    "colour_error", "load_engine_config", "read_engine_run", "run_engine", "simulated_panel", "train_config",
    "true_scores",
]
