"""The evaluation manifest: one row per sample, as CSV, JSONL or Parquet.

Columns (only the first two are required):

- ``sample_id`` (str, unique, non-empty; required): the key of predictions and results;
- ``gt_mesh`` (path; required): the ground-truth mesh;
- ``domain`` (optional): ``synthetic`` or ``real``; the synthetic-vs-real gap needs both;
- ``occlusion`` (optional, float in [0, 1]): fraction of the object hidden; occlusion-stratified accuracy
  needs it;
- ``category`` (optional, str);
- ``image``, ``mask`` (optional paths): the input image and the visible-object mask; required by
  sources that run a model (`Predictor`);
- ``camera`` (optional, a JSON object of intrinsics/extrinsics), ``split`` (optional, str);
- ``gt_mesh_unworn`` (optional path): the ground truth before a shape-changing shift (the built-in
  benchmark's real samples before `wear`, in the frame of ``gt_mesh`` and its camera; a synthetic row names its
  ``gt_mesh``); a blank cell is allowed (no such mesh). Validated and resolved like ``gt_mesh``, and like
  every path column left out of a row's content hash (`evaluate.content.manifest_row_sha256`).

An optional column, when present, is validated on every row (a blank ``domain`` or ``occlusion`` is an
error; a blank ``category`` is the empty string); when absent it stays absent (no placeholder values), and
the summaries that need it are left out.

Paths are relative to the manifest's folder (absolute paths are accepted when they lie inside it); a path
that leaves the folder (``../x.ply``, ``/etc/passwd``) is refused, so a manifest cannot make the suite read
files outside the data set it describes. Symbolic links are resolved (``os.path.realpath``) for the check: a
link inside the folder may point anywhere inside it, a path whose real location is outside the folder is
refused. The frame keeps the path as written (made absolute), not the link's target. Files are not opened
here: a missing file becomes a failed row when it is read.

A ``sample_id`` may not hold control characters (NUL, tab, newline, ...), invisible formatting characters
(bidirectional overrides such as U+202E, zero-width spaces) or line separators: ids name files and appear in
terminals and reports, where such characters hide or reorder text. A ``camera`` must hold finite numbers
only (no NaN or Infinity). ``occlusion`` must be a number: JSON ``true`` or a CSV ``True`` is refused.

Every other column is kept as it is and carried to the results as a stratum (`extra_columns`). Column
names the results table uses itself (``status``, ``error``, ...) are refused.

Errors are `ManifestError` (a `ValueError`) naming the manifest, the row (its sample id and its line: the
file line for CSV and JSONL, the 1-based row for Parquet) and the problem.

A `Manifest` is the validated form the evaluation takes: built by one constructor (`Manifest(frame, root)`,
which validates), read from a file by `Manifest.read`, and narrowed by `select` / `split` without
validating again. Its sample ids are ``str`` from here to the stored result rows.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any, Iterable

from ..io.identifiers import unsafe_characters
from ..io.results import STRATA_COLUMNS

__all__ = [
    "DOMAINS",
    "KNOWN_COLUMNS",
    "PATH_COLUMNS",
    "REQUIRED_COLUMNS",
    "STRATA_COLUMNS",
    "Manifest",
    "ManifestError",
    "as_manifest",
    "extra_columns",
    "load_manifest",
    "strata_columns",
    "validate_manifest",
]

REQUIRED_COLUMNS = ("sample_id", "gt_mesh")
# STRATA_COLUMNS (io.results): optional, validated when present; the strata the summaries break results down by.
PATH_COLUMNS = ("gt_mesh", "image", "mask", "gt_mesh_unworn")
KNOWN_COLUMNS = REQUIRED_COLUMNS + STRATA_COLUMNS + ("image", "mask", "camera", "split", "gt_mesh_unworn")
DOMAINS = ("synthetic", "real")
# Names of the results table (io.results.RESULT_COLUMNS) a manifest column may not shadow.
_RESERVED = ("run_id", "status", "error", "source", "fingerprint", "protocol", "pred_kind", "transform", "notes",
             "rank", "written_at", "part")
_STR_COLUMNS = ("sample_id", "gt_mesh", "image", "mask", "domain", "category", "camera", "split", "gt_mesh_unworn")


class ManifestError(ValueError):
    """A manifest problem; the message names the manifest, the row (sample id and line) and the problem."""

    def __init__(self, message: str, *, sample_id: str | None = None, line: int | None = None) -> None:
        self.sample_id = sample_id
        self.line = line
        super().__init__(message)


def _where(frame, i: int) -> str:
    lines = frame.attrs.get("lines")
    unit = frame.attrs.get("line_unit", "row")
    line = lines[i] if lines is not None else i + 1
    sid = frame["sample_id"].iloc[i] if "sample_id" in frame.columns else None
    return f"{unit} {line}" + (f" (sample {sid!r})" if isinstance(sid, str) and sid else "")


def _name(frame) -> str:
    return str(frame.attrs.get("manifest", "manifest"))


def _read_csv(path: pathlib.Path):
    import pandas as pd

    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ManifestError(f"{path}: line {line}: not UTF-8 text ({err.reason} at byte {err.start}); "
                            "save the manifest as UTF-8", line=line) from None
    import io

    try:
        frame = pd.read_csv(io.StringIO(text), dtype={c: str for c in _STR_COLUMNS}, keep_default_na=False,
                            na_values={"occlusion": [""]}, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{path}: the manifest is empty") from None
    except pd.errors.ParserError as err:
        raise ManifestError(f"{path}: not a readable CSV table ({err})") from None
    # Header is line 1; this assumes no quoted newlines inside fields (paths and ids have none).
    frame.attrs["lines"] = [i + 2 for i in range(len(frame))]
    frame.attrs["line_unit"] = "line"
    return frame


def _read_jsonl(path: pathlib.Path):
    import pandas as pd

    rows, lines = [], []
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ManifestError(f"{path}: line {line}: not UTF-8 text ({err.reason} at byte {err.start})", line=line) from None
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{path}: line {n}: not valid JSON ({err.msg})", line=n) from None
        if not isinstance(row, dict):
            raise ManifestError(f"{path}: line {n}: expected a JSON object, got {type(row).__name__}", line=n)
        try:  # JSON's \ud800 escapes decode to lone surrogates, which no text column can hold
            json.dumps(row, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ManifestError(f"{path}: line {n}: holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), "
                                "which is not text", line=n) from None
        if isinstance(row.get("camera"), (dict, list)):
            row["camera"] = json.dumps(row["camera"])
        rows.append(row)
        lines.append(n)
    if not rows:
        raise ManifestError(f"{path}: the manifest is empty")
    frame = pd.DataFrame(rows)
    for c in _STR_COLUMNS:
        if c in frame.columns:
            frame[c] = frame[c].map(lambda v: v if v is None or isinstance(v, str) else
                                    (None if isinstance(v, float) and math.isnan(v) else str(v)))
    frame.attrs["lines"] = lines
    frame.attrs["line_unit"] = "line"
    return frame


def _read_parquet(path: pathlib.Path):
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a corrupt file
        raise ManifestError(f"{path}: not a readable Parquet file ({err})") from None
    frame.attrs["lines"] = [i + 1 for i in range(len(frame))]
    frame.attrs["line_unit"] = "row"
    return frame


_READERS = {".csv": _read_csv, ".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".parquet": _read_parquet,
            ".pq": _read_parquet}


def load_manifest(path: str | os.PathLike):
    """Read and validate a manifest (by suffix: .csv, .jsonl/.ndjson, .parquet); returns a pandas frame.

    Path columns come back as absolute paths (object columns of str; None where a row has no image or
    mask); ``occlusion`` as float64; the other known columns as str; unknown columns as read; absent
    optional columns stay absent. ``frame.attrs`` holds
    ``manifest`` (its path) and ``root`` (its folder). Raises `ManifestError` (see the module docstring),
    `FileNotFoundError` for a missing file.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: manifest does not exist")
    if not path.is_file():
        raise ManifestError(f"{path}: the manifest must be a file (.csv, .jsonl or .parquet), got a folder")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ManifestError(f"{path}: unsupported manifest format {path.suffix!r}; use .csv, .jsonl or .parquet")
    frame = reader(path)
    frame.attrs["manifest"] = str(path)
    return validate_manifest(frame, path.parent)


