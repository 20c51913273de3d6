"""`python -m sam3d_eval` and `torchrun -m sam3d_eval`: the `sam3d-eval` command line."""

import sys

from sam3d_eval.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
