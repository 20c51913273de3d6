"""pytest options for the benchmarks: the machine-independent ratio check (benchmarks/ratios.py).

    --ratio-save=FILE       store median(ours) / median(peer) of every benchmark group as a baseline
    --ratio-check=FILE      fail the session when a ratio grew by more than --ratio-tolerance over FILE's
    --ratio-tolerance=0.15  allowed relative growth of a ratio

    --quick                 the tiny sizes of benchmarks/sizes.py (with --benchmark-disable: every benchmark once,
                            untimed, so that none can rot; what `make test` runs)

Absolute-time tracking is pytest-benchmark's own: ``--benchmark-save=NAME`` then
``--benchmark-compare --benchmark-compare-fail=median:15%`` (same machine only).

Judgements that timings cannot support are refused, never failed (benchmarks/ratios.py says why): a refusal
is one line and pytest's usage-error exit status, 4, not the 1 of a regression. Refused before anything runs:
``--ratio-save``, ``--ratio-check`` or ``--benchmark-compare-fail`` at quick sizes; ``--ratio-*`` with
``--benchmark-disable``; a ratio baseline saved at quick sizes (or one that does not record its sizes mode and
rounds); ``--benchmark-compare-fail`` against a pytest-benchmark save made at quick sizes (every save records
the sizes mode in its machine_info as ``sam3d_bench_sizes``). Refused after the run: a check or save where no
ours/peer pair was timed with at least 3 rounds on both sides; pairs with fewer are listed as not judged while
the others are judged.
"""

from __future__ import annotations

# pytest's default "prepend" import mode puts this folder on sys.path for its conftest
import os

import pytest
from ratios import (FULL, MIN_ROUNDS, QUICK, QUICK_REASON, ROUNDS_REASON, check_ratios, collect_ratios,
                    collect_rounds, load_baseline, refusal_before_run, save_ratios)
from sizes import QUICK_ENV, quick

SIZES_KEY = "sam3d_bench_sizes"  # in pytest-benchmark's machine_info of every save


def pytest_addoption(parser):
    group = parser.getgroup("sam3d-eval benchmark ratios")
    group.addoption("--ratio-save", default=None, metavar="FILE",
                    help="write median(ours)/median(peer) per benchmark group to FILE (a baseline; full sizes, "
                         f">= {MIN_ROUNDS} rounds)")
    group.addoption("--ratio-check", default=None, metavar="FILE",
                    help="fail when a ratio grew by more than --ratio-tolerance over the baseline FILE (pairs "
                         f"timed with < {MIN_ROUNDS} rounds are not judged; refused at quick sizes)")
    group.addoption("--ratio-tolerance", type=float, default=0.15,
                    help="allowed relative growth of a ratio (default 0.15 = 15%%)")
    parser.getgroup("sam3d-eval benchmark sizes").addoption(
        "--quick", action="store_true", default=False,
        help=f"tiny sizes (benchmarks/sizes.py) so every benchmark runs in seconds; same as {QUICK_ENV}=1")


def pytest_configure(config):
    # before the bench_*.py files are imported: they read their sizes at import (sizes.sizes_for)
    if config.getoption("--quick", default=False):
        os.environ[QUICK_ENV] = "1"
    # runs before pytest-benchmark's own pytest_configure (trylast), which loads the --benchmark-compare files
    check = config.getoption("--ratio-check")
    reason = refusal_before_run(
        quick=quick(), ratio_save=config.getoption("--ratio-save"), ratio_check=check,
        compare_fail=config.getoption("benchmark_compare_fail", default=None),
        timing_disabled=bool(config.getoption("benchmark_disable", default=False)
                             and not config.getoption("benchmark_enable", default=False)),
        tolerance=config.getoption("--ratio-tolerance"))
    if reason:
        raise pytest.UsageError(reason)
    if check:
        try:
            config._sam3d_ratio_baseline = load_baseline(check)
        except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise pytest.UsageError(f"--ratio-check {check}: {exc}") from None


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info[SIZES_KEY] = QUICK if quick() else FULL


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_compare_machine_info(config, benchmarksession, machine_info, compared_benchmark):
    saved = (compared_benchmark.get("machine_info") or {}).get(SIZES_KEY)
    if saved == QUICK and config.getoption("benchmark_compare_fail", default=None):
        raise pytest.UsageError(f"--benchmark-compare-fail refused: the compared save was made at quick sizes; "
                                f"{QUICK_REASON}")


def _records(config) -> list[dict]:
    session = getattr(config, "_benchmarksession", None)
    out = []
    for b in getattr(session, "benchmarks", []) or []:
        if not b:
            continue
        out.append({"group": b.group, "name": b.name, "params": b.params, "median": b.stats.median,
                    "rounds": b.stats.rounds})
    return out


def _refuse(session, say, line):
    say(line)
    if session.exitstatus == pytest.ExitCode.OK:  # a failed benchmark (exit 1) stays a failure
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    save, check = config.getoption("--ratio-save"), config.getoption("--ratio-check")
    if not (save or check):
        return
    records = _records(config)
    ratios, rounds = collect_ratios(records), collect_rounds(records)
    tr = config.pluginmanager.get_plugin("terminalreporter")
    say = tr.write_line if tr is not None else print
    if tr is not None:
        tr.ensure_newline()
    what = " and ".join(opt for opt, value in (("--ratio-save", save), ("--ratio-check", check)) if value)
    if not ratios:
        _refuse(session, say, f"{what} refused: no benchmark group with one of ours and a peer was timed")
        return
    if not any(n >= MIN_ROUNDS for n in rounds.values()):
        _refuse(session, say, f"{what} refused: every ours/peer pair was timed with {ROUNDS_REASON}")
        return
    few = sorted(k for k, n in rounds.items() if n < MIN_ROUNDS)
    if save:
        path = save_ratios(save, ratios, rounds=rounds, sizes=FULL)
        say(f"ratio baseline: {len(ratios)} ours/peer ratios written to {path}"
            + (f" ({len(few)} stored but never judged: {ROUNDS_REASON})" if few else ""))
    if check:
        base = config._sam3d_ratio_baseline
        tol = config.getoption("--ratio-tolerance")
        res = check_ratios(ratios, base.ratios, tol, current_rounds=rounds, baseline_rounds=base.rounds)
        if not (res["regressed"] or res["improved"] or res["unchanged"]) and res["too_few_rounds"]:
            _refuse(session, say, f"--ratio-check refused: every pair measured both now and in {check} was "
                                  f"timed, now or then, with {ROUNDS_REASON}")
            return
        say(f"ratio check against {check} (tolerance {tol:.0%}): {len(res['regressed'])} regressed, "
            f"{len(res['improved'])} improved, {len(res['unchanged'])} unchanged, {len(res['new'])} new, "
            f"{len(res['missing'])} not measured"
            + (f", {len(res['too_few_rounds'])} not judged ({ROUNDS_REASON}; -v lists them)"
               if res["too_few_rounds"] else ""))
        for key, old, new, change in res["regressed"]:
            say(f"  REGRESSED {key}: ours/peer {old:.3f} -> {new:.3f} ({change:+.0%})")
        for key, old, new, change in res["improved"]:
            say(f"  improved  {key}: ours/peer {old:.3f} -> {new:.3f} ({change:+.0%})")
        if config.getoption("verbose") > 0:
            for key, now_n, base_n in res["too_few_rounds"]:
                say(f"  not judged {key}: {now_n} rounds now, {base_n} in the baseline")
        if res["regressed"]:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
