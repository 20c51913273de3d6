"""Entry point of `sam3d-eval`: parses arguments, runs a command, turns user errors into one-line messages."""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
from typing import Sequence

from .. import __version__
from . import compare, data, demo, engine, eval_meshes, evaluate, preference, report, train

# Module level imports only the standard library and the command modules (which import nothing heavy at
# module level): `--help` and `--version` answer without loading torch, trimesh, scipy or pandas.

EXIT_USER_ERROR = 2

DESCRIPTION = """\
Evaluate single-image-to-3D predictions against ground truth, pytorch3d-compatible and fast.

Geometry is compared under a named, versioned protocol (`sam3d-eval protocols` lists them; --protocol picks
one), recorded with every result. The default protocol normalises each prediction and its
ground truth jointly so the GT bounding box fits the unit cube, then samples both surfaces and scores
Chamfer-L2 (pytorch3d: squared distances, directional means summed), Chamfer-L1 (Euclidean, averaged),
F-score at thresholds tau (fractions of the unit cube's side) and normal consistency. Other presets
reproduce SAM 3D, Mesh R-CNN, Occupancy Networks and ZeroShape (alignment, normalisation, Chamfer variant).
"""

EPILOG = """\
examples:
  sam3d-eval demo                                  the main job: built-in data, stage 1 + stage 2 training,
                                                   gap at every phase, compare, HTML report (reports/demo)
  sam3d-eval demo --quick                          built-in procedural shapes scored, in seconds
  sam3d-eval evaluate preds/ --data manifest.csv --out runs/a
                                                   manifest-driven, resumable (--resume), strata summaries
  torchrun --nproc-per-node 4 -m sam3d_eval evaluate preds/ --data manifest.csv --out runs/a
                                                   the same, sharded over 4 processes
  sam3d-eval eval-meshes preds/ gts/ -o out.csv    folders keyed by sample id (file stem)
  sam3d-eval eval-meshes pred.glb gt.obj           one pair
  sam3d-eval protocols                             the protocol presets and their sources
  sam3d-eval eval-meshes preds/ gts/ --protocol meshrcnn --samples 20000

exit codes: 0 success, 1 some samples failed (with --strict), 2 bad input (one-line message; --debug shows
the traceback), 3 an internal error, 130 interrupted (an evaluate run continues with --resume).
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
    for module in (demo, evaluate, eval_meshes, compare, report, train, data, preference, engine):
        module.add_parser(sub)
    p = sub.add_parser(
        "protocols", help="list the evaluation protocol presets",
        description="List the protocol presets: name, version, alignment, normalisation, samples, metrics, "
                    "F-score thresholds and the source each reproduces.",
    )
    p.set_defaults(run=run_protocols)
    return parser


def format_protocols() -> str:
    """A table of the presets followed by each one's normalisation in words and its source."""
    from ..evaluate.protocols import NORMALIZATIONS, PROTOCOLS

    header = ["name", "version", "alignment", "normalisation", "samples", "metrics", "taus"]
    rows = []
    for pr in PROTOCOLS.values():
        metrics = [("chamfer[" + ",".join(pr.chamfer) + "]") if m == "chamfer" else m for m in pr.metrics]
        rows.append([pr.name, pr.version, pr.alignment, pr.normalization, f"{pr.num_samples:,}",
                     " ".join(metrics), ",".join(f"{t:g}" for t in pr.taus) or "-"])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    lines = [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows), ""]
    for pr in PROTOCOLS.values():
        lines.append(f"{pr.name} v{pr.version}: normalisation = {NORMALIZATIONS[pr.normalization]}")
        lines.append(f"  source: {pr.source}")
    return "\n".join(lines)


def run_protocols(args: argparse.Namespace) -> int:
    print(format_protocols())
    return 0


@contextlib.contextmanager
def _one_line_warnings():
    """The suite's own warnings (a result part left out, ...) as one line each on stderr, every time; other
    libraries' warnings as Python shows them."""
    import warnings

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith("sam3d_eval"):
            print(f"sam3d-eval: warning: {message}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.filterwarnings("always", module=r"sam3d_eval\.")
        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        with _one_line_warnings():
            return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"sam3d-eval: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        hint = " (the batches already stored are kept: rerun with --resume)" if args.command == "evaluate" else ""
        print(f"sam3d-eval: interrupted{hint}", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the one place that turns bugs into an exit code
        if args.debug:
            traceback.print_exc()
        print(f"sam3d-eval: internal error: {type(err).__name__}: {err} (rerun with --debug)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
