"""benchmarks/gpu_check.py without a GPU: every CUDA case skips cleanly, the CPU sides run at quick sizes, the
table is written only where asked; its arithmetic (peak FLOP rate, tolerances) on known numbers."""

from __future__ import annotations

import datetime
import importlib.util
import pathlib
import subprocess
import sys
import types

import pytest
import torch

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module by name
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture
def no_cuda(monkeypatch):
    # the assertions are about the CPU-only behaviour, whatever machine runs the tests
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_quick_run_without_cuda(gc, no_cuda, tmp_path, monkeypatch):
    default = tmp_path / "default_results.md"
    monkeypatch.setattr(gc, "DEFAULT_OUT", default)
    out = tmp_path / "results.md"
    lines: list[str] = []
    res = gc.run(["--quick", "--out", str(out)], say=lines.append)

    assert res.exit_code == 0
    assert {r.key for r in res.records} == {key for key, *_ in gc.CASES}  # none skipped for the budget
    for r in res.records:
        assert r.cuda_status == gc.NO_CUDA, (r.key, r.cuda_status)
        assert r.cpu_s is not None and r.cpu_s > 0, r.key  # the CPU side ran
        assert r.cuda_s is None and r.passed is None
    printed = "\n".join(lines)
    assert printed.count("skipped: no CUDA device") >= len(res.records)
    assert all(f"[{key}]" in printed for key, *_ in gc.CASES)

    text = out.read_text()
    today = datetime.date.today().isoformat()
    assert f"## {today}: GPU check" in text
    assert text.count(gc.TABLE_HEADER) == 1  # one table
    assert gc.TABLE_HEADER in res.table and res.written == out
    assert "| knn: Triton kernel knn1_triton (K=1) |" in text and "skipped: no CUDA device" in text
    assert not default.exists()


def test_main_budget_and_default_out(gc, no_cuda, tmp_path, monkeypatch, capsys):
    default = tmp_path / "RESULTS.md"
    monkeypatch.setattr(gc, "DEFAULT_OUT", default)
    # no --out and no CUDA: nothing written; a budget of 0 skips every case with a message
    assert gc.main(["--quick", "--budget", "0"]) == 0
    printed = capsys.readouterr().out
    case_lines = [ln for ln in printed.splitlines() if ln.startswith("[")]
    assert len(case_lines) == len(gc.CASES) and all("skipped: time budget" in ln for ln in case_lines)
    assert "table not written: no CUDA device and no --out given" in printed
    assert not default.exists()
    # an explicit --out appends a second dated table after the first
    out = tmp_path / "r.md"
    out.write_text("# Benchmark results\n")
    assert gc.main(["--quick", "--budget", "0", "--out", str(out), "--only", "emd"]) == 0
    assert gc.main(["--quick", "--budget", "0", "--out", str(out), "--only", "emd"]) == 0
    text = out.read_text()
    assert text.startswith("# Benchmark results\n\n## ") and text.count(gc.TABLE_HEADER) == 2


def test_simulated_second_device_exercises_the_cuda_branches(gc, tmp_path):
    # --second-device cpu runs each case's CUDA side on the CPU: the comparison, tolerance and goal code that
    # only a GPU would otherwise reach (the Triton kernel is left out: tests/test_knn.py runs it interpreted)
    lines: list[str] = []
    keys = [key for key, *_ in gc.CASES if key != "knn_triton"]
    res = gc.run(["--quick", "--second-device", "cpu", "--only", ",".join(keys)], say=lines.append)
    assert res.exit_code == 0 and res.written is None
    assert sorted({r.key for r in res.records}) == sorted(keys)
    for r in res.records:
        assert r.cuda_status == "ran" and r.passed is True, (r.key, r.tolerance, r.max_abs)
        assert r.cuda_s > 0 and r.cpu_s > 0 and r.max_abs is not None and r.tolerance
    goal = next(r for r in res.records if r.key == "score_meshes")
    assert "samples/s" in goal.goal and goal.goal_met is not None
    assert "SIMULATION" in res.table


def test_failed_comparison_fails_the_run(gc):
    rec = gc.Record("x", "x")
    assert not rec.check(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-3]), 1e-5, 0.0, "rel 1e-5")
    assert rec.passed is False and rec.max_abs == pytest.approx(1e-3, rel=1e-3)
    assert rec.tolerance == "rel 1e-5"


