"""The SIMULATED generator: its first token waits a + b·prompt tokens, over real HTTP too."""

from __future__ import annotations

import pytest

from ragzip.core.errors import ConfigError, InputError
from ragzip.generators.openai_compat import OpenAIGenerator
from ragzip.generators.simulated import (
    ANSWER,
    PRESETS,
    PrefillModel,
    SimulatedGenerator,
    preset,
)
from ragzip.server.model_server.app import create_model_app
from ragzip.weights import smollm2_counter
from tests.server.conftest import ServerThread

TIMING = PrefillModel("simulated-test", overhead_s=0.02, per_token_s=0.0005, decode_s=0.001)
MESSAGES = [{"role": "user", "content": "Which river flows through Paris?"}]


class FakeTime:
    """A clock that only ``sleep`` moves: the waits a generator asks for, in order."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def test_first_token_waits_for_the_simulated_prefill_of_every_prompt_token() -> None:
    time = FakeTime()
    waits = time.waits
    gen = SimulatedGenerator(TIMING, sleep=time.sleep, clock=time.clock)
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


LOADED = PrefillModel(
    "simulated-load",
    overhead_s=0.01,
    per_token_s=0.001,
    decode_s=0.02,
    decode_batch_s=0.005,
    kv_tokens=1000,
)


def test_requests_sent_together_share_the_prefill_first_come_first_served() -> None:
    from ragzip.generators.simulated_engine import SharedEngine

    time = FakeTime()
    engine = SharedEngine(LOADED, clock=time.clock)
    # alone: a + b·n; N together: the k-th first token after k·b·n (+ a)
    admitted = [engine.admit(100, 1) for _ in range(5)]
    assert [a.wait_s for a in admitted] == pytest.approx([0.01 + 0.1 * k for k in range(1, 6)])
    for a in admitted:
        engine.release(a)
    # at saturation it prefills exactly its rate: arrivals faster than b·n queue up
    time.now += 10
    first = []
    for _ in range(50):
        a = engine.admit(100, 1)
        first.append(time.now + a.wait_s)
        engine.release(a)
        time.now += 0.05  # one arrival every 50 ms, each needing 100 ms of prefill
    rate = 100 * (len(first) - 1) / (first[-1] - first[0])
    assert rate == pytest.approx(1 / LOADED.per_token_s)


def test_decode_steps_slow_with_the_batch_and_the_kv_cache_queues_requests() -> None:
    import threading

    from ragzip.generators.simulated_engine import SharedEngine

    engine = SharedEngine(LOADED)
    assert engine.decode_step_s() == pytest.approx(0.02)
    for _ in range(3):
        engine.decoding(+1)
    assert engine.decode_step_s() == pytest.approx(0.02 + 2 * 0.005)
    first = engine.admit(600, 100)
    got: list[float] = []
    late = threading.Thread(target=lambda: got.append(engine.admit(300, 100).queued_s))
    late.start()
    late.join(0.2)
    assert late.is_alive() and engine.kv_in_use == 700  # 700 + 400 > 1000: it waits
    engine.release(first)
    late.join(5)
    assert got and got[0] >= 0.2 and engine.kv_in_use == 400
    with pytest.raises(Exception, match="no KV-cache room"):
        engine.admit(700, 0, timeout=0.05)
    # a request alone is always admitted, even beyond the capacity
    engine.release(engine.admit(0, 0))
    big = SharedEngine(LOADED).admit(5000, 10)
    assert big.kv_tokens == 5010


def test_concurrent_requests_over_http_queue_behind_each_other() -> None:
    import threading

    counter = smollm2_counter()
    slow = PrefillModel("simulated-slow", overhead_s=0.0, per_token_s=0.002, decode_s=0.0)
    gen = SimulatedGenerator(slow)
    prompt = [{"role": "user", "content": "word " * 100}]
    results: list[float] = []
    ready = threading.Barrier(4, timeout=60)
    with ServerThread(create_model_app(gen)) as server:

        def ask() -> None:
            with OpenAIGenerator(server.url, slow.name, counter=counter) as remote:
                ready.wait()  # clients built: the four requests leave together
                results.append(remote.generate(prompt, max_new_tokens=2).ttft_s)

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    one = slow.ttft_s(len(gen.prompt_ids(prompt)))
    # the last of four sent together waits for all four prefills (served one at a time, each
    # request would wait for its own only); the margin is for the threads' start on busy cores
    assert len(results) == 4 and max(results) >= 3.5 * one
