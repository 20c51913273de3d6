"""End-to-end `evaluate` on 200 samples, ours against the usual per-sample script, in the same session.

    python -m pytest benchmarks/bench_evaluate.py -s --benchmark-columns=min,median,rounds

Data (session fixture): 200 samples; each ground truth is a procedural shape of 10-14k vertices (icosphere
level 5: 10,242; a subdivided box: 14,338; a torus: 10,240), scaled and moved per sample, each prediction a seeded degradation of it
(`data.shapes.degrade`), written as binary PLY files with a CSV manifest (two domains, occlusion levels).

Work per sample (the default protocol with `num_samples=10_000`): read both meshes, normalise jointly by
the GT box, sample 10k points on each surface, one nearest-neighbour query per direction, Chamfer-L2,
Chamfer-L1, F-score (+ precision/recall) at 0.01/0.02/0.05, normal consistency, and store the row.

- ours: `run_evaluation` as a user calls it (batches of 8, Parquet parts, `runtime_policy` inside, the
  overlap of loading and scoring it picks for the idle cores: scoring processes, the loader thread or inline;
  the one used is printed). Where the time goes is measured apart, on STAGE_SAMPLES samples in one process,
  inline (the overlap would hide it): load, sample, align, nearest neighbour, metrics (the rest of
  `score_batch`), render and LPIPS (0: the default protocol has no appearance), write. The stages inside
  `score_batch` are timed by wrapping the kernels it calls (`sample_points_from_meshes`, `align`,
  `knn_points`); the bottleneck is named.
- peer "trimesh": what evaluation scripts in the field do, per sample: `trimesh.load`, joint bbox
  normalisation, `trimesh.sample.sample_surface` on both, scipy `cKDTree` (workers=-1) both ways, the same
  metrics in numpy, rows written as CSV at the end.
- peer "open3d + point-cloud-utils": the same script on the compiled libraries: `open3d.io.read_triangle_mesh`,
  `point_cloud_utils.sample_mesh_random` + `interpolate_barycentric_coords` (face normals from
  `estimate_mesh_face_normals`), open3d's `core.nns.NearestNeighborSearch` both ways (multithreaded),
  numpy metrics, CSV. Skipped, with the reason, where either package does not import.

All run in the same session, one after the other, over the same files; the ratios are printed and stored in
`extra_info`. Then interleaved: FULL_ROUNDS whole runs of each, alternated (medians: the figure to quote),
and CHUNKS runs of 20 samples alternated (each with its own start-up). Goals: ours >= 4x the trimesh peer
and >= 2x the open3d + point-cloud-utils peer, in samples per second on the CPU. Also printed, on lines of their own: the import time of the suite
(``python -c "import sam3d_eval.evaluate"`` and ``sam3d-eval --help``, fresh processes) and the second run
of a comparison, whose GT surface samples come from the first run (`evaluate.gt_cache`).
"""

from __future__ import annotations

import csv
import importlib.util
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from sam3d_eval.data.manifest import load_manifest
from sam3d_eval.data.shapes import Degradation, degrade
from sam3d_eval.evaluate import scoring
from sam3d_eval.evaluate.gt_cache import GTSampleCache
from sam3d_eval.evaluate.protocols import get_protocol
from sam3d_eval.evaluate.runner import run_evaluation
from sam3d_eval.evaluate.sources import FolderSource
from sam3d_eval.io.mesh_io import save_mesh
from sizes import sizes_for

