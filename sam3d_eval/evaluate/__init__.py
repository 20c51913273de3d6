"""Per-sample scoring: prediction folders against ground truth, geometry under a protocol and appearance."""

from .appearance import appearance_metrics, load_lpips_or_none
from .pairs import PairResult, SamplePair, find_pairs, load_prediction, score_pairs
from .protocols import PROTOCOLS, GeometryRow, Protocol, evaluate_geometry, get_protocol
from .surface import SurfaceMetrics, surface_metrics

__all__ = [
    "PROTOCOLS",
    "GeometryRow",
    "Protocol",
    "SurfaceMetrics",
    "evaluate_geometry",
    "get_protocol",
    "surface_metrics",
    "PairResult",
    "SamplePair",
    "appearance_metrics",
    "find_pairs",
    "load_lpips_or_none",
    "load_prediction",
    "score_pairs",
]
