"""The runner's overlap of loading and scoring: the loader thread (one batch ahead) and the scoring processes
give the rows the inline path gives, bitwise, in any batch size, and stop cleanly when the run stops."""

import multiprocessing
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch

from sam3d_eval.data.manifest import load_manifest
from sam3d_eval.data.shapes import make_shape
from sam3d_eval.evaluate import runner
from sam3d_eval.evaluate.gt_cache import GTSampleCache
from sam3d_eval.evaluate.protocols import get_protocol
from sam3d_eval.evaluate.runner import SCORE_WORKERS_MIN_SAMPLES, run_evaluation
from sam3d_eval.evaluate.sources import FolderSource
from sam3d_eval.io import read_results
from sam3d_eval.io.mesh_io import save_mesh

PROTOCOL = get_protocol("default").with_overrides(num_samples=500)
N = 11  # 10 scoreable, one without a prediction
SHAPES = ("sphere", "box", "torus")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefetch")
    (root / "gt").mkdir()
    (root / "preds").mkdir()
    rows = []
    for i in range(N):
        sid = f"p{i:02d}"
        v, f = make_shape(SHAPES[i % 3])
        save_mesh(root / "gt" / f"{sid}.ply", (torch.from_numpy(v), torch.from_numpy(f)))
        if i < N - 1:
            save_mesh(root / "preds" / f"{sid}.ply", (torch.from_numpy(v * (1 + 0.03 * i) + 0.01 * i), torch.from_numpy(f)))
        rows.append(dict(sample_id=sid, gt_mesh=f"gt/{sid}.ply", domain=("synthetic", "real")[i % 2], occlusion=i / N))
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return load_manifest(root / "manifest.csv"), FolderSource(root / "preds")


def _numbers(frame):
    """The columns a run's numbers and outcome live in, by sample id (not the run id or write time); text
    columns as objects with None for missing values (a stored frame reads them back as strings)."""
    metrics = list(frame.attrs["metrics"])
    out = frame.set_index("sample_id")[metrics].astype("float64")
    for col in ["status", "error", "transform", "notes", "pred_kind"]:
        out[col] = pd.Series([None if pd.isna(v) else v for v in frame[col]], index=out.index, dtype=object)
    return out.sort_index()


def _same(a, b):
    pd.testing.assert_frame_equal(_numbers(a), _numbers(b), check_exact=True)


@pytest.fixture(scope="module")
def inline(dataset):
    manifest, source = dataset
    return run_evaluation(source, manifest, PROTOCOL, None, batch_size=4, prefetch=False, score_workers=0).frame


@pytest.mark.parametrize("batch_size", [1, 3, 8, 32])
def test_the_loader_thread_gives_the_inline_rows(dataset, inline, batch_size):
    manifest, source = dataset
    res = run_evaluation(source, manifest, PROTOCOL, None, batch_size=batch_size, score_workers=0, prefetch=True)
    assert res.overlap == ("loader thread" if batch_size < N else "inline")
    _same(inline, res.frame)


class _Recording(FolderSource):
    """Records which thread loads each sample, and when loads start, next to the batches the caller scores."""

    def __init__(self, folder, log):
        super().__init__(folder)
        self.log = log

    def load(self, row, protocol):
        self.log.append(("load", row["sample_id"], threading.current_thread().name))
        time.sleep(0.01)  # a slow file: the caller must not wait for more than one batch ahead
        return super().load(row, protocol)


def test_the_loader_thread_reads_one_batch_ahead_in_order(dataset):
    manifest, plain = dataset
    log: list = []
    source = _Recording(plain.folder, log)
    run_evaluation(source, manifest, PROTOCOL, None, batch_size=3, score_workers=0, prefetch=True,
                   on_batch=lambda frame: log.append(("scored", list(frame["sample_id"]), None)))
    loads = [e for e in log if e[0] == "load"]
    assert [sid for _, sid, _ in loads] == sorted(f"p{i:02d}" for i in range(N))  # the manifest's order
    assert {name for *_, name in loads} == {"sam3d-eval-loader_0"}  # the loader thread, not the caller
    # when batch k is stored, at most batch k + 1 has been loaded (one batch ahead, never more)
    seen = 0
    for kind, what, _ in log:
        if kind == "load":
            seen += 1
        else:
            done = sum(1 for e in log[: log.index((kind, what, None))] if e[0] == "scored") + 1
            assert seen <= 3 * (done + 1)
    assert not any(t.name.startswith("sam3d-eval-loader") for t in threading.enumerate())


