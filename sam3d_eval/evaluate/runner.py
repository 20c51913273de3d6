"""The evaluation runner: manifest rows + a prediction source -> batches through `score_batch` -> results store.

`run_evaluation` is what ``sam3d-eval evaluate`` and ``eval-meshes`` run:

1. the run folder is prepared on rank 0 (``run.json``: run id, source, protocol and its fingerprint, run
   metadata, the strata columns' Arrow types, one entry per invocation); a folder that already holds a run is
   only continued with ``resume=True``, and then only for the same source identity and protocol fingerprint
   and a manifest whose strata columns are the run's, of types that cast to the recorded ones without change
   (every part is stored under the recorded types). Rank 0 holds an exclusive lock on the folder
   (`RunLock`, ``RUN_DIR/.lock`` holding its pid) from here to the end of the run, so a second writer is
   refused; the other ranks wait for rank 0's plan, which comes only once it holds the lock. Every input
   problem (a manifest column named like a metric, a run.json that is not a run record, a ``results`` that is
   a file) is found before run.json is written, and a start that fails before any part is stored removes the
   run.json it wrote (and the folder, when this call created it), so it never forces ``--resume``;
2. every manifest row gets its content keys (`evaluate.content`: SHA-256 of the prediction's bytes or the
   model's identity and inputs, of the ground truth's bytes, and of the manifest row without its paths),
   stored with its result; with ``resume``, a sample is skipped only when a row is stored ``ok`` for this
   source and fingerprint with the same three keys (failed ones are retried; a *stale* ok row, whose
   prediction, ground truth or manifest row changed since, is scored again; `io.results.read_results` keeps
   the latest row of a sample). ``run.json`` gains an invocation only when something is scored;
3. the remaining sample ids, sorted, are sharded over the ranks of `torch.distributed` when a process group
   is initialised (``torchrun``): rank 0 reads the store and broadcasts the list before any rank writes,
   and rank r takes ids r, r + W, r + 2W, ... of it;
4. batches of `batch_size` samples are loaded (ground truth and prediction, CPU; the visible mask when the
   protocol asks for the "visibility" split), the source finishes them (a `Predictor` runs here),
   `score_batch` scores them (with each row's ``camera`` when the protocol asks for the visibility split or
   an appearance scorer is given, and its ``mask`` for the visibility split), and each batch is written as
   one Parquet part (atomic rename), so an interruption loses at most the batches in flight.

Failures: anything a sample's loading, finishing or scoring raises (an `Exception`, `MemoryError` included:
it comes from one absurd allocation, such as a file header declaring 10^12 vertices) becomes that sample's
failed row with the exception's type and message; when a batched step (the source's `finish`, `score_batch`)
raises, the batch is run again sample by sample, so only the sample that raises fails and the others get
the numbers they get in any batch. Failed rows are retried by a resume. Only errors of the run itself stop
it: the run folder and its store (`RunDirError`, `OSError` while writing), a process group error,
`KeyboardInterrupt` and `SystemExit`.

Overlap of loading and scoring. On CUDA, `num_workers` loader processes (torch `DataLoader`, a collate that
keeps the ragged items as a list) read and decode the next batches while the GPU scores this one; the same
path runs on the CPU when `num_workers` > 0 is asked for. Otherwise, on the CPU, `_overlap_plan` follows the
cores that are idle when the run starts (scoring runs on one thread per process): with two or more,
`score_workers` forked processes score whole batches (loading included) and the parent writes them in order;
with one, a loader thread reads batch k + 1 while batch k is scored (`prefetch`); on a busy machine, inline.
`score_workers` and `prefetch` fix the choice; `RunResult.overlap` says which ran. `gt_cache` (an
`evaluate.gt_cache.GTSampleCache`, which `compare` keeps across its sides) gives `score_batch` the GT surface
samples an earlier run drew, keyed by the GT's content hash; the scoring processes get those of their batch
and send back the ones they draw. The whole loop runs inside one `runtime.runtime_policy(device)` (in the
scoring processes too).

A sample's numbers do not depend on the batch size, the order, the rank count or a resume: every random
draw comes from its own seed streams (`score_batch`). The frame a run returns covers the manifest it was
given (its sample ids, under this source and fingerprint), not every row the folder holds.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import pathlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.manifest import Manifest, as_manifest
from ..distributed import all_gather_object as _all_gather
from ..distributed import barrier as _barrier
from ..distributed import broadcast_object as _broadcast
from ..distributed import dist_info
from ..io.results import (
    RESULT_COLUMNS,
    RESULTS_DIR,
    RUN_JSON,
    _json_kind,
    _part_files,
    arrow_type,
    cast_losslessly,
    ensure_writable_dir,
    read_results,
    read_run_json,
    run_metadata,
    write_results_part,
    write_run_json,
)
from ..runtime import runtime_policy
from .content import CONTENT_COLUMNS, SampleKey, sample_keys, split_stored
from .gt_cache import GTSampleCache
from .protocols import Protocol, get_protocol
from .scoring import BatchScores, concat_scores, failed_scores, metric_names, score_batch
from .sources import (LoadedPrediction, PredictionSource, SampleError, describe_error, load_ground_truth,
                      load_visible_mask)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: runs are not locked
    fcntl = None

__all__ = ["LOCK_FILE", "RunDirError", "RunLock", "RunResult", "Progress", "run_evaluation", "check_run_dir",
           "dist_info", "manifest_rows", "results_frame"]

STAGES = ("load", "predict", "score", "write")
LOCK_FILE = ".lock"


class RunDirError(ValueError):
    """The run folder cannot be used as asked (holds another run, unwritable, in use, ...); the message says
    why, on one line."""


class RunLock:
    """An exclusive lock on a run folder: `fcntl.flock` on ``RUN_DIR/.lock``, non-blocking, with the holder's
    pid written into the file.

    `acquire` raises `RunDirError` naming the holder's pid when another process (or another open of the lock
    in this process) holds it. The lock goes with the open file: `release`, the process's exit or its death
    free it, so a killed run never leaves a stale lock (the file itself stays; it is only a handle). Where
    flock is missing (Windows) or the filesystem refuses it, the run goes on unlocked.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = pathlib.Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock (the folder must exist); raises `RunDirError` when another holder has it, `OSError`
        when the lock file cannot be opened."""
        if fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_pid(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunDirError(f"{self.run_dir}: another evaluation is writing to this run folder "
                                  f"(pid {holder}); wait for it to end, or choose another folder") from None
            return self  # no flock on this filesystem (some network mounts): run unlocked
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)  # never keep a lock that its caller does not know it holds
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (nothing when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # a pid left behind would name a process that no longer holds it
        except OSError:
            pass
        try:
            # unlock before closing: a forked child (a loader worker, a model's process pool) shares the open
            # file, and closing only this descriptor would leave the lock held until the child exits
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(fd)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


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
    or in memory; None on other ranks); timings: seconds per stage on this rank (with scoring processes,
    their summed time); overlap: how loading and scoring overlapped ("inline", "loader thread", "N scoring
    processes", "N loader processes").
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
    overlap: str = "inline"


def _check_record(run_dir: pathlib.Path, record: dict) -> None:
    """Raise `RunDirError` naming the first field of a run record that is missing or of the wrong type."""
    where = run_dir / RUN_JSON

    def bad(name: str, value: Any, want: str) -> RunDirError:
        got = "missing" if value is None else _json_kind(value)
        return RunDirError(f"{where}: not a run record this version can use: {name!r} is {got}, expected {want}; "
                           "choose another folder")

    for name in ("run_id", "fingerprint"):
        if not isinstance(record.get(name), str):
            raise bad(name, record.get(name), "a string")
    src = record.get("source")
    if not isinstance(src, dict):
        raise bad("source", src, "an object")
    if not isinstance(src.get("identity"), str):
        raise bad("source.identity", src.get("identity"), "a string")
    optional = (("protocol", dict, "an object"), ("invocations", list, "a list"),
                ("strata_types", dict, "an object of type names"))
    for name, kind, want in optional:
        if name in record and not isinstance(record[name], kind):
            raise bad(name, record[name], want)
    types = record.get("strata_types") or {}
    for col, value in types.items():
        if not isinstance(value, str):
            raise bad(f"strata_types.{col}", value, "a type name")


def check_run_dir(run_dir: str | os.PathLike, *, resume: bool, probe_lock: bool = True) -> dict | None:
    """Validate a run folder before any work: a writable folder, its ``results`` a folder, its run.json a run
    record, no other run unless resuming, and (`probe_lock`) no other evaluation writing to it.

    Returns the existing run record (resume) or None. Raises `RunDirError` naming the problem (and
    `io.results.ResultsStoreError` for a run.json that is not JSON or not an object). The lock is only
    tried here, not held: `run_evaluation` takes it for the run.
    """
    run_dir = pathlib.Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: --out must be a folder, but this is a file")
    results = run_dir / RESULTS_DIR
    if results.exists() and not results.is_dir():
        raise RunDirError(f"{results}: must be the folder of result parts, but this is a file; move it away or "
                          "choose another folder")
    record = read_run_json(run_dir) if run_dir.is_dir() else None
    if record is not None:
        _check_record(run_dir, record)
    if record is None and results.is_dir() and any(_part_files(run_dir)):
        raise RunDirError(f"{run_dir}: holds results/ but no run.json; choose an empty folder")
    if record is not None and not resume:
        raise RunDirError(f"{run_dir}: already holds run {record['run_id']} (source "
                          f"{record['source']['identity']!r}, protocol {(record.get('protocol') or {}).get('name')!r}); "
                          "pass --resume to continue it, or choose another folder")
    try:
        ensure_writable_dir(run_dir)  # a missing folder is created by the run itself, and removed if its start fails
        if probe_lock and run_dir.is_dir():
            RunLock(run_dir).acquire().release()
    except OSError as err:
        raise RunDirError(f"{run_dir}: cannot write to this folder ({err.strerror or err})") from None
    return record


def _prepare_run(run_dir: pathlib.Path, source: PredictionSource, protocol: Protocol, fingerprint: str,
                 resume: bool, command: Sequence[str] | None, manifest_path: str | None, world: int) -> tuple[dict, bool]:
    """(the run record with this invocation appended, whether the folder already held it). Called under the
    run's lock."""
    record = check_run_dir(run_dir, resume=resume, probe_lock=False)
    meta = run_metadata(command)  # the protocol is stored once, at the top level
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
    theirs = (record["source"]["identity"], record["fingerprint"])
    if theirs != (source.identity, fingerprint):
        raise RunDirError(
            f"{run_dir}: cannot resume: it holds source {theirs[0]!r} under protocol fingerprint {theirs[1]}, "
            f"this run is source {source.identity!r} under {fingerprint} (protocol {protocol.label()}); "
            "use the same predictions and protocol, or another folder")
    record.setdefault("invocations", []).append(invocation)
    return record, True


