"""How kept text is written: spans cut from a passage and joined, passages laid out into the
context that is sent (:class:`ContextFormat`), and what that layout costs passage by passage.

A layout writes only the passages that keep text: at 16x, when two of ten passages keep
anything, the other eight cost no separator, number or title. :class:`Framing` lets a selection
method charge a passage's share of the layout when it first keeps something of it, instead of
reserving the layout of every passage up front, so high ratios fill their budget. The shares are
estimates; :meth:`Framing.sent` counts the real thing, and selection methods verify with it.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ragzip.core.errors import ConfigError, InputError
from ragzip.core.types import Passage, Span


class ContextLayout(Protocol):
    """Writes kept passages into the context pieces that are sent; budgets count those pieces.

    :class:`ContextFormat` is the usual one (one block); the proxy writes passages back into
    several places of a request and so returns one piece per place.
    """

    def render(self, passages: Sequence[Passage], texts: Sequence[str]) -> tuple[str, ...]:
        """The pieces sent for ``texts`` (kept text per passage; empty means dropped)."""
        ...


_FORMAT_FIELDS = frozenset({"index", "title", "text"})


@dataclass(frozen=True)
class ContextFormat:
    """How kept passages are written into the one block of context that is sent.

    The block is ``prefix``, then each kept passage through ``template`` (``title_template`` for
    a passage with a title), joined by ``separator``, then ``suffix``; no passage kept gives an
    empty block. Templates take the fields ``{index}`` (1-based among kept passages), ``{title}``
    and ``{text}``. Budgets are counted over this block, so what is sent never exceeds them.

    Args:
        template: One passage without a title.
        separator: Between passages.
        prefix: Before the first passage (e.g. ``"Context:\\n"``).
        suffix: After the last passage.
        title_template: One passage with a title; ``None`` uses ``template``.

    Raises:
        ConfigError: A template without ``{text}`` or with an unknown field.
    """

    template: str = "{text}"
    separator: str = "\n\n"
    prefix: str = ""
    suffix: str = ""
    title_template: str | None = None

    def __post_init__(self) -> None:
        for tmpl in (self.template, self.title_template):
            if tmpl is None:
                continue
            names = {f for _, f, _, _ in string.Formatter().parse(tmpl) if f is not None}
            if "text" not in names or not names <= _FORMAT_FIELDS:
                msg = (
                    f"a context template needs {{text}} and may use only {sorted(_FORMAT_FIELDS)},"
                    f" got {tmpl!r}"
                )
                raise ConfigError(msg)

    def render(self, passages: Sequence[Passage], texts: Sequence[str]) -> tuple[str, ...]:
        """The block for ``texts`` (kept text per passage; empty means dropped), as one piece."""
        blocks: list[str] = []
        for passage, text in zip(passages, texts, strict=True):
            if not text:
                continue
            tmpl = self.title_template if passage.title and self.title_template else self.template
            blocks.append(tmpl.format(index=len(blocks) + 1, title=passage.title, text=text))
        if not blocks:
            return ("",)
        return (f"{self.prefix}{self.separator.join(blocks)}{self.suffix}",)

    def render_texts(self, texts: Sequence[str]) -> str:
        """The block for plain texts (no titles)."""
        return self.render([Passage(t) for t in texts], texts)[0]


PLAIN_CONTEXT = ContextFormat()
"""Kept passage texts joined by blank lines: ``CompressionResult.context`` by default."""


@dataclass(frozen=True)
class Framing:
    """The layout's cost, split into a fixed part and one opening per kept passage.

    Attributes:
        openings: Estimated tokens the layout adds for each passage that keeps text (its
            template and a separator), one per passage.
        fixed: Estimated tokens it adds once when anything is kept (prefix, suffix, header).
        total: Tokens it adds when every passage keeps text (what a request's text budget
            already excludes: the budget for what is sent is the text budget plus this).
        sent: Exact tokens of what the layout sends for per-passage kept texts (empty =
            dropped).
    """

    openings: tuple[int, ...]
    fixed: int
    total: int
    sent: Callable[[Sequence[str]], int]

    def estimate(self, texts_tokens: int, kept_passages: Sequence[int]) -> int:
        """Estimated tokens sent for kept texts of ``texts_tokens`` in ``kept_passages``."""
        if not kept_passages:
            return 0
        return texts_tokens + self.fixed + sum(self.openings[i] for i in kept_passages)


def framing_limit(budget_tokens: int, framing: Framing | None, sent_limit: int | None) -> int:
    """What a selection may spend: ``budget_tokens`` of text without a layout; with one, the
    budget for what is sent (``sent_limit``, else the text budget plus the whole layout)."""
    if framing is None:
        return budget_tokens
    return sent_limit if sent_limit is not None else budget_tokens + framing.total


def measure_framing(
    texts: Sequence[str],
    counts: Sequence[int],
    total: int,
    sent: Callable[[Sequence[str]], int],
) -> Framing | None:
    """Split ``total`` (the layout's tokens around all passages) into a fixed part and equal
    openings, from one more count: the layout around the first passage with text alone.

    Returns ``None`` when no passage has text (there is nothing to frame).
    """
    first = next((i for i, t in enumerate(texts) if t.strip()), None)
    if first is None:
        return None
    n = len(texts)
    alone = [""] * n
    alone[first] = texts[first]
    one = max(0, sent(alone) - counts[first])  # fixed + one opening
    opening = max(0, round((total - one) / (n - 1))) if n > 1 else one
    fixed = max(0, total - opening * n) if n > 1 else 0
    return Framing((opening,) * n, fixed, total, sent)


def join_spans(text: str, spans: Sequence[Span]) -> tuple[str, tuple[Span, ...]]:
    """Cut ``spans`` out of ``text`` and join them.

    Overlapping or touching spans are merged; spans separated only by whitespace keep that
    whitespace; other gaps become one space (a newline if the gap held one).

    Returns:
        The joined text and the merged, sorted spans.
    """
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if not 0 <= start <= end <= len(text):
            msg = f"span ({start}, {end}) lies outside a text of length {len(text)}"
            raise InputError(msg)
        if end == start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    parts: list[str] = []
    prev_end: int | None = None
    for start, end in merged:
        if prev_end is not None:
            gap = text[prev_end:start]
            if gap and not gap.strip():
                parts.append(gap)
            else:
                parts.append("\n" if "\n" in gap else " ")
        parts.append(text[start:end])
        prev_end = end
    return "".join(parts), tuple((s, e) for s, e in merged)
