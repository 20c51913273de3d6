"""Load: `sam3d-eval evaluate` on 20,000 small samples, with its peak memory.

    python -m pytest benchmarks/bench_load.py -s --benchmark-columns=min,rounds

Data: N tiny mesh pairs (an icosphere of 42 vertices, moved and scaled per sample, and a jittered copy as
the prediction), written as binary PLY with numpy (writing 40,000 files through trimesh would take longer
than scoring them), and a CSV manifest with both domains and every occlusion bin. The command runs in a
child process at the default protocol with 500 surface samples, batches of 64, once at N and once at
N / 10 (at least 8 batches); the peak resident set size of each child (`getrusage(RUSAGE_CHILDREN)` after it exits, so the
parent's memory does not count) is recorded with the samples per second.

What must hold (full size only; the quick size just runs it): memory does not grow with the number of
samples beyond the stored rows themselves. The peak at N may exceed the peak at the smaller run by at most
`PER_SAMPLE_KB` per extra sample plus `SLACK_MB` of allocator and pool noise. The budget is what the end of
a run holds by design, measured here on the stored frames: a results row is ~1.0 KB in pandas (the
transform JSON, three SHA-256 keys, strata, metrics) and ~0.2 KB as a manifest row; at the end the runner
and the summary hold it as Arrow parts, the merged Arrow table, the pandas frame and up to three transient
pandas copies (deduplication, sorting, the manifest's rows), plus the manifest as dicts and the content keys:
about 8 KB. A leak of the 500 surface samples of a side per sample (12 KB) would exceed it.
"""

from __future__ import annotations

import pathlib
import resource
import subprocess
import sys
import time

import numpy as np
import pytest
import trimesh

from sizes import sizes_for

S = sizes_for("load")  # benchmarks/sizes.py
N_SAMPLES = S.N_SAMPLES
PER_SAMPLE_KB = 8.0
SLACK_MB = 32.0
BATCH = 64


def n_small() -> int:
    return min(N_SAMPLES, max(N_SAMPLES // 10, 8 * BATCH))


def _ply(verts: np.ndarray, faces: np.ndarray) -> bytes:
    head = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(verts)}\nproperty float x\n"
            f"property float y\nproperty float z\nelement face {len(faces)}\n"
            "property list uchar int vertex_indices\nend_header\n").encode()
    face_rec = np.zeros(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face_rec["n"], face_rec["i"] = 3, faces
    return head + verts.astype("<f4").tobytes() + face_rec.tobytes()


def write_dataset(root: pathlib.Path, n: int) -> pathlib.Path:
    """`n` (GT, prediction) PLY pairs under `root` and their manifest; returns the manifest's path."""
    (root / "gt").mkdir(parents=True)
    (root / "pred").mkdir()
    ico = trimesh.creation.icosphere(subdivisions=1, radius=0.5)
    v0, f = np.asarray(ico.vertices, np.float32), np.asarray(ico.faces, np.int32)
    rng = np.random.default_rng(0)
    lines = ["sample_id,gt_mesh,domain,occlusion,category"]
    for i in range(n):
        sid = f"s{i:06d}"
        v = v0 * rng.uniform(0.5, 2.0) + rng.normal(0, 1, 3).astype(np.float32)
        (root / "gt" / f"{sid}.ply").write_bytes(_ply(v, f))
        (root / "pred" / f"{sid}.ply").write_bytes(_ply(v + rng.normal(0, 0.01, v.shape).astype(np.float32), f))
        lines.append(f"{sid},gt/{sid}.ply,{('synthetic', 'real')[i % 2]},{(i % 10) / 10:.1f},c{i % 5}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def evaluate_child(root: pathlib.Path, manifest: pathlib.Path, out: pathlib.Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of `sam3d-eval evaluate` in a child process."""
    cmd = [sys.executable, "-c", "import sys, resource; from sam3d_eval.cli.main import main; code = main(sys.argv[1:]); "
           "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)",
           "evaluate", str(root / "pred"), "--data", str(manifest), "--out", str(out), "--samples", "500",
           "--batch-size", str(BATCH), "--json"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    assert proc.returncode == 0, proc.stderr[-2000:]
    kb = next(int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("peak_rss_kb"))
    return wall, kb / 1024.0


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    small = write_dataset(root / "small", n_small())
    full = write_dataset(root / "full", N_SAMPLES)
    return small, full


@pytest.mark.benchmark(group="load: evaluate many small samples")
def test_evaluate_memory_is_bounded(benchmark, datasets):
    small, full = datasets
    results = {}

    def run():
        for name, manifest in (("small", small), ("full", full)):
            out = manifest.parent / f"run-{time.time_ns()}"
            results[name] = evaluate_child(manifest.parent, manifest, out)

    benchmark.pedantic(run, rounds=1, iterations=1)
    small_n = n_small()
    (wall_s, rss_s), (wall_f, rss_f) = results["small"], results["full"]
    benchmark.extra_info.update(samples=N_SAMPLES, peak_rss_mb=round(rss_f, 1), peak_rss_mb_tenth=round(rss_s, 1),
                                samples_per_s=round(N_SAMPLES / wall_f, 1), wall_s=round(wall_f, 1))
    print(f"\nevaluate {N_SAMPLES} samples: {wall_f:.1f} s ({N_SAMPLES / wall_f:.1f} samples/s), peak RSS {rss_f:.0f} MB; "
          f"{small_n} samples: {wall_s:.1f} s, peak RSS {rss_s:.0f} MB")
    from sam3d_eval.data.manifest import load_manifest
    from sam3d_eval.io import read_results

    run = sorted(full.parent.glob("run-*"))[-1]
    row_kb = read_results(run).memory_usage(deep=True).sum() / N_SAMPLES / 1024
    manifest_kb = load_manifest(full).memory_usage(deep=True).sum() / N_SAMPLES / 1024
    growth_kb = (rss_f - rss_s) * 1024 / max(1, N_SAMPLES - small_n)
    benchmark.extra_info.update(row_kb=round(row_kb, 2), manifest_row_kb=round(manifest_kb, 2),
                                growth_kb_per_sample=round(growth_kb, 2))
    print(f"a results row {row_kb:.2f} KB, a manifest row {manifest_kb:.2f} KB in pandas; peak growth "
          f"{growth_kb:.2f} KB per extra sample (budget {PER_SAMPLE_KB:g} KB + {SLACK_MB:g} MB)")
    if not S.QUICK:
        assert rss_f - rss_s <= PER_SAMPLE_KB * (N_SAMPLES - small_n) / 1024.0 + SLACK_MB, (rss_s, rss_f)
