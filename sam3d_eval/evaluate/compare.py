"""Paired comparison of two prediction sources on the same samples (DESIGN.md sections 2 and 5, issue 19).

Two steps, so the analysis can be tested (and reused) on stored frames alone:

1. `load_side` turns what the user named into a results frame under one protocol:

   - a **run folder** (holds ``run.json``): its stored rows are read (`io.results.read_results`), never
     recomputed;
   - a **predictions folder** (``<sample_id>.<ext>``): scored through a `FolderSource`;
   - a **checkpoint** (``.safetensors``): rebuilt from its own config (`models.load_checkpoint`); a run
     of the same weights (its identity) already stored beside it (``eval/``, the training loop's phase-boundary
     evaluation) or in ``runs_dir`` that covers the samples is reused, else it is scored through a
     `PredictorSource`.

   Scored sides are stored under ``runs_dir`` (one run folder per source identity and protocol
   fingerprint) and continued with ``resume``, so a second comparison reuses every row already stored.

2. `compare_frames` runs the paired analysis on the samples both sides scored ``ok`` under one protocol
   fingerprint (two fingerprints are refused with `ProtocolMismatchError`):

   - per stratum (all; domain; occlusion bin; category) and metric: each side's mean with a bootstrap
     interval (`stats.bootstrap_ci`), the paired delta B - A with a paired bootstrap interval
     (`stats.paired_bootstrap`), the Wilcoxon signed-rank p (`stats.wilcoxon_signed_rank`: exact without
     tied differences, the tie-corrected normal approximation with them; 1.0 when every difference is 0),
     and Holm-adjusted p-values (`stats.holm`) with one family per stratification (the metrics of "all";
     every level x metric of "domain"; ...);
   - each side's synthetic-vs-real gap and occlusion-stratified accuracy (`evaluate.summary`);
   - the per-sample proxy preference on one metric: B is preferred on a sample when it is better there,
     ties (equal values) are kept and reported, win rate with a Wilson interval (`stats.win_rate`);
   - real human votes when given (``item_id, model_a, model_b, winner, rater_id``);
   - samples that one side failed or lacks are counted and listed, never dropped silently;
   - a *regression*: a metric of the regression list whose Holm-adjusted p is below ``alpha`` in the "all"
     stratum, whose delta points the worse way, and whose relative change exceeds ``min_effect``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..io.results import metric_columns, read_results, read_run_json
from ..jsonable import to_jsonable
from ..stats import holm, paired_bootstrap, wilcoxon_signed_rank, win_rate
from .protocols import APPEARANCE_METRICS, Protocol, get_protocol
from .summary import _interval, direction, domain_gap, occlusion_accuracy, occlusion_bin

__all__ = [
    "CompareInputError",
    "Comparison",
    "ProtocolMismatchError",
    "Side",
    "compare_frames",
    "checkpoint_run",
    "load_side",
    "load_votes",
    "manifest_from_checkpoint",
    "side_kind",
]

STRATA = ("domain", "occlusion_bin", "category")


class CompareInputError(ValueError):
    """A side, a manifest or a vote file that cannot be compared as given; the message says why."""


class ProtocolMismatchError(CompareInputError):
    """The two sides were scored under different protocol fingerprints."""


# ----------------------------------------------------------------------------------------------------------
# sides


@dataclass
class Side:
    """One side of a comparison: what the user named and its results under one protocol.

    label: short display name; spec: the path given; kind: "run" | "predictions" | "checkpoint";
    identity: the source identity stored in the results; frame: the results rows (`io.read_results` schema);
    run_dir: where they are stored; protocol: the `Protocol` they were scored under; info: the checkpoint
    config or the run record; reused / scored: rows read from the store / scored by this call.
    """

    label: str
    spec: pathlib.Path
    kind: str
    identity: str | None
    frame: Any
    run_dir: pathlib.Path | None
    protocol: Protocol
    info: dict = field(default_factory=dict)
    reused: int = 0
    scored: int = 0

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary of the side (no frame)."""
        d = {"label": self.label, "path": str(self.spec), "kind": self.kind, "identity": self.identity,
             "run_dir": str(self.run_dir) if self.run_dir else None, "protocol": self.protocol.label(),
             "fingerprint": self.protocol.fingerprint(), "rows_reused": self.reused, "rows_scored": self.scored}
        if self.kind == "checkpoint":
            d["checkpoint"] = {k: self.info.get(k) for k in ("stage", "phase", "epoch", "step", "data_manifest_hash",
                                                             "substitutes", "package_version") if k in self.info}
        return d


