"""Protocol files (TOML / JSON): a preset plus the fields it changes, checked and fingerprinted like overrides;
and the command-line helpers that `evaluate`, `eval-meshes` and `compare` share."""

import argparse
import json
import sys

import pytest

from sam3d_eval.cli.eval_meshes import (ALIGNMENT_CHOICES, add_protocol_options, protocol_asked,
                                        resolve_protocol)
from sam3d_eval.evaluate.protocols import (PROTOCOL_FILE_KEYS, PROTOCOLS, get_protocol, load_protocol,
                                           protocol_from_settings)
from sam3d_eval.ops.alignment import ALIGNMENTS


def _file(tmp_path, text, name="p.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_restating_the_preset_is_the_preset(tmp_path):
    default = PROTOCOLS["default"]
    toml = _file(tmp_path, 'base = "default"\nalignment = "none"\nnum_samples = 100000\nseed = 0\n'
                           'taus = [0.01, 0.02, 0.05]\nchamfer = ["chamfer_l2_p3d", "chamfer_l1"]\n'
                           'appearance_elevations = [15, 45]\nicp_tolerance = 1e-6\n')
    got = load_protocol(toml)
    assert got == default and got.overrides == () and got.fingerprint() == default.fingerprint()
    record = {k: v for k, v in default.to_dict().items() if k in PROTOCOL_FILE_KEYS}  # every settable field
    js = _file(tmp_path, json.dumps({"base": "default", **record}), "p.json")
    assert load_protocol(js).fingerprint() == default.fingerprint()
    assert load_protocol(str(js)).label() == f"default v{default.version}"


def test_a_file_with_changes_equals_the_preset_with_overrides(tmp_path):
    expected = get_protocol("sam3d").with_overrides(num_samples=4000, alignment="scale_icp", taus=[0.02, 0.05])
    toml = _file(tmp_path, 'base = "sam3d"\nnum_samples = 4000\nalignment = "scale_icp"\ntaus = [0.02, 0.05]\n')
    js = _file(tmp_path, '{"base": "sam3d", "num_samples": 4000, "alignment": "scale_icp", "taus": [0.02, 0.05]}',
               "p.json")
    for path in (toml, js):
        got = load_protocol(path)
        assert got == expected and got.fingerprint() == expected.fingerprint()
        assert got.fingerprint() != PROTOCOLS["sam3d"].fingerprint()
        assert got.overrides == (("alignment", "scale_icp"), ("num_samples", 4000), ("taus", (0.02, 0.05)))
    # a field the command line cannot override is changed and recorded the same way
    other = protocol_from_settings({"base": "default", "normalization": "each_bbox_minus1_1"})
    assert other.normalization == "each_bbox_minus1_1"
    assert dict(other.overrides) == {"normalization": "each_bbox_minus1_1"}
    assert "overrides: normalization=each_bbox_minus1_1" in other.label()


@pytest.mark.parametrize("text, words", [
    ('base = "default"\nnum_sample = 5\ncolour = 1\n',
     ["unknown key(s) 'num_sample', 'colour'", "valid keys: base, alignment", "num_samples", "lpips_net"]),
    ('base = "default"\nnum_samples = "5"\n', ["num_samples must be an integer", "string '5'"]),
    ('base = "default"\nnum_samples = true\n', ["num_samples must be an integer", "boolean"]),
    ('base = "default"\ntaus = 0.1\n', ["taus must be a list of numbers"]),
    ('base = "default"\nchamfer = ["chamfer_l1", 2]\n', ["chamfer must be a list of strings"]),
    ('base = "default"\nicp_tolerance = nan\n', ["icp_tolerance must be finite"]),
    ('base = "default"\nalignment = "magic"\n', ["unknown alignment 'magic'", "rotation_search_icp"]),
    ('base = "default"\nnum_samples = 0\n', ["must be positive"]),
    ('base = "default"\nrotations = "so3"\n', ["unknown rotation grid"]),
    ('base = "default"\nname = "mine"\n', ["'name' cannot be set", "valid keys: base"]),
    ('num_samples = 5\n', ['base = "NAME"', "default, sam3d"]),
    ('base = "nope"\n', ["base must be a preset name", "'nope'"]),
    ('base = "default"\nnum_samples = \n', ["not valid TOML", "line 2"]),
])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, text, words):
    path = _file(tmp_path, text)
    with pytest.raises(ValueError) as exc:
        load_protocol(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_file_level_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.toml: protocol file does not exist"):
        load_protocol(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match=r"p.json: not valid JSON \(Expecting"):
        load_protocol(_file(tmp_path, '{"base": "default",}', "p.json"))
    with pytest.raises(ValueError, match="p.json: a protocol file holds one JSON object of fields, got a list"):
        load_protocol(_file(tmp_path, '["default"]', "p.json"))
    with pytest.raises(ValueError, match=r"p.yaml: a protocol file must be .toml or .json"):
        load_protocol(_file(tmp_path, "base: default\n", "p.yaml"))
    with pytest.raises(ValueError, match="unknown protocol 'nope'; available: default, sam3d.*protocol file"):
        load_protocol("nope")
    assert load_protocol("meshrcnn") is PROTOCOLS["meshrcnn"]
    assert load_protocol(PROTOCOLS["occnet"]) is PROTOCOLS["occnet"]


def test_toml_without_tomllib_or_tomli_says_what_it_needs(tmp_path, monkeypatch):
    path = _file(tmp_path, 'base = "default"\n')
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", None)
    with pytest.raises(ValueError, match=r"p.toml: reading a TOML protocol file needs Python 3.11 or the tomli"):
        load_protocol(path)
    assert load_protocol(_file(tmp_path, '{"base": "default"}', "p.json")) is PROTOCOLS["default"]


def test_alignment_choices_are_the_library_names():
    assert ALIGNMENT_CHOICES == ALIGNMENTS


def _parser(**kw):
    p = argparse.ArgumentParser()
    add_protocol_options(p, **kw)
    return p


def test_resolve_protocol_for_a_parser_without_sample_options(tmp_path):
    """`compare` registers --protocol (default none) and --alignment only."""
    p = _parser(default=None, default_help="default: the runs' own protocol")
    assert "the runs' own protocol" in p.format_help() and "rotation_search_icp" in p.format_help()
    args = p.parse_args([])
    assert resolve_protocol(args) is None and not protocol_asked(args)
    assert resolve_protocol(args, default=PROTOCOLS["occnet"]) is PROTOCOLS["occnet"]
    args = p.parse_args(["--alignment", "icp"])
    assert protocol_asked(args)
    with pytest.raises(ValueError, match="--alignment: no protocol to override"):
        resolve_protocol(args)
    got = resolve_protocol(args, default="meshrcnn")
    assert got == get_protocol("meshrcnn").with_overrides(alignment="icp") and got.alignment == "icp"
    path = _file(tmp_path, 'base = "default"\nnum_samples = 4000\n')
    got = resolve_protocol(p.parse_args(["--protocol", str(path), "--alignment", "rotation_search_icp"]),
                           default="meshrcnn")  # --protocol wins over the default
    assert got == get_protocol("default").with_overrides(num_samples=4000, alignment="rotation_search_icp")
    with pytest.raises(SystemExit):
        p.parse_args(["--alignment", "magic"])


def test_resolve_protocol_applies_samples_taus_seed_where_present():
    p = _parser()
    p.add_argument("--samples", type=int)
    p.add_argument("--taus", type=float, nargs="+")
    p.add_argument("--seed", type=int)
    got = resolve_protocol(p.parse_args(["--samples", "300", "--taus", "0.1", "--seed", "3", "--alignment", "icp"]))
    assert got == get_protocol("default").with_overrides(num_samples=300, taus=[0.1], seed=3, alignment="icp")
    assert resolve_protocol(p.parse_args([])) is PROTOCOLS["default"]
    with pytest.raises(ValueError, match="--samples must be positive"):
        resolve_protocol(p.parse_args(["--samples", "0"]))
    with pytest.raises(ValueError, match="--taus: protocol 'occnet' reports no F-score"):
        resolve_protocol(p.parse_args(["--protocol", "occnet", "--taus", "0.1"]))
