"""Data-engine configuration (`training/engine.toml`): one frozen record of every number of a run.

Tables: top level (out_dir, seed, rounds, images_per_round), [data] (a manifest, or [data.generate] for the
built-in benchmark), [main] and [[suite]] (the proposers), [pretrain] and [finetune] (training settings:
`train_config`), [verifier] (simulated panel or imported ratings, the rater mapping), [cost] (`CostModel`),
[eval] (the per-round evaluation of the main model). Unknown keys are errors naming the table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..config_io import check_keys, dataclass_from_mapping, read_config_file
from ..models.reference import ReferenceConfig
from ..train.loop import TrainConfig
from ..train.losses import LossConfig, LossWeights
from .costs import CostModel

__all__ = ["EngineConfig", "EngineConfigError", "TRAIN_DEFAULTS", "load_engine_config", "train_config",
           "train_settings_keys"]


class EngineConfigError(ValueError):
    """A bad engine configuration; the message names the table and key."""


# [pretrain] (stage 1 on the synthetic rows, for the main model and every suite member) and [finetune] (per
# round, on synthetic rows + the pool) hold `train.loop.TrainConfig` fields, `num_points` and `render_size`
# of `train.losses.LossConfig`, and `synthetic_fraction` (fine-tuning only: the share of synthetic draws
# beside the pool). The engine's defaults (small, CPU-sized runs) replace TrainConfig's where they differ.
TRAIN_DEFAULTS = {"epochs": 2, "epoch_size": 32, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2,
                  "num_points": 500, "render_size": 32, "synthetic_fraction": 0.5}
# TrainConfig fields the engine sets for every run (a stage-1 curriculum, the proposer's seed and model, the
# run's device and folders): not settable in the tables.
_SET_BY_ENGINE = ("stage", "seed", "device", "model", "loss", "out_dir", "init_from", "curriculum")
_LOSS_KEYS = ("num_points", "render_size")
_ENGINE_LOG_EVERY = 1000  # TrainConfig.log_every unless the table sets it


def train_settings_keys() -> tuple[str, ...]:
    """The keys a [pretrain] / [finetune] table may hold (module comment above `TRAIN_DEFAULTS`)."""
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.init and f.name not in _SET_BY_ENGINE]
    return (*names, *_LOSS_KEYS, "synthetic_fraction")


def train_config(settings: Mapping[str, Any], *, out_dir: str | os.PathLike, seed: int, model: ReferenceConfig,
                 init_from: str | None, device: str) -> TrainConfig:
    """The `TrainConfig` of one engine training run: `settings` (a [pretrain] / [finetune] table, over
    `TRAIN_DEFAULTS`) on a stage-1 curriculum with the substitute perceptual network."""
    s = {**TRAIN_DEFAULTS, **settings}
    loss = LossConfig(weights=LossWeights.stage(1), **{k: s.pop(k) for k in _LOSS_KEYS}, perceptual="substitute")
    s.pop("synthetic_fraction")
    s.setdefault("log_every", _ENGINE_LOG_EVERY)
    return TrainConfig(**s, stage=1, seed=seed, device=device, model=model, loss=loss, out_dir=str(out_dir),
                       init_from=init_from, curriculum="stage1")


def _train_settings(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A [pretrain] / [finetune] table over `TRAIN_DEFAULTS`, its keys and values checked by `TrainConfig`."""
    check_keys(table, train_settings_keys(), where=where, error=EngineConfigError)
    settings = {**TRAIN_DEFAULTS, **table}
    try:
        train_config(settings, out_dir="check", seed=0, model=ReferenceConfig(), init_from=None, device="cpu")
    except (TypeError, ValueError) as err:
        raise EngineConfigError(f"{where}: {err}") from None
    return settings


EVAL_DEFAULTS = {"enabled": True, "protocol": "default", "split": "test", "num_samples": 2000, "batch_size": 16,
                 "resamples": 1000}


