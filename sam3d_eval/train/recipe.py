"""Training recipes: the TOML files of `training/` turned into `TrainConfig`s (training/README.md).

A recipe holds `out_dir`, a `[data]` table (a `manifest`, or `generate` settings for the built-in benchmark),
an optional `[eval]` table (phase-boundary evaluation), and one or both of `[stage1]` / `[stage2]`, each with
the `TrainConfig` fields and sub-tables `[stageN.model]` (`preset` plus `ReferenceConfig` fields),
`[stageN.loss]` (`LossConfig` fields) and `[stageN.loss.weights]` (`LossWeights`, defaults by stage).
Stage 2 without `init_from` starts from stage 1's final checkpoint when the recipe has both. Unknown keys
are refused with their name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config_io import check_keys, dataclass_from_mapping, read_config_file
from ..models.reference import ReferenceConfig
from .losses import LossConfig, LossWeights
from .loop import TrainConfig

__all__ = ["Recipe", "RecipeError", "load_recipe"]


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message names the file and key."""


@dataclass
class Recipe:
    path: Path
    out_dir: Path
    data: dict[str, Any]
    eval: dict[str, Any]
    stages: list[TrainConfig] = field(default_factory=list)


def _view_angles(loss_t: dict[str, Any]) -> dict[str, Any]:
    for key in ("view_azimuths", "view_elevations"):
        if key in loss_t:
            loss_t[key] = tuple(float(x) for x in loss_t[key])
    return loss_t


def _stage(raw: dict, k: int, out_dir: Path, where: str) -> TrainConfig:
    raw = dict(raw)
    model_t = dict(raw.pop("model", {}))
    loss_t = dict(raw.pop("loss", {}))
    weights_t = dict(loss_t.pop("weights", {}))
    preset = model_t.pop("preset", "tiny")
    at = f"{where} [stage{k}"
    try:
        model = dataclass_from_mapping(ReferenceConfig, model_t, where=f"{at}.model]", error=RecipeError,
                                       make=lambda **kw: ReferenceConfig.preset(preset, **kw))
        weights = dataclass_from_mapping(LossWeights, weights_t, where=f"{at}.loss.weights]", error=RecipeError,
                                         make=lambda **kw: LossWeights.stage(k, **kw))
        loss = dataclass_from_mapping(LossConfig, loss_t, where=f"{at}.loss]", error=RecipeError, convert=_view_angles,
                                      make=lambda **kw: LossConfig(weights=weights, **kw))
        raw.setdefault("out_dir", str(out_dir / f"stage{k}"))
        return dataclass_from_mapping(TrainConfig, raw, where=f"{at}]", error=RecipeError,
                                      make=lambda **kw: TrainConfig(stage=k, model=model, loss=loss, **kw))
    except RecipeError:
        raise
    except (TypeError, ValueError) as err:  # a value of the wrong type or range, named by its field
        raise RecipeError(f"{where} [stage{k}]: {err}") from None


# The [eval] table: phase-boundary evaluation (`train.hooks.PhaseEvaluator`). appearance / visibility switch on
# the rendered-appearance and visible/hidden-surface metrics; the appearance_* keys are protocol overrides.
EVAL_KEYS = ("enabled", "split", "protocol", "num_samples", "batch_size", "n_resamples", "appearance",
             "appearance_image_size", "appearance_views", "visibility", "wear_free")


def load_recipe(path: str | os.PathLike, **overrides: Any) -> Recipe:
    """Read a recipe; `overrides` (e.g. out_dir, device, epochs) replace top-level and per-stage values."""
    path = Path(path)
    doc = read_config_file(path, what="recipe", format="toml", error=RecipeError)
    check_keys(doc, ("out_dir", "data", "eval", "stage1", "stage2", "description"), where=str(path),
               noun="top-level key(s)", error=RecipeError)
    if "stage1" not in doc and "stage2" not in doc:
        raise RecipeError(f"{path}: needs a [stage1] or [stage2] table")
    base = path.parent
    out_dir = Path(overrides.pop("out_dir", None) or doc.get("out_dir", "runs/train"))
    stages = []
    for k in (1, 2):
        if f"stage{k}" in doc:
            raw = {**doc[f"stage{k}"], **{key: v for key, v in overrides.items() if v is not None}}
            if k == 2 and "stage1" in doc and "init_from" not in raw:
                raw["init_from"] = str(out_dir / "stage1" / "final.safetensors")
            elif raw.get("init_from"):
                p = Path(raw["init_from"])
                raw["init_from"] = str(p if p.is_absolute() else base / p)
            stages.append(_stage(raw, k, out_dir, str(path)))
    check_keys(doc.get("eval", {}), EVAL_KEYS, where=f"{path} [eval]", error=RecipeError)
    data = dict(doc.get("data", {}))
    if "manifest" in data and not Path(data["manifest"]).is_absolute():
        data["manifest"] = str(base / data["manifest"])
    return Recipe(path, out_dir, data, dict(doc.get("eval", {})), stages)
