"""Human judgements: preference votes and rubric ratings read, checked and analysed in one call."""

from __future__ import annotations

import os
from typing import Any, Sequence

__all__ = ["analyse_judgements"]


def analyse_judgements(votes_path: str | os.PathLike | None = None, ratings_path: str | os.PathLike | None = None,
                       *, models: Sequence[str] | None = None, resamples: int = 1000, seed: int = 0,
                       confidence: float = 0.95) -> dict[str, Any]:
    """The JSON-ready analysis of a votes file and/or a ratings file (`io.judgements` reads and checks them).

    Returns:
        ``{"preference": the preference summary's dict or None, "rubric": the rubric summary's dict or None,
        "inputs": {"votes": path, "ratings": path}}``. Raises `io.judgements.JudgementFileError` (a ValueError
        naming the file and line) for a bad file.
    """
    from ..io.judgements import read_ratings, read_votes
    from ..stats.preference import preference_summary
    from ..stats.rubric import rubric_summary

    doc: dict[str, Any] = {"preference": None, "rubric": None,
                           "inputs": {"votes": None if votes_path is None else str(votes_path),
                                      "ratings": None if ratings_path is None else str(ratings_path)}}
    if votes_path is not None:
        votes = read_votes(votes_path, models)
        doc["preference"] = preference_summary(votes, bootstrap=resamples, seed=seed, confidence=confidence).to_dict()
    if ratings_path is not None:
        ratings = read_ratings(ratings_path)
        doc["rubric"] = rubric_summary(ratings, confidence=confidence).to_dict()
    return doc
