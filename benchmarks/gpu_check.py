"""GPU check: every CUDA path of the package against its CPU path, timed, with the two throughput goals.

    python benchmarks/gpu_check.py [--out benchmarks/RESULTS.md] [--quick] [--budget 480] [--only knn,lpips]

Written while no GPU had ever been lent to the project: every CUDA path below exists and is tested on the
CPU, but none had run on a card. One run of this script (at most 8 minutes on an H100/H200) checks them all:

    case (key)            CUDA side                                     CPU side (the reference)
    knn_triton            ops.knn_triton.knn1_triton (fused kernel)     knn_points (KD-tree)
    knn_auto              knn_points, auto (Triton) + exact recompute   knn_points (KD-tree), ragged lengths
    knn_torch             knn_points(backend="torch"), K=4, tiled       knn_points (KD-tree)
    point_face            ops.point_mesh.point_face_distance (brute)    same function (pruned engine)
    point_mesh_loss       metrics point_mesh_face_distance (both ways)  same function
    rasterize             ops.rasterize.rasterize_meshes                same function
    lpips                 metrics.lpips.LPIPS fp32 (TF32 off), fp16     same module, float32
    icp                   ops.alignment.iterative_closest_point         same function
    emd                   metrics.emd.earth_movers_distance (auction)   same function (exact, scipy)
    score_clouds          evaluate.scoring.score_batch, point clouds    same function on the same clouds
    score_meshes          score_batch on built-in shapes, 10k points    same function (other sampling streams)
    runner                evaluate.runner.run_evaluation(device=cuda)   score_batch on CUDA + runner on CPU

Per case it reports the largest absolute and relative difference between the two sides, a tolerance derived
from the arithmetic (below), PASS/FAIL, the median CUDA time (``torch.cuda.synchronize`` around each call,
warm-up rounds excluded) with the CPU time beside it, and for two cases a goal:

- brute-force nearest neighbours (the Triton kernel) at >= 40% of the card's peak fp32 rate. FLOPs are
  counted as the kernel computes them: per (query, point) pair and coordinate one subtraction and one FMA,
  3 FLOP, so ``N * P1 * P2 * 3 * D`` (9 per pair for D = 3; the min/argmin bookkeeping is not counted).
  Peak = SMs x FP32 cores per SM x 2 FLOP per FMA x max SM clock (`peak_fp32_flops`); the SM count comes
  from ``torch.cuda.get_device_properties``, the cores per SM from the compute capability (128 on sm_86+,
  sm_90 and later; 64 on sm_70/sm_75 and on sm_80, the A100), the clock from ``nvidia-smi
  --query-gpu=clocks.max.sm``, else from the device properties' ``clock_rate``, else from `BOOST_CLOCK_MHZ`.
- evaluation (score_batch on a batch of meshes already on the device, default protocol at 10k points) at
  >= 2,000 samples/s.

Goals are printed as met or missed; they do not change the exit status. The exit status is 1 when a
comparison fails or a case raises, else 0.

Tolerances. Two evaluations of the same float arithmetic that differ only in the order of their sums (CPU
vs GPU reductions, FMA contraction in the Triton kernel) differ by at most ``2 * (n - 1) * u`` times the sum
of the magnitudes of the n terms (u: unit roundoff, 2^-24 for float32; first-order bound of recursive
summation, which holds for every order, pairwise and tree reductions included; Higham, Accuracy and
Stability of Numerical Algorithms, 4.2). `reorder_rtol(n)` is that bound times a safety factor of 2, which
covers products rounded before the sum and a minimum picking another element among near-ties (whose values
then differ by the same bound). Each case states its n and magnitude; LPIPS in fp16 gets a looser, stated
bound. Where the two sides draw different random samples (score_batch on meshes: CUDA generators differ
from CPU ones) the tolerance is sampling noise, measured on the CPU with a second seed.

Budget: each case has a size-dependent time estimate; a case that would not fit in what is left of the
budget (default 480 s) is skipped with a message, and timing loops stop early near the end of it.

Without CUDA every CUDA case prints "skipped: no CUDA device"; the CPU side of each case still runs (use
``--quick`` for small sizes, which is how tests/test_gpu_check.py runs the script) and nothing is written
to RESULTS.md unless ``--out`` is given. ``--second-device cpu`` runs each case's CUDA side on the CPU
instead: a simulation that reaches every comparison, tolerance and goal branch of this script without a GPU
(it measures nothing about a GPU; the Triton case needs ``TRITON_INTERPRET=1`` in the environment). With CUDA the table is appended to ``--out`` (default
benchmarks/RESULTS.md; quick-size runs are written only to an explicit ``--out``: never quote them).

This file is not collected by pytest (pyproject's python_files: test_*.py and bench_*.py).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "RESULTS.md"
BUDGET_S = 480.0  # 8 minutes on the card, everything included
GOAL_KNN_PEAK_FRACTION = 0.40
GOAL_EVAL_SAMPLES_PER_S = 2000.0
NO_CUDA = "skipped: no CUDA device"

# FP32 cores (FMA lanes) per SM by compute capability (NVIDIA's architecture whitepapers): Volta/Turing 64,
# GA100 (sm_80, A100) 64, GA10x/AD10x (sm_86, sm_87, sm_89: A10, L4, L40, RTX 30/40) 128, Hopper (sm_90) 128,
# Blackwell (sm_100, sm_120) 128.
FP32_CORES_PER_SM = {(7, 0): 64, (7, 2): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128,
                     (9, 0): 128, (10, 0): 128, (12, 0): 128}
# Max (boost) SM clock in MHz by device name, when neither nvidia-smi nor the device properties give it:
# first matching substring wins (so the H100 variants come before plain "H100").
BOOST_CLOCK_MHZ = (("H100 PCIe", 1755), ("H100 NVL", 1785), ("H100", 1980), ("H200", 1980), ("A100", 1410),
                   ("L40S", 2520), ("L40", 2490), ("L4", 2040))

TABLE_HEADER = ("| path | sizes | max abs diff | max rel diff | tolerance | pass | CUDA time | CPU time "
                "| CPU / CUDA | goal |")


# ----------------------------------------------------------------------------------------------------
# arithmetic: tolerances and FLOP rates


def unit_roundoff(dtype: torch.dtype = torch.float32) -> float:
    """u = eps / 2: 2^-24 for float32, 2^-11 for float16, 2^-53 for float64."""
    return torch.finfo(dtype).eps / 2


def reorder_rtol(n_terms: int, dtype: torch.dtype = torch.float32, safety: float = 2.0) -> float:
    """Relative tolerance for two evaluations of a sum of `n_terms` terms added in different orders.

    Each evaluation is within ``(n - 1) u`` of the exact sum, relative to the sum of the terms' magnitudes
    (first-order recursive-summation bound, valid for any order), so two differ by at most ``2 (n - 1) u``;
    `safety` (default 2) covers products rounded before the sum (a D-term dot product: n = D + 1) and a
    minimum that picks another element among near-ties. Relative to the result when the terms share a sign.

    Args:
        n_terms: number of terms summed (>= 1; 1 is treated as 2: one rounding).
        dtype: the arithmetic's precision.
        safety: factor on the bound.

    Returns:
        ``safety * 2 * max(n_terms - 1, 1) * u``; e.g. float32, n = 4, safety 2: 12 u = 7.2e-7.
    """
    return safety * 2 * max(int(n_terms) - 1, 1) * unit_roundoff(dtype)


def fp32_cores_per_sm(major: int, minor: int) -> int:
    """FP32 FMA lanes per SM for compute capability (major, minor); 128 for unlisted capabilities >= 8.6."""
    if (major, minor) in FP32_CORES_PER_SM:
        return FP32_CORES_PER_SM[(major, minor)]
    return 128 if (major, minor) >= (8, 6) else 64


def peak_fp32_flops(sm_count: int, cores_per_sm: int, clock_mhz: float) -> float:
    """Peak fp32 FLOP/s = SMs x FP32 cores per SM x 2 FLOP per FMA x clock (H100 SXM: 132 x 128 x 2 x 1980
    MHz = 66.9 TFLOP/s)."""
    return sm_count * cores_per_sm * 2.0 * clock_mhz * 1e6


def knn_flops(batch: int, p1: int, p2: int, dim: int = 3) -> float:
    """FLOPs of brute-force squared distances as the Triton kernel computes them: per pair and coordinate a
    subtraction and an FMA (3 FLOP), so ``batch * p1 * p2 * 3 * dim`` (9 per pair in 3-D)."""
    return float(batch) * p1 * p2 * 3.0 * dim


def clock_mhz_from_table(name: str) -> float | None:
    """Max SM clock of a known card from its name (`BOOST_CLOCK_MHZ`), or None."""
    for key, mhz in BOOST_CLOCK_MHZ:
        if key.lower() in name.lower():
            return float(mhz)
    return None


def device_peak() -> dict[str, Any]:
    """The current CUDA device's peak fp32 FLOP/s and how it was obtained."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    sms, cc = props.multi_processor_count, (props.major, props.minor)
    cores = fp32_cores_per_sm(*cc)
    clock, source = None, None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
        lines = [s.strip() for s in out.stdout.splitlines() if s.strip()]
        if out.returncode == 0 and lines:
            idx = torch.cuda.current_device() if len(lines) > torch.cuda.current_device() else 0
            clock, source = float(lines[idx].split()[0]), "nvidia-smi clocks.max.sm"
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    if clock is None and getattr(props, "clock_rate", 0):
        clock, source = props.clock_rate / 1000.0, "torch device properties clock_rate"
    if clock is None:
        clock, source = clock_mhz_from_table(props.name), "the table of boost clocks in benchmarks/gpu_check.py"
    peak = peak_fp32_flops(sms, cores, clock) if clock else math.nan
    return dict(name=props.name, sms=sms, cc=cc, cores=cores, clock_mhz=clock, clock_source=source, peak=peak,
                memory_gib=props.total_memory / 2**30)


