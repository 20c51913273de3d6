"""Failed samples of a results frame, grouped by reason: what `sam3d-eval evaluate` prints and stores.

A failed row's ``error`` names the file and often the sample (``prediction: preds/s7.ply: could not parse
the file as PLY (...)``), so no two errors are the same text. `failure_reason` turns an error into its
reason by two replacements, and `failure_summary` counts the reasons:

- every path becomes ``<path>``: a word (split at white space, quotes, brackets, commas and semicolons)
  that contains ``/`` or ``\\``, or that ends in a file suffix (``name.ply``: a dot, then a letter and up to
  7 letters or digits); a ``:`` or ``.`` right after the path is kept, and paths next to each other
  (the words of a path with spaces) are one ``<path>``;
- the sample id becomes ``<sample>`` where it stands quoted (``'s7'``, ``"s7"``), or as a whole word when it
  is at least 3 characters long (so a short id such as ``1`` does not replace numbers of the message).

Nothing else changes (numbers in a message stay, so two sizes are two reasons). Pure Python on the frame's
columns; no torch.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["FIRST_FAILURES", "failure_reason", "failure_summary"]

FIRST_FAILURES = 10
NO_MESSAGE = "(no error message)"

_WORD = r"[^\s'\"()\[\]{},;<>]"
_PATH = re.compile(rf"{_WORD}*[/\\]{_WORD}*|{_WORD}*\.[A-Za-z][A-Za-z0-9]{{0,7}}(?![A-Za-z0-9])")


_SUFFIX = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")


def _path_token(match: re.Match) -> str:
    text = match.group(0)
    core = text.rstrip(":.")
    is_path = "/" in core or "\\" in core or (_SUFFIX.search(core) is not None and core.lower() not in ("e.g", "i.e"))
    if not is_path:
        return text  # e.g. "ValueError:" or a sentence's last word and its full stop
    return "<path>" + text[len(core):]


def failure_reason(error: Any, sample_id: Any = None) -> str:
    """The reason of one error message: paths as ``<path>``, the sample id as ``<sample>`` (module docstring).

    None / NaN / empty gives ``"(no error message)"``.

    Args:
        error: the error message (any value; read as `str`); None, a float NaN or blank text means no message.
        sample_id: the failed row's sample id (read as `str`); None or "" leaves sample ids as they are.

    Returns:
        The reason text, stripped of surrounding white space.
    """
    if error is None or (isinstance(error, float) and math.isnan(error)) or not str(error).strip():
        return NO_MESSAGE
    text = re.sub(r"<path>(?: <path>)+", "<path>", _PATH.sub(_path_token, str(error).strip()))
    sid = "" if sample_id is None else str(sample_id)
    if sid:
        quoted = re.escape(sid)
        text = re.sub(rf"(['\"]){quoted}\1", r"\1<sample>\1", text)
        if len(sid) >= 3:
            text = re.sub(rf"(?<![\w.-]){quoted}(?![\w-])", "<sample>", text)
    return text


def failure_summary(frame, *, first: int = FIRST_FAILURES) -> dict[str, Any]:
    """The failed rows (``status`` other than "ok") of a results frame (`io.results` schema), JSON-ready:

    ``{"count": n, "by_reason": {reason: count, ...}, "first": [{"sample_id": ..., "error": ...}, ...]}``

    ``by_reason`` runs from the most frequent reason down (ties in text order); ``first`` holds the first
    `first` failed rows in frame order with their full error. A frame without failures gives
    ``{"count": 0, "by_reason": {}, "first": []}``.

    Args:
        frame: results frame with `status` and `sample_id` columns and, usually, `error` (without it every
            failure reads "(no error message)").
        first: how many failed rows to list in ``first`` (negative counts as 0). Default `FIRST_FAILURES` (10).

    Returns:
        The dict above; sample ids are `str`, and an error that has no message is shown as
        "(no error message)".

    Raises:
        KeyError: a non-empty `frame` lacks `status` or `sample_id`.
    """
    if not len(frame):
        return {"count": 0, "by_reason": {}, "first": []}
    failed = frame[frame["status"] != "ok"]
    errors = failed["error"].tolist() if "error" in failed.columns else [None] * len(failed)
    ids = [str(s) for s in failed["sample_id"].tolist()]
    counts: dict[str, int] = {}
    for sid, err in zip(ids, errors):
        reason = failure_reason(err, sid)
        counts[reason] = counts.get(reason, 0) + 1
    by_reason = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    shown = [{"sample_id": sid, "error": NO_MESSAGE if failure_reason(err) == NO_MESSAGE else str(err)}
             for sid, err in list(zip(ids, errors))[: max(first, 0)]]
    return {"count": len(ids), "by_reason": by_reason, "first": shown}
