"""The benchmark ratio check (benchmarks/ratios.py, wired in benchmarks/conftest.py): which benchmarks are ours,
the ratios, the verdict, and the refusals of timings that cannot carry one (quick sizes, too few rounds)."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

_BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
_PATH = _BENCH / "ratios.py"
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


def test_pairs_with_too_few_rounds_are_set_aside_not_failed():
    assert ratios.MIN_ROUNDS == 3
    recs = [dict(group="g", name="t[ours]", params={"impl": "ours"}, median=2.0, rounds=5),
            dict(group="g", name="t[peer]", params={"impl": "peer"}, median=1.0, rounds=7),
            dict(group="g", name="t[slow]", params={"impl": "slow"}, median=4.0, rounds=1),
            dict(group="h", name="test_ours", params={}, median=1.0)]  # no rounds recorded: never judged
    recs.append(dict(group="h", name="test_peer", params={}, median=1.0, rounds=9))
    rounds = ratios.collect_rounds(recs)
    assert rounds == {"g :: t[ours] / t[peer]": 5, "g :: t[ours] / t[slow]": 1, "h :: test_ours / test_peer": 0}
    now = ratios.collect_ratios(recs)
    base = {k: v / 3 for k, v in now.items()}  # every pair is 3x slower than its baseline
    base_rounds = dict(rounds, **{"g :: t[ours] / t[peer]": 2})
    res = ratios.check_ratios(now, base, 0.15, current_rounds=rounds, baseline_rounds=base_rounds)
    # the only pair with >= 3 rounds now had 2 in the baseline: nothing is judged, nothing regresses
    assert res["regressed"] == [] and res["unchanged"] == [] and res["improved"] == []
    assert res["too_few_rounds"] == [("g :: t[ours] / t[peer]", 5, 2), ("g :: t[ours] / t[slow]", 1, 1),
                                     ("h :: test_ours / test_peer", 0, 0)]
    res = ratios.check_ratios(now, base, 0.15, current_rounds=rounds, baseline_rounds=rounds)
    assert [(k, round(c, 6)) for k, _, _, c in res["regressed"]] == [("g :: t[ours] / t[peer]", 2.0)]
    assert [k for k, *_ in res["too_few_rounds"]] == ["g :: t[ours] / t[slow]", "h :: test_ours / test_peer"]


def test_refusals_known_before_the_run():
    refuse = ratios.refusal_before_run
    assert refuse(quick=True) is None and refuse(quick=False, ratio_check="b.json") is None
    for option, kw in (("--ratio-check", dict(ratio_check="b.json")), ("--ratio-save", dict(ratio_save="b.json")),
                       ("--benchmark-compare-fail", dict(compare_fail=["median:15%"]))):
        reason = refuse(quick=True, **kw)
        assert reason.startswith(f"{option} refused: quick sizes") and "\n" not in reason
    assert "--benchmark-disable" in refuse(quick=False, ratio_save="b.json", timing_disabled=True)
    assert refuse(quick=False, compare_fail=["median:15%"], timing_disabled=True) is None  # pytest-benchmark's
    assert "tolerance" in refuse(quick=False, ratio_check="b.json", tolerance=-0.1)


def test_baseline_records_sizes_and_rounds_and_refuses_quick_ones(tmp_path):
    path = ratios.save_ratios(tmp_path / "r.json", {"b :: x / y": 0.5, "a :: x / y": 2.0},
                              rounds={"a :: x / y": 5, "b :: x / y": 1}, sizes="full")
    base = ratios.load_baseline(path)
    assert base.ratios == {"a :: x / y": 2.0, "b :: x / y": 0.5} == ratios.load_ratios(path)
    assert base.rounds == {"a :: x / y": 5, "b :: x / y": 1} and base.sizes == "full"
    record = json.loads(path.read_text())
    assert record["machine"]["python"] and record["sizes"] == "full" and record["min_rounds"] == 3
    with pytest.raises(ValueError, match="quick sizes"):
        ratios.save_ratios(tmp_path / "q.json", {"a :: x / y": 2.0}, rounds={"a :: x / y": 5}, sizes="quick")
    assert not (tmp_path / "q.json").exists()
    (tmp_path / "q.json").write_text(json.dumps(dict(record, sizes="quick")))  # a hand-made quick baseline
    with pytest.raises(ValueError, match="saved at 'quick' sizes refused: quick sizes"):
        ratios.load_baseline(tmp_path / "q.json")
    old = {k: v for k, v in record.items() if k not in ("sizes", "rounds", "min_rounds")}
    (tmp_path / "v1.json").write_text(json.dumps(dict(old, version=1)))  # written before sizes/rounds existed
    with pytest.raises(ValueError, match="does not record its sizes mode and rounds"):
        ratios.load_ratios(tmp_path / "v1.json")
    (tmp_path / "other.json").write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(ValueError, match="not a benchmark-ratio baseline"):
        ratios.load_ratios(tmp_path / "other.json")


def test_stored_baseline_is_readable():
    stored = _PATH.with_name("ratios.json")
    if stored.exists():
        assert ratios.load_ratios(stored)


# -- the options end to end: a tiny benchmark module run by pytest in a child process -----------------------
#
# `ours` and `peer` run the same single-threaded numpy loop, its repetitions calibrated at import so that one
# round takes >= 25 ms on whatever machine runs it (fixed overheads then stay a few % of a round); `ours`
# runs BENCH_OURS_FACTOR times as many repetitions. The rounds are timed in CPU time
# (--benchmark-timer=time.process_time; the ratio machinery does not care which timer): the loop is
# single-threaded, so CPU time is its work, and the time other processes of a shared machine hold the core,
# which can change between the rounds of `ours` and those of `peer` (they are timed one after the other) and
# which no median removes, is left out. Why a 25% tolerance cannot cry wolf while a planted 2x slowdown is
# far outside it, from the arithmetic rather than from one machine's timings: each ratio is
# median(ours) / median(peer) over k = 7 rounds each, and the check compares two such ratios, four medians in
# all. A median of 7 rounds ignores up to 3 disturbed rounds (cache evictions, frequency changes); for the
# rounds it keeps, a per-round spread of sigma gives about 1.25 sigma / sqrt(7) = 0.47 sigma per median and
# sqrt(4) x 0.47 = 0.95 sigma for the change of the ratio. Even at sigma = 10% (an idle machine gives ~2%)
# the tolerance is 2.6 standard deviations away, and the planted slowdown (+100%, a little less once the
# shared fixed overhead is counted) lies 7 standard deviations beyond it.

_BENCH_MODULE = textwrap.dedent('''
    import os, time
    import numpy as np
    import pytest

    X0 = np.linspace(0.0, 1.0, 20_000)  # 160 kB: stays in cache, so a neighbour's memory traffic matters little
    FACTOR = int(os.environ.get("BENCH_OURS_FACTOR", "1"))
    ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))

    def work(reps):
        x = X0
        for _ in range(reps):
            x = np.sqrt(x * x + 1.0)
        return x

    def _calibrate(target=0.025):  # the fewest repetitions (a power of 2) that take >= target s of CPU time
        reps = 16
        while True:
            took = []
            for _ in range(2):
                t = time.process_time()
                work(reps)
                took.append(time.process_time() - t)
            if min(took) >= target:
                return reps
            reps *= 2

    REPS = _calibrate()

    @pytest.mark.benchmark(group="synthetic")
    @pytest.mark.parametrize("impl", ["ours", "peer"])
    def test_kernel(benchmark, impl):
        reps = REPS * (FACTOR if impl == "ours" else 1)
        benchmark.pedantic(work, (reps,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
''')

# benchmarks/conftest.py applies to files under benchmarks/ only: load it from the generated folder
_SHIM_CONFTEST = textwrap.dedent(f'''
    import importlib.util, sys
    sys.path.insert(0, {str(_BENCH)!r})
    _spec = importlib.util.spec_from_file_location("sam3d_benchmarks_conftest", {str(_BENCH / "conftest.py")!r})
    _m = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_m)
    globals().update({{k: v for k, v in vars(_m).items() if k.startswith("pytest_")}})
''')

_PAIR = "synthetic :: test_kernel[ours] / test_kernel[peer]"


@pytest.fixture
def bench_dir(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the repository's configuration
    (tmp_path / "conftest.py").write_text(_SHIM_CONFTEST)
    (tmp_path / "bench_synthetic.py").write_text(_BENCH_MODULE)
    return tmp_path


def _pytest(where, *args, factor=1, rounds=7, quick_env=False):
    env = {k: v for k, v in os.environ.items() if k != "SAM3D_BENCH_QUICK"}
    env.update(BENCH_OURS_FACTOR=str(factor), BENCH_ROUNDS=str(rounds), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if quick_env:
        env["SAM3D_BENCH_QUICK"] = "1"
    proc = subprocess.run([sys.executable, "-m", "pytest", "bench_synthetic.py", "-q", "-p", "no:cacheprovider",
                           "--benchmark-storage", f"file://{where / 'storage'}",
                           "--benchmark-timer=time.process_time", *args],
                          cwd=where, env=env, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def _lines(out, word):
    return [line for line in out.splitlines() if word in line]


def test_same_code_twice_passes_and_a_planted_2x_slowdown_fails(bench_dir):
    base = bench_dir / "ratios.json"
    rc, out = _pytest(bench_dir, f"--ratio-save={base}")
    assert rc == 0, out
    record = json.loads(base.read_text())
    assert record["sizes"] == "full" and record["rounds"] == {_PAIR: 7}, record
    assert 0.7 < record["ratios"][_PAIR] < 1.4, record  # the same work on both sides

    rc, out = _pytest(bench_dir, f"--ratio-check={base}", "--ratio-tolerance=0.25")
    assert rc == 0, out
    assert _lines(out, "ratio check against") and _lines(out, "0 regressed") and not _lines(out, "REGRESSED"), out

    rc, out = _pytest(bench_dir, f"--ratio-check={base}", "--ratio-tolerance=0.25", factor=2)
    assert rc == 1, out
    (line,) = _lines(out, "REGRESSED")
    assert _PAIR in line, out

    # the same planted slowdown timed with 2 rounds: not judged, refused in one line, and not exit 1
    rc, out = _pytest(bench_dir, f"--ratio-check={base}", "--ratio-tolerance=0.25", factor=2, rounds=2)
    assert rc == 4 and not _lines(out, "REGRESSED"), out
    (line,) = _lines(out, "refused")
    assert "fewer than 3 rounds" in line and "one sample" in line, out

    # a baseline that says it was saved at quick sizes is refused before anything runs
    quick_base = bench_dir / "quick.json"
    quick_base.write_text(json.dumps(dict(record, sizes="quick")))
    rc, out = _pytest(bench_dir, f"--ratio-check={quick_base}")
    assert rc == 4 and not _lines(out, "passed"), out
    (line,) = _lines(out, "refused")
    assert line.startswith("ERROR: --ratio-check") and "quick sizes" in line and "fixed overheads" in line, out


@pytest.mark.parametrize("args,quick_env", [
    (["--quick", "--ratio-check=missing.json"], False),
    (["--ratio-save=r.json"], True),  # SAM3D_BENCH_QUICK=1 is the same as --quick
    (["--quick", "--benchmark-compare", "--benchmark-compare-fail=median:15%"], False),
])
def test_quick_sizes_are_refused_before_the_run(bench_dir, args, quick_env):
    rc, out = _pytest(bench_dir, *args, quick_env=quick_env)
    assert rc == 4, out
    assert not _lines(out, "passed") and not (bench_dir / "r.json").exists(), out  # nothing ran, nothing saved
    (line,) = _lines(out, "refused")
    option = args[-1].split("=")[0]
    assert line.startswith(f"ERROR: {option} refused: quick sizes") and "not the work" in line, out


def test_compare_fail_against_a_quick_save_is_refused(bench_dir):
    rc, out = _pytest(bench_dir, "--benchmark-save=quick", rounds=1, quick_env=True)
    assert rc == 0, out
    (saved,) = (bench_dir / "storage").rglob("0001_quick.json")
    assert json.loads(saved.read_text())["machine_info"]["sam3d_bench_sizes"] == "quick"
    rc, out = _pytest(bench_dir, "--benchmark-compare=0001", "--benchmark-compare-fail=median:15%", rounds=1)
    assert rc == 4 and not _lines(out, "passed"), out
    (line,) = _lines(out, "refused")
    assert "compared save was made at quick sizes" in line, out
