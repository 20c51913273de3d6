"""DDP through torchrun (gloo on CPU): two processes equal one with the same global batch, and stop together."""

import json
import os
import signal
import subprocess
import sys
import time
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



def test_sigterm_to_one_rank_stops_every_rank_after_the_same_step_and_the_run_resumes(tmp_path):
    """SIGTERM reaches rank 1 only, while both ranks are paused after step 3: the stop flag is all-reduced
    before the next step, so both stop after step 3 (neither hangs in a collective), rank 0 saves the state,
    and one process resuming it with the same arithmetic (grad_accumulation=2) ends on the weights of the
    uninterrupted run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PAUSE_AT": "3", "SIGNAL_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
         str(tmp_path / "two")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready-{r}").exists() for r in (0, 1)):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the ranks never reached step 3"
            time.sleep(0.02)
        time.sleep(0.1)  # both pid files complete
        os.kill(int((tmp_path / "ready-1").read_text()), signal.SIGTERM)
        time.sleep(0.2)  # the handler has run before the paused step returns
        (tmp_path / "go").touch()
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0  # the workers raised TrainingInterrupted
    assert "TrainingInterrupted" in err, err[-3000:]
    last = read_checkpoint(tmp_path / "two" / "last.safetensors")
    assert last.config["step"] == 3 and last.config["world_size"] == 2
    events = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "interrupted" and events[-1]["step"] == 3
    assert not (tmp_path / "two" / "final.safetensors").exists()

    data = ToyData(8, 32)
    train(tiny_config(tmp_path / "two", grad_accumulation=2), data)  # resume in one process
    train(tiny_config(tmp_path / "one", grad_accumulation=2), data)  # the uninterrupted run
    a = read_checkpoint(tmp_path / "one" / "final.safetensors").prefixed("model/")
    b = read_checkpoint(tmp_path / "two" / "final.safetensors").prefixed("model/")
    assert set(a) == set(b)
    for k, v in a.items():
        assert torch.equal(v, b[k]), k
