"""`sam3d-eval data make`: generate the built-in benchmark (images, masks, GT meshes, cameras, manifest).

Imports nothing heavy at module level (torch, trimesh, the data layer load inside `run_make`), so
`sam3d-eval --help` stays fast.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

SHIFT_HELP = ("wear, occluders, photo_background, harsh_light, hard_shadows, color_temperature, exposure, blur, "
              "sensor_noise, jpeg (or all)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data", help="generate the built-in benchmark (data make)",
        description="Built-in benchmark data: procedural objects rendered synthetic-clean and with the seed's "
                    "named real-world shifts.",
    )
    dsub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    m = dsub.add_parser(
        "make", help="generate images, masks, GT meshes and a manifest",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Generate N synthetic and M 'real' samples under OUT: images/ (PNG), masks/ (visible mask PNG), "
            "amodal/, meshes/ (GT .ply in the object frame), cameras/ (intrinsics + extrinsics JSON), records/, "
            "manifest.parquet and manifest.csv (the columns of docs/data.md, train/val/test split, one "
            "shift_<name> column per real-side shift with the intensity applied, 0 = off).\n\n"
            "The same --seed gives the same bytes whatever --workers; rerunning an interrupted command finishes "
            "it (complete samples are kept)."
        ),
        epilog="example: sam3d-eval data make --out bench --synthetic 200 --real 200 --seed 0 --workers 2 "
               "--shift jpeg=0.5 --shift wear=0",
    )
    m.add_argument("--out", type=pathlib.Path, required=True, help="output folder")
    m.add_argument("--synthetic", type=int, default=0, metavar="N", help="synthetic samples (default 0)")
    m.add_argument("--real", type=int, default=0, metavar="M", help="real-domain samples (default 0)")
    m.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    m.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    m.add_argument("--size", type=int, default=None, metavar="PX", help="square image size in pixels (default 128)")
    m.add_argument("--shift", action="append", default=None, metavar="NAME=STRENGTH",
                   help=f"strength in [0, 1] of a real-side shift, 0 switches it off; repeatable. Names: {SHIFT_HELP}")
    m.add_argument("--shift-prob", type=float, default=None, help="chance each shift hits a real image (default 0.8)")
    m.add_argument("--background-complexity", type=float, default=None,
                   help="maximum background complexity in [0, 1]: 0 empty, up to 0.5 simple, above cluttered (default 1)")
    m.add_argument("--second-object-prob", type=float, default=None, help="chance of a second object (default 0.5)")
    m.add_argument("--paired", action="store_true",
                   help="make each real sample the twin of the synthetic one with the same number (same object, "
                        "camera, scene, split; only the shifts differ), so the gap is measured object by object; "
                        "needs --synthetic equal to --real to pair every sample")
    m.add_argument("--config", type=pathlib.Path, default=None,
                   help="JSON or TOML file of generation settings (image_size, background_complexity, "
                        "second_object_prob, shifts {name: strength}, shift_prob, split_fractions, categories); "
                        "command-line options override it")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(run=run_make)
    p.set_defaults(run=lambda args: (p.print_help(), 2)[1])


class _Progress:
    """A one-line progress bar on stderr: done/total, rate and time left."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.monotonic()
        self.first: int | None = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.first is None:
            self.first = done
        made = done - self.first
        dt = time.monotonic() - self.start
        rate = made / dt if dt > 0 else 0.0
        eta = f"{(total - done) / rate:5.0f}s left" if rate > 0 else "      "
        width = 30
        fill = int(width * done / max(total, 1))
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} {rate:5.1f} samples/s {eta}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _check_out(out: pathlib.Path) -> None:
    """`--out` is a folder or does not exist yet: a file there, or a file in its place higher up, is a
    one-line error here rather than an OS error from deep in the generator."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                where = "" if p == out else f" ({p} is a file)"
                raise ValueError(f"--out {out}: names an existing file{where}; data make writes a folder of "
                                 "images, meshes and a manifest: give a new or existing folder")
            return


def run_make(args: argparse.Namespace) -> int:
    from ..config_io import read_config_file
    from ..data.generate import GenerationConfig, make_benchmark
    from ..data.shifts import parse_shift_settings
    from ..runtime import runtime_policy

    _check_out(args.out)
    settings = read_config_file(args.config) if args.config else {}
    settings["shifts"] = parse_shift_settings(args.shift, base=parse_shift_settings(settings.get("shifts")))
    for opt, key in (("size", "image_size"), ("shift_prob", "shift_prob"),
                     ("background_complexity", "background_complexity"), ("second_object_prob", "second_object_prob")):
        if getattr(args, opt) is not None:
            settings[key] = getattr(args, opt)
    if args.paired:
        settings["paired"] = True
    config = GenerationConfig.from_dict(settings, where=str(args.config) if args.config else "data make")
    with runtime_policy("cpu"):
        frame = make_benchmark(args.out, args.synthetic, args.real, args.seed, config, workers=args.workers,
                               progress=_Progress(not args.quiet))
    counts = frame["domain"].value_counts().to_dict()
    if config.paired and args.synthetic != args.real:
        print(f"note: --paired with {args.synthetic} synthetic and {args.real} real samples: the "
              f"{abs(args.synthetic - args.real)} beyond the first {min(args.synthetic, args.real)} of each domain have "
              "no twin and are left out of paired gap figures", file=sys.stderr)
    print(f"wrote {len(frame)} samples ({counts.get('synthetic', 0)} synthetic, {counts.get('real', 0)} real) "
          f"to {args.out} (manifest.parquet, manifest.csv)")
    return 0
