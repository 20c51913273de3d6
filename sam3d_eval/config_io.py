"""Settings files and tables: one reader for the TOML / JSON files the suite takes (recipes, the engine
config, protocol files, generation settings) and one checked conversion of a table to a dataclass.

`read_config_file(path)` returns the file's table as a dict; every problem is one line starting with the
path: missing, a folder, unreadable, not UTF-8, not valid TOML / JSON (with line and column), not one
table. TOML is read with `tomllib` (Python 3.11+) or `tomli` (Python 3.10, a dependency there).

`dataclass_from_mapping(cls, table, where=...)` refuses keys that are not fields of `cls` (naming them and
the valid ones) and builds the instance; `check_keys` is the refusal alone, for tables that are not one
dataclass's fields.

Standard library only: every layer may use it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Callable, Iterable, Mapping, TypeVar

__all__ = ["check_keys", "dataclass_from_mapping", "field_names", "read_config_file", "value_kind"]

T = TypeVar("T")
CONFIG_FORMATS = ("toml", "json")


def value_kind(v: Any) -> str:
    """A value's kind in words, as TOML / JSON name it ("a list", "a table", "a number", ...)."""
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    return {str: "a string", list: "a list", dict: "a table", type(None): "null"}.get(type(v), type(v).__name__)


def field_names(cls: type) -> tuple[str, ...]:
    """The names a dataclass's constructor takes, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def check_keys(mapping: Mapping[str, Any], valid: Iterable[str], *, where: str, noun: str = "key(s)",
               error: type[Exception] = ValueError) -> None:
    """Raise `error` when `mapping` has a key outside `valid`: one line,
    ``{where}: unknown {noun} 'a', 'b'; valid keys: x, y, z`` (unknown keys in the mapping's order, valid
    ones in the given order)."""
    valid = tuple(valid)
    unknown = [k for k in mapping if k not in valid]
    if unknown:
        raise error(f"{where}: unknown {noun} {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}")


def dataclass_from_mapping(
    cls: type[T],
    mapping: Mapping[str, Any],
    *,
    where: str,
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    make: Callable[..., T] | None = None,
    noun: str = "key(s)",
    error: type[Exception] = ValueError,
) -> T:
    """`cls(**mapping)` after `check_keys` against the fields of dataclass `cls`.

    convert: applied to (a copy of) the checked table before the call, e.g. lists to tuples or sub-tables
        to their dataclasses. make: what is called with the table instead of `cls` (a preset with fields
        replaced, or `cls` with fixed arguments beside the table's). noun, error: as in `check_keys`.
    Errors of the call itself (a missing field, a bad value) pass through unchanged.
    """
    check_keys(mapping, field_names(cls), where=where, noun=noun, error=error)
    table = dict(mapping)
    if convert is not None:
        table = convert(table)
    return (make or cls)(**table)


def _toml_module():
    """`tomllib` (Python >= 3.11), else `tomli`; None without either. Imported at call time."""
    try:
        import tomllib

        return tomllib
    except ModuleNotFoundError:
        pass
    try:
        import tomli

        return tomli
    except ModuleNotFoundError:
        return None


def read_config_file(
    path: str | os.PathLike,
    *,
    what: str = "config file",
    format: str | None = None,
    error: type[Exception] = ValueError,
) -> dict[str, Any]:
    """The table a TOML or JSON file holds, as a dict.

    format: "toml" or "json"; None picks by suffix (``.toml`` is TOML, any other JSON). what: how messages
    name the file ("recipe", "protocol file", ...). A missing path is `FileNotFoundError`
    (``{path}: {what} does not exist``); every other problem is `error` (a `ValueError` subclass by
    default), one line starting with the path: a folder, unreadable, not UTF-8 text, not valid TOML / JSON
    (the parser's message with line and column), JSON that is not one object, TOML without `tomllib` or
    `tomli`. A byte-order mark is accepted. `exists()`, not `is_file()`: a shell's process substitution
    (``--config <(echo '{...}')``) is a pipe.
    """
    path = pathlib.Path(path)
    by_suffix = format is None
    if by_suffix:
        format = "toml" if path.suffix.lower() == ".toml" else "json"
    if format not in CONFIG_FORMATS:
        raise ValueError(f"format must be one of {', '.join(CONFIG_FORMATS)}, got {format!r}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} does not exist")
    if path.is_dir():
        raise error(f"{path}: is a folder, not a {what}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if format == "json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise error(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
        if not isinstance(doc, dict):
            raise error(f"{path}: a {what} holds one JSON object of fields, got {value_kind(doc)}")
        return doc
    toml = _toml_module()
    if toml is None:
        advice = "install tomli or write the file as .json" if by_suffix else "install tomli"
        raise error(f"{path}: reading a TOML {what} needs Python 3.11 or the tomli package; {advice}")
    try:
        return toml.loads(text)
    except toml.TOMLDecodeError as err:
        lines = str(err).splitlines()
        raise error(f"{path}: not valid TOML ({lines[0] if lines else type(err).__name__})") from None
