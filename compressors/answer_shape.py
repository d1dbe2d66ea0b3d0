"""What an answer to a question looks like, from its question word: a prior for word pruning.

At 16x and beyond a context keeps a few dozen words, and the question's own words compete with
the answer for them. A factoid question says what shape its answer has: *when* and *what year*
ask for a date, *how many* and *how much* for a number, *who* and *where* for a name. Words of
that shape get a bonus when words are ranked (``cascade``'s ``answer_weight``), so a year
survives beside the sentence that holds it. The rules are English and deliberately few.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ragzip.core.text import words
from ragzip.core.types import Span

Shape = Literal["date", "number", "name"]

_MONTH_NAMES = (
    "january february march april may june july august september october november december"
)
_MONTHS = _MONTH_NAMES.split()
_DATE = re.compile(r"^(1\d{3}|20\d{2}|\d{1,2}(st|nd|rd|th)?|\d{4}s)$|^(" + "|".join(_MONTHS) + ")$")
_NUMBER = re.compile(
    r"^\d[\d,.]*(%|st|nd|rd|th)?$|^(one|two|three|four|five|six|seven|eight|nine|ten|eleven|"
    r"twelve|twenty|thirty|forty|fifty|hundred|thousand|million|billion)$"
)
_FUNCTION_WORDS = (
    "a an and are as at be but by for from he her his i in is it its of on or she that the their "
    "then there these they this to was we were which who with"
)
_FUNCTION = frozenset(_FUNCTION_WORDS.split())
_ASKS: tuple[tuple[re.Pattern[str], Shape], ...] = (
    (re.compile(r"\b(when|what year|which year|what date|what century|how long ago)\b"), "date"),
    (re.compile(r"\bhow (many|much|long|old|tall|far|big|high|deep|fast)\b"), "number"),
    (re.compile(r"\b(who|whom|whose|where)\b"), "name"),
)


def expected_shape(question: str) -> Shape | None:
    """The shape the answer to ``question`` takes (``None`` when its words do not say)."""
    asked = question.lower()
    for pattern, shape in _ASKS:
        if pattern.search(asked):
            return shape
    return None


def shape_mask(
    question: str, text: str, units: Sequence[Span], shape: Shape | None = None
) -> np.ndarray:
    """Which of ``text``'s word ``units`` have the shape ``question`` asks for (by default the
    :func:`expected_shape`), leaving out words the question itself uses."""
    shape = shape or expected_shape(question)
    mask = np.zeros(len(units), dtype=bool)
    if shape is None:
        return mask
    asked = set(words(question))
    for i, (start, end) in enumerate(units):
        piece = text[start:end]
        tokens = [w for w in words(piece) if w not in asked]
        if not tokens:
            continue
        if shape == "name":
            mask[i] = piece[:1].isupper() and any(w not in _FUNCTION for w in tokens)
        else:
            rule = _DATE if shape == "date" else _NUMBER
            mask[i] = any(rule.match(w) for w in tokens)
    return mask
