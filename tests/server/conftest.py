"""Fixtures for the proxy tests: a fake OpenAI-compatible upstream and servers on loopback.

The upstream is a real FastAPI app served by a real uvicorn on 127.0.0.1. It records every
request it receives and can be told to fail: answer error statuses, stall, drop the connection
mid-stream, or stream slowly (to see the proxy close it when the client leaves).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.core.cancellation import Cancelled, checkpoint
from ragzip.registry import register
from ragzip.server import Settings, create_app

# --- a compressor that fails, for the fallback tests ----------------------------------------------


class FailingCompressor(Compressor):
    """A compressor whose model fails on every input (to exercise the fallback)."""

    name = "test-failing"

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        raise RuntimeError("scoring model crashed")


class StuckCompressor(Compressor):
    """A compressor whose model hangs for a while (to exercise the compression timeout)."""

    name = "test-stuck"

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        time.sleep(1.5)
        return CompressionOutput(spans=[[] for _ in request.passages])


class SpinningCompressor(Compressor):
    """A compressor that works for 20 s unless cancelled, reporting what happened in
    ``SPINS[query]`` (``"running"``, ``"cancelled"`` or ``"finished"``)."""

    name = "test-spinning"

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        SPINS[request.query] = "running"
        try:
            for _ in range(2000):
                checkpoint()
                time.sleep(0.01)
        except Cancelled:
            SPINS[request.query] = "cancelled"
            raise
        SPINS[request.query] = "finished"
        return CompressionOutput(spans=[[] for _ in request.passages])


SPINS: dict[str, str] = {}

register("test-failing", f"{__name__}:FailingCompressor", summary="tests: always fails")
register("test-spinning", f"{__name__}:SpinningCompressor", summary="tests: spins")
register("test-stuck", f"{__name__}:StuckCompressor", summary="tests: hangs")

# --- fake upstream --------------------------------------------------------------------------


@dataclass
class FakeUpstream:
    """State and behaviour of the fake OpenAI-compatible server.

    Attributes:
        received: ``{"path", "json", "headers"}`` of every request, in order.
        fail_with: Statuses to answer, one per request, before answering normally.
        delay: Seconds to wait before answering (watching for the proxy to hang up).
        stream_chunks: Content pieces of a streamed answer (default: the echoed words).
        stream_interval: Seconds between streamed chunks.
        drop_after: Drop the connection after this many streamed chunks.
        events: ``"disconnected"`` when the proxy hung up during a delay, ``"stream-closed"``
            when a stream was abandoned by the proxy, ``"stream-done"`` when one completed.
    """

    received: list[dict[str, Any]] = field(default_factory=list)
    fail_with: list[int] = field(default_factory=list)
    delay: float = 0.0
    stream_chunks: list[str] | None = None
    stream_interval: float = 0.0
    drop_after: int | None = None
    omit_done: bool = False
    events: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.received.clear()
        self.fail_with.clear()
        self.events.clear()
        self.delay = 0.0
        self.stream_chunks = None
        self.stream_interval = 0.0
        self.drop_after = None
        self.omit_done = False

    def last(self) -> dict[str, Any]:
        assert self.received, "the upstream received nothing"
        return self.received[-1]


def _echo_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        users = [m for m in body["messages"] if m.get("role") == "user"]
        content = users[-1]["content"] if users else ""
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        return f"echo: {content}"
    prompt = body.get("prompt", "")
    return f"echo: {prompt if isinstance(prompt, str) else json.dumps(prompt)}"


def _prompt_words(body: dict[str, Any]) -> int:
    return len(json.dumps(body.get("messages", body.get("prompt", ""))).split())


def build_fake_upstream(fake: FakeUpstream) -> FastAPI:
    """A FastAPI app speaking enough of the OpenAI API for the proxy tests."""
    app = FastAPI()

    async def handle(request: Request, kind: str) -> Any:
        body = await request.json()
        fake.received.append(
            {"path": request.url.path, "json": body, "headers": dict(request.headers)}
        )
        if fake.fail_with:
            status = fake.fail_with.pop(0)
            return JSONResponse(
                {"error": {"message": f"fake failure {status}", "type": "server_error"}},
                status_code=status,
            )
        if body.get("model") == "show-my-key":  # an upstream that echoes the key it was given
            auth = request.headers.get("authorization", "")
            return JSONResponse(
                {"error": {"message": f"Incorrect API key provided: {auth}", "type": "auth"}},
                status_code=401,
            )
        if fake.delay:
            deadline = time.monotonic() + fake.delay
            while time.monotonic() < deadline:
                if await request.is_disconnected():
                    fake.events.append("disconnected")
                    return JSONResponse({}, status_code=499)
                await asyncio.sleep(0.02)
        text = _echo_text(body)
        created = int(time.time())
        if body.get("stream"):
            return StreamingResponse(
                _stream(fake, kind, body, text, created), media_type="text/event-stream"
            )
        usage = {"prompt_tokens": _prompt_words(body), "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
            obj = "text_completion"
        return {
            "id": "cmpl-fake",
            "object": obj,
            "created": created,
            "model": body.get("model", "fake"),
            "choices": [choice],
            "usage": usage,
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        return await handle(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await handle(request, "text")

    @app.get("/v1/models")
    async def models() -> Any:
        return {
            "object": "list",
            "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "tests"}],
        }

    return app


async def _stream(
    fake: FakeUpstream, kind: str, body: dict[str, Any], text: str, created: int
) -> AsyncIterator[bytes]:
    pieces = fake.stream_chunks if fake.stream_chunks is not None else text.split(" ")
    model = body.get("model", "fake")
    sent = 0
    try:
        for i, piece in enumerate(pieces):
            if fake.drop_after is not None and sent >= fake.drop_after:
                raise ConnectionResetError("fake upstream drops the connection")
            content = piece if i == 0 else " " + piece
            choice: dict[str, Any] = {"index": 0, "text": content, "finish_reason": None}
            obj = "text_completion"
            if kind == "chat":
                delta = {"content": content} | ({"role": "assistant"} if i == 0 else {})
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                obj = "chat.completion.chunk"
            chunk = {
                "id": "chunk-fake",
                "object": obj,
                "created": created,
                "model": model,
                "choices": [choice],
            }
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            sent += 1
            if fake.stream_interval:
                await asyncio.sleep(fake.stream_interval)
        if not fake.omit_done:
            yield b"data: [DONE]\n\n"
        fake.events.append("stream-done")
    except (asyncio.CancelledError, GeneratorExit):
        fake.events.append("stream-closed")
        raise


# --- servers on loopback --------------------------------------------------------------------


class ServerThread:
    """A uvicorn server on 127.0.0.1 (a free port) in a background thread."""

    def __init__(self, app: Any, **config: Any) -> None:
        # IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (no Nagle delays).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config.setdefault("log_level", "warning")
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan="on", **config))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@pytest.fixture(scope="session")
def fake() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture(scope="session")
def upstream_server(fake: FakeUpstream) -> Iterator[ServerThread]:
    with ServerThread(build_fake_upstream(fake)) as server:
        yield server


@pytest.fixture
def upstream(fake: FakeUpstream, upstream_server: ServerThread) -> Iterator[FakeUpstream]:
    """The fake upstream, reset for each test."""
    fake.reset()
    yield fake
    fake.reset()


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def proxy_settings(upstream_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "upstream_base_url": upstream_url + "/v1",
        "default_compressor": "truncate",
        "default_budget": "4x",
        "retry_backoff": 0.01,
        "read_timeout": 10.0,
        "access_log": False,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def serve_proxy(minilm_counter: Any) -> Iterator[Any]:
    """Start proxies on loopback: ``serve_proxy(upstream_url, **settings) -> ServerThread``."""
    stack = contextlib.ExitStack()

    def start(upstream_url: str, **overrides: Any) -> ServerThread:
        app = create_app(proxy_settings(upstream_url, **overrides), counter=minilm_counter)
        return stack.enter_context(ServerThread(app))

    with stack:
        yield start


@pytest.fixture
def proxy(serve_proxy: Any, upstream_server: ServerThread, upstream: FakeUpstream) -> ServerThread:
    """A proxy with default test settings in front of the fake upstream."""
    server: ServerThread = serve_proxy(upstream_server.url)
    return server
