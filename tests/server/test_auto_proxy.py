"""The proxy with compressor "auto": the policy's decision and reason reach the client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from ragzip.profiling.fit import LinearModel, QuadraticModel
from ragzip.profiling.profile import Profile, save_profile, user_profile_path
from ragzip.profiling.samples import CompressorCost

from .conftest import FakeUpstream, ServerThread

MACHINE = "test-machine|2cpu"
# TTFT(p) = 0.1 + 1e-3·p; truncate at 4x costs 0.05 s + 1e-4 s per token: n* is about 70 tokens.
PROFILE = Profile(
    machine=MACHINE,
    generator="gen",
    ttft=QuadraticModel(0.1, 1e-3, 0.0),
    decode=LinearModel(0.0, 0.0),
    prompt_overhead_tokens=0,
    compressors=(CompressorCost("truncate", 4.0, LinearModel(0.05, 1e-4), 4.0),),
    expected_output_tokens=1,
    max_context_tokens=8192,
)
LONG = " ".join(
    f"Passage sentence number {i} tells about the history of Warsaw and the Vistula."
    for i in range(40)
)


@pytest.fixture
def auto_proxy(
    serve_proxy: Any,
    upstream_server: ServerThread,
    upstream: FakeUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> ServerThread:
    monkeypatch.setattr("ragzip.core.machine.machine_key", lambda: MACHINE)
    monkeypatch.setenv("RAGZIP_CACHE_DIR", str(tmp_path))  # where auto finds this machine's
    save_profile(PROFILE, user_profile_path())
    server: ServerThread = serve_proxy(
        upstream_server.url, default_compressor="auto:min_quality=0", default_budget="1x"
    )
    return server


def _ask(server: ServerThread, passages: list[str], stream: bool = False) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        json={
            "model": "m",
            "stream": stream,
            "messages": [{"role": "user", "content": "Which river flows through Warsaw?"}],
            "ragzip": {"passages": passages},
        },
        timeout=30,
    )


def test_auto_decision_and_reason_in_the_response(
    auto_proxy: ServerThread, upstream: FakeUpstream
) -> None:
    short = _ask(auto_proxy, ["Warsaw lies on the Vistula."])
    assert short.status_code == 200, short.text
    decision = short.json()["ragzip"]["decision"]
    assert decision["compress"] is False and decision["compressor"] is None
    assert "break-even" in decision["reason"]
    assert short.headers["x-ragzip-decision"] == "skip"

    long = _ask(auto_proxy, [LONG])
    report = long.json()["ragzip"]
    assert report["compressor"].startswith("auto")
    assert report["decision"]["compress"] is True
    assert (report["decision"]["compressor"], report["decision"]["ratio"]) == ("truncate", 4.0)
    assert report["decision"]["predicted_s"] < report["decision"]["baseline_s"]
    assert 0 < report["compressed_tokens"] <= report["original_tokens"] // 4
    assert long.headers["x-ragzip-decision"] == "compress truncate 4x"
    assert "predicted fastest" in long.headers["x-ragzip-decision-reason"]
    forwarded = str(upstream.last()["json"]["messages"])
    assert "number 39" not in forwarded  # the tail was cut before forwarding


def test_auto_decision_in_stream_headers(auto_proxy: ServerThread) -> None:
    reply = _ask(auto_proxy, [LONG], stream=True)
    assert reply.status_code == 200
    assert reply.headers["x-ragzip-decision"] == "compress truncate 4x"
    assert reply.text.rstrip().endswith("data: [DONE]")


def _warm_up(server: ServerThread, n: int = 8) -> None:
    for _ in range(n):  # answers the proxy's load watch learns the generator's speed from
        assert _ask(server, ["Warsaw lies on the Vistula."]).status_code == 200


def test_auto_skips_in_front_of_an_idle_fast_generator(auto_proxy: ServerThread) -> None:
    _warm_up(auto_proxy)
    decision = _ask(auto_proxy, [LONG]).json()["ragzip"]["decision"]
    assert decision["compress"] is False
    assert "no compression saves more generator time than it costs" in decision["reason"]
    assert "x its idle" in decision["reason"] and "0 tokens in flight" in decision["reason"]


def test_auto_compresses_when_the_generator_is_the_bottleneck(
    auto_proxy: ServerThread, upstream: FakeUpstream
) -> None:
    _warm_up(auto_proxy)
    upstream.delay = 0.5  # the generator now queues: far slower per token than when idle
    _warm_up(auto_proxy, 3)
    reply = _ask(auto_proxy, [LONG])
    decision = reply.json()["ragzip"]["decision"]
    assert decision["compress"] is True, decision["reason"]
    assert (decision["compressor"], decision["ratio"]) == ("truncate", 4.0)
    assert "frees" in decision["reason"] and "x its idle" in decision["reason"]
    assert reply.headers["x-ragzip-decision"] == "compress truncate 4x"
