"""Seconds per data-engine round at the demo size on the CPU (training/engine.toml: 12 real images x 4
proposers, 3 simulated raters, fine-tuning 4 epochs of 64 samples, test-split evaluation with 2000 surface
samples), with the round's own split from its stored summary.

Setup (untimed): the benchmark data and the pretrained suite, made under a temporary folder, or copied from
an existing engine run of the same config when SAM3D_BENCH_ENGINE_FROM=runs/engine (its benchmark/ and
suite/ folders: pretraining is independent of everything the round does). Timed: one call of `run_engine`
that does exactly one round (round 1).

Run: `python -m pytest benchmarks/bench_engine.py --benchmark-only -s`
"""

import os
import shutil
from pathlib import Path

import pytest

from sam3d_eval.engine import load_engine_config, run_engine
from sam3d_eval.runtime import runtime_policy

CONFIG = Path(__file__).resolve().parents[1] / "training" / "engine.toml"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("engine")
    src = os.environ.get("SAM3D_BENCH_ENGINE_FROM")
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
    benchmark.extra_info.update({"images": int(r["images"]), "candidates": int(r["candidates"]),
                                 "train_steps": int(r["train_steps"]), "round_seconds": float(r["seconds"])})
    print(f"\nengine round at demo size: {r['seconds']:.1f} s ({r['images']} images x "
          f"{r['candidates'] // r['images']} candidates, {r['train_steps']} fine-tuning steps)")
