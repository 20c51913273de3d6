"""Checkpoints that describe themselves: safetensors weights with the JSON config that built the model.

One file, `<name>.safetensors`: the tensors (the model's under `model/`, and for a resumable training
checkpoint the optimiser's and discriminator's under other prefixes) and, in the safetensors header's
`__metadata__`, the key `sam3d_eval` holding a JSON object:

    {"format": "sam3d-eval-checkpoint", "format_version": 1,
     "architecture": "sam3d-eval/reference-icosphere", "architecture_version": 1,
     "model": {...ReferenceConfig...}, "package_version": "0.1.0",
     "stage": 1, "phase": "...", "epoch": 3, "step": 120, "data_manifest_hash": "...",
     "loss_weights": {...}, "substitutes": {...}, ...}

`load_checkpoint(path)` rebuilds the model from that alone. Nothing is ever unpickled: pickles and
`torch.save` archives, truncated or malformed files and configs of another architecture are refused with a
`CheckpointError` (a ValueError) that says which.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..atomic import atomic_path
from .reference import ARCHITECTURE, ARCHITECTURE_VERSION, ReferenceConfig, ReferenceModel

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "read_checkpoint",
    "read_checkpoint_config",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "sam3d-eval-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "sam3d_eval"
_MODEL_PREFIX = "model/"
_MAX_HEADER = 100 * 1024 * 1024


class CheckpointError(ValueError):
    """A file that is not a loadable sam3d-eval checkpoint; the message names the file and the reason."""


@dataclass
class Checkpoint:
    """A checkpoint read without building anything: its JSON `config` and all its `tensors` (CPU)."""

    path: Path
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    def prefixed(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors stored under `prefix` (e.g. "optim/"), with the prefix removed."""
        return {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def _package_version() -> str:
    from .. import __version__

    return __version__


def save_checkpoint(
    path: str | os.PathLike,
    model: ReferenceModel,
    meta: Mapping[str, Any] | None = None,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write `model` (weights + config) and `meta` (stage, phase, epoch, step, data hash, loss weights,
    substitutes...; JSON-ready values) to `path` atomically (a temporary file renamed into place).

    `extra_tensors` (e.g. optimiser state for resuming) are stored under their own names, which must not
    start with "model/". Returns the path written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    config = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": ARCHITECTURE,
        "architecture_version": ARCHITECTURE_VERSION,
        "model": model.config.to_dict(),
        "package_version": _package_version(),
    }
    for k, v in (meta or {}).items():
        if k in config:
            raise ValueError(f"save_checkpoint: meta key {k!r} is reserved")
        config[k] = v
    tensors = {_MODEL_PREFIX + k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    for k, v in (extra_tensors or {}).items():
        if k.startswith(_MODEL_PREFIX):
            raise ValueError(f"save_checkpoint: extra tensor {k!r} may not use the {_MODEL_PREFIX!r} prefix")
        tensors[k] = v.detach().to("cpu").contiguous()
    text = json.dumps(config, sort_keys=True, allow_nan=False)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: text})
    return path


def _check_file(path: Path) -> dict[str, Any]:
    """Validate the safetensors framing by hand (before any library parses it); return the header."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
        # A safetensors file: 8-byte little-endian header length, then a JSON object ("{").
        n = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else -1
        looks_safetensors = len(head) == 9 and head[8:9] == b"{" and n <= _MAX_HEADER
        if not looks_safetensors:
            if (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or head[:4] == b"PK\x03\x04":
                raise CheckpointError(
                    f"{path}: this is a pickle or torch.save archive, not a safetensors checkpoint; sam3d-eval never "
                    "unpickles files (they can run code). Convert it with safetensors.torch.save_file."
                )
            if size < 9:
                raise CheckpointError(f"{path}: truncated or empty file ({size} bytes), not a safetensors checkpoint")
            raise CheckpointError(f"{path}: not a safetensors file (no JSON header at byte 8)")
        if 8 + n > size:
            raise CheckpointError(f"{path}: truncated: the header needs {8 + n} bytes, the file has {size}")
        fh.seek(8)
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: the safetensors header is not valid JSON ({err}); not a checkpoint") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    ends = [e["data_offsets"][1] for k, e in header.items() if k != "__metadata__" and isinstance(e, dict)]
    data_size = size - 8 - n
    if ends and max(ends) > data_size:
        raise CheckpointError(
            f"{path}: truncated: tensors need {max(ends)} data bytes but the file holds {data_size}"
        )
    return header


def _config_of(path: Path, header: Mapping[str, Any]) -> dict[str, Any]:
    meta = header.get("__metadata__") or {}
    if _META_KEY not in meta:
        raise CheckpointError(
            f"{path}: a safetensors file without a sam3d-eval config (no '{_META_KEY}' metadata); it cannot be "
            "rebuilt without knowing the architecture"
        )
    try:
        config = json.loads(meta[_META_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: the sam3d-eval config is not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: the metadata is not a {CHECKPOINT_FORMAT} config")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {config.get('format_version')} is newer than this sam3d-eval "
            f"reads ({FORMAT_VERSION}); upgrade sam3d-eval"
        )
    return config


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's JSON config from its header alone (framing and config validated, weights not read)."""
    path = Path(path)
    return _config_of(path, _check_file(path))


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Validate and read a checkpoint's config and tensors (CPU) without building the model."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config = read_checkpoint_config(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except SafetensorError as err:
        raise CheckpointError(f"{path}: malformed safetensors file ({err})") from None
    return Checkpoint(path, config, tensors)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> ReferenceModel:
    """Rebuild the model a checkpoint describes, with its weights, in eval mode on `device`.

    The returned model carries the checkpoint's JSON config as `model.checkpoint_config`, the file's absolute
    path as `model.checkpoint_path`, and implements
    `Predictor` (`name` is "reference/stage<k>" when the checkpoint records a stage). Raises
    `CheckpointError` for pickles, truncated or malformed files, configs of another architecture or
    version, and weights that do not fit the config.
    """
    ckpt = read_checkpoint(path)
    config = ckpt.config
    arch = config.get("architecture")
    if arch != ARCHITECTURE:
        raise CheckpointError(f"{ckpt.path}: architecture {arch!r} is not one this sam3d-eval builds ({ARCHITECTURE!r})")
    if config.get("architecture_version") != ARCHITECTURE_VERSION:
        raise CheckpointError(
            f"{ckpt.path}: {arch} version {config.get('architecture_version')!r}; this sam3d-eval builds version "
            f"{ARCHITECTURE_VERSION}"
        )
    try:
        model_config = ReferenceConfig.from_dict(config.get("model") or {})
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{ckpt.path}: invalid model config: {err}") from None
    model = ReferenceModel(model_config)
    state = ckpt.prefixed(_MODEL_PREFIX)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{ckpt.path}: weights do not match the config's architecture (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]})"
        )
    for k, v in expected.items():
        if state[k].shape != v.shape:
            raise CheckpointError(
                f"{ckpt.path}: weight {k} has shape {tuple(state[k].shape)}, the config builds {tuple(v.shape)}"
            )
    model.load_state_dict(state)
    model.checkpoint_config = config
    model.checkpoint_path = str(Path(path).resolve())
    if "stage" in config:
        model.name = f"reference/stage{config['stage']}"
    return model.to(device).eval()
