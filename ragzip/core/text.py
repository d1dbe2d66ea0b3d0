"""Text utilities shared by compressors, retrievers and evaluation: sentence splitting and
words."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from ragzip.core.types import Span


@lru_cache(maxsize=1)
def _segmenter() -> Any:
    import pysbd

    return pysbd.Segmenter(language="en", clean=False, char_span=True)


_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
_LINE = re.compile(r"\n")
_SENTENCE_END = re.compile(r"[.!?。！？][\"')\]]*\s")
BLOCK_CHARS = 8_000
"""Longest stretch handed to pySBD at once: its cost grows faster than linearly with the
length of its input, so long texts are cut first at blank lines, then at line breaks, then after
sentence-ending punctuation, keeping the whole split linear in the text's length."""


def split_sentences(text: str) -> list[Span]:
    """Split ``text`` into sentences with an established rule-based splitter (pySBD).

    A sentence never spans a blank line. Text is handed to pySBD in blocks of at most
    :data:`BLOCK_CHARS` characters (see there), so a 5 MB file splits in seconds.

    Returns:
        Character spans into ``text``, in order, each trimmed of surrounding whitespace.
        Whitespace-only text gives an empty list.
    """
    if not text.strip():
        return []
    spans: list[Span] = []
    for start, end in _blocks(text, 0, len(text), (_BLANK_LINE, _LINE, _SENTENCE_END)):
        spans.extend((start + s, start + e) for s, e in _split_block(text[start:end]))
    return _join_run_in_labels(text, _repair(text, spans))


def _blocks(text: str, start: int, end: int, cuts: tuple[re.Pattern[str], ...]) -> list[Span]:
    """``[start, end)`` cut into blocks of at most :data:`BLOCK_CHARS` at the coarsest cuts."""
    if end - start <= BLOCK_CHARS or not cuts:
        return [(start, end)]
    out: list[Span] = []
    begin = start
    for match in cuts[0].finditer(text, start, end):
        out.extend(_blocks(text, begin, match.end(), cuts[1:]))
        begin = match.end()
    out.extend(_blocks(text, begin, end, cuts[1:]))
    return _merge_small(out)


def _merge_small(blocks: list[Span]) -> list[Span]:
    """Join neighbouring blocks while they stay within :data:`BLOCK_CHARS` together."""
    out: list[Span] = []
    for start, end in blocks:
        if out and end - out[-1][0] <= BLOCK_CHARS:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


_SOFT_WRAP = re.compile(r"(?<=[^\W_]|[,;)`*])\n(?=[ \t]*([^\W\d_]|[(`]))")
"""A line break inside a paragraph: after a word character, comma, semicolon, closing bracket,
backtick or emphasis mark, before a letter, an opening bracket or a backtick (never before a
list marker, heading, quote, table row, digit or record)."""
SOFT_WRAP_MIN_CHARS = 40
"""A line this long or longer that a soft wrap ends is taken as wrapped prose (hard-wrapped
Markdown, plain-text mail); shorter lines are kept as lines of their own (records, lists)."""


def unwrap(text: str) -> str:
    """``text`` with the line breaks of hard-wrapped paragraphs turned into spaces, and nothing
    else changed (same length, so offsets into it are offsets into ``text``).

    pySBD ends a sentence at every line break; a paragraph wrapped at 80 or 100 columns would
    otherwise split into line fragments ("bm25s stores the" / "BM25 scores in ..."). A break is
    a wrap when the line before is prose-long (:data:`SOFT_WRAP_MIN_CHARS`) and it matches
    :data:`_SOFT_WRAP`, or when the next line starts with a lower-case letter.
    """
    out = list(text)
    for match in _SOFT_WRAP.finditer(text):
        i = match.start()
        line_start = text.rfind("\n", 0, i) + 1
        line = text[line_start:i].strip()
        lower_next = match.group(1).islower()  # the next line's first character
        if (len(line) >= SOFT_WRAP_MIN_CHARS or lower_next) and not line.startswith("|"):
            out[i] = " "
    return "".join(out)


_EMPHASIS = re.compile(r"\*\*|__")
_LIST_MARKER = re.compile(r"[ \t]*(?:[-*+>]|\d{1,3}[.)])[ \t]+")


def _segmenter_view(block: str) -> str:
    """What pySBD reads of a block: soft wraps unwrapped and Markdown's ``**``/``__`` emphasis
    blanked (``**Sparse retrieval.** ragzip uses ...`` would otherwise split after ``**``);
    the same length as ``block``."""
    return _EMPHASIS.sub(lambda m: " " * len(m.group()), unwrap(block))


def _widen(block: str, start: int, end: int, floor: int) -> Span:
    """A sentence span grown over the emphasis marks around it, and back to its line's start
    over a list marker (``- **Term.**``), never before ``floor``."""
    while end < len(block) and block[end] in "*_":
        end += 1
    while start > floor and block[start - 1] in "*_":
        start -= 1
    line_start = max(block.rfind("\n", 0, start) + 1, floor)
    marker = _LIST_MARKER.fullmatch(block, line_start, start)
    if marker is not None:
        start = line_start + (len(marker.group()) - len(marker.group().lstrip()))
    return start, end


def _split_block(block: str) -> list[Span]:
    if not block.strip():
        return []
    text = _segmenter_view(block)
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
            start, end = _widen(block, start, end, spans[-1][1] if spans else 0)
            spans.append((start, end))
    return spans


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


_RUN_IN_LABEL = re.compile(
    r"(?:[-*+][ \t]+|\d{1,3}[.)][ \t]+)?(\*\*|__)[^*_\n]{1,80}?(?:[.:]\1|\1[.:])"
)
"""A run-in heading: an emphasised label ending in a full stop or colon (``- **Term.**``),
after an optional list marker."""


def _join_run_in_labels(text: str, spans: list[Span]) -> list[Span]:
    """Spans with each run-in heading joined to the sentence that follows it on its line
    (``- **Sparse retrieval.** ragzip uses bm25s.`` is one sentence): the label names what the
    sentence is about, and kept on its own it is a fragment that says nothing."""
    out: list[Span] = []
    for start, end in spans:
        if out:
            s0, e0 = out[-1]
            if _RUN_IN_LABEL.fullmatch(text, s0, e0) and "\n" not in text[e0:start]:
                out[-1] = (s0, end)
                continue
        out.append((start, end))
    return out


_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The words of ``text``, lower case: runs of letters and digits (no punctuation)."""
    return _WORD.findall(text.lower())