def side_kind(path: str | os.PathLike) -> str:
    """"run" (a folder with run.json), "predictions" (another folder) or "checkpoint" (a file).

    Raises `FileNotFoundError` for a missing path.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint, predictions folder or run folder")
    if path.is_dir():
        return "run" if read_run_json(path) is not None else "predictions"
    return "checkpoint"


def run_protocol(run_dir: str | os.PathLike) -> Protocol:
    """The protocol recorded in a run folder's run.json."""
    record = read_run_json(run_dir)
    if record is None or "protocol" not in record:
        raise CompareInputError(f"{run_dir}: run.json records no protocol")
    return Protocol.from_dict(record["protocol"])


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:40] or "side"


def manifest_from_checkpoint(config: Mapping[str, Any], checkpoint: str | os.PathLike,
                             work_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The manifest a checkpoint was trained on, found from what its config records.

    In order: a recorded path (``data_manifest``) that exists; a ``manifest.csv`` / ``.parquet`` /
    ``.jsonl`` in the checkpoint's folder, its parents (up to three levels) or their ``benchmark/`` folders
    whose SHA-256 (first 16 hex digits) equals the recorded ``data_manifest_hash``; the built-in benchmark
    regenerated under `work_dir` from a recorded ``data_generate`` record (``synthetic``, ``real``, ``seed``,
    ``config``). Raises `CompareInputError` saying what is recorded and that ``--data`` is needed.
    """
    checkpoint = pathlib.Path(checkpoint)
    recorded = config.get("data_manifest")
    if recorded and pathlib.Path(recorded).is_file():
        return pathlib.Path(recorded)
    want = config.get("data_manifest_hash")
    if want:
        folders = [checkpoint.parent, *list(checkpoint.parent.parents)[:3]]
        for folder in folders:
            for sub in (folder, folder / "benchmark"):
                for name in ("manifest.csv", "manifest.parquet", "manifest.jsonl"):
                    cand = sub / name
                    if cand.is_file() and hashlib.sha256(cand.read_bytes()).hexdigest()[:16] == want:
                        return cand
    gen = config.get("data_generate")
    if isinstance(gen, Mapping) and work_dir is not None:
        from ..data.generate import GenerationConfig, make_benchmark

        out = pathlib.Path(work_dir) / f"benchmark-seed{int(gen.get('seed', 0))}"
        make_benchmark(out, int(gen["synthetic"]), int(gen["real"]), int(gen.get("seed", 0)),
                       GenerationConfig.from_dict(dict(gen.get("config") or {})))
        return out / "manifest.csv"
    raise CompareInputError(
        f"{checkpoint}: the checkpoint records data hash {want!r} but no manifest on disk matches it "
        f"(looked beside the checkpoint and up to three folders above, and in their benchmark/ folders) and no "
        "generation record to rebuild it from; pass --data MANIFEST")


def stored_runs_of(identity: str, folders: Sequence[str | os.PathLike]) -> list[pathlib.Path]:
    """Run folders directly under `folders` (e.g. a checkpoint's ``eval/`` written at its phase boundary, and
    the comparison's runs folder) whose source identity is `identity`, newest first."""
    found = []
    for folder in folders:
        folder = pathlib.Path(folder)
        if not folder.is_dir():
            continue
        for rec_path in folder.glob("*/run.json"):
            try:
                rec = read_run_json(rec_path.parent) or {}
            except ValueError:
                continue
            if (rec.get("source") or {}).get("identity") == identity:
                found.append(rec_path.parent)
    return sorted(found, key=lambda p: (p / "run.json").stat().st_mtime, reverse=True)


def checkpoint_run(spec: str | os.PathLike, runs_dir: str | os.PathLike, protocol: Protocol | str | None = None,
                   manifest=None) -> pathlib.Path | None:
    """A stored run of this checkpoint's exact weights (its identity) to reuse: under the checkpoint's
    ``eval/`` folder (the training loop's phase-boundary evaluation) or `runs_dir`, under `protocol` when
    given (any protocol otherwise), holding an ok row for every manifest sample when a manifest is given."""
    from ..models.checkpoint import load_checkpoint

    spec = pathlib.Path(spec)
    identity = load_checkpoint(spec).identity
    want = get_protocol(protocol).fingerprint() if protocol is not None else None
    for run_dir in stored_runs_of(identity, [spec.parent / "eval", runs_dir]):
        try:
            own = run_protocol(run_dir)
        except ValueError:
            continue
        if want is not None and own.fingerprint() != want:
            continue
        if manifest is not None:
            frame = read_results(run_dir)
            ok = set(frame.loc[frame["status"] == "ok", "sample_id"]) if len(frame) else set()
            if not set(manifest["sample_id"].astype(str)) <= ok:
                continue
        return run_dir
    return None


def load_side(
    spec: str | os.PathLike,
    *,
    label: str,
    manifest=None,
    protocol: Protocol | str | None = None,
    runs_dir: str | os.PathLike = "runs/compare",
    device: str = "cpu",
    batch_size: int = 8,
    progress=None,
) -> Side:
    """Results of one side under one protocol (module docstring, step 1).

    manifest: a manifest frame (`data.manifest.load_manifest`); needed to score predictions or a
    checkpoint, optional for a run folder (then only its rows for those sample ids are kept). protocol:
    what to score under; None takes the run's own (a run folder) or the default preset. A run folder
    scored under another fingerprint than `protocol` raises `ProtocolMismatchError`.
    """
    spec = pathlib.Path(spec)
    kind = side_kind(spec)
    if kind == "checkpoint":
        stored = checkpoint_run(spec, runs_dir, protocol, manifest)
        if stored is not None:  # the same weights already scored on these samples: reuse, never recompute
            side = load_side(stored, label=label, manifest=manifest, protocol=protocol)
            from ..models.checkpoint import read_checkpoint_config

            side.spec, side.kind, side.info = spec, "checkpoint", dict(read_checkpoint_config(spec))
            return side
    if kind == "run":
        own = run_protocol(spec)
        if protocol is not None and get_protocol(protocol).fingerprint() != own.fingerprint():
            asked = get_protocol(protocol)
            raise ProtocolMismatchError(
                f"{spec}: this run was scored under {own.label()} (fingerprint {own.fingerprint()}), not "
                f"{asked.label()} (fingerprint {asked.fingerprint()}); stored results are never rescored under "
                "another protocol: compare under the run's protocol, or score its predictions again")
        frame = read_results(spec)
        fps = sorted(set(frame["fingerprint"])) if len(frame) else []
        if len(fps) > 1:
            raise ProtocolMismatchError(f"{spec}: holds rows under several protocol fingerprints {fps}")
        if fps and fps[0] != own.fingerprint():
            raise ProtocolMismatchError(f"{spec}: rows are under fingerprint {fps[0]} but run.json says "
                                        f"{own.fingerprint()}")
        if manifest is not None and len(frame):
            frame = frame[frame["sample_id"].isin(set(manifest["sample_id"].astype(str)))].reset_index(drop=True)
        record = frame.attrs.get("run") or read_run_json(spec) or {}
        frame.attrs["run"] = record
        ident = (record.get("source") or {}).get("identity")
        return Side(label, spec, kind, ident, frame, spec, own, dict(record), reused=len(frame))

    from .runner import run_evaluation
    from .sources import FolderSource, PredictorSource

    if manifest is None:
        raise CompareInputError(f"{spec}: scoring {'a checkpoint' if kind == 'checkpoint' else 'predictions'} "
                                "needs a manifest (--data)")
    protocol = get_protocol(protocol or "default")
    info: dict = {}
    if kind == "checkpoint":
        from ..models.checkpoint import load_checkpoint

        model = load_checkpoint(spec, device=device)
        info = dict(model.checkpoint_config)
        source = PredictorSource(model)
    else:
        source = FolderSource(spec)
    fp = protocol.fingerprint()
    run_dir = pathlib.Path(runs_dir) / f"{_slug(source.name)}-{hashlib.sha256(source.identity.encode()).hexdigest()[:8]}-{fp}"
    resume = read_run_json(run_dir) is not None
    result = run_evaluation(source, manifest, protocol, run_dir, batch_size=batch_size, device=device,
                            resume=resume, progress=progress, command=["compare", str(spec)])
    frame = result.frame
    frame = frame[(frame["source"] == source.identity) & (frame["fingerprint"] == fp)]
    frame = frame[frame["sample_id"].isin(set(manifest["sample_id"].astype(str)))].reset_index(drop=True)
    frame.attrs["run"] = read_run_json(run_dir)
    return Side(label, spec, kind, source.identity, frame, run_dir, protocol, info,
                reused=result.skipped, scored=result.scored)


# ----------------------------------------------------------------------------------------------------------
# votes


def load_votes(path: str | os.PathLike):
    """Preference votes (DESIGN.md section 4: ``item_id, model_a, model_b, winner (a|b|tie), rater_id``) from
    CSV or JSONL, validated by `io.judgements.read_votes` (missing columns, empty cells, bad winners, a model
    against itself, duplicated votes, each named by its line). Raises `CompareInputError` with that message."""
    from ..io.judgements import JudgementFileError, read_votes

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--votes {path}: no such file")
    try:
        return read_votes(path)
    except JudgementFileError as err:
        raise CompareInputError(f"--votes {err}") from None


def _vote_counts(votes, names_a: Sequence[str], names_b: Sequence[str]) -> dict[str, Any]:
    """Wins of B over A among the votes that compare A with B (either order)."""
    a_set, b_set = set(names_a), set(names_b)
    fwd = votes["model_a"].isin(a_set) & votes["model_b"].isin(b_set)
    rev = votes["model_a"].isin(b_set) & votes["model_b"].isin(a_set)
    if not (fwd | rev).any():
        seen = sorted(set(votes["model_a"]) | set(votes["model_b"]))
        raise CompareInputError(f"--votes: no vote compares A ({', '.join(sorted(a_set))}) with B "
                                f"({', '.join(sorted(b_set))}); the file names the models {seen}")
    w = votes["winner"]
    b_wins = int(((fwd & (w == "b")) | (rev & (w == "a"))).sum())
    a_wins = int(((fwd & (w == "a")) | (rev & (w == "b"))).sum())
    ties = int(((fwd | rev) & (w == "tie")).sum())
    res = win_rate(b_wins, a_wins, ties)
    out = {"votes": int((fwd | rev).sum()), "items": int(votes.loc[fwd | rev, "item_id"].nunique()), **res.as_dict()}
    if "rater_id" in votes.columns:
        out["raters"] = int(votes.loc[fwd | rev, "rater_id"].nunique())
    return out


# ----------------------------------------------------------------------------------------------------------
# the paired analysis


@dataclass
class Comparison:
    """The paired analysis of B against A (module docstring, step 2).

    table: one row per (stratum, level, metric): n (pairs used), n_failed_a, n_failed_b, mean_a, low_a,
    high_a, mean_b, low_b, high_b, delta (mean of B - A), delta_low, delta_high, rel_delta (delta / |mean_a|),
    pvalue (Wilcoxon), p_holm, significant (p_holm < alpha), direction ("lower" | "higher" is better),
    better ("A" | "B" | "=" by the delta's sign and the direction).
    gap_a, gap_b: `summary.domain_gap` frames; accuracy_a, accuracy_b: `summary.occlusion_accuracy` frames
    (None without occlusion or F-score@0.05). preference: per-sample proxy preference on one metric; votes:
    the human votes' win rate of B (None when not given); samples: counts and lists of ids; regressions:
    the metrics that regressed; settings: alpha, confidence, n_resamples, seed, regression metrics.
    """

    labels: tuple[str, str]
    protocol: dict
    fingerprint: str
    table: Any
    gap_a: Any
    gap_b: Any
    accuracy_a: Any
    accuracy_b: Any
    preference: dict
    votes: dict | None
    samples: dict
    regressions: list[dict]
    settings: dict
    per_sample: Any = None

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    def verdict(self) -> str:
        """One sentence: regression, improvement or no significant change (overall stratum)."""
        a, b = self.labels
        if self.regressions:
            names = ", ".join(r["metric"] for r in self.regressions)
            return f"REGRESSION: {b} is significantly worse than {a} on {names} (Holm-adjusted p < {self.settings['alpha']:g})"
        overall = self.table[(self.table["stratum"] == "all") & self.table["significant"]]
        better = overall[overall["better"] == "B"]["metric"].tolist()
        worse = overall[overall["better"] == "A"]["metric"].tolist()
        if better and not worse:
            return f"IMPROVEMENT: {b} is significantly better than {a} on {', '.join(better)}"
        if better or worse:
            return (f"MIXED: {b} is significantly better on {', '.join(better) or 'nothing'} and worse on "
                    f"{', '.join(worse)} (none in the regression list beyond its threshold)")
        return f"NO SIGNIFICANT DIFFERENCE between {a} and {b} (Holm-adjusted p >= {self.settings['alpha']:g} for every metric)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (NaN as None)."""
        def rec(f):
            return None if f is None else f.to_dict("records")

        return to_jsonable({
            "labels": list(self.labels), "protocol": self.protocol, "fingerprint": self.fingerprint,
            "verdict": self.verdict(), "regressed": self.regressed, "regressions": self.regressions,
            "samples": self.samples, "table": rec(self.table), "gap": {"A": rec(self.gap_a), "B": rec(self.gap_b)},
            "occlusion_accuracy": {"A": rec(self.accuracy_a), "B": rec(self.accuracy_b)},
            "preference": self.preference, "votes": self.votes, "settings": self.settings,
        })


def check_same_protocol(frame_a, frame_b, labels: tuple[str, str] = ("A", "B")) -> str:
    """The one protocol fingerprint both frames were scored under; `ProtocolMismatchError` otherwise."""
    fps = []
    for f, lab in zip((frame_a, frame_b), labels):
        got = sorted(set(f["fingerprint"].dropna())) if len(f) else []
        if len(got) != 1:
            raise ProtocolMismatchError(f"{lab}: expected rows under one protocol fingerprint, found {got or 'none'}")
        fps.append((got[0], sorted(set(f["protocol"].dropna())) if "protocol" in f.columns else []))
    if fps[0][0] != fps[1][0]:
        raise ProtocolMismatchError(
            f"{labels[0]} was scored under protocol {fps[0][1]} (fingerprint {fps[0][0]}) and {labels[1]} under "
            f"{fps[1][1]} (fingerprint {fps[1][0]}): numbers under different protocols are not comparable; "
            "score both under one protocol (--protocol) first")
    return fps[0][0]


def _mean_ci(x: np.ndarray, confidence: float, n_resamples: int, seed: int) -> tuple[float, float, float]:
    mean = float(x.mean()) if x.size else math.nan
    return (mean, *_interval(x, confidence, n_resamples, seed))


def _paired(x: np.ndarray, y: np.ndarray, confidence: float, n_resamples: int, seed: int) -> dict[str, float]:
    d = y - x
    out = dict(delta=math.nan, delta_low=math.nan, delta_high=math.nan, pvalue=math.nan)
    if d.size == 0:
        return out
    out["delta"] = float(d.mean())
    if d.size >= 2 and not np.all(d == d[0]):
        r = paired_bootstrap(x, y, confidence=confidence, n_resamples=n_resamples, seed=seed)
        out["delta_low"], out["delta_high"] = float(r.low), float(r.high)
    elif d.size >= 2:
        out["delta_low"] = out["delta_high"] = float(d[0])
    nz = np.abs(d[d != 0])
    if nz.size:
        # Exact null distribution without ties (n <= 50); with tied |differences| the normal approximation
        # with tie correction (as R's wilcox.test): scipy's exact alternative there is a 2^n permutation test.
        exact = nz.size <= 50 and np.unique(nz).size == nz.size and nz.size == d.size
        out["pvalue"] = wilcoxon_signed_rank(x, y, method="exact" if exact else "approx").pvalue
    else:
        out["pvalue"] = 1.0  # identical on every sample: no evidence of any difference
    return out


def _groups(paired, strata: Sequence[str]):
    yield "all", "all", paired
    for col in strata:
        if col not in paired.columns or paired[col].isna().all():
            continue
        for level, g in paired.groupby(paired[col].astype(object).where(paired[col].notna(), "(none)"), sort=True):
            yield col, str(level), g


def compare_frames(
    frame_a,
    frame_b,
    *,
    labels: tuple[str, str] = ("A", "B"),
    metrics: Sequence[str] | None = None,
    regression_metrics: Sequence[str] | None = None,
    preference_metric: str | None = None,
    alpha: float = 0.05,
    min_effect: float = 0.0,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    votes=None,
    vote_names: tuple[Sequence[str], Sequence[str]] | None = None,
    protocol: Protocol | None = None,
    accuracy_threshold: float = 0.5,
) -> Comparison:
    """The paired analysis of B against A on two results frames (module docstring, step 2).

    metrics: default the protocol's headline columns and appearance metrics both frames have (without a
    protocol: every metric column both have, in A's order); regression_metrics: those a
    significant worsening of fails the comparison (default: the protocol's headline columns, else every
    metric); preference_metric: the per-sample proxy preference metric (default the first regression
    metric); min_effect: a regression also needs |delta| / |mean_a| above this; votes: a votes frame
    (`load_votes`) with `vote_names` = (names of A, names of B) as the file spells them.
    Raises `ProtocolMismatchError` when the frames were scored under different fingerprints and
    `CompareInputError` when they share no sample or no metric.
    """
    import pandas as pd

    if not 0.0 < alpha < 1.0:
        raise CompareInputError(f"alpha must lie in (0, 1), got {alpha}")
    fingerprint = check_same_protocol(frame_a, frame_b, labels)
    have = [m for m in metric_columns(frame_a) if m in set(metric_columns(frame_b))]
    if metrics is None:
        # the protocol's headline columns (+ appearance): precision/recall only restate the F-score and
        # would widen the Holm family
        headline = [m for m in protocol.columns() + list(APPEARANCE_METRICS) if m in have] if protocol is not None else []
        metrics = headline or have
    else:
        unknown = [m for m in metrics if m not in have]
        if unknown:
            raise CompareInputError(f"metric(s) {unknown} are not in both results; available: {have}")
        metrics = list(metrics)
    if not metrics:
        raise CompareInputError("the two results share no metric column")
    if regression_metrics is None:
        headline = protocol.columns() if protocol is not None else metrics
        regression_metrics = [m for m in headline if m in metrics] or list(metrics)
    else:
        unknown = [m for m in regression_metrics if m not in metrics]
        if unknown:
            raise CompareInputError(f"regression metric(s) {unknown} are not compared; compared: {list(metrics)}")
    preference_metric = preference_metric or regression_metrics[0]
    if preference_metric not in metrics:
        raise CompareInputError(f"preference metric {preference_metric!r} is not compared; compared: {list(metrics)}")

    vote_res = None
    if votes is not None:  # before the analysis: a votes file that names neither side fails fast
        names = vote_names or ((labels[0],), (labels[1],))
        vote_res = _vote_counts(votes, names[0], names[1])

    # attrs hold the run record, which pandas deep-copies on every operation: keep only the column lists
    frame_a, frame_b = frame_a.copy(), frame_b.copy()
    for f, src in ((frame_a, frame_a.attrs), (frame_b, frame_b.attrs)):
        f.attrs = {k: list(src[k]) for k in ("metrics", "strata") if src.get(k)}
    a = frame_a.drop_duplicates("sample_id", keep="last").set_index("sample_id")
    b = frame_b.drop_duplicates("sample_id", keep="last").set_index("sample_id")
    ids_a, ids_b = set(a.index), set(b.index)
    common = sorted(ids_a & ids_b)
    if not common:
        raise CompareInputError(f"{labels[0]} and {labels[1]} share no sample id (e.g. {sorted(ids_a)[:3]} vs "
                                f"{sorted(ids_b)[:3]})")
    a, b = a.loc[common], b.loc[common]
    ok_a, ok_b = (a["status"] == "ok").to_numpy(), (b["status"] == "ok").to_numpy()
    strata_src = a.copy()
    for col in ("domain", "occlusion", "category"):
        if col not in strata_src.columns and col in b.columns:
            strata_src[col] = b[col]
    paired = pd.DataFrame({"sample_id": common})
    for col in ("domain", "category"):
        if col in strata_src.columns:
            paired[col] = strata_src[col].to_numpy()
    if "occlusion" in strata_src.columns:
        paired["occlusion"] = strata_src["occlusion"].astype("float64").to_numpy()
        paired["occlusion_bin"] = occlusion_bin(paired["occlusion"])
    paired["ok_a"], paired["ok_b"] = ok_a, ok_b
    for m in metrics:
        paired[f"{m}__a"] = a[m].to_numpy(dtype=np.float64)
        paired[f"{m}__b"] = b[m].to_numpy(dtype=np.float64)
    strata = [s for s in STRATA if s in paired.columns]

    rows = []
    for stratum, level, g in _groups(paired, strata):
        for m in metrics:
            x, y = g[f"{m}__a"].to_numpy(), g[f"{m}__b"].to_numpy()
            use = g["ok_a"].to_numpy() & g["ok_b"].to_numpy() & np.isfinite(x) & np.isfinite(y)
            x, y = x[use], y[use]
            ma, la, ha = _mean_ci(x, confidence, n_resamples, seed)
            mb, lb, hb = _mean_ci(y, confidence, n_resamples, seed)
            p = _paired(x, y, confidence, n_resamples, seed)
            dirn = direction(m)
            rel = p["delta"] / abs(ma) if x.size and ma != 0 else math.nan
            better = "=" if not (p["delta"] == p["delta"]) or p["delta"] == 0 else (
                ("B" if p["delta"] < 0 else "A") if dirn == "lower" else ("B" if p["delta"] > 0 else "A"))
            rows.append(dict(stratum=stratum, level=level, metric=m, n=int(x.size),
                              n_failed_a=int((~g["ok_a"]).sum()), n_failed_b=int((~g["ok_b"]).sum()),
                              mean_a=ma, low_a=la, high_a=ha, mean_b=mb, low_b=lb, high_b=hb, **p,
                              rel_delta=rel, direction=dirn, better=better))
    # Holm across one family: every (level, metric) test of one stratification ("all" is its own family).
    for stratum in dict.fromkeys(r["stratum"] for r in rows):
        block = [r for r in rows if r["stratum"] == stratum]
        ps = np.array([r["pvalue"] for r in block], dtype=np.float64)
        fin = np.isfinite(ps)
        adj = np.full(ps.shape, np.nan)
        if fin.any():
            adj[fin] = holm(ps[fin], alpha).pvalues
        for r, q in zip(block, adj):
            r["p_holm"] = float(q)
            r["significant"] = bool(q < alpha) if q == q else False
    table = pd.DataFrame(rows, columns=["stratum", "level", "metric", "n", "n_failed_a", "n_failed_b", "mean_a", "low_a",
                                        "high_a", "mean_b", "low_b", "high_b", "delta", "delta_low", "delta_high",
                                        "pvalue", "p_holm", "significant", "rel_delta", "direction", "better"])

    regressions = []
    for r in table[(table["stratum"] == "all") & table["metric"].isin(regression_metrics)].to_dict("records"):
        if r["significant"] and r["better"] == "A" and (not min_effect or abs(r["rel_delta"]) > min_effect):
            regressions.append({k: r[k] for k in ("metric", "mean_a", "mean_b", "delta", "delta_low", "delta_high",
                                                  "rel_delta", "pvalue", "p_holm")})

    # per-sample proxy preference: which side is better on each sample both scored (ties kept)
    x, y = paired[f"{preference_metric}__a"].to_numpy(), paired[f"{preference_metric}__b"].to_numpy()
    use = paired["ok_a"].to_numpy() & paired["ok_b"].to_numpy() & np.isfinite(x) & np.isfinite(y)
    lower = direction(preference_metric) == "lower"
    b_better = use & ((y < x) if lower else (y > x))
    a_better = use & ((x < y) if lower else (x > y))
    ties = use & (x == y)
    preference: dict[str, Any] = {"metric": preference_metric, "direction": direction(preference_metric),
                                  "samples": int(use.sum())}
    if use.any():
        preference.update(win_rate(int(b_better.sum()), int(a_better.sum()), int(ties.sum()),
                                   confidence=confidence).as_dict())
    per_sample = paired[["sample_id"] + [c for c in ("domain", "category", "occlusion") if c in paired.columns]].copy()
    per_sample["a"], per_sample["b"] = x, y
    per_sample["ok_a"], per_sample["ok_b"] = paired["ok_a"], paired["ok_b"]
    per_sample["preferred"] = np.where(b_better, "B", np.where(a_better, "A", np.where(ties, "tie", "")))

    fa = [s for s, o in zip(common, ok_a) if not o]
    fb = [s for s, o in zip(common, ok_b) if not o]
    samples = {
        "A": len(ids_a), "B": len(ids_b), "common": len(common), "both_ok": int((ok_a & ok_b).sum()),
        "failed_only_A": sorted(set(fa) - set(fb)), "failed_only_B": sorted(set(fb) - set(fa)),
        "failed_both": sorted(set(fa) & set(fb)),
        "only_in_A": sorted(ids_a - ids_b), "only_in_B": sorted(ids_b - ids_a),
    }
    err_col = "error"
    samples["errors"] = {
        lab: {s: str(f.loc[s, err_col]) for s in ids if err_col in f.columns}
        for lab, f, ids in ((labels[0], a, fa), (labels[1], b, fb))
    }

    frames = [frame_a[frame_a["sample_id"].isin(common)], frame_b[frame_b["sample_id"].isin(common)]]
    gaps = [domain_gap(f, metrics, n_resamples=n_resamples, seed=seed, threshold=accuracy_threshold) for f in frames]
    accs = [occlusion_accuracy(f, threshold=accuracy_threshold)
            if ("occlusion" in f.columns and "fscore@0.05" in f.columns) else None for f in frames]
    proto = protocol.to_dict() if protocol is not None else {"name": sorted(set(frame_a["protocol"]))[0]}
    return Comparison(
        labels=tuple(labels), protocol=proto, fingerprint=fingerprint, table=table, gap_a=gaps[0], gap_b=gaps[1],
        accuracy_a=accs[0], accuracy_b=accs[1], preference=preference, votes=vote_res, samples=samples,
        regressions=regressions, per_sample=per_sample,
        settings={"alpha": alpha, "min_effect": min_effect, "confidence": confidence, "n_resamples": n_resamples,
                  "seed": seed, "regression_metrics": list(regression_metrics), "metrics": list(metrics),
                  "accuracy_threshold": accuracy_threshold,
                  "holm_family": "every (level, metric) test of one stratification; the 'all' stratum decides the verdict"},
    )


def comparison_json(comparison: Comparison, sides: Sequence[Side] = ()) -> str:
    """The comparison and its sides as indented JSON (what ``compare --json`` prints)."""
    payload = comparison.to_dict()
    payload["sides"] = [s.describe() for s in sides]
    return json.dumps(payload, indent=2, allow_nan=False)


# ----------------------------------------------------------------------------------------------------------
# meshes of a few samples (report thumbnails)


def prediction_source(side: Side):
    """A source that can produce `side`'s predictions again: its folder or checkpoint, or the folder a run
    recorded (``folder:<path>`` identities); None when the run's source cannot be rebuilt."""
    from .sources import FolderSource, PredictorSource

    if side.kind == "predictions":
        return FolderSource(side.spec)
    if side.kind == "checkpoint":
        from ..models.checkpoint import load_checkpoint

        return PredictorSource(load_checkpoint(side.spec))
    ident = side.identity or ""
    if ident.startswith("folder:") and pathlib.Path(ident[len("folder:"):]).is_dir():
        return FolderSource(ident[len("folder:"):], identity=ident)
    return None


def sample_meshes(source, rows: Sequence[Mapping[str, Any]], protocol: Protocol) -> dict[str, Any]:
    """``{sample_id: Meshes | Pointclouds | None}``: `source`'s prediction of each manifest row (None when it
    has none, fails, or `source` is None), on the CPU."""
    if source is None:
        return {str(r["sample_id"]): None for r in rows}
    items = [source.load(r, protocol) for r in rows]
    done = source.finish(items, "cpu")
    return {str(r["sample_id"]): (p if p is not None and not isinstance(p, BaseException) else None)
            for r, (p, _) in zip(rows, done)}
