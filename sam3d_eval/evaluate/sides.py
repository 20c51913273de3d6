"""The sides of a comparison: what a user names, turned into results under one protocol.

A side is one or several *runs* (training seeds of one recipe, say), each given as

- a **run folder** (holds ``run.json``): its stored rows are read (`io.results.read_results`);
- a **predictions folder** (``<sample_id>.<ext>``): scored through a `FolderSource`;
- a **checkpoint** (``.safetensors``): rebuilt from its own config (`models.load_checkpoint`) and run on the
  manifest's images through a `PredictorSource`.

`expand_side` turns one command-line argument into its runs: a path, a comma-separated list of paths, or
a quoted glob (``'runs/a-seed*'``).

Stored results are reused only while they are *fresh* (`evaluate.content`): a stored row is used when its
prediction's bytes (or the model's identity and inputs), its ground truth's bytes and its manifest row hash
as they do now. For predictions and checkpoints, an existing run of the same source identity and protocol
fingerprint is found (a folder named with ``reuse``, a checkpoint's ``eval/`` folder where training stores
its phase-boundary evaluations, or ``runs_dir`` and the folders one level below it); its fresh ok rows are
read, and the other samples (missing, failed, stale) are scored into compare's own run folder under
``runs_dir`` (continued when it exists). A run folder named directly is checked the same way when a manifest
is given: rows whose inputs changed are scored again into compare's own folder when the run's source can be
rebuilt (its predictions folder or checkpoint still exists), and left out, listed as stale, when it cannot;
its other rows, failed ones included, are compared as stored. `compare` never writes into a run folder that
another command wrote.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..data.manifest import Manifest, as_manifest
from ..io.results import read_results, read_run_json
from .content import sample_keys, split_stored
from .protocols import Protocol, get_protocol

__all__ = [
    "CompareInputError",
    "ProtocolMismatchError",
    "Side",
    "StoredRun",
    "expand_side",
    "find_stored_run",
    "load_side",
    "manifest_from_checkpoint",
    "prediction_source",
    "run_protocol",
    "sample_meshes",
    "side_kind",
    "stored_runs_of",
]


class CompareInputError(ValueError):
    """A side, a manifest or a vote file that cannot be compared as given; the message says why."""


class ProtocolMismatchError(CompareInputError):
    """The sides were scored under different protocol fingerprints."""


@dataclass
class Side:
    """One run of one side of a comparison: what the user named and its results under one protocol.

    label: short display name; spec: the path given; kind: "run" | "predictions" | "checkpoint";
    identity: the source identity stored in the results; frame: the results rows of the manifest's samples
    (`io.read_results` schema); run_dir: where they are stored; protocol: the `Protocol` they were scored
    under; info: the checkpoint config or the run record; reused: fresh rows read from the store; scored:
    rows scored by this call; stale: of those scored, rows stored before whose prediction, ground truth or
    manifest row had changed; stale_ids: stale rows left out (a run whose source cannot be rebuilt);
    unchecked: the rows were not checked against the files (no manifest, or no source to hash);
    scored_into: compare's own run folder that received the rows scored by this call (None: nothing scored).
    """

    label: str
    spec: pathlib.Path
    kind: str
    identity: str | None
    frame: Any
    run_dir: pathlib.Path | None
    protocol: Protocol
    info: dict = field(default_factory=dict)
    reused: int = 0
    scored: int = 0
    stale: int = 0
    stale_ids: list[str] = field(default_factory=list)
    unchecked: str | None = None
    scored_into: pathlib.Path | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary of the side (no frame)."""
        d = {"label": self.label, "path": str(self.spec), "kind": self.kind, "identity": self.identity,
             "run_dir": str(self.run_dir) if self.run_dir else None, "protocol": self.protocol.label(),
             "fingerprint": self.protocol.fingerprint(), "rows_reused": self.reused, "rows_scored": self.scored,
             "rows_rescored_stale": self.stale, "stale_left_out": list(self.stale_ids), "unchecked": self.unchecked,
             "scored_into": str(self.scored_into) if self.scored_into else None}
        if self.kind == "checkpoint":
            d["checkpoint"] = {k: self.info.get(k) for k in ("stage", "phase", "epoch", "step", "data_manifest_hash",
                                                             "substitutes", "package_version") if k in self.info}
        return d


_GLOB_CHARS = re.compile(r"[*?\[]")


