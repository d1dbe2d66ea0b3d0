"""End to end: the official ``openai`` client → proxy (uvicorn) → fake upstream (uvicorn).

Everything runs on 127.0.0.1 over real sockets; faults are real too: error statuses, a stalled
upstream, a closed port, a connection dropped mid-stream, a client that walks away.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from .conftest import FakeUpstream, ServerThread, closed_port

PASSAGES = [
    "Marie Curie won two Nobel prizes. She was born in Warsaw. She moved to Paris in 1891.",
    "The Eiffel Tower is in Paris. It was finished in 1889. It is made of wrought iron.",
    "Warsaw is the capital of Poland. It lies on the Vistula. It was rebuilt after 1945.",
]
SYSTEM = "You are a careful assistant. Answer in one word."
QUESTION = "Where was Marie Curie born?"


def client_for(server: ServerThread, key: str = "unused", **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, **kw)


def ask(server: ServerThread, content: str = "hi") -> Any:
    return client_for(server).chat.completions.create(
        model="m", messages=[{"role": "user", "content": content}]
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_chat_with_ragzip_field(proxy: ServerThread, upstream: FakeUpstream) -> None:
    raw = client_for(proxy).chat.completions.with_raw_response.create(
        model="fake-model",
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        temperature=0.1,
        extra_body={"ragzip": {"passages": PASSAGES, "budget": "3x"}, "top_k": 4},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == f"echo: {QUESTION}"
    report = completion.model_extra["ragzip"]  # type: ignore[index]
    assert report["compressed_tokens"] <= report["original_tokens"] // 3
    assert int(raw.headers["x-ragzip-tokens-saved"]) == report["saved_tokens"] > 0
    sent = upstream.last()["json"]
    assert sent["messages"][0] == {"role": "system", "content": SYSTEM}
    assert sent["messages"][2] == {"role": "user", "content": QUESTION}
    assert sent["messages"][1]["content"].startswith("Context:\n[1] Marie Curie won")
    assert sent["top_k"] == 4 and sent["temperature"] == 0.1 and "ragzip" not in sent


def test_chat_with_context_tags(proxy: ServerThread, upstream: FakeUpstream) -> None:
    content = (
        "Use the documents.\n<ragzip:context>\n" + "\n\n".join(PASSAGES) + "\n</ragzip:context>\n"
        f"{QUESTION}"
    )
    completion = client_for(proxy).chat.completions.create(
        model="fake-model",
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}],
        extra_body={"ragzip": {"budget": "16"}},
    )
    report = completion.model_extra["ragzip"]  # type: ignore[index]
    assert report["passages"] == 3 and 0 < report["compressed_tokens"] <= 16
    sent = upstream.last()["json"]["messages"]
    assert sent[0] == {"role": "system", "content": SYSTEM}
    forwarded = sent[1]["content"]
    head, tail = "Use the documents.\n", f"\n{QUESTION}"
    assert forwarded.startswith(head) and forwarded.endswith(tail)  # verbatim around the tags
    kept = forwarded[len(head) : -len(tail)].split("\n\n")
    assert all(p.startswith(k) and k for p, k in zip(PASSAGES, kept, strict=True))
    assert "ragzip:" not in forwarded and "rebuilt after 1945" not in forwarded


def test_streaming_chat(proxy: ServerThread, upstream: FakeUpstream) -> None:
    raw = client_for(proxy).chat.completions.with_raw_response.create(
        model="fake-model",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        extra_body={"ragzip": {"passages": PASSAGES, "budget": "2x"}},
    )
    assert int(raw.headers["x-ragzip-tokens-saved"]) > 0
    assert raw.headers["content-type"].startswith("text/event-stream")
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse())
    assert text == f"echo: {QUESTION}"
    assert upstream.events == ["stream-done"]


def test_stream_without_done_gets_one(proxy: ServerThread, upstream: FakeUpstream) -> None:
    upstream.omit_done = True
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "a b c"}]}
    with httpx.stream("POST", proxy.url + "/v1/chat/completions", json=body, timeout=10) as r:
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert len(events) == 5  # "echo:", "a", "b", "c", then the [DONE] the proxy added
    assert events[-1] == "data: [DONE]" and events.count("data: [DONE]") == 1


def test_completions_plain_and_streaming(proxy: ServerThread, upstream: FakeUpstream) -> None:
    client = client_for(proxy)
    prompt = "Docs:\n<ragzip:context>" + "\n\n".join(PASSAGES) + "</ragzip:context>\nQ: where?\nA:"
    completion = client.completions.create(
        model="fake-model", prompt=prompt, extra_body={"ragzip": {"budget": "12"}}
    )
    sent = upstream.last()["json"]["prompt"]
    assert sent.startswith("Docs:\nMarie Curie") and sent.endswith("\nQ: where?\nA:")
    assert completion.choices[0].text == f"echo: {sent}"
    assert completion.model_extra["ragzip"]["compressed_tokens"] <= 12  # type: ignore[index]
    stream = client.completions.create(
        model="fake-model",
        prompt="Q: where?",
        stream=True,
        extra_body={"ragzip": {"passages": PASSAGES[:1], "budget": "256"}},
    )
    text = "".join(c.choices[0].text for c in stream)
    assert text == f"echo: {upstream.last()['json']['prompt']}"
    assert text.startswith("echo: Context:\n[1] Marie Curie") and text.endswith("Q: where?")


def test_models_and_auth(
    serve_proxy: Any, upstream_server: ServerThread, upstream: FakeUpstream
) -> None:
    proxy = serve_proxy(upstream_server.url, auth_token="let-me-in")
    with pytest.raises(openai.AuthenticationError) as info:
        client_for(proxy, key="wrong").models.list()
    assert info.value.status_code == 401
    assert [m.id for m in client_for(proxy, key="let-me-in").models.list()] == ["fake-model"]


def test_request_too_large(
    serve_proxy: Any, upstream_server: ServerThread, upstream: FakeUpstream
) -> None:
    proxy = serve_proxy(upstream_server.url, max_request_bytes=4096)
    with pytest.raises(openai.APIStatusError) as info:
        client_for(proxy).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x" * 10_000}]
        )
    assert info.value.status_code == 413
    assert upstream.received == []


def test_upstream_500s_are_retried(proxy: ServerThread, upstream: FakeUpstream) -> None:
    upstream.fail_with.extend([500, 503])
    completion = client_for(proxy).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "echo: hi"
    assert len(upstream.received) == 3


def test_upstream_500s_exhaust_retries(
    serve_proxy: Any, upstream_server: ServerThread, upstream: FakeUpstream
) -> None:
    proxy = serve_proxy(upstream_server.url, max_retries=1)
    upstream.fail_with.extend([502, 500, 500])
    with pytest.raises(openai.InternalServerError) as info:
        ask(proxy)
    assert info.value.status_code == 502
    assert info.value.code == "upstream_error"  # type: ignore[attr-defined]
    assert "fake failure 500" in info.value.message
    assert len(upstream.received) == 2


def test_upstream_timeout_is_504(
    serve_proxy: Any, upstream_server: ServerThread, upstream: FakeUpstream
) -> None:
    proxy = serve_proxy(upstream_server.url, read_timeout=0.3)
    upstream.delay = 3.0
    start = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        ask(proxy)
    assert time.monotonic() - start < 2.0
    assert info.value.status_code == 504
    assert info.value.code == "upstream_timeout"  # type: ignore[attr-defined]
    assert len(upstream.received) == 1  # read timeouts are not retried by default
    assert wait_for(lambda: "disconnected" in upstream.events)  # and the upstream was let go


def test_response_timeout_bounds_the_whole_answer(
    serve_proxy: Any, upstream_server: ServerThread, upstream: FakeUpstream
) -> None:
    """A generous per-read timeout does not let an answer take longer than response_timeout."""
    proxy = serve_proxy(upstream_server.url, read_timeout=30, response_timeout=0.5)
    upstream.delay = 3.0
    start = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        ask(proxy)
    assert time.monotonic() - start < 2.0
    assert info.value.status_code == 504 and "response_timeout" in info.value.message


def test_connection_refused_is_502(serve_proxy: Any) -> None:
    proxy = serve_proxy(f"http://127.0.0.1:{closed_port()}", max_retries=2)
    start = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        ask(proxy)
    assert info.value.status_code == 502 and "cannot connect" in info.value.message
    assert time.monotonic() - start < 3.0
    metrics = httpx.get(proxy.url + "/metrics").text
    assert "ragzip_upstream_retries_total 2.0" in metrics
    assert 'ragzip_errors_total{code="upstream_error"} 1.0' in metrics


def test_reset_mid_stream_is_a_stream_error(proxy: ServerThread, upstream: FakeUpstream) -> None:
    upstream.stream_chunks = ["one", "two", "three", "four"]
    upstream.drop_after = 2
    stream = client_for(proxy).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    got = []
    with pytest.raises(openai.APIError, match="closed the connection early"):
        for chunk in stream:
            got.append(chunk.choices[0].delta.content)
    assert got == ["one", " two"]
    assert len(upstream.received) == 1  # bytes reached the client: no retry


def test_reset_before_first_chunk_is_retried(proxy: ServerThread, upstream: FakeUpstream) -> None:
    upstream.drop_after = 0
    with pytest.raises(openai.InternalServerError) as info:
        list(
            client_for(proxy).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    assert info.value.status_code == 502
    assert len(upstream.received) == 3  # 1 + max_retries, nothing was streamed yet


def test_client_leaving_a_stream_closes_the_upstream(
    proxy: ServerThread, upstream: FakeUpstream
) -> None:
    upstream.stream_chunks = [f"w{i}" for i in range(100)]
    upstream.stream_interval = 0.1
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", proxy.url + "/v1/chat/completions", json=body, timeout=10) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
    assert wait_for(lambda: "stream-closed" in upstream.events, timeout=3.0)
    assert "stream-done" not in upstream.events
    metrics = httpx.get(proxy.url + "/metrics").text
    assert "ragzip_client_disconnects_total 1.0" in metrics


def test_client_leaving_a_pending_request_cancels_it(
    proxy: ServerThread, upstream: FakeUpstream
) -> None:
    upstream.delay = 10.0
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(proxy.url + "/v1/chat/completions", json=body, timeout=0.5)
    assert wait_for(lambda: "disconnected" in upstream.events, timeout=3.0)


def test_fallback_over_http(
    serve_proxy: Any, upstream_server: ServerThread, upstream: FakeUpstream
) -> None:
    proxy = serve_proxy(upstream_server.url, fallback_to_passthrough=True)
    raw = client_for(proxy).chat.completions.with_raw_response.create(
        model="m",
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"ragzip": {"passages": PASSAGES, "compressor": "test-failing"}},
    )
    assert raw.headers["x-ragzip-fallback"] == "compression-failed"
    assert raw.headers["x-ragzip-tokens-saved"] == "0"
    assert all(p in upstream.last()["json"]["messages"][0]["content"] for p in PASSAGES)


def test_concurrent_requests_share_one_feature_cache(
    serve_proxy: Any, upstream_server: ServerThread, upstream: FakeUpstream
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    proxy = serve_proxy(upstream_server.url, default_compressor="mig")

    def one(_: int) -> Any:
        return client_for(proxy).chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": QUESTION}],
            extra_body={"ragzip": {"passages": PASSAGES, "budget": "2x"}},
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(one, range(16)))
    reports = [r.model_extra["ragzip"] for r in replies]  # type: ignore[index]
    assert len({(r["original_tokens"], r["compressed_tokens"]) for r in reports}) == 1
    metrics = httpx.get(proxy.url + "/metrics").text
    counts = {
        kind: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        for kind in ("hits", "misses")
        if line.startswith(f'ragzip_feature_cache_lookups_total{{result="{kind}"}}')
    }
    # 16 requests need 16 × (question + sentences) vectors; at most the first few compute them
    assert counts["hits"] > counts["misses"] > 0


def _metric(server: ServerThread, line_start: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_replicas_share_vectors_through_redis_and_survive_its_loss(
    serve_proxy: Any, upstream_server: ServerThread, redis_server: Any
) -> None:
    shared = {"default_compressor": "mig", "feature_cache_redis_url": redis_server.url}
    first = serve_proxy(upstream_server.url, **shared)
    second = serve_proxy(upstream_server.url, **shared)

    def ask_with(server: ServerThread, passages: list[str], question: str) -> Any:
        return client_for(server).chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": question}],
            extra_body={"ragzip": {"passages": passages, "budget": "2x"}},
        )

    ask_with(first, PASSAGES, QUESTION)
    assert _metric(second, 'ragzip_feature_cache_lookups_total{result="hits"}') == 0
    ask_with(second, PASSAGES, "When was the Eiffel Tower finished?")
    # the second replica never saw these passages: their vectors came from the first, via Redis
    assert _metric(second, 'ragzip_feature_cache_lookups_total{result="hits"}') >= 9
    redis_server.stop()
    other = [p.replace("Paris", "Lyon") for p in PASSAGES]
    for server in (first, second):
        reply = ask_with(server, other, QUESTION)
        assert reply.choices[0].message.content == f"echo: {QUESTION}"
    assert _metric(first, "ragzip_feature_cache_remote_failures_total") >= 1
    assert f"127.0.0.1:{redis_server.port}" not in httpx.get(first.url + "/metrics").text


def test_a_short_context_is_never_dropped_silently(
    proxy: ServerThread, upstream: FakeUpstream
) -> None:
    """4x of a 20-token passage is less than its layout: the ratio is raised until the passage
    is kept, and says so; a token budget that keeps nothing is refused with the numbers."""
    passage = "Marie Curie was born in Warsaw, in Poland."
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": QUESTION}],
        "ragzip": {"passages": [passage]},
    }
    reply = httpx.post(f"{proxy.url}/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    usage = reply.json()["ragzip"]
    assert usage["kept_passages"] == 1 and usage["budget_raised"] is True
    assert reply.headers["x-ragzip-budget-raised"] == str(usage["budget_tokens"])
    assert "[1] Marie Curie" in str(upstream.last()["json"]["messages"])
    body["ragzip"] = {"passages": [passage], "budget": "3"}
    refused = httpx.post(f"{proxy.url}/v1/chat/completions", json=body, timeout=30)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "invalid_budget" and "keeps nothing of this context" in error["message"]
