"""The HTML report of stored runs, training output folders and human judgements (what ``sam3d-eval report``
writes).

A RUN is a run folder (``run.json`` + ``results/``, from ``evaluate`` or a comparison) or a training output
folder: one holding ``gap.csv`` (the phase-boundary gap rows of a recipe run) and phase-boundary evaluation
runs under ``*/eval/*/``; its last phase's run is reported and the gap across the curriculum phases plotted.
A ``rounds.csv`` with a ``round`` column (data-engine rounds) is plotted the same way, and a data-engine
folder (``rounds/<k>/eval/`` runs, ``rounds.csv``, ``engine_rounds.csv``) gets its rounds table. Nothing is
recomputed: results are read with `io.read_results`. With two runs or more, the last is compared with the
first (`evaluate.compare.compare_frames`) and the verdict says how B fares against A. When the results record
the real-side shifts' intensities (``shift_*`` columns, as the built-in benchmark does), each run's gap is
attributed to them (`evaluate.attribution.gap_attribution`) for the "Gap by shift" section.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable, Sequence

__all__ = ["find_phase_runs", "phase_rows", "report_runs", "summarise_run", "worst_samples"]


def find_phase_runs(folder: pathlib.Path) -> list[pathlib.Path]:
    """Phase-boundary evaluation run folders under a training output folder, in training order: by stage and
    phase where the folder is named so (``stage2-phase3-...``, as the training hook names them), else by the
    time run.json was last written."""
    import re

    found = {p.parent for pattern in ("*/eval/*/run.json", "eval/*/run.json", "rounds/*/eval/run.json")
             for p in folder.glob(pattern)}

    def order(run: pathlib.Path) -> tuple[float, float, float]:
        m = re.match(r"stage(\d+)-phase(\d+)", run.name)
        stage, phase = (int(m.group(1)), int(m.group(2))) if m else (float("inf"), float("inf"))
        return (stage, phase, (run / "run.json").stat().st_mtime)

    return sorted(found, key=order)


def phase_rows(folder: pathlib.Path) -> tuple[list[dict], str]:
    """Gap rows across phases (gap.csv) or data-engine rounds (rounds.csv) with a ``label``; ([], '') if none."""
    import pandas as pd

    gap = folder / "gap.csv"
    if gap.is_file():
        t = pd.read_csv(gap)
        if {"metric", "figure", "estimate", "low", "high"} <= set(t.columns):
            if "stage" in t.columns and "phase" in t.columns:
                t["label"] = "s" + t["stage"].astype(str) + " " + t["phase"].astype(str)
            else:
                t["label"] = [str(i) for i in range(len(t))]
            return t.to_dict("records"), "curriculum phase"
    rounds = folder / "rounds.csv"
    if rounds.is_file():
        t = pd.read_csv(rounds)
        if {"round", "metric", "figure", "estimate", "low", "high"} <= set(t.columns):
            t["label"] = "round " + t["round"].astype(str)
            return t.to_dict("records"), "data-engine round"
    return [], ""


def unworn_results(run_dir: pathlib.Path):
    """The real samples of a phase-boundary run scored against their unworn GT (`train.hooks.PhaseEvaluator`
    writes them to ``<stage>/eval_unworn/<name>`` beside ``<stage>/eval/<name>``), or None when there are none:
    the rows under that run's own protocol, which is the phase run's."""
    from ..evaluate.sides import StoredRun

    run_dir = pathlib.Path(run_dir)
    sibling = run_dir.parent.parent / "eval_unworn" / run_dir.name
    if run_dir.parent.name != "eval" or not (sibling / "run.json").is_file():
        return None
    frame = StoredRun.read(sibling).rows_under_protocol()
    return frame if len(frame) else None


def summarise_run(run_dir: pathlib.Path, label: str, *, threshold: float = 0.5, n_resamples: int = 2000) -> dict:
    """The record `report.runs_document` takes, from a run folder's stored results (read, not recomputed):
    `evaluate.summary.run_summary` of the rows under the run's protocol, with its label, folder, protocol and
    metadata; ``stored`` is the `evaluate.sides.StoredRun` (for the comparison and the gallery; not part of
    the document)."""
    from ..evaluate.sides import StoredRun
    from ..evaluate.summary import run_summary

    stored = StoredRun.read(run_dir)
    frame = stored.rows_under_protocol()
    if not len(frame):
        raise ValueError(f"{run_dir}: the run holds no results yet")
    stored = StoredRun(stored.run_dir, frame, stored.record, stored.protocol)
    failed = frame[frame["status"] != "ok"]
    return {
        "label": label, "run_dir": str(run_dir), "protocol": stored.protocol.to_dict(),
        "fingerprint": stored.protocol.fingerprint(),
        **run_summary(frame, threshold=threshold, n_resamples=n_resamples, unworn=unworn_results(run_dir)),
        "metadata": stored.record.get("metadata") or {},
        "failed": failed[["sample_id", "error"]].to_dict("records"), "stored": stored,
    }


def worst_samples(run: dict, n: int, *, log: Callable[[str], None] = lambda line: None) -> list[dict]:
    """Gallery cards of the run's `n` worst scored samples on its first headline metric (failed samples are in
    the failed table, with their reason); [] when the run records no manifest on disk."""
    from ..data.manifest import Manifest
    from ..evaluate.sides import Side, prediction_source
    from ..io.results import direction, headline_metrics
    from ..report.tables import fmt
    from .gallery import gallery

    stored = run["stored"]
    if n <= 0 or stored.manifest_path is None or not run["metrics"]:
        return []
    frame = stored.frame
    metric = headline_metrics(run["metrics"], fallback=1)[0]
    ok = frame[frame["status"] == "ok"].dropna(subset=[metric])
    chosen = ok.sort_values(metric, ascending=direction(metric) != "lower")["sample_id"].tolist()[:n]
    rows = {r["sample_id"]: r for r in Manifest.read(stored.manifest_path).rows()}
    sel = [rows[s] for s in chosen if s in rows]
    if not sel:
        return []
    log(f"rendering the {len(sel)} worst samples of {run['label']}")
    side = Side(run["label"], stored.run_dir, "run", stored.identity, frame, stored.run_dir, stored.protocol,
                dict(stored.record))
    values = ok.set_index("sample_id")[metric]
    return gallery(sel, [("prediction", prediction_source(side), stored.protocol)],
                   {s: f"{metric} {fmt(values[s])}" for s in chosen})


def report_runs(
    runs: Sequence[str | pathlib.Path],
    out: str | pathlib.Path,
    *,
    labels: Sequence[str] | None = None,
    votes: str | pathlib.Path | None = None,
    ratings: str | pathlib.Path | None = None,
    models: Sequence[str] | None = None,
    thumbnails: int = 6,
    threshold: float = 0.5,
    n_resamples: int = 2000,
    title: str | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> pathlib.Path:
    """Write the self-contained HTML report of `runs` (module docstring) to `out`; returns its path.

    Args:
        runs: run folders or training output folders (may be empty with `votes` or `ratings`).
        out: the .html file. labels: display names of the runs (default: folder names).
        votes, ratings, models: human judgements to add (`analyse_judgements`).
        thumbnails: worst samples of the last run rendered (0: none).
        threshold: F-score@0.05 at which a sample is accurate; n_resamples: bootstrap resamples.
        title: the report's title. log: progress lines.

    Raises ValueError / FileNotFoundError naming a bad input.
    """
    import pandas as pd

    from ..evaluate.attribution import gap_attribution
    from ..io.results import headline_metrics, read_run_json
    from ..jsonable import to_jsonable
    from ..report import judgement_sections, preference_document, runs_document, write_html
    from .judgements import analyse_judgements

    runs = [pathlib.Path(r) for r in runs]
    if labels is not None and len(labels) != len(runs):
        raise ValueError(f"--labels: {len(labels)} names for {len(runs)} runs")
    if not runs and votes is None and ratings is None:
        raise ValueError("give one or more RUN folders, --votes, --ratings, or a combination")
    judged = None
    if votes is not None or ratings is not None:
        # read and validated before any run is summarised: a bad file fails fast, naming its line
        judged = analyse_judgements(votes, ratings, models=models, resamples=n_resamples)
    if not runs:
        return write_html(out, preference_document(judged["preference"], judged["rubric"], inputs=judged["inputs"],
                                                   title=title))

    summaries, phases, phase_label, subs, notes, engine, change = [], [], "curriculum phase", {}, [], [], []
    for i, folder in enumerate(runs):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such run folder")
        run_dir = folder
        rows, what = phase_rows(folder)
        if rows:
            phases, phase_label = rows, what
        if read_run_json(folder) is None:
            found = find_phase_runs(folder)
            if not found:
                raise ValueError(f"{folder}: neither a run folder (run.json) nor a training output folder with "
                                 "phase-boundary evaluations (*/eval/*/run.json)")
            run_dir = found[-1]
            notes.append(f"{folder}: reporting the last phase-boundary evaluation {run_dir.name} of {len(found)}.")
            subs.update(_substitutes(folder))
        if (folder / "engine_rounds.csv").is_file():
            engine = pd.read_csv(folder / "engine_rounds.csv").to_dict("records")
        if (folder / "gap_change.csv").is_file():  # a training run: how the gap moved from stage 1 to stage 2
            change = pd.read_csv(folder / "gap_change.csv").to_dict("records")
        label = labels[i] if labels else (folder.name or str(folder))
        summaries.append(summarise_run(run_dir, label, threshold=threshold, n_resamples=n_resamples))
    metrics = headline_metrics({m for r in summaries for m in r["metrics"]}) or summaries[-1]["metrics"][:6]
    comparison = _last_against_first(summaries, n_resamples, threshold)
    cards = worst_samples(summaries[-1], thumbnails, log=log)
    clean = [to_jsonable({k: v for k, v in r.items() if k != "stored"}) for r in summaries]
    attribution = {r["label"]: gap_attribution(r["stored"].frame) for r in summaries}
    doc = runs_document(clean, metrics=metrics, phases=to_jsonable(phases), phase_label=phase_label, thumbnails=cards,
                        substitutes=subs, title=title, notes=notes, engine_rounds=to_jsonable(engine),
                        gap_change=to_jsonable(change), comparison=comparison, attribution=attribution,
                        judgements=judgement_sections(judged["preference"], judged["rubric"]) if judged else ())
    return write_html(out, doc)


def _substitutes(folder: pathlib.Path) -> dict[str, Any]:
    """The substitute networks a training folder's checkpoints record (written into the Methods section)."""
    from ..models.checkpoint import read_checkpoint_config

    out: dict[str, Any] = {}
    checkpoints = [c for c in sorted(folder.glob("*/*.safetensors")) if not c.name.startswith(".")]  # no temporaries
    for ck in sorted(folder.glob("*/final.safetensors")) or checkpoints[-1:]:
        try:
            out.update(read_checkpoint_config(ck).get("substitutes") or {})
        except (ValueError, OSError):
            pass
    return out


def _last_against_first(summaries: list[dict], n_resamples: int, threshold: float) -> dict | None:
    """The comparison payload of the last run against the first, when there are two runs or more under one
    protocol sharing samples; None otherwise (the report then says no comparison was made)."""
    from ..evaluate.compare import compare_frames
    from ..evaluate.sides import CompareInputError

    if len(summaries) < 2:
        return None
    first, last = summaries[0], summaries[-1]
    try:
        c = compare_frames(first["stored"].frame, last["stored"].frame, labels=(first["label"], last["label"]),
                           n_resamples=n_resamples, accuracy_threshold=threshold, protocol=first["stored"].protocol)
    except CompareInputError:  # other protocols or no shared sample: nothing to compare
        return None
    return c.to_dict()
