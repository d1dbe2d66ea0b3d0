"""The LiteLLM hook: its opt-in levels, budgets and fail-open path on LiteLLM's own auth object,
then end to end in a real ``litellm`` proxy process in front of ``ragzip serve-model``."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("litellm.proxy")

from fastapi import HTTPException
from litellm.proxy._types import UserAPIKeyAuth

from ragzip.integrations.common import token_counter
from ragzip.integrations.litellm_hook import RagzipLiteLLMHook
from tests.integrations.conftest import snippets

BIN = Path(sys.executable).parent
QUESTION = "Which library does ragzip use for BM25 retrieval?"
PASSAGES = [
    "ragzip uses the bm25s library for BM25 retrieval. bm25s keeps scores in sparse matrices, "
    "so a query over a large corpus takes milliseconds.",
    "Dense retrieval embeds passages with MiniLM. The vectors live in a FAISS index saved "
    "beside the BM25 index.",
    "The proxy speaks the OpenAI API. It compresses the marked context and forwards the "
    "request to the upstream server.",
    "Budgets are counted in the generator's tokenizer. A ratio budget such as 4x keeps a "
    "quarter of the context tokens.",
]
KEY = "sk-" + secrets.token_hex(16)  # the proxy's master key (os.environ/LITELLM_MASTER_KEY)
TAGGED = "<ragzip:context>\n" + "\n\n".join(PASSAGES) + f"\n</ragzip:context>\n{QUESTION}"


def _run(hook: RagzipLiteLLMHook, data: dict[str, Any], auth: Any = None) -> dict[str, Any]:
    auth = auth or UserAPIKeyAuth()
    return asyncio.run(hook.async_pre_call_hook(auth, None, data, "acompletion"))


def _headers(hook: RagzipLiteLLMHook, data: dict[str, Any]) -> dict[str, str] | None:
    return asyncio.run(hook.async_post_call_response_headers_hook(data, UserAPIKeyAuth(), None))


def _chat(content: str = QUESTION, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], "litellm_call_id": "c1", **extra}


def test_the_ragzip_field_opts_in_and_holds_the_budget() -> None:
    hook = RagzipLiteLLMHook()  # mig at 4x, counted in SmolLM2's tokenizer
    out = _run(hook, _chat(ragzip={"passages": PASSAGES}))
    assert "ragzip" not in out
    block, question = out["messages"]
    assert block["role"] == "system" and block["content"].startswith("Context:\n[1] ")
    assert question == {"role": "user", "content": QUESTION}
    headers = _headers(hook, out)
    assert headers is not None and headers["x-ragzip-compressor"] == "mig"
    sent = token_counter().count(block["content"])
    assert sent == int(headers["x-ragzip-compressed-tokens"])
    assert sent <= -(-int(headers["x-ragzip-original-tokens"]) // 4)
    assert _headers(hook, out) is None  # reported once


def test_tags_follow_the_key_and_team_settings() -> None:
    hook = RagzipLiteLLMHook()
    plain = _run(hook, _chat(TAGGED))  # nobody opted in: tags removed, context kept whole
    text = plain["messages"][0]["content"]
    assert "<ragzip:" not in text and all(p in text for p in PASSAGES)
    assert _headers(hook, plain) is None
    team = UserAPIKeyAuth(team_metadata={"ragzip": True}, metadata={"ragzip": {"budget": "2x"}})
    done = _run(hook, _chat(TAGGED), team)
    headers = _headers(hook, done)
    assert headers is not None
    original, kept = (
        int(headers["x-ragzip-original-tokens"]),
        int(headers["x-ragzip-compressed-tokens"]),
    )
    assert 0 < kept <= original // 2 + 1  # the key's 2x, with the team's opt-in
    assert done["messages"][0]["content"].endswith(QUESTION)
    off = _run(hook, _chat(TAGGED, metadata={"ragzip": False}), team)  # the request wins
    assert all(p in off["messages"][0]["content"] for p in PASSAGES)
    assert _headers(hook, off) is None


def test_malformed_requests_are_refused_with_400() -> None:
    hook = RagzipLiteLLMHook(enabled=True)
    bad = [
        _chat(ragzip={"passages": PASSAGES, "budget": "lots"}),
        _chat(ragzip={"passages": PASSAGES, "compressor": "nope"}),
        _chat("", ragzip={"passages": PASSAGES}),  # no question to compress for
        _chat(ragzip={"passages": PASSAGES, "retrieve": True}),
        _chat(TAGGED, metadata={"ragzip": {"ratio": 3}}),
    ]
    for data in bad:
        with pytest.raises(HTTPException) as err:
            _run(hook, data)
        assert err.value.status_code == 400 and "ragzip" in str(err.value.detail)


def test_a_failing_compressor_fails_open_without_logging_content(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    hook = RagzipLiteLLMHook(tokenizer=str(tmp_path / "no-tokenizer"), enabled=True)
    with caplog.at_level(logging.WARNING, logger="ragzip.litellm"):
        out = _run(hook, _chat(ragzip={"passages": PASSAGES}))
    assert hook.failures == 1
    assert all(p in out["messages"][0]["content"] for p in PASSAGES)  # sent whole
    assert _headers(hook, out) == {
        "x-ragzip-compressor": "mig",
        "x-ragzip-fallback": "compression-failed",
    }
    assert "forwarding uncompressed" in caplog.text
    assert not any(p[:20] in caplog.text for p in PASSAGES) and QUESTION not in caplog.text


# ------------------------------------------------------------------- a real LiteLLM proxy


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(args: list[str], url: str, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MASTER_KEY": KEY}
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(log.read_text()[-3000:])
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"{args[0]} did not start: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def litellm_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``litellm --config`` with ragzip's hook, in front of a SIMULATED ``ragzip serve-model``."""
    folder = tmp_path_factory.mktemp("litellm")
    model_port, proxy_port = _port(), _port()
    (config,) = snippets("litellm", "yaml")  # the documented config, upstream on a free port
    (folder / "config.yaml").write_text(
        config.replace("http://localhost:8000/v1", f"http://127.0.0.1:{model_port}/v1")
    )
    model = [str(BIN / "ragzip"), "serve-model", "--simulate", "8b-a100", "--name", "smollm2"]
    procs = [
        _start(
            [*model, "--port", str(model_port)],
            f"http://127.0.0.1:{model_port}/v1/models",
            folder,
            folder / "model.log",
        )
    ]
    try:
        procs.append(
            _start(
                [
                    str(BIN / "litellm"),
                    *("--config", "config.yaml", "--host", "127.0.0.1"),
                    "--port",
                    str(proxy_port),
                ],
                f"http://127.0.0.1:{proxy_port}/health/liveliness",
                folder,
                folder / "litellm.log",
            )
        )
        yield f"http://127.0.0.1:{proxy_port}/v1"
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_a_real_litellm_proxy_compresses_and_reports(litellm_proxy: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=litellm_proxy, api_key=KEY, max_retries=0)
    messages = [{"role": "user", "content": QUESTION}]

    def ask(**extra: Any) -> tuple[dict[str, str], int]:
        raw = client.chat.completions.with_raw_response.create(
            model="smollm2",
            messages=messages,
            extra_body=extra,  # type: ignore[arg-type]
        )
        headers = {k: v for k, v in raw.headers.items() if k.startswith("x-ragzip-")}
        usage = raw.parse().usage
        assert usage is not None
        return headers, usage.prompt_tokens

    squeezed, short = ask(ragzip={"passages": PASSAGES, "budget": "4x"})
    assert squeezed["x-ragzip-compressor"] == "mig"
    assert (
        int(squeezed["x-ragzip-compressed-tokens"])
        <= int(squeezed["x-ragzip-original-tokens"]) // 4 + 1
    )
    whole, long = ask(ragzip={"passages": PASSAGES}, metadata={"ragzip": False})
    assert whole == {}
    saved = int(squeezed["x-ragzip-tokens-saved"])
    assert long - short == saved  # the upstream model read exactly that many fewer tokens
    tagged = [{"role": "user", "content": TAGGED}]
    raw = client.chat.completions.with_raw_response.create(model="smollm2", messages=tagged)
    assert "x-ragzip-compressor" not in raw.headers  # tags alone do not opt in by default
    with pytest.raises(Exception, match="budget"):
        ask(ragzip={"passages": PASSAGES, "budget": "lots"})


def test_the_documented_client_and_hook_file_run(
    litellm_proxy: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LITELLM_API_KEY", KEY)
    client, hook_file = snippets("litellm")
    exec(client.replace("http://localhost:4000/v1", litellm_proxy), {})
    saved, _ = capsys.readouterr().out.split(" ", 1)
    assert int(saved) > 0
    namespace: dict[str, Any] = {}
    exec(hook_file, namespace)
    handler = namespace["handler"]
    assert (handler.compressor, handler.enabled) == ("sentence", True)
