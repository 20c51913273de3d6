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
(a peer that is not installed, a GPU group on a CPU machine). Pure functions here; benchmarks/conftest.py
wires them into pytest.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = ["check_ratios", "collect_ratios", "is_ours", "load_ratios", "save_ratios"]

FORMAT = "sam3d-eval-benchmark-ratios"
_OURS_NAME = re.compile(r"(^test_ours|_ours)(\b|_|\[|$)")


def is_ours(name: str, params: Mapping[str, Any] | None) -> bool:
    """Whether a benchmark measures our implementation (module docstring), not a peer or a variant."""
    if params and any(v == "ours" for v in params.values()):
        return True
    if params and any(isinstance(v, str) and v.startswith("ours") for v in params.values()):
        return False  # a variant of ours (e.g. ours_no_policy): compared against, like a peer
    return bool(_OURS_NAME.search(name.split("[", 1)[0]))


def collect_ratios(benchmarks: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """``{"<group> :: <ours> / <peer>": median(ours) / median(peer)}`` from records with ``group``, ``name``,
    ``params`` and ``median`` (seconds); groups without a benchmark of ours or without a peer give nothing."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for b in benchmarks:
        if b.get("median") is None or not math.isfinite(b["median"]) or b["median"] <= 0:
            continue
        groups.setdefault(str(b.get("group") or b["name"].split("[", 1)[0]), []).append(b)
    out: dict[str, float] = {}
    for group, members in sorted(groups.items()):
        ours = [b for b in members if is_ours(b["name"], b.get("params"))]
        peers = [b for b in members if not is_ours(b["name"], b.get("params"))]
        for o in ours:
            for peer in peers:
                out[f"{group} :: {o['name']} / {peer['name']}"] = o["median"] / peer["median"]
    return out


def save_ratios(path: str | Path, ratios: Mapping[str, float]) -> Path:
    """Write the baseline JSON (ratios + where and when they were measured)."""
    path = Path(path)
    record = {"format": FORMAT, "version": 1,
              "measured": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "python": platform.python_version()},
              "ratios": dict(sorted(ratios.items()))}
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def load_ratios(path: str | Path) -> dict[str, float]:
    """The ratios of a baseline JSON written by `save_ratios`; ValueError for another kind of file."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path}: not a benchmark-ratio baseline (format {FORMAT!r})")
    return {str(k): float(v) for k, v in record["ratios"].items()}


def check_ratios(current: Mapping[str, float], baseline: Mapping[str, float], tolerance: float = 0.15
                 ) -> dict[str, list]:
    """Compare ratios with a baseline: ``{"regressed": [(key, old, new, change)], "improved": [...],
    "unchanged": [...], "missing": [keys only in the baseline], "new": [keys only in this run]}``; change is
    new / old - 1, a regression above `tolerance`, an improvement below -tolerance."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    res: dict[str, list] = {"regressed": [], "improved": [], "unchanged": [], "missing": [], "new": []}
    for key in sorted(set(current) | set(baseline)):
        if key not in current:
            res["missing"].append(key)
        elif key not in baseline:
            res["new"].append(key)
        else:
            old, new = baseline[key], current[key]
            change = new / old - 1.0
            kind = "regressed" if change > tolerance else "improved" if change < -tolerance else "unchanged"
            res[kind].append((key, old, new, change))
    return res