# ----------------------------------------------------------------------------------------------------
# records, comparison and timing


@dataclass
class Record:
    """One row of the table: a CUDA path against its CPU path."""

    key: str
    path: str
    sizes: str = ""
    cuda_status: str = "ran"  # "ran" | NO_CUDA | "skipped: time budget ..." | "error: ..."
    max_abs: float | None = None
    max_rel: float | None = None
    tolerance: str = ""
    passed: bool | None = None
    cuda_s: float | None = None
    cpu_s: float | None = None
    goal: str = ""
    goal_met: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        return self.cpu_s / self.cuda_s if self.cpu_s and self.cuda_s else None

    def check(self, actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float, text: str) -> bool:
        """Elementwise |actual - expected| <= atol + rtol |expected| (NaN must match NaN); folds into this row."""
        ok, max_abs, max_rel = compare(actual, expected, rtol, atol)
        self.max_abs = max_abs if self.max_abs is None else max(self.max_abs, max_abs)
        self.max_rel = max_rel if self.max_rel is None else max(self.max_rel, max_rel)
        self.passed = ok if self.passed is None else (self.passed and ok)
        if text and text not in self.tolerance:
            self.tolerance = f"{self.tolerance}; {text}" if self.tolerance else text
        return ok


def compare(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> tuple[bool, float, float]:
    """(all within atol + rtol |expected|, max abs diff, max rel diff) in float64 on the CPU."""
    a = torch.as_tensor(actual).detach().to("cpu", torch.float64).reshape(-1)
    e = torch.as_tensor(expected).detach().to("cpu", torch.float64).reshape(-1)
    if a.shape != e.shape:
        return False, math.inf, math.inf
    nan_a, nan_e = torch.isnan(a), torch.isnan(e)
    if not torch.equal(nan_a, nan_e):
        return False, math.inf, math.inf
    a, e = a[~nan_a], e[~nan_e]
    if a.numel() == 0:
        return True, 0.0, 0.0
    diff = (a - e).abs()
    rel = diff / e.abs().clamp(min=torch.finfo(torch.float64).tiny)
    rel = torch.where(diff == 0, torch.zeros_like(rel), rel)
    ok = bool((diff <= atol + rtol * e.abs()).all())
    return ok, float(diff.max()), float(rel.max())


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class Check:
    """Options, the time budget and the timing helpers shared by every case."""

    def __init__(self, quick: bool, budget_s: float, dev: str | None, say: Callable[[str], None] = print):
        # dev: where the "CUDA" side runs: "cuda", None (no CUDA device: skipped), or "cpu" (--second-device
        # cpu: a simulation that runs every CUDA branch of this script on the CPU, for testing the script)
        self.quick, self.budget_s, self.dev, self.say = quick, budget_s, dev, say
        self.start = time.perf_counter()
        self.case_deadline = math.inf
        self.peak: dict[str, Any] | None = None

    @property
    def cuda(self) -> bool:
        """Whether the second ("CUDA") side runs."""
        return self.dev is not None

    @property
    def simulated(self) -> bool:
        return self.dev is not None and self.dev != "cuda"

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def size(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full

    def time(self, fn: Callable[[], Any], device: str, rounds: int, warmup: int = 1) -> tuple[float, Any]:
        """(median seconds of up to `rounds` timed calls, the first call's result). `warmup` calls first (not
        timed; at least one call always runs); rounds stop early past the case's deadline (one always runs)."""
        from sam3d_eval.runtime import runtime_policy

        with runtime_policy(device):
            result = None
            for i in range(max(warmup, 0)):
                out = fn()
                _sync(device)
                if i == 0:
                    result = out
            times = []
            for _ in range(max(rounds, 1)):
                _sync(device)
                t = time.perf_counter()
                out = fn()
                _sync(device)
                times.append(time.perf_counter() - t)
                if result is None:
                    result = out
                if time.perf_counter() > min(self.case_deadline, self.start + self.budget_s):
                    break
        return statistics.median(times), result

    def cpu(self, rec: Record, fn: Callable[[], Any], rounds: int | None = None, warmup: int = 1) -> Any:
        rec.cpu_s, out = self.time(fn, "cpu", rounds if rounds is not None else self.size(3, 1), warmup)
        return out

    def gpu(self, rec: Record, fn: Callable[[], Any], rounds: int = 5, warmup: int = 1) -> Any:
        rec.cuda_s, out = self.time(fn, self.dev, rounds, warmup)
        return out


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def _fmt_x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2e}"


# ----------------------------------------------------------------------------------------------------
# inputs


def _builtin_pairs(n: int, detail: bool = True) -> list[tuple[Any, Any]]:
    """`n` (prediction, GT) pairs of one-element `Meshes` on the CPU: the built-in shapes (data.shapes),
    scaled and moved per sample, each prediction a seeded degradation of its GT."""
    import trimesh

    from sam3d_eval.data.shapes import SHAPES, Degradation, degrade, make_shape
    from sam3d_eval.structures.meshes import Meshes

    names = sorted(SHAPES)
    base = {}
    for name in names:
        if detail:
            base[name] = make_shape(name)
        else:  # quick: a coarse stand-in of each
            m = trimesh.creation.icosphere(subdivisions=1, radius=0.5) if name != "box" else trimesh.creation.box(extents=(0.8, 0.5, 0.3))
            base[name] = (np.asarray(m.vertices, np.float32), np.asarray(m.faces, np.int64))
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        v, f = base[names[i % len(names)]]
        v = (v * rng.uniform(0.5, 2.0) + rng.normal(size=3)).astype(np.float32)
        dv, df = degrade(v, f, Degradation(noise=0.003, stretch=0.05, dent=0.05), seed=i)[:2]
        out.append((Meshes([torch.from_numpy(dv)], [torch.from_numpy(df)]), Meshes([torch.from_numpy(v)], [torch.from_numpy(f)])))
    return out


def _icosphere_batch(n: int, subdivisions: int, seed: int):
    """`n` icospheres of radius 0.5 with seeded radial bumps (so they differ), as one CPU `Meshes`."""
    import trimesh

    from sam3d_eval.structures.meshes import Meshes

    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.5)
    v = torch.tensor(s.vertices, dtype=torch.float32)
    f = torch.tensor(s.faces, dtype=torch.int64)
    g = _gen(seed)
    verts = [v * (1 + 0.05 * torch.randn(v.shape[0], 1, generator=g)) for _ in range(n)]
    return Meshes(verts, [f] * n)


