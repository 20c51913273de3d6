"""The training loop for both stages, read top to bottom (after nanoGPT's train.py).

    config -> data -> model, optimiser, losses -> (resume) -> for each epoch: set the curriculum's mix,
    for each global batch: lr schedule, forward, loss terms, backward, clip, step (then the discriminator)
    -> every `checkpoint_every` steps: resumable state -> at every phase boundary: checkpoint + evaluation
    hook -> final checkpoint.

Determinism: the model is initialised from the seed stream (seed, "model_init") without touching the global
RNG, the epoch's sample order comes from the data's seeded sampler, and every random draw of the losses is
keyed by (seed, step, sample id). With the state saved in `last.safetensors` (model, AdamW moments and
step counts, discriminator and its optimiser, counters) a run stopped after any step, mid-epoch included,
and resumed is bitwise the uninterrupted run on the CPU (tests/test_train_loop.py, tests/test_train_interrupt.py).

Interruption: `last.safetensors` is written every `checkpoint_every` steps, at every phase boundary, at the
end, and on SIGINT / SIGTERM: `train` handles both while it runs (the previous handlers are restored when
it returns), finishes the step in progress, saves, and raises `TrainingInterrupted` (a KeyboardInterrupt:
the CLI exits 130). A second signal, or one during the evaluation hook, raises KeyboardInterrupt at once;
the last saved state is kept, and a hook that did not finish runs again on resume. On resume `log.jsonl` is
cut back to what was logged when that state was saved, so every step is logged once.

Distributed: under torchrun every rank runs this same file on an equal slice of each global batch
(`ddp.shard`), the model is wrapped in DistributedDataParallel and the discriminator's gradients are
averaged by hand; only rank 0 writes files and logs. A stop request is all-reduced before every step, so
all ranks stop after the same step. A signal while rank 0 runs the phase evaluation stops rank 0 at once
(its state is saved just before); the other ranks then wait in the next stop check until torchrun ends them,
which it does when one worker exits with an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel

from ..atomic import write_bytes_atomic
from ..models.checkpoint import CheckpointError, check_checkpoint, read_checkpoint, save_checkpoint
from ..models.reference import ReferenceConfig, ReferenceModel, camera_frames
from ..render.cameras import PerspectiveCameras
from ..runtime import runtime_policy
from ..seeding import stream_seed
from ..structures import Meshes, TexturesVertex
from .curriculum import STAGE1_SCHEDULE, STAGE2_SCHEDULE, Phase, curriculum_phases, lr_at, phase_of
from .ddp import DistContext, all_reduce_sum, average_gradients, init_distributed, shard
from .losses import Discriminator, LossConfig, LossMix, discriminator_loss, weighted_terms

__all__ = ["Batch", "TrainConfig", "TrainData", "TrainResult", "TrainingInterrupted", "collate", "train"]


# --------------------------------------------------------------------------------------------------------
# Configuration: every number of a run, written into every checkpoint.
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """One training stage. `batch_size` is the GLOBAL batch (split over ranks); `epoch_size` samples are
    drawn per epoch by the data's mixing sampler; lr warms up linearly for `warmup_steps` then decays by a
    cosine to `min_lr_ratio * lr`; `max_steps` stops early (the run resumes from `last.safetensors`);
    `init_from` starts stage 2 from a stage-1 checkpoint's weights (refused up front unless they have this
    `model`'s shapes); `checkpoint_every` (steps, default 100) is how often the resumable
    `last.safetensors` is written between phase boundaries, so a killed run loses at most that many steps.
    `grad_accumulation` splits each rank's share of the global batch into that many equal micro-batches
    whose gradients (of the micro-batch mean loss, divided by their count) add up before the step: the same
    update in less memory, and, with W ranks and accumulation k, the same arithmetic as W * k ranks (one
    process with k = 2 sums the two half-batch gradients exactly as two ranks all-reduce them). Invalid
    values raise ValueError naming the field."""

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
    # 100 steps: at the demo's ~0.2-0.3 s per step a kill loses at most ~30 s of work, while a save of the
    # demo's whole state (tiny model, AdamW moments, discriminator: 1.8 MB) takes ~5 ms, 0.02% of the steps.
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        # Bad values are refused here by field name (the CLI prints a ValueError as one line, exit 2), not
        # met later as a ZeroDivisionError or TypeError inside the loop.
        def integer(name: str, low: int, optional: bool = False) -> None:
            v = getattr(self, name)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}{' or none' if optional else ''}, got {v!r}")

        def number(name: str, low: float, high: float = math.inf, *, above: bool = False) -> None:
            # Finite: the config is written into every checkpoint as strict JSON (no inf / nan).
            v = getattr(self, name)
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
            if not ok or not (v > low if above else v >= low) or v > high:
                bound = (f"> {low:g}" if above else f">= {low:g}") + (f" and <= {high:g}" if high < math.inf else "")
                raise ValueError(f"{name} must be a number {bound}, got {v!r}")
            object.__setattr__(self, name, float(v))

        integer("stage", 1)
        if self.stage > 2:
            raise ValueError(f"stage must be 1 or 2, got {self.stage!r}")
        for name in ("epochs", "epoch_size", "batch_size", "log_every", "grad_accumulation", "checkpoint_every"):
            integer(name, 1)
        for name in ("warmup_steps", "seed"):
            integer(name, 0)
        integer("max_steps", 0, optional=True)
        number("lr", 0.0, above=True)
        number("disc_lr", 0.0, above=True)
        number("grad_clip", 0.0, above=True)
        number("weight_decay", 0.0)
        number("min_lr_ratio", 0.0, 1.0)
        betas = self.betas
        pair = isinstance(betas, (tuple, list)) and len(betas) == 2
        if not pair or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        if not isinstance(self.amp, bool):
            raise ValueError(f"amp must be true or false, got {self.amp!r}")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {self.device!r}") from None
        if not isinstance(self.device, str):  # the config is written into checkpoints as JSON
            object.__setattr__(self, "device", str(device))
        for name in ("out_dir", "init_from"):
            v = getattr(self, name)
            if v is None and name == "init_from":
                continue
            if not isinstance(v, (str, os.PathLike)) or not str(v):
                raise ValueError(f"{name} must be a path, got {v!r}")
            object.__setattr__(self, name, str(v))
        if self.curriculum not in (None, "stage1", "stage2"):
            raise ValueError(f"curriculum must be 'stage1' or 'stage2', got {self.curriculum!r}")
        if not isinstance(self.model, ReferenceConfig):
            raise ValueError(f"model must be a ReferenceConfig, got {type(self.model).__name__}")
        if not isinstance(self.loss, LossConfig):
            raise ValueError(f"loss must be a LossConfig, got {type(self.loss).__name__}")

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
# Stopping on a signal, and the log a resumed run continues.
# --------------------------------------------------------------------------------------------------------
class TrainingInterrupted(KeyboardInterrupt):
    """`train` stopped on SIGINT / SIGTERM (`signum`; None on a rank that stopped because another one was
    signalled) after `step` steps, with the resumable state saved in `checkpoint`. A KeyboardInterrupt, so
    the CLI exits 130."""

    def __init__(self, step: int, checkpoint: Path, signum: int | None):
        by = signal.Signals(signum).name if signum else "another rank's stop request"
        super().__init__(f"training stopped by {by} after step {step}; its state is saved in {checkpoint}: "
                         "run the same command again to continue")
        self.step, self.checkpoint, self.signum = step, checkpoint, signum


class _StopRequest:
    """SIGINT / SIGTERM while `train` runs. The first signal only sets `signum`: the loop finishes the step
    in progress, saves and stops. A second SIGINT at least `ESCALATE_AFTER_S` later, or any signal while
    `immediate` (the evaluation hook, which can take minutes), raises KeyboardInterrupt at once; the last
    saved state is kept."""

    # A second SIGINT this long after the first means "stop now" (a person pressing Ctrl-C twice); repeats
    # closer together are one request delivered twice (a terminal's Ctrl-C reaches both torchrun and its
    # workers, which torchrun forwards again), and a repeated SIGTERM is a scheduler's (scancel, torchrun
    # forwarding it): neither may cost the save.
    ESCALATE_AFTER_S = 1.0

    def __init__(self) -> None:
        self.signum: int | None = None
        self._immediate = False
        self._first_at = 0.0

    def request(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            self._first_at = time.monotonic()

    def _handle(self, signum: int, frame: Any) -> None:
        # No printing here: a handler runs between two bytecodes of the main thread, possibly inside a write
        # to the same stream.
        again = self.signum is not None
        self.request(signum)
        if self._immediate or (again and signum == signal.SIGINT
                               and time.monotonic() - self._first_at >= self.ESCALATE_AFTER_S):
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self):
        """Handle SIGINT / SIGTERM for the block, then put the previous handlers back: a library call leaves
        no process-wide change behind. Outside the main thread (where Python delivers no signals) nothing
        is installed."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous: dict[int, Any] = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._handle)
            yield self
        finally:
            for sig, handler in previous.items():
                # None: a handler set outside Python, which cannot be reinstalled; the default is the closest.
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    @contextlib.contextmanager
    def immediate(self):
        """Signals raise KeyboardInterrupt at once inside the block."""
        self._immediate = True
        try:
            yield
        finally:
            self._immediate = False

    def agreed(self, ctx: DistContext) -> bool:
        """Whether any rank was asked to stop (a one-element all-reduce when distributed, so every rank
        answers the same at the same step)."""
        if not ctx.distributed:
            return self.signum is not None
        flag = torch.tensor([0.0 if self.signum is None else 1.0], device=ctx.device)
        return bool(all_reduce_sum(flag, ctx).item() > 0)


