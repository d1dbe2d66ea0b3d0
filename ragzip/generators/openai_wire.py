"""Reading what an OpenAI-compatible server answers: server-sent events, completion chunks
(chat or text, streamed or whole) and error bodies. Server-given text passes through ``redact``
before it reaches an error message."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ragzip.core.errors import UpstreamError

Redact = Callable[[str], str]
"""Removes secrets (the API key) from text bound for an error message."""

MAX_DETAIL_CHARS = 300


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
class Completion:
    """What one completion response delivered, streamed or as one JSON body."""

    text: str
    finish_reason: str
    ttft_s: float
    prompt_tokens: int | None
    completion_tokens: int | None


def read_completion(
    response: httpx.Response, t0: float, *, redact: Redact, timeout_s: float
) -> Completion:
    """Read a chat or text completion, streamed (SSE) or as one JSON body."""
    content_type = response.headers.get("content-type", "")
    if "text/event-stream" not in content_type:
        return _read_json(response, t0, redact)
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
            chunk = parse_chunk(data, response.status_code, redact)
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
        msg = redact(
            f"{response.url}: the stream stalled for {timeout_s:g} s "
            f"after {len(parts)} chunk(s) of text"
        )
        raise UpstreamError(msg) from exc
    except httpx.TransportError as exc:
        if not received:
            raise
        msg = redact(
            f"{response.url}: the connection broke mid-stream after {len(parts)} chunk(s) "
            f"of text ({exc!r})"
        )
        raise UpstreamError(msg) from exc
    if not done and finish is None:
        msg = f"{response.url}: the stream ended before the completion finished"
        raise UpstreamError(msg)
    elapsed = ttft if ttft is not None else first_event
    return Completion(
        text="".join(parts),
        finish_reason=finish or "unknown",
        ttft_s=elapsed if elapsed is not None else time.perf_counter() - t0,
        prompt_tokens=_usage_int(usage, "prompt_tokens"),
        completion_tokens=_usage_int(usage, "completion_tokens"),
    )


def _read_json(response: httpx.Response, t0: float, redact: Redact) -> Completion:
    body = parse_chunk(response.read().decode("utf-8", errors="replace"), 200, redact)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        msg = f"{response.url}: the response holds no choices"
        raise UpstreamError(msg, status_code=response.status_code)
    choice = choices[0]
    message = choice.get("message")
    text = (message.get("content") if isinstance(message, Mapping) else choice.get("text")) or ""
    elapsed = time.perf_counter() - t0
    usage = body.get("usage")
    return Completion(
        text=str(text),
        finish_reason=str(choice.get("finish_reason") or "unknown"),
        ttft_s=elapsed,
        prompt_tokens=_usage_int(usage, "prompt_tokens"),
        completion_tokens=_usage_int(usage, "completion_tokens"),
    )


def parse_chunk(data: str, status: int, redact: Redact) -> Mapping[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        msg = f"the server sent data that is not JSON: {data[:MAX_DETAIL_CHARS]!r}"
        raise UpstreamError(redact(msg), status_code=status) from exc
    if not isinstance(chunk, Mapping):
        msg = f"the server sent {type(chunk).__name__} where a JSON object was expected"
        raise UpstreamError(msg, status_code=status)
    error = chunk.get("error")
    if error is not None or chunk.get("object") == "error":
        source = error if isinstance(error, Mapping) else chunk
        code = source.get("code")
        detail = source.get("message") or str(error)
        msg = redact(f"the server reported an error: {detail}")
        raise UpstreamError(msg, status_code=code if isinstance(code, int) else None)
    return chunk


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


def error_detail(body: str) -> str:
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
    if len(text) > MAX_DETAIL_CHARS:
        text = text[:MAX_DETAIL_CHARS] + "..."
    return text or "(empty body)"