def _check_column_names(strata: Sequence[str], protocol: Protocol) -> None:
    """Refuse strata that would take the name of a result column (a metric of `protocol`, appearance ones
    included, or the results table's own), before anything is written."""
    taken = set(RESULT_COLUMNS) | {"part"} | set(metric_names(protocol, appearance=True))
    clash = [c for c in strata if c in taken]
    if clash:
        raise ValueError(f"manifest column(s) {', '.join(map(repr, clash))} have the names of result columns "
                         f"(metrics of protocol {protocol.label()}, or the results table's own); rename them")


def _column_values(ready, col: str):
    """A stratum's values as the results store holds them (`results_frame` builds the same series)."""
    import pandas as pd
    import pyarrow as pa

    values = pd.Series(list(ready[col]), dtype="float64" if col == "occlusion" else object)
    return pa.array(values, from_pandas=True)


def _strata_types(ready, strata: Sequence[str]) -> dict[str, str]:
    """``{stratum: Arrow type name}`` of the manifest's strata as stored; a column with no value takes its
    pandas dtype's type (text for object columns)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    out = {}
    for col in strata:
        try:
            t = _column_values(ready, col).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError) as err:
            raise ValueError(f"manifest column {col!r} holds values the results table cannot store ({err})") from None
        if pa.types.is_null(t):
            dtype = ready[col].dtype
            numeric = isinstance(dtype, np.dtype) and pd.api.types.is_numeric_dtype(dtype)
            t = pa.from_numpy_dtype(dtype) if numeric else pa.string()
        out[col] = str(t)
    return out


def _check_strata(run_dir: pathlib.Path, ready, strata: Sequence[str], recorded: Mapping[str, str]) -> None:
    """Refuse a resume whose strata are not the run's, or hold values that the recorded types cannot store
    without change (`io.results.cast_losslessly`); `RunDirError` names the column."""
    now = _strata_types(ready, strata)
    hint = "resume with the run's manifest, or choose another folder"
    for col in now:
        if col not in recorded:
            raise RunDirError(f"{run_dir}: cannot resume: the manifest has a column {col!r} that the run's manifest "
                              f"did not have; {hint}")
    for col in recorded:
        if col not in now:
            raise RunDirError(f"{run_dir}: cannot resume: the manifest lacks the column {col!r} of the run's "
                              f"manifest; {hint}")
    for col, name in now.items():
        if name == recorded[col]:
            continue
        target = arrow_type(recorded[col])
        if target is None or cast_losslessly(_column_values(ready, col), target) is None:
            raise RunDirError(f"{run_dir}: cannot resume: manifest column {col!r} holds {name} values that cannot "
                              f"be stored as {recorded[col]}, its type when the run started, without change; {hint}")


class _RunFolder:
    """Rank 0's hold on a run folder for one call: the lock, and what to undo when the start fails."""

    def __init__(self, run_dir: pathlib.Path) -> None:
        self.run_dir = run_dir
        if run_dir.exists() and not run_dir.is_dir():
            raise RunDirError(f"{run_dir}: --out must be a folder, but this is a file")
        self.created = not run_dir.exists()
        self.wrote_record = False
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            self.lock = RunLock(run_dir)
            self.lock.acquire()
        except OSError as err:
            self._remove_created()
            raise RunDirError(f"{run_dir}: cannot write to this folder ({err.strerror or err})") from None
        except RunDirError:
            self._remove_created()
            raise

    def close(self, failed: bool) -> None:
        """Release the lock; after a failure that stored no part, remove the run.json this call wrote (and the
        folder it created), so the next call is not told to ``--resume`` a run that holds nothing."""
        try:
            if failed and self.wrote_record and not _part_files(self.run_dir):
                (self.run_dir / RUN_JSON).unlink(missing_ok=True)
            if failed and self.created:  # still under the lock: no second writer can have started here
                self._remove_created()
        except OSError:
            pass  # the error that ended the run is the one to report
        finally:
            self.lock.release()

    def _remove_created(self) -> None:
        """Remove the folder this call created when it holds nothing but the lock file and an empty results/."""
        if not self.created:
            return
        try:
            if (self.run_dir / RESULTS_DIR).is_dir():
                (self.run_dir / RESULTS_DIR).rmdir()
            if {p.name for p in self.run_dir.iterdir()} <= {LOCK_FILE}:
                (self.run_dir / LOCK_FILE).unlink(missing_ok=True)
                self.run_dir.rmdir()
        except OSError:
            pass  # something else is in it now: leave it


