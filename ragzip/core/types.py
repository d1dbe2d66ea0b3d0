"""Core value types: passages in, budgets, and frozen compression results out."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from ragzip.core.errors import BudgetError, InputError

Span = tuple[int, int]
"""A half-open character range ``[start, end)`` into a passage's original text."""


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True, eq=True)
class Passage:
    """A retrieved piece of text.

    Args:
        text: The passage text. Output text of every compressor is cut from this string.
        id: A stable identifier; derived from title and text when not given.
        title: Optional title (e.g. the Wikipedia page or file name).
        metadata: Free-form metadata, copied and made read-only.
        score: Retrieval score, when the passage came from a retriever.
    """

    text: str
    id: str = ""
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)
    score: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            msg = f"Passage.text must be str, got {type(self.text).__name__}"
            raise InputError(msg)
        if not isinstance(self.title, str):
            msg = f"Passage.title must be str, got {type(self.title).__name__}"
            raise InputError(msg)
        if not self.id:
            digest = hashlib.sha1(f"{self.title}\x00{self.text}".encode()).hexdigest()[:16]
            object.__setattr__(self, "id", digest)
        object.__setattr__(self, "metadata", _frozen_mapping(self.metadata))

    def __hash__(self) -> int:
        return hash((self.id, self.text, self.title))

    @classmethod
    def coerce(cls, value: Passage | str | Mapping[str, Any]) -> Passage:
        """Build a passage from a string, a mapping with a ``text`` key, or a passage."""
        if isinstance(value, Passage):
            return value
        if isinstance(value, str):
            return cls(text=value)
        if isinstance(value, Mapping):
            if "text" not in value:
                msg = f"a passage mapping needs a 'text' key, got keys {sorted(value)}"
                raise InputError(msg)
            known = {"text", "id", "title", "metadata", "score"}
            unknown = set(value) - known
            metadata = dict(value.get("metadata") or {})
            metadata.update({k: value[k] for k in unknown})
            score = value.get("score")
            return cls(
                text=value["text"],
                id=str(value.get("id") or ""),
                title=str(value.get("title") or ""),
                metadata=metadata,
                score=float(score) if score is not None else None,
            )
        msg = f"cannot make a Passage from {type(value).__name__}"
        raise InputError(msg)


_BUDGET_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<x>x?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """How much context may remain after compression.

    Counted in the *generator's* tokenizer, over the context exactly as it is sent: the kept
    passage texts with the separators, numbers, titles and template text around them (see
    :class:`ContextFormat`). A budget that covers the whole context keeps it whole. When both
    limits are given the tighter one wins.

    Args:
        max_tokens: Keep at most this many tokens (at least 1).
        ratio: Compression factor ≥ 1: ``4.0`` keeps at most ``floor(original / 4)`` tokens.
    """

    max_tokens: int | None = None
    ratio: float | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is None and self.ratio is None:
            msg = "a Budget needs max_tokens, ratio, or both"
            raise BudgetError(msg)
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int)
        ):
            msg = f"max_tokens must be an int, got {self.max_tokens!r}"
            raise BudgetError(msg)
        if self.max_tokens is not None and self.max_tokens < 1:
            msg = (
                f"a token budget must be at least 1, got {self.max_tokens}: a budget of 0 would "
                "send no context at all (leave the compressor out, or give a budget like '4x')"
            )
            raise BudgetError(msg)
        if self.ratio is not None and (not math.isfinite(self.ratio) or self.ratio < 1.0):
            msg = (
                f"ratio is a compression factor and must be a finite number >= 1, got {self.ratio}"
            )
            raise BudgetError(msg)

    @classmethod
    def tokens(cls, n: int) -> Budget:
        """A budget of at most ``n`` tokens."""
        return cls(max_tokens=n)

    @classmethod
    def compression(cls, ratio: float) -> Budget:
        """A budget that keeps ``1 / ratio`` of the original tokens."""
        return cls(ratio=float(ratio))

    @classmethod
    def parse(cls, text: str) -> Budget:
        """Parse ``"256"`` (tokens) or ``"4x"`` (ratio)."""
        match = _BUDGET_RE.match(str(text))
        if not match:
            msg = f"cannot parse budget {text!r}: use a token count like '256' or a ratio like '4x'"
            raise BudgetError(msg)
        num = match.group("num")
        if match.group("x"):
            return cls(ratio=float(num))
        if "." in num:
            msg = f"a token budget must be a whole number, got {text!r} (did you mean '{num}x'?)"
            raise BudgetError(msg)
        return cls(max_tokens=int(num))

    def resolve(self, original_tokens: int) -> int:
        """The number of tokens allowed for a context of ``original_tokens`` tokens."""
        limit = original_tokens
        if self.ratio is not None:
            limit = min(limit, math.floor(original_tokens / self.ratio))
        if self.max_tokens is not None:
            limit = min(limit, self.max_tokens)
        return max(0, limit)

    def __str__(self) -> str:
        parts = []
        if self.max_tokens is not None:
            parts.append(f"{self.max_tokens} tokens")
        if self.ratio is not None:
            parts.append(f"{self.ratio:g}x")
        return " and ".join(parts)


