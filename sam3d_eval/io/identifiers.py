"""Identifiers read from files (sample, item, rater and model ids): which characters they may not hold.

An id becomes a file name, a dictionary key and text in an HTML report. Control characters, invisible
formatting (bidirectional overrides such as U+202E, zero-width spaces; the joiners U+200C and U+200D that
some scripts need are allowed), lone surrogates and line or
paragraph separators would make two ids look alike, reorder the text around them, or forge a composite key,
so readers refuse them (`unsafe_characters`).
"""

from __future__ import annotations

import unicodedata

__all__ = ["unsafe_characters"]

# Unicode categories refused in ids: control (Cc), format (Cf: bidi overrides, zero-width characters),
# surrogates (Cs: JSON can spell a lone one) and the line / paragraph separators (Zl, Zp); except the
# zero-width non-joiner and joiner (U+200C, U+200D), which Persian, Indic and emoji spellings need.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_ALLOWED = frozenset({"\u200c", "\u200d"})


def unsafe_characters(text: str) -> list[str]:
    """The characters of `text` an id may not hold, each as ``U+XXXX NAME``, in order of first appearance."""
    if text.isprintable():  # fast path: printable text holds none of them (it may hold other spaces)
        return []
    out: list[str] = []
    for c in dict.fromkeys(text):
        if unicodedata.category(c) in _UNSAFE_CATEGORIES and c not in _ALLOWED:
            name = unicodedata.name(c, "")
            out.append(f"U+{ord(c):04X}" + (f" {name}" if name else ""))
    return out
