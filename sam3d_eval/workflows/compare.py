"""Compare two sides (each one or several runs) on the same samples, and write the comparison's report.

`compare_sides` is what ``sam3d-eval compare`` runs:

1. each side's argument becomes its runs (`evaluate.sides.expand_side`: a path, a comma-separated list, a glob);
2. the manifest: the one given, else the one a checkpoint was trained on (its recorded hash, or the built-in
   benchmark regenerated from its record; then its test split), else the one a run records;
3. the protocol: the one asked for, else a stored run's own (a run side, or a stored run of a checkpoint's
   weights), else the default preset;
4. every run is loaded (`evaluate.sides.load_side`: stored rows reused while their content keys match,
   the rest scored into `runs_dir`), and the analysis runs (`evaluate.compare.compare_frames`).

`write_comparison_report` renders B's worst scored samples, attributes each side's gap to the recorded real-side
shifts when the results hold ``shift_*`` intensities (`evaluate.attribution.gap_attribution`, first run of
each side) and writes the self-contained HTML file.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

__all__ = ["CompareResult", "compare_sides", "side_label", "write_comparison_report"]


@dataclass
class CompareResult:
    """comparison: the `evaluate.compare.Comparison`; sides: the loaded `Side`s of A and of B (one list per
    side, one `Side` per run); manifest: the manifest frame used (None when comparing stored runs without
    one); manifest_path; protocol: what the sides were scored under."""

    comparison: Any
    sides: list[list[Any]]
    manifest: Any
    manifest_path: pathlib.Path | None
    protocol: Any

    @property
    def flat_sides(self) -> list[Any]:
        """A's runs, then B's."""
        return self.sides[0] + self.sides[1]


def side_label(text: str, paths: Sequence[pathlib.Path]) -> str:
    """A short display name: a run folder's or predictions folder's name, ``folder/stem`` of a checkpoint, or the
    argument as given when it names several runs."""
    if len(paths) > 1:
        return text
    path = paths[0]
    name = path.stem if path.is_file() else path.name
    if path.is_file() and path.parent.name:
        return f"{path.parent.name}/{name}"
    return name or str(path)


def _manifest(data, split, sides, runs_dir, log):
    """(`Manifest` or None, its path): module docstring, step 2."""
    from ..data.manifest import Manifest
    from ..evaluate.sides import CompareInputError, manifest_from_checkpoint
    from ..io.results import read_run_json

    path, recorded = data, False
    if path is None:
        for spec, kind in (run for side in sides for run in side):
            if kind == "checkpoint":
                from ..models.checkpoint import read_checkpoint

                cfg = read_checkpoint(spec).config
                path, recorded = manifest_from_checkpoint(cfg, spec, runs_dir), True
                break
            if kind == "run":
                rec = read_run_json(spec) or {}
                if isinstance(rec, dict) and rec.get("manifest") and pathlib.Path(rec["manifest"]).is_file():
                    path = pathlib.Path(rec["manifest"])
                    break
    if path is None:
        if all(k == "run" for side in sides for _, k in side):
            return None, None
        raise CompareInputError("scoring predictions needs a manifest: pass --data MANIFEST")
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--data {path}: no such manifest")
    manifest = Manifest.read(path)
    split = split or ("test" if recorded and "split" in manifest.frame.columns else None)
    if split is not None:
        if "split" not in manifest.frame.columns:
            raise ValueError(f"--split {split}: the manifest {path} has no split column")
        manifest = manifest.split(split)
        if not len(manifest):
            raise ValueError(f"{path}: no rows in split {split!r}")
    log(f"data: {path} ({len(manifest)} samples{f', split {split}' if split else ''})")
    return manifest, path


def _stored_protocol(sides, reuse, runs_dir):
    """A stored run's protocol: a run side's own, or a stored run of a checkpoint's weights; else the default."""
    from ..evaluate.protocols import get_protocol
    from ..evaluate.sides import run_protocol, stored_runs_of

    runs = [run_protocol(s) for side in sides for s, k in side if k == "run"]
    if not runs:
        from ..models.checkpoint import load_checkpoint

        for s, k in (run for side in sides for run in side):
            if k == "checkpoint":
                stored = stored_runs_of(load_checkpoint(s).identity, [*reuse, s.parent / "eval", runs_dir])
                if stored:
                    runs.append(run_protocol(stored[0]))
                    break
    return runs[0] if runs else get_protocol("default")


