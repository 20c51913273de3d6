"""Data-engine rounds: a suite of models proposes, a verifier rates, the best accepted candidate joins the
training pool, the main model is fine-tuned on the pool, and the round's figures are stored.

    data (a manifest, or the built-in benchmark generated under OUT/benchmark)
    -> pretrain the main model and the suite members on the synthetic train rows (OUT/suite/<name>/)
    -> round 0: evaluate the pretrained main model on the test split (synthetic and real, the gap)
    -> for each round k: take the next `images_per_round` unlabelled real train images (a seeded
       permutation, disjoint across rounds, so rounds are comparable; a rejected image is not retried)
       -> every proposer predicts one candidate mesh per image (3-5 candidates: main + [[suite]])
       -> the evaluation core scores each candidate against the image's ground truth (only the simulated
          raters look at it; the model never trains on it) -> the verifier rates every candidate
       -> an image is accepted when one of its candidates is (mean of its raters' sums >= 32,
          `stats.rubric`); its best accepted candidate (highest mean sum) joins the pool as a pseudo-label
       -> fine-tune the main model from its last weights on synthetic rows + the pool (H6's `train.train`)
       -> evaluate it on the test split; write the round (OUT/rounds/<k>/summary.json last, atomically).

Resume: a round whose summary.json exists is read back, not redone; the fine-tuning inside an unfinished
round resumes from its last.safetensors. Every draw is keyed by the config's seed (pretraining and
fine-tuning seeds, the image order, the raters' biases and noise) and training is bitwise reproducible on
the CPU, so a run stopped after round j and resumed gives the rounds of an uninterrupted run.

Outputs (the report reads them; nothing is recomputed): OUT/engine.json (config, fingerprint),
OUT/engine_rounds.{csv,parquet,json} (one row per round: accept rate with Wilson interval, cost per
accepted sample, agreement, failure-mode shares, the main model's synthetic and real metrics and the gap),
OUT/rounds.csv (the gap rows per round: round, metric, figure, estimate, low, high, means; what
`sam3d-eval report` plots beside curriculum phases), OUT/failure_mix.csv, OUT/agreement.csv, OUT/ratings.csv
(every rating in the rubric file format: importable by `sam3d-eval preference --ratings`), and per round
candidates.parquet, ratings.csv, pool/*.npz, train/ and eval/.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..atomic import atomic_path, write_text_atomic
from ..data.manifest import Manifest
from ..evaluate.protocols import get_protocol
from ..evaluate.scoring import score_batch
from ..io.judgements import read_ratings
from ..io.results import GAP_METRICS
from ..jsonable import to_jsonable
from ..models.checkpoint import load_checkpoint
from ..models.reference import ReferenceConfig
from ..seeding import numpy_generator, stream_seed
from ..stats.intervals import wilson_interval
from ..stats.rubric import CRITERIA, FAILURE_MODES, accept_trend, failure_mix, item_decisions, rubric_agreement
from ..structures import Meshes, TexturesVertex
from ..train.loop import collate, train
from .config import EngineConfig, train_config
from .raters import ImportedVerifier, SimulatedVerifier, colour_error, mapping_from_dict, simulated_panel

__all__ = ["EngineResult", "PoolData", "run_engine", "read_engine_run"]

ENGINE_FORMAT = 1


# --------------------------------------------------------------------------------------------------------
# Training data: the synthetic rows with their GT plus the pool's pseudo-labelled real images.
# --------------------------------------------------------------------------------------------------------
class PoolData:
    """`train.loop.TrainData` over synthetic items and pool items (real images whose `gt_*` is the accepted
    candidate). Each epoch draws `synthetic_fraction` synthetic and the rest from the pool with the data
    layer's `MixingSampler` (all synthetic while the pool is empty), whatever the phase asks."""

    def __init__(self, synthetic: Sequence[dict], pool: Sequence[dict], synthetic_fraction: float, manifest_hash: str):
        self.items = list(synthetic) + list(pool)
        self.domains = ["synthetic"] * len(synthetic) + ["real"] * len(pool)
        self.synthetic_fraction = synthetic_fraction if pool else 1.0
        self.manifest_hash = manifest_hash

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]

    def epoch_indices(self, epoch: int, synthetic_fraction: float, size: int, seed: int) -> list[int]:
        from ..data.sampler import MixingSampler

        return MixingSampler(self.domains, self.synthetic_fraction, size, seed, epoch).epoch_indices()


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------
def _atomic_frame(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)


