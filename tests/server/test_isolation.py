"""One request cannot stall compression for everyone: per-request limits, a bounded queue that
answers 503 with Retry-After, separate lanes for small and large requests, and work that
really stops when its deadline passes or its client goes away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from ragzip.server import create_app

from .conftest import SPINS, FakeUpstream, ServerThread, build_fake_upstream, proxy_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def chat(query: str, passages: list[str], compressor: str = "truncate") -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": query}],
        "ragzip": {"passages": passages, "compressor": compressor, "budget": "2x"},
    }


@asynccontextmanager
async def proxy(counter: Any, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    upstream = httpx.ASGITransport(app=build_fake_upstream(FakeUpstream()))
    settings = proxy_settings("http://upstream.test", **overrides)
    app = create_app(settings, counter=counter, transport=upstream)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://proxy.test", timeout=60
        ) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def wait_for(state: str, key: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while SPINS.get(key) != state:
        assert time.monotonic() < deadline, f"{key}: {SPINS.get(key)} instead of {state}"
        await asyncio.sleep(0.02)


async def test_limits_are_named(minilm_counter: Any) -> None:
    limits = {"max_passages": 3, "max_context_chars": 1000, "max_context_tokens": 50}
    async with proxy(minilm_counter, **limits) as client:
        many = await client.post("/v1/chat/completions", json=chat("q?", ["a"] * 4))
        assert many.status_code == 413 and "max_passages" in many.text
        long = await client.post("/v1/chat/completions", json=chat("q?", ["x" * 1001]))
        assert long.status_code == 413 and "max_context_chars" in long.text
        wordy = await client.post("/v1/chat/completions", json=chat("q?", ["word " * 60]))
        assert wordy.status_code == 413 and "max_context_tokens" in wordy.text
        ok = await client.post("/v1/chat/completions", json=chat("q?", ["a b c"] * 3))
        assert ok.status_code == 200


async def test_deadline_stops_the_work_and_frees_the_lane(minilm_counter: Any) -> None:
    async with proxy(minilm_counter, compression_timeout=0.5) as client:
        answer = await client.post(
            "/v1/chat/completions", json=chat("deadline?", ["words"], "test-spinning")
        )
        assert answer.status_code == 500 and "stopped" in answer.text
        await wait_for("cancelled", "deadline?")
        lanes = client.app.state.service.compression.lanes  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)
        assert lanes.small.admitted == lanes.large.admitted == 0


async def test_full_queue_answers_503_with_retry_after(minilm_counter: Any) -> None:
    async with proxy(minilm_counter, max_queued_compressions=1, compression_timeout=2) as client:
        first = asyncio.create_task(
            client.post("/v1/chat/completions", json=chat("busy?", ["words"], "test-spinning"))
        )
        await wait_for("running", "busy?")
        second = await client.post("/v1/chat/completions", json=chat("small?", ["words"]))
        assert second.status_code == 503
        assert int(second.headers["retry-after"]) >= 1
        assert second.json()["error"]["code"] == "server_busy"
        assert (await first).status_code == 500  # its deadline passed
        await wait_for("cancelled", "busy?")  # and the work stopped
        again = await client.post("/v1/chat/completions", json=chat("small?", ["words"]))
        assert again.status_code == 200  # the lane is free again


async def test_a_heavy_request_does_not_hold_up_small_ones(minilm_counter: Any) -> None:
    async with proxy(minilm_counter, small_request_chars=100) as client:
        heavy = asyncio.create_task(
            client.post(
                "/v1/chat/completions", json=chat("heavy?", ["long " * 50], "test-spinning")
            )
        )
        await wait_for("running", "heavy?")
        t0 = time.perf_counter()
        small = await client.post("/v1/chat/completions", json=chat("small?", ["a few words"]))
        assert small.status_code == 200
        assert time.perf_counter() - t0 < 5  # not behind the 20 s heavy one
        assert SPINS["heavy?"] == "running"
        heavy.cancel()
        with pytest.raises(asyncio.CancelledError):
            await heavy


def test_a_client_that_hangs_up_stops_its_compression(serve_proxy: Any) -> None:
    with ServerThread(build_fake_upstream(FakeUpstream())) as upstream:
        server = serve_proxy(upstream.url)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{server.url}/v1/chat/completions",
                json=chat("gone?", ["words"], "test-spinning"),
                timeout=httpx.Timeout(5, read=0.5),
            )
        deadline = time.monotonic() + 10
        while SPINS.get("gone?") != "cancelled":
            assert time.monotonic() < deadline, SPINS.get("gone?")
            time.sleep(0.05)