def test_an_interrupted_run_leaves_no_loader_thread_and_resumes_bitwise(dataset, inline, tmp_path):
    manifest, source = dataset

    def stop(frame):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", batch_size=4, score_workers=0, prefetch=True,
                       on_batch=stop)
    assert len(read_results(tmp_path / "r")) == 4  # the first batch was stored before the stop
    assert not any(t.name.startswith("sam3d-eval-loader") for t in threading.enumerate())
    res = run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", batch_size=3, resume=True, score_workers=0)
    assert (res.skipped, res.scored) == (4, N - 4)
    _same(inline, res.frame)


def test_an_error_in_the_loader_thread_reaches_the_caller(dataset):
    manifest, plain = dataset

    class Broken(FolderSource):
        def load(self, row, protocol):
            if row["sample_id"] == "p05":
                raise SystemExit("the loader gave up")  # not an Exception: it is not a sample's failure
            return super().load(row, protocol)

    with pytest.raises(SystemExit, match="the loader gave up"):
        run_evaluation(Broken(plain.folder), manifest, PROTOCOL, None, batch_size=2, score_workers=0, prefetch=True)
    assert not any(t.name.startswith("sam3d-eval-loader") for t in threading.enumerate())


# ---------------------------------------------------------------------------------------------------
# scoring processes


@pytest.mark.parametrize("batch_size, workers", [(1, 2), (3, 2), (4, 3)])
def test_scoring_processes_give_the_inline_rows(dataset, inline, tmp_path, batch_size, workers):
    manifest, source = dataset
    res = run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", batch_size=batch_size, score_workers=workers)
    assert (res.scored, res.failed) == (N, 1)
    _same(inline, res.frame)
    assert len(list((tmp_path / "r" / "results").glob("part-*.parquet"))) == -(-N // batch_size)  # one part per batch


def test_scoring_processes_fail_only_the_bad_sample_and_resume_bitwise(dataset, inline, tmp_path):
    manifest, source = dataset
    stored: list = []

    def stop_after_two(frame):
        stored.append(list(frame["sample_id"]))
        if len(stored) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", batch_size=2, score_workers=2,
                       on_batch=stop_after_two)
    assert stored == [["p00", "p01"], ["p02", "p03"]]  # in order, whatever process finished first
    assert multiprocessing.active_children() == []  # the pool is gone
    res = run_evaluation(source, manifest, PROTOCOL, tmp_path / "r", batch_size=5, resume=True, score_workers=2)
    assert (res.skipped, res.scored, res.failed) == (4, N - 4, 1)
    _same(inline, res.frame)
    f = res.frame.set_index("sample_id")
    assert f.loc[f"p{N - 1:02d}", "error"] == "no prediction for this sample"


def test_scoring_processes_share_the_gt_cache(dataset, inline):
    manifest, source = dataset
    cache = GTSampleCache()
    first = run_evaluation(source, manifest, PROTOCOL, None, batch_size=3, score_workers=2, gt_cache=cache).frame
    assert cache.stats()["entries"] == N - 1 and cache.hits == 0  # the sample without a prediction draws nothing
    second = run_evaluation(source, manifest, PROTOCOL, None, batch_size=4, score_workers=0, gt_cache=cache).frame
    third = run_evaluation(source, manifest, PROTOCOL, None, batch_size=2, score_workers=2, gt_cache=cache).frame
    assert cache.hits == 2 * (N - 1)
    for frame in (first, second, third):
        _same(inline, frame)


