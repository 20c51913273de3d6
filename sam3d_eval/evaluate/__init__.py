"""Per-sample scoring runners."""

from .pairs import PairResult, SamplePair, find_pairs, score_pairs

__all__ = ["PairResult", "SamplePair", "find_pairs", "score_pairs"]
