"""Evaluation: protocols and batched scoring, prediction sources, the runner and its results store, summaries."""

from .appearance import appearance_metrics, load_lpips_or_none
from .failures import failure_reason, failure_summary
from .runner import RunDirError, RunResult, run_evaluation
from .protocols import PROTOCOLS, Protocol, get_protocol, load_protocol
from .scoring import BatchScores, score_batch
from .sources import FolderSource, PredictionSource, PredictorSource, find_pairs, load_prediction
from .summary import domain_gap, gap_change, occlusion_accuracy, summarize
from .surface import SurfaceMetrics, surface_metrics

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
