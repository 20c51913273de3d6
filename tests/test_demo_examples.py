"""The checked-in demo examples: their headline tables recompute from their own per-sample results."""

import pathlib
import runpy

import numpy as np
import pandas as pd
import pytest

REPORTS = pathlib.Path(__file__).resolve().parents[1] / "reports"
EXAMPLES = [REPORTS / "demo-example", REPORTS / "demo-heldout"]


@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: p.name)
def test_gap_change_recomputes_from_the_checked_in_results(folder):
    recompute = runpy.run_path(str(REPORTS / "recompute_demo.py"))["recompute"]
    change, gaps = recompute(folder, parts=())
    stored = pd.read_csv(folder / "gap_change.csv")
    assert list(change["metric"]) == list(stored["metric"]) and (change["n_runs_a"] >= 3).all()
    for col in ("estimate_a", "estimate_a_low", "estimate_a_high", "estimate_b", "closed", "closed_low",
                "closed_high", "closed_by_real", "closed_by_real_low", "closed_by_real_high"):
        # the same sums from Parquet as from the run's parts: equal up to float64 rounding
        np.testing.assert_allclose(change[col].to_numpy(float), stored[col].to_numpy(float), rtol=1e-9, err_msg=col)
    # every seed's stage-1 gap in the demo's own gap.csv is one of the per-run figures averaged here
    g = gaps[1].set_index("metric").loc["chamfer_l2"]
    per_seed = [pd.read_csv(s / "gap.csv").query("stage == 1 and metric == 'chamfer_l2'")["estimate"].iloc[-1]
                for s in sorted(folder.glob("seed*"))]
    assert g.estimate == pytest.approx(np.mean(per_seed), rel=1e-9)
    assert g.run_min == pytest.approx(min(per_seed), rel=1e-9) and g.run_max == pytest.approx(max(per_seed), rel=1e-9)