def _load_item(row: Mapping[str, Any], source: PredictionSource, protocol: Protocol):
    """One sample's CPU work: (row, ground truth or exception, loaded prediction, visible mask or exception or
    None); never raises, so one bad file cannot end a batch (or a loader worker). The mask is read only for
    the visibility split."""
    gt = load_ground_truth(row.get("gt_mesh"))
    try:
        pred = source.load(row, protocol)
    except Exception as err:  # noqa: BLE001 - a source that raises for one row fails that row only
        pred = LoadedPrediction(row["sample_id"], error=SampleError(describe_error(err)))
    mask = load_visible_mask(row.get("mask")) if "visibility" in protocol.metrics else None
    return row, gt, pred, mask


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


def _batches(rows, source, protocol, batch_size: int, num_workers: int, prefetch: bool = True):
    """The loaded batches of `rows`, in order: `num_workers` loader processes (a DataLoader); with none, one
    loader thread reading batch k + 1 while the caller scores batch k (`prefetch`), or inline."""
    if num_workers == 0:
        chunks = [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]

        def load(chunk):
            return [_load_item(r, source, protocol) for r in chunk]

        if not prefetch or len(chunks) < 2:
            for chunk in chunks:
                yield load(chunk)
            return
        # One thread, one batch ahead: order and contents are the inline path's; a load in flight when the
        # caller stops is waited for (the executor's exit), never abandoned mid-file.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam3d-eval-loader") as pool:
            pending = pool.submit(load, chunks[0])
            for chunk in chunks[1:]:
                items = pending.result()
                pending = pool.submit(load, chunk)
                yield items
            yield pending.result()
        return
    loader = torch.utils.data.DataLoader(
        _Items(rows, source, protocol), batch_size=batch_size, shuffle=False, num_workers=num_workers,
        collate_fn=_keep_list, prefetch_factor=2, persistent_workers=False,
    )
    yield from loader


