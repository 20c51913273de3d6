"""Human judgement files: preference votes and rubric ratings (DESIGN.md section 4), read and validated.

- Votes: ``item_id, model_a, model_b, winner (a|b|tie), rater_id`` (rater_id optional: missing means one
  anonymous rater per file).
- Rubric ratings: ``item_id, rater_id, geometry, texture, completeness, multiview`` (each 0-10) and ``round``
  (optional; missing means round 1). Optional ``occlusion`` (0..1, the item's hidden fraction) lets the
  failure-mode mix tell occlusion failures from plain incompleteness (`stats.rubric`).

CSV (header on line 1) or JSONL (one object per line); other columns are kept. Every problem - a missing
column, an empty cell, an unknown winner, a model paired with itself, a model outside the given list, a
score outside 0-10 or not a number, a duplicated judgement - is a `JudgementFileError` whose message names
the file, the line and the row's item and rater, and counts the other bad rows: nothing is dropped
silently. The returned frame has a ``line`` column (the file line of each row) for later messages.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Iterable, Sequence

__all__ = [
    "CRITERIA",
    "JudgementFileError",
    "RATING_COLUMNS",
    "VOTE_COLUMNS",
    "read_judgement_table",
    "read_ratings",
    "read_votes",
    "validate_ratings",
    "validate_votes",
]

VOTE_COLUMNS = ("item_id", "model_a", "model_b", "winner", "rater_id")
CRITERIA = ("geometry", "texture", "completeness", "multiview")
RATING_COLUMNS = ("item_id", "rater_id", *CRITERIA, "round")
SCORE_RANGE = (0.0, 10.0)
_SHOWN = 8  # problems listed in one message (the rest are counted)


class JudgementFileError(ValueError):
    """A votes or ratings file that cannot be used as given; the message names the rows and problems."""


def read_judgement_table(path: str | os.PathLike):
    """A CSV or JSONL file as a pandas frame of strings/numbers with a ``line`` column (file line numbers).

    CSV cells are read as text (ids keep leading zeros); JSONL values keep their JSON types. Raises
    FileNotFoundError or `JudgementFileError` (unparseable line, naming it)."""
    import pandas as pd

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        records, lines = [], []
        with path.open(encoding="utf-8") as fh:
            for k, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as err:
                    raise JudgementFileError(f"{path} line {k}: not valid JSON ({err.msg})") from None
                if not isinstance(obj, dict):
                    raise JudgementFileError(f"{path} line {k}: expected a JSON object, got {type(obj).__name__}")
                records.append(obj)
                lines.append(k)
        frame = pd.DataFrame.from_records(records)
        frame["line"] = lines
    else:
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=True)
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise JudgementFileError(f"{path}: not a readable CSV file ({err})") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        # pandas skips blank lines, so count them back to give the true file line of each row
        with path.open(encoding="utf-8") as fh:
            nonblank = [k for k, text in enumerate(fh, start=1) if text.strip()]
        frame["line"] = nonblank[1 : len(frame) + 1]
        frame = frame.replace({"": None})
    if not len(frame):
        raise JudgementFileError(f"{path}: no rows")
    return frame


def _where(source: str, frame, i: int, keys: Sequence[str]) -> str:
    row = frame.iloc[i]
    parts = [f"{k} {row[k]!r}" for k in keys if k in frame.columns and row[k] is not None]
    line = row["line"] if "line" in frame.columns else None
    at = f"line {line}" if line is not None else f"row {i}"
    return f"{source} {at}" + (f" ({', '.join(parts)})" if parts else "")


def _raise(source: str, problems: list[str]) -> None:
    if problems:
        more = f"\n  ... and {len(problems) - _SHOWN} more problem(s)" if len(problems) > _SHOWN else ""
        raise JudgementFileError(
            f"{source}: {len(problems)} bad row(s):\n  " + "\n  ".join(problems[:_SHOWN]) + more
        )


def _require(frame, columns: Iterable[str], source: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = [c for c in frame.columns if c != "line"]
        raise JudgementFileError(f"{source}: missing column(s) {missing} (has {have})")


def _flag_repeats(source: str, frame, keys: Iterable[tuple], what: str, why, problems: list[str]) -> None:
    """Append a problem for every row whose key repeats an earlier row's (naming the first one's line)."""
    seen: dict[tuple, int] = {}
    for i, k in enumerate(keys):
        if k in seen:
            first = frame["line"].iloc[seen[k]] if "line" in frame.columns else seen[k]
            problems.append(f"{_where(source, frame, i, ('item_id', 'rater_id'))}: duplicates the {what} on line "
                            f"{first} ({why(k)})")
        else:
            seen[k] = i


def _text(v) -> str | None:
    import math

    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    s = str(v).strip()
    return s or None


def validate_votes(frame, models: Sequence[str] | None = None, *, source: str = "votes"):
    """Check a votes frame (module docstring); returns a clean copy: ids and names as text, winner lower
    case, ``rater_id`` filled with "rater" when the column is absent. `models`: the known model names
    (a vote naming another model is an error), or None to accept any."""
    _require(frame, ("item_id", "model_a", "model_b", "winner"), source)
    out = frame.copy()
    if "rater_id" not in out.columns:
        out["rater_id"] = "rater"
    keys = ("item_id", "model_a", "model_b", "rater_id")
    known = None if models is None else {str(m) for m in models}
    problems: list[str] = []
    cols = {c: [_text(v) for v in out[c]] for c in (*keys, "winner")}
    for i in range(len(out)):
        where = _where(source, out, i, ("item_id", "rater_id"))
        empty = [c for c in cols if cols[c][i] is None]
        if empty:
            problems.append(f"{where}: empty {', '.join(empty)}")
            continue
        w = cols["winner"][i].lower()
        if w not in ("a", "b", "tie"):
            problems.append(f"{where}: winner {cols['winner'][i]!r} is not a, b or tie")
        a, b = cols["model_a"][i], cols["model_b"][i]
        if a == b:
            problems.append(f"{where}: model {a!r} is compared with itself")
        if known is not None:
            unknown = [m for m in (a, b) if m not in known]
            if unknown:
                problems.append(f"{where}: unknown model(s) {unknown} (known: {sorted(known)})")
    _raise(source, problems)
    for c in keys:
        out[c] = cols[c]
    out["winner"] = [w.lower() for w in cols["winner"]]
    # the same rater judging the same pair on the same item twice (in either order) is a duplicate
    pair = [tuple(sorted(p)) for p in zip(out["model_a"], out["model_b"])]
    key = zip(out["item_id"], out["rater_id"], pair)
    _flag_repeats(source, out, key, "vote", lambda k: f"same item, rater and pair {list(k[2])}", problems)
    _raise(source, problems)
    return out.reset_index(drop=True)


def validate_ratings(frame, *, source: str = "ratings"):
    """Check a rubric-ratings frame (module docstring); returns a clean copy with float scores, text ids and
    an integer ``round`` (1 when the column is absent)."""
    import math

    _require(frame, ("item_id", "rater_id", *CRITERIA), source)
    out = frame.copy()
    if "round" not in out.columns:
        out["round"] = 1
    problems: list[str] = []
    ids = {c: [_text(v) for v in out[c]] for c in ("item_id", "rater_id")}
    scores = {c: [None] * len(out) for c in CRITERIA}
    rounds = [None] * len(out)
    occ = [None] * len(out)
    for i in range(len(out)):
        where = _where(source, out, i, ("item_id", "rater_id"))
        empty = [c for c in ids if ids[c][i] is None]
        if empty:
            problems.append(f"{where}: empty {', '.join(empty)}")
        for c in CRITERIA:
            raw = out[c].iloc[i]
            try:
                v = float(raw) if _text(raw) is not None else math.nan
            except (TypeError, ValueError):
                problems.append(f"{where}: {c} {raw!r} is not a number")
                continue
            if math.isnan(v):
                problems.append(f"{where}: {c} is missing")
            elif not SCORE_RANGE[0] <= v <= SCORE_RANGE[1]:
                problems.append(f"{where}: {c} {raw!r} is outside 0-10")
            else:
                scores[c][i] = v
        raw = out["round"].iloc[i]
        try:
            r = float(raw)
            if not (r == int(r) and r >= 0):
                raise ValueError
            rounds[i] = int(r)
        except (TypeError, ValueError):
            problems.append(f"{where}: round {raw!r} is not a whole number >= 0")
        if "occlusion" in out.columns and _text(out["occlusion"].iloc[i]) is not None:
            try:
                o = float(out["occlusion"].iloc[i])
                if not 0.0 <= o <= 1.0:
                    raise ValueError
                occ[i] = o
            except (TypeError, ValueError):
                problems.append(f"{where}: occlusion {out['occlusion'].iloc[i]!r} is not a fraction in [0, 1]")
    _raise(source, problems)
    for c in ids:
        out[c] = ids[c]
    for c in CRITERIA:
        out[c] = [float(v) for v in scores[c]]
    out["round"] = rounds
    if "occlusion" in out.columns:
        out["occlusion"] = [math.nan if v is None else v for v in occ]
    key = zip(out["round"], out["item_id"], out["rater_id"])
    _flag_repeats(source, out, key, "rating", lambda k: "same round, item and rater", problems)
    _raise(source, problems)
    return out.reset_index(drop=True)


def read_votes(path: str | os.PathLike, models: Sequence[str] | None = None):
    """Read and validate a votes file (CSV or JSONL); see `validate_votes`."""
    return validate_votes(read_judgement_table(path), models, source=str(path))


def read_ratings(path: str | os.PathLike):
    """Read and validate a rubric-ratings file (CSV or JSONL); see `validate_ratings`."""
    return validate_ratings(read_judgement_table(path), source=str(path))
