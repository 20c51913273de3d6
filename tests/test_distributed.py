"""`torchrun --nproc-per-node 2 -m sam3d_eval evaluate ...` on the CPU (gloo) stores what one process stores."""

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from sam3d_eval.cli.main import main
from sam3d_eval.data.shapes import make_shape
from sam3d_eval.io import read_results
from sam3d_eval.io.mesh_io import save_mesh


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this torch build has no gloo backend")
def test_two_ranks_store_what_one_process_stores(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    rows = []
    for i in range(5):
        name = ("sphere", "box", "torus")[i % 3]
        v, f = make_shape(name)
        save_mesh(tmp_path / "gt" / f"x{i}.ply", (torch.from_numpy(v), torch.from_numpy(f)))
        if i != 3:  # x3 has no prediction: a failed row, on whichever rank owns it
            save_mesh(tmp_path / "pred" / f"x{i}.ply", (torch.from_numpy(v * (1 + 0.03 * i)), torch.from_numpy(f)))
        rows.append(dict(sample_id=f"x{i}", gt_mesh=f"gt/x{i}.ply", domain=("synthetic", "real")[i % 2],
                         occlusion=0.2 * i, category=name))
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    args = ["evaluate", str(tmp_path / "pred"), "--data", str(tmp_path / "m.csv"), "--samples", "400",
            "--batch-size", "2"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "sam3d_eval", *args, "--out", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "protocol: default" in proc.stdout  # rank 0 prints the summary of everyone's rows
    assert main([*args, "--out", str(tmp_path / "one")]) == 0

    two, one = read_results(tmp_path / "two"), read_results(tmp_path / "one")
    assert sorted(two["rank"].unique()) == [0, 1]
    assert list(two["sample_id"]) == list(one["sample_id"]) == [f"x{i}" for i in range(5)]
    cols = ["status", "error", "domain", "occlusion", "category", "transform", *one.attrs["metrics"]]
    pd.testing.assert_frame_equal(two[cols], one[cols])
    # every rank hashed its share of the files: the content keys are the one-process run's
    keys = ["pred_sha256", "gt_sha256", "row_sha256"]
    assert two[keys].notna().all().all()
    pd.testing.assert_frame_equal(two[keys], one[keys])
    # an overwritten prediction, resumed on two ranks: that sample alone is scored again, with the new value
    import shutil

    shutil.copy(tmp_path / "pred" / "x2.ply", tmp_path / "pred" / "x1.ply")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "sam3d_eval", *args, "--out", str(tmp_path / "two"), "--resume"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = read_results(tmp_path / "two").set_index("sample_id")
    before = two.set_index("sample_id")
    rescored = sorted(after.index[after["written_at"] != before["written_at"]])
    assert rescored == ["x1", "x3"]  # the overwritten one, and x3, whose failure is retried
    assert main([*args, "--out", str(tmp_path / "fresh")]) == 0
    fresh = read_results(tmp_path / "fresh").set_index("sample_id")
    m = one.attrs["metrics"][0]
    assert after.loc["x1", m] == fresh.loc["x1", m] != before.loc["x1", m]