# ----------------------------------------------------------------------------------------------------
# scoring processes (CPU): each scores whole batches, loading included; the parent writes them in order

_WORKER: dict[str, Any] = {}
# A process pays off once it scores a few batches: below this many samples a run stays in this process.
SCORE_WORKERS_MIN_SAMPLES = 16
MAX_SCORE_WORKERS = 8
JOBS_PER_WORKER = 5  # a run of few batches is cut finer, so that the processes end together


def _usable_cores() -> int:
    """CPUs this process may run on: its affinity set, capped by a cgroup v2 CPU quota when there is one."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        quota, period = pathlib.Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, n)


def _idle_cores(window: float = 0.05) -> float | None:
    """How many of this process's CPUs were idle over the next `window` seconds (``/proc/stat``), or None
    where that cannot be read. The caller sleeps meanwhile, so only other processes' work counts."""
    try:
        mine = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        mine = None

    def read() -> dict[int, tuple[int, int]]:
        out = {}
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith("cpu") and line[3:4].isdigit():
                    name, *vals = line.split()
                    ticks = [int(v) for v in vals[:8]]  # user .. steal (guest time is inside user)
                    out[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))  # idle + iowait, all
        return out

    try:
        before = read()
        time.sleep(window)
        after = read()
    except (OSError, ValueError, IndexError):
        return None
    cpus = [c for c in (mine if mine is not None else before) if c in before and c in after]
    idle = sum(after[c][0] - before[c][0] for c in cpus)
    total = sum(after[c][1] - before[c][1] for c in cpus)
    return len(cpus) * idle / total if total > 0 else None