def _cut_log(path: Path, size: Any, step: int) -> None:
    """Cut `log.jsonl` back to its first `size` bytes (its length when the resumed state was saved), so a
    resumed run logs each step once; atomically. A `size` that does not fit the file (a checkpoint without
    it, a log edited since) falls back to dropping the step events after `step` and lines cut by a kill."""
    if not path.exists():
        return
    raw = path.read_bytes()
    if isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= len(raw) \
            and (size == 0 or raw[size - 1:size] == b"\n"):
        keep = raw[:size]
    else:
        lines = []
        for line in raw.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            later = isinstance(event, dict) and event.get("event") == "step" and isinstance(event.get("step"), int) \
                and event["step"] > step
            if not later:
                lines.append(line + b"\n")
        keep = b"".join(lines)
    if keep != raw:
        write_bytes_atomic(path, keep)


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
    """Run one stage (module docstring). Rank 0 writes `out_dir/`: `last.safetensors` (resumable state,
    every `cfg.checkpoint_every` steps, at phase boundaries, at the end and on SIGINT / SIGTERM),
    `phase<k>-<name>.safetensors` at every phase boundary, `final.safetensors`, and `log.jsonl` (one JSON
    object per logged step, epoch and phase). `log` receives human-readable lines, `progress(step,
    total_steps, terms)` every step (a KeyboardInterrupt it raises stops the run like SIGINT);
    `on_phase_end(phase, checkpoint, model)` runs on rank 0 after each phase's checkpoint (the evaluation
    hook). Raises `TrainingInterrupted` after saving when stopped by a signal, and ValueError
    (`CheckpointError`) before any step when `init_from` or `last.safetensors` does not fit `cfg.model`."""
    ctx = init_distributed(cfg.device)
    try:
        with runtime_policy(ctx.device), _StopRequest().installed() as stop:
            result = _train(cfg, data, ctx, resume, on_phase_end, log or (lambda s: None), progress, stop)
        if stop.signum is not None:
            # a signal after the last stop check (during the final saves or the barrier): the state is saved,
            # and the caller must still learn that it was asked to stop (a CLI would start the next stage)
            raise TrainingInterrupted(result.steps, Path(cfg.out_dir) / "last.safetensors", stop.signum)
        return result
    finally:
        ctx.close()


