"""Soft context through the proxy: a chat request in, vLLM ``prompt_embeds`` upstream, a chat out.

A soft compressor returns vectors, not text, so its context cannot be forwarded as chat messages.
When the upstream is declared to accept prompt embeddings (``upstream_prompt_embeds``; vLLM's
``--enable-prompt-embeds``), the proxy

1. renders the chat with one :data:`~ragzip.prompts.SOFT_PLACEHOLDER` per vector where each
   passage's text would have gone (:func:`render_soft_chat`),
2. embeds the templated prompt with the upstream model's input embeddings and splices the
   vectors in at the placeholders (done by the service with a
   :class:`~ragzip.generators.openai_compat.PromptEmbedder`),
3. sends ``POST /v1/completions`` with ``prompt_embeds`` (:func:`completion_body`; the
   Completions API applies no chat template, so the embeddings hold the templated prompt), and
4. turns the ``text_completion`` answer, streamed or not, back into ``chat.completion`` form
   (:func:`chat_from_completion`, :func:`chat_stream`).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np

from ragzip.core.errors import CompressionError, InputError
from ragzip.core.messages import ROLES, ChatMessage
from ragzip.core.types import CompressionResult
from ragzip.prompts import SOFT_PLACEHOLDER
from ragzip.server.context import ContextPlan, render_chat

_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"  # Unicode private use: never in the plan's output
_MARK_RE = re.compile(f"{_MARK_OPEN}(\\d+){_MARK_CLOSE}")

CHAT_ONLY_FIELDS = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "response_format",
    "logprobs",
    "top_logprobs",
    "audio",
    "modalities",
)
"""Chat request fields that have no Completions counterpart; set, they are refused."""

_DROPPED_FIELDS = frozenset({"messages", "ragzip", "max_completion_tokens", *CHAT_ONLY_FIELDS})


def _plain_text(message: dict[str, Any], index: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                msg = f"messages[{index}] holds a {kind!r} part; soft context takes text only"
                raise InputError(msg)
            texts.append(str(part.get("text") or ""))
        return "\n".join(texts)
    if content is None:
        return ""
    msg = f"messages[{index}].content must be a string or a list of text parts"
    raise InputError(msg)


def render_soft_chat(
    messages: Sequence[dict[str, Any]],
    plan: ContextPlan,
    result: CompressionResult,
    *,
    placement: str,
    header: str,
) -> tuple[list[ChatMessage], np.ndarray]:
    """The chat with placeholders for the vectors, and the vectors in prompt order.

    Passages are marked, rendered where their text would go (the ``ragzip`` field's block,
    tagged regions), and the marks replaced by one placeholder per vector. The rows of
    ``result.embeddings`` are reordered to follow the placeholders through the conversation,
    which need not be the passages' order (a tagged system message comes before the block).

    Args:
        messages: The request's messages, as sent.
        plan: Where the request's context goes (:func:`~ragzip.server.context.plan_chat`).
        result: The soft compressor's result over ``plan.passages``.
        placement: ``context_placement`` of the settings.
        header: ``context_header`` of the settings.

    Raises:
        InputError: A role other than system/user/assistant, non-text content, or a message
            that already holds the placeholder token.
    """
    assert result.embeddings is not None
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ROLES:
            msg = f"messages[{i}] has role {role!r}; soft context supports {sorted(ROLES)}"
            raise InputError(msg)
        text = _plain_text(message, i)
        if SOFT_PLACEHOLDER in text or _MARK_OPEN in text:
            msg = f"messages[{i}] holds the reserved token {SOFT_PLACEHOLDER!r}"
            raise InputError(msg)
    counts = [p.tokens for p in result.passages]
    marks = [f"{_MARK_OPEN}{i}{_MARK_CLOSE}" if n else "" for i, n in enumerate(counts)]
    rendered = render_chat(messages, plan, marks, placement=placement, header=header)
    order: list[int] = []

    def expand(match: re.Match[str]) -> str:
        i = int(match.group(1))
        order.append(i)
        return SOFT_PLACEHOLDER * counts[i]

    out = [
        ChatMessage(m["role"], _MARK_RE.sub(expand, _plain_text(m, i)))
        for i, m in enumerate(rendered)
    ]
    if sorted(order) != [i for i, n in enumerate(counts) if n]:
        msg = f"soft context of {result.compressor!r} was not placed exactly once per passage"
        raise CompressionError(msg)
    starts = np.cumsum([0, *counts])
    embeddings = np.asarray(result.embeddings)
    rows = [embeddings[starts[i] : starts[i + 1]] for i in order]
    return out, (np.concatenate(rows) if rows else embeddings[:0])


def completion_body(raw: dict[str, Any], prompt_embeds: str) -> dict[str, Any]:
    """The ``/v1/completions`` request for a chat request whose prompt is ``prompt_embeds``.

    Sampling fields and unknown extensions pass through; ``max_completion_tokens`` becomes
    ``max_tokens``.

    Raises:
        InputError: A chat-only field (tools, response format, logprobs, ...) is set.
    """
    used = [k for k in CHAT_ONLY_FIELDS if raw.get(k) not in (None, False)]
    if used:
        msg = f"{', '.join(used)} cannot be used with a soft compressor (sent as prompt_embeds)"
        raise InputError(msg)
    body = {k: v for k, v in raw.items() if k not in _DROPPED_FIELDS}
    if "max_tokens" not in body and raw.get("max_completion_tokens") is not None:
        body["max_tokens"] = raw["max_completion_tokens"]
    body["prompt_embeds"] = prompt_embeds
    return body


def chat_from_completion(data: Any) -> Any:
    """A ``text_completion`` body as a ``chat.completion`` (other bodies unchanged)."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        return data
    choices = [
        {
            "index": c.get("index", 0),
            "message": {"role": "assistant", "content": c.get("text") or ""},
            "logprobs": None,
            "finish_reason": c.get("finish_reason"),
        }
        for c in data["choices"]
        if isinstance(c, dict)
    ]
    return {**data, "object": "chat.completion", "choices": choices}


