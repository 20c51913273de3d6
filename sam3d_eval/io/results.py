"""The per-sample results store: Parquet part files under ``RUN_DIR/results/`` and the run's metadata.

Layout of a run folder::

    RUN_DIR/run.json                      run metadata (run id, source, protocol + fingerprint, versions,
                                          every invocation's command and time)
    RUN_DIR/results/part-*.parquet        one file per scored batch and rank, written atomically

One row per (run, sample), columns (`RESULT_COLUMNS`, then the strata and metric columns):

- ``run_id`` (str), ``sample_id`` (str), ``status`` ("ok" | "failed"), ``error`` (str or None),
- ``source`` (the prediction source's identity), ``fingerprint`` (`Protocol.fingerprint()`), ``protocol``
  (name), ``pred_kind`` ("mesh" | "pointcloud" | "splat" | None),
- ``transform`` (JSON string of the normalisation and alignment, or None), ``notes`` (JSON list of strings),
- ``rank`` (int, the process that wrote it), ``written_at`` (int, ns since the epoch),
- ``pred_sha256``, ``gt_sha256``, ``row_sha256`` (hex str): what the row was computed from, by content (the
  prediction's bytes or the model's identity and inputs, the ground truth's bytes, the manifest row without
  its paths); `evaluate.content` reuses a row only while all three still match. Parts written before these
  keys existed read as None there, and their rows are scored again when a run is resumed.
- strata: ``domain``, ``occlusion``, ``category`` and every extra manifest column (names in the part's
  key-value metadata ``sam3d_eval.strata``), each stored under the Arrow type recorded in run.json's
  ``strata_types`` when the run started (`write_results_part` casts every batch to it, so a column does not
  change type from part to part with the values a batch happens to hold, or with the manifest's format),
- one float64 column per metric (NaN where failed or unavailable; names in ``sam3d_eval.metrics``).

A part is written to a hidden temporary name in the same folder, flushed to disk, then renamed with
`os.replace` (atomic on POSIX and Windows), so a reader or a resumed run never sees half a file; leftover
temporaries of a killed process are ignored.

A reader is never locked out by one part (`read_results`): a part of another schema (a stratum stored
under another type) is cast to the run's types when that loses nothing, and otherwise skipped, as is an
unreadable part, with a `ResultsStoreWarning` naming it; ``frame.attrs["skipped_parts"]`` lists them.

Deduplication (`read_results`): a sample can be stored twice only when a resumed run retried it (a resume
skips samples already stored ``ok`` and retries ``failed`` ones); for each (source, fingerprint, sample_id)
the row written last (largest ``written_at``, then part name) is kept. Rows are returned sorted by
(source, fingerprint, sample_id), so the frame does not depend on how many ranks wrote the parts or in
what order.

Only pandas and pyarrow are imported here (torch lazily, for its version), so reports can read results
without the evaluation stack.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import time
import uuid
import warnings
from typing import Any, Iterable, Mapping

from ..atomic import atomic_path, write_text_atomic

__all__ = [
    "GAP_METRICS",
    "HEADLINE_METRICS",
    "direction",
    "headline_metrics",
    "CONTENT_COLUMNS",
    "RESULT_COLUMNS",
    "STRATA_COLUMNS",
    "RUN_JSON",
    "RESULTS_DIR",
    "ResultsStoreError",
    "ResultsStoreWarning",
    "arrow_type",
    "cast_losslessly",
    "metric_columns",
    "read_results",
    "read_run_json",
    "run_metadata",
    "strata_columns",
    "write_results_part",
    "write_run_json",
]

# What a row was computed from, by content (`evaluate.content`): a row is reused only while all three match.
CONTENT_COLUMNS = ("pred_sha256", "gt_sha256", "row_sha256")
RESULT_COLUMNS = ("run_id", "sample_id", "status", "error", "source", "fingerprint", "protocol", "pred_kind",
                  "transform", "notes", "rank", "written_at") + CONTENT_COLUMNS
STRATA_COLUMNS = ("domain", "occlusion", "category")
# The metrics a summary, a table or a report shows first, in this order, when a run has them.
HEADLINE_METRICS = ("chamfer_l2", "chamfer_l1", "chamfer_l1_occnet", "fscore@0.01", "fscore@0.02", "fscore@0.05",
                    "normal_consistency", "volume_iou", "emd", "lpips", "psnr", "ssim")
# The two figures the gap tables, the stage comparison and the data-engine rounds lead with: a distance and a
# score.
GAP_METRICS = ("chamfer_l2", "fscore@0.05")
# Distances (Chamfer variants, EMD, LPIPS) are better lower; every other metric (F-score, precision, recall,
# normal consistency, volume IoU, PSNR, SSIM, silhouette IoU) higher.
_LOWER_IS_BETTER = ("chamfer", "emd", "lpips")
RUN_JSON = "run.json"
RESULTS_DIR = "results"
_META_KEY = b"sam3d_eval"


class ResultsStoreError(ValueError):
    """A run folder or a part file is not a results store this version can read; the message says which."""


class ResultsStoreWarning(UserWarning):
    """`read_results` left a part out (unreadable, or of a schema it cannot be cast from); the message names it."""


def run_metadata(command: Iterable[str] | None = None, protocol: dict | None = None) -> dict[str, Any]:
    """Provenance of an output: package, python, torch and git versions, platform, UTC time, command line.

    command: the argument list (default ``sys.argv``); protocol: a `Protocol.to_dict()` (+ fingerprint) to
    record. The git commit is the repository's HEAD when the package runs from a checkout (None otherwise;
    ``git_dirty`` says whether tracked files differ from it).
    """
    from .. import __version__

    torch_version = None
    if "torch" in sys.modules or protocol is not None:
        try:
            import torch

            torch_version = torch.__version__
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
    commit, dirty = _git_state()
    meta = {
        "package": "sam3d-eval",
        "version": __version__,
        "python": platform.python_version(),
        "torch": torch_version,
        "git_commit": commit,
        "git_dirty": dirty,
        "platform": platform.platform(),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv if command is None else command),
    }
    if protocol is not None:
        meta["protocol"] = protocol
    return meta


def _git_state() -> tuple[str | None, bool | None]:
    root = pathlib.Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None, None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=5, check=True).stdout
        return head or None, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def ensure_writable_dir(folder: str | os.PathLike) -> pathlib.Path:
    """Check, before any work is done, that files can be written in `folder`, without creating it: an
    existing folder is probed with a file written and removed; a missing one needs its nearest existing
    parent to be a writable folder (so a run that fails later leaves no empty folder behind). Raises
    `OSError` naming the problem; returns `folder` as a path."""
    folder = pathlib.Path(folder)
    if folder.is_dir():
        probe = folder / f".sam3d-eval-write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
        return folder
    if folder.exists():
        raise NotADirectoryError(errno.ENOTDIR, f"{folder} is a file, not a folder")
    parent = next(p for p in folder.absolute().parents if p.exists())
    if not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
        raise PermissionError(errno.EACCES, f"{parent} is not a writable folder")
    return folder


def write_run_json(run_dir: str | os.PathLike, record: dict[str, Any]) -> pathlib.Path:
    """Write ``RUN_DIR/run.json`` atomically (JSON, NaN-free); returns its path."""
    path = pathlib.Path(run_dir) / RUN_JSON
    write_text_atomic(path, json.dumps(record, indent=2, allow_nan=False) + "\n", durable=True)
    return path


def read_run_json(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``RUN_DIR/run.json`` as a dict, or None when the folder holds none. Raises `ResultsStoreError` when it
    is not JSON or not a JSON object (the fields are checked by the runner, `evaluate.runner.check_run_dir`)."""
    path = pathlib.Path(run_dir) / RUN_JSON
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsStoreError(f"{path}: not a readable run record ({err})") from None
    if not isinstance(record, dict):
        raise ResultsStoreError(f"{path}: not a run record: expected a JSON object, got {_json_kind(record)}")
    return record