# ----------------------------------------------------------------------------------------------------
# cases: each returns its records; the CPU side always runs, the CUDA side only with CUDA


def case_knn_triton(ck: Check) -> list[Record]:
    from sam3d_eval.ops.knn import knn_points

    N, P = 1, ck.size(1_000_000, 2000)
    rec = Record("knn_triton", "knn: Triton kernel knn1_triton (K=1)", f"{N} x {P:,} x {P:,}, D=3")
    g = _gen(1)
    p1, p2 = torch.rand(N, P, 3, generator=g), torch.rand(N, P, 3, generator=g)
    ref = ck.cpu(rec, lambda: knn_points(p1, p2).dists[..., 0], rounds=ck.size(2, 1))
    if not ck.cuda:
        rec.cuda_status = NO_CUDA
        return [rec]
    if ck.simulated and os.environ.get("TRITON_INTERPRET") != "1":
        rec.cuda_status = "skipped: a simulation without TRITON_INTERPRET=1"
        return [rec]
    from sam3d_eval.ops.knn_triton import knn1_triton

    c1, c2 = p1.to(ck.dev), p2.to(ck.dev)
    lengths = torch.full((N,), P, dtype=torch.int64, device=ck.dev)
    d, _ = ck.gpu(rec, lambda: knn1_triton(c1, c2, lengths, lengths), rounds=5, warmup=2)
    rtol = reorder_rtol(4)
    rec.check(d, ref, rtol, 0.0, f"rel {rtol:.1e}: a 3-term dot (n = 4) in two orders (FMA), near-tie picks")
    flops = knn_flops(N, P, P, 3)
    rate = flops / rec.cuda_s
    frac = rate / ck.peak["peak"]
    rec.goal_met = frac >= GOAL_KNN_PEAK_FRACTION
    rec.goal = (f"{rate / 1e12:.1f} TFLOP/s = {100 * frac:.1f}% of peak (goal >= {100 * GOAL_KNN_PEAK_FRACTION:.0f}%): "
                f"{'met' if rec.goal_met else 'missed'}")
    # Informational: the block sizes the wrapper exposes (default 64 x 64), 3 rounds each.
    sweep = []
    for bn, bm in ((64, 64), (128, 64), (64, 128), (128, 128), (32, 128)):
        if ck.quick or ck.left() < 30:
            break
        t, _ = ck.time(lambda: knn1_triton(c1, c2, lengths, lengths, block_n=bn, block_m=bm), ck.dev, 3, 1)
        sweep.append(f"{bn}x{bm}: {100 * flops / t / ck.peak['peak']:.0f}%")
    if sweep:
        rec.notes.append("block_n x block_m sweep, % of peak: " + ", ".join(sweep))
    return [rec]


