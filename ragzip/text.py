"""Text utilities shared by compressors, retrievers and evaluation: sentence splitting and
SQuAD-style answer normalisation."""

from __future__ import annotations

import re
import string
from functools import lru_cache
from typing import Any

from ragzip.types import Span


@lru_cache(maxsize=1)
def _segmenter() -> Any:
    import pysbd

    return pysbd.Segmenter(language="en", clean=False, char_span=True)


def split_sentences(text: str) -> list[Span]:
    """Split ``text`` into sentences with an established rule-based splitter (pySBD).

    Returns:
        Character spans into ``text``, in order, each trimmed of surrounding whitespace.
        Whitespace-only text gives an empty list.
    """
    if not text.strip():
        return []
    spans: list[Span] = []
    cursor = 0
    for piece in _segmenter().segment(text):
        sent = piece.sent
        start = text.find(sent, cursor) if sent else -1
        if start < 0:  # pySBD rewrote the text; fall back to its own offsets
            start = piece.start
        end = start + len(sent)
        cursor = max(cursor, end)
        # trim whitespace inside the span
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
    return _repair(text, spans)


def _repair(text: str, spans: list[Span]) -> list[Span]:
    """Make spans sorted, disjoint, and covering every non-space character."""
    out: list[Span] = []
    cursor = 0
    for start, end in sorted(spans):
        start = max(start, cursor)
        if end <= start:
            continue
        gap = text[cursor:start]
        if gap.strip():  # characters the splitter skipped: give them their own span
            g0 = cursor + (len(gap) - len(gap.lstrip()))
            g1 = cursor + len(gap.rstrip())
            out.append((g0, g1))
        out.append((start, end))
        cursor = end
    tail = text[cursor:]
    if tail.strip():
        out.append((cursor + len(tail) - len(tail.lstrip()), cursor + len(tail.rstrip())))
    return out


_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Normalise as in the SQuAD evaluation: lower case, no punctuation/articles/extra spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_in_text(answers: list[str], text: str) -> bool:
    """Whether any normalised answer occurs in the normalised text (as whole words)."""
    norm = f" {normalize_answer(text)} "
    return any((a := normalize_answer(ans)) and f" {a} " in norm for ans in answers)