def test_the_overlap_follows_the_idle_cores(dataset, monkeypatch):
    manifest, source = dataset
    cpu = torch.device("cpu")
    plan = runner._overlap_plan
    big = 10 * SCORE_WORKERS_MIN_SAMPLES
    monkeypatch.setattr(runner, "_usable_cores", lambda: 4)

    def idle(n):
        monkeypatch.setattr(runner, "_idle_cores", lambda window=0.05: n)

    idle(4.0)
    assert plan(source, cpu, None, 0, 1, big, 8, None, None) == (4, False)  # one scoring process per idle core
    assert plan(source, cpu, None, 0, 1, SCORE_WORKERS_MIN_SAMPLES, 8, None, None) == (2, False)  # one per batch
    assert plan(source, cpu, object(), 0, 1, big, 8, None, None) == (0, True)  # appearance renders stay here
    assert plan(source, cpu, None, 0, 2, big, 8, None, None) == (0, True)  # several ranks: one process each
    assert plan(object(), cpu, None, 0, 1, big, 8, None, None) == (0, True)  # not a prediction folder
    assert plan(source, cpu, None, 2, 1, big, 8, None, None)[0] == 0  # loader processes were asked for
    assert plan(source, torch.device("meta"), None, 0, 1, big, 8, None, None)[0] == 0  # not the CPU
    assert plan(source, cpu, None, 0, 1, big, 8, None, None, 2) == (0, True)  # torch on several threads here
    assert plan(source, cpu, None, 0, 1, big, 8, None, None, None) == (0, True)  # torch left as it is
    idle(2.6)
    assert plan(source, cpu, None, 0, 1, big, 8, None, None) == (3, False)
    idle(1.0)  # one idle core besides this process's own: two processes
    assert plan(source, cpu, None, 0, 1, big, 8, None, None) == (2, False)
    idle(0.8)  # most of a core: the loader thread
    assert plan(source, cpu, None, 0, 1, big, 8, None, None) == (0, True)
    idle(0.3)  # a busy machine: parallel work only competes (measured slower), inline
    assert plan(source, cpu, None, 0, 1, big, 8, None, None) == (0, False)
    assert plan(source, cpu, None, 0, 1, big, 8, 3, True) == (3, True)  # what is asked for is kept
    idle(None)  # unknown: every usable core counts as idle
    assert plan(source, cpu, None, 0, 1, big, 8, None, None) == (4, False)
    monkeypatch.setattr(runner, "_usable_cores", lambda: 1)
    assert plan(source, cpu, None, 0, 1, big, 8, None, None) == (0, True)  # one core: no processes
    monkeypatch.setattr(runner, "_usable_cores", lambda: 4)

    def unmeasured(window=0.05):
        raise AssertionError("a short run is not measured")

    monkeypatch.setattr(runner, "_idle_cores", unmeasured)
    assert plan(source, cpu, None, 0, 1, SCORE_WORKERS_MIN_SAMPLES - 1, 8, None, None) == (0, True)
    assert plan(source, cpu, None, 0, 1, 8, 8, None, None) == (0, False)  # one batch: nothing to overlap
    with pytest.raises(ValueError, match="score_workers must be None or an int >= 0"):
        run_evaluation(source, manifest, PROTOCOL, None, score_workers=-1)
    for bad in (dict(num_workers=1), dict(torch_threads=2), dict(device="meta")):
        with pytest.raises(ValueError, match="on one torch thread per process, without an appearance scorer"):
            run_evaluation(source, manifest, PROTOCOL, None, score_workers=2, **bad)


def test_idle_cores_are_measured_on_linux():
    n = runner._idle_cores(0.05)
    assert n is None or 0.0 <= n <= len(runner.os.sched_getaffinity(0)) + 1e-9
    assert runner._usable_cores() >= 1


def test_stage_timings_are_reported_on_every_path(dataset):
    manifest, source = dataset
    for kw, overlap in ((dict(score_workers=0, prefetch=False), "inline"),
                        (dict(score_workers=0, prefetch=True), "loader thread"),
                        (dict(score_workers=2), "2 scoring processes")):
        res = run_evaluation(source, manifest, PROTOCOL, None, batch_size=4, **kw)
        assert set(res.timings) == set(runner.STAGES) and res.overlap == overlap
        assert res.timings["score"] > 0 and all(np.isfinite(v) and v >= 0 for v in res.timings.values())
