"""`rater_agreement` (array code) against the per-vote loop it replaced, kept here as the reference: every
number (votes, ties, shared, agreement, consistency, circular triads) must come out identical."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from sam3d_eval.stats import bradley_terry
from rater_agreement_loop import reference_circular_triads, reference_rater_agreement
from sam3d_eval.stats.preference import rater_agreement


def _votes(seed: int, n: int, models: int, items: int, raters: int, tie_p: float = 0.15) -> pd.DataFrame:
    """Random votes; few items and models so that units are shared, majorities tie and triads close
    (repeated pairs by one rater on one item included: the counts must not assume a validated file)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, models, n)
    b = (a + rng.integers(1, models, n)) % models
    winner = np.where(rng.random(n) < tie_p, "tie", np.where(rng.random(n) < 0.5, "a", "b"))
    return pd.DataFrame({"item_id": [f"i{k}" for k in rng.integers(0, items, n)], "model_a": [f"m{k}" for k in a],
                         "model_b": [f"m{k}" for k in b], "winner": winner,
                         "rater_id": [f"r{k}" for k in rng.integers(0, raters, n)]})


@pytest.mark.parametrize("seed, n, models, items, raters", [(0, 600, 5, 12, 4), (1, 2000, 8, 30, 6), (2, 300, 3, 4, 3)])
def test_rater_agreement_matches_the_loop_it_replaced(seed, n, models, items, raters):
    votes = _votes(seed, n, models, items, raters)
    board = bradley_terry(votes, bootstrap=0)
    for lb in (None, board):
        want = reference_rater_agreement(votes, lb)
        got = rater_agreement(votes, lb)
        assert want["circular_triads"].sum() > 0 and want["shared"].sum() > 0  # the input exercises both
        pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_circular_triads_with_mutual_edges_and_without_items():
    """A rater who votes both ways on a pair, and a frame without item_id (one group per rater)."""
    rows = [("x", "y", "a"), ("y", "z", "a"), ("z", "x", "a"),  # one cycle
            ("y", "x", "a"), ("z", "y", "a"), ("x", "z", "a"),  # the reverse cycle on the same triple
            ("x", "w", "a"), ("w", "y", "a"), ("w", "z", "b")]  # x>w>y>x and x>w, z>w ... more cycles
    votes = pd.DataFrame([{"model_a": a, "model_b": b, "winner": w, "rater_id": "r"} for a, b, w in rows])
    want = reference_rater_agreement(votes)
    pd.testing.assert_frame_equal(rater_agreement(votes), want, check_exact=True)
    assert want["circular_triads"].iloc[0] == 3
    votes["item_id"] = ["i1"] * 6 + ["i2"] * 3  # per item: {x, y, z} on i1, no triple on i2
    pd.testing.assert_frame_equal(rater_agreement(votes), reference_rater_agreement(votes), check_exact=True)
    assert rater_agreement(votes)["circular_triads"].iloc[0] == 1
    votes["item_id"] = ["i1"] * 6 + [None] * 3  # votes without an item are left out of the triads (the loop raised)
    assert rater_agreement(votes)["circular_triads"].iloc[0] == 1


def test_circular_triads_in_small_batches(monkeypatch):
    """The adjacency matrices go in batches (bounded memory): any batch size gives the same counts."""
    import sam3d_eval.stats.preference as preference

    votes = _votes(3, 3000, 6, 20, 5)
    want = reference_rater_agreement(votes)
    assert want["circular_triads"].sum() > 0
    for elements in (1, 40, 1000):  # one group per batch, a few, many
        monkeypatch.setattr(preference, "_TRIAD_ELEMENTS", elements)
        pd.testing.assert_frame_equal(rater_agreement(votes), want, check_exact=True)
