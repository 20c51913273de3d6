import pathlib

import numpy as np
import pytest

# Copies of the shared golden set (independent implementations on seeded inputs); provenance in tests/golden/README.md.
GOLDEN_DIR = pathlib.Path(__file__).resolve().parent / "golden"


@pytest.fixture(scope="session")
def golden_dir() -> pathlib.Path:
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def p3d_golden(golden_dir):
    return dict(np.load(golden_dir / "pytorch3d_reference.npz"))