S = sizes_for("evaluate")  # benchmarks/sizes.py
N_SAMPLES = S.N_SAMPLES
POINTS = S.POINTS
TAUS = (0.01, 0.02, 0.05)
PROTOCOL = get_protocol("default").with_overrides(num_samples=POINTS)
RESULTS: dict[str, float] = {}
STAGE_SAMPLES = min(50, N_SAMPLES)  # the stage split's run (one process, inline)
FULL_ROUNDS = 1 if S.QUICK else 3  # interleaved whole runs
PEER_O3D_MISSING = next((f"{m} does not import" for m in ("open3d", "point_cloud_utils")
                         if importlib.util.find_spec(m) is None), None)


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _base_shapes(detail: float = S.SHAPE_DETAIL) -> list[tuple[np.ndarray, np.ndarray]]:
    """detail 1: 10-14k vertices per shape; smaller values give coarser shapes (quick mode)."""
    level = 5 if detail >= 1 else 3
    sphere = trimesh.creation.icosphere(subdivisions=level, radius=0.5)  # level 5: 10242 vertices
    box = trimesh.creation.box(extents=(0.8, 0.5, 0.3))
    for _ in range(level):
        box = box.subdivide()
    box = trimesh.Trimesh(*trimesh.remesh.subdivide_to_size(box.vertices, box.faces, 0.02 / detail)[:2])
    torus = trimesh.creation.torus(major_radius=0.35, minor_radius=0.12, major_sections=int(128 * detail),
                                   minor_sections=int(80 * detail))
    return [(np.asarray(m.vertices, np.float32), np.asarray(m.faces, np.int64)) for m in (sphere, box, torus)]


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
    return write_dataset(tmp_path_factory.mktemp("bench_evaluate"))


def write_dataset(root: pathlib.Path, n: int = N_SAMPLES) -> tuple[pathlib.Path, pathlib.Path]:
    """Write `n` (GT, prediction) PLY pairs and manifest.csv under `root`; returns (root, manifest)."""
    (root / "gt").mkdir()
    (root / "pred").mkdir()
    shapes = _base_shapes()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        v, f = shapes[i % 3]
        v = v * rng.uniform(0.5, 2.0) + rng.normal(size=3).astype(np.float32)
        dv, df = degrade(v.astype(np.float32), f, Degradation(noise=0.003, stretch=0.05, dent=0.05), seed=i)[:2]
        sid = f"b{i:03d}"
        save_mesh(root / "gt" / f"{sid}.ply", (torch.from_numpy(v.astype(np.float32)), torch.from_numpy(f)))
        save_mesh(root / "pred" / f"{sid}.ply", (torch.from_numpy(dv), torch.from_numpy(df)))
        rows.append(dict(sample_id=sid, gt_mesh=f"gt/{sid}.ply", domain=("synthetic", "real")[i % 2],
                         occlusion=(i % 10) / 10, category=("sphere", "box", "torus")[i % 3]))
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root, root / "manifest.csv"


