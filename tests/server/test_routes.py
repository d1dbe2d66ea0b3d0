"""Routes in process: the proxy app and the fake upstream joined by ``httpx.ASGITransport``."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ragzip.server import create_app

from .conftest import FakeUpstream, build_fake_upstream, proxy_settings

pytestmark = pytest.mark.anyio

PASSAGES = [
    {
        "text": "Marie Curie won two Nobel prizes. She was born in Warsaw. She moved to Paris.",
        "title": "Curie",
    },
    "The Eiffel Tower is in Paris. It was finished in 1889. It is made of iron.",
    "Warsaw is the capital of Poland. It lies on the Vistula. It was rebuilt after 1945.",
]
CHAT = {
    "model": "fake-model",
    "messages": [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Where was Marie Curie born?"},
    ],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.asynccontextmanager
async def open_proxy(
    counter: Any, fake: FakeUpstream, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    upstream = httpx.ASGITransport(app=build_fake_upstream(fake))
    app = create_app(
        proxy_settings("http://upstream.test", **overrides), counter=counter, transport=upstream
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy.test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture
async def client(minilm_counter: Any) -> AsyncIterator[httpx.AsyncClient]:
    fake = FakeUpstream()
    async with open_proxy(minilm_counter, fake) as c:
        c.fake = fake  # type: ignore[attr-defined]
        yield c


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["message"]
    return error


async def test_healthz_and_metrics(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["default_compressor"] == "truncate"
    await client.post("/v1/chat/completions", json={**CHAT, "ragzip": {"passages": PASSAGES}})
    text = (await client.get("/metrics")).text
    assert 'ragzip_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1.0' in (
        text
    )
    assert 'ragzip_stage_duration_seconds_count{stage="compress"} 1.0' in text
    assert 'ragzip_context_tokens_total{kind="original"}' in text
    await client.get("/readyz")
    await client.get("/openapi.json")
    text = (await client.get("/metrics")).text
    for route in ("/readyz", "/openapi.json", "/metrics"):  # each route its own label
        assert f'route="{route}"' in text
    assert 'route="other"' not in text


async def test_unknown_route_and_method_in_openai_shape(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/nope"), 404, "not_found")
    assert_error(await client.get("/v1/chat/completions"), 405, "method_not_allowed")


async def test_validation_errors_are_400(client: httpx.AsyncClient) -> None:
    error = assert_error(
        await client.post("/v1/chat/completions", json={"model": "m"}), 400, "invalid_value"
    )
    assert error["param"] == "messages" and error["type"] == "invalid_request_error"
    bad_json = await client.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(bad_json, 400, "invalid_value")
    bad_budget = await client.post(
        "/v1/chat/completions", json={**CHAT, "ragzip": {"passages": ["x"], "budget": "lots"}}
    )
    assert assert_error(bad_budget, 400, "invalid_value")["param"] == "ragzip.budget"
    typo = await client.post("/v1/chat/completions", json={**CHAT, "ragzip": {"pasages": ["x"]}})
    assert "pasages" in assert_error(typo, 400, "invalid_value")["message"]
    assert client.fake.received == []  # type: ignore[attr-defined]


async def test_ragzip_field_compressed_and_removed_unknown_fields_untouched(
    client: httpx.AsyncClient, minilm_counter: Any
) -> None:
    extra = {
        "temperature": 0.25,
        "top_k": 7,
        "guided_json": {"type": "object", "x": [1, None]},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    body = {**CHAT, **extra, "ragzip": {"passages": PASSAGES, "budget": "40"}}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    sent = client.fake.last()["json"]  # type: ignore[attr-defined]
    assert "ragzip" not in sent
    for key, value in extra.items():
        assert sent[key] == value
    assert sent["messages"][0] == CHAT["messages"][0]
    assert sent["messages"][-1] == CHAT["messages"][1]
    assert sent["messages"][1]["role"] == "system"
    assert sent["messages"][1]["content"].startswith("Context:\n[1] Curie\nMarie Curie won")
    report = response.json()["ragzip"]
    # the budget counts the block exactly as it was forwarded, header and numbers included
    assert minilm_counter.count(sent["messages"][1]["content"]) == report["compressed_tokens"]
    assert report["compressor"] == "truncate" and report["budget_tokens"] == 40
    assert 0 < report["compressed_tokens"] <= 40 < report["original_tokens"]
    assert report["saved_tokens"] == report["original_tokens"] - report["compressed_tokens"]
    assert response.headers["x-ragzip-tokens-saved"] == str(report["saved_tokens"])
    assert response.headers["x-ragzip-original-tokens"] == str(report["original_tokens"])
    assert response.headers["x-ragzip-compressed-tokens"] == str(report["compressed_tokens"])
    assert (
        response.json()["choices"][0]["message"]["content"] == "echo: Where was Marie Curie born?"
    )


async def test_without_context_the_body_is_forwarded_as_is(client: httpx.AsyncClient) -> None:
    raw = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"seed":1.50,"n":1}'
    response = await client.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert "x-ragzip-tokens-saved" not in response.headers and "ragzip" not in response.json()
    assert client.fake.last()["json"] == json.loads(raw)  # type: ignore[attr-defined]


async def test_tags_without_a_question_need_a_query(client: httpx.AsyncClient) -> None:
    tagged = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "<ragzip:context>A a. B b.\n\nC c.</ragzip:context>"}
        ],
    }
    error = assert_error(
        await client.post("/v1/chat/completions", json=tagged), 400, "invalid_input"
    )
    assert "ragzip.query" in error["message"]
    with_query = {**tagged, "ragzip": {"query": "what about C?", "budget": "2x"}}
    response = await client.post("/v1/chat/completions", json=with_query)
    assert response.status_code == 200
    assert response.json()["ragzip"]["passages"] == 2


async def test_compressor_errors(minilm_counter: Any) -> None:
    fake = FakeUpstream()
    async with open_proxy(minilm_counter, fake, compressors=["truncate", "test-failing"]) as c:
        body = {**CHAT, "ragzip": {"passages": PASSAGES, "compressor": "nope"}}
        assert_error(await c.post("/v1/chat/completions", json=body), 400, "unknown_compressor")
        body["ragzip"]["compressor"] = "identity"  # registered, but not enabled here
        assert_error(await c.post("/v1/chat/completions", json=body), 400, "compressor_not_allowed")
        body["ragzip"]["compressor"] = "test-failing"
        error = assert_error(
            await c.post("/v1/chat/completions", json=body), 500, "compression_failed"
        )
        assert "scoring model crashed" in error["message"]
    assert fake.received == []


async def test_fallback_to_passthrough(minilm_counter: Any) -> None:
    fake = FakeUpstream()
    async with open_proxy(minilm_counter, fake, fallback_to_passthrough=True) as c:
        body = {**CHAT, "ragzip": {"passages": PASSAGES, "compressor": "test-failing"}}
        response = await c.post("/v1/chat/completions", json=body)
        assert response.status_code == 200
        assert response.headers["x-ragzip-fallback"] == "compression-failed"
        report = response.json()["ragzip"]
        assert report["fallback"] and report["saved_tokens"] == 0
        assert report["original_tokens"] == report["compressed_tokens"] > 0
        context = fake.last()["json"]["messages"][1]["content"]
        assert PASSAGES[1] in context and PASSAGES[2] in context
        assert "ragzip_compression_fallbacks_total 1.0" in (await c.get("/metrics")).text
        # A bad request is still a bad request, fallback or not.
        body["ragzip"]["compressor"] = "nope"
        assert_error(await c.post("/v1/chat/completions", json=body), 400, "unknown_compressor")


async def test_compression_timeout(minilm_counter: Any) -> None:
    fake = FakeUpstream()
    async with open_proxy(minilm_counter, fake, compression_timeout=0.2) as c:
        body = {**CHAT, "ragzip": {"passages": PASSAGES, "compressor": "test-stuck"}}
        start = time.monotonic()
        error = assert_error(
            await c.post("/v1/chat/completions", json=body), 500, "compression_failed"
        )
        assert "longer than 0.2 s" in error["message"] and time.monotonic() - start < 1.0
    assert fake.received == []
    async with open_proxy(
        minilm_counter, fake, compression_timeout=0.2, fallback_to_passthrough=True
    ) as c:
        response = await c.post("/v1/chat/completions", json=body)
        assert response.status_code == 200 and response.json()["ragzip"]["fallback"]
    assert len(fake.received) == 1


async def test_auth_token(minilm_counter: Any) -> None:
    fake = FakeUpstream()
    async with open_proxy(minilm_counter, fake, auth_token="proxy-token") as c:
        missing = await c.post("/v1/chat/completions", json=CHAT)
        assert_error(missing, 401, "invalid_api_key")
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await c.get("/v1/models", headers={"authorization": "Bearer nope"})
        assert_error(wrong, 401, "invalid_api_key")
        assert (await c.get("/healthz")).status_code == 200
        ok = await c.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer proxy-token"}
        )
        assert ok.status_code == 200
    assert len(fake.received) == 1
    assert "authorization" not in fake.received[0]["headers"]  # the proxy's token stays here


async def test_upstream_key_sent_but_never_echoed(minilm_counter: Any) -> None:
    fake = FakeUpstream()
    async with open_proxy(
        minilm_counter, fake, upstream_api_key="sk-secret-123", allow_anonymous=True
    ) as c:
        ok = await c.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer client-key"}
        )
        assert ok.status_code == 200
        assert fake.last()["headers"]["authorization"] == "Bearer sk-secret-123"
        echoed = await c.post("/v1/chat/completions", json={**CHAT, "model": "show-my-key"})
        assert echoed.status_code == 401  # the upstream's own 4xx passes through
        assert "sk-secret-123" not in echoed.text and "***" in echoed.text


async def test_client_authorization_forwarded_when_proxy_has_no_keys(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/v1/models", headers={"authorization": "Bearer users-own-key"})
    response = await client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer users-own-key"}
    )
    assert response.status_code == 200
    assert client.fake.last()["headers"]["authorization"] == "Bearer users-own-key"  # type: ignore[attr-defined]


async def test_request_size_limit(minilm_counter: Any) -> None:
    fake = FakeUpstream()
    async with open_proxy(minilm_counter, fake, max_request_bytes=2048) as c:
        big = {**CHAT, "ragzip": {"passages": ["word " * 1000]}}
        assert_error(await c.post("/v1/chat/completions", json=big), 413, "request_too_large")

        async def chunked() -> AsyncIterator[bytes]:
            yield b'{"model": "m", "messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}]}'

        response = await c.post(
            "/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"}
        )
        assert_error(response, 413, "request_too_large")
        assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert len(fake.received) == 1


async def test_upstream_4xx_passes_through_without_retry(client: httpx.AsyncClient) -> None:
    client.fake.fail_with.append(404)  # type: ignore[attr-defined]
    response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "fake failure 404"
    assert len(client.fake.received) == 1  # type: ignore[attr-defined]


async def test_models_passthrough(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models")
    assert response.status_code == 200
    assert response.json()["data"][0]["id"] == "fake-model"


async def test_compress_endpoint(client: httpx.AsyncClient, minilm_counter: Any) -> None:
    first_text = PASSAGES[0]["text"]  # type: ignore[index]
    budget = minilm_counter.count(first_text) + 2  # the first passage fits, the second not
    response = await client.post(
        "/v1/compress",
        json={
            "query": "Where was Curie born?",
            "passages": PASSAGES,
            "budget": budget,
            "compressor": "identity",
        },
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["compressor"] == "identity" and data["budget_tokens"] == budget
    assert data["compressed_tokens"] == budget - 2 and data["saved_tokens"] > 0
    assert [p["dropped"] for p in data["passages"]] == [False, True, True]
    first = data["passages"][0]
    assert first["title"] == "Curie" and first["spans"] == [[0, len(first_text)]]
    assert data["context"] == first["text"] == first_text
    assert first["relevance"] is None  # identity scores no passage
    assert client.fake.received == []  # type: ignore[attr-defined]
    ranked = await client.post(
        "/v1/compress",
        json={
            "query": "Where was Curie born?",
            "passages": PASSAGES,
            "budget": "4x",
            "compressor": "mig",
        },
    )
    assert ranked.status_code == 200, ranked.text
    scores = [p["relevance"] for p in ranked.json()["passages"]]
    assert all(isinstance(s, float) for s in scores)  # mig's pass scores every passage
    head = await client.post(
        "/v1/compress", json={"query": "q?", "passages": PASSAGES, "budget": "3x"}
    )
    kept = head.json()["passages"]
    assert head.json()["compressor"] == "truncate"  # the server default
    assert kept[1]["text"] and PASSAGES[1].startswith(kept[1]["text"])  # truncate keeps heads
    empty = await client.post("/v1/compress", json={"query": " ", "passages": ["a"]})
    assert_error(empty, 400, "invalid_input")
    no_passages = await client.post("/v1/compress", json={"query": "q", "passages": []})
    assert no_passages.json()["original_tokens"] == 0
