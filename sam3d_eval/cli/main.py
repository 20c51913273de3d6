"""Entry point of `sam3d-eval`: parses arguments, runs a command, turns user errors into one-line messages."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Sequence

from .. import __version__
from . import demo, eval_meshes

EXIT_USER_ERROR = 2

DESCRIPTION = """\
Evaluate single-image-to-3D predictions against ground truth, pytorch3d-compatible and fast.

Geometry is compared under the default protocol of DESIGN.md: each prediction and its ground truth are
normalised jointly so the GT bounding box fits the unit cube, then both surfaces are sampled and scored with
Chamfer-L2 (pytorch3d: squared distances, directional means summed), Chamfer-L1 (Euclidean, averaged),
F-score at thresholds tau (fractions of the unit cube's side) and normal consistency.
"""

EPILOG = """\
examples:
  sam3d-eval demo                                  built-in procedural shapes, end to end
  sam3d-eval eval-meshes preds/ gts/ -o out.csv    folders keyed by sample id (file stem)
  sam3d-eval eval-meshes pred.glb gt.obj           one pair

exit codes: 0 success, 1 some samples failed (with --strict), 2 bad input (one-line message; --debug shows
the traceback), 3 an internal error.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sam3d-eval",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sam3d-eval {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (demo, eval_meshes):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"sam3d-eval: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("sam3d-eval: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the one place that turns bugs into an exit code
        if args.debug:
            traceback.print_exc()
        print(f"sam3d-eval: internal error: {type(err).__name__}: {err} (rerun with --debug)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