def _mesh_parts(meshes: Meshes, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    v = meshes.verts_list()[i].detach().float().cpu()
    f = meshes.faces_list()[i].detach().cpu()
    tex = meshes.textures
    c = tex.verts_features[i][:, :3].detach().float().cpu() if tex is not None else torch.full_like(v, 0.7)
    return v, f, c


def _single(v: torch.Tensor, f: torch.Tensor, c: torch.Tensor) -> Meshes:
    return Meshes([v], [f], TexturesVertex([c]))


def _prepare_data(cfg: EngineConfig, out: Path, log: Callable[[str], None]) -> Path:
    """The manifest path: given, or the built-in benchmark generated (or finished) under out/benchmark
    (40 synthetic and 60 real samples unless [data.generate] says otherwise)."""
    data = cfg.data
    if data.get("manifest"):
        return Path(data["manifest"])
    from ..data.generate import ensure_benchmark

    return ensure_benchmark({"synthetic": 40, "real": 60, **data.get("generate", {})}, out / "benchmark", log)


def _model_config(spec: dict) -> ReferenceConfig:
    preset = spec.get("preset", "tiny")
    overrides = {k: v for k, v in spec.get("model", {}).items()}
    return ReferenceConfig.preset(preset, **overrides)


@dataclass
class EngineResult:
    """What `run_engine` produced: the round table, the gap rows and the final main-model checkpoint."""

    out_dir: Path
    rounds: pd.DataFrame
    gap: pd.DataFrame
    checkpoint: Path
    resumed_rounds: list[int]


# --------------------------------------------------------------------------------------------------------
# The run: setup (data, verifier, suite), then per round propose -> verify -> grow the pool -> fine-tune
# --------------------------------------------------------------------------------------------------------
@dataclass
class _RoundData:
    """What every round reads: the synthetic training rows, the unlabelled real rows (by id too), their
    occlusion, the seeded order in which rounds take them, and the manifest's hash."""

    synthetic: list[dict]
    unlabelled: list[dict]
    by_id: dict[str, dict]
    occlusion: dict[str, float]
    order: np.ndarray
    manifest_hash: str


def _claim_out_dir(cfg: EngineConfig, out: Path) -> None:
    """Write OUT/engine.json, or check that the one there is this configuration's."""
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "engine.json"
    fp = cfg.fingerprint()
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old.get("fingerprint") != fp:
            raise ValueError(f"{out} holds a data-engine run of another configuration (fingerprint "
                             f"{old.get('fingerprint')} != {fp}); choose another --out")
    else:
        write_text_atomic(meta_path, json.dumps({"format": ENGINE_FORMAT, "fingerprint": fp, "config": cfg.to_dict()},
                                           indent=2, sort_keys=True))


def _round_data(cfg: EngineConfig, manifest: Path, frame: pd.DataFrame) -> _RoundData:
    """The training rows of the manifest's train split; refuses too few real rows for the rounds asked."""
    from ..train.data import ManifestTrainData

    image_size = int(cfg.data.get("image_size", 64))
    train_split = cfg.data.get("train_split", "train")
    items = ManifestTrainData(manifest, split=train_split, image_size=image_size)
    synthetic = [it for it in items.items if it["domain"] == "synthetic"]
    unlabelled = [it for it in items.items if it["domain"] == "real"]
    need = cfg.rounds * cfg.images_per_round
    if len(unlabelled) < need or not synthetic:
        raise ValueError(f"{manifest}: split {train_split!r} has {len(unlabelled)} real (unlabelled) and "
                         f"{len(synthetic)} synthetic rows; {cfg.rounds} rounds x {cfg.images_per_round} images need "
                         f"{need} real rows and at least one synthetic")
    occlusion = (dict(zip(frame["sample_id"].astype(str), frame["occlusion"].astype(float)))
                 if "occlusion" in frame.columns else {})  # optional in a manifest: nan below
    order = numpy_generator(cfg.seed, "engine_image_order").permutation(len(unlabelled))
    return _RoundData(synthetic, unlabelled, {it["sample_id"]: it for it in unlabelled}, occlusion, order,
                      items.manifest_hash)


def _make_verifier(cfg: EngineConfig):
    """Imported human ratings, or the simulated panel of [verifier]."""
    vcfg = cfg.verifier
    if vcfg.get("kind", "simulated") == "imported":
        return ImportedVerifier(read_ratings(vcfg["ratings"]))
    panel = simulated_panel(int(vcfg.get("raters", 3)), bias_sd=float(vcfg.get("bias_sd", 0.5)),
                            noise=float(vcfg.get("noise", 0.75)), seed=cfg.seed, biases=vcfg.get("biases"))
    return SimulatedVerifier(panel, mapping_from_dict(vcfg.get("mapping")), seed=cfg.seed)


def _pretrain_suite(cfg: EngineConfig, out: Path, data: _RoundData, device: str, log: Callable[[str], None]
                    ) -> tuple[Path, list[tuple[str, Any]]]:
    """Pretrain (or find pretrained under OUT/suite/) the main model and every suite member; returns the
    main model's checkpoint and the loaded members (name, model), in [[suite]] order."""

    def pretrained(name: str, spec: dict) -> Path:
        s = cfg.pretrain
        if "pretrain_epochs" in spec:
            s = {**s, "epochs": int(spec["pretrain_epochs"])}
        tc = train_config(s, out_dir=out / "suite" / name, seed=int(spec.get("seed", 0)), model=_model_config(spec),
                          init_from=None, device=device)
        final = Path(tc.out_dir) / "final.safetensors"
        if not final.exists():
            log(f"pretraining {name} ({spec.get('preset', 'tiny')}, seed {spec.get('seed', 0)}, {tc.epochs} epochs)")
            train(tc, PoolData(data.synthetic, [], 1.0, data.manifest_hash))
        return final

    main_path = pretrained("main", cfg.main)
    members: list[tuple[str, Path]] = []
    for spec in cfg.suite:
        ck = spec.get("checkpoint")
        if ck == "initial":
            members.append((spec["name"], main_path))
        elif ck:
            members.append((spec["name"], Path(ck)))
        else:
            members.append((spec["name"], pretrained(spec["name"], spec)))
    member_models = [(name, load_checkpoint(p, device)) for name, p in members]
    for name, m in member_models:
        m.name = f"suite/{name}"
    return main_path, member_models


def _evaluator(cfg: EngineConfig, test: Manifest, protocol, device: str) -> Callable[[Any, Path], list[dict]]:
    """`evaluate(model, run_dir)`: the main model on the [eval] split, as gap rows (none when disabled)."""

    def evaluate(model, run_dir: Path) -> list[dict]:
        if not cfg.eval.get("enabled", True):
            return []
        from ..evaluate.runner import run_evaluation
        from ..evaluate.sources import PredictorSource
        from ..evaluate.summary import domain_gap

        res = run_evaluation(PredictorSource(model), test, protocol, run_dir, batch_size=int(cfg.eval.get("batch_size", 16)),
                             device=device, resume=run_dir.exists(), torch_threads=None, command=["engine"])
        gap = domain_gap(res.frame, [m for m in GAP_METRICS if m in res.frame.columns],
                         n_resamples=int(cfg.eval.get("resamples", 1000)), seed=cfg.seed)
        return [to_jsonable({k: r[k] for k in ("metric", "figure", "direction", "mean_synthetic", "mean_real", "estimate",
                                          "low", "high", "n_synthetic", "n_real")}) for r in gap.to_dict("records")]

    return evaluate


def _resumed_pool(rd: Path, summary: dict, by_id: dict[str, dict]) -> list[dict]:
    """The pool items a finished round added, read back from rd/pool/*.npz."""
    items = []
    for sid in summary["pool_added"]:
        z = np.load(rd / "pool" / f"{sid}.npz", allow_pickle=False)
        items.append({**by_id[sid], "gt_verts": torch.from_numpy(z["verts"]), "gt_faces": torch.from_numpy(z["faces"]),
                      "gt_colors": torch.from_numpy(z["colors"])})
    return items


def _propose(images: list[dict], proposers: list[tuple[str, Any]], occlusion: dict[str, float], protocol,
             device: str) -> tuple[pd.DataFrame, dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """Every proposer's candidate mesh for every image, scored against the image's GT (the simulated raters'
    input; the model never trains on it): the candidate frame and the meshes by candidate id."""
    batch = collate(images)
    cand_ids, preds, gts, rows = [], [], [], []
    meshes: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for name, model in proposers:
        pm = model.predict(batch.images.to(device), batch.masks.to(device), batch.cameras.to(device))
        for i, it in enumerate(images):
            cid = f"{it['sample_id']}/{name}"
            v, f, c = _mesh_parts(pm, i)
            meshes[cid] = (v, f, c)
            cand_ids.append(cid)
            preds.append(_single(v, f, c))
            gts.append(_single(it["gt_verts"].float(), it["gt_faces"], it["gt_colors"].float()))
            rows.append({"item_id": cid, "sample_id": it["sample_id"], "proposer": name,
                         "occlusion": occlusion.get(it["sample_id"], math.nan),
                         "colour_error": colour_error(v, c, it["gt_verts"], it["gt_colors"])})
    scores = score_batch(cand_ids, preds, gts, protocol)
    cand = pd.DataFrame(rows)
    for col, values in scores.metrics.items():
        cand[col] = values.numpy()
    cand["status"] = scores.status
    return cand, meshes


def _verify(cand: pd.DataFrame, verifier, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The verifier's ratings of round `k`'s candidates, and each image's best accepted candidate (highest
    mean sum, then proposer name); adds `mean_total`, `accepted` and `selected` to `cand`."""
    ratings = verifier.rate(cand, k)
    if "occlusion" not in ratings.columns:
        ratings = ratings.merge(cand[["item_id", "occlusion"]], on="item_id", how="left")
    dec = item_decisions(ratings).set_index("item_id")
    cand["mean_total"] = cand["item_id"].map(dec["mean_total"])
    cand["accepted"] = cand["item_id"].map(dec["accepted"]).astype(bool)
    best = (cand[cand["accepted"]].sort_values(["sample_id", "mean_total", "proposer"], ascending=[True, False, True])
            .groupby("sample_id", sort=True).head(1))
    cand["selected"] = cand["item_id"].isin(set(best["item_id"]))
    return ratings, best


def _grow_pool(best: pd.DataFrame, meshes: dict[str, tuple], rd: Path, by_id: dict[str, dict], pool: list[dict]
               ) -> list[str]:
    """Each image's best accepted candidate joins `pool` as its pseudo-label (stored as rd/pool/<id>.npz);
    returns the ids added."""
    (rd / "pool").mkdir(parents=True, exist_ok=True)
    added = []
    for cid, sid in zip(best["item_id"], best["sample_id"]):
        v, f, c = meshes[cid]
        np.savez(rd / "pool" / f"{sid}.npz", verts=v.numpy(), faces=f.numpy(), colors=c.numpy())
        pool.append({**by_id[sid], "gt_verts": v, "gt_faces": f, "gt_colors": c})
        added.append(sid)
    return added


def _finetune(cfg: EngineConfig, k: int, rd: Path, model_config: ReferenceConfig, current: Path, data: _RoundData,
              pool: list[dict], device: str) -> tuple[Path, int]:
    """Fine-tune the main model from `current` on synthetic rows + the pool; returns rd/model.safetensors and
    the number of steps."""
    ft_seed = stream_seed(cfg.seed, "engine_finetune", k) % (2**31)
    tc = train_config(cfg.finetune, out_dir=rd / "train", seed=ft_seed, model=model_config, init_from=str(current),
                      device=device)
    res = train(tc, PoolData(data.synthetic, pool, cfg.finetune["synthetic_fraction"], data.manifest_hash))
    with atomic_path(rd / "model.safetensors") as tmp:
        shutil.copyfile(res.checkpoint, tmp)
    return rd / "model.safetensors", res.steps


def run_engine(cfg: EngineConfig, *, device: str = "cpu", log: Callable[[str], None] | None = None,
               stop_after: int | None = None) -> EngineResult:
    """Run (or resume) the data engine of `cfg` (module docstring) into `cfg.out_dir`. `stop_after`: stop
    once that many rounds are stored (the next call resumes). Raises ValueError when `out_dir` holds a run
    of another configuration, or the data has too few unlabelled real images for the rounds asked."""
    log = log or (lambda s: None)
    out = Path(cfg.out_dir)
    _claim_out_dir(cfg, out)
    manifest = _prepare_data(cfg, out, log)
    full = Manifest.read(manifest)
    frame = full.frame
    data = _round_data(cfg, manifest, frame)
    verifier = _make_verifier(cfg)
    main_path, members = _pretrain_suite(cfg, out, data, device, log)
    protocol = get_protocol(cfg.eval.get("protocol", "default")).with_overrides(num_samples=cfg.eval.get("num_samples"))
    evaluate = _evaluator(cfg, full.split(cfg.eval.get("split", "test")), protocol, device)

    # ---- round 0: the pretrained main model ----
    r0 = out / "rounds" / "00" / "summary.json"
    if not r0.exists():
        m0 = load_checkpoint(main_path, device)
        m0.name = "engine/main/round0"
        write_text_atomic(r0, json.dumps({"round": 0, "gap": evaluate(m0, r0.parent / "eval"), "checkpoint": str(main_path)},
                                    indent=2, sort_keys=True))

    current = main_path
    pool: list[dict] = []
    resumed: list[int] = []
    for k in range(1, cfg.rounds + 1):
        if stop_after is not None and k > stop_after:
            break
        rd = out / "rounds" / f"{k:02d}"
        done = rd / "summary.json"
        if done.exists():
            pool.extend(_resumed_pool(rd, json.loads(done.read_text()), data.by_id))
            current = rd / "model.safetensors"
            resumed.append(k)
            continue
        t0 = time.perf_counter()
        images = [data.unlabelled[i] for i in data.order[(k - 1) * cfg.images_per_round: k * cfg.images_per_round]]
        main_model = load_checkpoint(current, device)
        proposers = [("main", main_model)] + members
        log(f"round {k}: {len(images)} images x {len(proposers)} candidates")
        cand, meshes = _propose(images, proposers, data.occlusion, protocol, device)
        ratings, best = _verify(cand, verifier, k)
        added = _grow_pool(best, meshes, rd, data.by_id, pool)
        current, steps = _finetune(cfg, k, rd, main_model.config, current, data, pool, device)
        tuned = load_checkpoint(current, device)
        tuned.name = f"engine/main/round{k}"
        gap = evaluate(tuned, rd / "eval")

        # -- the round's figures --
        _atomic_frame(rd / "candidates.parquet", cand)
        _atomic_frame(rd / "ratings.csv", ratings)
        summary = _round_summary(k, cand, ratings, cfg, gap, added, len(pool), steps, verifier)
        summary["seconds"] = time.perf_counter() - t0
        write_text_atomic(done, json.dumps(to_jsonable(summary), indent=2, sort_keys=True))
        log(f"round {k}: accept {summary['accept_rate']:.0%} [{summary['accept_low']:.0%}, {summary['accept_high']:.0%}], "
            f"${summary['cost_per_accepted'] if summary['cost_per_accepted'] is not None else float('nan'):.2f} per accepted "
            f"sample, pool {len(pool)}, {summary['seconds']:.1f} s")
    rounds, gap = _write_tables(out)
    return EngineResult(out, rounds, gap, checkpoint=current, resumed_rounds=resumed)


def _round_summary(k: int, cand: pd.DataFrame, ratings: pd.DataFrame, cfg: EngineConfig, gap: list[dict],
                   added: list[str], pool_size: int, steps: int, verifier) -> dict[str, Any]:
    images = int(cand["sample_id"].nunique())
    accepted = len(added)
    lo, hi = wilson_interval(accepted, images)
    n_c, k_c = len(cand), int(cand["accepted"].sum())
    clo, chi = wilson_interval(k_c, n_c)
    raters = int(ratings["rater_id"].nunique())
    cost = cfg.cost.round_cost(images, raters, accepted)
    agree = rubric_agreement(ratings).set_index("target")
    mix = failure_mix(ratings).set_index("mode")
    main = cand[cand["proposer"] == "main"]
    out: dict[str, Any] = {
        "round": k, "images": images, "candidates": n_c, "raters": raters, "verifier": verifier.name,
        "accepted": accepted, "accept_rate": accepted / images, "accept_low": lo, "accept_high": hi,
        "candidate_accept_rate": k_c / n_c, "candidate_accept_low": clo, "candidate_accept_high": chi,
        "main_accept_rate": float(main["accepted"].mean()) if len(main) else math.nan,
        "main_fscore@0.05": float(main["fscore@0.05"].mean()) if "fscore@0.05" in main else math.nan,
        "selected_from": {str(p): int(n) for p, n in cand[cand["selected"]]["proposer"].value_counts().sort_index().items()},
        "pool_added": added, "pool_size": pool_size, "train_steps": steps,
        "agreement_accept": agree.loc["accept", "value"], "agreement_accept_method": agree.loc["accept", "method"],
        **{f"alpha_{t}": agree.loc[t, "krippendorff_alpha"] for t in (*CRITERIA, "accept")},
        **{f"failure_{m}": mix.loc[m, "share"] for m in FAILURE_MODES},
        "compensatory": int(((ratings[list(CRITERIA)].sum(axis=1) >= 32) & (ratings[list(CRITERIA)] < 6).any(axis=1)).sum()),
        "near_threshold": int(((ratings[list(CRITERIA)].sum(axis=1) - 32).abs() <= 2).sum()),
        **cost, "gap": gap,
    }
    for r in gap:
        out[f"{r['metric']}_synthetic"] = r["mean_synthetic"]
        out[f"{r['metric']}_real"] = r["mean_real"]
        out[f"{r['metric']}_{r['figure']}"] = r["estimate"]
        out[f"{r['metric']}_{r['figure']}_low"] = r["low"]
        out[f"{r['metric']}_{r['figure']}_high"] = r["high"]
    return out


def _tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rounds, gap) frames from the stored round summaries (round 0 has gap rows only)."""
    rows, gap = [], []
    for p in sorted((out / "rounds").glob("*/summary.json")):
        s = json.loads(p.read_text())
        for g in s.get("gap", []):
            gap.append({"round": s["round"], **g})
        if s["round"] > 0:
            rows.append({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in s.items() if k != "gap"})
    return pd.DataFrame(rows), pd.DataFrame(gap)


def _write_tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the run's tables from the stored rounds; returns `_tables(out)` (read once)."""
    rounds, gap = _tables(out)
    if len(rounds):
        _atomic_frame(out / "engine_rounds.csv", rounds)
        _atomic_frame(out / "engine_rounds.parquet", rounds)
        write_text_atomic(out / "engine_rounds.json", json.dumps(to_jsonable(rounds.to_dict("records")), indent=2))
    if len(gap):
        _atomic_frame(out / "rounds.csv", gap)
    ratings = [pd.read_csv(p, dtype={"item_id": str, "rater_id": str}) for p in sorted((out / "rounds").glob("*/ratings.csv"))]
    if ratings:
        allr = pd.concat(ratings, ignore_index=True)
        _atomic_frame(out / "ratings.csv", allr)
        _atomic_frame(out / "failure_mix.csv", failure_mix(allr))
        agree = []
        for rnd, g in allr.groupby("round"):
            a = rubric_agreement(g)
            a.insert(0, "round", rnd)
            agree.append(a)
        _atomic_frame(out / "agreement.csv", pd.concat(agree, ignore_index=True))
    return rounds, gap


def read_engine_run(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The stored figures of a data-engine run as JSON-ready data (what the report renders): config,
    rounds (records), gap rows per round (round 0 = before the engine), failure mix and agreement per round,
    and `trend`: `stats.rubric.accept_trend` of the image and candidate accept rates over the rounds."""
    out = Path(out_dir)
    meta = out / "engine.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{out}: no engine.json (not a data-engine run folder)")
    rounds, gap = _tables(out)
    doc = {"engine": json.loads(meta.read_text()), "rounds": rounds.to_dict("records"), "gap": gap.to_dict("records")}
    doc["trend"] = None
    if len(rounds) >= 2:
        doc["trend"] = {"accept_rate": accept_trend(rounds["round"], rounds["accepted"], rounds["images"]),
                        "candidate_accept_rate": accept_trend(rounds["round"], (rounds["candidate_accept_rate"] * rounds["candidates"]).round().astype(int), rounds["candidates"])}
    for name in ("failure_mix", "agreement"):
        p = out / f"{name}.csv"
        doc[name] = pd.read_csv(p).to_dict("records") if p.is_file() else []
    return to_jsonable(doc)
