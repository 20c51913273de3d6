"""Run by the train tests under torchrun or alone.

    train_ddp_script.py OUT [STAGE [JSON]]   a tiny run: train_fixtures.tiny_config(OUT, STAGE, **JSON) on ToyData
    train_ddp_script.py cli ARGS...          `sam3d-eval ARGS...`, exiting with the CLI's code

With PAUSE_AT=k and SIGNAL_DIR set, every rank pauses after its step k, writes SIGNAL_DIR/ready-<rank>
(holding its pid) and waits for SIGNAL_DIR/go: a test can then signal a process at a known step.
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from train_fixtures import ToyData, tiny_config  # noqa: E402

import sam3d_eval.train.loop as loop  # noqa: E402

_train = loop.train


def _paused_train(cfg, data, **kwargs):
    """`loop.train` whose progress callback waits at step PAUSE_AT for SIGNAL_DIR/go."""
    pause_at, folder = os.environ.get("PAUSE_AT"), os.environ.get("SIGNAL_DIR")
    inner = kwargs.get("progress")

    def progress(step, total, terms):
        if inner is not None:
            inner(step, total, terms)
        if pause_at is not None and step == int(pause_at):
            rank = os.environ.get("RANK", "0")
            tmp = Path(folder) / f".ready-{rank}.tmp"  # renamed whole: the test never reads a half-written pid
            tmp.write_text(str(os.getpid()))
            os.replace(tmp, Path(folder) / f"ready-{rank}")
            deadline = time.monotonic() + 60.0
            while not (Path(folder) / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.01)

    return _train(cfg, data, **{**kwargs, "progress": progress})


loop.train = _paused_train  # the CLI imports `train` from the module when it runs

if __name__ == "__main__":
    if sys.argv[1] == "cli":
        from sam3d_eval.cli.main import main

        sys.exit(main(sys.argv[2:]))
    overrides = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    stage = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    loop.train(tiny_config(sys.argv[1], stage=stage, **overrides), ToyData(8, 32))
