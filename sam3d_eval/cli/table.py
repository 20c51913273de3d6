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


def _mean(values: list[float]) -> float:
    """Mean of the finite values (a metric unavailable for some samples is averaged over the others)."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def format_results(results: Sequence[PairResult], columns: Sequence[str] = SHOWN, title: str | None = None) -> str:
    """An aligned table with one row per sample, failures with their reason, a mean row and the notes.

    `title` (the protocol's label, say) goes on the first line. NaN cells (metrics unavailable for a
    sample) print as "nan"; the mean row averages the finite values; each sample's notes follow the table.
    """
    ok = [r for r in results if r.status == "ok"]
    cols = [c for c in columns if any(c in r.metrics for r in ok)] or list(columns)
    header = ["sample", *cols]
    rows = []
    for r in results:
        if r.status == "ok":
            rows.append([r.sample_id, *(_fmt(r.metrics.get(c, math.nan)) for c in cols)])
        else:
            rows.append([r.sample_id, f"FAILED: {r.error}"])
    if ok:
        rows.append([f"mean of {len(ok)}", *(_fmt(_mean([r.metrics.get(c, math.nan) for r in ok])) for c in cols)])
    widths = [max(len(header[i]), *(len(row[i]) for row in rows if len(row) > i and len(row) == len(header)))
              for i in range(len(header))]
    lines = [title] if title else []
    lines.append("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths))))
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        if len(row) == len(header):
            lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        else:
            lines.append(f"{row[0].ljust(widths[0])}  {row[1]}")
    notes = sorted({(r.sample_id, n) for r in ok for n in r.notes})
    lines += [f"note: {sid}: {n}" for sid, n in notes]
    return "\n".join(lines)


def _json_safe(x):
    """NaN/inf become None (JSON has no NaN); containers are walked."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def write_results(path: pathlib.Path, results: Sequence[PairResult], settings: dict) -> None:
    """Write per-sample results as CSV (one row per sample) or JSON (with the settings), by file suffix.

    `settings["protocol"]`, when given, is a `Protocol.to_dict()`: the JSON keeps all of it; the CSV gets
    `protocol` (name), `protocol_version` and `protocol_overrides` (JSON) columns on every row, plus
    `pred_kind`, `notes` and `transform` (JSON) per sample.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        payload = {"settings": settings, "results": [r.__dict__ for r in results]}
        path.write_text(json.dumps(_json_safe(payload), indent=2) + "\n", encoding="utf-8")
        return
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: results are written as .csv or .json")
    proto = settings.get("protocol") or {}
    proto_cols = [proto.get("name", ""), proto.get("version", ""), json.dumps(proto.get("overrides", {}))]
    metric_names = sorted({k for r in results for k in r.metrics})
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sample_id", "status", "error", "protocol", "protocol_version", "protocol_overrides",
                         "pred_kind", *metric_names, "notes", "transform"])
        for r in results:
            writer.writerow([
                r.sample_id, r.status, r.error or "", *proto_cols, r.pred_kind or "",
                *(r.metrics.get(k, "") for k in metric_names),
                "; ".join(r.notes), json.dumps(r.transform) if r.transform else "",
            ])