def _is_blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _resolve(root: pathlib.Path, value: str) -> tuple[pathlib.Path | None, str | None]:
    """(absolute path, None) when `value` (relative to `root`, or absolute) stays inside `root`, both
    lexically and once symbolic links are resolved; else (None, why not)."""
    root_abs = pathlib.Path(os.path.normpath(os.path.abspath(root)))
    p = pathlib.Path(value)
    full = pathlib.Path(os.path.normpath(p if p.is_absolute() else root_abs / p))
    if not full.is_relative_to(root_abs):
        return None, "leaves"
    # A link inside the folder can point outside it: compare real locations (realpath resolves every link
    # on the way, also those of the folder itself, and leaves a missing tail as written).
    real = pathlib.Path(os.path.realpath(full))
    if not real.is_relative_to(pathlib.Path(os.path.realpath(root_abs))):
        return None, f"resolves through a symbolic link to {str(real)!r}, which is outside"
    return full, None


def _non_finite(value: Any, at: str) -> str | None:
    """Where (``camera.K[0]``) the first NaN or infinite number of a parsed JSON value is, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else at
    if isinstance(value, dict):
        items = ((f"{at}.{k}", v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{at}[{j}]", v) for j, v in enumerate(value))
    else:
        return None
    for where, v in items:
        found = _non_finite(v, where)
        if found:
            return found
    return None


def validate_manifest(frame, root: str | os.PathLike):
    """Check a manifest frame and normalise its columns; returns a new frame (see `load_manifest`).

    root: the folder that relative paths are resolved against and that no path may leave.
    Raises `ManifestError` for missing required columns (sample_id, gt_mesh), reserved column names, empty
    or duplicate sample ids, ids with control or invisible characters, blank ground-truth paths, paths
    outside `root` (also through symbolic links), occlusion that is not a number in [0, 1], unknown domains
    and a camera that is not a JSON object of finite numbers (the optional columns are checked only when
    present).
    """
    import pandas as pd

    name = _name(frame)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(f"{name}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, frame.columns))}); "
                            f"required: {', '.join(REQUIRED_COLUMNS)}; optional: {', '.join(STRATA_COLUMNS)}, image, "
                            "mask, camera, split, gt_mesh_unworn")
    reserved = [c for c in frame.columns if c in _RESERVED]
    if reserved:
        raise ManifestError(f"{name}: column name(s) {', '.join(reserved)} are used by the results table; rename them")
    if len(frame) == 0:
        raise ManifestError(f"{name}: the manifest has no rows")
    out = frame.copy()
    out.attrs = dict(frame.attrs)
    root = pathlib.Path(root)
    out.attrs["root"] = str(root)

    seen: dict[str, int] = {}
    ids = []
    for i, sid in enumerate(out["sample_id"].tolist()):
        if _is_blank(sid):
            raise ManifestError(f"{name}: {_where(out, i)}: empty sample_id", line=_line(out, i))
        sid = str(sid).strip()
        if sid in seen:
            raise ManifestError(f"{name}: {_where(out, i)}: duplicate sample_id {sid!r} (first at "
                                f"{_where(out, seen[sid]).split(' (')[0]})", sample_id=sid, line=_line(out, i))
        if "/" in sid or "\\" in sid or sid in (".", ".."):
            raise ManifestError(f"{name}: {_where(out, i)}: sample_id {sid!r} may not contain path separators",
                                sample_id=sid, line=_line(out, i))
        bad = unsafe_characters(sid)
        if bad:
            raise ManifestError(f"{name}: {_line_unit(out, i)}: sample_id {sid!r} holds control or invisible "
                                f"character(s) {', '.join(bad)}; ids name files and are shown in reports",
                                sample_id=sid, line=_line(out, i))
        seen[sid] = i
        ids.append(sid)
    out["sample_id"] = ids

    for col in PATH_COLUMNS:
        if col not in out.columns:
            continue
        resolved = []
        for i, v in enumerate(out[col].tolist()):
            if _is_blank(v):
                if col == "gt_mesh":
                    raise ManifestError(f"{name}: {_where(out, i)}: empty gt_mesh path", sample_id=ids[i], line=_line(out, i))
                resolved.append(None)
                continue
            p, why = _resolve(root, str(v).strip())
            if p is None:
                raise ManifestError(f"{name}: {_where(out, i)}: {col} path {v!r} {why} the manifest's folder "
                                    f"{root}; paths must stay inside it", sample_id=ids[i], line=_line(out, i))
            resolved.append(str(p))
        out[col] = pd.Series(resolved, index=out.index, dtype=object)

    if "occlusion" in out.columns:
        occ = []
        for i, v in enumerate(out["occlusion"].tolist()):
            try:
                # bool is an int to Python: JSON true (or a CSV True) would pass as 1.0
                x = math.nan if isinstance(v, bool) else float(v)
            except (TypeError, ValueError):
                x = math.nan
            if not (0.0 <= x <= 1.0):
                raise ManifestError(f"{name}: {_where(out, i)}: occlusion must be a number in [0, 1], got {v!r}",
                                    sample_id=ids[i], line=_line(out, i))
            occ.append(x)
        out["occlusion"] = pd.Series(occ, index=out.index, dtype="float64")

    if "domain" in out.columns:
        domains = []
        for i, v in enumerate(out["domain"].tolist()):
            d = v.strip().lower() if isinstance(v, str) else v
            if d not in DOMAINS:
                raise ManifestError(f"{name}: {_where(out, i)}: unknown domain {v!r}; expected one of "
                                    f"{', '.join(DOMAINS)}", sample_id=ids[i], line=_line(out, i))
            domains.append(d)
        out["domain"] = domains
    if "category" in out.columns:
        out["category"] = ["" if _is_blank(v) else str(v).strip() for v in out["category"].tolist()]

    if "camera" in out.columns:
        cams = []
        for i, v in enumerate(out["camera"].tolist()):
            if _is_blank(v):
                cams.append(None)
                continue
            try:
                cam = json.loads(v) if isinstance(v, str) else v
            except json.JSONDecodeError as err:
                raise ManifestError(f"{name}: {_where(out, i)}: camera is not valid JSON ({err.msg})",
                                    sample_id=ids[i], line=_line(out, i)) from None
            if not isinstance(cam, dict):
                raise ManifestError(f"{name}: {_where(out, i)}: camera must be a JSON object, got {type(cam).__name__}",
                                    sample_id=ids[i], line=_line(out, i))
            at = _non_finite(cam, "camera")
            if at:
                raise ManifestError(f"{name}: {_where(out, i)}: {at} is not a finite number; camera values must be "
                                    "finite (no NaN or Infinity)", sample_id=ids[i], line=_line(out, i))
            cams.append(json.dumps(cam, sort_keys=True))
        out["camera"] = pd.Series(cams, index=out.index, dtype=object)
    return out


def _line_unit(frame, i: int) -> str:
    """`_where` without the sample id (for messages about the id itself, which show it once)."""
    return f"{frame.attrs.get('line_unit', 'row')} {_line(frame, i)}"


def _line(frame, i: int) -> int:
    lines = frame.attrs.get("lines")
    return lines[i] if lines is not None else i + 1


def extra_columns(frame) -> list[str]:
    """The manifest's unknown columns (kept and carried to the results), in file order."""
    return [c for c in frame.columns if c not in KNOWN_COLUMNS]