def _overlap_plan(source: PredictionSource, device: torch.device, appearance: Any, num_workers: int, world: int,
                  n_rows: int, batch_size: int, score_workers: int | None, prefetch: bool | None,
                  torch_threads: int | str | None = "auto") -> tuple[int, bool]:
    """(scoring processes, loader thread) of a run on the CPU; explicit arguments are kept as given.

    What is left to choose ("auto", None) follows the cores that are idle when the run starts (`_idle_cores`,
    measured for runs of at least `SCORE_WORKERS_MIN_SAMPLES` samples): scoring is one thread per process and
    parallel work only gains on idle cores (on the 2-core reference machine: 200 samples in 3.8 s with two
    scoring processes against 5.9 s inline when it was quiet, but 12-15 s against 7-12 s inline at load
    average 4-5). Scoring processes, one per idle core (at least two, at most `MAX_SCORE_WORKERS`, one per
    batch), need one idle core besides this process's own and a run they can take: a prediction folder
    (files: nothing to share but paths), no appearance scorer, no loader processes, one rank, one torch
    thread (``torch_threads`` "auto" or 1: a forked process must not start an OpenMP team), Linux (fork).
    Otherwise the loader thread reads the next batch while this one is scored when most of a core is idle,
    or when the run is too short to measure; on a busy machine the loop runs inline."""
    import multiprocessing
    import sys

    from .sources import FolderSource

    n_batches = -(-n_rows // batch_size)
    if device.type != "cpu" or num_workers > 0 or n_batches < 2:
        return score_workers or 0, n_batches >= 2 and prefetch is not False
    if score_workers is not None and prefetch is not None:
        return score_workers, prefetch
    if n_rows < SCORE_WORKERS_MIN_SAMPLES:
        return score_workers or 0, True if prefetch is None else prefetch
    idle = _idle_cores()
    cores = _usable_cores()
    idle = float(cores) if idle is None else min(idle, float(cores))
    if score_workers is None:
        can = (appearance is None and world == 1 and isinstance(source, FolderSource) and torch_threads in ("auto", 1)
               and sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods())
        n = min(MAX_SCORE_WORKERS, cores, n_batches, max(2, int(idle + 0.5))) if can and idle >= 1.0 else 0
        score_workers = n if n >= 2 else 0
    if prefetch is None:
        prefetch = score_workers == 0 and idle >= 0.75
    return score_workers, prefetch


def _score_worker_init(source: PredictionSource, protocol: Protocol, device: torch.device,
                       torch_threads: int | str | None) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the run; a worker ends with the pool
    _WORKER.update(source=source, protocol=protocol, device=device, torch_threads=torch_threads)


def _score_job(rows: list, keys: Mapping[str, SampleKey], gt_cache: GTSampleCache | None):
    """One batch in a scoring process: load, finish and score it as the parent would (`_score_items`, under
    the parent's thread policy); returns (scores with arrays for tensors, stage timings, the GT samples it drew
    or None)."""
    source, protocol, device = _WORKER["source"], _WORKER["protocol"], _WORKER["device"]
    timings = dict.fromkeys(STAGES, 0.0)
    with runtime_policy(device, torch_threads=_WORKER["torch_threads"]):
        t = time.perf_counter()
        items = [_load_item(r, source, protocol) for r in rows]
        timings["load"] += time.perf_counter() - t
        scores = _score_items(items, source, protocol, device, None, timings, gt_cache, keys)
    scores.metrics = {k: v.numpy() for k, v in scores.metrics.items()}  # plain arrays travel best
    return scores, timings, None if gt_cache is None else gt_cache.added()


def _scored_in_processes(rows: list, source: PredictionSource, protocol: Protocol, batch_size: int, workers: int,
                         device: torch.device, torch_threads: int | str | None, gt_cache: GTSampleCache | None,
                         keys: Mapping[str, SampleKey], timings: dict[str, float]):
    """(batch rows, `BatchScores`) of every batch in order, scored by `workers` forked processes. A batch is
    scored as jobs of up to `batch_size` samples (smaller when the run has few batches per process, so that
    the processes end together), at most two jobs ahead per process, and joined again (`concat_scores`): the
    numbers are the in-process ones, since every draw is keyed by sample id and each element is scored on its
    own on the CPU. The GT samples of `gt_cache` travel with each job and the new ones come back into it."""
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    fp = protocol.fingerprint()
    batches = [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]
    job = max(1, min(batch_size, -(-len(rows) // (JOBS_PER_WORKER * workers))))
    jobs = ((b, chunk[start : start + job]) for b, chunk in enumerate(batches) for start in range(0, len(chunk), job))
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_score_worker_init, initargs=(source, protocol, device, torch_threads))

    def submit(b: int, chunk: list):
        sub = {str(r["sample_id"]): keys[str(r["sample_id"])] for r in chunk if str(r["sample_id"]) in keys}
        shipped = None
        if gt_cache is not None:
            shipped = gt_cache.subset(GTSampleCache.key(k.gt_sha256, sid, fp) for sid, k in sub.items())
        return b, pool.submit(_score_job, chunk, sub, shipped)

    try:
        pending = deque(submit(b, chunk) for b, chunk in itertools.islice(jobs, 2 * workers))
        parts: list[BatchScores] = []
        while pending:
            b, future = pending.popleft()  # jobs come back in the order they were sent: batch by batch
            scores, spent, drawn = future.result()
            nxt = next(jobs, None)
            if nxt is not None:
                pending.append(submit(*nxt))
            scores.metrics = {k: torch.from_numpy(v) for k, v in scores.metrics.items()}
            for stage in ("load", "predict", "score"):
                timings[stage] += spent[stage]
            if drawn is not None:
                gt_cache.merge(drawn)
            parts.append(scores)
            if sum(len(x) for x in parts) == len(batches[b]):
                yield batches[b], parts[0] if len(parts) == 1 else concat_scores(parts)
                parts = []
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _scored_here(rows: list, source: PredictionSource, protocol: Protocol, batch_size: int, num_workers: int,
                 prefetch: bool, device: torch.device, appearance: Any, gt_cache: GTSampleCache | None,
                 keys: Mapping[str, SampleKey], timings: dict[str, float]):
    """(batch rows, `BatchScores`) of every batch in order, scored in this process (loaded by `_batches`)."""
    t = time.perf_counter()
    with contextlib.closing(_batches(rows, source, protocol, batch_size, num_workers, prefetch)) as batches:
        for items in batches:
            timings["load"] += time.perf_counter() - t
            scores = _score_items(items, source, protocol, device, appearance, timings, gt_cache, keys)
            yield [it[0] for it in items], scores
            t = time.perf_counter()


def _finish_and_score(items: list, source: PredictionSource, protocol: Protocol, device: torch.device,
                      appearance: Any, timings: dict[str, float], gt_cache: GTSampleCache | None = None,
                      keys: Mapping[str, SampleKey] | None = None) -> BatchScores:
    """The batched steps of loaded items: the source's `finish` (a model runs here) and `score_batch` (with
    `gt_cache`, each sample's GT content key from `keys`)."""
    ids = [row["sample_id"] for row, *_ in items]
    gts = [g if isinstance(g, BaseException) else g.to(device) for _, g, *_ in items]
    t = time.perf_counter()
    finished = source.finish([pred for _, _, pred, _ in items], device)
    if len(finished) != len(items):
        raise RuntimeError(f"source {source.name!r} finished {len(finished)} of {len(items)} samples")
    t2 = time.perf_counter()
    timings["predict"] += t2 - t
    visibility = "visibility" in protocol.metrics
    # The input camera serves the visibility split and the input-view appearance; the mask only the split.
    cameras = [row.get("camera") for row, *_ in items] if visibility or appearance is not None else None
    masks = [mask for *_, mask in items] if visibility else None
    reuse = {} if gt_cache is None else {
        "gt_cache": gt_cache, "gt_keys": [keys[i].gt_sha256 if keys and i in keys else None for i in ids]}
    scores = score_batch(ids, [p for p, _ in finished], gts, protocol, appearance=appearance,
                         pred_kinds=[k for _, k in finished], cameras=cameras, masks=masks, **reuse)
    timings["score"] += time.perf_counter() - t2
    return scores


def _is_run_error(err: BaseException) -> bool:
    """Errors that no other sample would escape: a process-group failure, or a CUDA error other than running
    out of memory (a device-side assert leaves the context unusable for every later kernel)."""
    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(err, dist_error):
        return True
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return False
    return isinstance(err, RuntimeError) and "CUDA error" in str(err)


def _score_items(items: list, source: PredictionSource, protocol: Protocol, device: torch.device,
                 appearance: Any, timings: dict[str, float], gt_cache: GTSampleCache | None = None,
                 keys: Mapping[str, SampleKey] | None = None) -> BatchScores:
    """`_finish_and_score` of a batch; when it raises, again sample by sample, so that only the sample that
    raises fails (its row carries the exception's type and message) and the others keep their numbers: a
    file's numbers do not depend on the batch (every draw is keyed by sample id); a model's prediction run
    alone can differ from the batched one by float rounding on some devices. Errors of the run itself
    (`_is_run_error`) are raised, not turned into failed rows."""
    def failed(item, err: BaseException) -> BatchScores:
        row, _, pred, _ = item
        return failed_scores([row["sample_id"]], [describe_error(err)], protocol,
                             appearance=appearance is not None, pred_kinds=[getattr(pred, "kind", None)])

    spent = dict(timings)  # the failed batched attempt's time is not counted: its work is done again below
    try:
        return _finish_and_score(items, source, protocol, device, appearance, timings, gt_cache, keys)
    except Exception as err:  # noqa: BLE001 - find the sample that raises; only errors of the run stop it
        if _is_run_error(err):
            raise
        timings.update(spent)
        if len(items) == 1:
            return failed(items[0], err)
    parts = []
    for item in items:
        try:
            parts.append(_finish_and_score([item], source, protocol, device, appearance, timings, gt_cache, keys))
        except Exception as err:  # noqa: BLE001
            if _is_run_error(err):
                raise
            parts.append(failed(item, err))
    return concat_scores(parts)


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
    manifest: Manifest | Any,
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
    prefetch: bool | None = None,
    gt_cache: GTSampleCache | None = None,
    score_workers: int | None = None,
) -> RunResult:
    """Score every manifest row's prediction against its ground truth under `protocol`; store the rows.

    Args:
        source: a `PredictionSource` (`FolderSource`, `PredictorSource`).
        manifest: a `data.manifest.Manifest` (`Manifest.read`, `sources.find_pairs`), or a frame, which is
            validated into one first; its strata columns (`Manifest.strata`) are copied to every result row.
        protocol: a `Protocol` or a preset name.
        run_dir: the run folder (see the module docstring); None keeps the results in memory (no resume).
        batch_size: samples per `score_batch` call and per part file.
        device: where to score. num_workers: loader processes (default: min(4, CPUs) on CUDA, 0 on the CPU).
        resume: continue the run stored in `run_dir`.
        appearance: an `AppearanceScorer` for LPIPS / PSNR / SSIM of the renders, or None.
        progress: a `Progress` to report to; command: the command line recorded (default ``sys.argv``).
        torch_threads: passed to `runtime_policy` ("auto": one torch thread on CPU).
        on_batch: called with each batch's results frame after it is stored (tests, custom sinks).
        prefetch: on the CPU without loader or scoring processes, read the next batch in a loader thread
            while this one is scored; score_workers: processes that load and score whole batches on the CPU
            (0: none). None (default) chooses both from the idle cores (module docstring); every choice stores
            the same rows, bitwise.
        gt_cache: an `evaluate.gt_cache.GTSampleCache` to take GT surface samples from and add them to (the
            same numbers; `compare` shares one across its runs). None: every run draws its own.

    Returns a `RunResult`. Raises `RunDirError` (run folder unusable, in use by another evaluation, a resume
    with another source, protocol or manifest schema), `ValueError` (bad arguments, a manifest column named
    like a result column); a sample that cannot be read or scored is a failed row, never an exception (see
    the module docstring for what stops a run).
    """
    protocol = get_protocol(protocol)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if score_workers is not None and (isinstance(score_workers, bool) or not isinstance(score_workers, int)
                                      or score_workers < 0):
        raise ValueError(f"score_workers must be None or an int >= 0, got {score_workers!r}")
    device = torch.device(device)
    if score_workers and (device.type != "cpu" or appearance is not None or (num_workers or 0) > 0
                          or torch_threads not in ("auto", 1)):
        raise ValueError("score_workers > 0 scores on the CPU, on one torch thread per process, without an appearance "
                         f"scorer or loader processes (got device {device}, appearance "
                         f"{'set' if appearance is not None else 'None'}, num_workers {num_workers}, "
                         f"torch_threads {torch_threads!r})")
    fingerprint = protocol.fingerprint()
    rank, world = dist_info()
    manifest = as_manifest(manifest)
    strata = manifest.strata
    _check_column_names(strata, protocol)
    progress = progress or Progress()

    ready = _arrow_ready(manifest.frame, strata)
    types = _strata_types(ready, strata)  # also refuses, before anything is written, values Arrow cannot store
    by_id = dict(zip(manifest.sample_ids, ready.to_dict("records")))
    # every rank hashes its share of the files (the keys are what a stored row is reused by)
    ids = sorted(by_id)
    keys: dict[str, Any] = {}
    for part in _all_gather(sample_keys((by_id[sid] for sid in ids[rank::world]), source,
                                        mask_content="visibility" in protocol.metrics)):
        keys.update(part)
    folder: _RunFolder | None = None
    if run_dir is not None:
        # Rank 0 locks the folder, prepares it and decides what is left to do, BEFORE any rank writes, and
        # tells the others: a rank reading the store on its own could already see rows that another rank has
        # just written, and shard a different list.
        run_dir = pathlib.Path(run_dir)
        plan: Any = None
        if rank == 0:
            try:
                folder = _RunFolder(run_dir)
                plan = _plan(folder, source, protocol, fingerprint, resume, command,
                             None if manifest.path is None else str(manifest.path),
                             world, ready, strata, types, keys, by_id)
            except (RunDirError, OSError, ValueError) as err:
                plan = err
            except BaseException:
                if folder is not None:
                    folder.close(failed=True)
                raise
            if isinstance(plan, BaseException) and folder is not None:
                folder.close(failed=True)
        plan = _broadcast(plan)
        if isinstance(plan, BaseException):
            raise plan
        run_id, todo, n_stale, types = plan
    else:
        run_id, todo, n_stale = "memory-" + uuid.uuid4().hex[:6], ids, 0
    done_ok = False
    try:
        result = _score_rows(source, protocol, fingerprint, run_dir, [by_id[sid] for sid in todo[rank::world]],
                             strata, types, keys, run_id=run_id, rank=rank, world=world, total=len(by_id),
                             skipped=len(by_id) - len(todo), n_stale=n_stale, batch_size=batch_size, device=device,
                             appearance=appearance, num_workers=num_workers, progress=progress,
                             torch_threads=torch_threads, on_batch=on_batch, prefetch=prefetch,
                             gt_cache=gt_cache, score_workers=score_workers)
        done_ok = True
    finally:
        if folder is not None:
            folder.close(failed=not done_ok)
    return result


def _plan(folder: _RunFolder, source: PredictionSource, protocol: Protocol, fingerprint: str, resume: bool,
          command: Sequence[str] | None, manifest_path: str | None, world: int, ready, strata: Sequence[str],
          types: dict[str, str], keys: Mapping[str, SampleKey], by_id: Mapping[str, Any]):
    """Rank 0, under the lock: check and record the run, read what is stored; (run id, the sample ids to
    score, how many of them are stale, the strata types to store under)."""
    run_dir = folder.run_dir
    record, existed = _prepare_run(run_dir, source, protocol, fingerprint, resume, command, manifest_path, world)
    recorded = record.get("strata_types")
    if existed and recorded is not None:
        _check_strata(run_dir, ready, strata, recorded)
        types = dict(recorded)
    else:  # a new run, or one stored before the types were recorded: this manifest's types from now on
        record["strata_types"] = types
    done: set[str] = set()
    stale: set[str] = set()
    if existed:
        done, stale = split_stored(read_results(run_dir), keys, source.identity, fingerprint)
    todo = sorted(sid for sid in by_id if sid not in done)
    if todo or not existed:  # a call that scores nothing leaves run.json as it was
        write_run_json(run_dir, record)
        folder.wrote_record = not existed
    return record["run_id"], todo, len(stale), types


def _score_rows(source: PredictionSource, protocol: Protocol, fingerprint: str, run_dir: pathlib.Path | None,
                rows: list, strata: Sequence[str], types: Mapping[str, str], keys: Mapping[str, SampleKey], *,
                run_id: str, rank: int, world: int, total: int, skipped: int, n_stale: int, batch_size: int,
                device: torch.device, appearance: Any, num_workers: int | None, progress: Progress,
                torch_threads: int | str | None, on_batch: Callable[[Any], None] | None,
                prefetch: bool | None = None, gt_cache: GTSampleCache | None = None,
                score_workers: int | None = None) -> RunResult:
    """This rank's scoring loop over `rows`, then the run's frame (see `run_evaluation`)."""
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1) if device.type == "cuda" else 0
    score_workers, prefetch = _overlap_plan(source, device, appearance, num_workers, world, len(rows), batch_size,
                                            score_workers, prefetch, torch_threads)
    overlap = (f"{score_workers} scoring processes" if score_workers else f"{num_workers} loader processes"
               if num_workers else "loader thread" if prefetch else "inline")
    timings = dict.fromkeys(STAGES, 0.0)
    frames = []
    scored = failed = 0
    progress.start(len(rows), skipped)
    try:
        with runtime_policy(device, torch_threads=torch_threads):
            if score_workers > 0:
                scored_batches = _scored_in_processes(rows, source, protocol, batch_size, score_workers, device,
                                                      torch_threads, gt_cache, keys, timings)
            else:
                scored_batches = _scored_here(rows, source, protocol, batch_size, num_workers, prefetch, device,
                                              appearance, gt_cache, keys, timings)
            with contextlib.closing(scored_batches):
                for batch_rows, scores in scored_batches:
                    t3 = time.perf_counter()
                    frame = results_frame(scores, batch_rows, strata, run_id=run_id, source=source.identity,
                                          protocol=protocol, fingerprint=fingerprint, rank=rank, keys=keys)
                    if run_dir is not None:
                        write_results_part(run_dir, frame, metrics=list(scores.metrics), strata=strata, rank=rank,
                                           types=types)
                    else:
                        frames.append(frame)
                    if on_batch is not None:
                        on_batch(frame)
                    timings["write"] += time.perf_counter() - t3
                    scored += len(scores)
                    failed += sum(s != "ok" for s in scores.status)
                    progress.update(len(scores))
    finally:
        progress.close()

    _barrier()
    result = RunResult(run_dir, run_id, rank, world, total, skipped, scored, failed, timings=timings, stale=n_stale,
                       overlap=overlap)
    if run_dir is not None:
        if rank == 0:
            result.frame = manifest_rows(read_results(run_dir), keys, source.identity, fingerprint)
    else:
        import pandas as pd

        if frames:
            result.frame = pd.concat(frames, ignore_index=True).sort_values("sample_id", kind="stable").reset_index(drop=True)
            result.frame.attrs.update(metrics=[c for c in frames[0].columns if c in scores.metrics], strata=list(strata))
        else:
            result.frame = None
    return result