def _chat_chunk(data: Any, started: set[int]) -> Any:
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        return data
    choices = []
    for c in data["choices"]:
        if not isinstance(c, dict):
            continue
        index = c.get("index", 0)
        delta: dict[str, Any] = {}
        if index not in started:
            started.add(index)
            delta["role"] = "assistant"
        text = c.get("text")
        if text or "role" in delta:
            delta["content"] = text or ""
        choices.append(
            {
                "index": index,
                "delta": delta,
                "logprobs": None,
                "finish_reason": c.get("finish_reason"),
            }
        )
    return {**data, "object": "chat.completion.chunk", "choices": choices}


def _event(raw: bytes, started: set[int]) -> bytes:
    lines = raw.decode("utf-8", errors="replace").split("\n")
    data = [line[5:].removeprefix(" ") for line in lines if line.startswith("data:")]
    if not data:
        return raw + b"\n\n"  # comments, keep-alives
    payload = "\n".join(data)
    if payload.strip() == "[DONE]":
        return b"data: [DONE]\n\n"
    try:
        parsed = json.loads(payload)
    except ValueError:
        return raw + b"\n\n"
    converted = json.dumps(_chat_chunk(parsed, started), ensure_ascii=False)
    return b"data: " + converted.encode("utf-8") + b"\n\n"


async def chat_stream(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A ``text_completion`` event stream as a ``chat.completion.chunk`` one, event by event.

    The first chunk of each choice carries ``delta.role = "assistant"``; ``[DONE]``, comments and
    error events pass unchanged.
    """
    buffer = b""
    started: set[int] = set()

    async def chunks() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in rest:
            yield chunk

    async for chunk in chunks():
        buffer = (buffer + chunk).replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            if event.strip():
                yield _event(event, started)
    if buffer.strip():
        yield _event(buffer.rstrip(b"\n"), started)