def compare_sides(
    a: str | pathlib.Path,
    b: str | pathlib.Path,
    *,
    data: str | pathlib.Path | None = None,
    split: str | None = None,
    protocol=None,
    labels: tuple[str, str] | None = None,
    runs_dir: str | pathlib.Path = "runs/compare",
    reuse: Sequence[str | pathlib.Path] = (),
    votes: str | pathlib.Path | None = None,
    vote_names: tuple[str, str] | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    progress: Callable[[str], Any] | None = None,
    log: Callable[[str], None] = lambda line: None,
    **analysis: Any,
) -> CompareResult:
    """B against A (module docstring).

    Args:
        a, b: each a checkpoint, a predictions folder, a run folder, or several (comma-separated, or a glob).
        data: the manifest (default: found from the sides' records). split: only its rows of this split
            (default: all; "test" when the manifest comes from a checkpoint's record).
        protocol: a `Protocol` to score under and to require of stored runs; None: a stored run's own, else the
            default preset.
        labels: display names (default: from the arguments).
        runs_dir: where scored sides are stored and found again; reuse: runs to read first.
        votes, vote_names: a human votes file and how it names A and B.
        device, batch_size: for scoring.
        progress: ``progress(label)`` gives the `evaluate.runner.Progress` a side's scoring reports to.
        log: receives one line per side (what was reused and scored) and per note.
        analysis: keyword arguments of `evaluate.compare.compare_frames` (metrics, regression_metrics,
            preference_metric, alpha, min_effect, n_resamples, failed_as, figure, cluster, ...).

    Returns:
        `CompareResult`. Raises `evaluate.sides.CompareInputError` / `ProtocolMismatchError` (ValueErrors) and
        FileNotFoundError for bad inputs.
    """
    from ..evaluate.compare import compare_frames, load_votes
    from ..evaluate.gt_cache import GTSampleCache
    from ..evaluate.sides import expand_side, load_side, side_kind

    runs_dir = pathlib.Path(runs_dir)
    reuse = [pathlib.Path(r) for r in reuse]
    for r in reuse:
        if not r.is_dir():
            raise FileNotFoundError(f"--reuse {r}: no such run folder")
    specs = [expand_side(a), expand_side(b)]
    sides_in = [[(p, side_kind(p)) for p in paths] for paths in specs]
    labels = tuple(labels) if labels else (side_label(str(a), specs[0]), side_label(str(b), specs[1]))
    if labels[0] == labels[1]:
        labels = (labels[0] + " (A)", labels[1] + " (B)")
    manifest, manifest_path = _manifest(data, split, sides_in, runs_dir, log)
    explicit = protocol is not None
    protocol = protocol if explicit else _stored_protocol(sides_in, reuse, runs_dir)
    votes_frame = load_votes(votes) if votes else None
    loaded: list[list] = [[], []]
    # Every run is scored against the same ground truths under one protocol: the first run's GT surface
    # samples serve the others (evaluate.gt_cache; the same numbers, bitwise). Dropped with this call.
    gt_cache = GTSampleCache()
    for i, (side, label) in enumerate(zip(sides_in, labels)):
        for spec, kind in side:
            name = label if len(side) == 1 else f"{label} [{spec}]"
            # a stored run keeps its own protocol unless one was asked for (then a different one is refused)
            asked = protocol if (kind != "run" or explicit) else None
            s = load_side(spec, label=name, manifest=manifest, protocol=asked, runs_dir=runs_dir, reuse=reuse,
                          device=device, batch_size=batch_size,
                          progress=progress(f"scoring {name}") if progress is not None else None, gt_cache=gt_cache)
            _log_side(s, name, spec, log)
            loaded[i].append(s)
    used = {s.run_dir.resolve() for side in loaded for s in side if s.run_dir is not None}
    for r in reuse:
        if r.resolve() not in used and not any(u.is_relative_to(r.resolve()) for u in used):
            log(f"note: --reuse {r} was not used: it holds no run of these predictions or checkpoints under protocol "
                f"{protocol.label()} (a run is matched by its source identity, e.g. the predictions folder's path, and "
                "protocol fingerprint)")
    comparison = compare_frames(
        [s.frame for s in loaded[0]], [s.frame for s in loaded[1]], labels=labels, votes=votes_frame,
        vote_names=((vote_names[0],), (vote_names[1],)) if vote_names else None, protocol=loaded[0][0].protocol,
        **analysis)
    return CompareResult(comparison, loaded, manifest, manifest_path, protocol)


