"""A fake OpenAI-compatible server on loopback: real FastAPI + uvicorn in a background thread.

It answers ``/v1/chat/completions`` (streamed or not), ``/v1/completions`` with vLLM-style
``prompt_embeds`` (decoded and checked), and ``/v1/models``. A test steers it through
``fake_server.behaviour`` (fail with a status n times, hang, drop the connection mid-stream,
send an error event, ...) and inspects ``fake_server.requests`` afterwards.

The chat answer is deterministic: ``"echo: "`` followed by the last user message, streamed one
word (a "token") per chunk; usage counts whitespace-separated words.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

MODEL_ID = "fake-model"
HIDDEN = 576


class DropConnection(Exception):
    """Raised inside a streaming body to make uvicorn cut the connection."""


@dataclass
class Behaviour:
    """How the fake server misbehaves; reset before every test."""

    fail_status: int | None = None  # answer this status ...
    fail_times: int = 0  # ... to this many requests
    retry_after: str | None = None  # Retry-After header sent with fail_status
    echo_key_in_error: bool = False  # put the received Authorization header in the error body
    required_key: str | None = None  # answer 401 unless "Bearer <required_key>" is sent
    hang_s: float = 0.0  # sleep before answering ...
    hang_times: int = 0  # ... for this many requests
    first_chunk_delay_s: float = 0.0  # sleep before the first text chunk
    chunk_delay_s: float = 0.0  # sleep between text chunks
    close_after_chunks: int | None = None  # cut the connection after n text chunks
    end_after_chunks: int | None = None  # end the stream cleanly after n chunks, no finish/DONE
    error_event_after: int | None = None  # send an error event after n text chunks
    ignore_stream: bool = False  # always answer with one JSON body
    send_usage: bool = True  # honour stream_options.include_usage / add usage to JSON
    sse_noise: bool = False  # comments, event:/id: fields, JSON split over two data lines
    hidden: int = HIDDEN  # hidden size /v1/completions accepts


@dataclass
class FakeServer:
    """Handle on the running server."""

    url: str
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[dict[str, Any]] = field(default_factory=list)
    last_embeds: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.behaviour = Behaviour()
            self.requests.clear()
            self.last_embeds = None

    def paths(self) -> list[str]:
        with self.lock:
            return [r["path"] for r in self.requests]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    body = {"error": {"message": message, "type": "fake_error", "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(server: FakeServer) -> FastAPI:
    app = FastAPI()

    async def gate(request: Request, body: dict[str, Any] | None) -> Any:
        """Record the request and apply failure behaviour; a response means 'answer this'."""
        with server.lock:
            b = server.behaviour
            server.requests.append(
                {
                    "path": request.url.path,
                    "headers": dict(request.headers),
                    "body": body,
                    "size": int(request.headers.get("content-length") or 0),
                }
            )
            hang = b.hang_times > 0
            if hang:
                b.hang_times -= 1
            fail = b.fail_status is not None and b.fail_times > 0
            if fail:
                b.fail_times -= 1
        if hang:
            await asyncio.sleep(b.hang_s)
        auth = request.headers.get("authorization", "")
        if b.required_key is not None and auth != f"Bearer {b.required_key}":
            return _error(401, f"Incorrect API key provided: {auth.removeprefix('Bearer ')}")
        if fail:
            assert b.fail_status is not None
            message = "simulated failure"
            if b.echo_key_in_error:
                message += f" for {auth}"
            headers = {"Retry-After": b.retry_after} if b.retry_after is not None else None
            return _error(b.fail_status, message, headers)
        return None

    async def stream(
        pieces: list[str], kind: str, usage: dict[str, int] | None, finish: str
    ) -> AsyncIterator[bytes]:
        b = server.behaviour

        def event(payload: dict[str, Any]) -> bytes:
            text = json.dumps(payload)
            if b.sse_noise:
                half = text.index(", ") + 1  # one JSON object over two data lines
                return f"event: chunk\nid: 1\ndata: {text[:half]}\ndata: {text[half:]}\n\n".encode()
            return f"data: {text}\n\n".encode()

        def chunk(piece: str | None, finish_reason: str | None) -> dict[str, Any]:
            if kind == "chat":
                delta = {} if piece is None else {"content": piece}
                choice: dict[str, Any] = {"index": 0, "delta": delta}
            else:
                choice = {"index": 0, "text": piece or ""}
            choice["finish_reason"] = finish_reason
            obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
            return {"id": "fake-1", "object": obj, "model": MODEL_ID, "choices": [choice]}

        if b.sse_noise:
            yield b": keep-alive comment\n\n"
        if kind == "chat":
            yield event(
                {
                    "id": "fake-1",
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                }
            )
        if b.first_chunk_delay_s:
            await asyncio.sleep(b.first_chunk_delay_s)
        for i, piece in enumerate(pieces):
            if i and b.chunk_delay_s:
                await asyncio.sleep(b.chunk_delay_s)
            if b.close_after_chunks is not None and i == b.close_after_chunks:
                raise DropConnection
            if b.end_after_chunks is not None and i == b.end_after_chunks:
                return
            if b.error_event_after is not None and i == b.error_event_after:
                yield event({"error": {"message": "model crashed", "code": 500}})
                return
            yield event(chunk(piece, None))
        yield event(chunk(None, finish))
        if usage is not None:
            yield event({"id": "fake-1", "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    def answer(
        body: dict[str, Any], kind: str, pieces: list[str], prompt_tokens: int, finish: str
    ) -> Any:
        b = server.behaviour
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(pieces),
            "total_tokens": prompt_tokens + len(pieces),
        }
        if body.get("stream") and not b.ignore_stream:
            wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                stream(pieces, kind, usage if wants_usage and b.send_usage else None, finish),
                media_type="text/event-stream",
            )
        text = "".join(pieces)
        if kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish}
        payload: dict[str, Any] = {"id": "fake-1", "model": MODEL_ID, "choices": [choice]}
        if b.send_usage:
            payload["usage"] = usage
        return JSONResponse(payload)

    def limit(words: list[str], max_tokens: int) -> tuple[list[str], str]:
        pieces = [w + " " for w in words[:-1]] + words[-1:]
        if len(pieces) > max_tokens:
            return pieces[:max_tokens], "length"
        return pieces, "stop"

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        refused = await gate(request, None)
        if refused is not None:
            return refused
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        refused = await gate(request, body)
        if refused is not None:
            return refused
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "messages must be a non-empty list")
        for m in messages:
            if m.get("role") not in ("system", "user", "assistant") or not isinstance(
                m.get("content"), str
            ):
                return _error(400, f"bad message {m!r}")
        if body.get("model") != MODEL_ID:
            return _error(404, f"model {body.get('model')!r} does not exist")
        last_user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        pieces, finish = limit(["echo:", *last_user.split()], int(body.get("max_tokens", 16)))
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        return answer(body, "chat", pieces, prompt_tokens, finish)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        refused = await gate(request, body)
        if refused is not None:
            return refused
        encoded = body.get("prompt_embeds")
        if not isinstance(encoded, str):
            return _error(400, "prompt_embeds must be a base64 string")
        try:
            raw = base64.b64decode(encoded, validate=True)
            tensor = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
        except (binascii.Error, RuntimeError, ValueError) as exc:
            return _error(400, f"cannot decode prompt_embeds: {exc}")
        if not isinstance(tensor, torch.Tensor):
            return _error(400, "prompt_embeds must be a tensor")
        if tensor.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            return _error(400, f"prompt_embeds dtype {tensor.dtype} is not supported")
        b = server.behaviour
        if tensor.ndim != 2 or tensor.shape[1] != b.hidden:
            return _error(400, f"prompt_embeds must be (seq, {b.hidden}), got {list(tensor.shape)}")
        with server.lock:
            server.last_embeds = tensor
        words = f"rows={tensor.shape[0]} sum={float(tensor.float().sum()):.4f}".split()
        pieces, finish = limit(words, int(body.get("max_tokens", 16)))
        return answer(body, "completion", pieces, int(tensor.shape[0]), finish)

    return app


@pytest.fixture(scope="session")
def _fake_server_session() -> Iterator[FakeServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = FakeServer(url=f"http://127.0.0.1:{port}")
    config = uvicorn.Config(
        create_app(server),
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not runner.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the fake OpenAI server did not start")
        time.sleep(0.02)
    yield server
    runner.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture
def fake_server(_fake_server_session: FakeServer) -> Iterator[FakeServer]:
    """The running fake server, with default behaviour and an empty request log."""
    _fake_server_session.reset()
    yield _fake_server_session
    _fake_server_session.reset()


@pytest.fixture
def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
