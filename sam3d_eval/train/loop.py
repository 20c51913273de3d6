"""The training loop for both stages, read top to bottom (after nanoGPT's train.py).

    config -> data -> model, optimiser, losses -> (resume) -> for each epoch: set the curriculum's mix,
    for each global batch: lr schedule, forward, loss terms, backward, clip, step (then the discriminator)
    -> at every phase boundary: checkpoint + evaluation hook -> final checkpoint.

Determinism: the model is initialised from the seed stream (seed, "model_init") without touching the global
RNG, the epoch's sample order comes from the data's seeded sampler, and every random draw of the losses is
keyed by (seed, step, sample id). With the state saved in `last.safetensors` (model, AdamW moments and
step counts, discriminator, counters) a run stopped after N steps and resumed for N more is bitwise the
run of 2N steps on the CPU (tests/test_train_loop.py).

Distributed: under torchrun every rank runs this same file on an equal slice of each global batch
(`ddp.shard`), the model is wrapped in DistributedDataParallel and the discriminator's gradients are
averaged by hand; only rank 0 writes files and logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel

from ..models.checkpoint import read_checkpoint, save_checkpoint
from ..models.reference import ReferenceConfig, ReferenceModel, camera_frames
from ..render.cameras import PerspectiveCameras
from ..runtime import runtime_policy
from ..seeding import stream_seed
from ..structures import Meshes, TexturesVertex
from .curriculum import STAGE1_SCHEDULE, STAGE2_SCHEDULE, Phase, curriculum_phases, lr_at, phase_of
from .ddp import DistContext, all_reduce_sum, average_gradients, init_distributed, shard
from .losses import Discriminator, LossConfig, LossMix, discriminator_loss, weighted_terms

__all__ = ["Batch", "TrainConfig", "TrainData", "TrainResult", "collate", "train"]


# --------------------------------------------------------------------------------------------------------
# Configuration: every number of a run, written into every checkpoint.
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """One training stage. `batch_size` is the GLOBAL batch (split over ranks); `epoch_size` samples are
    drawn per epoch by the data's mixing sampler; lr warms up linearly for `warmup_steps` then decays by a
    cosine to `min_lr_ratio * lr`; `max_steps` stops early (the run resumes from `last.safetensors`);
    `init_from` starts stage 2 from a stage-1 checkpoint's weights. `grad_accumulation` splits each rank's
    share of the global batch into that many equal micro-batches whose gradients (of the micro-batch mean
    loss, divided by their count) add up before the step: the same update in less memory, and, with W ranks
    and accumulation k, the same arithmetic as W * k ranks (one process with k = 2 sums the two half-batch
    gradients exactly as two ranks all-reduce them)."""

    stage: int = 1
    epochs: int = 10
    epoch_size: int = 64
    batch_size: int = 8
    lr: float = 1e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    disc_lr: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    amp: bool = True  # used on CUDA only
    model: ReferenceConfig = field(default_factory=ReferenceConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    out_dir: str = "runs/train"
    init_from: str | None = None
    max_steps: int | None = None
    log_every: int = 10
    curriculum: str | None = None  # "stage1" | "stage2"; default by stage
    grad_accumulation: int = 1

    def schedule(self) -> tuple[tuple[str, float, float], ...]:
        name = self.curriculum or f"stage{self.stage}"
        if name not in ("stage1", "stage2"):
            raise ValueError(f"curriculum must be 'stage1' or 'stage2', got {name!r}")
        return STAGE1_SCHEDULE if name == "stage1" else STAGE2_SCHEDULE

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        d["loss"] = json.loads(json.dumps(dataclasses.asdict(self.loss)))
        d["betas"] = list(self.betas)
        return d


class TrainData(Protocol):
    """What the loop needs from the data layer: items by index, and the seeded mixing sampler's draw of
    an epoch (`epoch_indices(epoch, synthetic_fraction, size, seed) -> list[int]`), plus `domains` (one per
    item) and `manifest_hash` (recorded in checkpoints)."""

    domains: Sequence[str]
    manifest_hash: str

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    def epoch_indices(self, epoch: int, synthetic_fraction: float, size: int, seed: int) -> list[int]: ...


class Batch:
    """A collated batch: images `(B, 3, H, W)` float in [0, 1], masks `(B, 1, H, W)` bool, cameras (B
    `PerspectiveCameras`), gt `Meshes` with vertex colours, sample ids and domains."""

    def __init__(self, images, masks, cameras, gt, sample_ids, domains):
        self.images, self.masks, self.cameras, self.gt = images, masks, cameras, gt
        self.sample_ids, self.domains = list(sample_ids), list(domains)

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.images.to(device), self.masks.to(device), self.cameras.to(device), self.gt.to(device),
                     self.sample_ids, self.domains)


def collate(items: Sequence[dict[str, Any]]) -> Batch:
    """Items with "image" `(3, H, W)`, "mask" `(1, H, W)`, "camera" (a one-camera `PerspectiveCameras`),
    "gt_verts" `(V, 3)`, "gt_faces" `(F, 3)`, "gt_colors" `(V, 3)`, "sample_id", "domain" -> `Batch`."""
    cams = [it["camera"] for it in items]
    cameras = PerspectiveCameras(
        torch.cat([c.R for c in cams]), torch.cat([c.T for c in cams]), torch.cat([c.focal_length for c in cams]),
        cams[0].image_size, torch.cat([c.principal_point for c in cams]),
    )
    gt = Meshes([it["gt_verts"] for it in items], [it["gt_faces"] for it in items],
                TexturesVertex([it["gt_colors"] for it in items]))
    return Batch(torch.stack([it["image"] for it in items]), torch.stack([it["mask"] for it in items]).bool(),
                 cameras, gt, [it["sample_id"] for it in items], [it["domain"] for it in items])


@dataclass
class TrainResult:
    """What a run produced: the final checkpoint, one per phase boundary, the log file and the last terms."""

    checkpoint: Path
    phase_checkpoints: list[Path]
    log_path: Path
    steps: int
    last_terms: dict[str, float]
    stopped_early: bool


PhaseHook = Callable[[Phase, Path, ReferenceModel], None]


# --------------------------------------------------------------------------------------------------------
# Optimiser state <-> flat tensors (safetensors holds tensors; the rest goes in the JSON config).
# --------------------------------------------------------------------------------------------------------
def _flatten_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], list]:
    sd = opt.state_dict()
    tensors = {f"{prefix}{i}/{k}": v for i, st in sd["state"].items() for k, v in st.items() if torch.is_tensor(v)}
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, v in tensors.items():
        i, k = name.split("/", 1)
        state.setdefault(int(i), {})[k] = v
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


# --------------------------------------------------------------------------------------------------------
# The loop.
# --------------------------------------------------------------------------------------------------------
def train(
    cfg: TrainConfig,
    data: TrainData,
    *,
    resume: bool = True,
    on_phase_end: PhaseHook | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Run one stage (module docstring). Rank 0 writes `out_dir/`: `last.safetensors` (resumable state),
    `phase<k>-<name>.safetensors` at every phase boundary, `final.safetensors`, and `log.jsonl` (one JSON
    object per logged step, epoch and phase). `log` receives human-readable lines, `progress(step,
    total_steps, terms)` every step; `on_phase_end(phase, checkpoint, model)` runs on rank 0 after each
    phase's checkpoint (the evaluation hook)."""
    ctx = init_distributed(cfg.device)
    try:
        with runtime_policy(ctx.device):
            return _train(cfg, data, ctx, resume, on_phase_end, log or (lambda s: None), progress)
    finally:
        ctx.close()


