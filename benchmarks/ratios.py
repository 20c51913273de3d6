"""Machine-independent regression check: each kernel's time relative to its in-run peer.

Absolute times differ between machines (and between runs on a loaded machine); the ratio of our median to a
peer's median measured in the same session moves much less. In every benchmark group, each benchmark of
ours (a parameter value ``"ours"``, or a test name starting ``test_ours`` or containing ``_ours``) is divided
by each other member (the peers, variants such as ``ours_no_policy`` included): the key is
``"<group> :: <ours name> / <peer name>"``, the value ``median(ours) / median(peer)``.

    python -m pytest benchmarks --ratio-save=benchmarks/ratios.json            # store the baseline ratios
    python -m pytest benchmarks --ratio-check=benchmarks/ratios.json           # fail when a ratio regressed
    python -m pytest benchmarks --ratio-check=benchmarks/ratios.json --ratio-tolerance=0.25

A ratio *regresses* when it grows by more than the tolerance (default 15%) over the stored one: ours got
slower relative to the same peer on the same machine. Pairs absent from either side are listed, not failed
(a peer that is not installed, a GPU group on a CPU machine).

Only timings that can carry a verdict are judged:

- **full sizes only**: quick sizes (``--quick`` / ``SAM3D_BENCH_QUICK=1``) time fixed overheads (imports,
  allocation, dispatch), not the work, so their ratios swing by whole multiples between two runs of the same
  code. Saving or checking ratios, and pytest-benchmark's ``--benchmark-compare-fail``, are refused at quick
  sizes, and a baseline records its sizes mode so that one saved at quick sizes cannot be checked against.
- **at least** `MIN_ROUNDS` **(3) rounds on both sides of a pair, in the run and in the baseline**: the median
  of 1 round is that one sample, of 2 rounds their mean, so one slow round (a scheduler hiccup, a page-cache
  miss) moves it by its whole excess, or half of it; the median of 3 rounds ignores any one slow round
  (of k rounds, any (k - 1) // 2). Pairs with fewer are listed as not judged, never failed.

Pure functions here; benchmarks/conftest.py wires them into pytest (a refused judgement is a usage error:
one line, pytest's exit status 4, never the exit status 1 of a regression).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

__all__ = ["MIN_ROUNDS", "QUICK_REASON", "ROUNDS_REASON", "Baseline", "check_ratios", "collect_ratios",
           "collect_rounds", "is_ours", "load_baseline", "load_ratios", "refusal_before_run", "save_ratios"]

FORMAT = "sam3d-eval-benchmark-ratios"
VERSION = 2  # 2: records the sizes mode and the rounds of every pair
MIN_ROUNDS = 3
FULL, QUICK = "full", "quick"
QUICK_REASON = ("quick sizes (--quick / SAM3D_BENCH_QUICK=1) time fixed overheads, not the work, so two runs "
                "of the same code differ by whole multiples; run at full sizes")
ROUNDS_REASON = (f"fewer than {MIN_ROUNDS} rounds: the median of 1-2 rounds is one sample, which one slow "
                 f"round moves")
_OURS_NAME = re.compile(r"(^test_ours|_ours)(\b|_|\[|$)")


def is_ours(name: str, params: Mapping[str, Any] | None) -> bool:
    """Whether a benchmark measures our implementation (module docstring), not a peer or a variant."""
    if params and any(v == "ours" for v in params.values()):
        return True
    if params and any(isinstance(v, str) and v.startswith("ours") for v in params.values()):
        return False  # a variant of ours (e.g. ours_no_policy): compared against, like a peer
    return bool(_OURS_NAME.search(name.split("[", 1)[0]))


def _pairs(benchmarks: Iterable[Mapping[str, Any]]):
    """``(key, ours record, peer record)`` for every ours/peer pair of timed records, sorted by group."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for b in benchmarks:
        if b.get("median") is None or not math.isfinite(b["median"]) or b["median"] <= 0:
            continue
        groups.setdefault(str(b.get("group") or b["name"].split("[", 1)[0]), []).append(b)
    for group, members in sorted(groups.items()):
        ours = [b for b in members if is_ours(b["name"], b.get("params"))]
        peers = [b for b in members if not is_ours(b["name"], b.get("params"))]
        for o in ours:
            for peer in peers:
                yield f"{group} :: {o['name']} / {peer['name']}", o, peer