def _log_side(s, name: str, spec: pathlib.Path, log: Callable[[str], None]) -> None:
    where = f"; stored run {s.run_dir}" if s.run_dir is not None and s.run_dir != spec else ""
    if s.scored_into is not None and s.scored_into != s.run_dir:
        where += f"; scored rows stored in {s.scored_into}"
    log(f"{name}: {s.kind} {spec}: {len(s.frame)} rows ({s.reused} stored rows reused, {s.scored} scored"
        f"{f', {s.stale} of them because their files or manifest row changed' if s.stale else ''}){where}")
    if s.stale_ids:
        log(f"  {len(s.stale_ids)} stored row(s) no longer match their ground truth or manifest row and the "
            f"run's predictions cannot be found to score them again; left out: {', '.join(s.stale_ids[:8])}")
    if s.unchecked:
        log(f"  note: {s.unchecked}")


def write_comparison_report(path: str | pathlib.Path, result: CompareResult, *, n_thumbs: int = 6,
                            log: Callable[[str], None] = lambda line: None) -> pathlib.Path:
    """Render B's worst scored samples (its largest losses on the preference metric, from the first run of
    each side) and write the comparison's self-contained HTML report to `path`, with each side's gap attributed
    to the recorded shifts (first run of each side); returns its path."""
    from ..evaluate.attribution import gap_attribution
    from ..evaluate.sides import prediction_source
    from ..io.results import run_metadata
    from ..report import comparison_document, write_html
    from ..report.tables import fmt
    from .gallery import gallery

    comparison = result.comparison
    firsts = [result.sides[0][0], result.sides[1][0]]
    cards = []
    ps = comparison.per_sample
    if n_thumbs > 0 and ps is not None and result.manifest is not None and len(ps):
        pm = comparison.preference["metric"]
        worse_sign = 1.0 if comparison.preference["direction"] == "lower" else -1.0
        both = ps[ps["ok_a"] & ps["ok_b"]].copy()
        both["loss"] = worse_sign * (both["b"] - both["a"])
        rows = {r["sample_id"]: r for r in result.manifest.rows()}
        chosen = [s for s in both.sort_values("loss", ascending=False)["sample_id"] if s in rows][:n_thumbs]
        if chosen:
            log(f"rendering the {len(chosen)} samples where {comparison.labels[1]} lost most")
            info = both.set_index("sample_id")
            captions = {s: f"{pm}: A {fmt(info.loc[s, 'a'])}, B {fmt(info.loc[s, 'b'])}" for s in chosen}
            sources = [(f"{k}: {lab}", prediction_source(side), side.protocol)
                       for k, lab, side in zip("AB", comparison.labels, firsts)]
            cards = gallery([rows[s] for s in chosen], sources, captions)
    ids = None if ps is None else set(ps["sample_id"].astype(str))  # the samples both sides hold, as in the gap
    attribution = {lab: gap_attribution(side.frame if ids is None else
                                        side.frame[side.frame["sample_id"].astype(str).isin(ids)])
                   for lab, side in zip(comparison.labels, firsts)}
    doc = comparison_document(comparison.to_dict(), thumbnails=cards, sides=[s.describe() for s in result.flat_sides],
                              metadata=run_metadata(), attribution=attribution)
    return write_html(path, doc)
