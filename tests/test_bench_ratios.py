"""The benchmark ratio check (benchmarks/ratios.py): which benchmarks are ours, the ratios, the verdict."""

import importlib.util
import json
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "ratios.py"
_spec = importlib.util.spec_from_file_location("bench_ratios", _PATH)
ratios = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ratios)


def test_is_ours_from_params_and_names():
    assert ratios.is_ours("test_chamfer_one_pair[2000-ours]", {"n": 2000, "peer": "ours"})
    assert not ratios.is_ours("test_chamfer_one_pair[2000-ours_no_policy]", {"n": 2000, "peer": "ours_no_policy"})
    assert not ratios.is_ours("test_chamfer_one_pair[2000-ckdtree]", {"n": 2000, "peer": "ckdtree"})
    assert ratios.is_ours("test_ours_points", {}) and ratios.is_ours("test_lpips_ours[alex]", None)
    assert not ratios.is_ours("test_trimesh_sample_surface", {}) and not ratios.is_ours("test_contours", {})


def test_collect_and_check():
    recs = [
        dict(group="g", name="t[ours]", params={"peer": "ours"}, median=2.0),
        dict(group="g", name="t[peer]", params={"peer": "peer"}, median=4.0),
        dict(group="g", name="t[ours_no_policy]", params={"peer": "ours_no_policy"}, median=1.0),
        dict(group="h", name="test_ours_a", params={}, median=3.0),
        dict(group="h", name="test_ours_b", params={}, median=6.0),
        dict(group="h", name="test_peer", params={}, median=3.0),
        dict(group="lonely", name="test_ours_x", params={}, median=1.0),  # no peer: nothing to divide by
        dict(group="g", name="t[broken]", params={"peer": "broken"}, median=float("nan")),  # not timed
    ]
    got = ratios.collect_ratios(recs)
    assert got == {"g :: t[ours] / t[peer]": 0.5, "g :: t[ours] / t[ours_no_policy]": 2.0,
                   "h :: test_ours_a / test_peer": 1.0, "h :: test_ours_b / test_peer": 2.0}
    base = dict(got, **{"gone :: x / y": 1.0})
    now = dict(got)
    now["g :: t[ours] / t[peer]"] = 0.5 * 1.2  # ours 20% slower relative to the same peer
    now["h :: test_ours_b / test_peer"] = 2.0 * 0.5  # twice as fast
    now["new :: a / b"] = 3.0
    res = ratios.check_ratios(now, base, tolerance=0.15)
    assert [k for k, *_ in res["regressed"]] == ["g :: t[ours] / t[peer]"]
    assert res["regressed"][0][3] == pytest.approx(0.2)
    assert [k for k, *_ in res["improved"]] == ["h :: test_ours_b / test_peer"]
    assert res["missing"] == ["gone :: x / y"] and res["new"] == ["new :: a / b"] and len(res["unchanged"]) == 2
    assert ratios.check_ratios(now, base, tolerance=0.25)["regressed"] == []
    with pytest.raises(ValueError):
        ratios.check_ratios(now, base, tolerance=-1)


def test_baseline_round_trip(tmp_path):
    path = ratios.save_ratios(tmp_path / "r.json", {"b :: x / y": 0.5, "a :: x / y": 2.0})
    assert ratios.load_ratios(path) == {"a :: x / y": 2.0, "b :: x / y": 0.5}
    assert json.loads(path.read_text())["machine"]["python"]
    (tmp_path / "other.json").write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(ValueError, match="not a benchmark-ratio baseline"):
        ratios.load_ratios(tmp_path / "other.json")


def test_stored_baseline_is_readable():
    stored = _PATH.with_name("ratios.json")
    if stored.exists():
        assert ratios.load_ratios(stored)
