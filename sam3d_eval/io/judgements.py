"""Human judgement files: preference votes and rubric ratings (docs/engine.md), read and validated.

- Votes: ``item_id, model_a, model_b, winner (a|b|tie), rater_id`` (rater_id optional: missing means one
  anonymous rater per file).
- Rubric ratings: ``item_id, rater_id, geometry, texture, completeness, multiview`` (each 0-10) and ``round``
  (optional; missing means round 1). Optional ``occlusion`` (0..1, the item's hidden fraction) lets the
  failure-mode mix tell occlusion failures from plain incompleteness (`stats.rubric`).

CSV (header on line 1) or JSONL (one object per line), UTF-8; other columns are kept. Every problem - an
empty or non-UTF-8 file, a missing column, an empty cell, an id or model name with control or invisible
characters (NUL, bidi overrides such as U+202E: ids key the analysis and appear in reports), an unknown
winner, a model paired with itself, a model outside the given list, a score outside 0-10 or not a number
(a JSON ``true`` is not a number), a round that is not a finite whole number, a duplicated judgement - is a
`JudgementFileError` whose one-line message names the file, the line and the row's item and rater, and
counts the other problems: nothing is dropped silently. The returned frame has a ``line`` column (the file
line of each row) for later messages.
"""

from __future__ import annotations

import io
import json
import math
import os
import pathlib
from typing import Any, Callable, Iterable, Mapping, Sequence

from .identifiers import unsafe_characters

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


def _decode(path: pathlib.Path) -> str:
    """The file's text (UTF-8, a leading BOM dropped); a `JudgementFileError` naming the line otherwise."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise JudgementFileError(f"{path} line {line}: not UTF-8 text ({err.reason} at byte {err.start}); "
                                 "save the file as UTF-8") from None


def read_judgement_table(path: str | os.PathLike):
    """A CSV or JSONL file as a pandas frame of strings/numbers with a ``line`` column (file line numbers).

    CSV cells are read as text (ids keep leading zeros); JSONL values keep their JSON types. Raises
    FileNotFoundError or `JudgementFileError` (empty file, text that is not UTF-8, unparseable line: naming
    the file and the line)."""
    import pandas as pd

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    text = _decode(path)
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        records, lines = [], []
        # newline=None: universal newlines, as a text-mode file splits them
        for k, raw in enumerate(io.StringIO(text, newline=None), start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as err:
                raise JudgementFileError(f"{path} line {k}: not valid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise JudgementFileError(f"{path} line {k}: expected a JSON object, got {type(obj).__name__}")
            try:  # JSON's \ud800 escapes decode to lone surrogates, which no text column can hold
                json.dumps(obj, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise JudgementFileError(f"{path} line {k}: holds an unpaired UTF-16 surrogate escape, which is not "
                                         "text") from None
            records.append(obj)
            lines.append(k)
        frame = pd.DataFrame.from_records(records)
        frame["line"] = lines
    else:
        try:
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=True)
        except pd.errors.EmptyDataError:
            raise JudgementFileError(f"{path}: the file is empty (no header line)") from None
        except pd.errors.ParserError as err:
            raise JudgementFileError(f"{path}: not a readable CSV file ({err})") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        # pandas skips blank lines, so count them back to give the true file line of each row; when pandas and
        # this count disagree (a quoted newline, a line of control characters), rows are numbered from the
        # header instead of guessed
        nonblank = [k for k, raw in enumerate(io.StringIO(text, newline=None), start=1) if raw.strip()]
        exact = len(nonblank) - 1 == len(frame)
        frame["line"] = nonblank[1:] if exact else list(range(2, len(frame) + 2))
        frame = frame.replace({"": None})
    if not len(frame):
        raise JudgementFileError(f"{path}: no rows")
    return frame


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


class _Rows:
    """Plain-list views of a frame's columns: per-row messages without pandas row access (which costs
    ~0.1 ms a row, seconds on a large file)."""

    def __init__(self, source: str, frame) -> None:
        self.source = source
        self.cells: dict[str, list] = {c: frame[c].tolist() for c in ("item_id", "rater_id") if c in frame.columns}
        self.lines: list | None = frame["line"].tolist() if "line" in frame.columns else None

    def line(self, i: int) -> Any:
        return self.lines[i] if self.lines is not None else i

    def where(self, i: int) -> str:
        """``line N (item_id 'x', rater_id 'y')``: the row's place and keys for a message."""
        parts = [f"{k} {v[i]!r}" for k, v in self.cells.items() if not _missing(v[i])]
        at = f"line {self.lines[i]}" if self.lines is not None else f"row {i}"
        return at + (f" ({', '.join(parts)})" if parts else "")


def _raise(source: str, problems: list[str]) -> None:
    """One line: ``<source> line N (...): problem`` or ``<source>: K problems: line N (...): ...; ...``."""
    if len(problems) == 1:
        raise JudgementFileError(f"{source} {problems[0]}")
    if problems:
        more = f"; ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise JudgementFileError(f"{source}: {len(problems)} problems: " + "; ".join(problems[:_SHOWN]) + more)


