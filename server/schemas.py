"""Pydantic schemas of the proxy's HTTP API (OpenAI-compatible requests plus ragzip extensions).

Only the fields the proxy reads are declared; every other field of an OpenAI request is allowed
and forwarded untouched (the proxy forwards the client's JSON, not a re-serialised model).
"""

from __future__ import annotations

import json
import math
import time
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from ragzip.core.errors import BudgetError
from ragzip.core.types import Budget, CompressionResult, Passage


class PassageIn(BaseModel):
    """A passage given as an object."""

    model_config = ConfigDict(extra="forbid")

    text: str
    title: str = ""
    id: str = ""

    def to_passage(self) -> Passage:
        """The core :class:`~ragzip.core.types.Passage`."""
        return Passage(text=self.text, title=self.title, id=self.id)


def _to_passages(items: list[str | PassageIn]) -> list[Passage]:
    return [Passage(text=p) if isinstance(p, str) else p.to_passage() for p in items]


def _check_budget(value: str | int | None) -> str | int | None:
    if value is None:
        return None
    try:
        Budget.parse(str(value))
    except BudgetError as exc:
        raise ValueError(str(exc)) from exc
    return value


BudgetField = Annotated[str | StrictInt | None, AfterValidator(_check_budget)]
"""``"256"``/``256`` (tokens) or ``"4x"`` (ratio), checked when the request is parsed."""


class RagzipOptions(BaseModel):
    """The ``ragzip`` extension field of a completion request.

    Attributes:
        passages: Context passages to compress and insert into the prompt.
        budget: ``"256"`` / ``256`` tokens or ``"4x"``; the server default when absent.
        compressor: Registry name; the server default when absent.
        query: The question the context is compressed (and retrieved) for; by default the
            last user message (chat) or the prompt (completions), without its marked context.
        retrieve: Retrieve passages for the question from the proxy's index (they join
            ``passages``); ``None`` follows the server's ``retrieve_by_default``.
        k: Passages to retrieve; the server's ``retrieval_k`` when absent.
    """

    model_config = ConfigDict(extra="forbid")

    passages: list[str | PassageIn] = Field(default_factory=list)
    budget: BudgetField = None
    compressor: str | None = None
    query: str | None = None
    retrieve: StrictBool | None = None
    k: StrictInt | None = Field(default=None, ge=1)

    def passage_list(self) -> list[Passage]:
        """The passages as core :class:`~ragzip.core.types.Passage` objects."""
        return _to_passages(self.passages)

    def budget_or(self, default: Budget) -> Budget:
        """The requested budget, or ``default``."""
        return default if self.budget is None else Budget.parse(str(self.budget))


class WireMessage(BaseModel):
    """One chat message as the OpenAI API sends it (any role, text or content parts); fields
    beyond ``role`` and ``content`` pass through. Generators get
    :class:`ragzip.core.messages.ChatMessage`."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``; unknown fields are forwarded as they are."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[WireMessage] = Field(min_length=1)
    stream: bool | None = False
    ragzip: RagzipOptions | None = None


class CompletionRequest(BaseModel):
    """``POST /v1/completions``; unknown fields are forwarded as they are."""

    model_config = ConfigDict(extra="allow")

    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    stream: bool | None = False
    ragzip: RagzipOptions | None = None


class CompressRequest(BaseModel):
    """``POST /v1/compress``: compression only."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1)
    passages: list[str | PassageIn]
    budget: BudgetField = None
    compressor: str | None = None

    def passage_list(self) -> list[Passage]:
        """The passages as core :class:`~ragzip.core.types.Passage` objects."""
        return _to_passages(self.passages)

    def budget_or(self, default: Budget) -> Budget:
        """The requested budget, or ``default``."""
        return default if self.budget is None else Budget.parse(str(self.budget))


class CompressedPassageOut(BaseModel):
    """One passage of a :class:`CompressResponse`."""

    id: str
    title: str
    text: str
    spans: list[tuple[int, int]]
    original_tokens: int
    tokens: int
    dropped: bool
    score: float | None = None
    """The passage's score as sent or retrieved (``null`` when it had none)."""
    relevance: float | None = None
    """How useful the compressor's own pass found it (``null`` for compressors that score no
    passage): sort by it for a reranking at no extra cost."""


class CompressResponse(BaseModel):
    """A :class:`~ragzip.core.types.CompressionResult` as JSON (``ratio`` is null when all
    dropped)."""

    object: str = "ragzip.compression"
    compressor: str
    query: str
    original_tokens: int
    compressed_tokens: int
    saved_tokens: int
    budget_tokens: int
    ratio: float | None
    context: str
    passages: list[CompressedPassageOut]
    timings: dict[str, float]
    embeddings_shape: list[int] | None = None
    budget_raised: bool = False

    @classmethod
    def from_result(cls, result: CompressionResult) -> CompressResponse:
        """Convert a core result.

        A soft compressor's vectors are summarised by ``embeddings_shape``; its passages have no
        text, ``tokens`` counts their vectors and only those without one are ``dropped``.
        """
        ratio = result.ratio
        soft = result.embeddings is not None
        return cls(
            compressor=result.compressor,
            query=result.query,
            original_tokens=result.original_tokens,
            compressed_tokens=result.compressed_tokens,
            saved_tokens=result.saved_tokens,
            budget_tokens=result.budget_tokens,
            ratio=ratio if math.isfinite(ratio) else None,
            context=result.context,
            passages=[
                CompressedPassageOut(
                    id=p.passage.id,
                    title=p.passage.title,
                    text=p.text,
                    spans=[(s, e) for s, e in p.spans],
                    original_tokens=p.original_tokens,
                    tokens=p.tokens,
                    dropped=p.tokens == 0 if soft else p.dropped,
                    score=p.passage.score,
                    relevance=p.relevance,
                )
                for p in result.passages
            ],
            timings=dict(result.timings),
            embeddings_shape=(
                list(result.embeddings.shape) if result.embeddings is not None else None
            ),
            budget_raised=result.budget_raised,
        )


