"""Evaluation: protocols and batched scoring, prediction sources, the runner and its results store, summaries.

The names below are loaded from their modules on first use (PEP 562), so importing one light submodule
(`evaluate.protocols`: `sam3d-eval protocols`, `--help`) loads neither torch nor the scoring code.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the eager imports, for type checkers and editors
    from .appearance import appearance_metrics, load_lpips_or_none
    from .failures import failure_reason, failure_summary
    from .protocols import PROTOCOLS, Protocol, get_protocol, load_protocol
    from .runner import RunDirError, RunResult, run_evaluation
    from .scoring import BatchScores, score_batch
    from .sources import FolderSource, PredictionSource, PredictorSource, find_pairs, load_prediction
    from .summary import domain_gap, gap_change, occlusion_accuracy, summarize
    from .surface import SurfaceMetrics, surface_metrics

_HOMES = {
    "appearance_metrics": "appearance", "load_lpips_or_none": "appearance",
    "failure_reason": "failures", "failure_summary": "failures",
    "RunDirError": "runner", "RunResult": "runner", "run_evaluation": "runner",
    "PROTOCOLS": "protocols", "Protocol": "protocols", "get_protocol": "protocols", "load_protocol": "protocols",
    "BatchScores": "scoring", "score_batch": "scoring",
    "FolderSource": "sources", "PredictionSource": "sources", "PredictorSource": "sources", "find_pairs": "sources",
    "load_prediction": "sources",
    "domain_gap": "summary", "gap_change": "summary", "occlusion_accuracy": "summary", "summarize": "summary",
    "SurfaceMetrics": "surface", "surface_metrics": "surface",
}

__all__ = [
    "PROTOCOLS",
    "BatchScores",
    "score_batch",
    "Protocol",
    "SurfaceMetrics",
    "get_protocol",
    "load_protocol",
    "failure_reason",
    "failure_summary",
    "surface_metrics",
    "appearance_metrics",
    "load_lpips_or_none",
    "FolderSource",
    "PredictionSource",
    "PredictorSource",
    "RunDirError",
    "RunResult",
    "domain_gap",
    "find_pairs",
    "gap_change",
    "load_prediction",
    "occlusion_accuracy",
    "run_evaluation",
    "summarize",
]


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