def _require(frame, columns: Iterable[str], source: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = [c for c in frame.columns if c != "line"]
        raise JudgementFileError(f"{source}: missing column(s) {missing} (has {have})")


def _flag_repeats(rows: _Rows, keys: Iterable[tuple], what: str, why: Callable[[tuple], str],
                  problems: list[str]) -> None:
    """Append a problem for every row whose key repeats an earlier row's (naming the first one's line)."""
    seen: dict[tuple, int] = {}
    for i, k in enumerate(keys):
        if k in seen:
            problems.append(f"{rows.where(i)}: duplicates the {what} on line {rows.line(seen[k])} ({why(k)})")
        else:
            seen[k] = i


def _text(v) -> str | None:
    if type(v) is not str:  # most cells are text: skip the missing-value test for them
        if _missing(v):
            return None
        v = str(v)
    return v.strip() or None


def _unsafe(cols: Mapping[str, list], i: int) -> list[str]:
    """Problems for the row's ids or names that hold control or invisible characters."""
    out = []
    for c, values in cols.items():
        bad = unsafe_characters(values[i]) if values[i] is not None else []
        if bad:
            out.append(f"{c} {values[i]!r} holds control or invisible character(s) {', '.join(bad)}")
    return out


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
    rows = _Rows(source, out)
    cols = {c: [_text(v) for v in out[c].tolist()] for c in (*keys, "winner")}
    id_cols = {c: cols[c] for c in keys}
    winners = [None if w is None else w.lower() for w in cols["winner"]]
    for i in range(len(out)):
        empty = [c for c in cols if cols[c][i] is None]
        if empty:
            problems.append(f"{rows.where(i)}: empty {', '.join(empty)}")
            continue
        found = _unsafe(id_cols, i)
        if winners[i] not in ("a", "b", "tie"):
            found.append(f"winner {cols['winner'][i]!r} is not a, b or tie")
        a, b = cols["model_a"][i], cols["model_b"][i]
        if a == b:
            found.append(f"model {a!r} is compared with itself")
        if known is not None:
            unknown = [m for m in (a, b) if m not in known]
            if unknown:
                found.append(f"unknown model(s) {unknown} (known: {sorted(known)})")
        if found:
            where = rows.where(i)
            problems += [f"{where}: {p}" for p in found]
    _raise(source, problems)
    for c in keys:
        out[c] = cols[c]
    out["winner"] = winners
    # the same rater judging the same pair on the same item twice (in either order) is a duplicate
    pair = [(a, b) if a <= b else (b, a) for a, b in zip(cols["model_a"], cols["model_b"])]
    key = zip(cols["item_id"], cols["rater_id"], pair)
    _flag_repeats(rows, key, "vote", lambda k: f"same item, rater and pair {list(k[2])}", problems)
    _raise(source, problems)
    return out.reset_index(drop=True)


def _number(v: Any) -> float:
    """`v` as a float; ValueError for what is not a number, booleans included (bool is an int to Python,
    so a JSON ``true`` would pass as 1)."""
    if isinstance(v, bool):
        raise ValueError("a boolean")
    return float(v)


def validate_ratings(frame, *, source: str = "ratings"):
    """Check a rubric-ratings frame (module docstring); returns a clean copy with float scores, text ids and
    an integer ``round`` (1 when the column is absent)."""
    _require(frame, ("item_id", "rater_id", *CRITERIA), source)
    out = frame.copy()
    if "round" not in out.columns:
        out["round"] = 1
    problems: list[str] = []
    rows = _Rows(source, out)
    ids = {c: [_text(v) for v in out[c].tolist()] for c in ("item_id", "rater_id")}
    raw_scores = {c: out[c].tolist() for c in CRITERIA}
    scores: dict[str, list] = {c: [None] * len(out) for c in CRITERIA}
    raw_rounds = out["round"].tolist()
    rounds: list = [None] * len(out)
    raw_occ = out["occlusion"].tolist() if "occlusion" in out.columns else None
    occ: list = [None] * len(out)
    for i in range(len(out)):
        found = []
        empty = [c for c in ids if ids[c][i] is None]
        if empty:
            found.append(f"empty {', '.join(empty)}")
        found += _unsafe(ids, i)
        for c in CRITERIA:
            raw = raw_scores[c][i]
            try:
                v = _number(raw) if _text(raw) is not None else math.nan
            except (TypeError, ValueError):
                found.append(f"{c} {raw!r} is not a number")
                continue
            if math.isnan(v):
                found.append(f"{c} is missing")
            elif not SCORE_RANGE[0] <= v <= SCORE_RANGE[1]:
                found.append(f"{c} {raw!r} is outside 0-10")
            else:
                scores[c][i] = v
        raw = raw_rounds[i]
        try:
            r = _number(raw)
            # finite first: int(inf) raises OverflowError
            if not (math.isfinite(r) and r == int(r) and r >= 0):
                raise ValueError
            rounds[i] = int(r)
        except (TypeError, ValueError):
            found.append(f"round {raw!r} is not a whole number >= 0")
        if raw_occ is not None and _text(raw_occ[i]) is not None:
            try:
                o = _number(raw_occ[i])
                if not 0.0 <= o <= 1.0:
                    raise ValueError
                occ[i] = o
            except (TypeError, ValueError):
                found.append(f"occlusion {raw_occ[i]!r} is not a fraction in [0, 1]")
        if found:
            where = rows.where(i)
            problems += [f"{where}: {p}" for p in found]
    _raise(source, problems)
    for c in ids:
        out[c] = ids[c]
    for c in CRITERIA:
        out[c] = [float(v) for v in scores[c]]
    out["round"] = rounds
    if "occlusion" in out.columns:
        out["occlusion"] = [math.nan if v is None else v for v in occ]
    key = zip(rounds, ids["item_id"], ids["rater_id"])
    _flag_repeats(rows, key, "rating", lambda k: "same round, item and rater", problems)
    _raise(source, problems)
    return out.reset_index(drop=True)


def read_votes(path: str | os.PathLike, models: Sequence[str] | None = None):
    """Read and validate a votes file (CSV or JSONL); see `validate_votes`."""
    return validate_votes(read_judgement_table(path), models, source=str(path))


def read_ratings(path: str | os.PathLike):
    """Read and validate a rubric-ratings file (CSV or JSONL); see `validate_ratings`."""
    return validate_ratings(read_judgement_table(path), source=str(path))