@dataclass(frozen=True)
class CompressedPassage:
    """One passage after compression.

    Attributes:
        passage: The original passage.
        text: The kept text, cut from ``passage.text`` (empty when the passage was dropped).
        spans: Character ranges of ``passage.text`` that were kept, in order.
        original_tokens: Tokens of ``passage.text`` in the generator's tokenizer.
        tokens: Tokens of ``text`` in the generator's tokenizer.
        relevance: How useful the compressor's own pass found the passage for the question
            (``sentence``: its best sentence's probability; ``mig``: its best sentence's cosine
            to the question); ``None`` for compressors that score no passage.
    """

    passage: Passage
    text: str
    spans: tuple[Span, ...]
    original_tokens: int
    tokens: int
    relevance: float | None = None

    @property
    def dropped(self) -> bool:
        """Whether nothing of the passage was kept."""
        return not self.text

    def segments(self) -> tuple[tuple[str, bool], ...]:
        """The whole original text in order, cut into ``(text, kept)`` pieces by ``spans``:
        what an explanation shows highlighted (kept) and dimmed (dropped)."""
        text, out, cursor = self.passage.text, [], 0
        for start, end in self.spans:
            out += [(text[cursor:start], False), (text[start:end], True)]
            cursor = max(cursor, end)
        return tuple((t, kept) for t, kept in [*out, (text[cursor:], False)] if t)


@dataclass(frozen=True)
class Decision:
    """What the policy chose for one context.

    Attributes:
        compress: Whether to compress at all.
        compressor: The chosen compressor's registry name (``None`` when not compressing).
        ratio: The chosen compression factor (``None`` when not compressing).
        reason: Why, in one sentence.
        predicted_s: Predicted end-to-end seconds of the chosen path.
        baseline_s: Predicted end-to-end seconds without compression.
        context_tokens: The context length decided on.
    """

    compress: bool
    compressor: str | None
    ratio: float | None
    reason: str
    predicted_s: float
    baseline_s: float
    context_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CompressionResult:
    """What a compressor returns. Frozen; numbers are numbers.

    Attributes:
        compressor: Registry name of the compressor that produced it.
        query: The question the context was compressed for (never altered).
        passages: Per-passage results, in the input order (dropped passages included).
        original_tokens: Context tokens before compression (generator's tokenizer).
        compressed_tokens: Tokens of the context as sent (``rendered``, separators and template
            included); for soft compressors the number of embedding vectors handed to the
            generator.
        budget_tokens: The budget, resolved to tokens for this input.
        timings: Seconds per stage (e.g. ``count``, ``score``, ``select``, ``total``).
        embeddings: For soft compressors: an array ``(n_vectors, hidden)`` in the generator's
            input-embedding space; ``None`` for text compressors.
        rendered: The context pieces exactly as they are sent, counted against the budget
            (one piece for a :class:`ContextFormat`); empty for soft compressors.
        decision: For a compressor that decides whether and how much to compress (``auto``):
            what it chose and why; ``None`` otherwise.
        budget_raised: A ratio budget would have kept nothing (``4x`` of a 21-token passage
            is less than its layout), so it was doubled until something was (``budget_tokens``).
    """

    compressor: str
    query: str
    passages: tuple[CompressedPassage, ...]
    original_tokens: int
    compressed_tokens: int
    budget_tokens: int
    timings: Mapping[str, float] = field(default_factory=dict)
    embeddings: np.ndarray | None = field(default=None, compare=False)
    rendered: tuple[str, ...] = ()
    decision: Decision | None = field(default=None, compare=False)
    budget_raised: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "timings", _frozen_mapping(self.timings))
        object.__setattr__(self, "rendered", tuple(self.rendered))

    @property
    def ratio(self) -> float:
        """Achieved compression factor (original / compressed); ``inf`` when all was dropped."""
        if self.compressed_tokens == 0:
            return math.inf if self.original_tokens else 1.0
        return self.original_tokens / self.compressed_tokens

    @property
    def saved_tokens(self) -> int:
        """Tokens removed from the context."""
        return self.original_tokens - self.compressed_tokens

    def ranked(self) -> tuple[CompressedPassage, ...]:
        """The passages by the compressor's relevance, best first (a reranking from the same
        pass that chose what to keep); those without one after, in input order."""
        order = sorted(
            range(len(self.passages)),
            key=lambda i: (self.passages[i].relevance is None, -(self.passages[i].relevance or 0)),
        )
        return tuple(self.passages[i] for i in order)

    @property
    def texts(self) -> list[str]:
        """The kept text of each passage that was not dropped, in order."""
        return [p.text for p in self.passages if p.text]

    @property
    def context(self) -> str:
        """The context as sent (``rendered`` joined); kept texts joined by blank lines if unset."""
        if self.rendered:
            return "".join(self.rendered)
        return "\n\n".join(self.texts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (embeddings are summarised by their shape, not included)."""
        return {
            "compressor": self.compressor,
            "query": self.query,
            "original_tokens": self.original_tokens,
            "compressed_tokens": self.compressed_tokens,
            "budget_tokens": self.budget_tokens,
            "ratio": None if math.isinf(self.ratio) else self.ratio,
            "saved_tokens": self.saved_tokens,
            "timings": dict(self.timings),
            "embeddings_shape": None if self.embeddings is None else list(self.embeddings.shape),
            "passages": [
                {
                    "id": p.passage.id,
                    "title": p.passage.title,
                    "text": p.text,
                    "spans": [list(s) for s in p.spans],
                    "original_tokens": p.original_tokens,
                    "tokens": p.tokens,
                    "relevance": p.relevance,
                }
                for p in self.passages
            ],
            "budget_raised": self.budget_raised,
            **({"decision": self.decision.to_dict()} if self.decision is not None else {}),
        }
