"""Auth that is safe by default, no secret in any response, log line or metric, readiness,
compressor specs and clear errors for server-side misconfiguration."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from ragzip.core.errors import ConfigError
from ragzip.server import create_app
from ragzip.server.redact import Redactor, redact_url

from .conftest import proxy_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


KEY = "sk-RAGZIP-canary-key-0123456789abcdef"
TOKEN = "proxy-canary-token-9876543210"
PASSWORD = "canary-url-password-55"
SECRETS = (KEY, TOKEN, PASSWORD)
CHAT = {"model": "m", "messages": [{"role": "user", "content": "Who?"}]}
AUTH = {"authorization": f"Bearer {TOKEN}"}


def echoing_upstream(request: httpx.Request) -> httpx.Response:
    """An upstream that echoes every credential it receives, in every kind of answer."""
    echoed = f"{request.headers.get('authorization')} {request.url}"
    if request.url.path.endswith("/models"):
        return httpx.Response(200, json={"object": "list", "data": [{"id": "m"}], "x": echoed})
    body = json.loads(request.content)
    if body["model"] == "fail":
        return httpx.Response(500, json={"error": {"message": f"rejected {echoed}"}})
    if body["model"] == "bad":
        return httpx.Response(400, json={"error": {"message": f"no {echoed}" + "x" * 50_000}})
    return httpx.Response(
        200,
        json={
            "id": "c",
            "object": "chat.completion",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
        },
    )


@asynccontextmanager
async def proxy(
    counter: Any, handler: Any = echoing_upstream, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    values: dict[str, Any] = {
        "upstream_api_key": KEY,
        "auth_token": TOKEN,
        "max_retries": 0,
        **overrides,
    }
    settings = proxy_settings(f"http://user:{PASSWORD}@upstream.test", **values)
    app = create_app(settings, counter=counter, transport=httpx.MockTransport(handler))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy.test") as client:
            yield client


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked: {text[:300]!r}"


async def test_no_secret_in_any_response_log_or_metric(
    minilm_counter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    async with proxy(minilm_counter) as client:
        answers = [
            await client.get("/healthz"),
            await client.get("/readyz", headers=AUTH),
            await client.get("/v1/models", headers=AUTH),
            await client.post("/v1/chat/completions", json=CHAT, headers=AUTH),
            await client.post("/v1/chat/completions", json={**CHAT, "model": "fail"}, headers=AUTH),
            await client.post("/v1/chat/completions", json={**CHAT, "model": "bad"}, headers=AUTH),
            await client.get("/metrics", headers=AUTH),
            await client.get("/openapi.json", headers=AUTH),
        ]
        for answer in answers:
            seen.append(f"{answer.status_code} {answer.headers} {answer.text}")
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 502, 400, 200, 200]
    assert "***" in answers[0].json()["upstream"]  # the URL is shown, its password is not
    assert len(answers[5].content) <= 16 * 1024  # an upstream error body is capped
    assert answers[5].json()["error"]["message"].startswith("upstream error (truncated)")
    assert_clean("\n".join(seen))
    assert_clean("\n".join(r.getMessage() for r in caplog.records))


async def test_unreachable_upstream_is_reported_without_its_credentials(
    minilm_counter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    caplog.set_level(logging.DEBUG)
    async with proxy(minilm_counter, down) as client:
        chat = await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        ready = await client.get("/readyz", headers=AUTH)
        live = await client.get("/healthz")
    assert chat.status_code == 502 and "cannot connect" in chat.text
    assert ready.status_code == 503 and "unreachable" in ready.json()["reason"]
    assert live.status_code == 200  # liveness does not depend on the upstream
    assert_clean(chat.text + ready.text + live.text)
    assert_clean("\n".join(r.getMessage() for r in caplog.records))


@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/openapi.json", "/docs", "/v1/models"])
async def test_everything_but_liveness_needs_the_token(minilm_counter: Any, path: str) -> None:
    async with proxy(minilm_counter) as client:
        assert (await client.get(path)).status_code == 401
        bad = {"authorization": "Bearer wrong"}
        assert (await client.get(path, headers=bad)).status_code == 401
        assert (await client.get(path, headers=AUTH)).status_code == 200
        assert (await client.get("/healthz")).status_code == 200


def test_operator_key_is_never_served_anonymously(minilm_counter: Any) -> None:
    with pytest.raises(ConfigError, match="refusing to start"):
        create_app(proxy_settings("http://u.test", upstream_api_key=KEY), counter=minilm_counter)
    create_app(
        proxy_settings("http://u.test", upstream_api_key=KEY, allow_anonymous=True),
        counter=minilm_counter,
    )
    create_app(proxy_settings("http://u.test"), counter=minilm_counter)  # no key: nothing to leak


async def test_compressor_specs_as_on_the_command_line(minilm_counter: Any) -> None:
    passages = ["Marie Curie was born in Warsaw. She won two Nobel prizes. " * 3]
    async with proxy(minilm_counter) as client:

        async def ask(compressor: Any) -> httpx.Response:
            extra = {"passages": passages, "compressor": compressor, "budget": "2x"}
            return await client.post(
                "/v1/chat/completions", json={**CHAT, "ragzip": extra}, headers=AUTH
            )

        assert (await ask("random:seed=3;granularity=word")).status_code == 200
        bad = await ask("random:sede=3")
        assert bad.status_code == 400 and "valid keys" in bad.text
        empty = await ask("")
        assert empty.status_code == 400 and "no name" in empty.text


def test_redaction_helpers() -> None:
    assert redact_url("http://user:pw@host:1/v1") == "http://***@host:1/v1"
    assert redact_url("https://host/v1") == "https://host/v1"
    redactor = Redactor(["exact-secret"])
    text = (
        "exact-secret Bearer abc.def-123 key sk-live-0123456789abcdefgh http://a:b@h/x "
        "and plain words"
    )
    out = redactor.mask_text(text, limit=None)
    for gone in ("exact-secret", "abc.def-123", "sk-live-0123456789abcdefgh", "a:b@"):
        assert gone not in out
    assert "plain words" in out
    assert redactor.secrets_only(b"Bearer keepme exact-secret") == b"Bearer keepme ***"