def expand_side(text: str | os.PathLike) -> list[pathlib.Path]:
    """The runs of one side: `text` itself when it is an existing path; else its comma-separated parts,
    each a path or a glob (matches sorted). Raises `FileNotFoundError` naming a part that matches nothing and
    `CompareInputError` when a path is named twice."""
    text = os.fspath(text)
    if os.path.exists(text):
        return [pathlib.Path(text)]
    out: list[pathlib.Path] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if _GLOB_CHARS.search(part):
            hits = sorted(glob.glob(part))
            if not hits:
                raise FileNotFoundError(f"{part}: no checkpoint, predictions folder or run folder matches this pattern")
            out += [pathlib.Path(h) for h in hits]
        elif os.path.exists(part):
            out.append(pathlib.Path(part))
        else:
            raise FileNotFoundError(f"{part}: no such checkpoint, predictions folder or run folder")
    if not out:
        raise FileNotFoundError(f"{text!r}: names no checkpoint, predictions folder or run folder")
    seen = [p.resolve() for p in out]
    if len(set(seen)) != len(seen):
        raise CompareInputError(f"{text!r}: names the same run twice")
    return out


def side_kind(path: str | os.PathLike) -> str:
    """"run" (a folder with run.json), "predictions" (another folder) or "checkpoint" (a file).

    Raises `FileNotFoundError` for a missing path.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint, predictions folder or run folder")
    if path.is_dir():
        return "run" if read_run_json(path) is not None else "predictions"
    return "checkpoint"


def run_protocol(run_dir: str | os.PathLike) -> Protocol:
    """The protocol recorded in a run folder's run.json (the results are not read).

    Raises:
        CompareInputError: the folder holds no run.json, or one that records no protocol.
    """
    record = read_run_json(run_dir)
    if not isinstance(record, dict) or "protocol" not in record:
        raise CompareInputError(f"{run_dir}: run.json records no protocol")
    return Protocol.from_dict(record["protocol"])


@dataclass(frozen=True)
class StoredRun:
    """A run folder as stored: what `compare`, the runs report and the gallery take.

    run_dir: the folder; frame: its rows (`io.results.read_results`, every fingerprint it holds); record:
    its run.json; protocol: the `Protocol` run.json records.
    """

    run_dir: pathlib.Path
    frame: Any
    record: dict
    protocol: Protocol

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> "StoredRun":
        """Read a run folder's run.json, protocol and results.

        Raises:
            CompareInputError: no run.json, or one that records no protocol.
            io.results.ResultsStoreError: a run.json that is not a JSON object.
        """
        run_dir = pathlib.Path(run_dir)
        protocol = run_protocol(run_dir)
        return cls(run_dir, read_results(run_dir), read_run_json(run_dir), protocol)

    @property
    def identity(self) -> str | None:
        """The prediction source's identity recorded in run.json."""
        return (self.record.get("source") or {}).get("identity")

    @property
    def manifest_path(self) -> pathlib.Path | None:
        """The manifest file the run was scored on, when run.json records one that still exists."""
        path = self.record.get("manifest")
        return pathlib.Path(path) if path and pathlib.Path(path).is_file() else None

    def rows_under_protocol(self):
        """The rows scored under the recorded protocol (a folder holds one fingerprint unless written by hand)."""
        return self.frame[self.frame["fingerprint"] == self.protocol.fingerprint()] if len(self.frame) else self.frame


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:40] or "side"


