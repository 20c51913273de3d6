"""Interrupted training: Ctrl-C / SIGTERM save the state, a crash loses at most `checkpoint_every` steps, and the
resumed run is bitwise the uninterrupted one (weights, AdamW state, every logged term) with each step logged once."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_fixtures import ToyData, tiny_config

from sam3d_eval.models import read_checkpoint
from sam3d_eval.train import loop
from sam3d_eval.train.loop import TrainConfig, train

SCRIPT = Path(__file__).parent / "train_ddp_script.py"


@pytest.fixture(scope="module")
def data():
    return ToyData(8, 32)


@pytest.fixture(scope="module")
def full_runs(tmp_path_factory, data):
    """The uninterrupted tiny run of each stage (8 steps: 4 epochs of 2)."""
    root = tmp_path_factory.mktemp("full")
    return {stage: train(tiny_config(root / f"s{stage}", stage), data).log_path.parent for stage in (1, 2)}


def _assert_bitwise(a: Path, b: Path) -> None:
    ta, tb = read_checkpoint(a).tensors, read_checkpoint(b).tensors
    assert set(ta) == set(tb) and any(k.startswith("model/") for k in ta)
    if a.name == "last.safetensors":
        assert any(k.startswith("optim/") for k in ta)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def _events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _steps(run: Path) -> list[dict]:
    """The step events without their wall-clock times: the same list when the runs did the same arithmetic
    (every term, the lr and the gradient norm are logged at full float precision)."""
    return [{k: v for k, v in e.items() if k != "elapsed_s"} for e in _events(run) if e["event"] == "step"]


@pytest.mark.parametrize("stage", [1, 2])
def test_sigint_inside_a_phase_saves_the_state_and_resumes_bitwise(tmp_path, data, full_runs, stage):
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def ctrl_c(step, total, terms):
        if step == 3:  # inside epoch 2 of 2 steps: mid-phase in both stages (stage 1 is one phase)
            os.kill(os.getpid(), signal.SIGINT)

    cfg = tiny_config(tmp_path, stage)
    with pytest.raises(KeyboardInterrupt) as info:
        train(cfg, data, progress=ctrl_c)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # put back
    assert read_checkpoint(tmp_path / "last.safetensors").config["step"] == 3
    assert not (tmp_path / "final.safetensors").exists()
    assert isinstance(info.value, loop.TrainingInterrupted) and info.value.step == 3
    assert _events(tmp_path)[-1]["event"] == "interrupted"

    rest = train(cfg, data)
    assert rest.steps == 8 and not rest.stopped_early
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    _assert_bitwise(full_runs[stage] / "last.safetensors", tmp_path / "last.safetensors")
    _assert_bitwise(full_runs[stage] / "final.safetensors", tmp_path / "final.safetensors")
    # Every step logged once, with the uninterrupted run's terms, lr and gradient norm to the last bit.
    assert _steps(tmp_path) == _steps(full_runs[stage])
    starts = [e["step"] for e in _events(tmp_path) if e["event"] == "start"]
    assert starts == [0, 3]


def test_a_crash_loses_only_the_steps_since_the_last_periodic_checkpoint(tmp_path, data, full_runs):
    """A process killed outright (here: an exception out of a step, which saves nothing) resumes from the
    `checkpoint_every` save before it; what it logged after that save is cut from log.jsonl."""

    def crash(step, total, terms):
        if step == 5:
            raise RuntimeError("killed")

    cfg = tiny_config(tmp_path, 1, checkpoint_every=3)
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg, data, progress=crash)
    assert read_checkpoint(tmp_path / "last.safetensors").config["step"] == 3
    assert [e["step"] for e in _steps(tmp_path)] == [1, 2, 3, 4]

    train(cfg, data)
    assert [e["step"] for e in _events(tmp_path) if e["event"] == "start"] == [0, 3]
    assert _steps(tmp_path) == _steps(full_runs[1])
    _assert_bitwise(full_runs[1] / "final.safetensors", tmp_path / "final.safetensors")
    # A fresh start (resume=False) starts the log over too: nothing of the old run's steps is left.
    train(cfg, data, resume=False)
    assert _steps(tmp_path) == _steps(full_runs[1])


def test_a_signal_inside_the_evaluation_hook_stops_at_once_and_the_hook_runs_again(tmp_path, data, full_runs):
    calls: list[str] = []
    interrupt_in = ["mix50-50"]

    def hook(phase, path, model):
        calls.append(phase.name)
        assert path.exists() and not model.training
        if phase.name in interrupt_in:  # inside the second phase's evaluation, once
            interrupt_in.clear()
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)  # not reached: the signal raises at once inside the hook

    cfg = tiny_config(tmp_path, 2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, on_phase_end=hook)
    assert calls == ["mix80-20", "mix50-50"]
    assert read_checkpoint(tmp_path / "last.safetensors").config["step"] == 4

    calls.clear()
    train(cfg, data, on_phase_end=hook)
    assert calls == ["mix50-50", "mix20-80", "real100"]  # the interrupted evaluation first, then the rest
    _assert_bitwise(full_runs[2] / "final.safetensors", tmp_path / "final.safetensors")
    assert _steps(tmp_path) == _steps(full_runs[2])
    assert [e["phase"] for e in _events(tmp_path) if e["event"] == "phase_end"] == \
        ["mix80-20", "mix50-50", "mix20-80", "real100"]


def test_checkpoint_every_is_a_documented_positive_step_count():
    assert TrainConfig().checkpoint_every == 100
    assert "checkpoint_every" in TrainConfig.__doc__
    readme = (Path(__file__).parents[1] / "training" / "README.md").read_text()
    assert "`checkpoint_every`" in readme
    for bad in (0, -5, 2.5, "100", True):
        with pytest.raises(ValueError, match="checkpoint_every"):
            TrainConfig(checkpoint_every=bad)


TINY = """
out_dir = "{out}"
[data]
image_size = 32
[data.generate]
out = "{bench}"
synthetic = 4
real = 4
seed = 3
image_size = 32
split_fractions = [1.0, 0.0, 0.0]
[stage1]
epochs = 4
epoch_size = 4
batch_size = 2
warmup_steps = 1
log_every = 1
[stage1.model]
input_size = 32
channels = [4, 8]
feature_dim = 8
decoder_hidden = 8
ico_level = 1
[stage1.loss]
num_points = 100
render_size = 16
view_azimuths = [30.0]
view_elevations = [20.0]
"""


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before reaching the pause (exit {proc.returncode}):\n"
                                 + proc.stderr.read()[-3000:])
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {path.name} after {timeout} s")
        time.sleep(0.02)


def test_ctrl_c_to_the_cli_exits_130_with_the_state_saved_and_a_rerun_continues_bitwise(tmp_path):
    """A real SIGINT to `sam3d-eval train` in its own process, paused after step 3 of 8 so the signal lands
    at a known step; the rerun of the same command finishes the uninterrupted run's weights."""
    from sam3d_eval.cli.main import main

    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY.format(out=(tmp_path / "run").as_posix(), bench=(tmp_path / "bench").as_posix()))
    args = ["train", "--config", str(recipe), "--no-eval", "--quiet"]
    sig = tmp_path / "sig"
    sig.mkdir()
    env = {**os.environ, "PAUSE_AT": "3", "SIGNAL_DIR": str(sig)}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(sig / "ready-0", proc)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)  # the handler has run before the paused step returns
        (sig / "go").touch()
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err and "state is saved" in out
    run = tmp_path / "run" / "stage1"
    assert read_checkpoint(run / "last.safetensors").config["step"] == 3
    assert not (run / "final.safetensors").exists()

    assert main(args) == 0  # the same command again continues
    assert main([*args, "--out", str(tmp_path / "full")]) == 0  # the uninterrupted run
    full = tmp_path / "full" / "stage1"
    _assert_bitwise(full / "final.safetensors", run / "final.safetensors")
    assert _steps(run) == _steps(full) and len(_steps(run)) == 8