def _json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words (for messages)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def arrow_type(name: str):
    """The pyarrow type written as `name` (``str(type)``: "int64", "double", "string", "timestamp[ns]", ...),
    or None for a type this cannot parse back (nested or time-zoned ones: such columns are not cast)."""
    import pyarrow as pa

    try:
        return pa.type_for_alias(str(name))
    except (ValueError, KeyError, TypeError):
        return None


def _same_values(a: list, b: list) -> bool:
    """Element-wise equality where NaN equals NaN (a float stratum may hold NaN rather than null)."""
    def same(x: Any, y: Any) -> bool:
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            return True
        return x == y

    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


def cast_losslessly(values, target):
    """`values` (a pyarrow array or chunked array) cast to the pyarrow type `target` when nothing is lost (the
    cast back gives the same values: ``1`` -> ``"1"`` is kept, ``"001"`` -> ``1`` is not), else None."""
    import pyarrow as pa

    if values.type == target:
        return values
    if pa.types.is_null(values.type):
        return values.cast(target)
    try:
        out = values.cast(target, safe=True)
        back = out.cast(values.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    return out if _same_values(back.to_pylist(), values.to_pylist()) else None


def write_results_part(
    run_dir: str | os.PathLike,
    frame,
    *,
    metrics: Iterable[str] = (),
    strata: Iterable[str] = (),
    rank: int = 0,
    types: Mapping[str, str] | None = None,
) -> pathlib.Path:
    """Write `frame` (rows of the schema above) as one new part file under ``RUN_DIR/results/``, atomically.

    metrics, strata: the frame's metric and strata column names, recorded in the file's metadata.
    types: ``{column: Arrow type name}`` (run.json's ``strata_types``) the columns are stored under; raises
    `ResultsStoreError` naming a column whose values cannot be cast to it without change.
    The part's name holds the rank, the time in ns and a random suffix, so parts never collide across
    ranks or resumes. Returns the part's path.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = pathlib.Path(run_dir) / RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    missing = [c for c in ("sample_id", "status", "source", "fingerprint") if c not in frame.columns]
    if missing:
        raise ValueError(f"results frame lacks the columns {missing}")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for col, name in (types or {}).items():
        target = arrow_type(name)
        if col not in table.column_names or target is None or table.schema.field(col).type == target:
            continue
        cast = cast_losslessly(table.column(col), target)
        if cast is None:
            raise ResultsStoreError(f"{run_dir}: column {col!r} holds {table.schema.field(col).type} values that "
                                    f"cannot be stored as {name}, the run's type for it, without change")
        table = table.set_column(table.column_names.index(col), pa.field(col, target), cast)
    meta = dict(table.schema.metadata or {})
    meta[_META_KEY] = json.dumps({"metrics": list(metrics), "strata": list(strata), "schema": 1}).encode()
    table = table.replace_schema_metadata(meta)
    name = f"part-r{rank:04d}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    path = folder / name
    with atomic_path(path, durable=True) as tmp:
        pq.write_table(table, tmp)
    return path


def _part_files(run_dir: pathlib.Path) -> list[pathlib.Path]:
    folder = run_dir / RESULTS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.startswith("part-") and p.suffix == ".parquet")


def _written_order(name: str) -> tuple[int, str]:
    """Sort key of a part by when it was written (its name: part-r<rank>-<time ns>-<random>.parquet)."""
    fields = name.split("-")
    try:
        return int(fields[2]), name
    except (IndexError, ValueError):
        return sys.maxsize, name


def _target_types(tables: list[tuple[str, Any]], recorded: Any) -> dict[str, Any]:
    """The type each column is read under where parts disagree: the run's recorded stratum type, else the
    types' common promotion (int64 and double: double), else the type of the part written first."""
    import pyarrow as pa

    targets: dict[str, Any] = {}
    if isinstance(recorded, dict):
        for col, name in recorded.items():
            t = arrow_type(name)
            if t is not None:
                targets[col] = t
    seen: dict[str, list] = {}
    for _, table in sorted(tables, key=lambda nt: _written_order(nt[0])):
        for field in table.schema:
            if not pa.types.is_null(field.type) and field.type not in seen.setdefault(field.name, []):
                seen[field.name].append(field.type)
    for col, types in seen.items():
        if col in targets or len(types) < 2:
            continue
        try:
            targets[col] = pa.unify_schemas([pa.schema([pa.field(col, t)]) for t in types],
                                            promote_options="permissive").field(col).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            targets[col] = types[0]
    return targets


def _conform(table, targets: Mapping[str, Any]):
    """`table` with its columns cast to `targets` (`cast_losslessly`); raises `ResultsStoreError` naming the
    first column that cannot be."""
    import pyarrow as pa

    for col, target in targets.items():
        if col not in table.column_names or table.schema.field(col).type == target:
            continue
        cast = cast_losslessly(table.column(col), target)
        if cast is None:
            raise ResultsStoreError(f"column {col!r} holds {table.schema.field(col).type} values that cannot be "
                                    f"read as {target} without change")
        table = table.set_column(table.column_names.index(col), pa.field(col, target), cast)
    return table


def _concat(tables: list[tuple[str, Any]], skip) -> Any:
    """One Arrow concatenation (a column that is all-null in one part takes the type of the others, so the
    frame's dtypes do not depend on how the rows were split into parts); when that fails, part by part,
    skipping each part that does not fit the ones before it."""
    import pyarrow as pa

    errors = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)
    try:
        return pa.concat_tables([t for _, t in tables], promote_options="permissive")
    except errors:
        pass
    merged = None
    for name, table in tables:
        try:
            merged = table if merged is None else pa.concat_tables([merged, table], promote_options="permissive")
        except errors as err:
            skip(name, f"its columns do not fit the other parts' ({err})")
    return merged