def collect_ratios(benchmarks: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """``{"<group> :: <ours> / <peer>": median(ours) / median(peer)}`` from records with ``group``, ``name``,
    ``params`` and ``median`` (seconds); groups without a benchmark of ours or without a peer give nothing."""
    return {key: o["median"] / peer["median"] for key, o, peer in _pairs(benchmarks)}


def collect_rounds(benchmarks: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The rounds behind each ratio of `collect_ratios`: the fewer of ours and the peer (a record's
    ``rounds``; a record without it counts as 0 rounds, so its pairs are never judged)."""
    return {key: min(int(o.get("rounds") or 0), int(peer.get("rounds") or 0))
            for key, o, peer in _pairs(benchmarks)}


def refusal_before_run(*, quick: bool, ratio_save: Any = None, ratio_check: Any = None,
                       compare_fail: Any = None, timing_disabled: bool = False,
                       tolerance: float = 0.15) -> str | None:
    """Why the regression judgement asked for by these options cannot be made, in one line; None when it can.
    Known before anything is timed: quick sizes, timing disabled, a negative tolerance."""
    asked = [opt for opt, value in (("--ratio-save", ratio_save), ("--ratio-check", ratio_check),
                                    ("--benchmark-compare-fail", compare_fail)) if value]
    if not asked:
        return None
    if quick:
        return f"{' and '.join(asked)} refused: {QUICK_REASON}"
    ratio = [opt for opt in asked if opt.startswith("--ratio")]
    if ratio and timing_disabled:
        return f"{' and '.join(ratio)} refused: --benchmark-disable times nothing (every benchmark runs once, untimed)"
    if ratio_check and not (isinstance(tolerance, (int, float)) and tolerance >= 0):
        return f"--ratio-tolerance must be >= 0, got {tolerance}"
    return None


def save_ratios(path: str | Path, ratios: Mapping[str, float], *, rounds: Mapping[str, int],
                sizes: str) -> Path:
    """Write the baseline JSON: the ratios, the rounds behind each, the sizes mode, where and when measured.
    ValueError for quick sizes (module docstring): such a baseline could never be judged against."""
    if sizes != FULL:
        raise ValueError(f"ratio baseline refused: {QUICK_REASON}")
    path = Path(path)
    record = {"format": FORMAT, "version": VERSION,
              "measured": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "python": platform.python_version()},
              "sizes": sizes, "min_rounds": MIN_ROUNDS,
              "ratios": dict(sorted(ratios.items())),
              "rounds": {k: int(rounds.get(k, 0)) for k in sorted(ratios)}}
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


class Baseline(NamedTuple):
    ratios: dict[str, float]
    rounds: dict[str, int]
    sizes: str


def load_baseline(path: str | Path) -> Baseline:
    """A baseline JSON written by `save_ratios`. ValueError, with a one-line reason, for another kind of file,
    a baseline saved at quick sizes, or one that does not record its sizes mode and rounds."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path}: not a benchmark-ratio baseline (format {FORMAT!r})")
    if "sizes" not in record or not isinstance(record.get("rounds"), dict):
        raise ValueError(f"{path}: the baseline does not record its sizes mode and rounds, so it may come from a "
                         f"quick or 1-round run; save it again with --ratio-save at full sizes")
    if record["sizes"] != FULL:
        raise ValueError(f"{path}: baseline saved at {record['sizes']!r} sizes refused: {QUICK_REASON}")
    ratios = {str(k): float(v) for k, v in record["ratios"].items()}
    rounds = {str(k): int(v) for k, v in record["rounds"].items()}
    return Baseline(ratios, {k: rounds.get(k, 0) for k in ratios}, FULL)


def load_ratios(path: str | Path) -> dict[str, float]:
    """The ratios of a baseline JSON written by `save_ratios` (`load_baseline`, which refuses the same files)."""
    return load_baseline(path).ratios


def check_ratios(current: Mapping[str, float], baseline: Mapping[str, float], tolerance: float = 0.15, *,
                 current_rounds: Mapping[str, int] | None = None,
                 baseline_rounds: Mapping[str, int] | None = None,
                 min_rounds: int = MIN_ROUNDS) -> dict[str, list]:
    """Compare ratios with a baseline: ``{"regressed": [(key, old, new, change)], "improved": [...],
    "unchanged": [...], "too_few_rounds": [(key, rounds now, rounds in the baseline)], "missing": [keys only in
    the baseline], "new": [keys only in this run]}``; change is new / old - 1, a regression above `tolerance`,
    an improvement below -tolerance. With rounds given (either side), a pair timed with fewer than
    `min_rounds` rounds on that side (a key absent from the mapping counts as 0) is not judged."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    res: dict[str, list] = {"regressed": [], "improved": [], "unchanged": [], "too_few_rounds": [],
                            "missing": [], "new": []}
    for key in sorted(set(current) | set(baseline)):
        if key not in current:
            res["missing"].append(key)
        elif key not in baseline:
            res["new"].append(key)
        else:
            now_n = None if current_rounds is None else current_rounds.get(key, 0)
            base_n = None if baseline_rounds is None else baseline_rounds.get(key, 0)
            if any(n is not None and n < min_rounds for n in (now_n, base_n)):
                res["too_few_rounds"].append((key, now_n, base_n))
                continue
            old, new = baseline[key], current[key]
            change = new / old - 1.0
            kind = "regressed" if change > tolerance else "improved" if change < -tolerance else "unchanged"
            res[kind].append((key, old, new, change))
    return res
