"""A generator that calls an OpenAI-compatible server (vLLM, llama.cpp, TGI, OpenAI, ...).

Requests stream (``"stream": true``) so the time to the first token can be measured on the
client: ``ttft_s`` is the time from the call to the first server-sent event that carries text.
Connection failures, timeouts, HTTP 429 and 5xx are retried with exponential backoff (honouring
``Retry-After``) as long as no byte of the response body has been read; once text has started to
flow, a failure ends the call with :class:`~ragzip.core.errors.UpstreamError`. The API key goes only
into the ``Authorization`` header: never into logs, reprs or error messages.

Budgets must be counted in the tokenizer of the *served* model. Pass ``counter=`` (any
:class:`~ragzip.core.tokenization.TokenCounter`) or ``tokenizer_path=`` (a local Hugging Face
tokenizer folder); without either, SmolLM2's tokenizer is used, which is right only when the
server runs SmolLM2.

Soft context travels as vLLM ``prompt_embeds`` (``prompt_embeds=True``; see
:mod:`ragzip.generators.prompt_embeds`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx

from ragzip.core.errors import ConfigError, UpstreamError
from ragzip.core.messages import ChatMessage
from ragzip.core.retry import Backoff
from ragzip.core.tokenization import TokenCounter
from ragzip.generators.base import Generation, Generator, validate_max_new_tokens
from ragzip.generators.http import RetryingClient
from ragzip.generators.openai_wire import Completion, read_completion
from ragzip.generators.prompt_embeds import PromptEmbedder, encode_prompt_embeds

if TYPE_CHECKING:
    import numpy as np
    import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_DETAIL_CHARS = 300


class OpenAIGenerator(Generator):
    """Chat completions from an OpenAI-compatible HTTP server, greedy and streamed.

    Args:
        base_url: The server, with or without the trailing ``/v1``
            (``http://127.0.0.1:8000`` and ``http://127.0.0.1:8000/v1`` are the same).
        model: The served model name sent with every request.
        api_key: Bearer token, if the server wants one.
        counter: Token counter of the served model's tokenizer (budgets are counted in it).
        tokenizer_path: Instead of ``counter``, a local Hugging Face tokenizer folder.
        timeout: Seconds allowed to connect and for each read; a server silent for longer
            fails the attempt.
        max_retries: Extra attempts after a retryable failure (``0`` disables retrying).
        retry_backoff_s: Wait before the first retry; doubled for each next one.
        temperature: Sampling temperature sent to the server; ``0.0`` is greedy.
        include_usage: Ask for token usage in the stream (``stream_options``); turn off for
            servers that reject the field. Without usage, tokens are counted with ``counter``.
        client: An ``httpx.Client`` to use (its timeout is overridden per request; it is not
            closed by :meth:`close`). By default the generator owns one.
        prompt_embeds: Declare that the server accepts vLLM-style ``prompt_embeds`` on
            ``/v1/completions`` (``vllm serve --enable-prompt-embeds``), so soft context can be
            sent (:meth:`generate_soft`).
        embedder: Renders the templated prompt as the served model's input embeddings, for
            ``prompt_embeds``; by default an embedded SmolLM2 on the CPU, loaded on first use
            (right only when the server runs SmolLM2-135M-Instruct).

    Raises:
        ConfigError: A malformed URL, an empty model name, bad numbers, or an ``embedder``
            without ``prompt_embeds``.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        counter: TokenCounter | None = None,
        tokenizer_path: str | Path | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        retry_backoff_s: float = 0.5,
        temperature: float = 0.0,
        include_usage: bool = True,
        client: httpx.Client | None = None,
        prompt_embeds: bool = False,
        embedder: PromptEmbedder | None = None,
    ) -> None:
        self._base = _normalise_base_url(base_url)
        if embedder is not None and not prompt_embeds:
            msg = "an embedder is only used with prompt_embeds=True"
            raise ConfigError(msg)
        if not isinstance(model, str) or not model.strip():
            msg = "model must be the non-empty name of the served model"
            raise ConfigError(msg)
        if counter is not None and tokenizer_path is not None:
            msg = "give counter or tokenizer_path, not both"
            raise ConfigError(msg)
        if not timeout > 0:
            msg = f"timeout must be > 0 seconds, got {timeout}"
            raise ConfigError(msg)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            msg = f"max_retries must be an int >= 0, got {max_retries!r}"
            raise ConfigError(msg)
        if retry_backoff_s < 0:
            msg = f"retry_backoff_s must be >= 0, got {retry_backoff_s}"
            raise ConfigError(msg)
        self._model = model
        self._api_key = api_key or None
        self._counter = counter
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else None
        self._counter_lock = threading.Lock()
        self._timeout_s = float(timeout)
        self._temperature = float(temperature)
        self._include_usage = bool(include_usage)
        self._http = RetryingClient(
            self._base,
            client=client,
            timeout_s=self._timeout_s,
            max_retries=max_retries,
            backoff=Backoff(float(retry_backoff_s), jitter=0.1),
            headers=self._headers,
            redact=self._redact,
        )
        self._prompt_embeds = bool(prompt_embeds)
        self._embedder = embedder
        self._embedder_lock = threading.Lock()

    # --- identity and tokenizer --------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._model

    @property
    def base_url(self) -> str:
        """The server's root URL (without ``/v1``)."""
        return self._base

    @property
    def counter(self) -> TokenCounter:
        """The served model's token counter; loaded on first use when not given."""
        with self._counter_lock:
            if self._counter is None:
                self._counter = self._load_counter()
            return self._counter

    def _load_counter(self) -> TokenCounter:
        from ragzip.weights import counter_from_folder, smollm2_counter

        if self._tokenizer_path is None:
            return smollm2_counter()
        return counter_from_folder(self._tokenizer_path, name=self._model)

    @property
    def accepts_embeddings(self) -> bool:
        """Whether the server was declared to take ``prompt_embeds`` (see the constructor)."""
        return self._prompt_embeds

    def embeddings_unsupported_reason(self) -> str:
        if self._prompt_embeds:
            return ""
        return (
            f"the server at {self._base} is not declared to accept prompt embeddings "
            "(start vLLM with --enable-prompt-embeds and pass prompt_embeds=True)"
        )

    @property
    def embedder(self) -> PromptEmbedder:
        """The local renderer of prompt embeddings; the default one is loaded on first use."""
        with self._embedder_lock:
            if self._embedder is None:
                from ragzip.generators.embedded import EmbeddedGenerator

                self._embedder = EmbeddedGenerator(device="cpu")
            return self._embedder

    def __repr__(self) -> str:
        key = ", api_key=***" if self._api_key else ""
        return f"OpenAIGenerator(base_url={self._base!r}, model={self._model!r}{key})"

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP client if this generator created it."""
        self._http.close()

    def __enter__(self) -> OpenAIGenerator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- public calls ------------------------------------------------------------------------

    def _generate(self, messages: tuple[ChatMessage, ...], *, max_new_tokens: int) -> Generation:
        payload = self._payload(max_new_tokens)
        payload["messages"] = [m.to_dict() for m in messages]
        t0 = time.perf_counter()
        result = self._http.call(
            "POST",
            "/v1/chat/completions",
            payload,
            self._reader(t0),
        )
        total = time.perf_counter() - t0
        prompt = result.prompt_tokens
        if prompt is None:
            prompt = self.count_prompt_tokens(messages)
        return self._generation(result, prompt, total)

    def complete_embeds(
        self, prompt_embeds: torch.Tensor | np.ndarray, *, max_new_tokens: int = 64
    ) -> Generation:
        """Complete from prompt embeddings with ``/v1/completions`` (vLLM ``prompt_embeds``).

        The tensor is sent as vLLM's ``--enable-prompt-embeds`` expects: ``torch.save`` of a
        ``(seq, hidden)`` tensor, base64-encoded. No chat template is applied by the server: the
        embeddings must cover the whole templated prompt.

        Args:
            prompt_embeds: ``(seq, hidden)`` or ``(1, seq, hidden)`` float32/float16/bfloat16.
            max_new_tokens: The most tokens to generate.

        Raises:
            InputError: Wrong shape, an empty prompt or non-finite values.
            UpstreamError: The server failed or refused the request.
        """
        max_new = validate_max_new_tokens(max_new_tokens)
        encoded, rows = encode_prompt_embeds(prompt_embeds)
        payload = self._payload(max_new)
        payload["prompt_embeds"] = encoded
        t0 = time.perf_counter()
        try:
            result = self._http.call(
                "POST",
                "/v1/completions",
                payload,
                self._reader(t0),
            )
        except UpstreamError as exc:
            if exc.status_code in (400, 404, 405, 422):
                msg = (
                    f"the server refused prompt embeddings ({exc}); it must accept "
                    "vLLM-style prompt_embeds on /v1/completions (vllm serve "
                    "--enable-prompt-embeds) with the hidden size of the served model"
                )
                raise UpstreamError(msg, status_code=exc.status_code) from exc
            raise
        total = time.perf_counter() - t0
        prompt = result.prompt_tokens if result.prompt_tokens is not None else rows
        return self._generation(result, prompt, total)

    def _generate_soft(
        self,
        messages: tuple[ChatMessage, ...],
        embeddings: np.ndarray | torch.Tensor,
        *,
        placeholder: str,
        max_new_tokens: int,
    ) -> Generation:
        if not self._prompt_embeds:
            super()._generate_soft(
                messages, embeddings, placeholder=placeholder, max_new_tokens=max_new_tokens
            )
        embeds = self.embedder.embed_messages(
            messages, placeholder=placeholder, replacements=embeddings
        )
        return self.complete_embeds(embeds, max_new_tokens=max_new_tokens)

    async def acomplete_embeds(
        self, prompt_embeds: torch.Tensor | np.ndarray, *, max_new_tokens: int = 64
    ) -> Generation:
        """Async variant of :meth:`complete_embeds`; runs it in a worker thread."""
        return await asyncio.to_thread(
            self.complete_embeds, prompt_embeds, max_new_tokens=max_new_tokens
        )

    def list_models(self) -> list[str]:
        """Ids of the models the server serves (``GET /v1/models``), e.g. as a health check."""

        def read(response: httpx.Response) -> list[str]:
            try:
                body = json.loads(response.read())
                return [str(item["id"]) for item in body["data"]]
            except (ValueError, KeyError, TypeError) as exc:
                msg = f"{self._base}/v1/models returned an unexpected body"
                raise UpstreamError(msg, status_code=response.status_code) from exc

        return self._http.call("GET", "/v1/models", None, read)

    # --- HTTP --------------------------------------------------------------------------------

    def _payload(self, max_new_tokens: int) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self._model,
            "max_tokens": max_new_tokens,
            "temperature": self._temperature,
            "stream": True,
        }
        if self._include_usage:
            payload["stream_options"] = {"include_usage": True}
        return payload

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream, application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _reader(self, t0: float) -> Callable[[httpx.Response], Completion]:
        """Reads a completion response, timed from ``t0``."""
        return functools.partial(
            read_completion, t0=t0, redact=self._redact, timeout_s=self._timeout_s
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _generation(self, result: Completion, prompt_tokens: int, total: float) -> Generation:
        completion = result.completion_tokens
        if completion is None:
            completion = self.counter.count(result.text)
        return Generation(
            text=result.text,
            prompt_tokens=int(prompt_tokens),
            completion_tokens=int(completion),
            ttft_s=min(result.ttft_s, total),
            total_s=total,
            finish_reason=result.finish_reason,
        )


def _normalise_base_url(base_url: str) -> str:
    if not isinstance(base_url, str):
        msg = f"base_url must be a string, got {type(base_url).__name__}"
        raise ConfigError(msg)
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        msg = f"base_url must be an http(s) URL like 'http://127.0.0.1:8000', got {base_url!r}"
        raise ConfigError(msg)
    return url.removesuffix("/v1")
