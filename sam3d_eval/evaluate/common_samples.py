"""The two sides of a comparison on their common samples: one matrix per metric, row = run, column = sample.

`compare_frames` analyses; this module only lines the runs up. Every frame of both sides must have been
scored under one protocol fingerprint (`check_same_protocol`); the samples compared are those every run of
both sides holds (the others are listed, never silently dropped); a failed entry is NaN in its metric
matrices and False in ``ok``; samples that belong together (twin pairs, a ``cluster`` column) get one unit
code, which every interval resamples as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .sides import CompareInputError, ProtocolMismatchError
from .summary import PAIR_COLUMN, occlusion_bin

__all__ = ["CommonSamples", "as_runs", "check_same_protocol", "common_samples"]


def check_same_protocol(frames_a, frames_b, labels: tuple[str, str] = ("A", "B")) -> str:
    """The one protocol fingerprint every frame was scored under; `ProtocolMismatchError` otherwise.
    frames_a, frames_b: a frame or a list of frames (runs) per side."""
    seen = []
    for frames, lab in ((as_runs(frames_a), labels[0]), (as_runs(frames_b), labels[1])):
        for i, f in enumerate(frames):
            got = sorted(set(f["fingerprint"].dropna())) if len(f) else []
            name = lab if len(frames) == 1 else f"{lab} run {i + 1}"
            if len(got) != 1:
                raise ProtocolMismatchError(f"{name}: expected rows under one protocol fingerprint, found {got or 'none'}")
            protos = sorted(set(f["protocol"].dropna())) if "protocol" in f.columns else []
            seen.append((name, got[0], protos))
    first = seen[0]
    for other in seen[1:]:
        if other[1] != first[1]:
            raise ProtocolMismatchError(
                f"{first[0]} was scored under protocol {first[2]} (fingerprint {first[1]}) and {other[0]} under "
                f"{other[2]} (fingerprint {other[1]}): numbers under different protocols are not comparable; "
                "score both under one protocol (--protocol) first")
    return first[1]


def as_runs(x) -> list:
    """A side's runs as a list: one frame becomes a list of one."""
    return list(x) if isinstance(x, (list, tuple)) else [x]


@dataclass
class CommonSamples:
    """Both sides on the common samples: `ok_*` `(R, N)` bool, `values_*[metric]` `(R, N)` float (NaN where
    failed or unavailable), `info` the strata of each sample, `units` `(N,)` int cluster codes."""

    ids: list[str]
    ok_a: np.ndarray
    ok_b: np.ndarray
    values_a: dict[str, np.ndarray]
    values_b: dict[str, np.ndarray]
    info: Any
    units: np.ndarray
    cluster: str | None


def _indexed(frame):
    f = frame.drop_duplicates("sample_id", keep="last").set_index("sample_id")
    f.index = f.index.astype(str)
    return f


def _cluster_column(info, cluster: str | None) -> str | None:
    if cluster == "auto":
        return PAIR_COLUMN if PAIR_COLUMN in info.columns and info[PAIR_COLUMN].notna().any() else None
    if cluster is not None and cluster not in info.columns:
        raise CompareInputError(f"cluster column {cluster!r} is not in the results (columns: {sorted(info.columns)})")
    return cluster


def common_samples(runs_a: Sequence[Any], runs_b: Sequence[Any], metrics: Sequence[str], cluster: str | None,
                   labels: tuple[str, str]) -> tuple[CommonSamples, dict[str, Any]]:
    """Both sides' runs on the samples every run holds.

    Args:
        runs_a, runs_b: each side's results frames (`io.results` schema), one per run.
        metrics: the metric columns to take.
        cluster: the column of units resampled together: "auto" (``pair_id`` when present), None (every
            sample its own unit) or a column name.
        labels: the sides' names, used to key the failed samples' errors.

    Returns:
        (`CommonSamples`, samples): the aligned matrices, and a JSON-ready account of the sample ids (counts
        per side, ids only in A / only in B / not in every run, and each side's error per failed sample).

    Raises:
        CompareInputError: the sides share no sample id, or `cluster` names a column the results lack.
    """
    import pandas as pd

    ia, ib = [_indexed(f) for f in runs_a], [_indexed(f) for f in runs_b]
    all_a = set().union(*(set(f.index) for f in ia))
    all_b = set().union(*(set(f.index) for f in ib))
    common = sorted(set.intersection(*(set(f.index) for f in ia + ib)))
    samples: dict[str, Any] = {
        "A": len(all_a), "B": len(all_b), "common": len(common),
        "only_in_A": sorted(all_a - all_b), "only_in_B": sorted(all_b - all_a),
        "not_in_every_run": sorted((all_a & all_b) - set(common)),
    }
    if not common:
        raise CompareInputError(f"the sides share no sample id (e.g. {sorted(all_a)[:3]} vs {sorted(all_b)[:3]})")
    first = ia[0].loc[common]
    info = pd.DataFrame({"sample_id": common})
    for col in ("domain", "category", "occlusion", PAIR_COLUMN, *(([cluster] if cluster not in (None, "auto") else []))):
        src = first if col in first.columns else (ib[0].loc[common] if col in ib[0].columns else None)
        if src is not None and col not in info.columns:
            info[col] = src[col].to_numpy()
    if "occlusion" in info.columns:
        info["occlusion"] = info["occlusion"].astype("float64")
        info["occlusion_bin"] = occlusion_bin(info["occlusion"])
    col = _cluster_column(info, cluster)
    if col is None:
        units = np.arange(len(common), dtype=np.int64)
    else:  # samples without a cluster label are units of their own
        unit_labels = [f"c:{v}" if v is not None and v == v else f"s:{sid}" for v, sid in zip(info[col], common)]
        units = pd.factorize(pd.Series(unit_labels), sort=True)[0].astype(np.int64)
    ok_a = np.stack([(f.loc[common, "status"] == "ok").to_numpy() for f in ia])
    ok_b = np.stack([(f.loc[common, "status"] == "ok").to_numpy() for f in ib])

    def values(frames, ok):
        out = {}
        for m in metrics:
            v = np.stack([f.loc[common, m].to_numpy(dtype=np.float64) for f in frames])
            out[m] = np.where(ok & np.isfinite(v), v, np.nan)
        return out

    errors = {}
    for lab, frames, ok in ((labels[0], ia, ok_a), (labels[1], ib, ok_b)):
        errs = {}
        for r, f in enumerate(frames):
            if "error" in f.columns:
                for sid in np.asarray(common)[~ok[r]]:
                    errs.setdefault(sid, str(f.loc[sid, "error"]))
        errors[lab] = errs
    samples["errors"] = errors
    return CommonSamples(common, ok_a, ok_b, values(ia, ok_a), values(ib, ok_b), info, units, col), samples