# ------------------------------------------------------------------------------------- arithmetic


def test_peak_fp32_formula(gc):
    # H100 SXM: 132 SMs x 128 FP32 cores x 2 FLOP per FMA x 1980 MHz = 66.9 TFLOP/s (NVIDIA's 67)
    assert gc.peak_fp32_flops(132, 128, 1980) == pytest.approx(66.90816e12)
    # A100: 108 SMs x 64 x 2 x 1410 MHz = 19.5 TFLOP/s; L4: 58 x 128 x 2 x 2040 = 30.3
    assert gc.peak_fp32_flops(108, gc.fp32_cores_per_sm(8, 0), 1410) == pytest.approx(19.49184e12)
    assert gc.peak_fp32_flops(58, gc.fp32_cores_per_sm(8, 9), 2040) == pytest.approx(30.28992e12)
    assert [gc.fp32_cores_per_sm(*cc) for cc in ((7, 5), (8, 0), (8, 6), (9, 0), (12, 1))] == [64, 64, 128, 128, 128]
    # 1M x 1M points in 3-D: 9 FLOP per pair; in 0.3 s on an H100 that is 44.8% of peak
    flops = gc.knn_flops(1, 1_000_000, 1_000_000, 3)
    assert flops == 9e12
    assert flops / 0.3 / gc.peak_fp32_flops(132, 128, 1980) == pytest.approx(0.44838, rel=1e-4)


def test_clock_table(gc):
    names = {"NVIDIA H100 80GB HBM3": 1980, "NVIDIA H100 PCIe": 1755, "NVIDIA H100 NVL": 1785, "NVIDIA H200": 1980,
             "NVIDIA A100-SXM4-80GB": 1410, "NVIDIA L4": 2040, "NVIDIA L40S": 2520, "Tesla T4": None}
    assert {n: gc.clock_mhz_from_table(n) for n in names} == names


def test_device_peak_sources(gc, monkeypatch):
    props = types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", multi_processor_count=132, major=9, minor=0,
                                  total_memory=80 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(gc.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout="1755\n", stderr=""))
    p = gc.device_peak()
    assert p["clock_mhz"] == 1755 and p["clock_source"].startswith("nvidia-smi")
    assert p["peak"] == pytest.approx(132 * 128 * 2 * 1755e6)

    def missing(*a, **k):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(gc.subprocess, "run", missing)
    p = gc.device_peak()  # no nvidia-smi, no clock_rate: the table
    assert p["clock_mhz"] == 1980 and "table" in p["clock_source"]
    props.clock_rate = 1_700_000  # kHz, as cudaDeviceProp.clockRate
    assert gc.device_peak()["clock_mhz"] == 1700


def test_tolerances(gc):
    u = 2.0**-24
    assert gc.unit_roundoff(torch.float32) == u
    assert gc.unit_roundoff(torch.float16) == 2.0**-11
    # safety 2 x two orders x (n - 1) u
    assert gc.reorder_rtol(4) == 12 * u  # a 3-term dot product (3 products, 2 additions)
    assert gc.reorder_rtol(10_000) == pytest.approx(4 * 9999 * u)  # 2.38e-3: a mean of 10k points
    assert gc.reorder_rtol(1) == 4 * u
    assert gc.reorder_rtol(2, torch.float16, safety=1.0) == 2 * 2.0**-11
    ok, max_abs, max_rel = gc.compare(torch.tensor([1.0, 2.0 + 2e-6]), torch.tensor([1.0, 2.0]), 2e-6, 0.0)
    assert ok and max_abs == pytest.approx(2e-6, rel=0.1) and max_rel == pytest.approx(1e-6, rel=0.1)
    assert not gc.compare(torch.tensor([2.0 + 2e-6]), torch.tensor([2.0]), 5e-7, 0.0)[0]
    nan = float("nan")
    assert gc.compare(torch.tensor([nan, 1.0]), torch.tensor([nan, 1.0]), 0.0, 0.0)[0]
    assert not gc.compare(torch.tensor([nan, 1.0]), torch.tensor([1.0, 1.0]), 0.0, 0.0)[0]

