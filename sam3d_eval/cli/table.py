"""Plain-text tables and result files for per-sample results."""

from __future__ import annotations

import csv
import json
import math
import pathlib
from typing import Sequence

from ..evaluate.pairs import PairResult

SHOWN = ("chamfer_l2", "chamfer_l1", "fscore@0.01", "fscore@0.02", "fscore@0.05", "normal_consistency")


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:.3e}" if value != 0 and abs(value) < 1e-2 else f"{value:.4f}"


def format_results(results: Sequence[PairResult], columns: Sequence[str] = SHOWN) -> str:
    """An aligned table with one row per sample, failures with their reason, and a mean row."""
    ok = [r for r in results if r.status == "ok"]
    cols = [c for c in columns if any(c in r.metrics for r in ok)] or list(columns)
    header = ["sample", *cols]
    rows = []
    for r in results:
        if r.status == "ok":
            rows.append([r.sample_id, *(_fmt(r.metrics[c]) for c in cols)])
        else:
            rows.append([r.sample_id, f"FAILED: {r.error}"])
    if ok:
        rows.append([f"mean of {len(ok)}", *(_fmt(sum(r.metrics[c] for r in ok) / len(ok)) for c in cols)])
    widths = [max(len(header[i]), *(len(row[i]) for row in rows if len(row) > i and len(row) == len(header)))
              for i in range(len(header))]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        if len(row) == len(header):
            lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        else:
            lines.append(f"{row[0].ljust(widths[0])}  {row[1]}")
    return "\n".join(lines)


def write_results(path: pathlib.Path, results: Sequence[PairResult], settings: dict) -> None:
    """Write per-sample results as CSV (one row per sample) or JSON (with the settings), by file suffix."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        payload = {"settings": settings, "results": [r.__dict__ for r in results]}
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        return
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: results are written as .csv or .json")
    metric_names = sorted({k for r in results for k in r.metrics})
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sample_id", "status", "error", *metric_names])
        for r in results:
            writer.writerow([r.sample_id, r.status, r.error or "", *(r.metrics.get(k, "") for k in metric_names)])