def strata_columns(frame) -> list[str]:
    """Columns carried to each result row: domain, occlusion, category, split (those present) and the extras."""
    base = [c for c in STRATA_COLUMNS + ("split",) if c in frame.columns]
    return base + extra_columns(frame)


class Manifest:
    """A validated manifest: one row per sample, ids unique ``str``, paths absolute and inside `root`.

    Args:
        frame: the manifest's rows (columns as in the module docstring); validated here
            (`validate_manifest`), never changed in place.
        root: the folder relative paths are resolved against and that no path may leave; default: the
            frame's ``attrs["root"]`` (set by `read`); a frame built in Python without one has its relative
            paths taken from the working directory and may name any file.
        path: the file it was read from, if any (recorded in ``run.json``).

    Raises:
        ManifestError: as `validate_manifest`.
    """

    def __init__(self, frame, root: str | os.PathLike | None = None, *, path: str | os.PathLike | None = None) -> None:
        if root is None:
            root = frame.attrs.get("root")
        if root is None:  # built in Python, not read from a file: paths from the working directory, any folder
            cwd = pathlib.Path.cwd()
            frame = frame.copy()
            for col in PATH_COLUMNS:
                if col in frame.columns:
                    frame[col] = [str(cwd / v) if isinstance(v, str) and v.strip() and not pathlib.Path(v.strip()).is_absolute()
                                  else v for v in frame[col].tolist()]
            root = cwd.anchor
        if path is None:
            path = frame.attrs.get("manifest")
        self._set(validate_manifest(frame, root), pathlib.Path(root), None if path is None else pathlib.Path(path))

    def _set(self, frame, root: pathlib.Path, path: pathlib.Path | None) -> None:
        frame.attrs["root"] = str(root)
        if path is not None:
            frame.attrs["manifest"] = str(path)
        self.frame, self.root, self.path = frame, root, path

    @classmethod
    def read(cls, path: str | os.PathLike) -> "Manifest":
        """The manifest file at `path` (.csv, .jsonl / .ndjson, .parquet), validated (`load_manifest`)."""
        frame = load_manifest(path)
        return cls._validated(frame, pathlib.Path(frame.attrs["root"]), pathlib.Path(path))

    @classmethod
    def _validated(cls, frame, root: pathlib.Path, path: pathlib.Path | None) -> "Manifest":
        """A manifest over rows already validated (a file just read, a subset of a manifest)."""
        out = cls.__new__(cls)
        out._set(frame, root, path)
        return out

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return f"Manifest({len(self)} samples, {self.path or self.root})"

    @property
    def sample_ids(self) -> list[str]:
        """The sample ids in row order."""
        return self.frame["sample_id"].tolist()

    @property
    def strata(self) -> list[str]:
        """The columns carried to every result row (`strata_columns`)."""
        return strata_columns(self.frame)

    def select(self, rows) -> "Manifest":
        """The rows picked by a boolean mask or a collection of sample ids (in manifest order), as a manifest.

        Raises:
            KeyError: an id that is not in the manifest.
        """
        if isinstance(rows, (set, frozenset, list, tuple)) or not hasattr(rows, "dtype"):
            wanted = set(rows)
            missing = wanted - set(self.frame["sample_id"])
            if missing:
                raise KeyError(f"sample id(s) not in the manifest: {sorted(missing)[:5]}")
            rows = self.frame["sample_id"].isin(wanted)
        frame = self.frame[rows].reset_index(drop=True)
        frame.attrs = dict(self.frame.attrs)
        return Manifest._validated(frame, self.root, self.path)

    def split(self, name: str) -> "Manifest":
        """The rows of split `name` (all rows when the manifest has no ``split`` column)."""
        return self if "split" not in self.frame.columns else self.select((self.frame["split"] == name).to_numpy())

    def rows(self) -> list[dict[str, Any]]:
        """One dict per row, in order."""
        return self.frame.to_dict("records")


def as_manifest(manifest) -> Manifest:
    """`manifest` as a `Manifest`: one passes through, a frame is validated (`Manifest(frame)`), a path read."""
    if isinstance(manifest, Manifest):
        return manifest
    if isinstance(manifest, (str, os.PathLike)):
        return Manifest.read(manifest)
    return Manifest(manifest)