def case_knn_auto(ck: Check) -> list[Record]:
    from sam3d_eval.ops.knn import knn_points

    N, P1, P2 = 4, ck.size(100_000, 500), ck.size(100_000, 400)
    rec = Record("knn_auto", "knn_points auto (Triton + exact recompute), ragged", f"{N} x {P1:,} x {P2:,}, lengths")
    g = _gen(2)
    p1, p2 = torch.rand(N, P1, 3, generator=g), torch.rand(N, P2, 3, generator=g)
    l1 = torch.tensor([P1, P1 - 7, P1 // 2, 1], dtype=torch.int64)[:N]
    l2 = torch.tensor([P2, P2 // 3, P2 - 1, 5], dtype=torch.int64)[:N]
    ref = ck.cpu(rec, lambda: knn_points(p1, p2, l1, l2), rounds=ck.size(3, 1))
    if not ck.cuda:
        rec.cuda_status = NO_CUDA
        return [rec]
    c1, c2, cl1, cl2 = (t.to(ck.dev) for t in (p1, p2, l1, l2))
    out = ck.gpu(rec, lambda: knn_points(c1, c2, cl1, cl2), rounds=5, warmup=2)
    rtol = reorder_rtol(4)
    rec.check(out.dists, ref.dists, rtol, 0.0, f"rel {rtol:.1e}: 3-term dot (n = 4), near-tie picks; padding 0")
    same = (out.idx.cpu() == ref.idx).double().mean().item()
    rec.notes.append(f"same neighbour index for {100 * same:.4f}% of the queries (padding included)")
    return [rec]


def case_knn_torch(ck: Check) -> list[Record]:
    from sam3d_eval.ops.knn import knn_points

    N, P, K = 4, ck.size(20_000, 300), 4
    rec = Record("knn_torch", "knn_points backend='torch' (tiled brute force), K=4", f"{N} x {P:,} x {P:,}, K={K}")
    g = _gen(3)
    p1, p2 = torch.rand(N, P, 3, generator=g), torch.rand(N, P, 3, generator=g)
    ref = ck.cpu(rec, lambda: knn_points(p1, p2, K=K), rounds=ck.size(3, 1))
    if not ck.cuda:
        rec.cuda_status = NO_CUDA
        return [rec]
    c1, c2 = p1.to(ck.dev), p2.to(ck.dev)
    out = ck.gpu(rec, lambda: knn_points(c1, c2, K=K, backend="torch"), rounds=5)
    rtol = reorder_rtol(4)
    rec.check(out.dists, ref.dists, rtol, 0.0, f"rel {rtol:.1e}: 3-term dot (n = 4), near-tie picks")
    return [rec]


def _point_mesh_inputs(ck: Check):
    from sam3d_eval.ops.sample_points import sample_points_from_meshes
    from sam3d_eval.structures.meshes import Meshes

    # the six built-in shapes (flat faces, sharp edges and cone tips: every branch of the formula) and, at full
    # size, two bumpy 20,480-face icospheres (the size the rasteriser benchmarks use)
    gts = [gt for _, gt in _builtin_pairs(ck.size(6, 2), detail=not ck.quick)]
    if not ck.quick:
        gts.append(_icosphere_batch(2, 5, seed=11))
    # centre each shape at the origin (the per-sample offsets would only inflate the tolerance's magnitude)
    verts = [v - v.mean(0) for m in gts for v in m.verts_list()]
    meshes = Meshes(verts, [f for m in gts for f in m.faces_list()])
    P = ck.size(10_000, 200)
    pts = sample_points_from_meshes(meshes, P, seed=4)
    pts = pts + 0.02 * torch.randn(pts.shape, generator=_gen(5))  # near the surface, both sides of it
    return meshes, pts


def case_point_face(ck: Check) -> list[Record]:
    from sam3d_eval.ops.point_mesh import point_face_distance

    meshes, pts = _point_mesh_inputs(ck)
    B, P = pts.shape[:2]
    T = int(meshes.num_faces_per_mesh().max())
    rec = Record("point_face", "point_face_distance (exact, the evaluation's)", f"{B} meshes <= {T:,} faces x {P:,} points")
    points = pts.reshape(-1, 3)
    pfi = torch.arange(B, dtype=torch.int64) * P
    tris = meshes.verts_packed()[meshes.faces_packed()]
    tfi = meshes.mesh_to_faces_packed_first_idx()
    ref, _ = ck.cpu(rec, lambda: point_face_distance(points, pfi, tris, tfi, None, None), rounds=ck.size(2, 1))
    if not ck.cuda:
        rec.cuda_status = NO_CUDA
        return [rec]
    cp, cpfi, ct, ctfi = (t.to(ck.dev) for t in (points, pfi, tris, tfi))
    d, _ = ck.gpu(rec, lambda: point_face_distance(cp, cpfi, ct, ctfi, None, None))
    R2 = float(torch.cat([points, tris.reshape(-1, 3)]).abs().max()) ** 2 * 4  # (2 max|coordinate|)^2 >= |p - v|^2
    rtol9 = reorder_rtol(9)
    atol = rtol9 * R2
    rec.check(d, ref, 0.0, atol, f"abs {atol:.1e} = {rtol9:.1e} R^2 (n = 9: 3-term dots of 2-term cross products; "
                                 f"R^2 = {R2:.2f} bounds |p - v|^2)")
    return [rec]


def case_point_mesh_loss(ck: Check) -> list[Record]:
    from sam3d_eval.metrics.point_mesh_distance import point_mesh_face_distance
    from sam3d_eval.structures.pointclouds import Pointclouds

    meshes, pts = _point_mesh_inputs(ck)
    B, P = pts.shape[:2]
    T = int(meshes.num_faces_per_mesh().max())
    rec = Record("point_mesh_loss", "point_mesh_face_distance (loss, both ways)", f"{B} meshes <= {T:,} faces x {P:,} points")
    pcl = Pointclouds(list(pts.unbind(0)))
    ref = ck.cpu(rec, lambda: point_mesh_face_distance(meshes, pcl), rounds=ck.size(2, 1))
    if not ck.cuda:
        rec.cuda_status = NO_CUDA
        return [rec]
    cm, cpcl = meshes.to(ck.dev), pcl.to(ck.dev)
    val = ck.gpu(rec, lambda: point_mesh_face_distance(cm, cpcl))
    R2 = float(torch.cat([pts.reshape(-1, 3), meshes.verts_packed()]).abs().max()) ** 2 * 4
    atol = 2 * reorder_rtol(9) * R2  # one per-pair bound per direction
    rtol = reorder_rtol(max(P, T))
    rec.check(val, ref, rtol, atol, f"rel {rtol:.1e} (means of n = {max(P, T):,}) + abs {atol:.1e} (2 per-pair bounds)")
    return [rec]


def case_rasterize(ck: Check) -> list[Record]:
    from sam3d_eval.ops.rasterize import rasterize_meshes
    from sam3d_eval.render.multiview import default_views

    B, sub, side = ck.size(8, 1), ck.size(5, 2), ck.size(256, 32)
    meshes = _icosphere_batch(B, sub, seed=6)
    F = int(meshes.num_faces_per_mesh()[0])
    rec = Record("rasterize", "rasterize_meshes", f"{B} meshes x {F:,} faces x 8 views, {side}x{side}")
    screen = default_views((side, side)).project(meshes.verts_packed())  # (8, sum V, 3), on the CPU for both
    ref = ck.cpu(rec, lambda: rasterize_meshes(meshes, screen, (side, side)), rounds=ck.size(2, 1))
    if not ck.cuda:
        rec.cuda_status = NO_CUDA
        return [rec]
    cm, cs = meshes.to(ck.dev), screen.to(ck.dev)
    out = ck.gpu(rec, lambda: rasterize_meshes(cm, cs, (side, side)))
    p2f = out.pix_to_face.cpu()
    mismatch = (p2f != ref.pix_to_face).double().mean().item()
    ok_share = mismatch <= 1e-4
    rec.notes.append(f"pix_to_face differs at {100 * mismatch:.4f}% of the pixels (tolerance 0.01%: exact ties only; "
                     "edge functions and depths are the same elementwise IEEE operations on both devices)")
    same = p2f == ref.pix_to_face
    zmax = float(ref.zbuf.abs().max())
    rtol = reorder_rtol(4)
    rec.check(out.zbuf.cpu()[same], ref.zbuf[same], 0.0, rtol * zmax, f"zbuf abs {rtol * zmax:.1e} = {rtol:.1e} z_max")
    rec.check(out.bary_coords.cpu()[same], ref.bary_coords[same], 0.0, rtol,
              f"bary abs {rtol:.1e} (3-term sums, n = 4); pix_to_face mismatch <= 1e-4")
    rec.passed = bool(rec.passed) and ok_share
    return [rec]


def _lpips_model():
    """An AlexNet LPIPS with weights made here (torchvision layout, seeded He init; seeded non-negative linear
    layers): the backbone weights are not available to the project, and the check needs none."""
    from sam3d_eval.metrics.lpips import LPIPS

    g = _gen(7)
    sd = {}
    for idx, (c_out, c_in, k) in {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}.items():
        sd[f"features.{idx}.weight"] = torch.randn(c_out, c_in, k, k, generator=g) * (2.0 / (c_in * k * k)) ** 0.5
        sd[f"features.{idx}.bias"] = torch.randn(c_out, generator=g) * 0.01
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) * 0.2 for k, c in enumerate((64, 192, 384, 256, 256))}
    return LPIPS("alex", backbone_weights=sd, linear_weights=lin)


# conv reduction lengths of the tapped AlexNet layers: C_in * k * k
_ALEX_REDUCTIONS = (3 * 11 * 11, 64 * 5 * 5, 192 * 3 * 3, 384 * 3 * 3, 256 * 3 * 3)


def case_lpips(ck: Check) -> list[Record]:
    B, side = ck.size(64, 2), ck.size(256, 64)
    sizes = f"{B} pairs {side}x{side}, alex"
    r32 = Record("lpips", "LPIPS float32 (cuDNN TF32 off)", sizes)
    r16 = Record("lpips", "LPIPS autocast fp16", sizes)
    model = _lpips_model()
    g = _gen(8)
    x, y = torch.rand(B, 3, side, side, generator=g), torch.rand(B, 3, side, side, generator=g)

    def cpu_run():
        with torch.no_grad():
            return model(x, y, normalize=True)

    ref = ck.cpu(r32, cpu_run, rounds=ck.size(2, 1))
    r16.cpu_s = r32.cpu_s
    r16.notes.append("CPU side: the float32 run (the reference; the CPU has no fp16 path)")
    if not ck.cuda:
        r32.cuda_status = r16.cuda_status = NO_CUDA
        return [r32, r16]
    cmodel = _lpips_model().to(ck.dev)
    cx, cy = x.to(ck.dev), y.to(ck.dev)
    half = torch.float16 if ck.dev == "cuda" else torch.bfloat16  # CPU autocast (simulation) is bfloat16

    def fp32():
        with torch.no_grad():
            return cmodel(cx, cy, normalize=True)

    def fp16():
        with torch.no_grad(), torch.autocast(ck.dev, half):
            return cmodel(cx, cy, normalize=True)

    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        out32 = ck.gpu(r32, fp32, rounds=10, warmup=2)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    s = sum(k - 1 for k in _ALEX_REDUCTIONS)
    rtol32 = 2 * 2 * s * unit_roundoff(torch.float32)
    r32.check(out32, ref, rtol32, 0.0, f"rel {rtol32:.1e} = 2 x 2 u x sum over the 5 convs of (C_in k^2 - 1) = {s}")
    out16 = ck.gpu(r16, fp16, rounds=10, warmup=2)
    rtol16 = 30 * unit_roundoff(half)
    r16.check(out16, ref, rtol16, 1e-3,
              f"fp16: rel {rtol16:.1e} = 30 u16 (input, weights, output rounded to fp16 in each of 5 layers, fp32 "
              "accumulation: features within 15 u16; squared differences double it) + abs 1e-3 (LPIPS's documented "
              "autocast accuracy)")
    return [r32, r16]


def case_icp(ck: Check) -> list[Record]:
    from sam3d_eval.ops.alignment import iterative_closest_point
    from sam3d_eval.transforms import quaternion_to_matrix

    B, P, iters = ck.size(8, 2), ck.size(10_000, 300), ck.size(30, 5)
    rec = Record("icp", "iterative_closest_point (rigid)", f"{B} pairs x {P:,} points, {iters} steps")
    g = _gen(9)
    Y = torch.randn(B, P, 3, generator=g) * torch.tensor([0.5, 0.35, 0.2])  # distinct principal axes
    q = torch.cat([torch.ones(B, 1), 0.08 * torch.randn(B, 3, generator=g)], 1)
    R = quaternion_to_matrix(q / q.norm(dim=1, keepdim=True))
    X = Y @ R + 0.05 * torch.randn(B, 1, 3, generator=g) + 0.005 * torch.randn(B, P, 3, generator=g)
    X = X[:, torch.randperm(P, generator=g)]

    def run(a, b):
        return lambda: iterative_closest_point(a, b, max_iterations=iters)

    ref = ck.cpu(rec, run(X, Y), rounds=ck.size(2, 1))
    if not ck.cuda:
        rec.cuda_status = NO_CUDA
        return [rec]
    out = ck.gpu(rec, run(X.to(ck.dev), Y.to(ck.dev)), rounds=3)
    atol = 2 * reorder_rtol(P)
    text = (f"abs {atol:.1e} on R, T, rmse = 2 x rel bound of the {P:,}-term centroid / covariance sums "
            "(Kabsch's sensitivity <= 2 for these axes; unit-scale clouds)")
    for a, e in ((out.RTs.R, ref.RTs.R), (out.RTs.T, ref.RTs.T), (out.rmse, ref.rmse)):
        rec.check(a, e, 0.0, atol, text)
    rec.notes.append(f"ICP steps: CUDA {out.iterations}, CPU {ref.iterations}")
    return [rec]


def case_emd(ck: Check) -> list[Record]:
    from sam3d_eval.metrics.emd import earth_movers_distance

    B, n, eps = ck.size(2, 1), ck.size(2048, 64), 1e-4
    rec = Record("emd", "earth_movers_distance (auction on CUDA, exact on CPU)", f"{B} pairs x {n:,} points")
    g = _gen(10)
    x = torch.rand(B, n, 3, generator=g)
    y = torch.rand(B, n, 3, generator=g) * 0.9 + 0.05
    ref = ck.cpu(rec, lambda: earth_movers_distance(x, y, num_points=n), rounds=1)
    if not ck.cuda:
        rec.cuda_status = NO_CUDA
        return [rec]
    cx, cy = x.to(ck.dev), y.to(ck.dev)
    # "auction" is what auto picks on CUDA; named so that a CPU simulation runs it too
    out = ck.gpu(rec, lambda: earth_movers_distance(cx, cy, num_points=n, method="auction", eps=eps), rounds=3).cpu()
    dmax = torch.cdist(x.double(), y.double()).amax(dim=(1, 2))
    rnd = 2 * unit_roundoff(torch.float32) * ref.double().abs()  # the float32 result, rounded on each side
    low, high = ref.double() - rnd, ref.double() + eps * dmax + rnd
    ok = bool(((out.double() >= low) & (out.double() <= high)).all())
    diff = (out.double() - ref.double()).abs()
    rec.max_abs, rec.max_rel, rec.passed = float(diff.max()), float((diff / ref.double().abs()).max()), ok
    rec.tolerance = (f"one-sided: 0 <= CUDA - CPU <= eps x max distance = {eps:g} x {float(dmax.max()):.2f} "
                     "(the auction's bound) + 2 u32 |EMD|")
    return [rec]


def _metric_tolerance(column: str, n: int) -> tuple[float, float]:
    """(rtol, atol) of a score_batch column between two evaluations on the same points: means of n per-point
    values in another order (`reorder_rtol(n)`), and for threshold shares and normal agreement 4 / n (two
    points per direction that cross a threshold, or pick another neighbour, under rounding)."""
    rtol = reorder_rtol(n)
    return (rtol, 0.0) if column.startswith("chamfer") else (rtol, 4.0 / n)


def _score_columns(a, b, rec: Record, n: int) -> None:
    if a.status != b.status:
        rec.passed = False
        rec.notes.append(f"row status differs: {a.status} vs {b.status}; errors {a.error} / {b.error}")
    for col in b.metrics:
        rtol, atol = _metric_tolerance(col, n)
        rec.check(a.metrics[col], b.metrics[col], rtol, atol, "")
    rec.tolerance = (f"rel {reorder_rtol(n):.1e} (means of n = {n:,}); + abs {4.0 / n:.0e} = 4/n on F-score, "
                     "precision, recall, normal consistency (threshold crossings under rounding)")


def case_score_clouds(ck: Check) -> list[Record]:
    from sam3d_eval.evaluate.protocols import get_protocol
    from sam3d_eval.evaluate.scoring import score_batch
    from sam3d_eval.ops.sample_points import sample_points_from_meshes
    from sam3d_eval.structures.pointclouds import Pointclouds

    B, n = ck.size(8, 2), ck.size(10_000, 500)
    rec = Record("score_clouds", "score_batch, the same point clouds on both", f"{B} samples x {n:,} points")
    protocol = get_protocol("default").with_overrides(num_samples=n)
    preds, gts = [], []
    for i, (pm, gm) in enumerate(_builtin_pairs(B, detail=not ck.quick)):
        for mesh, dst, s in ((pm, preds, 2 * i), (gm, gts, 2 * i + 1)):
            p, nrm = sample_points_from_meshes(mesh, n, return_normals=True, seed=100 + s)
            dst.append(Pointclouds([p[0]], [nrm[0]]))
    ids = [f"c{i:03d}" for i in range(B)]
    ref = ck.cpu(rec, lambda: score_batch(ids, preds, gts, protocol), rounds=ck.size(2, 1))
    if not ck.cuda:
        rec.cuda_status = NO_CUDA
        return [rec]
    cp, cg = [p.to(ck.dev) for p in preds], [g.to(ck.dev) for g in gts]
    out = ck.gpu(rec, lambda: score_batch(ids, cp, cg, protocol), rounds=5)
    _score_columns(out, ref, rec, n)
    return [rec]


def case_score_meshes(ck: Check) -> list[Record]:
    from sam3d_eval.evaluate.protocols import get_protocol
    from sam3d_eval.evaluate.scoring import score_batch

    B, n = ck.size(64, 2), ck.size(10_000, 500)
    rec = Record("score_meshes", "score_batch, built-in meshes (sampling on the device)", f"{B} samples x {n:,} points, default protocol")
    protocol = get_protocol("default").with_overrides(num_samples=n)
    pairs = _builtin_pairs(B, detail=not ck.quick)
    preds, gts = [p for p, _ in pairs], [g for _, g in pairs]
    ids = [f"m{i:03d}" for i in range(B)]
    ref = ck.cpu(rec, lambda: score_batch(ids, preds, gts, protocol), rounds=1)
    rec.notes.append(f"CPU: {B / rec.cpu_s:.1f} samples/s")
    if not ck.cuda:
        rec.cuda_status = NO_CUDA
        return [rec]
    # CUDA generators draw other numbers than CPU ones, so the two sides sample other points: the tolerance is
    # the sampling noise, measured on the CPU as the RMS difference between two sampling seeds.
    other = score_batch(ids, preds, gts, protocol.with_overrides(seed=protocol.seed + 1))
    cp, cg = [p.to(ck.dev) for p in preds], [g.to(ck.dev) for g in gts]
    out = ck.gpu(rec, lambda: score_batch(ids, cp, cg, protocol), rounds=3)
    for col, e in ref.metrics.items():
        rel = col.startswith("chamfer")
        noise = (other.metrics[col] - e) / (e.abs() if rel else 1.0)
        noise = noise[torch.isfinite(noise)]  # a metric NaN on both (unavailable) carries no noise
        rms = float(noise.pow(2).mean().sqrt()) if noise.numel() else 0.0
        floor = reorder_rtol(n) if rel else 2.0 / n
        tol = 5 * rms + floor
        rec.check(out.metrics[col], e, tol if rel else 0.0, 0.0 if rel else tol, "")
    rec.tolerance = ("sampling noise: 5 x RMS difference of each column between two CPU sampling seeds (relative for "
                     "Chamfer, absolute otherwise) + rounding floor")
    rate = B / rec.cuda_s
    rec.goal_met = rate >= GOAL_EVAL_SAMPLES_PER_S
    rec.goal = f"{rate:,.0f} samples/s at {n:,} points (goal >= {GOAL_EVAL_SAMPLES_PER_S:,.0f}): {'met' if rec.goal_met else 'missed'}"
    return [rec]


def _write_benchmark(root: pathlib.Path, pairs) -> pathlib.Path:
    import pandas as pd

    from sam3d_eval.io.mesh_io import save_mesh

    (root / "gt").mkdir()
    (root / "pred").mkdir()
    rows = []
    for i, (pm, gm) in enumerate(pairs):
        sid = f"r{i:03d}"
        save_mesh(root / "gt" / f"{sid}.ply", (gm.verts_list()[0], gm.faces_list()[0]))
        save_mesh(root / "pred" / f"{sid}.ply", (pm.verts_list()[0], pm.faces_list()[0]))
        rows.append(dict(sample_id=sid, gt_mesh=f"gt/{sid}.ply", domain=("synthetic", "real")[i % 2],
                         occlusion=(i % 10) / 10, category="builtin"))
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def case_runner(ck: Check) -> list[Record]:
    from sam3d_eval.data.manifest import load_manifest
    from sam3d_eval.evaluate.protocols import get_protocol
    from sam3d_eval.evaluate.runner import run_evaluation
    from sam3d_eval.evaluate.scoring import score_batch
    from sam3d_eval.evaluate.sources import FolderSource
    from sam3d_eval.io.mesh_io import load_mesh

    B, n = ck.size(16, 2), ck.size(10_000, 300)
    rec = Record("runner", "run_evaluation (files -> rows), batches of 8", f"{B} samples x {n:,} points, default protocol")
    protocol = get_protocol("default").with_overrides(num_samples=n)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        root = pathlib.Path(tmp)
        manifest = load_manifest(_write_benchmark(root, _builtin_pairs(B, detail=not ck.quick)))
        source = FolderSource(root / "pred")

        def run(device):
            return lambda: run_evaluation(source, manifest, protocol, None, batch_size=8, device=device)

        cpu = ck.cpu(rec, run("cpu"), rounds=1)
        if int(cpu.failed):
            rec.passed = False
            rec.notes.append(f"CPU run: {cpu.failed} failed rows")
        if not ck.cuda:
            rec.cuda_status = NO_CUDA
            return [rec]
        res = ck.gpu(rec, run(ck.dev), rounds=2)
        frame = res.frame.set_index("sample_id").sort_index()
        ids = list(frame.index)
        # the same files scored in one score_batch call on CUDA: the runner must add nothing but rounding
        gts = [load_mesh(root / "gt" / f"{s}.ply", device=ck.dev) for s in ids]
        preds = [load_mesh(root / "pred" / f"{s}.ply", device=ck.dev) for s in ids]
        direct = score_batch(ids, preds, gts, protocol)
    rec.passed = int(res.failed) == 0 and (rec.passed is not False)
    for col, e in direct.metrics.items():
        rtol, atol = _metric_tolerance(col, n)
        rec.check(torch.tensor(frame[col].to_numpy(dtype=np.float64)), e, rtol, atol, "")
    rec.tolerance = (f"CUDA runner vs one CUDA score_batch of the same files (other padding): rel {reorder_rtol(n):.1e} "
                     f"(means of n = {n:,}) + abs {4.0 / n:.0e} on shares")
    rec.notes.append(f"CUDA runner {B / rec.cuda_s:.1f} samples/s end to end (loading included), CPU {B / rec.cpu_s:.1f}")
    return [rec]


# (key, runner, estimated seconds at full size, at quick size), in order of importance
CASES: list[tuple[str, Callable[[Check], list[Record]], float, float]] = [
    ("knn_triton", case_knn_triton, 45, 2),
    ("score_meshes", case_score_meshes, 60, 3),
    ("knn_auto", case_knn_auto, 20, 1),
    ("point_face", case_point_face, 30, 2),
    ("rasterize", case_rasterize, 20, 1),
    ("lpips", case_lpips, 40, 2),
    ("icp", case_icp, 40, 1),
    ("emd", case_emd, 40, 1),
    ("score_clouds", case_score_clouds, 20, 2),
    ("runner", case_runner, 50, 3),
    ("knn_torch", case_knn_torch, 20, 1),
    ("point_mesh_loss", case_point_mesh_loss, 30, 2),
]


# ----------------------------------------------------------------------------------------------------
# report


def _versions() -> dict[str, str]:
    out = {"torch": torch.__version__, "cuda": str(torch.version.cuda), "python": platform.python_version()}
    for pkg in ("triton", "numpy", "scipy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _cell(x: str) -> str:
    return x.replace("|", "/").replace("\n", " ")


def render_table(records: list[Record], ck: Check, argv: list[str], date: str) -> str:
    v = _versions()
    if ck.simulated:
        device = f"SIMULATION: the CUDA side ran on {ck.dev} (--second-device; tests the script, measures no GPU)"
        peak_line = f"Peak: a nominal {ck.peak['peak'] / 1e12:g} TFLOP/s (simulation; the goal ratio means nothing)."
    elif ck.cuda and ck.peak:
        p = ck.peak
        device = f"{p['name']} ({p['sms']} SMs, sm_{p['cc'][0]}{p['cc'][1]}, {p['memory_gib']:.0f} GiB)"
        peak_line = (f"Peak fp32 = SMs x FP32 cores/SM x 2 FLOP/FMA x max SM clock = {p['sms']} x {p['cores']} x 2 x "
                     f"{p['clock_mhz']:.0f} MHz = {p['peak'] / 1e12:.1f} TFLOP/s (clock from {p['clock_source']}). "
                     "Nearest-neighbour FLOPs as the kernel computes them: N x P1 x P2 x 3 x D (per pair and "
                     "coordinate a subtraction and an FMA).")
    else:
        device = "no CUDA device (CPU sides only)"
        peak_line = "Peak fp32 not measured (no CUDA device)."
    sizes = "quick (tiny; never quote)" if ck.quick else "full"
    lines = [
        f"## {date}: GPU check, {device}",
        "",
        f"Machine: {device}, {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}); torch {v['torch']} "
        f"(CUDA {v['cuda']}), triton {v['triton']}, numpy {v['numpy']}, scipy {v['scipy']}, Python {v['python']}. "
        f"Sizes: {sizes}. CPU sides under `runtime_policy('cpu')` (one torch thread, KD-tree queries threaded), "
        f"CUDA sides under `runtime_policy('{ck.dev or 'cuda'}')`; times are medians, warm-up excluded, CUDA synchronised. "
        f"Command: `{' '.join(['python benchmarks/gpu_check.py', *argv])}`.",
        "",
        peak_line,
        "",
        TABLE_HEADER,
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        ran = r.cuda_status == "ran"
        passed = "-" if r.passed is None else ("PASS" if r.passed else "FAIL")
        cuda_t = _fmt_s(r.cuda_s) if ran else r.cuda_status
        lines.append("| " + " | ".join(_cell(c) for c in (
            r.path, r.sizes, _fmt_x(r.max_abs), _fmt_x(r.max_rel), r.tolerance or "-", passed, cuda_t,
            _fmt_s(r.cpu_s), "-" if r.ratio is None else f"{r.ratio:.1f}", r.goal or "-")) + " |")
    notes = [f"- {r.path}: {n}" for r in records for n in r.notes]
    if notes:
        lines += ["", "Notes:", ""] + notes
    goals = [r for r in records if r.goal_met is not None]
    if goals:
        lines += ["", "Goals: " + "; ".join(f"{r.path}: {r.goal}" for r in goals) + "."]
    return "\n".join(lines) + "\n"


def append_table(path: pathlib.Path, table: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = ""
    if path.exists() and path.stat().st_size:
        text = path.read_text()
        prefix = "\n" if text.endswith("\n") else "\n\n"
    with path.open("a") as fh:
        fh.write(prefix + table)


# ----------------------------------------------------------------------------------------------------
# entry points


@dataclass
class Outcome:
    exit_code: int
    records: list[Record]
    table: str
    written: pathlib.Path | None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, default=None,
                    help=f"markdown file the dated table is appended to (default with CUDA at full sizes: {DEFAULT_OUT}; "
                         "without CUDA or with --quick nothing is written unless --out is given)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: exercises every case in seconds (tests)")
    ap.add_argument("--budget", type=float, default=BUDGET_S, help=f"total seconds (default {BUDGET_S:.0f})")
    ap.add_argument("--only", default=None, help="comma-separated case keys: " + ", ".join(k for k, *_ in CASES))
    ap.add_argument("--second-device", choices=["cpu"], default=None,
                    help="testing the script without a GPU: run each case's CUDA side on this device instead "
                         "(knn_triton then needs TRITON_INTERPRET=1 set before triton is imported); never written "
                         "to the default --out")
    return ap.parse_args(argv)


def run(argv: list[str] | None = None, say: Callable[[str], None] = print) -> Outcome:
    """Run every case; returns the exit code, the records, the table and where it was written."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    cuda = torch.cuda.is_available() and args.second_device is None
    dev = "cuda" if cuda else args.second_device
    ck = Check(args.quick, args.budget, dev, say)
    if cuda:
        ck.peak = device_peak()
    elif ck.simulated:
        ck.peak = dict(name=f"{dev} (simulated)", sms=1, cc=(0, 0), cores=1, clock_mhz=1000.0, clock_source="nominal",
                       peak=1e11, memory_gib=0.0)
    only = None if args.only is None else {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = (only or set()) - {k for k, *_ in CASES}
    if unknown:
        raise SystemExit(f"unknown case(s) {sorted(unknown)}; choose from {[k for k, *_ in CASES]}")
    where = ("CUDA " + torch.cuda.get_device_name()) if cuda else f"SIMULATION on {dev}" if dev else "no CUDA device"
    say(f"GPU check: {where}, "
        f"{'quick' if args.quick else 'full'} sizes, budget {args.budget:.0f} s")
    records: list[Record] = []
    errors = 0
    for key, fn, est_full, est_quick in CASES:
        if only is not None and key not in only:
            continue
        est = est_quick if args.quick else est_full
        left = ck.left()
        if left < est:
            rec = Record(key, key, cuda_status=f"skipped: time budget ({max(left, 0):.0f} s left, case needs ~{est:.0f} s)")
            records.append(rec)
            say(f"[{key}] {rec.cuda_status}")
            continue
        ck.case_deadline = time.perf_counter() + 2 * est
        t0 = time.perf_counter()
        try:
            recs = fn(ck)
        except Exception as err:  # noqa: BLE001 - a case that raises is a failed check, the others still run
            errors += 1
            say(f"[{key}] ERROR {type(err).__name__}: {err}")
            say(traceback.format_exc())
            recs = [Record(key, key, cuda_status=f"error: {type(err).__name__}: {str(err)[:200]}", passed=False)]
        finally:
            if cuda:
                torch.cuda.empty_cache()
        for r in recs:
            records.append(r)
            ran = r.cuda_status == "ran"
            verdict = "" if r.passed is None else (" PASS" if r.passed else " FAIL")
            say(f"[{key}] {r.path} ({r.sizes}): CPU {_fmt_s(r.cpu_s)}; CUDA "
                + (f"{_fmt_s(r.cuda_s)}, max abs diff {_fmt_x(r.max_abs)}, max rel {_fmt_x(r.max_rel)}, "
                   f"tolerance {r.tolerance}{verdict}" if ran else r.cuda_status + verdict)
                + (f"; {r.goal}" if r.goal else ""))
            for n in r.notes:
                say(f"    {n}")
        say(f"    ({time.perf_counter() - t0:.1f} s; {ck.left():.0f} s of the budget left)")
    date = datetime.date.today().isoformat()
    table = render_table(records, ck, argv, date)
    say("")
    say(table)
    out = args.out
    if out is None and cuda and not args.quick:
        out = DEFAULT_OUT
    if out is not None:
        append_table(out, table)
        say(f"table appended to {out}")
    else:
        why = "quick sizes" if cuda else "a simulation" if dev else "no CUDA device"
        say(f"table not written: {why} and no --out given")
    failed = errors + sum(1 for r in records if r.passed is False)
    return Outcome(1 if failed else 0, records, table, out)


def main(argv: list[str] | None = None) -> int:
    return run(argv).exit_code


if __name__ == "__main__":
    sys.exit(main())