def _train(cfg, data, ctx: DistContext, resume, on_phase_end, log, progress) -> TrainResult:
    device = ctx.device
    out = Path(cfg.out_dir)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} does not split over {ctx.world_size} ranks")
    accum = cfg.grad_accumulation
    if isinstance(accum, bool) or not isinstance(accum, int) or accum < 1 or (cfg.batch_size // ctx.world_size) % accum:
        raise ValueError(f"grad_accumulation must be a positive integer dividing each rank's share of the batch "
                         f"({cfg.batch_size // ctx.world_size}), got {accum!r}")
    steps_per_epoch = cfg.epoch_size // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"epoch_size {cfg.epoch_size} is smaller than one batch of {cfg.batch_size}")
    phases = curriculum_phases(cfg.epochs, cfg.schedule())
    total_steps = cfg.epochs * steps_per_epoch

    # ---- model, losses, optimisers: every initial weight from the seed, the global RNG left alone ----
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(cfg.seed, "model_init"))
        model = ReferenceModel(cfg.model)
        disc = Discriminator() if cfg.loss.weights.gan else None
    substitutes: dict[str, str] = {}
    if cfg.init_from:
        init = read_checkpoint(cfg.init_from)
        model.load_state_dict(init.prefixed("model/"))
        log(f"initialised from {cfg.init_from} (stage {init.config.get('stage')}, step {init.config.get('step')})")
    model.to(device)
    loss_mix = LossMix(cfg.loss).to(device)
    substitutes.update(loss_mix.substitutes)
    for term, desc in substitutes.items():
        if not desc.startswith("lpips"):
            log(f"note: {term} uses the substitute perceptual network {desc}, not a pretrained backbone")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    d_opt = None
    if disc is not None:
        disc.to(device)
        d_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.99), weight_decay=0.0)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    # ---- resume: weights, AdamW moments and counters from last.safetensors ----
    step = 0
    last_path = out / "last.safetensors"
    if resume and last_path.exists():
        ck = read_checkpoint(last_path)
        if ck.config.get("train_config", {}).get("stage") != cfg.stage:
            raise ValueError(f"{last_path} belongs to stage {ck.config.get('stage')}, not {cfg.stage}; use another out_dir")
        model.load_state_dict(ck.prefixed("model/"))
        _restore_optimizer(optimizer, ck.prefixed("optim/"), ck.config["optimizer_groups"])
        if disc is not None:
            disc.load_state_dict(ck.prefixed("disc/"))
            _restore_optimizer(d_opt, ck.prefixed("disc_optim/"), ck.config["disc_optimizer_groups"])
        step = int(ck.config["step"])
        log(f"resumed from {last_path} at step {step}")

    train_model: torch.nn.Module = model
    if ctx.distributed:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def meta(phase: Phase, epoch: int) -> dict[str, Any]:
        return {
            "stage": cfg.stage, "phase": phase.name, "phase_index": phase.index, "epoch": epoch, "step": step,
            "data_manifest_hash": data.manifest_hash, "loss_weights": cfg.loss.weights.to_dict(),
            "substitutes": substitutes, "train_config": cfg.to_dict(), "world_size": ctx.world_size,
        }

    def save(path: Path, phase: Phase, epoch: int, full: bool) -> Path:
        extra: dict[str, torch.Tensor] = {}
        m = meta(phase, epoch)
        if full:  # everything a bitwise resume needs
            t, g = _flatten_optimizer(optimizer, "optim/")
            extra.update(t)
            m["optimizer_groups"] = g
            if disc is not None:
                extra.update({f"disc/{k}": v for k, v in disc.state_dict().items()})
                t, g = _flatten_optimizer(d_opt, "disc_optim/")
                extra.update(t)
                m["disc_optimizer_groups"] = g
        return save_checkpoint(path, model, m, extra)

    log_file = (out / "log.jsonl").open("a") if ctx.is_main else None

    def record(obj: dict[str, Any]) -> None:
        if log_file is not None:
            log_file.write(json.dumps(obj, sort_keys=True) + "\n")
            log_file.flush()

    record({"event": "start", "step": step, "total_steps": total_steps, "world_size": ctx.world_size,
            "substitutes": substitutes, "config": cfg.to_dict(), "phases": [dataclasses.asdict(p) for p in phases]})
    phase_ckpts: list[Path] = []
    terms_f: dict[str, float] = {}
    stopped = False
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
    t_start = time.perf_counter()

    # ---- epochs ----
    for epoch in range(step // steps_per_epoch, cfg.epochs):
        phase = phase_of(phases, epoch)
        order = data.epoch_indices(epoch, phase.synthetic_fraction, steps_per_epoch * cfg.batch_size, cfg.seed)
        drawn_real = sum(data.domains[i] == "real" for i in order)
        record({"event": "epoch", "epoch": epoch, "phase": phase.name, "target_synthetic": phase.synthetic_fraction,
                "drawn_synthetic": (len(order) - drawn_real) / len(order), "drawn_real": drawn_real / len(order)})
        if epoch == phase.start and step == epoch * steps_per_epoch:
            log(f"stage {cfg.stage} phase {phase.index + 1}/{len(phases)} {phase.name}: epochs {phase.start + 1}-"
                f"{phase.end}, target {phase.synthetic_fraction:.0%} synthetic, drawn {1 - drawn_real / len(order):.0%}")

        for b in range(step - epoch * steps_per_epoch, steps_per_epoch):
            if cfg.max_steps is not None and step >= cfg.max_steps:
                stopped = True
                break
            # -- data: this rank's share of the global batch, in `accum` micro-batches --
            global_idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            mine = shard(global_idx, ctx)
            micro = len(mine) // accum

            # -- learning rate for this step --
            lr = lr_at(step, total_steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
            for g in optimizer.param_groups:
                g["lr"] = lr

            # -- forward, loss terms and backward per micro-batch; gradients add up (DDP syncs the last) --
            optimizer.zero_grad(set_to_none=True)
            logged: list[dict[str, float]] = []
            gan_pairs = []
            for m in range(accum):
                batch = collate([data[i] for i in mine[m * micro:(m + 1) * micro]]).to(device)
                keys = [f"{step}/{sid}" for sid in batch.sample_ids]
                sync = train_model.no_sync() if ctx.distributed and m < accum - 1 else contextlib.nullcontext()
                with sync:
                    with autocast():
                        verts, colours = train_model(batch.images, batch.masks,
                                                     *camera_frames(batch.cameras, len(batch.sample_ids), device))
                    pred = model.to_meshes(verts.float(), colours.float())
                    real_rows = torch.tensor([d == "real" for d in batch.domains], device=device)
                    terms = loss_mix(pred, batch.gt, keys, images=batch.images, masks=batch.masks,
                                     cameras=batch.cameras, discriminator=disc, real_rows=real_rows,
                                     gt_ids=batch.sample_ids)
                    total = terms["total"] if accum == 1 else terms["total"] / accum
                    scaler.scale(total).backward()
                logged.append(weighted_terms(terms))
                if disc is not None:
                    gan_pairs.append((terms["gan_real"], terms["gan_fake"]))

            # -- clip, step --
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()

            # -- discriminator (stage 2): real masked photos vs renders of the predictions --
            if disc is not None:
                d_opt.zero_grad(set_to_none=True)
                d_total = 0.0
                for real_img, fake_img in gan_pairs:
                    d_loss = discriminator_loss(disc, real_img, fake_img)
                    (d_loss if accum == 1 else d_loss / accum).backward()
                    d_total += float(d_loss.detach()) / accum
                average_gradients(disc.parameters(), ctx)
                d_opt.step()
                for t in logged:
                    t["gan_d"] = d_total

            step += 1
            terms_f = {k: sum(t[k] for t in logged) / accum for k in logged[0]} if accum > 1 else logged[0]
            if ctx.distributed:  # log the global-batch mean of every term
                vals = all_reduce_sum(torch.tensor(list(terms_f.values()), dtype=torch.float64), ctx) / ctx.world_size
                terms_f = dict(zip(terms_f, vals.tolist()))
            terms_f.update(lr=lr, grad_norm=float(grad_norm))
            if progress is not None:
                progress(step, total_steps, terms_f)
            if step % cfg.log_every == 0 or step == total_steps:
                record({"event": "step", "step": step, "epoch": epoch, "phase": phase.name, **terms_f,
                        "elapsed_s": time.perf_counter() - t_start})
        if stopped:
            break

        # ---- phase boundary: checkpoint + evaluation hook ----
        if epoch + 1 == phase.end:
            if ctx.is_main:
                path = save(out / f"phase{phase.index + 1}-{phase.name}.safetensors", phase, epoch + 1, full=False)
                phase_ckpts.append(path)
                save(last_path, phase, epoch + 1, full=True)
                record({"event": "phase_end", "phase": phase.name, "epoch": epoch + 1, "step": step,
                        "checkpoint": str(path), **{f"last_{k}": v for k, v in terms_f.items()}})
                log(f"stage {cfg.stage} phase {phase.name} done at step {step}: chamfer {terms_f.get('chamfer', math.nan):.4f}, "
                    f"total {terms_f.get('total', math.nan):.4f} -> {path}")
                if on_phase_end is not None:
                    model.eval()
                    on_phase_end(phase, path, model)
                    model.train()

    # ---- end: resumable state, and the final weights ----
    last_phase = phase_of(phases, min(step // steps_per_epoch, cfg.epochs - 1))
    final = out / "final.safetensors"
    if ctx.is_main:
        save(last_path, last_phase, step // steps_per_epoch, full=True)
        if not stopped:
            save(final, last_phase, cfg.epochs, full=False)
        record({"event": "stopped" if stopped else "done", "step": step, "elapsed_s": time.perf_counter() - t_start})
    if log_file is not None:
        log_file.close()
    if ctx.distributed:
        torch.distributed.barrier()
    return TrainResult(final if not stopped else last_path, phase_ckpts, out / "log.jsonl", step, terms_f, stopped)
