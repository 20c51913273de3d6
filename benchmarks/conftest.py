"""pytest options for the benchmarks: the machine-independent ratio check (benchmarks/ratios.py).

    --ratio-save=FILE       store median(ours) / median(peer) of every benchmark group as a baseline
    --ratio-check=FILE      fail the session when a ratio grew by more than --ratio-tolerance over FILE's
    --ratio-tolerance=0.15  allowed relative growth of a ratio

    --quick                 the tiny sizes of benchmarks/sizes.py (with --benchmark-disable: every benchmark once,
                            untimed, so that none can rot; what `make test` runs)

Absolute-time tracking is pytest-benchmark's own: ``--benchmark-save=NAME`` then
``--benchmark-compare --benchmark-compare-fail=median:15%`` (same machine only).
"""

from __future__ import annotations

# pytest's default "prepend" import mode puts this folder on sys.path for its conftest
import os

from ratios import check_ratios, collect_ratios, load_ratios, save_ratios
from sizes import QUICK_ENV


def pytest_addoption(parser):
    group = parser.getgroup("sam3d-eval benchmark ratios")
    group.addoption("--ratio-save", default=None, metavar="FILE",
                    help="write median(ours)/median(peer) per benchmark group to FILE (a baseline)")
    group.addoption("--ratio-check", default=None, metavar="FILE",
                    help="fail when a ratio grew by more than --ratio-tolerance over the baseline FILE")
    group.addoption("--ratio-tolerance", type=float, default=0.15,
                    help="allowed relative growth of a ratio (default 0.15 = 15%%)")
    parser.getgroup("sam3d-eval benchmark sizes").addoption(
        "--quick", action="store_true", default=False,
        help=f"tiny sizes (benchmarks/sizes.py) so every benchmark runs in seconds; same as {QUICK_ENV}=1")


def pytest_configure(config):
    # before the bench_*.py files are imported: they read their sizes at import (sizes.sizes_for)
    if config.getoption("--quick", default=False):
        os.environ[QUICK_ENV] = "1"


def _records(config) -> list[dict]:
    session = getattr(config, "_benchmarksession", None)
    out = []
    for b in getattr(session, "benchmarks", []) or []:
        if not b:
            continue
        out.append({"group": b.group, "name": b.name, "params": b.params, "median": b.stats.median})
    return out


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    save, check = config.getoption("--ratio-save"), config.getoption("--ratio-check")
    if not (save or check):
        return
    ratios = collect_ratios(_records(config))
    tr = config.pluginmanager.get_plugin("terminalreporter")
    say = tr.write_line if tr is not None else print
    if tr is not None:
        tr.ensure_newline()
    if not ratios:
        say("ratio check: no benchmark group with one of ours and a peer was timed (--benchmark-disable?)")
        if check:
            session.exitstatus = 1
        return
    if save:
        say(f"ratio baseline: {len(ratios)} ours/peer ratios written to {save_ratios(save, ratios)}")
    if check:
        res = check_ratios(ratios, load_ratios(check), config.getoption("--ratio-tolerance"))
        tol = config.getoption("--ratio-tolerance")
        say(f"ratio check against {check} (tolerance {tol:.0%}): {len(res['regressed'])} regressed, "
            f"{len(res['improved'])} improved, {len(res['unchanged'])} unchanged, {len(res['new'])} new, "
            f"{len(res['missing'])} not measured")
        for key, old, new, change in res["regressed"]:
            say(f"  REGRESSED {key}: ours/peer {old:.3f} -> {new:.3f} ({change:+.0%})")
        for key, old, new, change in res["improved"]:
            say(f"  improved  {key}: ours/peer {old:.3f} -> {new:.3f} ({change:+.0%})")
        if res["regressed"]:
            session.exitstatus = 1
