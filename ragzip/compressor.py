"""The one interface every compression method implements.

A compressor takes a question, retrieved passages and a :class:`~ragzip.core.types.Budget` and
returns a frozen :class:`~ragzip.core.types.CompressionResult`. Subclasses implement
:meth:`Compressor._compress` only; the public :meth:`Compressor.compress` validates input, counts
tokens in the generator's tokenizer, cuts output text from the original passages and guarantees the
budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from ragzip.core.cancellation import checkpoint
from ragzip.core.errors import BudgetError, InputError
from ragzip.core.framing import PLAIN_CONTEXT, ContextLayout, Framing, join_spans, measure_framing
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Budget, CompressedPassage, CompressionResult, Decision, Passage, Span

logger = logging.getLogger(__name__)

REMEMBERED_REQUESTS = 1024
"""Requests whose model scores a classifier-based compressor (``sentence``, ``token``) remembers
by default: a question asked again over the same passages (recurring traffic, a context
compressed at several budgets) is not scored again. Small: about 10 KiB a request at most."""


@dataclass(frozen=True)
class CompressionRequest:
    """Validated input handed to :meth:`Compressor._compress`.

    Attributes:
        query: The user's question (non-empty).
        passages: The passages, in retrieval order.
        passage_tokens: Tokens of each passage in the generator's tokenizer.
        budget_tokens: Total tokens the kept passage texts may use: the caller's budget less
            what the context layout (separators, numbers, titles, template) costs around them.
        framing_tokens: What that layout costs around the whole context (so the context as
            sent holds ``original_tokens + framing_tokens`` tokens).
        framing: That cost passage by passage, for methods that charge a passage's layout only
            when they keep some of it (``None``: no layout, or a soft compressor).
    """

    query: str
    passages: tuple[Passage, ...]
    passage_tokens: tuple[int, ...]
    budget_tokens: int
    framing_tokens: int = 0
    framing: Framing | None = None
    sent_budget: int | None = None

    @property
    def sent_limit(self) -> int:
        """The budget for the context as sent, layout included (``budget_tokens`` reserved the
        layout of every passage out of it, and is never below 0)."""
        if self.sent_budget is not None:
            return self.sent_budget
        return self.budget_tokens + self.framing_tokens

    def with_limit(self, sent_budget: int) -> CompressionRequest:
        """This request under another budget for the context as sent."""
        framed = max(0, sent_budget - self.framing_tokens)
        return replace(self, budget_tokens=framed, sent_budget=sent_budget)

    @property
    def original_tokens(self) -> int:
        """Total context tokens before compression."""
        return sum(self.passage_tokens)


@dataclass(frozen=True)
class CompressionOutput:
    """What a compressor's ``_compress`` returns.

    Attributes:
        spans: For text compressors, the kept character spans of each passage (one sequence per
            passage, in order). The output text is cut from the original passages.
        embeddings: For soft compressors, ``(n_vectors, hidden)`` input embeddings in the
            generator's input-embedding space, rows grouped by passage in passage order.
        vectors_per_passage: For soft compressors, how many rows of ``embeddings`` stand for each
            passage (one entry per passage, summing to ``n_vectors``; 0 drops the passage).
        timings: Seconds per internal stage, merged into the result's timings.
        decision: What a compressor that decides the amount (``auto``) chose, and why.
        relevance: One score per passage from the method's own pass (higher: more useful),
            passed on as :attr:`~ragzip.core.types.CompressedPassage.relevance`; ``None`` if none.
    """

    spans: Sequence[Sequence[Span]] | None = None
    embeddings: np.ndarray | None = None
    vectors_per_passage: Sequence[int] | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    decision: Decision | None = None
    relevance: Sequence[float | None] | None = None


class Compressor(ABC):
    """Base class of all compressors.

    Subclasses set ``name`` and implement :meth:`_compress`. Configuration lives in a frozen
    dataclass given as ``config``; models and tokenizers are injected, not looked up by name.

    Args:
        counter: Token counter of the generator's tokenizer; budgets are counted in it.

    Attributes:
        name: Registry name.
        soft: The compressor returns embeddings, not text.
    """

    name: ClassVar[str] = "base"
    soft: ClassVar[bool] = False

    def __init__(self, *, counter: TokenCounter) -> None:
        self.counter = counter

    @property
    def decides_amount(self) -> bool:
        """Whether the compressor chooses by itself how much to keep, treating the budget only
        as a cap even when it covers the whole context (``auto``, ``sentence`` in adaptive
        mode). Every other text compressor keeps the whole context when the budget covers it."""
        return False

    @property
    def allows_empty(self) -> bool:
        """Whether the caller configured this compressor to keep nothing when nothing
        qualifies (``sentence`` in adaptive mode with ``min_sentences=0``). Every other one
        never returns an empty context for a context with text: a ratio budget is raised until
        something is kept, a token budget that keeps nothing is refused."""
        return False

    @abstractmethod
    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        """Choose what to keep. Must not exceed ``request.budget_tokens``."""

    def compress_request(self, request: CompressionRequest) -> CompressionOutput:
        """Run this compressor's method on a request another compressor has prepared.

        What composite compressors (``auto``) call to delegate: the request's passages are
        already counted and its budget already excludes the layout's framing.
        """
        checkpoint()
        output = self._compress(request)
        checkpoint()
        return output

    def request(
        self,
        query: str,
        passages: Sequence[Passage | str | Mapping[str, Any]],
        *,
        budget: Budget,
        layout: ContextLayout = PLAIN_CONTEXT,
    ) -> CompressionRequest:
        """The validated, counted request :meth:`compress` hands to the method (what a trainer
        that needs more than the result, e.g. ``merge``'s rows, starts from).

        Raises:
            InputError, BudgetError: As :meth:`compress`.
        """
        return self._prepare(query, passages, budget, layout)[0]

    def _prepare(
        self,
        query: str,
        passages: Sequence[Passage | str | Mapping[str, Any]],
        budget: Budget,
        layout: ContextLayout,
    ) -> tuple[CompressionRequest, int, int]:
        """The request, the context's tokens as sent and the resolved budget."""
        if not isinstance(query, str) or not query.strip():
            msg = "query must be a non-empty string"
            raise InputError(msg)
        if not isinstance(budget, Budget):
            msg = f"budget must be a ragzip.Budget, got {type(budget).__name__}"
            raise InputError(msg)
        if isinstance(passages, str | bytes):
            msg = "passages must be a sequence of passages, not a single string"
            raise InputError(msg)
        items = tuple(Passage.coerce(p) for p in passages)
        counts = tuple(self.counter.count_batch([p.text for p in items]))
        if self.soft:  # vectors stand in for passages: the budget counts the passages alone
            original = sum(counts)
        else:
            original = self._sent_tokens(layout, items, [p.text for p in items]) if items else 0
        budget_tokens = budget.resolve(original)
        if budget_tokens == 0 and original > 0:
            msg = (
                f"the budget ({budget}) leaves 0 of the context's {original} tokens: "
                "give a smaller ratio or a larger token budget"
            )
            raise BudgetError(msg)
        # What the layout adds around the passages is paid for before they share the rest.
        framing = 0 if self.soft else max(0, original - sum(counts))
        request = CompressionRequest(
            query=query,
            passages=items,
            passage_tokens=counts,
            budget_tokens=max(0, budget_tokens - framing),
            framing_tokens=framing,
            sent_budget=budget_tokens,
            framing=None
            if self.soft or not framing
            else measure_framing(
                [p.text for p in items],
                counts,
                framing,
                lambda kept: self._sent_tokens(layout, items, kept),
            ),
        )
        return request, original, budget_tokens

    def compress(
        self,
        query: str,
        passages: Sequence[Passage | str | Mapping[str, Any]],
        *,
        budget: Budget,
        layout: ContextLayout = PLAIN_CONTEXT,
    ) -> CompressionResult:
        """Compress ``passages`` for ``query`` within ``budget``.

        Args:
            query: The user's question; it is never altered or dropped.
            passages: Retrieved passages (``Passage``, plain strings or mappings with ``text``).
            budget: Token budget or compression ratio, in the generator's tokenizer, over the
                context as ``layout`` writes it.
            layout: How kept passages are written into what is sent (default: texts joined by
                blank lines); its separators and template text count against the budget.

        Returns:
            A frozen result whose ``compressed_tokens`` (the tokens of ``rendered``, the context
            as sent) never exceeds the resolved budget.

        Raises:
            InputError: Empty or non-string query, or passages of the wrong type.
            BudgetError: A budget that leaves no token of a non-empty context.
        """
        t0 = time.perf_counter()
        request, original, budget_tokens = self._prepare(query, passages, budget, layout)
        items = request.passages
        t_count = time.perf_counter()
        output = self._run(request, budget_tokens, original)
        counts = request.passage_tokens
        sizes = [n for p, n in zip(items, counts, strict=True) if n and p.text.strip()]
        must_keep = not (self.soft or self.allows_empty) and bool(sizes)
        result, rendered, compressed = self._finish(request, output, layout, budget_tokens)
        empty = must_keep and not any(p.text.strip() for p in result)  # judged on what is sent
        if empty and budget.max_tokens is not None:  # a token budget is never raised: refused
            raise BudgetError.keeps_nothing(
                budget, budget_tokens, request.framing_tokens, min(sizes)
            )
        raised = empty
        while empty:  # a ratio never empties a context: doubled until something is kept
            if budget_tokens >= original:  # (``auto`` chose to keep nothing: keep it whole)
                output = CompressionOutput(spans=[[(0, len(p.text))] for p in items])
                empty = False
            else:
                budget_tokens = min(original, 2 * budget_tokens)
                request = request.with_limit(budget_tokens)
                output = self._run(request, budget_tokens, original)
            result, rendered, compressed = self._finish(request, output, layout, budget_tokens)
            empty = empty and not any(p.text.strip() for p in result)
        t_done = time.perf_counter()
        timings = {"count": t_count - t0, **output.timings}
        timings["total"] = time.perf_counter() - t0
        timings.setdefault("compress", t_done - t_count)
        return CompressionResult(
            compressor=self.name,
            query=query,
            passages=result,
            original_tokens=original,
            compressed_tokens=compressed,
            budget_tokens=budget_tokens,
            timings=timings,
            embeddings=output.embeddings,
            rendered=rendered,
            decision=output.decision,
            budget_raised=raised,
        )

    def _run(
        self, request: CompressionRequest, budget_tokens: int, original: int
    ) -> CompressionOutput:
        if not request.passages:
            return CompressionOutput(spans=[])
        if budget_tokens >= original and not (self.soft or self.decides_amount):
            return CompressionOutput(spans=[[(0, len(p.text))] for p in request.passages])
        return self.compress_request(request)

    def _sent_tokens(
        self, layout: ContextLayout, passages: Sequence[Passage], texts: Sequence[str]
    ) -> int:
        """Tokens of what ``layout`` sends for ``texts``."""
        pieces = [p for p in layout.render(passages, texts) if p]
        return int(sum(self.counter.count_batch(pieces))) if pieces else 0

    async def acompress(
        self,
        query: str,
        passages: Sequence[Passage | str | Mapping[str, Any]],
        *,
        budget: Budget,
        layout: ContextLayout = PLAIN_CONTEXT,
    ) -> CompressionResult:
        """Async variant of :meth:`compress`; runs it in a worker thread."""
        return await asyncio.to_thread(self.compress, query, passages, budget=budget, layout=layout)

    def _finish(
        self, request: CompressionRequest, output: CompressionOutput, layout: Any, budget: int
    ) -> tuple[tuple[CompressedPassage, ...], tuple[str, ...], int]:
        """The result passages, the context as sent and its tokens (vectors for soft)."""
        if output.embeddings is not None:
            return self._build_soft(request, output), (), int(output.embeddings.shape[0])
        result, compressed = self._build(request, output, layout, budget)
        return result, layout.render(request.passages, [p.text for p in result]), compressed

    def _build(
        self,
        request: CompressionRequest,
        output: CompressionOutput,
        layout: ContextLayout,
        budget_tokens: int,
    ) -> tuple[tuple[CompressedPassage, ...], int]:
        """The kept passages and the tokens of the context ``layout`` sends for them."""
        passages = request.passages
        if output.spans is None:
            msg = f"{self.name} returned neither spans nor embeddings"
            raise AssertionError(msg)
        if len(output.spans) != len(passages):
            msg = f"{self.name} returned spans for {len(output.spans)} of {len(passages)} passages"
            raise AssertionError(msg)
        cut = [join_spans(p.text, s) for p, s in zip(passages, output.spans, strict=True)]
        spans = [list(s) for _, s in cut]
        tokens = self.counter.count_batch([t for t, _ in cut])
        # Guarantee the budget for what is sent, whatever the method did: drop trailing spans of
        # the largest passage until the rendered context fits. Text joined at separators can
        # tokenize a little differently than alone, so this may take a span off near the limit.
        sent = self._sent_tokens(layout, passages, [t for t, _ in cut])
        if sent > budget_tokens and sum(tokens) > request.budget_tokens:  # joins aside
            logger.warning("%s exceeded its budget; trimming", self.name)
        while sent > budget_tokens:
            left = [j for j in range(len(spans)) if spans[j]]
            if not left:
                break
            i = max(left, key=tokens.__getitem__)
            spans[i] = spans[i][:-1]
            text, merged = join_spans(passages[i].text, spans[i])
            cut[i] = (text, merged)
            tokens[i] = self.counter.count(text)
            sent = self._sent_tokens(layout, passages, [t for t, _ in cut])
        scores = output.relevance or [None] * len(passages)
        kept = tuple(
            CompressedPassage(p, text, merged, n, t, None if r is None else float(r))
            for p, (text, merged), n, t, r in zip(
                passages, cut, request.passage_tokens, tokens, scores, strict=True
            )
        )
        return kept, sent

    def _build_soft(
        self, request: CompressionRequest, output: CompressionOutput
    ) -> tuple[CompressedPassage, ...]:
        """Per-passage results of a soft compressor: ``tokens`` counts the passage's vectors."""
        passages = request.passages
        assert output.embeddings is not None
        n_vectors = int(output.embeddings.shape[0])
        given = output.vectors_per_passage
        counts = list(given) if given is not None else None
        if counts is None or len(counts) != len(passages) or sum(counts) != n_vectors:
            msg = (
                f"{self.name} must give vectors_per_passage with one entry per passage "
                f"({len(passages)}) summing to its {n_vectors} embedding rows, got {counts}"
            )
            raise AssertionError(msg)
        if n_vectors > request.budget_tokens:
            msg = (
                f"{self.name} returned {n_vectors} vectors for a budget of {request.budget_tokens}"
            )
            raise AssertionError(msg)
        return tuple(
            CompressedPassage(p, "", (), n, int(k))
            for p, n, k in zip(passages, request.passage_tokens, counts, strict=True)
        )
