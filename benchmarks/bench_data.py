"""Built-in benchmark generation throughput on the CPU: samples per second at 128x128 and 256x256 with one and
two workers (`make_benchmark`, the path of `sam3d-eval data make`: render, shifts, PNG/PLY/JSON files,
manifest), half synthetic and half real (all shifts at their default strengths).

Two rates per case: end to end (wall time of the whole call, including the worker processes' start-up, which
imports torch in each) and steady state (samples after the first one over the time since the first one
finished). Run: `python -m pytest benchmarks/bench_data.py --benchmark-only -s`
"""

import shutil
import tempfile
import time

import pytest

from sam3d_eval.data.generate import GenerationConfig, make_benchmark
from sam3d_eval.data.manifest import load_manifest
from sizes import sizes_for

S = sizes_for("data")  # benchmarks/sizes.py
SAMPLES = S.SAMPLES  # per case, half synthetic and half real


def _run(size: int, workers: int) -> dict:
    n = SAMPLES[size]
    out = tempfile.mkdtemp(prefix=f"bench_data_{size}_{workers}_")
    stamps = []
    try:
        t0 = time.perf_counter()
        make_benchmark(out, n // 2, n - n // 2, 0, GenerationConfig(image_size=size), workers=workers,
                       progress=lambda done, total: stamps.append((done, time.perf_counter())))
        wall = time.perf_counter() - t0
        manifest = load_manifest(f"{out}/manifest.csv")
        assert len(manifest) == n  # every requested sample is written (checked after the clock stops)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    done = [(d, t) for d, t in stamps if d > 0]
    steady = (done[-1][0] - done[0][0]) / (done[-1][1] - done[0][1]) if len(done) > 1 else float("nan")
    return {"samples": n, "wall_s": wall, "end_to_end_per_s": n / wall, "steady_per_s": steady}


@pytest.mark.parametrize("workers", S.WORKERS)
@pytest.mark.parametrize("size", list(SAMPLES))
def test_generate_samples_per_second(benchmark, size, workers):
    info = benchmark.pedantic(_run, (size, workers), rounds=1, iterations=1)
    benchmark.extra_info.update(info)
    assert info["samples"] == SAMPLES[size]
    print(f"\n{size}x{size}, {workers} worker(s): {info['end_to_end_per_s']:.2f} samples/s end to end "
          f"({info['wall_s']:.1f} s for {info['samples']}), {info['steady_per_s']:.2f} samples/s steady state")
