"""The evaluation runner: manifest rows + a prediction source -> batches through `score_batch` -> results store.

`run_evaluation` is what ``sam3d-eval evaluate`` and ``eval-meshes`` run:

1. the run folder is prepared on rank 0 (``run.json``: run id, source, protocol and its fingerprint, run
   metadata, one entry per invocation); a folder that already holds a run is only continued with
   ``resume=True``, and then only for the same source identity and protocol fingerprint;
2. every manifest row gets its content keys (`evaluate.content`: SHA-256 of the prediction's bytes or the
   model's identity and inputs, of the ground truth's bytes, and of the manifest row without its paths),
   stored with its result; with ``resume``, a sample is skipped only when a row is stored ``ok`` for this
   source and fingerprint with the same three keys (failed ones are retried; a *stale* ok row, whose
   prediction, ground truth or manifest row changed since, is scored again; `io.results.read_results` keeps
   the latest row of a sample). ``run.json`` gains an invocation only when something is scored;
3. the remaining sample ids, sorted, are sharded over the ranks of `torch.distributed` when a process group
   is initialised (``torchrun``): rank 0 reads the store and broadcasts the list before any rank writes,
   and rank r takes ids r, r + W, r + 2W, ... of it;
4. batches of `batch_size` samples are loaded (ground truth and prediction, CPU), the source finishes them
   (a `Predictor` runs here), `score_batch` scores them, and each batch is written as one Parquet part
   (atomic rename), so an interruption loses at most the batches in flight.

By default on a CPU device the loading runs in the main process, in order (the scoring kernels use the
cores; a loader process would only compete). On CUDA, `num_workers` loader processes (torch `DataLoader`, a
collate that keeps the ragged items as a list) read and decode the next batches while the GPU scores this
one; the same path runs on the CPU when `num_workers` > 0 is asked for.
The whole loop runs inside one `runtime.runtime_policy(device)`.

A sample's numbers do not depend on the batch size, the order, the rank count or a resume: every random
draw comes from its own seed streams (`score_batch`). The frame a run returns covers the manifest it was
given (its sample ids, under this source and fingerprint), not every row the folder holds.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.manifest import strata_columns as manifest_strata
from ..io.results import (
    RESULTS_DIR,
    ensure_writable_dir,
    read_results,
    read_run_json,
    run_metadata,
    write_results_part,
    write_run_json,
)
from ..runtime import runtime_policy
from .content import CONTENT_COLUMNS, SampleKey, sample_keys, split_stored
from .protocols import Protocol, get_protocol
from .scoring import BatchScores, score_batch
from .sources import LoadedPrediction, PredictionSource, load_ground_truth

__all__ = ["RunDirError", "RunResult", "Progress", "run_evaluation", "check_run_dir", "dist_info", "manifest_rows",
           "results_frame"]

STAGES = ("load", "predict", "score", "write")


class RunDirError(ValueError):
    """The run folder cannot be used as asked (holds another run, unwritable, ...); the message says why."""


class Progress:
    """What the runner reports progress to (the CLI draws a bar); every method is optional to override."""

    def start(self, total: int, skipped: int) -> None:
        """`total` samples to score on this rank, `skipped` already stored (resume)."""

    def update(self, n: int) -> None:
        """`n` more samples scored."""

    def close(self) -> None:
        """The loop ended (also on errors)."""


@dataclass
class RunResult:
    """What a run did on this rank.

    run_dir (None for an in-memory run), run_id, rank, world_size; total: samples in the manifest; skipped:
    already stored and fresh (resume: reused); stale: of the samples scored, those whose stored ok row no
    longer matched its prediction, ground truth or manifest row (scored again); scored / failed: by this
    rank; frame: the results of the manifest's samples (every rank's, deduplicated, from the store on rank 0
    or in memory; None on other ranks); timings: seconds per stage on this rank.
    """

    run_dir: pathlib.Path | None
    run_id: str
    rank: int
    world_size: int
    total: int
    skipped: int
    scored: int
    failed: int
    frame: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    stale: int = 0


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the initialised `torch.distributed` group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _barrier() -> None:
    if dist_info()[1] > 1:
        torch.distributed.barrier()


def _broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if dist_info()[1] == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _all_gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if dist_info()[1] == 1:
        return [obj]
    out: list[Any] = [None] * dist_info()[1]
    torch.distributed.all_gather_object(out, obj)
    return out


def check_run_dir(run_dir: str | os.PathLike, *, resume: bool) -> dict | None:
    """Validate a run folder before any work: writable, and holding no other run unless resuming.

    Returns the existing run record (resume) or None. Raises `RunDirError` naming the problem.
    """
    run_dir = pathlib.Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: --out must be a folder, but this is a file")
    record = read_run_json(run_dir) if run_dir.is_dir() else None
    if record is None and (run_dir / RESULTS_DIR).is_dir() and any((run_dir / RESULTS_DIR).iterdir()):
        raise RunDirError(f"{run_dir}: holds results/ but no run.json; choose an empty folder")
    if record is not None and not resume:
        raise RunDirError(f"{run_dir}: already holds run {record.get('run_id')} (source "
                          f"{record.get('source', {}).get('identity')!r}, protocol {record.get('protocol', {}).get('name')!r}); "
                          "pass --resume to continue it, or choose another folder")
    try:
        ensure_writable_dir(run_dir)
    except OSError as err:
        raise RunDirError(f"{run_dir}: cannot write to this folder ({err.strerror or err})") from None
    return record


def _prepare_run(run_dir: pathlib.Path, source: PredictionSource, protocol: Protocol, fingerprint: str,
                 resume: bool, command: Sequence[str] | None, manifest_path: str | None, world: int) -> tuple[dict, bool]:
    """(the run record with this invocation appended, whether the folder already held it)."""
    record = check_run_dir(run_dir, resume=resume)
    meta = run_metadata(command, protocol={**protocol.to_dict(), "fingerprint": fingerprint})
    invocation = {"time": meta["time"], "command": meta["command"], "world_size": world, "resume": resume}
    if record is None:
        src = {"name": source.name, "identity": source.identity}
        if getattr(source, "path", None):
            src["path"] = str(source.path)
        record = {
            "run_id": time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6],
            "source": src,
            "protocol": protocol.to_dict(),
            "fingerprint": fingerprint,
            "manifest": manifest_path,
            "metadata": meta,
            "invocations": [invocation],
        }
        return record, False
    theirs = (record.get("source", {}).get("identity"), record.get("fingerprint"))
    if theirs != (source.identity, fingerprint):
        raise RunDirError(
            f"{run_dir}: cannot resume: it holds source {theirs[0]!r} under protocol fingerprint {theirs[1]}, "
            f"this run is source {source.identity!r} under {fingerprint} (protocol {protocol.label()}); "
            "use the same predictions and protocol, or another folder")
    record.setdefault("invocations", []).append(invocation)
    return record, True


def _load_item(row: Mapping[str, Any], source: PredictionSource, protocol: Protocol):
    """One sample's CPU work: (row, ground truth or exception, loaded prediction)."""
    return row, load_ground_truth(row.get("gt_mesh")), source.load(row, protocol)


