"""Words and the words a question forces: identifiers, numbers and named values kept whole."""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from ragzip.core.types import Span

# -- words and forced words ---------------------------------------------------------------------

IDENTIFIER_PATTERNS: dict[str, re.Pattern[str]] = {
    "uuid": re.compile(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    ),
    "email": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    "url": re.compile(r"(?:[a-zA-Z][a-zA-Z0-9+.-]*://|www\.)\S+"),
    "code": re.compile(
        r"[A-Za-z_]\w*_\w+"  # snake_case
        r"|\b[a-z]+[A-Z]\w*"  # camelCase
        r"|[A-Za-z_]\w+(?:\.[A-Za-z_]\w+)+"  # dotted.names
        r"|[A-Za-z_]\w*\(\)"  # call()
    ),
}
"""Identifiers forced when ``force_patterns`` is on: UUIDs, e-mails, URLs, code identifiers."""

NUMBER_PATTERN = re.compile(r"\d")
"""Words with a digit, forced when ``force_numbers`` is on.

Off by default: numbers are about 4% of the words of NQ passages but, one token per digit in
SmolLM2, far more of the tokens; forcing them all cut answer-in-context recall on the NQ val
split from 0.69 to 0.35 at 8x and from 0.84 to 0.80 at 4x (gold + 4 BM25 passages).
"""

_IDENTIFIERS = re.compile("|".join(f"(?:{p.pattern})" for p in IDENTIFIER_PATTERNS.values()))


def forced_mask(
    text: str,
    words: Sequence[Span],
    *,
    strings: Sequence[str] = (),
    patterns: bool = True,
    numbers: bool = False,
    named: re.Pattern[str] | None = None,
) -> np.ndarray:
    """Which words must be kept: those overlapping a forced string or matching a pattern.

    Args:
        text: The passage.
        words: Its word spans (:func:`split_words`).
        strings: Literal strings to keep (case-sensitive); one spanning several words forces
            all of them.
        patterns: Also force words holding an identifier (:data:`IDENTIFIER_PATTERNS`).
        numbers: Also force words holding a digit (:data:`NUMBER_PATTERN`).
        named: Also force words holding a match of this pattern
            (:func:`~ragzip.compressors.kept_whole.named_values`).
    """
    mask = np.zeros(len(words), dtype=bool)
    if not words:
        return mask
    starts = [s for s, _ in words]
    for needle in strings:
        if not needle:
            continue
        pos = text.find(needle)
        while pos >= 0:
            end = pos + len(needle)
            i = max(0, bisect.bisect_right(starts, pos) - 1)
            while i < len(words) and words[i][0] < end:
                if words[i][1] > pos:
                    mask[i] = True
                i += 1
            pos = text.find(needle, pos + 1)
    regexes = [r for r, on in ((_IDENTIFIERS, patterns), (NUMBER_PATTERN, numbers)) if on]
    if named is not None:
        regexes.append(named)
    if regexes:
        # no pattern matches whitespace, so a match never leaves the word it starts in
        ends = np.fromiter((e for _, e in words), dtype=np.int64, count=len(words))
        hits = [m.start() for rx in regexes for m in rx.finditer(text)]
        if hits:
            idx = np.searchsorted(ends, np.asarray(hits), side="right")
            mask[idx[idx < len(words)]] = True
    return mask


def unit_maximum(words: Sequence[Span], units: Sequence[Span], probs: np.ndarray) -> np.ndarray:
    """The best word probability inside each unit (units are runs of whole words, in order)."""
    out = np.zeros(len(units), dtype=np.float64)
    if not units:
        return out
    starts = np.fromiter((s for s, _ in units), dtype=np.int64, count=len(units))
    owner = np.searchsorted(starts, [s for s, _ in words], side="right") - 1
    np.maximum.at(out, owner, np.asarray(probs, dtype=np.float64))
    return out


def is_separator(word: str) -> bool:
    """A word of punctuation or symbols only (``|``, ``--``, ``•``, ``==``)."""
    return not any(unicodedata.category(c)[0] in "LN" for c in word)