class _Timed:
    """Wraps a function of `scoring`'s namespace, adding its wall time to a stage."""

    def __init__(self, fn, stage: str, totals: dict[str, float]):
        self.fn, self.stage, self.totals = fn, stage, totals

    def __call__(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.totals[self.stage] += time.perf_counter() - t


def ours(root: pathlib.Path, manifest: pathlib.Path, out: pathlib.Path, **kw):
    """`run_evaluation` of the manifest as a user calls it; (wall seconds, `RunResult`)."""
    t = time.perf_counter()
    res = run_evaluation(FolderSource(root / "pred"), load_manifest(manifest), PROTOCOL, out, batch_size=8, **kw)
    total = time.perf_counter() - t
    assert res.failed == 0 and res.scored == len(res.frame)
    return total, res


def stage_split(root: pathlib.Path, manifest: pathlib.Path, out: pathlib.Path, monkeypatch) -> dict[str, float]:
    """Seconds per stage of an inline run (one process, no overlap) of the first STAGE_SAMPLES samples."""
    inner: dict[str, float] = defaultdict(float)
    for name, stage in (("sample_points_from_meshes", "sample"), ("align", "align"), ("knn_points", "nearest neighbour")):
        if hasattr(scoring, name):
            monkeypatch.setattr(scoring, name, _Timed(getattr(scoring, name), stage, inner))
    small = root / f"m-stages-{out.name}.csv"
    pd.read_csv(manifest, dtype={"sample_id": str}).head(STAGE_SAMPLES).to_csv(small, index=False)
    total, res = ours(root, small, out, score_workers=0, prefetch=False)
    stages = {"load": res.timings["load"] + res.timings["predict"]}
    stages.update(inner)
    stages["metrics"] = res.timings["score"] - sum(inner.values())
    stages["render"] = stages["LPIPS"] = 0.0
    stages["write"] = res.timings["write"]
    stages["total"] = total
    return stages



def _peer_row(sid: str, d_pg, d_gp, i_pg, i_gp, pn, gn) -> dict:
    """A peer script's metrics of one sample from its nearest-neighbour distances (Euclidean), indices and the
    sampled points' face normals, as the default protocol defines them."""
    row = {"sample_id": sid, "chamfer_l2": (d_pg**2).mean() + (d_gp**2).mean(),
           "chamfer_l1": 0.5 * (d_pg.mean() + d_gp.mean())}
    for tau in TAUS:
        prec, rec_ = (d_pg < tau).mean(), (d_gp < tau).mean()
        row[f"precision@{tau:g}"], row[f"recall@{tau:g}"] = prec, rec_
        row[f"fscore@{tau:g}"] = 2 * prec * rec_ / (prec + rec_) if prec + rec_ > 0 else 0.0
    row["normal_consistency"] = 0.5 * (np.abs((pn * gn[i_pg]).sum(1)).mean() + np.abs((gn * pn[i_gp]).sum(1)).mean())
    return row


def _write_rows(out_csv: pathlib.Path, rows: list[dict]) -> None:
    with out_csv.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

def peer_script(root: pathlib.Path, manifest: pathlib.Path, out_csv: pathlib.Path) -> float:
    """The per-sample trimesh + cKDTree script at equal work; returns its wall time."""
    t = time.perf_counter()
    rows = []
    for rec in csv.DictReader(manifest.open()):
        sid = rec["sample_id"]
        gt = trimesh.load(root / rec["gt_mesh"], process=False)
        pred = trimesh.load(root / "pred" / f"{sid}.ply", process=False)
        lo, hi = gt.bounds
        centre, scale = (lo + hi) / 2, 1.0 / (hi - lo).max()
        gt.vertices = (gt.vertices - centre) * scale
        pred.vertices = (pred.vertices - centre) * scale
        p, pf = trimesh.sample.sample_surface(pred, POINTS, seed=1)
        g, gf = trimesh.sample.sample_surface(gt, POINTS, seed=0)
        pn, gn = pred.face_normals[pf], gt.face_normals[gf]
        d_pg, i_pg = cKDTree(g).query(p, workers=-1)
        d_gp, i_gp = cKDTree(p).query(g, workers=-1)
        rows.append(_peer_row(sid, d_pg, d_gp, i_pg, i_gp, pn, gn))
    _write_rows(out_csv, rows)
    return time.perf_counter() - t


def peer_o3d_pcu(root: pathlib.Path, manifest: pathlib.Path, out_csv: pathlib.Path) -> float:
    """The per-sample script on open3d and point-cloud-utils at equal work; returns its wall time."""
    import open3d as o3d
    import point_cloud_utils as pcu

    def nearest(data: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nns = o3d.core.nns.NearestNeighborSearch(o3d.core.Tensor(data))
        nns.knn_index()
        idx, d2 = nns.knn_search(o3d.core.Tensor(queries), 1)
        return np.sqrt(d2.numpy()[:, 0].astype(np.float64)), idx.numpy()[:, 0]

    t = time.perf_counter()
    rows = []
    for rec in csv.DictReader(manifest.open()):
        sid = rec["sample_id"]
        gm = o3d.io.read_triangle_mesh(str(root / rec["gt_mesh"]))
        pm = o3d.io.read_triangle_mesh(str(root / "pred" / f"{sid}.ply"))
        gv, gf = np.asarray(gm.vertices), np.asarray(gm.triangles)
        pv, pf = np.asarray(pm.vertices), np.asarray(pm.triangles)
        lo, hi = gv.min(0), gv.max(0)
        centre, scale = (lo + hi) / 2, 1.0 / (hi - lo).max()
        gv, pv = (gv - centre) * scale, (pv - centre) * scale
        gfi, gbc = pcu.sample_mesh_random(gv, gf, POINTS, random_seed=1)  # 0 would draw a fresh seed
        pfi, pbc = pcu.sample_mesh_random(pv, pf, POINTS, random_seed=2)
        g = pcu.interpolate_barycentric_coords(gf, gfi, gbc, gv).astype(np.float32)
        p = pcu.interpolate_barycentric_coords(pf, pfi, pbc, pv).astype(np.float32)
        gn, pn = pcu.estimate_mesh_face_normals(gv, gf)[gfi], pcu.estimate_mesh_face_normals(pv, pf)[pfi]
        d_pg, i_pg = nearest(g, p)
        d_gp, i_gp = nearest(p, g)
        rows.append(_peer_row(sid, d_pg, d_gp, i_pg, i_gp, pn, gn))
    _write_rows(out_csv, rows)
    return time.perf_counter() - t


@pytest.mark.benchmark(group="evaluate-200x10k")
def test_ours_evaluate_200(benchmark, dataset, same_numbers, tmp_path, monkeypatch):
    root, manifest = dataset
    runs = iter(range(100))
    load = _load()
    total, res = benchmark.pedantic(lambda: ours(root, manifest, tmp_path / f"run{next(runs)}"),
                                    rounds=1, iterations=1, warmup_rounds=0)
    stages = stage_split(root, manifest, tmp_path / "stages", monkeypatch)
    parts = {k: v for k, v in stages.items() if k != "total"}
    bottleneck = max(parts, key=parts.get)
    benchmark.extra_info.update(samples_per_s=N_SAMPLES / total, overlap=res.overlap, bottleneck=bottleneck,
                                **{f"stage_{k}_share": round(v / stages["total"], 3) for k, v in parts.items()})
    RESULTS["ours"] = total
    print(f"\nours: {N_SAMPLES} samples in {total:.2f} s = {N_SAMPLES / total:.1f} samples/s ({res.overlap}; {load})")
    print(f"ours by stage ({STAGE_SAMPLES} samples, one process, inline, {stages['total']:.2f} s): "
          + ", ".join(f"{k} {100 * v / stages['total']:.0f}%" for k, v in parts.items()) + f"; bottleneck: {bottleneck}")


def _ratios(benchmark, name: str, t: float) -> None:
    RESULTS[name] = t
    benchmark.extra_info["samples_per_s"] = N_SAMPLES / t
    print(f"\npeer {name}: {N_SAMPLES} samples in {t:.2f} s = {N_SAMPLES / t:.1f} samples/s ({_load()})")
    if "ours" in RESULTS:
        ratio = RESULTS[name] / RESULTS["ours"]
        benchmark.extra_info["speedup_vs_peer"] = ratio
        goal = 4 if name == "trimesh" else 2
        print(f"speed-up of ours over the {name} peer: {ratio:.2f}x (goal >= {goal}x)")


@pytest.mark.benchmark(group="evaluate-200x10k")
def test_peer_trimesh_ckdtree_200(benchmark, dataset, same_numbers, tmp_path):
    root, manifest = dataset
    t = benchmark.pedantic(lambda: peer_script(root, manifest, tmp_path / "peer.csv"), rounds=1, iterations=1)
    _ratios(benchmark, "trimesh", t)


@pytest.mark.skipif(PEER_O3D_MISSING is not None, reason=f"open3d + point-cloud-utils peer: {PEER_O3D_MISSING}")
@pytest.mark.benchmark(group="evaluate-200x10k")
def test_peer_open3d_pcu_200(benchmark, dataset, same_numbers, tmp_path):
    root, manifest = dataset
    t = benchmark.pedantic(lambda: peer_o3d_pcu(root, manifest, tmp_path / "peer_o3d.csv"), rounds=1, iterations=1)
    _ratios(benchmark, "open3d+pcu", t)


@pytest.fixture(scope="session")
def same_numbers(dataset, tmp_path_factory):
    """Both sides compute the same quantities (to sampling noise) on a few samples; the timings depend on it."""
    check_same_numbers(dataset, tmp_path_factory.mktemp("same_numbers"))
    return True


def test_same_numbers_as_peer(same_numbers):
    assert same_numbers


def check_same_numbers(dataset, tmp_path):
    root, manifest = dataset
    # manifests live beside the data: a manifest may not name files outside its folder (symlinks included)
    small = root / f"m-{tmp_path.name}.csv"
    pd.read_csv(manifest, dtype={"sample_id": str}).head(6).to_csv(small, index=False)
    res = run_evaluation(FolderSource(root / "pred"), load_manifest(small), PROTOCOL, None).frame.set_index("sample_id")
    peers = [peer_script] + ([peer_o3d_pcu] if PEER_O3D_MISSING is None else [])
    for peer_fn in peers:
        peer_fn(root, small, tmp_path / "peer.csv")
        peer = pd.read_csv(tmp_path / "peer.csv", dtype={"sample_id": str}).set_index("sample_id")
        for sid in peer.index:
            assert res.loc[sid, "chamfer_l2"] == pytest.approx(peer.loc[sid, "chamfer_l2"], rel=0.1)
            for key in ("fscore@0.01", "fscore@0.05", "normal_consistency"):
                assert res.loc[sid, key] == pytest.approx(peer.loc[sid, key], abs=0.03)


def test_interleaved_full_runs(dataset, same_numbers, tmp_path):
    """Whole 200-sample runs of ours and the peers alternated, FULL_ROUNDS rounds, so load from other processes
    on the host hits all alike; the ratio of the medians is the figure to quote."""
    root, manifest = dataset
    peers = {"trimesh": peer_script, **({"open3d+pcu": peer_o3d_pcu} if PEER_O3D_MISSING is None else {})}
    times: dict[str, list[float]] = {"ours": [], **{name: [] for name in peers}}
    loads, overlaps = [os.getloadavg()[0]], set()
    for r in range(FULL_ROUNDS):
        t, res = ours(root, manifest, tmp_path / f"full{r}")
        times["ours"].append(t)
        overlaps.add(res.overlap)
        for name, fn in peers.items():
            times[name].append(fn(root, manifest, tmp_path / f"peer-full{r}.csv"))
        loads.append(os.getloadavg()[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\ninterleaved whole runs, {FULL_ROUNDS} rounds of {N_SAMPLES} samples (load average {min(loads):.2f}-"
          f"{max(loads):.2f}): ours median {med['ours']:.2f} s ({N_SAMPLES / med['ours']:.1f} samples/s; "
          f"{', '.join(sorted(overlaps))}; rounds {', '.join(f'{x:.2f}' for x in times['ours'])})")
    for name in peers:
        goal = 4 if name == "trimesh" else 2
        print(f"  peer {name} median {med[name]:.2f} s ({N_SAMPLES / med[name]:.1f} samples/s; rounds "
              f"{', '.join(f'{x:.2f}' for x in times[name])}): speed-up {med[name] / med['ours']:.2f}x (goal >= {goal}x)")
    if PEER_O3D_MISSING is not None:
        print(f"  peer open3d+pcu skipped: {PEER_O3D_MISSING}")


def test_interleaved_ratio(dataset, same_numbers, tmp_path):
    """Ours and the peers alternated chunk by chunk (CHUNKS chunks: 10 x 20 samples at full size), so load from
    other processes on the host hits all alike. Each chunk is a run of its own: its start-up (hashing the files,
    run.json, starting scoring processes, reading the stored rows back) counts in every chunk."""
    root, manifest = dataset
    full = pd.read_csv(manifest, dtype={"sample_id": str})
    peers = {"trimesh": peer_script, **({"open3d+pcu": peer_o3d_pcu} if PEER_O3D_MISSING is None else {})}
    t_ours, t_peer = 0.0, dict.fromkeys(peers, 0.0)
    per = N_SAMPLES // S.CHUNKS
    loads, overlaps = [os.getloadavg()[0]], set()
    for c in range(S.CHUNKS):
        chunk = root / f"m-{tmp_path.name}-{c}.csv"
        full.iloc[per * c : per * (c + 1)].to_csv(chunk, index=False)
        t, res = ours(root, chunk, tmp_path / f"run{c}")
        t_ours += t
        overlaps.add(res.overlap)
        for name, fn in peers.items():
            t_peer[name] += fn(root, chunk, tmp_path / f"peer{c}.csv")
        loads.append(os.getloadavg()[0])
    print(f"\ninterleaved chunks, {N_SAMPLES} samples in {S.CHUNKS} runs of {per} (load average {min(loads):.2f}-{max(loads):.2f}): "
          f"ours {t_ours:.2f} s ({N_SAMPLES / t_ours:.1f} samples/s; {', '.join(sorted(overlaps))})")
    for name, t in t_peer.items():
        goal = 4 if name == "trimesh" else 2
        print(f"  peer {name} {t:.2f} s ({N_SAMPLES / t:.1f} samples/s): speed-up {t / t_ours:.2f}x (goal >= {goal}x)")
    if PEER_O3D_MISSING is not None:
        print(f"  peer open3d+pcu skipped: {PEER_O3D_MISSING}")
    if not S.QUICK:  # tiny sizes time fixed overheads, not the work
        assert t_peer["trimesh"] / t_ours > 0.5  # sanity: far below the peer fails loudly


def test_second_run_of_a_comparison(dataset, same_numbers, tmp_path):
    """`compare` scores its sides against the same ground truths: the second run takes the first run's GT
    surface samples from the cache (evaluate.gt_cache). The same predictions under another source identity
    stand in for side B; its numbers are checked bitwise against a run without the cache."""
    root, manifest = dataset
    m = load_manifest(manifest)
    a = FolderSource(root / "pred")
    b = FolderSource(root / "pred", identity="folder:side-b")
    cache = GTSampleCache()
    inline = dict(batch_size=8, score_workers=0, prefetch=False)  # one process: the cache's own effect
    run_evaluation(a, m, PROTOCOL, tmp_path / "a", gt_cache=cache, **inline)
    t = time.perf_counter()
    cached = run_evaluation(b, m, PROTOCOL, tmp_path / "b", gt_cache=cache, **inline)
    t_cached = time.perf_counter() - t
    t = time.perf_counter()
    plain = run_evaluation(b, m, PROTOCOL, tmp_path / "b2", **inline)
    t_plain = time.perf_counter() - t
    metrics = list(plain.frame.attrs["metrics"])
    pd.testing.assert_frame_equal(cached.frame.set_index("sample_id")[metrics], plain.frame.set_index("sample_id")[metrics],
                                  check_exact=True)
    assert cache.hits == N_SAMPLES
    print(f"\nsecond run of a comparison, {N_SAMPLES} samples, inline: {t_cached:.2f} s with the first run's GT "
          f"samples ({N_SAMPLES / t_cached:.1f} samples/s), {t_plain:.2f} s without ({N_SAMPLES / t_plain:.1f} "
          f"samples/s): {t_plain / t_cached:.2f}x ({_load()})")


def _fresh_process_seconds(args: list[str], rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def test_import_time():
    """The suite's start-up, in fresh processes (median of 3): what every command pays before any work."""
    t_import = _fresh_process_seconds([sys.executable, "-c", "import sam3d_eval.evaluate"])
    t_scoring = _fresh_process_seconds([sys.executable, "-c", "import sam3d_eval.evaluate.runner"])
    cli = shutil.which("sam3d-eval") or str(pathlib.Path(sys.executable).with_name("sam3d-eval"))
    t_help = _fresh_process_seconds([cli, "--help"]) if pathlib.Path(cli).exists() else float("nan")
    print(f"\nimport time ({_load()}): `import sam3d_eval.evaluate` {t_import:.2f} s, "
          f"`import sam3d_eval.evaluate.runner` (torch and the scoring code) {t_scoring:.2f} s, "
          f"`sam3d-eval --help` {t_help:.2f} s")
