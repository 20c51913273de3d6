"""`config_io`: the one reader of TOML / JSON settings files and the one checked table-to-dataclass conversion
that recipes, the engine config, protocol files, model configs and generation settings share."""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same API under its older name
    import tomli as tomllib

import pytest

from sam3d_eval.config_io import check_keys, dataclass_from_mapping, field_names, read_config_file

PKG = pathlib.Path(__file__).resolve().parents[1] / "sam3d_eval"


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float = 0.0
    tags: tuple[str, ...] = ()


class MyError(ValueError):
    pass


def test_dataclass_from_mapping_builds_converts_and_refuses_unknown_keys():
    assert dataclass_from_mapping(Point, {"x": 1.0}, where="t") == Point(1.0)
    got = dataclass_from_mapping(Point, {"x": 1, "tags": ["a"]}, where="t",
                                 convert=lambda d: {**d, "tags": tuple(d["tags"])})
    assert got == Point(1, 0.0, ("a",))
    origin = Point(5.0, 6.0)
    moved = dataclass_from_mapping(Point, {"y": 2.0}, where="t", make=lambda **kw: dataclasses.replace(origin, **kw))
    assert moved == Point(5.0, 2.0)
    with pytest.raises(MyError) as exc:
        dataclass_from_mapping(Point, {"x": 1, "z": 2, "w": 3}, where="file.toml [point]", error=MyError)
    assert str(exc.value) == "file.toml [point]: unknown key(s) 'z', 'w'; valid keys: x, y, tags"
    with pytest.raises(ValueError, match="^Point: unknown fields 'z'; valid keys: x, y, tags$"):
        dataclass_from_mapping(Point, {"z": 2}, where="Point", noun="fields")
    with pytest.raises(TypeError):  # a missing field is the constructor's error, unchanged
        dataclass_from_mapping(Point, {}, where="t")
    assert field_names(Point) == ("x", "y", "tags")
    check_keys({"a": 1}, ("a", "b"), where="t")


def _write(tmp_path, name, data):
    path = tmp_path / name
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return path


def test_read_config_file_reads_toml_and_json_by_suffix_or_as_asked(tmp_path):
    assert read_config_file(_write(tmp_path, "a.toml", 'x = 1\n[t]\ny = "z"\n')) == {"x": 1, "t": {"y": "z"}}
    assert read_config_file(_write(tmp_path, "a.json", '{"x": [1, 2]}')) == {"x": [1, 2]}
    assert read_config_file(_write(tmp_path, "a.cfg", '{"x": 1}')) == {"x": 1}  # not .toml: JSON
    assert read_config_file(_write(tmp_path, "r.txt", "x = 1\n"), format="toml") == {"x": 1}
    assert read_config_file(_write(tmp_path, "bom.json", b'\xef\xbb\xbf{"x": 1}')) == {"x": 1}
    with pytest.raises(ValueError, match="format must be one of toml, json"):
        read_config_file(tmp_path / "a.json", format="yaml")


@pytest.mark.parametrize("name, data, message", [
    ("bad.toml", "x = \n", r"bad.toml: not valid TOML \(Invalid value \(at line 1, column 5\)\)$"),
    ("bad.json", '{"x": 1,\n}', r"bad.json: not valid JSON \(.* at line 2, column 1\)$"),
    ("list.json", "[1, 2]", r"list.json: a recipe holds one JSON object of fields, got a list$"),
    ("latin.toml", b'x = "\xe9"\n', r"latin.toml: not UTF-8 text \(invalid continuation byte at byte 5\)$"),
])
def test_read_config_file_errors_are_one_line_naming_the_file(tmp_path, name, data, message):
    path = _write(tmp_path, name, data)
    with pytest.raises(MyError, match=message) as exc:
        read_config_file(path, what="recipe", error=MyError)
    assert str(exc.value).startswith(f"{path}: ") and "\n" not in str(exc.value)


def test_read_config_file_missing_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml: engine config does not exist"):
        read_config_file(tmp_path / "nope.toml", what="engine config")
    with pytest.raises(ValueError, match="is a folder, not a protocol file"):
        read_config_file(tmp_path, what="protocol file")


def test_toml_falls_back_to_tomli_and_says_what_it_needs_without_either(tmp_path, monkeypatch):
    path = _write(tmp_path, "a.toml", "x = 1\n")
    monkeypatch.setitem(sys.modules, "tomllib", None)  # Python 3.10
    monkeypatch.setitem(sys.modules, "tomli", tomllib)  # the same API under its 3.10 name
    assert read_config_file(path) == {"x": 1}
    monkeypatch.setitem(sys.modules, "tomli", None)
    with pytest.raises(ValueError, match=r"a.toml: reading a TOML config file needs Python 3.11 or the tomli "
                                         r"package; install tomli or write the file as .json$"):
        read_config_file(path)
    with pytest.raises(ValueError, match=r"needs Python 3.11 or the tomli package; install tomli$"):
        read_config_file(path, format="toml")  # a TOML-only file: no .json advice


def test_every_toml_read_of_the_package_goes_through_config_io():
    """tomllib exists from Python 3.11 only; pyproject says 3.10, where `read_config_file` uses tomli."""
    users = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            if any(n.split(".")[0] in ("tomllib", "tomli") for n in names):
                users.append(str(path.relative_to(PKG)))
    assert sorted(set(users)) == ["config_io.py"]