def manifest_from_checkpoint(config: Mapping[str, Any], checkpoint: str | os.PathLike,
                             work_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The manifest a checkpoint was trained on, found from what its config records.

    In order: a recorded path (``data_manifest``) that exists; a ``manifest.csv`` / ``.parquet`` /
    ``.jsonl`` in the checkpoint's folder, its parents (up to three levels) or their ``benchmark/`` folders
    whose SHA-256 (first 16 hex digits) equals the recorded ``data_manifest_hash``; the built-in benchmark
    regenerated under `work_dir` from a recorded ``data_generate`` record (``synthetic``, ``real``, ``seed``,
    ``config``). Raises `CompareInputError` saying what is recorded and that ``--data`` is needed.
    """
    checkpoint = pathlib.Path(checkpoint)
    recorded = config.get("data_manifest")
    if recorded and pathlib.Path(recorded).is_file():
        return pathlib.Path(recorded)
    want = config.get("data_manifest_hash")
    if want:
        folders = [checkpoint.parent, *list(checkpoint.parent.parents)[:3]]
        for folder in folders:
            for sub in (folder, folder / "benchmark"):
                for name in ("manifest.csv", "manifest.parquet", "manifest.jsonl"):
                    cand = sub / name
                    if cand.is_file() and hashlib.sha256(cand.read_bytes()).hexdigest()[:16] == want:
                        return cand
    gen = config.get("data_generate")
    if isinstance(gen, Mapping) and work_dir is not None:
        from ..data.generate import GenerationConfig, make_benchmark

        out = pathlib.Path(work_dir) / f"benchmark-seed{int(gen.get('seed', 0))}"
        make_benchmark(out, int(gen["synthetic"]), int(gen["real"]), int(gen.get("seed", 0)),
                       GenerationConfig.from_dict(dict(gen.get("config") or {})))
        return out / "manifest.csv"
    raise CompareInputError(
        f"{checkpoint}: the checkpoint records data hash {want!r} but no manifest on disk matches it "
        f"(looked beside the checkpoint and up to three folders above, and in their benchmark/ folders) and no "
        "generation record to rebuild it from; pass --data MANIFEST")


def _run_folders(folder: pathlib.Path) -> list[pathlib.Path]:
    """`folder` itself when it is a run, else the runs directly under it and one level further down."""
    if (folder / "run.json").is_file():
        return [folder]
    return sorted({p.parent for pattern in ("*/run.json", "*/*/run.json") for p in folder.glob(pattern)})


def stored_runs_of(identity: str, folders: Sequence[str | os.PathLike]) -> list[pathlib.Path]:
    """Run folders of source `identity` among `folders` (each a run folder, or a folder holding runs one or
    two levels down: a checkpoint's ``eval/``, a runs folder), in the order the folders are given and newest
    first within each."""
    found: list[pathlib.Path] = []
    for folder in folders:
        folder = pathlib.Path(folder)
        if not folder.is_dir():
            continue
        mine = []
        for run_dir in _run_folders(folder):
            try:
                rec = read_run_json(run_dir) or {}
            except ValueError:
                continue
            if isinstance(rec, dict) and (rec.get("source") or {}).get("identity") == identity:
                mine.append(run_dir)
        found += [p for p in sorted(mine, key=lambda p: (p / "run.json").stat().st_mtime, reverse=True)
                  if p not in found]
    return found


def find_stored_run(identity: str, fingerprint: str, folders: Sequence[str | os.PathLike]) -> pathlib.Path | None:
    """The first run of `stored_runs_of(identity, folders)` scored under `fingerprint`, or None."""
    for run_dir in stored_runs_of(identity, folders):
        try:
            if run_protocol(run_dir).fingerprint() == fingerprint:
                return run_dir
        except (ValueError, TypeError):
            continue
    return None


def _source_for(spec: pathlib.Path, kind: str, device: str):
    """(source, checkpoint config) of a predictions folder or a checkpoint."""
    from .sources import FolderSource, PredictorSource

    if kind == "checkpoint":
        from ..models.checkpoint import load_checkpoint

        model = load_checkpoint(spec, device=device)
        return PredictorSource(model), dict(model.checkpoint_config)
    return FolderSource(spec), {}


def _rebuild_source(record: Mapping[str, Any], device: str):
    """The source a run record names, when it can be rebuilt with the same identity; else None."""
    from .sources import FolderSource

    src = record.get("source") or {}
    identity, path = src.get("identity"), src.get("path")
    if isinstance(identity, str) and identity.startswith("folder:"):
        folder = pathlib.Path(path or identity[len("folder:"):])
        return FolderSource(folder, identity=identity) if folder.is_dir() else None
    if path and pathlib.Path(path).is_file():
        try:
            source, _ = _source_for(pathlib.Path(path), "checkpoint", device)
        except ValueError:
            return None
        return source if source.identity == identity else None
    return None


def load_side(
    spec: str | os.PathLike,
    *,
    label: str,
    manifest: Manifest | None = None,
    protocol: Protocol | str | None = None,
    runs_dir: str | os.PathLike = "runs/compare",
    reuse: Sequence[str | os.PathLike] = (),
    device: str = "cpu",
    batch_size: int = 8,
    progress=None,
    gt_cache=None,
) -> Side:
    """Results of one run of a side under one protocol (module docstring).

    manifest: a `data.manifest.Manifest` (or a frame, validated into one); needed to score predictions or a
    checkpoint, optional for a run folder (then its rows are used as stored, unchecked). protocol: what to
    score under; None takes the run's own (a run folder) or the default preset. A run folder scored under
    another fingerprint than `protocol` raises `ProtocolMismatchError`. reuse: run folders (or folders of
    runs) searched first for a stored run of the same source and protocol. Only folders under `runs_dir`
    that this function names are written to. gt_cache: an `evaluate.gt_cache.GTSampleCache` the scoring takes
    GT surface samples from and adds them to (`compare` keeps one across its sides; same numbers either way).
    """
    spec = pathlib.Path(spec)
    kind = side_kind(spec)
    manifest = None if manifest is None else as_manifest(manifest)
    if kind == "run":
        return _run_side(spec, label, manifest, protocol, runs_dir, device, batch_size, progress, gt_cache)
    if manifest is None:
        raise CompareInputError(f"{spec}: scoring {'a checkpoint' if kind == 'checkpoint' else 'predictions'} "
                                "needs a manifest (--data)")
    protocol = get_protocol(protocol or "default")
    source, info = _source_for(spec, kind, device)
    fp = protocol.fingerprint()
    own = own_run_dir(runs_dir, source, fp)
    places = [*reuse, *([spec.parent / "eval"] if kind == "checkpoint" else []), runs_dir]
    found = find_stored_run(source.identity, fp, places)
    if found is not None and found.resolve() == own.resolve():
        found = None  # compare's own folder: continued like any resume
    side = _score_rest(source, manifest, protocol, found, own, label=label, spec=spec, kind=kind,
                       device=device, batch_size=batch_size, progress=progress, stale_rule="resume",
                       gt_cache=gt_cache)
    side.info = info or dict(side.frame.attrs.get("run") or {})
    return side


def own_run_dir(runs_dir: str | os.PathLike, source, fingerprint: str) -> pathlib.Path:
    """The folder under `runs_dir` where `compare` stores what it scores for `source` under `fingerprint`."""
    digest = hashlib.sha256(source.identity.encode()).hexdigest()[:8]
    return pathlib.Path(runs_dir) / f"{_slug(source.name)}-{digest}-{fingerprint}"


def _score_rest(source, manifest, protocol: Protocol, found: pathlib.Path | None, own: pathlib.Path, *, label: str,
                spec: pathlib.Path, kind: str, device: str, batch_size: int, progress, stale_rule: str,
                gt_cache=None) -> Side:
    """Fresh rows of `found` (a run another command wrote: read, never written) and, for the manifest's other
    samples, a run in compare's own folder `own` (continued when it exists). stale_rule: "resume" (a stored
    row is reused when it is ok and keyed as now; failed rows are retried) or "changed" (any stored row keyed
    as now is reused, failed or not: a run folder named as a side is compared as it was stored, unless its
    inputs changed)."""
    import pandas as pd

    from .content import changed_ids
    from .runner import manifest_rows, run_evaluation

    fp = protocol.fingerprint()
    keep: set[str] = set()
    stale_found: set[str] = set()
    stored = None
    if found is not None:
        stored = read_results(found)
        keys = sample_keys(manifest.rows(), source, mask_content="visibility" in protocol.metrics)
        if stale_rule == "resume":
            keep, stale_found = split_stored(stored, keys, source.identity, fp)
        else:
            stale_found = changed_ids(stored, keys, source.identity, fp)
            keep = set(keys) - stale_found
    rest = manifest.select(~manifest.frame["sample_id"].isin(keep).to_numpy())
    parts, reused, scored, stale = [], len(keep), 0, len(stale_found)
    if stored is not None and keep:
        parts.append(manifest_rows(stored, keep, source.identity, fp))
    wrote = None
    if len(rest):
        result = run_evaluation(source, rest, protocol, own, batch_size=batch_size, device=device,
                                resume=read_run_json(own) is not None, progress=progress,
                                command=["compare", str(spec)], gt_cache=gt_cache)
        parts.append(result.frame)
        reused += result.skipped
        scored += result.scored
        stale += result.stale
        wrote = own
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    frame = frame.sort_values("sample_id", kind="stable").reset_index(drop=True)
    metrics = [m for p in parts for m in p.attrs.get("metrics", [])]
    strata = [c for p in parts for c in p.attrs.get("strata", [])]
    run_dir = found if found is not None else own
    frame.attrs = {"metrics": list(dict.fromkeys(metrics)), "strata": list(dict.fromkeys(strata)),
                   "run": read_run_json(run_dir)}
    side = Side(label, spec, kind, source.identity, frame, run_dir, protocol, reused=reused, scored=scored,
                stale=stale)
    side.scored_into = wrote
    return side


def _run_side(spec: pathlib.Path, label: str, manifest, protocol, runs_dir, device: str, batch_size: int,
              progress, gt_cache=None) -> Side:
    """A run folder named as a side: its rows, checked against the manifest's files when one is given."""
    from .runner import manifest_rows

    stored = StoredRun.read(spec)
    own = stored.protocol
    if protocol is not None and get_protocol(protocol).fingerprint() != own.fingerprint():
        asked = get_protocol(protocol)
        raise ProtocolMismatchError(
            f"{spec}: this run was scored under {own.label()} (fingerprint {own.fingerprint()}), not "
            f"{asked.label()} (fingerprint {asked.fingerprint()}); stored results are never rescored under "
            "another protocol: compare under the run's protocol, or score its predictions again")
    record, identity, frame = stored.record, stored.identity, stored.frame
    fp = own.fingerprint()
    fps = sorted(set(frame["fingerprint"])) if len(frame) else []
    if len(fps) > 1:
        raise ProtocolMismatchError(f"{spec}: holds rows under several protocol fingerprints {fps}")
    if fps and fps[0] != fp:
        raise ProtocolMismatchError(f"{spec}: rows are under fingerprint {fps[0]} but run.json says {fp}")
    if manifest is None:
        frame.attrs["run"] = record
        return Side(label, spec, "run", identity, frame, spec, own, dict(record), reused=len(frame),
                    unchecked="no manifest: stored rows used as they are, not checked against the files")
    stored_ids = set(frame["sample_id"]) if len(frame) else set()
    sub = manifest.select(manifest.frame["sample_id"].isin(stored_ids).to_numpy())
    source = _rebuild_source(record, device)
    if source is not None:  # rows whose inputs changed are scored again, into compare's own folder
        side = _score_rest(source, sub, own, spec, own_run_dir(runs_dir, source, fp), label=label, spec=spec,
                           kind="run", device=device, batch_size=batch_size, progress=progress, stale_rule="changed",
                           gt_cache=gt_cache)
        side.info = dict(record)
        return side
    # the source is gone: the ground truth and the manifest rows can still be checked
    keys = sample_keys(sub.rows(), _KeyOnly(), mask_content="visibility" in own.metrics)
    stale, unknown = set(), 0
    for sid, g, r in zip(frame["sample_id"], frame.get("gt_sha256", [None] * len(frame)),
                         frame.get("row_sha256", [None] * len(frame))):
        want = keys.get(str(sid))
        if want is None:
            continue
        if _missing(g) or _missing(r):
            unknown += 1  # stored before content keys were recorded: nothing to check against
        elif (g, r) != (want.gt_sha256, want.row_sha256):
            stale.add(str(sid))
    frame = manifest_rows(frame, set(keys) - stale, identity, fp)
    frame.attrs["run"] = record
    note = "the run's predictions cannot be found again, so their content is not checked (ground truth and manifest rows are)"
    if unknown:
        note += f"; {unknown} row(s) were stored without content keys and are not checked at all"
    return Side(label, spec, "run", identity, frame, spec, own, dict(record), reused=len(frame),
                stale_ids=sorted(stale), unchecked=note)


def _missing(v) -> bool:
    """A content key that was never recorded (None, or NaN in a part written before the keys existed)."""
    return v is None or (isinstance(v, float) and v != v)


class _KeyOnly:
    """A stand-in source for hashing ground truth and manifest rows when the prediction source is gone."""

    identity = "unavailable"

    def content_hash(self, row) -> str:
        return "unavailable"


def prediction_source(side: Side):
    """A source that can produce `side`'s predictions again: its folder or checkpoint, or the source a run
    records; None when it cannot be rebuilt."""
    from .sources import FolderSource, PredictorSource

    if side.kind == "predictions":
        return FolderSource(side.spec)
    if side.kind == "checkpoint":
        from ..models.checkpoint import load_checkpoint

        return PredictorSource(load_checkpoint(side.spec))
    return _rebuild_source(side.info if side.info.get("source") else {"source": {"identity": side.identity}}, "cpu")


def sample_meshes(source, rows: Sequence[Mapping[str, Any]], protocol: Protocol) -> dict[str, Any]:
    """``{sample_id: Meshes | Pointclouds | None}``: `source`'s prediction of each manifest row (None when it
    has none, fails, or `source` is None), on the CPU."""
    if source is None:
        return {str(r["sample_id"]): None for r in rows}
    items = [source.load(r, protocol) for r in rows]
    done = source.finish(items, "cpu")
    return {str(r["sample_id"]): (p if p is not None and not isinstance(p, BaseException) else None)
            for r, (p, _) in zip(rows, done)}
