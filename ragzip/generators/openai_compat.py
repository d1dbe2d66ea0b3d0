"""A generator that calls an OpenAI-compatible server (vLLM, llama.cpp, TGI, OpenAI, ...).

Requests stream (``"stream": true``) so the time to the first token can be measured on the
client: ``ttft_s`` is the time from the call to the first server-sent event that carries text.
Connection failures, timeouts, HTTP 429 and 5xx are retried with exponential backoff (honouring
``Retry-After``) as long as no byte of the response body has been read; once text has started to
flow, a failure ends the call with :class:`~ragzip.errors.UpstreamError`. The API key goes only
into the ``Authorization`` header: never into logs, reprs or error messages.

Budgets must be counted in the tokenizer of the *served* model. Pass ``counter=`` (any
:class:`~ragzip.tokenization.TokenCounter`) or ``tokenizer_path=`` (a local Hugging Face
tokenizer folder); without either, SmolLM2's tokenizer is used, which is right only when the
server runs SmolLM2.

Soft context (vectors from a soft compressor) cannot travel as chat text. With
``prompt_embeds=True`` the generator renders the chat template locally, embeds it with the
served model's input-embedding table (an injected :class:`PromptEmbedder`; SmolLM2's by default),
splices the vectors in at the placeholder tokens and sends the whole prompt as ``prompt_embeds``
to ``POST /v1/completions``. The wire format follows vLLM (``vllm serve --enable-prompt-embeds``;
docs/features/prompt_embeds.md and ``safe_load_prompt_embeds`` in vLLM's source): the
base64 of ``torch.save`` of one ``(num_tokens, hidden_size)`` tensor, loaded server-side with
``torch.load(weights_only=True)``; float32, bfloat16 and float16 are accepted (recent versions
cast to the model's dtype) and ``hidden_size`` must equal the model's. The Completions API applies
no chat template to ``prompt_embeds``, so the embeddings cover the fully templated prompt.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from ragzip.errors import ConfigError, InputError, MissingDependencyError, UpstreamError
from ragzip.generators.base import Generation, Generator, validate_max_new_tokens
from ragzip.messages import ChatMessage
from ragzip.tokenization import TokenCounter

if TYPE_CHECKING:
    import numpy as np
    import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses retried besides any other 5xx: rate limiting and server-side failures."""

_MAX_RETRY_AFTER_S = 30.0
_MAX_DETAIL_CHARS = 300