def test_a_log_without_its_saved_length_keeps_the_steps_up_to_the_resumed_one(tmp_path):
    """A state saved without the log's length (an older checkpoint), or a length that does not end a line:
    the step events after the resumed step go, and so does a line cut by a kill; the rest stays in order."""
    lines = [{"event": "start", "step": 0}, {"event": "epoch", "epoch": 0}] + \
        [{"event": "step", "step": k} for k in range(1, 6)]
    text = "".join(json.dumps(e) + "\n" for e in lines) + '{"event": "step", "st'
    log = tmp_path / "log.jsonl"
    for size in (None, 7, len(text.encode()) + 1):
        log.write_text(text)
        loop._cut_log(log, size, 3)
        assert [json.loads(x) for x in log.read_text().splitlines()] == lines[:5]
    log.write_text(text)
    cut = len("".join(json.dumps(e) + "\n" for e in lines[:4]).encode())
    loop._cut_log(log, cut, 2)  # the saved length: exactly what was logged when the state was saved
    assert [json.loads(x) for x in log.read_text().splitlines()] == lines[:4]


def test_repeated_signals_escalate_only_on_a_second_deliberate_ctrl_c(monkeypatch):
    """A scheduler's repeated SIGTERM (scancel, torchrun forwarding it) and a Ctrl-C delivered twice within a
    second (the terminal and torchrun) must not skip the save; a second Ctrl-C a second later stops at once."""
    clock = [100.0]
    monkeypatch.setattr(loop.time, "monotonic", lambda: clock[0])
    stop = loop._StopRequest()
    stop._handle(signal.SIGTERM, None)
    stop._handle(signal.SIGTERM, None)  # no KeyboardInterrupt
    assert stop.signum == signal.SIGTERM
    stop = loop._StopRequest()
    stop._handle(signal.SIGINT, None)
    clock[0] += 0.2
    stop._handle(signal.SIGINT, None)  # the same Ctrl-C delivered twice
    clock[0] += 1.0
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)


