"""Every benchmark's sizes and the peers it runs beside, in one place, with a tiny QUICK variant of each.

Full sizes are the ones `benchmarks/RESULTS.md` quotes. Quick sizes (``pytest benchmarks --quick
--benchmark-disable``, or ``SAM3D_BENCH_QUICK=1``; what ``make test`` runs) exist only so that every
benchmark, its data generation and its result check run once in seconds and cannot rot: never quote a
number measured at them. ``benchmarks/conftest.py`` turns ``--quick`` into the environment variable before
the ``bench_*.py`` files are imported, so each reads its sizes once, at import, with ``sizes_for(name)``.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

QUICK_ENV = "SAM3D_BENCH_QUICK"

# name -> {"full": {...}, "quick": {...}}; both variants have the same keys.
SIZES: dict[str, dict[str, dict]] = {
    "alignment": {  # ICP: B pairs of N points, ITERS steps; rotation search: 1 pair of ROT_N points
        "full": dict(B=8, N=10_000, ITERS=30, ROT_N=5_000, ROUNDS=3),
        "quick": dict(B=2, N=300, ITERS=5, ROT_N=200, ROUNDS=1),
    },
    "appearance": {  # icosphere level SUBDIV (5: 20480 faces), 8 views of SIDE px; CUDA batch of GPU_BATCH views
        "full": dict(SUBDIV=5, SIDE=256, GPU_BATCH=64),
        "quick": dict(SUBDIV=2, SIDE=64, GPU_BATCH=16),
    },
    "chamfer": {  # one pair of n points each; FOUR_PAIRS_N for the batch of 4; KNN_CASES (batch, n)
        "full": dict(SIZES=[2_000, 10_000, 100_000, 1_000_000], CDIST_MAX=10_000, FOUR_PAIRS_N=10_000,
                     KNN_CASES=[(1, 100), (1, 1_000), (1, 10_000), (128, 30)], GPU_SIZES=[100_000, 1_000_000],
                     GPU_CDIST_MAX=100_000),
        "quick": dict(SIZES=[300], CDIST_MAX=10_000, FOUR_PAIRS_N=200, KNN_CASES=[(1, 100), (8, 30)],
                      GPU_SIZES=[2_000], GPU_CDIST_MAX=100_000),
    },
    "data": {  # samples generated per image size (half synthetic, half real), worker counts
        "full": dict(SAMPLES={128: 24, 256: 12}, WORKERS=[1, 2]),
        "quick": dict(SAMPLES={64: 2}, WORKERS=[1]),
    },
    "engine": {  # the demo engine recipe; no tiny variant: quick mode runs it only from a pre-built run
        "full": dict(CONFIG="training/engine.toml"),
        "quick": dict(CONFIG="training/engine.toml"),
    },
    "eval_pair": {  # N surface samples per mesh, icosphere level SUBDIV, INTERLEAVED rounds
        "full": dict(N=100_000, SUBDIV=5, ROUNDS=10, INTERLEAVED=12),
        "quick": dict(N=20_000, SUBDIV=2, ROUNDS=1, INTERLEAVED=2),
    },
    "evaluate": {  # N_SAMPLES mesh pairs, POINTS surface samples each, shapes of ~10-14k vertices (SHAPE_DETAIL 1)
        "full": dict(N_SAMPLES=200, POINTS=10_000, SHAPE_DETAIL=1.0, CHUNKS=10),
        "quick": dict(N_SAMPLES=6, POINTS=2_000, SHAPE_DETAIL=0.25, CHUNKS=2),
    },
    "load": {  # N_SAMPLES tiny mesh pairs through `sam3d-eval evaluate` in a child process, and N_SAMPLES / 10
        "full": dict(N_SAMPLES=20_000),
        "quick": dict(N_SAMPLES=40),
    },
    "lpips": {  # PAIRS image pairs of SIDE px
        "full": dict(PAIRS=16, SIDE=256, ROUNDS={"alex": (6, 1), "vgg": (1, 0)}, INTERLEAVED=6),
        "quick": dict(PAIRS=2, SIDE=64, ROUNDS={"alex": (1, 0), "vgg": (1, 0)}, INTERLEAVED=1),
    },
    "point_mesh": {  # eval case: N points near an icosphere of level SUBDIV; train case: TRAIN_B meshes;
        # point-to-surface against peers: NEAR_N points near a CAD gear (GEAR_TEETH teeth, GEAR_OUTLINE outline
        # vertices: 4 * GEAR_OUTLINE - 4 faces, 43,368 at full size) and near a scan-like geodesic sphere of
        # frequency SCAN_FREQ (20 * SCAN_FREQ^2 faces, 64,980), SPREAD_N points over 3x the gear's box; P2S_ROUNDS
        "full": dict(SUBDIV=5, N=100_000, SUBSAMPLE=1000, TRAIN_B=8, TRAIN_SUBDIV=4, TRAIN_N=5000,
                     GEAR_TEETH=139, GEAR_OUTLINE=10_843, SCAN_FREQ=57, NEAR_N=100_000, SPREAD_N=10_000, P2S_ROUNDS=5),
        "quick": dict(SUBDIV=2, N=2_000, SUBSAMPLE=100, TRAIN_B=2, TRAIN_SUBDIV=1, TRAIN_N=200,
                      GEAR_TEETH=12, GEAR_OUTLINE=240, SCAN_FREQ=6, NEAR_N=2_000, SPREAD_N=500, P2S_ROUNDS=1),
    },
    "preference": {  # the preference analysis of N_VOTES votes; Bradley-Terry with RESAMPLES resamples
        "full": dict(N_VOTES=150_000, N_MODELS=20, N_ITEMS=30_000, N_RATERS=50, TIE_P=0.1, RESAMPLES=1_000),
        "quick": dict(N_VOTES=2_000, N_MODELS=5, N_ITEMS=400, N_RATERS=5, TIE_P=0.1, RESAMPLES=50),
    },
    "rasterize": {  # 8 views of SIDE px of an icosphere of level SUBDIV; dense reference at DENSE_SIDE
        "full": dict(SUBDIV=5, SIDE=256, DENSE_SUBDIV=3, DENSE_SIDE=64, ROUNDS=5),
        "quick": dict(SUBDIV=2, SIDE=64, DENSE_SUBDIV=1, DENSE_SIDE=24, ROUNDS=1),
    },
    "sampling": {  # NUM_SAMPLES from an icosphere of level SUBDIV; batch of BATCH meshes x BATCH_SAMPLES
        "full": dict(SUBDIV=5, NUM_SAMPLES=100_000, BATCH=8, BATCH_SAMPLES=10_000, ROUNDS=30),
        "quick": dict(SUBDIV=2, NUM_SAMPLES=1_000, BATCH=2, BATCH_SAMPLES=200, ROUNDS=1),
    },
    "stats": {  # paired bootstrap (N_PAIRS and N_SMALL pairs) x N_RESAMPLES; Bradley-Terry votes
        # two-level: TL_RUNS runs per side on TL_PAIRS twin pairs (2 samples each) x TL_RESAMPLES
        "full": dict(N_PAIRS=20_000, N_RESAMPLES=10_000, N_SMALL=200, N_VOTES=100_000, N_MODELS=20,
                     N_ITEMS=5_000, BT_RESAMPLES=1_000, TL_RUNS=3, TL_PAIRS=150, TL_RESAMPLES=2_000),
        "quick": dict(N_PAIRS=500, N_RESAMPLES=2_000, N_SMALL=50, N_VOTES=2_000, N_MODELS=5,
                      N_ITEMS=200, BT_RESAMPLES=100, TL_RUNS=2, TL_PAIRS=20, TL_RESAMPLES=200),
    },
    "train": {  # the demo recipe: global batch BATCH of 64 px inputs, NUM_POINTS, RENDER_SIZE px texture views
        "full": dict(BATCH=16, NUM_POINTS=1000, RENDER_SIZE=32, ROUNDS=5),
        "quick": dict(BATCH=2, NUM_POINTS=200, RENDER_SIZE=16, ROUNDS=1),
    },
    "volume_iou": {  # grid resolution R for a pair of icosphere level SUBDIV; the direct-sum peer at PEER_R
        "full": dict(R=64, SUBDIV=4, PEER_R=16),
        "quick": dict(R=16, SUBDIV=2, PEER_R=8),
    },
}

# name -> the implementations timed side by side (ours first, then the peers), as each file names them.
PEERS: dict[str, list[str]] = {
    "alignment": ["ours", "ours_no_policy", "numpy_pykdtree"],
    "appearance": ["appearance_metrics", "scorer", "part_render", "part_lpips", "part_psnr_ssim"],
    "chamfer": ["ours", "ours_no_policy", "ckdtree", "pykdtree", "cdist"],
    "data": ["make_benchmark"],
    "engine": ["run_engine"],
    "eval_pair": ["ours", "trimesh_ckdtree"],
    "evaluate": ["ours", "trimesh_ckdtree"],
    "load": ["evaluate"],
    "lpips": ["package_math", "ours", "ours_nchw"],
    "point_mesh": ["auto", "brute", "numpy_float64", "ours", "ours_float64", "ours_kdtree", "libigl",
                   "point_cloud_utils", "open3d"],
    "preference": ["ours", "python_loop"],
    "rasterize": ["ours", "dense_torch"],
    "sampling": ["ours", "trimesh", "pytorch3d_multinomial"],
    "stats": ["ours", "python_loop", "scipy"],
    "train": ["ours"],
    "volume_iou": ["winding", "parity", "trimesh_contains", "direct_winding"],
}


def quick() -> bool:
    """True when the tiny sizes are selected (``--quick`` or ``SAM3D_BENCH_QUICK=1``)."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def sizes_for(name: str) -> SimpleNamespace:
    """The sizes of benchmark `name` (full or quick), plus ``QUICK`` (bool) and ``PEERS`` (list of str)."""
    if name not in SIZES:
        raise KeyError(f"no sizes declared for benchmark {name!r} in benchmarks/sizes.py")
    q = quick()
    return SimpleNamespace(**SIZES[name]["quick" if q else "full"], QUICK=q, PEERS=list(PEERS[name]))
