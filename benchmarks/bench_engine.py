"""Seconds per data-engine round at the demo size on the CPU (training/engine.toml: 12 real images x 4
proposers, 3 simulated raters, fine-tuning 4 epochs of 64 samples, test-split evaluation with 2000 surface
samples), with the round's own split from its stored summary.

Setup (untimed): the benchmark data and the pretrained suite, made under a temporary folder, or copied from
an existing engine run of the same config when SAM3D_BENCH_ENGINE_FROM=runs/engine (its benchmark/ and
suite/ folders: pretraining is independent of everything the round does). Timed: one call of `run_engine`
that does exactly one round (round 1).

Run: `python -m pytest benchmarks/bench_engine.py --benchmark-only -s`
Quick mode (`--quick`, benchmarks/sizes.py) has no tiny engine: it skips unless SAM3D_BENCH_ENGINE_FROM
names a pre-built run (pretraining from scratch takes minutes).
"""

import os
import shutil
from pathlib import Path

import pytest

from sam3d_eval.engine import load_engine_config, run_engine
from sam3d_eval.runtime import runtime_policy
from sizes import sizes_for

S = sizes_for("engine")
CONFIG = Path(__file__).resolve().parents[1] / S.CONFIG


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    src = os.environ.get("SAM3D_BENCH_ENGINE_FROM")
    if S.QUICK and not src:
        pytest.skip("quick mode: the engine round needs a pre-built run (set SAM3D_BENCH_ENGINE_FROM=runs/engine)")
    out = tmp_path_factory.mktemp("engine")
    if src:
        for name in ("benchmark", "suite"):
            shutil.copytree(Path(src) / name, out / name)
    cfg = load_engine_config(CONFIG, out_dir=str(out))
    with runtime_policy("cpu"):
        run_engine(cfg, stop_after=0)  # data, pretraining, round-0 evaluation
    return cfg


def test_seconds_per_round(benchmark, prepared):
    def one_round():
        with runtime_policy("cpu"):
            return run_engine(prepared, stop_after=1)

    res = benchmark.pedantic(one_round, rounds=1, iterations=1)
    r = res.rounds.iloc[0]
    # no peer to compare with: the timed round must have done the recipe's work (checked after the clock)
    assert int(r["images"]) > 0 and int(r["candidates"]) >= int(r["images"]) and int(r["train_steps"]) > 0
    benchmark.extra_info.update({"images": int(r["images"]), "candidates": int(r["candidates"]),
                                 "train_steps": int(r["train_steps"]), "round_seconds": float(r["seconds"])})
    print(f"\nengine round at demo size: {r['seconds']:.1f} s ({r['images']} images x "
          f"{r['candidates'] // r['images']} candidates, {r['train_steps']} fine-tuning steps)")
