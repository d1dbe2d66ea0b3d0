"""The embedded model behind an OpenAI-compatible API: real uvicorn on loopback, real HTTP.

A tiny randomly initialised Llama with SmolLM2's tokenizer keeps the fast tests fast (the code
path is the same as for SmolLM2); one slow test serves SmolLM2 itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ragzip.generators.embedded import EmbeddedGenerator
from ragzip.generators.openai_compat import OpenAIGenerator
from ragzip.server.model_server.app import create_model_app
from ragzip.server.model_server.schemas import ModelMessage
from tests.server.conftest import ServerThread
from tests.soft_support import small_generator

MODEL = "tiny-llama"


@pytest.fixture(scope="module")
def tiny_generator() -> EmbeddedGenerator:
    return small_generator(seed=0, max_positions=512, name=MODEL)


@pytest.fixture(scope="module")
def server(tiny_generator: EmbeddedGenerator) -> Iterator[ServerThread]:
    with ServerThread(create_model_app(tiny_generator)) as running:
        yield running


MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Which river flows through Paris?"},
]


IMAGE_PART = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def _events(text: str) -> list[Any]:
    out: list[Any] = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_models_lists_the_served_model(server: ServerThread) -> None:
    reply = httpx.get(f"{server.url}/v1/models")
    assert reply.status_code == 200
    assert [m["id"] for m in reply.json()["data"]] == [MODEL]


def test_chat_matches_the_embedded_generator(
    server: ServerThread, tiny_generator: EmbeddedGenerator
) -> None:
    local = tiny_generator.generate(MESSAGES, max_new_tokens=12)
    reply = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": MODEL, "messages": MESSAGES, "max_tokens": 12},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == local.text
    assert body["choices"][0]["finish_reason"] == local.finish_reason
    assert body["usage"]["prompt_tokens"] == local.prompt_tokens
    assert body["usage"]["completion_tokens"] == local.completion_tokens


def test_stream_sends_one_chunk_per_token_and_ends_with_done(
    server: ServerThread, tiny_generator: EmbeddedGenerator
) -> None:
    local = tiny_generator.generate(MESSAGES, max_new_tokens=10)
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": MESSAGES,
            "max_tokens": 10,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = _events(reply.read().decode())
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e["choices"]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == local.text
    content_chunks = [c for c in chunks if c["choices"][0]["delta"].get("content")]
    assert len(content_chunks) > 1  # streamed token by token, not in one piece
    assert chunks[-1]["choices"][0]["finish_reason"] == local.finish_reason
    usage = events[-2]["usage"]
    assert usage["completion_tokens"] == local.completion_tokens
    assert usage["prompt_tokens"] == local.prompt_tokens


def test_text_completion_streamed_and_not(
    server: ServerThread, tiny_generator: EmbeddedGenerator
) -> None:
    prompt = "The capital of France is"
    plain = httpx.post(
        f"{server.url}/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": 6}
    )
    assert plain.status_code == 200, plain.text
    assert plain.json()["object"] == "text_completion"
    text = plain.json()["choices"][0]["text"]
    ids = tiny_generator.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    expected = "".join(t.text for t in tiny_generator.stream_ids(ids, max_new_tokens=6))
    assert text == expected
    streamed = httpx.post(
        f"{server.url}/v1/completions",
        json={"model": MODEL, "prompt": prompt, "max_tokens": 6, "stream": True},
    )
    events = _events(streamed.text)
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == text


def test_openai_generator_reads_the_loopback_server(
    server: ServerThread, tiny_generator: EmbeddedGenerator
) -> None:
    local = tiny_generator.generate(MESSAGES, max_new_tokens=8)
    with OpenAIGenerator(server.url, MODEL, counter=tiny_generator.counter) as remote:
        gen = remote.generate(MESSAGES, max_new_tokens=8)
    assert gen.text == local.text
    assert gen.prompt_tokens == local.prompt_tokens
    assert gen.completion_tokens == local.completion_tokens
    assert 0 < gen.ttft_s <= gen.total_s


def test_every_openai_message_shape_is_read_as_its_text(
    server: ServerThread, tiny_generator: EmbeddedGenerator
) -> None:
    """Content parts, ``name``, developer instructions, tool calls and their results: the
    model reads the same text as from plain string messages."""
    parts = [
        {"role": "developer", "content": [{"type": "text", "text": "Answer briefly."}]},
        {"role": "user", "name": "ann", "content": [{"type": "text", "text": "Who wrote"},
                                                    {"type": "text", "text": "Hamlet?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "look", "content": "Shakespeare."},
    ]  # fmt: skip
    plain = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Who wrote\nHamlet?"},
        {"role": "user", "content": "Result of look:\nShakespeare."},
    ]
    reply = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": MODEL, "messages": parts, "max_tokens": 4},
    )
    assert reply.status_code == 200, reply.text
    expected = tiny_generator.generate(plain, max_new_tokens=4)
    assert reply.json()["choices"][0]["message"]["content"] == expected.text
    assert reply.json()["usage"]["prompt_tokens"] == expected.prompt_tokens


def test_a_part_that_is_not_text_is_named() -> None:
    with pytest.raises(ValueError, match="part 1 is of type 'image_url'"):
        ModelMessage(role="user", content=[{"type": "text", "text": "x"}, IMAGE_PART])


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"model": "other", "messages": MESSAGES}, "invalid_value"),
        ({"model": MODEL, "messages": MESSAGES, "temperature": 0.7}, "invalid_value"),
        ({"model": MODEL, "messages": MESSAGES, "n": 2}, "invalid_value"),
        ({"model": MODEL, "messages": []}, "invalid_value"),
        ({"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, "invalid_value"),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": [IMAGE_PART]}]},
            "invalid_value",
        ),
        ({"model": MODEL, "messages": MESSAGES, "max_tokens": 0}, "invalid_value"),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": "word " * 600}]},
            "invalid_input",
        ),
    ],
)
def test_bad_requests_get_openai_errors(
    server: ServerThread, payload: dict[str, Any], code: str
) -> None:
    reply = httpx.post(f"{server.url}/v1/chat/completions", json=payload)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == code


def test_the_model_is_free_again_after_a_client_leaves_mid_stream(
    server: ServerThread, tiny_generator: EmbeddedGenerator
) -> None:
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json={"model": MODEL, "messages": MESSAGES, "max_tokens": 200, "stream": True},
    ) as reply:
        for _line in reply.iter_lines():
            break  # leave after the first line
    gen = tiny_generator.generate(MESSAGES, max_new_tokens=3)  # would block if still held
    assert gen.completion_tokens >= 1


@pytest.mark.slow
def test_smollm2_served_on_loopback_answers_like_the_embedded_model() -> None:
    generator = EmbeddedGenerator()
    messages = [
        {"role": "system", "content": "Answer with a few words."},
        {
            "role": "user",
            "content": "Context: The Seine flows through Paris.\nQuestion: Which river flows "
            "through Paris?",
        },
    ]
    local = generator.generate(messages, max_new_tokens=16)
    with (
        ServerThread(create_model_app(generator)) as running,
        OpenAIGenerator(running.url, generator.name, counter=generator.counter) as remote,
    ):
        gen = remote.generate(messages, max_new_tokens=16)
    assert gen.text == local.text
    assert "Seine" in gen.text
    assert gen.ttft_s < gen.total_s


def test_content_parts_pass_through_the_proxy_to_serve_model(
    server: ServerThread, serve_proxy: Any
) -> None:
    proxy = serve_proxy(server.url)
    question = [{"type": "text", "text": "Who wrote Hamlet?"}]
    passage = "Hamlet is a tragedy by William Shakespeare. It is set in Denmark. It is long."
    reply = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={
            "model": MODEL,
            "max_tokens": 3,
            "messages": [{"role": "user", "content": question}],
            "ragzip": {"passages": [passage], "budget": "2x"},
        },
    )
    assert reply.status_code == 200, reply.text
    assert int(reply.headers["x-ragzip-compressed-tokens"]) > 0
    assert reply.json()["choices"][0]["message"]["content"]


def test_an_upstream_error_names_the_message_as_the_client_numbered_it(
    server: ServerThread, serve_proxy: Any
) -> None:
    proxy = serve_proxy(server.url)
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, IMAGE_PART]},
    ]
    direct = httpx.post(
        f"{server.url}/v1/chat/completions", json={"model": MODEL, "messages": messages}
    )
    assert direct.status_code == 400 and "messages.1" in direct.text
    passage = "Hamlet is a tragedy by William Shakespeare. It is set in Denmark."
    reply = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": MODEL, "messages": messages, "ragzip": {"passages": [passage]}},
    )
    # the proxy inserted its context message at 1: the client's image message went upstream
    # as messages.2, and comes back as the client's messages.1
    assert reply.status_code == 400, reply.text
    assert "messages.1" in reply.text and "messages.2" not in reply.text
    assert reply.json()["error"]["message"] == direct.json()["error"]["message"]
