"""Values kept whole: a number written over several words (+49 89 1234567, 12 May 2024,
41.7 m, $ 5 million) or a key with its value is one unit, with the words that name it; and the
values a question names (:func:`named_values`), which its compressors keep within reach."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragzip.core.types import Span

_KEY_ENDS = (":", "=", "：", "=>", "->")
_EDGE_PUNCT = "\"'()[]{},;.!?“”‘’«»<>"
_MONTHS = frozenset(
    [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
    ]
)
_QUANTITY_WORDS = frozenset(
    [
        "%",
        "percent",
        "million",
        "billion",
        "trillion",
        "thousand",
        "hundred",
        "km",
        "m",
        "cm",
        "mm",
        "kg",
        "g",
        "mg",
        "lb",
        "lbs",
        "oz",
        "mi",
        "ft",
        "mph",
        "km/h",
        "kmh",
        "°c",
        "°f",
        "c",
        "f",
        "usd",
        "eur",
        "gbp",
        "jpy",
        "chf",
        "$",
        "€",
        "£",
        "¥",
        "bc",
        "ad",
        "bce",
        "ce",
        "am",
        "pm",
        "utc",
        "gmt",
    ]
)


def _bare(word: str) -> str:
    return word.strip(_EDGE_PUNCT).lower()


def _numeric(word: str) -> bool:
    return any(c.isdigit() for c in word)


def _joins_number(word: str) -> bool:
    """A word that belongs to the number next to it: a digit group, month, unit or currency."""
    bare = _bare(word)
    return _numeric(word) or bare in _MONTHS or bare in _QUANTITY_WORDS or word in {"-", "–", "/"}


def _names_value(word: str, *, key: bool) -> bool:
    """A word that can be part of the name of the value after it (not a clause end, no digit;
    before a bare number only a content word of three letters or more)."""
    if word.endswith((".", ",", ";", "!", "?", ":", "=")) or _numeric(word):
        return False
    bare = _bare(word)
    return bool(bare) and (key or (bare.isalpha() and len(bare) >= 3))


def value_units(text: str, words: Sequence[Span], *, max_words: int = 8) -> list[Span]:
    """Merge words that must be kept or dropped together into one span each.

    A number written over several words (``+49 89 1234567``, ``12 May 2024``, ``41.7 km``,
    ``$ 5 million``) is one unit with the word naming it (``latitude 48.1374``), and so is a key
    with its value and up to three words of its name (``Inspection hotline: +49 89 1234567``,
    ``"lat": 48.1374,``, ``id = 7f3c``): a compressor that keeps a unit keeps all of it, so a
    value is never cut in half nor separated from the key that names it. A whole line of at
    most ``max_words`` words that holds a number or a key is one unit (a record of a list or a
    table row: ``Unit 17: SN-74694-FL``). Units never cross a line break and hold at most
    ``max_words`` words; other words stay units of their own.

    Args:
        text: The passage.
        words: Its word spans (:func:`split_words`), in order.
        max_words: Longest unit, in words.

    Returns:
        Spans covering the words in order (each the first word's start to the last one's end).
    """
    units: list[Span] = []
    n = len(words)

    def word(k: int) -> str:
        return text[words[k][0] : words[k][1]]

    def same_line(k: int) -> bool:  # words k and k + 1
        return "\n" not in text[words[k][1] : words[k + 1][0]]

    i = 0
    while i < n:
        j = i
        # a short line holding a number or a key is a record: "Unit 17: SN-74694-FL", a row
        end = i
        while end + 1 < n and end + 1 - i < max_words and same_line(end):
            end += 1
        if (
            (i == 0 or not same_line(i - 1))
            and (end + 1 == n or not same_line(end))
            and end > i
            and any(_numeric(word(k)) or word(k).endswith(_KEY_ENDS) for k in range(i, end + 1))
        ):
            units.append((words[i][0], words[end][1]))
            i = end + 1
            continue
        first = word(i)
        start = i
        is_key = first.endswith(_KEY_ENDS) and len(_bare(first)) > 0
        if is_key and i + 1 < n and same_line(i):
            j = i + 1  # a key takes its value
        valued = any(_numeric(word(k)) for k in range(i, j + 1)) or (
            _joins_number(word(j)) and j + 1 < n and same_line(j) and _numeric(word(j + 1))
        )
        if is_key or valued:  # and the words that name it: "Inspection hotline:", "latitude"
            reach = 3 if is_key else 1
            while (
                reach
                and units
                and start > 0
                and units[-1] == words[start - 1]
                and same_line(start - 1)
                and _names_value(word(start - 1), key=is_key)
                and j + 1 - (start - 1) <= max_words
            ):
                units.pop()
                start -= 1
                reach -= 1
        if valued:
            while (
                j + 1 < n
                and j + 1 - start < max_words
                and same_line(j)
                and _joins_number(word(j + 1))
                and not word(j + 1).endswith(_KEY_ENDS)  # "a: 1, b: 2" stays two pairs
                and (_numeric(word(j + 1)) or _numeric(word(j)))
            ):
                j += 1
        units.append((words[start][0], words[j][1]))
        i = j + 1
    return units


def named_values(query: str) -> re.Pattern[str] | None:
    """A pattern matching, as whole words, the numbers and identifiers the question names.

    "What is the serial number of unit 17?" names ``17``: the record whose key it is must
    survive, as a record the user asks for by a forced string would. ``None`` when the
    question names none.
    """
    values = {w.strip(".,;:!?()[]{}\"'") for w in query.split() if any(c.isdigit() for c in w)}
    values.discard("")
    if not values:
        return None
    alternation = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return re.compile(rf"(?<![\w.-])(?:{alternation})(?![\w-]|\.\w)")