def _train(cfg, data, ctx: DistContext, resume, on_phase_end, log, progress, stop: _StopRequest) -> TrainResult:
    device = ctx.device
    out = Path(cfg.out_dir)
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} does not split over {ctx.world_size} ranks")
    accum = cfg.grad_accumulation
    if (cfg.batch_size // ctx.world_size) % accum:
        raise ValueError(f"grad_accumulation must be a positive integer dividing each rank's share of the batch "
                         f"({cfg.batch_size // ctx.world_size}), got {accum!r}")
    steps_per_epoch = cfg.epoch_size // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"epoch_size {cfg.epoch_size} is smaller than one batch of {cfg.batch_size}")
    phases = curriculum_phases(cfg.epochs, cfg.schedule())
    total_steps = cfg.epochs * steps_per_epoch
    last_path = out / "last.safetensors"
    resuming = resume and last_path.exists()
    # Checked from the headers before anything is built or written: a checkpoint of another architecture or
    # other shapes is a one-line error naming the file, not a load_state_dict traceback after set-up.
    if cfg.init_from:
        try:
            init_config = check_checkpoint(cfg.init_from, cfg.model)
        except CheckpointError as err:
            raise CheckpointError(f"init_from {err}") from None
    if resuming:
        try:
            check_checkpoint(last_path, cfg.model)
        except CheckpointError as err:
            raise CheckpointError(f"cannot resume: {err} (start over with --fresh / resume=False, or use another "
                                  "out_dir)") from None
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)

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
        if init_config.get("model") != cfg.model.to_dict():
            log(f"note: {cfg.init_from} was trained with model config {init_config.get('model')}; this run uses "
                f"{cfg.model.to_dict()} (same weight shapes)")
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
    hook_pending: int | None = None  # a phase whose evaluation hook did not finish before the stop
    if resuming:
        ck = read_checkpoint(last_path)
        if ck.config.get("train_config", {}).get("stage") != cfg.stage:
            raise ValueError(f"{last_path} belongs to stage {ck.config.get('stage')}, not {cfg.stage}; use another out_dir")
        model.load_state_dict(ck.prefixed("model/"))
        _restore_optimizer(optimizer, ck.prefixed("optim/"), ck.config["optimizer_groups"])
        if disc is not None:
            disc.load_state_dict(ck.prefixed("disc/"))
            _restore_optimizer(d_opt, ck.prefixed("disc_optim/"), ck.config["disc_optimizer_groups"])
        if use_amp and ck.config.get("grad_scaler"):
            scaler.load_state_dict(ck.config["grad_scaler"])
        step = int(ck.config["step"])
        hook_pending = ck.config.get("hook_pending")
        if ctx.is_main:
            _cut_log(out / "log.jsonl", ck.config.get("log_bytes"), step)
        log(f"resumed from {last_path} at step {step}")
    elif ctx.is_main:  # starting at step 0: what an earlier run logged has no saved state to continue
        _cut_log(out / "log.jsonl", 0, 0)

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
        if full:  # everything a bitwise resume needs, and how long the log was (a resume cuts it back)
            t, g = _flatten_optimizer(optimizer, "optim/")
            extra.update(t)
            m["optimizer_groups"] = g
            if disc is not None:
                extra.update({f"disc/{k}": v for k, v in disc.state_dict().items()})
                t, g = _flatten_optimizer(d_opt, "disc_optim/")
                extra.update(t)
                m["disc_optimizer_groups"] = g
            if use_amp:
                m["grad_scaler"] = scaler.state_dict()
            m["log_bytes"] = log_bytes
            m["hook_pending"] = hook_pending
        return save_checkpoint(path, model, m, extra)

    log_file = (out / "log.jsonl").open("ab") if ctx.is_main else None
    log_bytes = (out / "log.jsonl").stat().st_size if ctx.is_main else 0

    def record(obj: dict[str, Any]) -> None:
        nonlocal log_bytes
        if log_file is not None:
            line = (json.dumps(obj, sort_keys=True) + "\n").encode()
            log_file.write(line)
            log_file.flush()
            log_bytes += len(line)

    def run_hook(phase: Phase, path: Path) -> None:
        """The evaluation hook on rank 0; a signal inside it stops at once (last.safetensors says the hook is
        pending, so a resumed run runs it again: the evaluator continues its stored batches)."""
        model.eval()
        try:
            with stop.immediate():
                on_phase_end(phase, path, model)
        except KeyboardInterrupt:
            raise TrainingInterrupted(step, last_path, stop.signum) from None
        model.train()

    try:
        record({"event": "start", "step": step, "total_steps": total_steps, "world_size": ctx.world_size,
                "substitutes": substitutes, "config": cfg.to_dict(), "phases": [dataclasses.asdict(p) for p in phases]})
        phase_ckpts: list[Path] = []
        terms_f: dict[str, float] = {}
        stopped = interrupted = False
        autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
        t_start = time.perf_counter()

        # ---- the evaluation hook the previous run was stopped in (none when this run has no hook) ----
        if hook_pending is not None and ctx.is_main:
            pending = phases[int(hook_pending)]
            path = out / f"phase{pending.index + 1}-{pending.name}.safetensors"
            if on_phase_end is not None and path.exists():
                log(f"stage {cfg.stage} phase {pending.name}: running its interrupted evaluation again")
                phase_ckpts.append(path)
                run_hook(pending, path)
            hook_pending = None
            save(last_path, pending, pending.end, full=True)

        # ---- epochs ----
        for epoch in range(step // steps_per_epoch, cfg.epochs):
            phase = phase_of(phases, epoch)
            order = data.epoch_indices(epoch, phase.synthetic_fraction, steps_per_epoch * cfg.batch_size, cfg.seed)
            drawn_real = sum(data.domains[i] == "real" for i in order)
            if step == epoch * steps_per_epoch and stop.signum is not None:
                pass  # about to stop before this epoch's first step: its event is logged when it runs
            elif step == epoch * steps_per_epoch:  # a run resumed inside the epoch has logged it already
                record({"event": "epoch", "epoch": epoch, "phase": phase.name,
                        "target_synthetic": phase.synthetic_fraction,
                        "drawn_synthetic": (len(order) - drawn_real) / len(order), "drawn_real": drawn_real / len(order)})
                if epoch == phase.start:
                    log(f"stage {cfg.stage} phase {phase.index + 1}/{len(phases)} {phase.name}: epochs "
                        f"{phase.start + 1}-{phase.end}, target {phase.synthetic_fraction:.0%} synthetic, drawn "
                        f"{1 - drawn_real / len(order):.0%}")

            for b in range(step - epoch * steps_per_epoch, steps_per_epoch):
                if cfg.max_steps is not None and step >= cfg.max_steps:
                    stopped = True
                    break
                if stop.agreed(ctx):  # every rank stops after the same step
                    interrupted = True
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
                    try:
                        progress(step, total_steps, terms_f)
                    except KeyboardInterrupt:  # the step is complete: stop as on SIGINT, with the state saved
                        stop.request(signal.SIGINT)
                if step % cfg.log_every == 0 or step == total_steps:
                    record({"event": "step", "step": step, "epoch": epoch, "phase": phase.name, **terms_f,
                            "elapsed_s": time.perf_counter() - t_start})
                # -- resumable state every checkpoint_every steps (a phase's last step saves it below) --
                if ctx.is_main and step % cfg.checkpoint_every == 0 \
                        and not (b == steps_per_epoch - 1 and epoch + 1 == phase.end):
                    save(last_path, phase, step // steps_per_epoch, full=True)
            if stopped or interrupted:
                break

            # ---- phase boundary: checkpoint + evaluation hook ----
            if epoch + 1 == phase.end and ctx.is_main:
                path = save(out / f"phase{phase.index + 1}-{phase.name}.safetensors", phase, epoch + 1, full=False)
                phase_ckpts.append(path)
                record({"event": "phase_end", "phase": phase.name, "epoch": epoch + 1, "step": step,
                        "checkpoint": str(path), **{f"last_{k}": v for k, v in terms_f.items()}})
                # Saved as pending first: a run stopped inside the hook runs it again when resumed.
                hook_pending = phase.index if on_phase_end is not None else None
                save(last_path, phase, epoch + 1, full=True)
                log(f"stage {cfg.stage} phase {phase.name} done at step {step}: chamfer "
                    f"{terms_f.get('chamfer', math.nan):.4f}, total {terms_f.get('total', math.nan):.4f} -> {path}")
                if hook_pending is not None and stop.signum is None:  # a stop already asked for leaves it pending
                    run_hook(phase, path)
                    hook_pending = None
                    save(last_path, phase, epoch + 1, full=True)

        # ---- end: resumable state, and the final weights ----
        finished = step == total_steps
        interrupted = interrupted or stop.agreed(ctx)  # a signal during the last step: the stage ends anyway
        last_phase = phase_of(phases, min(step // steps_per_epoch, cfg.epochs - 1))
        final = out / "final.safetensors"
        if ctx.is_main:
            event = "done" if finished else "interrupted" if interrupted else "stopped"
            extra = {"signal": signal.Signals(stop.signum).name} if interrupted and stop.signum else {}
            record({"event": event, "step": step, "elapsed_s": time.perf_counter() - t_start, **extra})
            save(last_path, last_phase, step // steps_per_epoch, full=True)
            if finished:
                save(final, last_phase, cfg.epochs, full=False)
    finally:
        if log_file is not None:
            log_file.close()
    if ctx.distributed:
        torch.distributed.barrier()
    if interrupted:
        raise TrainingInterrupted(step, last_path, stop.signum)
    return TrainResult(final if finished else last_path, phase_ckpts, out / "log.jsonl", step, terms_f, stopped)
