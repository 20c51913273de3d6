"""DDP through torchrun (gloo on CPU): two processes equal one with the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from train_fixtures import ToyData, tiny_config

from sam3d_eval.models import ReferenceModel, read_checkpoint
from sam3d_eval.seeding import stream_seed
from sam3d_eval.train.loop import train

SCRIPT = Path(__file__).parent / "train_ddp_script.py"


def test_two_process_run_equals_one_process_run(tmp_path):
    """Two ranks all-reduce the gradients of their half-batches; one process accumulating the same two
    half-batch gradients (grad_accumulation=2) performs the same float32 additions, so the weights agree to
    the last bit (a+b is commutative; DDP's division by the world size and the accumulation's by the
    micro-batch count are both exact halvings)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    train(tiny_config(tmp_path / "one", grad_accumulation=2), ToyData(8, 32))  # one process, same arithmetic
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT), str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a = read_checkpoint(tmp_path / "one" / "final.safetensors")
    b = read_checkpoint(tmp_path / "two" / "final.safetensors")
    assert b.config["world_size"] == 2 and a.config["world_size"] == 1
    cfg = tiny_config(tmp_path / "unused")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(cfg.seed, "model_init"))
        init = ReferenceModel(cfg.model).state_dict()
    moved = max(float((v - init[k]).abs().max()) for k, v in a.prefixed("model/").items())
    assert moved > 1e-3  # the run trained
    for k, v in a.prefixed("model/").items():
        assert torch.equal(v, b.prefixed("model/")[k]), k