class _Items(torch.utils.data.Dataset):
    def __init__(self, rows, source, protocol):
        self.rows, self.source, self.protocol = rows, source, protocol

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        return _load_item(self.rows[i], self.source, self.protocol)


def _keep_list(items: list) -> list:
    """DataLoader collate for ragged items: the list as it is."""
    return items


def _batches(rows, source, protocol, batch_size: int, num_workers: int):
    if num_workers == 0:
        for start in range(0, len(rows), batch_size):
            yield [_load_item(r, source, protocol) for r in rows[start : start + batch_size]]
        return
    loader = torch.utils.data.DataLoader(
        _Items(rows, source, protocol), batch_size=batch_size, shuffle=False, num_workers=num_workers,
        collate_fn=_keep_list, prefetch_factor=2, persistent_workers=False,
    )
    yield from loader


def results_frame(scores: BatchScores, rows: Sequence[Mapping[str, Any]], strata: Sequence[str], *,
                  run_id: str, source: str, protocol: Protocol, fingerprint: str, rank: int = 0,
                  keys: Mapping[str, SampleKey] | None = None):
    """A batch's `BatchScores` as rows of the results schema (`io.results`), strata copied from `rows` and
    the content keys from `keys` (None where a sample has none)."""
    import pandas as pd

    n = len(scores)
    data: dict[str, Any] = {
        "run_id": [run_id] * n,
        "sample_id": list(scores.sample_ids),
        "status": list(scores.status),
        "error": pd.Series(scores.error, dtype=object),
        "source": [source] * n,
        "fingerprint": [fingerprint] * n,
        "protocol": [protocol.name] * n,
        "pred_kind": pd.Series(scores.pred_kind, dtype=object),
        "transform": pd.Series([json.dumps(t) if t is not None else None for t in scores.transforms], dtype=object),
        "notes": [json.dumps(list(x)) for x in scores.notes],
        "rank": [rank] * n,
        "written_at": [time.time_ns()] * n,
    }
    for i, col in enumerate(CONTENT_COLUMNS):
        data[col] = pd.Series([keys[sid].as_tuple()[i] if keys and sid in keys else None
                               for sid in scores.sample_ids], dtype=object)
    for s in strata:
        data[s] = pd.Series([r.get(s) for r in rows], dtype=object if s != "occlusion" else "float64")
    clash = sorted(set(scores.metrics) & set(data))
    if clash:
        raise ValueError(f"manifest column(s) {clash} have the names of metrics; rename them")
    for m, t in scores.metrics.items():
        data[m] = t.detach().to("cpu", torch.float64).numpy()
    return pd.DataFrame(data)


