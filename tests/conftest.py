import pathlib

import numpy as np
import pytest

GOLDEN_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "golden"


@pytest.fixture(scope="session")
def golden_dir() -> pathlib.Path:
    if not GOLDEN_DIR.is_dir():
        pytest.fail(f"golden references not found at {GOLDEN_DIR}: clone next to shared/ (see README)")
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def p3d_golden(golden_dir):
    return dict(np.load(golden_dir / "pytorch3d_reference.npz"))
