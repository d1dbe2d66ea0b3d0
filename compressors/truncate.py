"""Head truncation: keep the beginning of every passage, the budget shared evenly."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.compressors.kept_whole import value_units
from ragzip.compressors.units import split_words
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Span


def water_fill(sizes: Sequence[int], budget: int) -> list[int]:
    """Share ``budget`` evenly over items of the given sizes, no item getting more than its size.

    Finds the largest level ``L`` with ``sum(min(size, L)) <= budget``; items shorter than ``L``
    keep all of theirs and their leftover goes to the others. What remains below one token per
    item goes, one each, to the first items still above the level.

    Returns:
        The allowance of each item; the allowances sum to ``min(budget, sum(sizes))``.
    """
    budget = max(0, budget)
    if sum(sizes) <= budget:
        return list(sizes)
    lo, hi = 0, max(sizes, default=0)
    while lo < hi:  # largest level whose fill fits
        mid = (lo + hi + 1) // 2
        if sum(min(s, mid) for s in sizes) <= budget:
            lo = mid
        else:
            hi = mid - 1
    alloc = [min(s, lo) for s in sizes]
    rest = budget - sum(alloc)
    for i, s in enumerate(sizes):
        if rest <= 0:
            break
        if s > alloc[i]:
            alloc[i] += 1
            rest -= 1
    return alloc


class TruncateCompressor(Compressor):
    """Keep the head of each passage; the budget is water-filled across passages.

    Every passage gets an equal share of the budget; passages shorter than their share are kept
    whole and hand the rest to the longer ones. Each head ends at a whole word (a number over
    several words, or a key with its value, counts as one; a CJK character is a word) and its
    length is re-counted exactly in the generator's tokenizer, so no identifier or number is
    ever cut in half and no head exceeds its share. Tokens a cut leaves unused are offered
    to the passages that were cut, in order.

    Args:
        config: Takes no settings; accepted for a uniform constructor.
        counter: Token counter of the generator's tokenizer.
    """

    name: ClassVar[str] = "truncate"

    @dataclass(frozen=True)
    class Config:
        """No settings."""

    def __init__(self, config: Config | None = None, *, counter: TokenCounter) -> None:
        super().__init__(counter=counter)
        self.config = config or TruncateCompressor.Config()

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        sizes = list(request.passage_tokens)
        alloc = water_fill(sizes, request.budget_tokens)
        texts = [p.text for p in request.passages]
        offsets: dict[int, list[Span]] = {}
        spans: list[list[Span]] = []
        used: list[int] = []
        for i, (text, size, share) in enumerate(zip(texts, sizes, alloc, strict=True)):
            if share >= size:
                spans.append([(0, len(text))] if text.strip() else [])
                used.append(size)
                continue
            offsets[i] = self.counter.offsets(text)
            span, n = self._head(text, offsets[i], share)
            spans.append(span)
            used.append(n)
        slack = request.budget_tokens - sum(used)
        for i in sorted(offsets):  # second round: leftover from cuts that fell short
            if slack <= 0:
                break
            span, n = self._head(texts[i], offsets[i], used[i] + slack)
            if n > used[i]:
                spans[i] = span
                slack -= n - used[i]
                used[i] = n
        return CompressionOutput(spans=spans)

    def _head(self, text: str, offsets: Sequence[Span], limit: int) -> tuple[list[Span], int]:
        """The longest head cut at a unit end whose exact count is within ``limit``.

        Units are words, with a number written over several words or a key and its value as
        one (:func:`~ragzip.compressors.kept_whole.value_units`), so an identifier, a number or a
        value is never cut in half. Starts from the ``limit``-th token and steps back (or
        forward) over unit ends until the re-counted head fits (and the next one would not).
        """
        if limit <= 0 or not offsets:
            return [], 0
        start = offsets[0][0]
        # cut only where a unit ends: never inside a word, number, identifier or key-value pair
        ends = [e for _, e in value_units(text, split_words(text)) if e > start]
        if not ends:
            return [], 0
        # the boundary after the limit-th token (or the last one before it)
        k = max(0, bisect.bisect_right(ends, offsets[min(limit, len(offsets)) - 1][1]) - 1)

        def count(j: int) -> int:
            return self.counter.count(text[start : ends[j]])

        n = count(k)
        while n > limit and k > 0:
            k -= 1
            n = count(k)
        if n > limit:
            return [], 0
        while k + 1 < len(ends):
            m = count(k + 1)
            if m > limit:
                break
            k, n = k + 1, m
        return [(start, ends[k])], n
