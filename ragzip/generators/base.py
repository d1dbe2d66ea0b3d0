"""The one interface every generator implements: chat messages in, a timed generation out.

A generator is the LLM that reads the (compressed) context. Its :attr:`Generator.counter` is the
tokenizer budgets are counted in, so compressors and the model agree on what a token is.
Subclasses implement :meth:`Generator._generate` only; the public :meth:`Generator.generate`
validates the messages and ``max_new_tokens`` first.

Soft compressors hand the generator vectors instead of text. A generator that can read them
overrides :meth:`Generator._generate_soft` and :attr:`Generator.accepts_embeddings`;
:meth:`Generator.generate_compressed` answers from any compression result, text or soft.
"""

from __future__ import annotations

import asyncio
import collections.abc
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ragzip.core.errors import ConfigError, InputError
from ragzip.core.messages import ChatMessage, validate_messages
from ragzip.core.tokenization import TokenCounter
from ragzip.prompts import DEFAULT_SYSTEM_PROMPT, SOFT_PLACEHOLDER, build_result_messages

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ragzip.core.types import CompressionResult


@dataclass(frozen=True)
class Generation:
    """A finished generation with its token counts and timings.

    Attributes:
        text: The generated text (special tokens removed).
        prompt_tokens: Tokens of the prompt as the model saw it (chat template included).
        completion_tokens: Tokens generated, the stop token included when one was produced.
        ttft_s: Seconds to the first token: the prefill for an embedded model, the first streamed
            chunk carrying text for a remote one.
        total_s: Seconds for the whole generation.
        finish_reason: ``"stop"`` (the model ended its turn) or ``"length"`` (hit
            ``max_new_tokens``); remote servers may report others.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    total_s: float
    finish_reason: str

    @property
    def decode_tokens_per_s(self) -> float:
        """Decoding speed after the first token (0.0 when fewer than two tokens came)."""
        decode_s = self.total_s - self.ttft_s
        if self.completion_tokens < 2 or decode_s <= 0:
            return 0.0
        return (self.completion_tokens - 1) / decode_s


def validate_max_new_tokens(max_new_tokens: int) -> int:
    """Check ``max_new_tokens`` is a positive int.

    Raises:
        ConfigError: Not an int, or below 1.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        msg = f"max_new_tokens must be an int, got {max_new_tokens!r}"
        raise ConfigError(msg)
    if max_new_tokens < 1:
        msg = f"max_new_tokens must be >= 1, got {max_new_tokens}"
        raise ConfigError(msg)
    return max_new_tokens


def count_templated_tokens(counter: TokenCounter, messages: Sequence[ChatMessage]) -> int:
    """Tokens of ``messages`` rendered with the counter's chat template.

    When the counter wraps a Hugging Face tokenizer that has a chat template, the prompt is
    rendered exactly as the model will see it (generation prompt included). Otherwise the result
    is the sum of the message contents' tokens, a lower bound that ignores role markers.
    """
    tokenizer = getattr(counter, "tokenizer", None)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        from ragzip.generators.rendering import PromptRenderer

        return len(PromptRenderer(tokenizer).ids(messages).ids)
    return sum(counter.count_batch([m.content for m in messages]))