class AutoDecisionOut(BaseModel):
    """What the ``auto`` compressor decided for one request (see :class:`ragzip.policy.Decision`).

    Attributes:
        compress: Whether the context was compressed.
        compressor: The compressor chosen (``None`` when not compressing).
        ratio: The ratio chosen (``None`` when not compressing).
        reason: Why, in one sentence.
        predicted_s: Predicted end-to-end seconds of the chosen path.
        baseline_s: Predicted end-to-end seconds without compression.
    """

    compress: bool
    compressor: str | None
    ratio: float | None
    reason: str
    predicted_s: float
    baseline_s: float


class RagzipUsage(BaseModel):
    """What the proxy did to the context; the ``ragzip`` key of a non-streaming response.

    Attributes:
        compressor: The compressor that ran (or would have run, when ``fallback`` is set).
        original_tokens: Context tokens before compression (in the proxy's tokenizer).
        compressed_tokens: Context tokens forwarded upstream.
        saved_tokens: ``original_tokens - compressed_tokens``.
        budget_tokens: The budget resolved for this context.
        passages: Passages found in the request.
        kept_passages: Passages of which something was forwarded.
        compress_ms: Milliseconds spent compressing.
        fallback: The compressor failed and the context was forwarded uncompressed.
        decision: With the ``auto`` compressor, what it decided and why.
        retrieved: Passages the proxy retrieved for the request (counted in ``passages``).
        retrieve_ms: Milliseconds spent retrieving them.
        budget_raised: The ratio budget would have kept nothing, so it was raised until
            something was (``budget_tokens`` is the budget used).
    """

    compressor: str
    original_tokens: int
    compressed_tokens: int
    saved_tokens: int
    budget_tokens: int
    passages: int
    kept_passages: int
    compress_ms: float
    fallback: bool = False
    decision: AutoDecisionOut | None = None
    retrieved: int = 0
    retrieve_ms: float = 0.0
    budget_raised: bool = False

    @classmethod
    def of(
        cls,
        result: CompressionResult,
        compressor: str,
        *,
        passages: int,
        start: float,
        decision: AutoDecisionOut | None = None,
    ) -> RagzipUsage:
        """The report of ``result``, compressed from ``passages`` passages since ``start``
        (a ``time.perf_counter()`` reading)."""
        return cls(
            compressor=compressor,
            original_tokens=result.original_tokens,
            compressed_tokens=result.compressed_tokens,
            saved_tokens=result.saved_tokens,
            budget_tokens=result.budget_tokens,
            passages=passages,
            kept_passages=sum(1 for p in result.passages if p.text or p.tokens),
            budget_raised=result.budget_raised,
            compress_ms=round((time.perf_counter() - start) * 1000, 3),
            decision=decision,
        )

    def headers(self) -> dict[str, str]:
        """The ``x-ragzip-*`` response headers."""
        out = {
            "x-ragzip-tokens-saved": str(self.saved_tokens),
            "x-ragzip-original-tokens": str(self.original_tokens),
            "x-ragzip-compressed-tokens": str(self.compressed_tokens),
            "x-ragzip-compressor": self.compressor,
        }
        if self.retrieved:
            out["x-ragzip-retrieved"] = str(self.retrieved)
        if self.fallback:
            out["x-ragzip-fallback"] = "compression-failed"
        if self.budget_raised:
            out["x-ragzip-budget-raised"] = str(self.budget_tokens)  # the budget used
        if self.decision is not None:
            d = self.decision
            out["x-ragzip-decision"] = (
                f"compress {d.compressor} {d.ratio:g}x" if d.compress and d.ratio else "skip"
            )
            out["x-ragzip-decision-reason"] = d.reason.encode("ascii", "replace").decode()
        return out


class ErrorDetail(BaseModel):
    """The inner object of an OpenAI error body."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """``{"error": {...}}``, the OpenAI error shape."""

    error: ErrorDetail


class Health(BaseModel):
    """``GET /healthz``."""

    status: str
    version: str
    upstream: str
    default_compressor: str


def dumps_json(data: Any) -> bytes:
    """Compact UTF-8 JSON, as the proxy sends it upstream and back."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def with_usage(content: bytes, usage: RagzipUsage) -> bytes:
    """The upstream JSON body with a ``ragzip`` key added (unchanged if it is not an object)."""
    try:
        data = json.loads(content)
    except ValueError:
        return content
    if not isinstance(data, dict):
        return content
    data["ragzip"] = usage.model_dump()
    return dumps_json(data)
