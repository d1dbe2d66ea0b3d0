"""OpenAIGenerator against a real HTTP server on loopback (see conftest.py)."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time

import httpx
import pytest
import torch

from ragzip.core.errors import ConfigError, InputError, UpstreamError
from ragzip.generators import ChatMessage, OpenAIGenerator, iter_sse_data
from ragzip.generators.prompt_embeds import encode_prompt_embeds

MODEL = "fake-model"
QUESTION = [
    {"role": "system", "content": "Answer from the context."},
    {"role": "user", "content": "what is the capital of Zorbania"},
]
ECHO = "echo: what is the capital of Zorbania"


def make(server, **kwargs) -> OpenAIGenerator:  # type: ignore[no-untyped-def]
    kwargs.setdefault("retry_backoff_s", 0.01)
    kwargs.setdefault("timeout", 5.0)
    return OpenAIGenerator(server.url, MODEL, **kwargs)


# --- the happy path --------------------------------------------------------------------------


def test_streamed_chat_returns_text_usage_and_timings(fake_server, minilm_counter) -> None:
    with make(fake_server, api_key="sk-test", counter=minilm_counter) as gen:
        out = gen.generate(QUESTION, max_new_tokens=32)
    assert out.text == ECHO
    assert out.finish_reason == "stop"
    assert out.prompt_tokens == 4 + 6  # words of both messages, as the server counts
    assert out.completion_tokens == len(ECHO.split())
    assert 0 < out.ttft_s <= out.total_s
    (request,) = fake_server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-test"
    body = request["body"]
    assert body["stream"] is True
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == 32
    assert body["model"] == MODEL
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == QUESTION


def test_chat_message_objects_and_v1_suffix_are_accepted(fake_server, minilm_counter) -> None:
    gen = OpenAIGenerator(fake_server.url + "/v1/", MODEL, counter=minilm_counter)
    assert gen.base_url == fake_server.url
    out = gen.generate([ChatMessage("user", "hello there")])
    assert out.text == "echo: hello there"
    gen.close()


def test_max_new_tokens_gives_length_finish(fake_server, minilm_counter) -> None:
    out = make(fake_server, counter=minilm_counter).generate(QUESTION, max_new_tokens=2)
    assert out.text == "echo: what "
    assert out.completion_tokens == 2
    assert out.finish_reason == "length"


def test_ttft_is_time_to_first_text_chunk(fake_server, minilm_counter) -> None:
    fake_server.behaviour.first_chunk_delay_s = 0.3
    fake_server.behaviour.chunk_delay_s = 0.1
    out = make(fake_server, counter=minilm_counter).generate(QUESTION)
    n = out.completion_tokens
    assert out.ttft_s >= 0.3  # the role-only first chunk carries no text and does not count
    # the server sends the first text chunk after 0.3 s, then one every 0.1 s (a busy client may
    # read the first one late, so the gap it sees after it can be shorter)
    assert out.total_s >= 0.3 + 0.1 * (n - 1)
    assert out.ttft_s < out.total_s
    assert out.decode_tokens_per_s > 0


def test_sse_comments_fields_and_multiline_data_are_parsed(fake_server, minilm_counter) -> None:
    fake_server.behaviour.sse_noise = True
    out = make(fake_server, counter=minilm_counter).generate(QUESTION)
    assert out.text == ECHO
    assert out.finish_reason == "stop"


def test_plain_json_answer_to_a_stream_request(fake_server, minilm_counter) -> None:
    fake_server.behaviour.ignore_stream = True
    out = make(fake_server, counter=minilm_counter).generate(QUESTION)
    assert out.text == ECHO
    assert out.completion_tokens == len(ECHO.split())
    assert 0 < out.ttft_s <= out.total_s < out.ttft_s + 0.5  # one body: first text = all text


def test_without_usage_tokens_are_counted_with_the_counter(fake_server, minilm_counter) -> None:
    fake_server.behaviour.send_usage = False
    gen = make(fake_server, counter=minilm_counter)
    out = gen.generate(QUESTION)
    assert out.text == ECHO
    assert out.completion_tokens == minilm_counter.count(ECHO)
    # MiniLM has no chat template: the prompt count is the sum over message contents.
    assert out.prompt_tokens == gen.count_prompt_tokens(QUESTION)
    assert out.prompt_tokens == sum(minilm_counter.count(m["content"]) for m in QUESTION)


def test_include_usage_off_drops_stream_options(fake_server, minilm_counter) -> None:
    make(fake_server, counter=minilm_counter, include_usage=False).generate(QUESTION)
    assert "stream_options" not in fake_server.requests[0]["body"]


def test_list_models(fake_server) -> None:
    assert make(fake_server).list_models() == [MODEL]
    assert fake_server.paths() == ["/v1/models"]


def test_agenerate_runs_concurrently(fake_server, minilm_counter) -> None:
    fake_server.behaviour.first_chunk_delay_s = 0.5
    gen = make(fake_server, counter=minilm_counter)

    async def main() -> list[str]:
        outs = await asyncio.gather(
            *(gen.agenerate([{"role": "user", "content": f"q{i}"}]) for i in range(4))
        )
        return [o.text for o in outs]

    t0 = time.perf_counter()
    texts = asyncio.run(main())
    elapsed = time.perf_counter() - t0
    assert sorted(texts) == [f"echo: q{i}" for i in range(4)]
    assert elapsed < 4 * 0.5  # overlapped, not one after another


def test_injected_client_is_used_and_not_closed(fake_server, minilm_counter) -> None:
    client = httpx.Client()
    gen = make(fake_server, counter=minilm_counter, client=client)
    assert gen.generate(QUESTION).text == ECHO
    gen.close()
    assert not client.is_closed
    client.close()


def test_tokenizer_path_builds_a_counter(fake_server) -> None:
    from ragzip.weights import minilm_dir

    gen = make(fake_server, tokenizer_path=minilm_dir())
    assert gen.counter.name == MODEL
    assert gen.counter.count("hello world") == 2


# --- retries and errors ----------------------------------------------------------------------


def test_500_is_retried_until_success(fake_server, minilm_counter) -> None:
    fake_server.behaviour.fail_status = 500
    fake_server.behaviour.fail_times = 2
    out = make(fake_server, counter=minilm_counter, max_retries=2).generate(QUESTION)
    assert out.text == ECHO
    assert len(fake_server.requests) == 3


def test_503_exhausts_retries_with_status(fake_server, minilm_counter) -> None:
    fake_server.behaviour.fail_status = 503
    fake_server.behaviour.fail_times = 10
    with pytest.raises(UpstreamError) as info:
        make(fake_server, counter=minilm_counter, max_retries=2).generate(QUESTION)
    assert info.value.status_code == 503
    assert "simulated failure" in str(info.value)
    assert "3 attempts" in str(info.value)
    assert len(fake_server.requests) == 3


def test_max_retries_zero_fails_at_once(fake_server, minilm_counter) -> None:
    fake_server.behaviour.fail_status = 500
    fake_server.behaviour.fail_times = 1
    with pytest.raises(UpstreamError):
        make(fake_server, counter=minilm_counter, max_retries=0).generate(QUESTION)
    assert len(fake_server.requests) == 1


def test_429_honours_retry_after(fake_server, minilm_counter) -> None:
    fake_server.behaviour.fail_status = 429
    fake_server.behaviour.fail_times = 1
    fake_server.behaviour.retry_after = "0.4"
    t0 = time.perf_counter()
    out = make(fake_server, counter=minilm_counter, retry_backoff_s=0.0).generate(QUESTION)
    assert time.perf_counter() - t0 >= 0.4
    assert out.text == ECHO
    assert len(fake_server.requests) == 2


def test_4xx_is_not_retried(fake_server, minilm_counter) -> None:
    gen = OpenAIGenerator(fake_server.url, "no-such-model", counter=minilm_counter)
    with pytest.raises(UpstreamError) as info:
        gen.generate(QUESTION)
    assert info.value.status_code == 404
    assert "does not exist" in str(info.value)
    assert len(fake_server.requests) == 1


def test_hang_past_timeout_is_retried_then_fails(fake_server, minilm_counter) -> None:
    fake_server.behaviour.hang_s = 2.0
    fake_server.behaviour.hang_times = 10
    gen = make(fake_server, counter=minilm_counter, timeout=0.3, max_retries=1)
    t0 = time.perf_counter()
    with pytest.raises(UpstreamError) as info:
        gen.generate(QUESTION)
    assert time.perf_counter() - t0 < 2.0  # gave up on each attempt at the timeout
    assert info.value.status_code is None
    assert "no response within 0.3 s" in str(info.value)
    assert len(fake_server.requests) == 2


def test_one_hang_then_recovery(fake_server, minilm_counter) -> None:
    fake_server.behaviour.hang_s = 1.0
    fake_server.behaviour.hang_times = 1
    out = make(fake_server, counter=minilm_counter, timeout=0.3).generate(QUESTION)
    assert out.text == ECHO
    assert len(fake_server.requests) == 2


def test_connection_refused(free_port, minilm_counter) -> None:
    gen = OpenAIGenerator(
        f"http://127.0.0.1:{free_port}", MODEL, counter=minilm_counter, retry_backoff_s=0.01
    )
    with pytest.raises(UpstreamError) as info:
        gen.generate(QUESTION)
    assert info.value.status_code is None
    assert "cannot reach" in str(info.value)
    assert "3 attempts" in str(info.value)


def test_connection_dropped_mid_stream_is_not_retried(fake_server, minilm_counter) -> None:
    fake_server.behaviour.close_after_chunks = 2
    with pytest.raises(UpstreamError) as info:
        make(fake_server, counter=minilm_counter).generate(QUESTION)
    assert "mid-stream after 2 chunk(s)" in str(info.value)
    assert len(fake_server.requests) == 1


def test_stream_stalling_after_text_is_not_retried(fake_server, minilm_counter) -> None:
    fake_server.behaviour.chunk_delay_s = 1.0
    with pytest.raises(UpstreamError) as info:
        make(fake_server, counter=minilm_counter, timeout=0.3).generate(QUESTION)
    assert "stalled" in str(info.value)
    assert len(fake_server.requests) == 1


def test_stream_ending_early_is_an_error(fake_server, minilm_counter) -> None:
    fake_server.behaviour.end_after_chunks = 2
    with pytest.raises(UpstreamError, match="ended before"):
        make(fake_server, counter=minilm_counter).generate(QUESTION)


def test_error_event_mid_stream(fake_server, minilm_counter) -> None:
    fake_server.behaviour.error_event_after = 1
    with pytest.raises(UpstreamError, match="model crashed") as info:
        make(fake_server, counter=minilm_counter).generate(QUESTION)
    assert info.value.status_code == 500


def test_api_key_never_in_errors_logs_or_repr(fake_server, minilm_counter, caplog) -> None:
    secret = "sk-very-secret-123"
    fake_server.behaviour.required_key = "the-right-key"
    gen = make(fake_server, counter=minilm_counter, api_key=secret)
    assert secret not in repr(gen)
    with pytest.raises(UpstreamError) as info:
        gen.generate(QUESTION)
    assert info.value.status_code == 401
    assert "authentication failed" in str(info.value)
    assert "Incorrect API key provided: ***" in str(info.value)  # the server echoed it
    assert secret not in str(info.value)

    fake_server.reset()
    fake_server.behaviour.fail_status = 500
    fake_server.behaviour.fail_times = 10
    fake_server.behaviour.echo_key_in_error = True
    with caplog.at_level(logging.DEBUG), pytest.raises(UpstreamError) as info:
        gen.generate(QUESTION)
    assert len(fake_server.requests) == 3
    assert "simulated failure for Bearer ***" in str(info.value)
    assert secret not in str(info.value)
    assert caplog.records  # the retries were logged ...
    assert secret not in caplog.text  # ... without the key


# --- input validation (nothing reaches the server) -------------------------------------------


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "robot", "content": "hi"}],
        [{"role": "user"}],
        [{"role": "user", "content": 3}],
        [{"role": "user", "content": "   "}],
        "just a string",
        [42],
    ],
)
def test_bad_messages_raise_input_error(fake_server, minilm_counter, messages) -> None:
    with pytest.raises(InputError):
        make(fake_server, counter=minilm_counter).generate(messages)
    assert fake_server.requests == []


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_bad_max_new_tokens(fake_server, minilm_counter, n) -> None:
    with pytest.raises(ConfigError):
        make(fake_server, counter=minilm_counter).generate(QUESTION, max_new_tokens=n)
    assert fake_server.requests == []


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("ftp://host", MODEL), {}),
        (("127.0.0.1:8000", MODEL), {}),
        (("http://127.0.0.1:8000", ""), {}),
        (("http://127.0.0.1:8000", MODEL), {"timeout": 0}),
        (("http://127.0.0.1:8000", MODEL), {"max_retries": -1}),
        (("http://127.0.0.1:8000", MODEL), {"retry_backoff_s": -1}),
        (("http://127.0.0.1:8000", MODEL), {"tokenizer_path": "x", "counter": object()}),
    ],
)
def test_bad_configuration(args, kwargs) -> None:
    with pytest.raises(ConfigError):
        OpenAIGenerator(*args, **kwargs)


# --- prompt embeddings over /v1/completions --------------------------------------------------


def test_complete_embeds_sends_the_tensor_vllm_style(fake_server, minilm_counter) -> None:
    embeds = torch.randn(7, 576, generator=torch.Generator().manual_seed(0))
    out = make(fake_server, counter=minilm_counter).complete_embeds(embeds, max_new_tokens=8)
    assert torch.equal(fake_server.last_embeds, embeds)
    assert out.text == f"rows=7 sum={float(embeds.sum()):.4f}"
    assert out.prompt_tokens == 7
    assert out.finish_reason == "stop"
    (request,) = fake_server.requests
    assert request["path"] == "/v1/completions"
    assert "prompt" not in request["body"]
    assert request["body"]["stream"] is True


def test_complete_embeds_batch_of_one_bf16_and_float64(fake_server, minilm_counter) -> None:
    gen = make(fake_server, counter=minilm_counter)
    base = torch.randn(1, 3, 576, generator=torch.Generator().manual_seed(1))
    gen.complete_embeds(base.to(torch.bfloat16))
    assert fake_server.last_embeds.dtype == torch.bfloat16
    assert fake_server.last_embeds.shape == (3, 576)
    gen.complete_embeds(base.double().numpy())
    assert fake_server.last_embeds.dtype == torch.float32
    assert torch.equal(fake_server.last_embeds, base[0])


def test_complete_embeds_sends_only_the_view_not_its_storage(fake_server, minilm_counter) -> None:
    big = torch.randn(4000, 576)
    make(fake_server, counter=minilm_counter).complete_embeds(big[10:12])
    assert torch.equal(fake_server.last_embeds, big[10:12])
    assert fake_server.requests[0]["size"] < 20_000  # 2 rows, not 4000


def test_complete_embeds_server_rejection_is_not_retried(fake_server, minilm_counter) -> None:
    fake_server.behaviour.hidden = 2048
    with pytest.raises(UpstreamError) as info:
        make(fake_server, counter=minilm_counter).complete_embeds(torch.zeros(2, 576))
    assert info.value.status_code == 400
    assert "(seq, 2048)" in str(info.value)
    assert len(fake_server.requests) == 1


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(576),
        torch.zeros(0, 576),
        torch.zeros(2, 2, 576),
        torch.ones(2, 576, dtype=torch.long),
        torch.full((2, 576), float("nan")),
        "not a tensor",
    ],
)
def test_complete_embeds_rejects_bad_tensors(fake_server, bad) -> None:
    with pytest.raises(InputError):
        make(fake_server).complete_embeds(bad)
    assert fake_server.requests == []


def test_encode_prompt_embeds_round_trips() -> None:
    x = torch.randn(5, 8)
    encoded, rows = encode_prompt_embeds(x)
    assert rows == 5
    back = torch.load(io.BytesIO(base64.b64decode(encoded)), weights_only=True)
    assert torch.equal(back, x)


# --- the SSE parser on its own ---------------------------------------------------------------


def test_iter_sse_data_follows_the_event_stream_rules() -> None:
    lines = [
        ": comment",
        "event: message",
        "data: one",
        "",
        "data:two",  # no space after the colon
        "data:  three",  # only one space is dropped
        "id: 7",
        "",
        "",
        "retry: 100",
        "data",  # a data field with an empty value: an event with empty data is not dispatched
        "",
        "data",
        "data",  # two empty data lines make one newline
        "",
        "data: [DONE]",  # the last event needs no blank line
    ]
    assert list(iter_sse_data(lines)) == ["one", "two\n three", "\n", "[DONE]"]