def manifest_rows(stored, sample_ids, identity: str, fingerprint: str):
    """The rows of a stored results frame for `sample_ids` under `identity` and `fingerprint` (what a run on
    a manifest covers; the store may hold more samples, from earlier runs on a larger manifest)."""
    keep = stored["sample_id"].isin(set(sample_ids)) & (stored["source"] == identity) & (stored["fingerprint"] == fingerprint)
    out = stored[keep].reset_index(drop=True)
    out.attrs = dict(stored.attrs)
    return out


def _arrow_ready(manifest, strata: Sequence[str]):
    """The manifest with each free-form (object) stratum as text, so every part stores it with one type
    (a JSONL column may mix numbers and strings); numeric and text columns are kept as they are."""
    import math

    out = manifest
    for c in strata:
        if c in manifest.columns and manifest[c].dtype == object:
            if out is manifest:
                out = manifest.copy()
            out[c] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in manifest[c]]
    return out


def run_evaluation(
    source: PredictionSource,
    manifest,
    protocol: Protocol | str = "default",
    run_dir: str | os.PathLike | None = None,
    *,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    resume: bool = False,
    appearance: Any | None = None,
    num_workers: int | None = None,
    progress: Progress | None = None,
    command: Sequence[str] | None = None,
    torch_threads: int | str | None = "auto",
    on_batch: Callable[[Any], None] | None = None,
) -> RunResult:
    """Score every manifest row's prediction against its ground truth under `protocol`; store the rows.

    Args:
        source: a `PredictionSource` (`FolderSource`, `PredictorSource`).
        manifest: a frame with ``sample_id`` and ``gt_mesh`` (`data.manifest.load_manifest`, or
            `sources.find_pairs`); its strata columns are copied to every result row.
        protocol: a `Protocol` or a preset name.
        run_dir: the run folder (see the module docstring); None keeps the results in memory (no resume).
        batch_size: samples per `score_batch` call and per part file.
        device: where to score. num_workers: loader processes (default: min(4, CPUs) on CUDA, 0 = inline on
            the CPU).
        resume: continue the run stored in `run_dir`.
        appearance: an `AppearanceScorer` for LPIPS / PSNR / SSIM of the renders, or None.
        progress: a `Progress` to report to; command: the command line recorded (default ``sys.argv``).
        torch_threads: passed to `runtime_policy` ("auto": one torch thread on CPU).
        on_batch: called with each batch's results frame after it is stored (tests, custom sinks).

    Returns a `RunResult`. Raises `RunDirError` (run folder unusable), `ValueError` (bad arguments); a
    sample that cannot be read or scored is a failed row, never an exception.
    """
    protocol = get_protocol(protocol)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    fingerprint = protocol.fingerprint()
    rank, world = dist_info()
    if "sample_id" not in manifest.columns or "gt_mesh" not in manifest.columns:
        raise ValueError("the manifest needs sample_id and gt_mesh columns")
    strata = manifest_strata(manifest) if "domain" in manifest.columns else [
        c for c in manifest.columns if c not in ("sample_id", "gt_mesh", "image", "mask", "camera")]
    progress = progress or Progress()

    by_id = {str(r["sample_id"]): r for r in _arrow_ready(manifest, strata).to_dict("records")}
    # every rank hashes its share of the files (the keys are what a stored row is reused by)
    ids = sorted(by_id)
    keys: dict[str, Any] = {}
    for part in _all_gather(sample_keys((by_id[sid] for sid in ids[rank::world]), source)):
        keys.update(part)
    if run_dir is not None:
        # Rank 0 prepares the folder and decides what is left to do, BEFORE any rank writes, and tells the
        # others: a rank reading the store on its own could already see rows that another rank has just
        # written, and shard a different list.
        run_dir = pathlib.Path(run_dir)
        plan: Any = None
        if rank == 0:
            try:
                record, existed = _prepare_run(run_dir, source, protocol, fingerprint, resume, command,
                                               manifest.attrs.get("manifest"), world)
                done: set[str] = set()
                stale: set[str] = set()
                if existed:
                    done, stale = split_stored(read_results(run_dir), keys, source.identity, fingerprint)
                todo = sorted(sid for sid in by_id if sid not in done)
                if todo or not existed:  # a call that scores nothing leaves run.json as it was
                    write_run_json(run_dir, record)
                plan = (record["run_id"], todo, len(stale))
            except (RunDirError, OSError, ValueError) as err:
                plan = err
        plan = _broadcast(plan)
        if isinstance(plan, BaseException):
            raise plan
        run_id, todo, n_stale = plan
    else:
        run_id, todo, n_stale = "memory-" + uuid.uuid4().hex[:6], ids, 0
    rows = [by_id[sid] for sid in todo[rank::world]]
    skipped = len(by_id) - len(todo)

    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1) if device.type == "cuda" else 0
    timings = dict.fromkeys(STAGES, 0.0)
    frames = []
    scored = failed = 0
    progress.start(len(rows), skipped)
    try:
        with runtime_policy(device, torch_threads=torch_threads):
            t = time.perf_counter()
            for items in _batches(rows, source, protocol, batch_size, num_workers):
                batch_rows = [it[0] for it in items]
                gts = [g.to(device) if not isinstance(g, BaseException) else g for _, g, _ in items]
                loaded: list[LoadedPrediction] = [it[2] for it in items]
                t1 = time.perf_counter()
                timings["load"] += t1 - t
                finished = source.finish(loaded, device)
                t2 = time.perf_counter()
                timings["predict"] += t2 - t1
                scores = score_batch([str(r["sample_id"]) for r in batch_rows], [p for p, _ in finished], gts,
                                     protocol, appearance=appearance, pred_kinds=[k for _, k in finished])
                t3 = time.perf_counter()
                timings["score"] += t3 - t2
                frame = results_frame(scores, batch_rows, strata, run_id=run_id, source=source.identity,
                                      protocol=protocol, fingerprint=fingerprint, rank=rank, keys=keys)
                if run_dir is not None:
                    write_results_part(run_dir, frame, metrics=list(scores.metrics), strata=strata, rank=rank)
                else:
                    frames.append(frame)
                if on_batch is not None:
                    on_batch(frame)
                t = time.perf_counter()
                timings["write"] += t - t3
                scored += len(scores)
                failed += sum(s != "ok" for s in scores.status)
                progress.update(len(scores))
    finally:
        progress.close()

    _barrier()
    result = RunResult(run_dir, run_id, rank, world, len(by_id), skipped, scored, failed, timings=timings,
                       stale=n_stale)
    if run_dir is not None:
        if rank == 0:
            result.frame = manifest_rows(read_results(run_dir), by_id, source.identity, fingerprint)
    else:
        import pandas as pd

        if frames:
            result.frame = pd.concat(frames, ignore_index=True).sort_values("sample_id", kind="stable").reset_index(drop=True)
            result.frame.attrs.update(metrics=[c for c in frames[0].columns if c in scores.metrics], strata=list(strata))
        else:
            result.frame = None
    return result
