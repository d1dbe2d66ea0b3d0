"""Selection units shared by the extractive compressors.

Passages are split into units (sentences or words) whose token costs are counted in the
generator's tokenizer. :func:`greedy_fill` keeps units in a priority order while they fit and then
verifies the budget *exactly*, on the very text the base class will produce (see
:func:`ragzip.compressor.join_spans`), so selection methods never rely on the last-resort trim of
:class:`~ragzip.compressor.Compressor`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from ragzip.compressor import CompressionRequest
from ragzip.core.errors import ConfigError
from ragzip.core.framing import Framing, framing_limit, join_spans
from ragzip.core.text import split_sentences
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Span

Granularity = Literal["sentence", "word"]

_WORD_RE = re.compile(r"\S+")

_CJK = (
    "\u1100-\u11ff\u2e80-\u2fdf\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
)
_CJK_WORD_RE = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


@lru_cache(maxsize=8192)
def sentence_spans(text: str) -> tuple[Span, ...]:
    """Sentence spans of ``text`` (pySBD via :func:`ragzip.core.text.split_sentences`), cached.

    Retrieval corpora hand the same passages to many questions; splitting is the slowest
    CPU step after embedding, so splits are memoised per passage text.
    """
    return tuple(split_sentences(text))


def titled(title: str, text: str) -> str:
    """The text embedded for a passage or one of its units: the title, when there is one, then
    the text (``"Pride and Prejudice. It was written by Jane Austen."``)."""
    title = title.strip()
    return f"{title}. {text}" if title else text


def word_spans(text: str) -> tuple[Span, ...]:
    """Spans of the whitespace-separated words of ``text``."""
    return tuple(m.span() for m in _WORD_RE.finditer(text))


def split_words(text: str) -> list[Span]:
    """Word spans of ``text``: runs of non-space characters, each CJK character on its own.

    Identifiers (UUIDs, URLs, e-mail addresses, ``snake_case``) contain no spaces, so they are
    always one word and can never be cut.
    """
    return [m.span() for m in _CJK_WORD_RE.finditer(text)]


@dataclass(frozen=True)
class Unit:
    """One selectable piece of a passage.

    Attributes:
        passage: Index of the passage it belongs to.
        start: Start character in the passage text.
        end: End character (exclusive).
        tokens: Tokens of the unit's text on its own, in the generator's tokenizer.
        text: The unit's text, ``passage_text[start:end]``.
    """

    passage: int
    start: int
    end: int
    tokens: int
    text: str

    @property
    def span(self) -> Span:
        """``(start, end)``."""
        return (self.start, self.end)


@dataclass(frozen=True)
class Units:
    """The units of a request's passages, in passage order then text order.

    Attributes:
        texts: The passage texts the spans point into.
        items: All units; ``items[i]`` is unit ``i`` in priority orders given to
            :func:`greedy_fill`.
    """

    texts: tuple[str, ...]
    items: tuple[Unit, ...]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Unit:
        return self.items[index]


def split_units(
    texts: Sequence[str], counter: TokenCounter, *, granularity: Granularity = "sentence"
) -> Units:
    """Split passages into units and count each unit's tokens in one batch.

    Args:
        texts: Passage texts, in order.
        counter: The generator's token counter.
        granularity: ``"sentence"`` (pySBD) or ``"word"`` (whitespace-separated words).

    Raises:
        ConfigError: Unknown granularity.
    """
    splitter: Callable[[str], tuple[Span, ...]]
    if granularity == "sentence":
        splitter = sentence_spans
    elif granularity == "word":
        splitter = word_spans
    else:
        msg = f"granularity must be 'sentence' or 'word', got {granularity!r}"
        raise ConfigError(msg)
    raw = [(i, s, e) for i, text in enumerate(texts) for s, e in splitter(text)]
    pieces = [texts[i][s:e] for i, s, e in raw]
    costs = counter.count_batch(pieces) if pieces else []
    items = tuple(
        Unit(passage=i, start=s, end=e, tokens=c, text=t)
        for (i, s, e), c, t in zip(raw, costs, pieces, strict=True)
    )
    return Units(texts=tuple(texts), items=items)


@dataclass(frozen=True)
class Ranking:
    """What a sentence-level compressor thinks of a request's units, before any budget.

    Attributes:
        units: The units (sentences) of the request's passages.
        scores: One relevance score per unit (higher is more useful; the scale is the
            compressor's own: a probability for ``sentence``, a cosine for ``mig``).
        order: Unit indices in the order the compressor would keep them (best first).
    """

    units: Units
    scores: np.ndarray
    order: tuple[int, ...]


def passage_relevance(ranking: Ranking, n_passages: int) -> list[float | None]:
    """Each passage's best unit score (``None`` for a passage without units)."""
    best: list[float | None] = [None] * n_passages
    for unit, score in zip(ranking.units.items, ranking.scores, strict=True):
        value = float(score)
        current = best[unit.passage]
        if current is None or value > current:
            best[unit.passage] = value
    return best


@dataclass(frozen=True)
class Selection:
    """Units kept by :func:`greedy_fill`.

    Attributes:
        kept: Indices of kept units, in priority order (most important first).
        spans: Kept character spans of each passage, sorted (ready for ``CompressionOutput``).
        tokens: Exact tokens of the kept text, counted as the base class counts it.
    """

    kept: tuple[int, ...]
    spans: tuple[tuple[Span, ...], ...]
    tokens: int


def greedy_fill(
    units: Units,
    order: Sequence[int],
    budget_tokens: int,
    counter: TokenCounter,
    *,
    framing: Framing | None = None,
    sent_limit: int | None = None,
) -> Selection:
    """Keep units in priority order while they fit, then make the exact count fit.

    1. Walk ``order``; keep a unit if its own token cost still fits what is left (with
       ``framing``, the first unit kept of a passage also pays that passage's opening).
    2. Count the joined text of every touched passage exactly (the join the base class uses);
       while the total exceeds the budget drop the lowest-priority kept unit.
    3. Offer the units not kept, in priority order, to the slack that is left, checking each
       addition exactly.
    4. With ``framing``, count what the layout sends exactly and drop the lowest-priority
       units while it exceeds ``sent_limit``.

    Args:
        units: Units from :func:`split_units`.
        order: Unit indices, most important first. Units not listed are never kept.
        budget_tokens: The total the kept text may use (with ``framing``: if every passage
            kept some, i.e. the request's ``budget_tokens``).
        counter: The generator's token counter.
        framing: The layout's cost per kept passage (``request.framing``); ``None`` charges
            nothing for it.
        sent_limit: With ``framing``, the budget for what the layout sends
            (``request.sent_limit``; default ``budget_tokens`` plus the whole layout).

    Returns:
        The selection; ``selection.tokens <= budget_tokens`` always holds without ``framing``,
        and what the layout sends fits its limit with it.
    """
    n_passages = len(units.texts)
    seen: set[int] = set()
    priority: list[int] = []
    for idx in order:
        if idx in seen:
            continue
        if not 0 <= idx < len(units):
            msg = f"unit index {idx} out of range for {len(units)} units"
            raise ConfigError(msg)
        seen.add(idx)
        priority.append(idx)
    limit = framing_limit(budget_tokens, framing, sent_limit)
    by_passage: list[list[int]] = [[] for _ in range(n_passages)]

    def sent(text_tokens: int, extra: int | None = None) -> int:
        if framing is None:
            return text_tokens
        touched = [p for p in range(n_passages) if by_passage[p] or p == extra]
        return framing.estimate(text_tokens, touched)

    # 1. estimate with per-unit costs
    kept: list[int] = []
    used = 0
    for idx in priority:
        p = units[idx].passage
        cost = units[idx].tokens
        if sent(used + cost, p) <= limit:
            kept.append(idx)
            by_passage[p].append(idx)
            used += cost

    # 2. exact verification per passage
    texts = [_joined(units, members) for members in by_passage]
    tokens = counter.count_batch(texts)
    total = sum(tokens)
    while sent(total) > limit and kept:
        idx = kept.pop()
        p = units[idx].passage
        by_passage[p].remove(idx)
        tokens[p] = counter.count(_joined(units, by_passage[p]))
        total = sum(tokens)

    # 3. refill the slack exactly (small units that fit where a dropped one did not)
    kept_set = set(kept)
    for idx in priority:
        slack = limit - sent(total)
        if slack <= 0:
            break
        if idx in kept_set or units[idx].tokens > slack:
            continue
        p = units[idx].passage
        trial = counter.count(_joined(units, [*by_passage[p], idx]))
        if sent(total - tokens[p] + trial, p) <= limit:
            by_passage[p].append(idx)
            kept.append(idx)
            kept_set.add(idx)
            total += trial - tokens[p]
            tokens[p] = trial

    # 4. what the layout really sends
    if framing is not None:
        while kept and framing.sent([_joined(units, m) for m in by_passage]) > limit:
            idx = kept.pop()
            p = units[idx].passage
            by_passage[p].remove(idx)
            total -= tokens[p]
            tokens[p] = counter.count(_joined(units, by_passage[p]))
            total += tokens[p]

    spans = tuple(tuple(sorted(units[i].span for i in members)) for members in by_passage)
    return Selection(kept=tuple(kept), spans=spans, tokens=total)


def fill_request(
    units: Units, order: Sequence[int], request: CompressionRequest, counter: TokenCounter
) -> Selection:
    """:func:`greedy_fill` within ``request``'s budget, its layout charged per kept passage."""
    return greedy_fill(
        units,
        order,
        request.budget_tokens,
        counter,
        framing=request.framing,
        sent_limit=request.sent_limit,
    )


def _joined(units: Units, members: Sequence[int]) -> str:
    if not members:
        return ""
    text = units.texts[units[members[0]].passage]
    return join_spans(text, [units[i].span for i in members])[0]


def place_penalty(places: np.ndarray | Sequence[int] | int, weight: float) -> np.ndarray:
    """What a unit loses for its passage's place in the retriever's order (passages taken to
    arrive best first): ``weight · log2(1 + place)``, 0 for the first passage. ``token`` and
    ``ensemble`` subtract it from their scores, ``mig`` and ``sentence`` through
    :func:`~ragzip.compressors.order.order_prior`."""
    return float(weight) * np.log2(1.0 + np.asarray(places, dtype=np.float64))
