"""The SIMULATED generator: its first token waits a + b·prompt tokens, over real HTTP too."""

from __future__ import annotations

import pytest

from ragzip.errors import ConfigError, InputError
from ragzip.generators.openai_compat import OpenAIGenerator
from ragzip.generators.simulated import (
    ANSWER,
    PRESETS,
    PrefillModel,
    SimulatedGenerator,
    preset,
)
from ragzip.models import smollm2_counter
from ragzip.server.model_app import create_model_app
from tests.server.conftest import ServerThread

TIMING = PrefillModel("simulated-test", overhead_s=0.02, per_token_s=0.0005, decode_s=0.001)
MESSAGES = [{"role": "user", "content": "Which river flows through Paris?"}]


def test_first_token_waits_for_the_simulated_prefill_of_every_prompt_token() -> None:
    waits: list[float] = []
    gen = SimulatedGenerator(TIMING, sleep=waits.append)
    for words in (1, 400):
        waits.clear()
        ids = gen.prompt_ids([{"role": "user", "content": "word " * words}])
        tokens = list(gen.stream_ids(ids, max_new_tokens=64))
        assert waits[0] == pytest.approx(0.02 + 0.0005 * len(ids))
        assert waits[1:] == [0.001] * (len(tokens) - 1)
        assert "".join(t.text for t in tokens) == ANSWER
        assert tokens[-1].finish_reason == "stop"
    cut = list(gen.stream_ids(ids, max_new_tokens=2))
    assert len(cut) == 2 and cut[-1].finish_reason == "length"


def test_bad_settings_and_prompts_are_refused() -> None:
    with pytest.raises(ConfigError, match="simulated-"):
        PrefillModel("gpt-9", overhead_s=0.0, per_token_s=0.0, decode_s=0.0)
    with pytest.raises(ConfigError, match="per_token_s"):
        PrefillModel("simulated-x", overhead_s=0.0, per_token_s=-1.0, decode_s=0.0)
    with pytest.raises(ConfigError, match="8b-a100"):
        preset("gpt-9")
    gen = SimulatedGenerator(TIMING, sleep=lambda _s: None)
    with pytest.raises(InputError, match="no tokens"):
        gen.stream_ids([], max_new_tokens=4)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        gen.stream_ids([1], max_new_tokens=0)


def test_presets_are_labelled_simulated_and_ordered_by_speed() -> None:
    assert all(p.name.startswith("simulated-") and p.source for p in PRESETS.values())
    rates = [PRESETS[k].per_token_s for k in ("8b-a100", "70b-a100", "smollm2-cpu")]
    assert rates == sorted(rates)


def test_served_over_http_its_time_to_first_token_follows_the_prompt() -> None:
    counter = smollm2_counter()
    gen = SimulatedGenerator(TIMING)
    with (
        ServerThread(create_model_app(gen)) as server,
        OpenAIGenerator(server.url, TIMING.name, counter=counter) as remote,
    ):
        short = remote.generate(MESSAGES, max_new_tokens=16)
        long = remote.generate(
            [{"role": "user", "content": "word " * 800 + "?"}], max_new_tokens=16
        )
    assert short.text == long.text == ANSWER
    # the sleep is a lower bound of what the client waits for its first token
    assert short.ttft_s >= TIMING.ttft_s(short.prompt_tokens)
    assert long.ttft_s >= TIMING.ttft_s(long.prompt_tokens)
    assert long.prompt_tokens > short.prompt_tokens + 700


def test_a_prompt_beyond_the_context_window_is_answered_400_over_http() -> None:
    import dataclasses

    import httpx

    with pytest.raises(ConfigError, match="context_window"):
        dataclasses.replace(TIMING, context_window=1)
    small = dataclasses.replace(TIMING, context_window=64)
    gen = SimulatedGenerator(small, sleep=lambda _s: None)
    with pytest.raises(InputError, match="reads at most 64"):
        gen.stream_ids(list(range(64)), max_new_tokens=4)
    # the answer is cut to what the window leaves
    assert len(list(gen.stream_ids(list(range(62)), max_new_tokens=16))) == 2
    with ServerThread(create_model_app(gen)) as server:
        body = {"model": small.name, "messages": [{"role": "user", "content": "word " * 100}]}
        reply = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
        fits = {"model": small.name, "messages": MESSAGES, "max_tokens": 4}
        ok = httpx.post(f"{server.url}/v1/chat/completions", json=fits, timeout=30)
    assert reply.status_code == 400, reply.text
    assert "reads at most 64" in reply.text
    assert ok.status_code == 200, ok.text
