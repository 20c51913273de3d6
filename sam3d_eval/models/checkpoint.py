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
one-line `CheckpointError` (a ValueError) that says which. Everything is checked from the header before any
weight is allocated: every tensor's dtype, shape and byte range against the file's size, and the shapes the
config builds (computed on the meta device, `model_shapes`) against the stored ones, so a small file whose
config asks for a huge model is refused without building it (`check_checkpoint`).
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch.overrides import TorchFunctionMode

from ..atomic import atomic_path
from .reference import ARCHITECTURE, ARCHITECTURE_VERSION, ReferenceConfig, ReferenceModel

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "CheckpointError",
    "check_checkpoint",
    "load_checkpoint",
    "model_shapes",
    "read_checkpoint",
    "read_checkpoint_config",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "sam3d-eval-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "sam3d_eval"
_MODEL_PREFIX = "model/"
_MAX_HEADER = 100 * 1024 * 1024
# Bytes per element of the safetensors dtypes a checkpoint may hold; any other name is refused.
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "F16": 2, "BF16": 2, "I32": 4, "F32": 4, "I64": 8, "F64": 8}
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


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
    with atomic_path(path, durable=True) as tmp:  # a resume after a power loss must find a whole file
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
    except ValueError as err:  # UnicodeDecodeError, JSONDecodeError, and ints past Python's digit limit
        raise CheckpointError(f"{path}: the safetensors header is not valid JSON ({err}); not a checkpoint") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(f"{path}: malformed safetensors header: __metadata__ must map names to strings")
    _check_entries(path, {k: e for k, e in header.items() if k != "__metadata__"}, size - 8 - n)
    return header


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_entries(path: Path, entries: Mapping[str, Any], data_size: int) -> None:
    """Every tensor entry names a known dtype, a shape of non-negative ints and integer `data_offsets`
    [begin, end) whose length is the shape's byte size; together the ranges tile the `data_size` bytes
    after the header exactly (as safetensors requires), so no range reaches past the end of the file."""
    bad = f"{path}: malformed safetensors header: tensor"
    spans = []
    for name, e in entries.items():
        if not isinstance(e, dict):
            raise CheckpointError(f"{bad} {name!r} is not a JSON object")
        dtype, shape, offsets = e.get("dtype"), e.get("shape"), e.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _DTYPE_BYTES:
            raise CheckpointError(f"{bad} {name!r} has dtype {dtype!r}, not one of {sorted(_DTYPE_BYTES)}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise CheckpointError(f"{bad} {name!r} has shape {shape!r}, not a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise CheckpointError(f"{bad} {name!r} has data_offsets {offsets!r}, not two integers 0 <= begin <= end")
        if offsets[1] > data_size:
            raise CheckpointError(
                f"{path}: truncated: tensor {name!r} needs data bytes up to {offsets[1]} but the file holds {data_size}"
            )
        nbytes = math.prod(shape) * _DTYPE_BYTES[dtype]
        if offsets[1] - offsets[0] != nbytes:
            raise CheckpointError(
                f"{bad} {name!r} of shape {shape} {dtype} needs {nbytes} bytes, its data_offsets span "
                f"{offsets[1] - offsets[0]}"
            )
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise CheckpointError(f"{bad} {name!r} starts at byte {begin}, the previous tensor ends at {end} "
                                  "(ranges must not overlap or leave holes)")
        end = stop
    if end != data_size:
        raise CheckpointError(f"{path}: malformed safetensors file: the tensors cover {end} data bytes, the file "
                              f"holds {data_size}")


def _config_of(path: Path, header: Mapping[str, Any]) -> dict[str, Any]:
    meta = header.get("__metadata__") or {}
    if _META_KEY not in meta:
        raise CheckpointError(
            f"{path}: a safetensors file without a sam3d-eval config (no '{_META_KEY}' metadata); it cannot be "
            "rebuilt without knowing the architecture"
        )
    try:
        config = json.loads(meta[_META_KEY])
    except ValueError as err:
        raise CheckpointError(f"{path}: the sam3d-eval config is not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: the metadata is not a {CHECKPOINT_FORMAT} config")
    version = config.get("format_version")
    if not _is_int(version) or version < 1:
        raise CheckpointError(f"{path}: format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {config.get('format_version')} is newer than this sam3d-eval "
            f"reads ({FORMAT_VERSION}); upgrade sam3d-eval"
        )
    return config


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's JSON config from its header alone (framing and config validated, weights not read)."""
    path = Path(path)
    return _config_of(path, _check_file(path))


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as err:
        raise CheckpointError(f"{path}: malformed safetensors file ({err})") from None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Validate and read a checkpoint's config and tensors (CPU) without building the model. The header's
    byte ranges are checked against the file first, so no more memory is taken than the file's size."""
    path = Path(path)
    config = read_checkpoint_config(path)
    return Checkpoint(path, config, _load_tensors(path))


class _ParametersOnMeta(TorchFunctionMode):
    """Puts the tensors that modules allocate for their weights (`torch.empty` & co. with no device given) on
    the meta device: shapes without memory. Everything else runs as usual (the icosphere template's
    `torch.unique` has no meta kernel). A torch function mode is thread-local: no process-wide change."""

    _FACTORIES = frozenset({torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._FACTORIES and kwargs.get("device") is None:
            kwargs = {**kwargs, "device": "meta"}
        return func(*args, **kwargs)


def model_shapes(config: ReferenceConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every stored weight (`state_dict` entry) `ReferenceModel(config)` has, computed on the
    meta device: no weight memory is allocated, whatever the config's sizes."""
    with _ParametersOnMeta():
        model = ReferenceModel(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _model_config_of(path: Path, config: Mapping[str, Any]) -> ReferenceConfig:
    """The architecture, its version and the model config a checkpoint's JSON config names."""
    arch = config.get("architecture")
    if arch != ARCHITECTURE:
        raise CheckpointError(f"{path}: architecture {arch!r} is not one this sam3d-eval builds ({ARCHITECTURE!r})")
    if config.get("architecture_version") != ARCHITECTURE_VERSION:
        raise CheckpointError(
            f"{path}: {arch} version {config.get('architecture_version')!r}; this sam3d-eval builds version "
            f"{ARCHITECTURE_VERSION}"
        )
    try:
        return ReferenceConfig.from_dict(config.get("model") or {})
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid model config: {_first_line(err)}") from None


def _check_shapes(path: Path, stored: Mapping[str, tuple[tuple[int, ...], str]], config: ReferenceConfig,
                  what: str) -> None:
    """The stored model weights (name -> (shape, dtype)) are exactly the ones `config` builds."""
    # Every encoder block and decoder layer holds at least one weight: a config with more of them than the
    # file has tensors cannot fit it, and is refused before its modules are made (a million meta layers
    # would still take minutes and gigabytes of Python objects).
    try:
        layers = len(config.channels) * (1 + int(config.blocks_per_stage)) + int(config.decoder_layers)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid model config: {_first_line(err)}") from None
    if layers > len(stored):
        raise CheckpointError(f"{path}: {what} has {layers} layers, more than the file's {len(stored)} weight tensors")
    try:
        shapes = model_shapes(config)
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: invalid model config: {_first_line(err)}") from None
    missing, unexpected = sorted(set(shapes) - set(stored)), sorted(set(stored) - set(shapes))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the architecture {what} builds (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]})"
        )
    for k, shape in shapes.items():
        if stored[k][0] != shape:
            n_config = sum(math.prod(s) for s in shapes.values())
            n_file = sum(math.prod(s) for s, _ in stored.values())
            raise CheckpointError(
                f"{path}: weight {k} has shape {stored[k][0]}, {what} builds {shape} ({n_config:,} parameters "
                f"against the file's {n_file:,})"
            )
        if stored[k][1] not in _FLOAT_DTYPES:
            raise CheckpointError(f"{path}: weight {k} is stored as {stored[k][1]}, not a floating-point dtype")


def check_checkpoint(path: str | os.PathLike, model_config: ReferenceConfig | None = None) -> dict[str, Any]:
    """Validate a checkpoint from its header alone, allocating no weight: the framing, every tensor's dtype,
    shape and byte range against the file's size, the format, architecture and model config, and that the
    stored `model/` weights have the shapes that config builds and, when `model_config` is given, the shapes
    it builds (a run initialised from the file). Returns the JSON config; raises a one-line
    `CheckpointError` naming the file and the first mismatch."""
    path = Path(path)
    header = _check_file(path)
    config = _config_of(path, header)
    own = _model_config_of(path, config)
    stored = {k[len(_MODEL_PREFIX):]: (tuple(e["shape"]), e["dtype"]) for k, e in header.items()
              if k != "__metadata__" and k.startswith(_MODEL_PREFIX)}
    _check_shapes(path, stored, own, "its config")
    if model_config is not None and model_config != own:
        _check_shapes(path, stored, model_config, "this model config")
    return config


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> ReferenceModel:
    """Rebuild the model a checkpoint describes, with its weights, in eval mode on `device`.

    The returned model carries the checkpoint's JSON config as `model.checkpoint_config`, the file's absolute
    path as `model.checkpoint_path`, and implements
    `Predictor` (`name` is "reference/stage<k>" when the checkpoint records a stage). Raises
    `CheckpointError` for pickles, truncated or malformed files, configs of another architecture or
    version, and weights that do not fit the config, all found from the header (`check_checkpoint`) before
    the model is built.
    """
    path = Path(path)
    config = check_checkpoint(path)
    model = ReferenceModel(ReferenceConfig.from_dict(config.get("model") or {}))
    model.load_state_dict({k[len(_MODEL_PREFIX):]: v for k, v in _load_tensors(path).items()
                           if k.startswith(_MODEL_PREFIX)})
    model.checkpoint_config = config
    model.checkpoint_path = str(path.resolve())
    if "stage" in config:
        model.name = f"reference/stage{config['stage']}"
    return model.to(device).eval()