def iter_sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The ``data`` payloads of a server-sent event stream, one per event.

    Follows the WHATWG event-stream rules that matter here: comment lines (``:``) and fields
    other than ``data`` are skipped, one optional space after the colon is dropped, and several
    ``data`` lines of one event are joined with newlines. A last event without its closing blank
    line is still delivered; an event whose data is empty is not.

    Args:
        lines: Lines of the stream without their line endings.
    """
    data: list[str] | None = None
    for line in lines:
        if not line:
            if data is not None and (payload := "\n".join(data)):
                yield payload
            data = None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data = data if data is not None else []
            data.append(value.removeprefix(" "))
    if data is not None and (payload := "\n".join(data)):
        yield payload


@dataclass
class _Stream:
    """What one streamed (or plain JSON) response delivered."""

    text: str
    finish_reason: str
    ttft_s: float
    prompt_tokens: int | None
    completion_tokens: int | None


class PromptEmbedder(Protocol):
    """Renders chat messages as the served model's input embeddings, vectors spliced in.

    :class:`~ragzip.generators.embedded.EmbeddedGenerator` is one: build it over the served
    model's weights (or at least its tokenizer and input-embedding table).
    """

    @property
    def hidden_size(self) -> int:
        """Width of the input embeddings."""
        ...

    def embed_messages(
        self,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        placeholder: str | int | None = None,
        replacements: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """``(1, seq, hidden)`` embeddings of the templated prompt, each ``placeholder``
        occurrence replaced by a row of ``replacements``."""
        ...


class _RetryableStatus(Exception):
    def __init__(self, error: UpstreamError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


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
        self._timeout = httpx.Timeout(float(timeout))
        self._timeout_s = float(timeout)
        self._max_retries = max_retries
        self._backoff_s = float(retry_backoff_s)
        self._temperature = float(temperature)
        self._include_usage = bool(include_usage)
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=self._timeout)
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
        if self._tokenizer_path is None:
            from ragzip.models import smollm2_counter

            return smollm2_counter()
        try:
            from transformers import AutoTokenizer
        except ModuleNotFoundError as exc:
            msg = "transformers is needed for tokenizer_path: pip install 'ragzip[models]'"
            raise MissingDependencyError(msg, name="transformers") from exc
        from ragzip.models import offline
        from ragzip.tokenization import HFTokenCounter

        with offline():
            try:
                tokenizer = AutoTokenizer.from_pretrained(str(self._tokenizer_path))
            except (OSError, ValueError) as exc:
                msg = f"cannot load a tokenizer from {self._tokenizer_path}: {exc}"
                raise ConfigError(msg) from exc
        try:
            return HFTokenCounter(tokenizer, name=self._model)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc

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
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> OpenAIGenerator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- public calls ------------------------------------------------------------------------

    def _generate(self, messages: tuple[ChatMessage, ...], *, max_new_tokens: int) -> Generation:
        payload = self._payload(max_new_tokens)
        payload["messages"] = [m.to_dict() for m in messages]
        t0 = time.perf_counter()
        result = self._call("POST", "/v1/chat/completions", payload, lambda r: self._read(r, t0))
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
            result = self._call("POST", "/v1/completions", payload, lambda r: self._read(r, t0))
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

        return self._call("GET", "/v1/models", None, read)

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

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _call(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None,
        handle: Callable[[httpx.Response], T],
    ) -> T:
        """Send a request, retrying failures that happen before the body is read.

        ``handle`` reads the response; httpx errors it raises before the first body byte count
        as retryable, it raises :class:`UpstreamError` itself for failures after that.
        """
        url = f"{self._base}{path}"
        for attempt in range(self._max_retries + 1):
            retry_after: float | None = None
            cause: BaseException | None = None
            try:
                with self._client.stream(
                    method, url, json=payload, headers=self._headers(), timeout=self._timeout
                ) as response:
                    if response.status_code >= 400:
                        self._raise_status(response, url)
                    return handle(response)
            except _RetryableStatus as exc:
                error, retry_after = exc.error, exc.retry_after
            except httpx.TimeoutException as exc:
                error = UpstreamError(
                    self._redact(f"{url}: no response within {self._timeout_s:g} s ({exc!r})")
                )
                cause = exc
            except httpx.TransportError as exc:
                error = UpstreamError(self._redact(f"cannot reach {url}: {exc!r}"))
                cause = exc
            if attempt == self._max_retries:
                if attempt:
                    error = UpstreamError(
                        f"{error} (after {attempt + 1} attempts)", status_code=error.status_code
                    )
                raise error from cause
            delay = self._backoff_s * 2**attempt
            if retry_after is not None:
                delay = max(delay, min(retry_after, _MAX_RETRY_AFTER_S))
            delay *= 1.0 + 0.1 * random.random()
            logger.warning(
                "%s failed (%s); retry %d of %d in %.2f s",
                url,
                error,
                attempt + 1,
                self._max_retries,
                delay,
            )
            time.sleep(delay)
        msg = "unreachable"  # pragma: no cover - the loop always returns or raises
        raise AssertionError(msg)  # pragma: no cover

    def _raise_status(self, response: httpx.Response, url: str) -> None:
        status = response.status_code
        try:
            body = response.read().decode("utf-8", errors="replace")
        except httpx.HTTPError:
            body = ""
        detail = _error_detail(body)
        if status in (401, 403):
            detail = f"authentication failed (check api_key): {detail}"
        error = UpstreamError(
            self._redact(f"{url} answered HTTP {status}: {detail}"), status_code=status
        )
        if status in RETRY_STATUSES or status >= 500:
            raise _RetryableStatus(error, _retry_after(response.headers.get("retry-after")))
        raise error

    def _read(self, response: httpx.Response, t0: float) -> _Stream:
        """Read a chat or text completion, streamed (SSE) or as one JSON body."""
        content_type = response.headers.get("content-type", "")
        if "text/event-stream" not in content_type:
            return self._read_json(response, t0)
        parts: list[str] = []
        ttft: float | None = None
        first_event: float | None = None
        finish: str | None = None
        usage: Mapping[str, Any] | None = None
        done = False
        received = False

        def lines() -> Iterator[str]:
            nonlocal received
            for line in response.iter_lines():
                received = True
                yield line

        try:
            for data in iter_sse_data(lines()):
                now = time.perf_counter() - t0
                if first_event is None:
                    first_event = now
                if data.strip() == "[DONE]":
                    done = True
                    break
                chunk = self._parse_chunk(data, response.status_code)
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or ():
                    if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                        continue
                    piece = _choice_text(choice)
                    if piece:
                        if ttft is None:
                            ttft = now
                        parts.append(piece)
                    if choice.get("finish_reason"):
                        finish = str(choice["finish_reason"])
        except httpx.TimeoutException as exc:
            if not received:
                raise
            msg = self._redact(
                f"{response.url}: the stream stalled for {self._timeout_s:g} s "
                f"after {len(parts)} chunk(s) of text"
            )
            raise UpstreamError(msg) from exc
        except httpx.TransportError as exc:
            if not received:
                raise
            msg = self._redact(
                f"{response.url}: the connection broke mid-stream after {len(parts)} chunk(s) "
                f"of text ({exc!r})"
            )
            raise UpstreamError(msg) from exc
        if not done and finish is None:
            msg = f"{response.url}: the stream ended before the completion finished"
            raise UpstreamError(msg)
        elapsed = ttft if ttft is not None else first_event
        return _Stream(
            text="".join(parts),
            finish_reason=finish or "unknown",
            ttft_s=elapsed if elapsed is not None else time.perf_counter() - t0,
            prompt_tokens=_usage_int(usage, "prompt_tokens"),
            completion_tokens=_usage_int(usage, "completion_tokens"),
        )

    def _read_json(self, response: httpx.Response, t0: float) -> _Stream:
        body = self._parse_chunk(response.read().decode("utf-8", errors="replace"), 200)
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            msg = f"{response.url}: the response holds no choices"
            raise UpstreamError(msg, status_code=response.status_code)
        choice = choices[0]
        message = choice.get("message")
        text = (
            message.get("content") if isinstance(message, Mapping) else choice.get("text")
        ) or ""
        elapsed = time.perf_counter() - t0
        usage = body.get("usage")
        return _Stream(
            text=str(text),
            finish_reason=str(choice.get("finish_reason") or "unknown"),
            ttft_s=elapsed,
            prompt_tokens=_usage_int(usage, "prompt_tokens"),
            completion_tokens=_usage_int(usage, "completion_tokens"),
        )

    def _parse_chunk(self, data: str, status: int) -> Mapping[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            msg = f"the server sent data that is not JSON: {data[:_MAX_DETAIL_CHARS]!r}"
            raise UpstreamError(self._redact(msg), status_code=status) from exc
        if not isinstance(chunk, Mapping):
            msg = f"the server sent {type(chunk).__name__} where a JSON object was expected"
            raise UpstreamError(msg, status_code=status)
        error = chunk.get("error")
        if error is not None or chunk.get("object") == "error":
            source = error if isinstance(error, Mapping) else chunk
            code = source.get("code")
            detail = source.get("message") or str(error)
            msg = self._redact(f"the server reported an error: {detail}")
            raise UpstreamError(msg, status_code=code if isinstance(code, int) else None)
        return chunk

    def _generation(self, result: _Stream, prompt_tokens: int, total: float) -> Generation:
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


def encode_prompt_embeds(prompt_embeds: torch.Tensor | np.ndarray) -> tuple[str, int]:
    """Base64 of ``torch.save`` of a ``(seq, hidden)`` tensor, as vLLM's ``prompt_embeds`` wants.

    The tensor is copied to compact CPU memory first (``torch.save`` of a view would ship the
    whole underlying storage). float64 input is sent as float32.

    Returns:
        The encoded string and the number of prompt vectors.

    Raises:
        InputError: Not a float tensor of shape ``(seq, hidden)`` / ``(1, seq, hidden)``, empty,
            or holding non-finite values.
    """
    try:
        import torch
    except ModuleNotFoundError as exc:
        msg = "torch is needed to send prompt embeddings: pip install 'ragzip[models]'"
        raise MissingDependencyError(msg, name="torch") from exc
    try:
        tensor = torch.as_tensor(prompt_embeds)
    except (TypeError, ValueError, RuntimeError) as exc:
        msg = f"prompt_embeds must be a tensor or array: {exc}"
        raise InputError(msg) from exc
    if tensor.ndim == 3 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 2 or tensor.shape[0] == 0 or tensor.shape[1] == 0:
        shape = tuple(tensor.shape)
        msg = f"prompt_embeds must have shape (seq, hidden) or (1, seq, hidden), got {shape}"
        raise InputError(msg)
    if not tensor.is_floating_point():
        msg = f"prompt_embeds must be floating point, got {tensor.dtype}"
        raise InputError(msg)
    if tensor.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        tensor = tensor.to(torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        msg = "prompt_embeds holds NaN or infinite values"
        raise InputError(msg)
    buffer = io.BytesIO()
    torch.save(tensor.detach().to("cpu").contiguous().clone(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii"), int(tensor.shape[0])


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


def _choice_text(choice: Mapping[str, Any]) -> str:
    delta = choice.get("delta")
    if isinstance(delta, Mapping):
        content = delta.get("content")
        return content if isinstance(content, str) else ""
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def _usage_int(usage: Any, key: str) -> int | None:
    if not isinstance(usage, Mapping):
        return None
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:  # an HTTP date: fall back to the backoff
        return None
    return seconds if seconds >= 0 else None


def _error_detail(body: str) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    detail: Any = None
    if isinstance(parsed, Mapping):
        error = parsed.get("error")
        if isinstance(error, Mapping):
            detail = error.get("message")
        elif isinstance(error, str):
            detail = error
        detail = detail or parsed.get("message") or parsed.get("detail")
    text = str(detail) if detail else body.strip()
    if len(text) > _MAX_DETAIL_CHARS:
        text = text[:_MAX_DETAIL_CHARS] + "..."
    return text or "(empty body)"