def test_a_signal_after_the_last_check_still_reports_the_interruption(tmp_path, data, monkeypatch):
    """A signal during the final saves sets the request after the loop's last look at it: train() must not
    return as if the stage had simply finished (the CLI would go on to the next stage)."""
    real = loop._train

    def late(cfg, data, ctx, resume, on_phase_end, log, progress, stop):
        result = real(cfg, data, ctx, resume, on_phase_end, log, progress, stop)
        stop.request(signal.SIGTERM)  # as if delivered during the final save
        return result

    monkeypatch.setattr(loop, "_train", late)
    with pytest.raises(loop.TrainingInterrupted) as err:
        train(tiny_config(tmp_path / "late"), data)
    assert err.value.signum == signal.SIGTERM and (tmp_path / "late" / "last.safetensors").is_file()


def test_an_evaluation_run_again_replaces_its_gap_rows(tmp_path):
    from types import SimpleNamespace

    import pandas as pd

    from sam3d_eval.train.hooks import PhaseEvaluator

    fake = SimpleNamespace(gap_table=tmp_path / "gap.csv")
    rows = [{"stage": 1, "phase": "synthetic", "checkpoint": "s1/p.safetensors", "metric": m, "estimate": v}
            for m, v in (("chamfer_l2", 1.3), ("fscore@0.05", 0.1))]
    PhaseEvaluator._append(fake, rows)
    PhaseEvaluator._append(fake, [dict(r, phase="mix80-20", checkpoint="s2/p1.safetensors") for r in rows])
    PhaseEvaluator._append(fake, rows)  # the stage-1 evaluation again, after an interruption
    gap = pd.read_csv(fake.gap_table)
    assert len(gap) == 4 and sorted(gap["phase"].value_counts().tolist()) == [2, 2]