@dataclass(frozen=True)
class EngineConfig:
    """Every setting of a data-engine run (module docstring; training/engine.toml documents each key)."""

    out_dir: str = "runs/engine"
    seed: int = 0
    rounds: int = 3
    images_per_round: int = 8
    data: dict = field(default_factory=dict)
    main: dict = field(default_factory=lambda: {"preset": "tiny", "seed": 0})
    suite: tuple = ()
    pretrain: dict = field(default_factory=lambda: dict(TRAIN_DEFAULTS))
    finetune: dict = field(default_factory=lambda: dict(TRAIN_DEFAULTS))
    verifier: dict = field(default_factory=lambda: {"kind": "simulated", "raters": 3})
    cost: CostModel = CostModel()
    eval: dict = field(default_factory=lambda: dict(EVAL_DEFAULTS))
    description: str = ""

    def __post_init__(self) -> None:
        for k in ("pretrain", "finetune"):  # every setting recorded (and fingerprinted), defaults included
            object.__setattr__(self, k, {**TRAIN_DEFAULTS, **getattr(self, k)})
        if self.rounds < 1 or self.images_per_round < 1:
            raise EngineConfigError(f"rounds and images_per_round must be >= 1, got {self.rounds}, {self.images_per_round}")
        n = 1 + len(self.suite)
        if not 3 <= n <= 5:
            raise EngineConfigError(f"the suite proposes {n} candidates per image (main + {len(self.suite)} [[suite]] "
                                    "members); the data engine uses 3-5")
        names = ["main"] + [m.get("name") for m in self.suite]
        if any(not isinstance(x, str) or not x or "/" in x for x in names) or len(set(names)) != len(names):
            raise EngineConfigError(f"suite members need distinct names without '/' (and none called 'main'): {names}")
        kind = self.verifier.get("kind", "simulated")
        if kind not in ("simulated", "imported"):
            raise EngineConfigError(f"[verifier] kind must be 'simulated' or 'imported', got {kind!r}")
        if kind == "imported" and not self.verifier.get("ratings"):
            raise EngineConfigError("[verifier] kind = 'imported' needs ratings = 'path/to/ratings.csv'")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["suite"] = [dict(m) for m in self.suite]
        return json.loads(json.dumps(d, sort_keys=True))

    def fingerprint(self) -> str:
        """Digest of every setting that changes results (all but out_dir and description)."""
        d = self.to_dict()
        d.pop("out_dir"), d.pop("description")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def config_from_dict(doc: dict, base: Path | None = None, where: str = "engine config", **overrides: Any) -> EngineConfig:
    """An `EngineConfig` from a parsed TOML document; relative paths resolve against `base`."""
    doc = {**doc, **{k: v for k, v in overrides.items() if v is not None}}
    base = base or Path(".")
    try:
        return dataclass_from_mapping(EngineConfig, doc, where=where, convert=lambda d: _tables(d, base, where),
                                      error=EngineConfigError)
    except TypeError as err:
        raise EngineConfigError(f"{where}: {err}") from None


def _tables(d: dict[str, Any], base: Path, where: str) -> dict[str, Any]:
    """The checked top-level table with its sub-tables resolved (paths, suite, training, cost, eval)."""
    data = dict(d.get("data", {}))
    if data.get("manifest") and not Path(data["manifest"]).is_absolute():
        data["manifest"] = str(base / data["manifest"])
    d["data"] = data
    verifier = dict(d.get("verifier", {"kind": "simulated", "raters": 3}))
    if verifier.get("ratings") and not Path(verifier["ratings"]).is_absolute():
        verifier["ratings"] = str(base / verifier["ratings"])
    d["verifier"] = verifier
    d["suite"] = tuple(dict(m) for m in d.get("suite", ()))
    for k in ("pretrain", "finetune"):
        if k in d:
            d[k] = _train_settings(dict(d[k]), f"{where} [{k}]")
    if "cost" in d:
        d["cost"] = dataclass_from_mapping(CostModel, dict(d["cost"]), where=f"{where} [cost]", error=EngineConfigError)
    if "eval" in d:
        d["eval"] = {**EVAL_DEFAULTS, **d["eval"]}
    return d


def load_engine_config(path: str | os.PathLike, **overrides: Any) -> EngineConfig:
    """Read `training/engine.toml`-style TOML; `overrides` (out_dir, rounds, seed...) replace top-level keys."""
    path = Path(path)
    doc = read_config_file(path, what="engine config", format="toml", error=EngineConfigError)
    return config_from_dict(doc, path.parent, str(path), **overrides)
