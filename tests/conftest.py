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


@pytest.fixture(autouse=True)
def cli_runtime_policy(request):
    """Every test runs under the runtime policy the CLI, runner and training loop enter (one torch thread on
    the CPU, large KD-tree queries threaded), as the product runs; tests of the policy itself opt out."""
    if request.node.get_closest_marker("no_runtime_policy"):
        yield
        return
    from sam3d_eval.runtime import runtime_policy

    with runtime_policy("cpu"):
        yield
