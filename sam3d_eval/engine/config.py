"""Data-engine configuration (`training/engine.toml`): one frozen record of every number of a run.

Tables: top level (out_dir, seed, rounds, images_per_round), [data] (a manifest, or [data.generate] for the
built-in benchmark), [main] and [[suite]] (the proposers), [pretrain] and [finetune] (training settings),
[verifier] (simulated panel or imported ratings, the rater mapping), [cost] (`CostModel`), [eval] (the
per-round evaluation of the main model). Unknown keys are errors naming the table.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .costs import CostModel

__all__ = ["EngineConfig", "EngineConfigError", "load_engine_config"]


class EngineConfigError(ValueError):
    """A bad engine configuration; the message names the table and key."""


@dataclass(frozen=True)
class TrainSettings:
    """Training settings of the pretraining (stage 1, synthetic only) or per-round fine-tuning (pool)."""

    epochs: int = 2
    epoch_size: int = 32
    batch_size: int = 8
    lr: float = 3e-3
    warmup_steps: int = 2
    num_points: int = 500
    render_size: int = 32
    synthetic_fraction: float = 0.5  # fine-tuning only: share of synthetic draws beside the pool


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
    pretrain: TrainSettings = TrainSettings()
    finetune: TrainSettings = TrainSettings()
    verifier: dict = field(default_factory=lambda: {"kind": "simulated", "raters": 3})
    cost: CostModel = CostModel()
    eval: dict = field(default_factory=lambda: dict(EVAL_DEFAULTS))
    description: str = ""

    def __post_init__(self) -> None:
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


def _known(cls, table: dict, where: str) -> dict:
    unknown = sorted(set(table) - set(cls.__dataclass_fields__))
    if unknown:
        raise EngineConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
    return table


def config_from_dict(doc: dict, base: Path | None = None, where: str = "engine config", **overrides: Any) -> EngineConfig:
    """An `EngineConfig` from a parsed TOML document; relative paths resolve against `base`."""
    doc = {**doc, **{k: v for k, v in overrides.items() if v is not None}}
    _known(EngineConfig, doc, where)
    base = base or Path(".")
    d = dict(doc)
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
            d[k] = TrainSettings(**_known(TrainSettings, dict(d[k]), f"{where} [{k}]"))
    if "cost" in d:
        d["cost"] = CostModel(**_known(CostModel, dict(d["cost"]), f"{where} [cost]"))
    if "eval" in d:
        d["eval"] = {**EVAL_DEFAULTS, **d["eval"]}
    try:
        return EngineConfig(**d)
    except TypeError as err:
        raise EngineConfigError(f"{where}: {err}") from None


def load_engine_config(path: str | os.PathLike, **overrides: Any) -> EngineConfig:
    """Read `training/engine.toml`-style TOML; `overrides` (out_dir, rounds, seed...) replace top-level keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"engine config not found: {path}")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise EngineConfigError(f"{path}: not valid TOML ({err})") from None
    return config_from_dict(doc, path.parent, str(path), **overrides)