def read_results(run_dir: str | os.PathLike, *, dedup: bool = True):
    """All stored rows of a run folder as one pandas frame (deduplicated and sorted as the module says).

    ``frame.attrs``: ``metrics`` and ``strata`` (column names, in first-seen order), ``run`` (the run.json
    record or None), ``duplicates`` (rows dropped by deduplication) and ``skipped_parts`` (``{part name:
    reason}`` of the parts left out). A folder without parts gives an empty frame with the fixed columns.

    One part never locks a reader out: a part that cannot be read, or whose columns cannot be cast to the
    run's types without change (run.json's ``strata_types``; without them, the types of the other parts), is
    skipped with a `ResultsStoreWarning` naming it. Raises `FileNotFoundError` for a missing folder and
    `ResultsStoreError` for a run.json that is not a run record.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run folder does not exist")
    record = read_run_json(run_dir)
    skipped: dict[str, str] = {}

    def skip(name: str, reason: str) -> None:
        skipped[name] = reason
        warnings.warn(f"{run_dir / RESULTS_DIR / name}: left out of the results: {reason}", ResultsStoreWarning,
                      stacklevel=3)

    tables, infos = [], {}
    for part in _part_files(run_dir):
        try:
            table = pq.read_table(part)
            infos[part.name] = json.loads((table.schema.metadata or {}).get(_META_KEY, b"{}"))
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a corrupt file
            skip(part.name, f"not a readable Parquet part ({err})")
            continue
        table = table.replace_schema_metadata(None)
        tables.append((part.name, table.append_column("part", pa.array([part.name] * table.num_rows, pa.string()))))
    targets = _target_types(tables, (record or {}).get("strata_types"))
    fitting = []
    for name, table in tables:
        try:
            fitting.append((name, _conform(table, targets)))
        except ResultsStoreError as err:
            skip(name, str(err))
    merged = _concat(fitting, skip) if fitting else None
    metrics, strata = [], []
    for name, _ in fitting:
        if name not in skipped:
            metrics += [m for m in infos[name].get("metrics", []) if m not in metrics]
            strata += [s for s in infos[name].get("strata", []) if s not in strata]
    if merged is None:
        frame = pd.DataFrame({c: pd.Series(dtype="object") for c in RESULT_COLUMNS})
        duplicates = 0
    else:
        frame = merged.to_pandas()
        n = len(frame)
        if dedup:
            frame = frame.sort_values(["written_at", "part"], kind="stable")
            frame = frame.drop_duplicates(["source", "fingerprint", "sample_id"], keep="last")
        duplicates = n - len(frame)
        frame = frame.sort_values(["source", "fingerprint", "sample_id"], kind="stable").reset_index(drop=True)
    frame.attrs.update(metrics=metrics, strata=strata, run=record, duplicates=duplicates, skipped_parts=skipped)
    return frame


def direction(metric: str) -> str:
    """"lower" for distances (Chamfer variants, EMD, LPIPS), else "higher" (F-score, precision, recall,
    normal consistency, volume IoU, PSNR, SSIM, silhouette IoU)."""
    return "lower" if metric.startswith(_LOWER_IS_BETTER) else "higher"


def headline_metrics(metrics: Iterable[str], fallback: int = 6) -> list[str]:
    """The `HEADLINE_METRICS` among `metrics`, in headline order; the first `fallback` of `metrics` when none is."""
    metrics = list(metrics)
    have = set(metrics)
    return [m for m in HEADLINE_METRICS if m in have] or metrics[:fallback]


def metric_columns(frame) -> list[str]:
    """The metric columns of a results frame (from ``attrs``, else the float columns outside the schema)."""
    names = frame.attrs.get("metrics")
    if names:
        return [m for m in names if m in frame.columns]
    fixed = set(RESULT_COLUMNS) | set(strata_columns(frame)) | {"part"}
    return [c for c in frame.columns if c not in fixed and frame[c].dtype.kind == "f"]


def strata_columns(frame) -> list[str]:
    """The strata columns of a results frame (from ``attrs``, else `STRATA_COLUMNS` that are present)."""
    names = frame.attrs.get("strata")
    if names:
        return [s for s in names if s in frame.columns]
    return [s for s in STRATA_COLUMNS if s in frame.columns]
