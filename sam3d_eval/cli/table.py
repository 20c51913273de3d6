"""Plain-text tables and result files, from results frames (`io.results` schema) and summaries.

Imports only the standard library at module level (pandas is imported by the callers that have frames).
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
from typing import Sequence

OUTPUT_SUFFIXES = (".csv", ".json", ".parquet")


def _fmt(value: float) -> str:
    """A value of a terminal table (`report.tables.fmt`; a missing one reads ``nan``)."""
    from ..report.tables import fmt

    return fmt(value, missing="nan")


def _with_interval(value: float, low: float, high: float) -> str:
    """``value [low, high]``, or the value alone when there is no interval (fewer than two values)."""
    from ..report.tables import fmt_ci

    return fmt_ci(value, low, high, missing="nan")


def check_output_path(path: str | os.PathLike | None, suffixes: Sequence[str] = OUTPUT_SUFFIXES) -> pathlib.Path | None:
    """Validate an output file before any work: a supported suffix and a folder that exists or can be made
    and is writable. Raises `ValueError` / `PermissionError` naming the problem."""
    if path is None:
        return None
    path = pathlib.Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"-o {path}: results are written as {', '.join(suffixes)} (by the file's suffix), "
                         f"not {path.suffix or 'a file without suffix'!r}")
    if path.is_dir():
        raise ValueError(f"-o {path}: is a folder; give a file name")
    parent = path.parent
    from ..io.results import ensure_writable_dir

    try:
        ensure_writable_dir(parent)
    except OSError as err:
        raise PermissionError(f"-o {path}: cannot write to {parent} ({err.strerror or err})") from None
    return path


def format_results(frame, columns: Sequence[str] | None = None, title: str | None = None) -> str:
    """An aligned table with one row per sample, failures with their reason, a mean row, the counts of what
    the means leave out, and each sample's notes.

    `frame` is a results frame (`io.results` schema). The mean row averages the ok rows' finite values;
    failed samples and NaN values are counted below the table, never dropped silently. Works when no sample
    is ok (then there is no mean row, and the table says so). `columns` defaults to the frame's headline
    metrics (`io.results.headline_metrics`).
    """
    import numpy as np

    from ..io.results import headline_metrics, metric_columns
    from ..report.text import grid

    if columns is None:
        columns = headline_metrics(metric_columns(frame))

    ok_mask = (frame["status"] == "ok").to_numpy() if len(frame) else np.zeros(0, bool)
    present = [c for c in columns if c in frame.columns]
    cols = [c for c in present if len(frame) and frame.loc[ok_mask, c].notna().any()] or present
    rows = []
    for rec in frame.to_dict("records"):
        if rec["status"] == "ok":
            rows.append([str(rec["sample_id"]), *(_fmt(float(rec[c])) for c in cols)])
        else:
            rows.append([str(rec["sample_id"]), f"FAILED: {rec.get('error')}"])
    n_ok, n = int(ok_mask.sum()), len(frame)
    nan_counts = {}
    if n_ok:
        means = []
        for c in cols:
            v = frame.loc[ok_mask, c].to_numpy(dtype=np.float64)
            finite = v[~np.isnan(v)]
            if finite.size < v.size:
                nan_counts[c] = int(v.size - finite.size)
            means.append(_fmt(float(finite.mean())) if finite.size else "nan")
        rows.append([f"mean of {n_ok}", *means])
    lines = [title] if title else []
    lines += grid(["sample", *cols], rows)
    if n_ok == 0:
        lines.append(f"no sample was scored: all {n} failed" if n else "no samples")
    elif n_ok < n:
        lines.append(f"{n - n_ok} of {n} samples failed and are not in the means")
    for c, k in nan_counts.items():
        lines.append(f"{c}: {k} sample(s) with nan left out of the mean")
    for rec in frame.to_dict("records"):
        notes = rec.get("notes")
        notes = json.loads(notes) if isinstance(notes, str) else (notes or [])
        if rec["status"] == "ok":
            lines += [f"note: {rec['sample_id']}: {text}" for text in sorted(set(notes))]
    return "\n".join(lines)


def format_summary(summary, metrics: Sequence[str], *, title: str | None = None) -> str:
    """Per-stratum means of `metrics` as ``mean [low, high]`` with n and n_failed per stratum, and a line per
    metric and stratum that had NaN values left out."""
    from ..report.text import grid

    rows, nan_lines = [], []
    table = summary[summary["metric"].isin(metrics)]
    conf = summary.attrs.get("confidence", 0.95)
    metrics = [m for m in metrics if m in set(table["metric"])]
    for (stratum, level), g in table.groupby(["stratum", "level"], sort=False):
        by_metric = {r["metric"]: r for r in g.to_dict("records")}
        first = next(iter(by_metric.values()))
        cells = []
        for m in metrics:
            r = by_metric[m]
            cells.append(_with_interval(r["mean"], r["low"], r["high"]) if r["n_used"] else "nan")
            if r["n_nan"]:
                nan_lines.append(f"{m} ({stratum}={level}): {r['n_nan']} nan value(s) left out of the mean")
        label = "all" if stratum == "all" else f"{stratum}={level}"
        rows.append([label, str(first["n"]), str(first["n_failed"]), *cells])
    lines = [title] if title else []
    lines += grid(["stratum", "n", "failed", *metrics], rows)
    lines.append(f"mean [{conf:.0%} bootstrap interval] (no interval below two values); failed samples are "
                 "counted in n and left out of the means")
    return "\n".join(lines + nan_lines)


def format_accuracy(acc) -> str:
    """Occlusion-stratified accuracy per domain and bin with Wilson intervals."""
    from ..report.text import grid

    rows = [[r["domain"], r["occlusion_bin"], str(r["n"]), str(r["n_failed"]), str(r["n_accurate"]),
             "-" if not r["n"] else f"{r['accuracy']:.3f} [{r['low']:.3f}, {r['high']:.3f}]"]
            for r in acc.to_dict("records")]
    head = (f"occlusion-stratified accuracy ({acc.attrs.get('metric')} >= {acc.attrs.get('threshold')}; "
            "failed samples count as not accurate; Wilson interval)")
    return "\n".join([head, *grid(["domain", "occlusion", "n", "failed", "accurate", "accuracy"], rows)])


def format_gap(gap) -> str:
    """Synthetic-vs-real gap figures with bootstrap intervals, then what each is made of: the covariate mix
    (raw - matched) and the GT wear (raw - wear-free), each with its share of the raw excess, when the frame
    has them (`evaluate.summary.domain_gap`)."""
    from ..report.text import grid

    from ..report.tables import gap_counts, gap_share, has_decomposition, mix_words

    rows = []
    records = gap.to_dict("records")
    for r in records:
        rows.append([r["metric"], r["figure"], _fmt(r["mean_synthetic"]), _fmt(r["mean_real"]),
                     _with_interval(r["estimate"], r["low"], r["high"]),
                     gap_counts(r),
                     f"{r['n_failed_synthetic']}/{r['n_failed_real']}",
                     f"{r['n_nan_synthetic']}/{r['n_nan_real']}", r["note"] if isinstance(r.get("note"), str) else ""])
    head = "synthetic-vs-real gap (gap_ratio = real/synthetic; relative_drop = 1 - real/synthetic; texture_degradation = LPIPS ratio - 1)"
    if "design" in gap.columns and (gap["design"] == "paired").any():
        head += "; over synthetic/real twin pairs, intervals resample whole pairs"
    lines = [head, *grid(["metric", "figure", "synthetic", "real", "estimate", "n syn/real",
                          "failed", "nan", "note"], rows)]
    parts = [r for r in records if has_decomposition(r)]
    if parts:
        mix = mix_words(next((r.get("matching") for r in parts if isinstance(r.get("matching"), str)), None))

        def share(r, k):
            v = gap_share(r, k)
            return "-" if v is None else f"{100 * v:.0f}%"

        def cover(r):
            c = r.get("matched_coverage")
            return "-" if c is None or c != c else f"{100 * c:.0f}% ({int(r['matched_cells'])} cells)"

        lines += ["", f"what the gap is made of: {mix} mix = raw - matched (the synthetic side reweighted to the real "
                      f"side's {mix} cells; coverage = share of real samples whose cell has a synthetic one); GT wear = "
                      "raw - wear-free (the real samples scored against their unworn GT); share = part / (raw - no "
                      "gap), '-' when the raw interval includes no gap; intervals from the gap's own resamples"]
        lines += grid(["metric", f"{mix} mix", "share", "matched", "coverage", "GT wear", "share", "wear-free"],
                      [[r["metric"], _with_interval(r.get("covariate"), r.get("covariate_low"), r.get("covariate_high")),
                        share(r, "covariate"), _with_interval(r.get("matched"), r.get("matched_low"), r.get("matched_high")),
                        cover(r), _with_interval(r.get("wear"), r.get("wear_low"), r.get("wear_high")), share(r, "wear"),
                        _with_interval(r.get("wear_free"), r.get("wear_free_low"), r.get("wear_free_high"))]
                       for r in parts])
        notes: dict[str, list[str]] = {}
        for r in parts:
            for n in (r.get("decomposition_note") or "").split("; "):
                if n:
                    notes.setdefault(n, []).append(r["metric"])
        lines += [f"note ({', '.join(ms) if len(ms) < len(parts) else 'every metric'}): {n}" for n, ms in notes.items()]
    return "\n".join(lines)


def format_failures(failures: dict, n: int) -> str:
    """The failed samples of `evaluate.failures.failure_summary` for the terminal: the first ones with their
    error, then the count of each reason (paths and sample ids replaced; see `evaluate.failures`)."""
    count = failures["count"]
    lines = [f"{count} of {n} samples failed (the error column of the results holds every reason):"]
    lines += [f"  {r['sample_id']}: {r['error']}" for r in failures["first"]]
    if count > len(failures["first"]):
        lines.append(f"  ... and {count - len(failures['first'])} more")
    width = max(len(str(k)) for k in failures["by_reason"].values()) if failures["by_reason"] else 1
    lines.append("failures by reason (paths shown as <path>, the sample id as <sample>):")
    lines += [f"  {k:>{width}}  {reason}" for reason, k in failures["by_reason"].items()]
    return "\n".join(lines)


def frame_to_json(frame) -> list[dict]:
    """Per-sample records: ``metrics`` nested, ``transform`` and ``notes`` decoded from their JSON strings."""
    from ..io.results import metric_columns

    metrics = metric_columns(frame)
    out = []
    for rec in frame.to_dict("records"):
        row = {k: v for k, v in rec.items() if k not in metrics and k != "part"}
        row["transform"] = json.loads(rec["transform"]) if isinstance(rec.get("transform"), str) else None
        row["notes"] = json.loads(rec["notes"]) if isinstance(rec.get("notes"), str) else []
        row["metrics"] = {m: rec[m] for m in metrics}
        out.append(row)
    return out


def write_results(path: str | os.PathLike, frame, metadata: dict, settings: dict) -> pathlib.Path:
    """Write per-sample results as .csv, .json or .parquet (by suffix), each carrying the run metadata; the
    file is written whole or not at all (`atomic.atomic_path`), so an interrupted write leaves the old one.

    settings: ``{"protocol": Protocol.to_dict(), ...}``. JSON: ``{"metadata", "settings", "results"}``.
    CSV: one row per sample with ``protocol``, ``protocol_version``, ``protocol_overrides`` (JSON),
    ``fingerprint``, the metrics, ``notes`` ("; "-joined), ``transform`` (JSON), the strata, and the
    provenance columns ``sam3d_eval_version``, ``torch_version``, ``git_commit``, ``created_at``. Parquet:
    the results frame with ``metadata`` and ``settings`` in the file's key-value metadata (``sam3d_eval``).
    """
    from ..atomic import atomic_path, write_text_atomic
    from ..io.results import metric_columns, strata_columns
    from ..jsonable import to_jsonable

    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        payload = {"metadata": metadata, "settings": settings, "results": frame_to_json(frame)}
        return write_text_atomic(path, json.dumps(to_jsonable(payload), indent=2) + "\n")
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame.drop(columns=["part"], errors="ignore"), preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[b"sam3d_eval"] = json.dumps(to_jsonable({
            "metadata": metadata, "settings": settings, "metrics": metric_columns(frame),
            "strata": strata_columns(frame), "schema": 1})).encode()
        with atomic_path(path) as tmp:
            pq.write_table(table.replace_schema_metadata(meta), tmp)
        return path
    if suffix != ".csv":
        raise ValueError(f"{path}: results are written as {', '.join(OUTPUT_SUFFIXES)}")
    proto = settings.get("protocol") or {}
    fixed = [proto.get("name", ""), proto.get("version", ""), json.dumps(proto.get("overrides", {}))]
    provenance = [metadata.get("version", ""), metadata.get("torch") or "", metadata.get("git_commit") or "",
                  metadata.get("time", "")]
    metrics, strata = metric_columns(frame), strata_columns(frame)
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sample_id", "status", "error", "protocol", "protocol_version", "protocol_overrides",
                         "fingerprint", "source", "pred_kind", *metrics, "notes", "transform", *strata,
                         "sam3d_eval_version", "torch_version", "git_commit", "created_at"])
        for rec in frame.to_dict("records"):
            notes = json.loads(rec["notes"]) if isinstance(rec.get("notes"), str) else []
            writer.writerow([
                rec["sample_id"], rec["status"], rec.get("error") or "", *fixed, rec.get("fingerprint", ""),
                rec.get("source", ""), rec.get("pred_kind") or "", *(float(rec[m]) for m in metrics),
                "; ".join(notes), rec.get("transform") or "", *("" if rec.get(s) is None else rec.get(s) for s in strata),
                *provenance,
            ])
    return path