class Generator(ABC):
    """Base class of all generators.

    Subclasses implement :attr:`name`, :attr:`counter` and :meth:`_generate`. Greedy decoding is
    the contract: the same messages give the same text, so compressed and uncompressed runs
    can be compared.
    """

    @property
    @abstractmethod
    def name(self) -> str:
        """A name for reports (the model served or loaded)."""

    @property
    @abstractmethod
    def counter(self) -> TokenCounter:
        """The tokenizer that budgets are counted in: the one of the model that reads them."""

    @abstractmethod
    def _generate(self, messages: tuple[ChatMessage, ...], *, max_new_tokens: int) -> Generation:
        """Generate an answer to already validated ``messages``."""

    def generate(
        self,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        *,
        max_new_tokens: int = 64,
    ) -> Generation:
        """Answer a conversation greedily.

        Args:
            messages: ``ChatMessage`` objects or ``{"role", "content"}`` mappings, in order.
            max_new_tokens: The most tokens to generate.

        Returns:
            The generated text with token counts and timings.

        Raises:
            InputError: Empty messages, an unknown role or non-string content.
            ConfigError: ``max_new_tokens`` below 1.
            GenerationError: The model or server failed.
        """
        items = validate_messages(messages)
        return self._generate(items, max_new_tokens=validate_max_new_tokens(max_new_tokens))

    async def agenerate(
        self,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        *,
        max_new_tokens: int = 64,
    ) -> Generation:
        """Async variant of :meth:`generate`; runs it in a worker thread."""
        return await asyncio.to_thread(self.generate, messages, max_new_tokens=max_new_tokens)

    def count_prompt_tokens(self, messages: Sequence[ChatMessage | Mapping[str, Any]]) -> int:
        """Tokens of the prompt ``messages`` make, chat template included when known."""
        return count_templated_tokens(self.counter, validate_messages(messages))

    # --- soft context ------------------------------------------------------------------------

    @property
    def accepts_embeddings(self) -> bool:
        """Whether this generator can read soft context (vectors in place of tokens)."""
        return False

    def embeddings_unsupported_reason(self) -> str:
        """Why :meth:`generate_soft` cannot be used here (empty when it can)."""
        if self.accepts_embeddings:
            return ""
        return f"{type(self).__name__} sends text only"

    def _generate_soft(
        self,
        messages: tuple[ChatMessage, ...],
        embeddings: np.ndarray | torch.Tensor,
        *,
        placeholder: str,
        max_new_tokens: int,
    ) -> Generation:
        """Generate from ``messages`` with ``embeddings`` spliced in at ``placeholder`` tokens."""
        msg = (
            f"generator {self.name!r} cannot read soft-compressed context (embeddings): "
            f"{self.embeddings_unsupported_reason()}; use the embedded generator, or an "
            "OpenAI-compatible server started with prompt embeddings enabled "
            "(OpenAIGenerator(prompt_embeds=True)), or a text compressor"
        )
        raise ConfigError(msg)

    def generate_soft(
        self,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        embeddings: np.ndarray | torch.Tensor,
        *,
        placeholder: str | None = None,
        max_new_tokens: int = 64,
    ) -> Generation:
        """Answer a conversation whose placeholder tokens stand for given vectors.

        Each occurrence of ``placeholder`` in the templated prompt is replaced, in order, by one
        row of ``embeddings`` (vectors in the model's input-embedding space).

        Args:
            messages: The conversation, holding one placeholder per row of ``embeddings``.
            embeddings: ``(n, hidden)`` vectors.
            placeholder: The stand-in token; defaults to
                :data:`ragzip.prompts.SOFT_PLACEHOLDER`.
            max_new_tokens: The most tokens to generate.

        Returns:
            The generation; ``prompt_tokens`` is the full prompt length, one per vector.

        Raises:
            ConfigError: The generator cannot read embeddings, or ``max_new_tokens`` below 1.
            InputError: Bad messages, or placeholders and vectors differ in number or width.
            GenerationError: The model or server failed.
        """

        items = validate_messages(messages)
        max_new = validate_max_new_tokens(max_new_tokens)
        if getattr(embeddings, "ndim", None) != 2:
            shape = getattr(embeddings, "shape", None)
            msg = f"embeddings must be a (n, hidden) array or tensor, got shape {shape}"
            raise InputError(msg)
        return self._generate_soft(
            items,
            embeddings,
            placeholder=SOFT_PLACEHOLDER if placeholder is None else placeholder,
            max_new_tokens=max_new,
        )

    def generate_compressed(
        self,
        result: CompressionResult,
        *,
        system_prompt: str | None = None,
        max_new_tokens: int = 64,
    ) -> Generation:
        """Answer ``result.query`` from a compression result, text or soft.

        A text result is sent as its kept passages; a soft result (``result.embeddings`` set)
        as :func:`ragzip.prompts.soft_context` placeholders that :meth:`generate_soft` replaces
        by the vectors.

        Args:
            result: What a compressor returned.
            system_prompt: Instructions; defaults to :data:`ragzip.prompts.DEFAULT_SYSTEM_PROMPT`.
            max_new_tokens: The most tokens to generate.

        Raises:
            ConfigError: A soft result and a generator that cannot read embeddings.
        """

        messages = build_result_messages(
            result, system_prompt=DEFAULT_SYSTEM_PROMPT if system_prompt is None else system_prompt
        )
        if result.embeddings is None:
            return self.generate(messages, max_new_tokens=max_new_tokens)
        return self.generate_soft(messages, result.embeddings, max_new_tokens=max_new_tokens)

    async def agenerate_compressed(
        self,
        result: CompressionResult,
        *,
        system_prompt: str | None = None,
        max_new_tokens: int = 64,
    ) -> Generation:
        """Async variant of :meth:`generate_compressed`; runs it in a worker thread."""
        return await asyncio.to_thread(
            self.generate_compressed,
            result,
            system_prompt=system_prompt,
            max_new_tokens=max_new_tokens,
        )


@dataclass(frozen=True)
class StreamedToken:
    """One decoded token of a streamed answer (:meth:`EmbeddedGenerator.stream`).

    Attributes:
        token_id: The token the model chose (a stop token included, as the last one).
        text: Text this token adds to the answer; empty for a stop token and while a character
            spread over several tokens is incomplete (it comes with the token that ends it).
        finish_reason: ``None`` until the last token, then ``"stop"`` or ``"length"``.
    """

    token_id: int
    text: str
    finish_reason: str | None


class TokenStreamer(Protocol):
    """A model that streams answers from prompt token ids: what the OpenAI-compatible model app
    serves (the embedded generator, or a simulated one)."""

    @property
    def name(self) -> str: ...

    @property
    def tokenizer(self) -> Any: ...

    def prompt_ids(self, messages: Sequence[ChatMessage | Mapping[str, Any]]) -> list[int]: ...

    def stream_ids(
        self, prompt_ids: Sequence[int], *, max_new_tokens: int = 64
    ) -> collections.abc.Generator[StreamedToken, None, None]: ...
