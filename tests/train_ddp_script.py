"""Run by tests/test_train_ddp.py under torchrun (or alone): a tiny stage-1 run into argv[1]."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from train_fixtures import ToyData, tiny_config  # noqa: E402

from sam3d_eval.train.loop import train  # noqa: E402

if __name__ == "__main__":
    train(tiny_config(sys.argv[1], stage=int(sys.argv[2]) if len(sys.argv) > 2 else 1), ToyData(8, 32))
