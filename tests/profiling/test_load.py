"""LoadWatch's view of the generator, and AutoPolicy's decisions under load."""

from __future__ import annotations

import threading

import pytest

from ragzip.core.errors import ConfigError
from ragzip.policy import AutoPolicy
from ragzip.profiling.fit import LinearModel, QuadraticModel
from ragzip.profiling.load import Load, LoadWatch
from ragzip.profiling.profile import Profile
from ragzip.profiling.samples import CompressorCost

TRUNC4 = CompressorCost("truncate", 4.0, LinearModel(0.0, 1e-6), 4.0)
# 0.31 s at 1000 tokens cold, 0.02 s with every vector cached
MIG4 = CompressorCost("mig", 4.0, LinearModel(0.01, 3e-4), 4.0, LinearModel(0.01, 1e-5))
PROFILE = Profile(
    machine="test|2cpu",
    generator="gen",
    ttft=QuadraticModel(0.1, 1e-3, 0.0),
    decode=LinearModel(0.0, 0.0),
    prompt_overhead_tokens=0,
    compressors=(TRUNC4, MIG4),
    expected_output_tokens=1,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_watch_starts_unknown_and_learns_the_idle_speed() -> None:
    clock = Clock()
    watch = LoadWatch(clock=clock, cpus=2, min_samples=2)
    assert watch.snapshot() == Load(None, None, 0, 0, 2, 0)
    assert watch.snapshot().pressure == 1.0
    watch.observe(1000, 0.1)  # 0.1 ms per token
    assert watch.snapshot().seconds_per_token is None  # one answer says little
    clock.now += 1
    watch.observe(1000, 0.5)  # queueing: 0.5 ms per token
    load = watch.snapshot()
    assert load.idle_seconds_per_token == pytest.approx(1e-4)
    assert 1e-4 < load.seconds_per_token < 5e-4  # a weighted mean of the two
    assert load.pressure == pytest.approx(load.seconds_per_token / 1e-4)
    assert load.samples == 2


def test_recent_answers_weigh_more_and_a_quiet_generator_is_idle() -> None:
    clock = Clock()
    watch = LoadWatch(clock=clock, half_life_s=1.0, stale_s=30.0, min_samples=1)
    watch.observe(100, 0.01)
    clock.now += 10  # ten half-lives: the new answer is almost all that counts
    watch.observe(100, 0.1)
    assert watch.snapshot().seconds_per_token == pytest.approx(1e-3, rel=1e-2)
    clock.now += 31  # nothing answered for longer than stale_s
    assert watch.snapshot().seconds_per_token == pytest.approx(1e-4)
    assert watch.snapshot().pressure == 1.0


def test_in_flight_counts_follow_the_blocks_even_on_errors() -> None:
    watch = LoadWatch(cpus=2)
    with watch.upstream(500), watch.compressing():
        load = watch.snapshot()
        assert (load.tokens_in_flight, load.compressions_in_flight) == (500, 1)
        assert load.cpu_contention == 1.0  # one running, one CPU free
        with watch.compressing(), watch.compressing():
            assert watch.snapshot().cpu_contention == 2.0  # a fourth would share 2 CPUs
    with pytest.raises(RuntimeError), watch.upstream(7):
        raise RuntimeError
    assert watch.snapshot().tokens_in_flight == 0
    assert watch.snapshot().compressions_in_flight == 0


def test_watch_is_thread_safe() -> None:
    watch = LoadWatch()

    def work() -> None:
        for _ in range(2000):
            with watch.upstream(3):
                watch.observe(3, 0.003)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert watch.snapshot().tokens_in_flight == 0
    assert watch.snapshot().samples == 8000


def test_bad_observations_are_ignored_and_bad_settings_refused() -> None:
    watch = LoadWatch()
    watch.observe(0, 1.0)
    watch.observe(10, float("nan"))
    watch.observe(10, -1.0)
    assert watch.snapshot().samples == 0
    with pytest.raises(ConfigError, match="half_life_s"):
        LoadWatch(half_life_s=0)
    with pytest.raises(ConfigError, match="cpus"):
        LoadWatch(cpus=0)
    with pytest.raises(ConfigError, match="min_samples"):
        LoadWatch(min_samples=0)


def _load(per_token: float, idle: float = 1e-4, compressing: int = 0) -> Load:
    return Load(per_token, idle, 4000, compressing, 2, 50)


def test_an_idle_fast_generator_is_not_worth_compressing_for() -> None:
    # 1000 tokens at 0.1 ms each: mig would save 0.075 s for 0.31 s of CPU
    only_mig = Profile(**{**PROFILE.__dict__, "compressors": (MIG4,)})
    decision = AutoPolicy(only_mig, {("mig", 4.0): 0.95}, 0.9).decide(1000, load=_load(1e-4))
    assert not decision.compress
    assert "no compression saves more generator time than it costs" in decision.reason
    assert "1.0x its idle" in decision.reason
    assert decision.predicted_s == decision.baseline_s == pytest.approx(0.1)


def test_a_busy_generator_makes_the_best_candidate_pay() -> None:
    quality = {("mig", 4.0): 0.95, ("truncate", 4.0): 0.6}
    busy = _load(2e-3)  # 20x its idle time per token: 0.75 s saved per 1000 tokens
    decision = AutoPolicy(PROFILE, quality, 0.9).decide(1000, load=busy)
    assert (decision.compress, decision.compressor, decision.ratio) == (True, "mig", 4.0)
    assert "20.0x its idle" in decision.reason and "4000 tokens in flight" in decision.reason
    assert decision.baseline_s == pytest.approx(2.0)
    assert decision.predicted_s == pytest.approx(2.0 - (1.5 - 0.31))
    # without a quality floor the cheaper candidate gains more
    assert AutoPolicy(PROFILE).decide(1000, load=busy).compressor == "truncate"


def test_a_saturated_cpu_raises_the_price_of_compression() -> None:
    policy = AutoPolicy(PROFILE, {("mig", 4.0): 0.95}, 0.9)
    assert policy.decide(1000, load=_load(6e-4)).compress  # 0.45 s saved, 0.31 s spent
    crowded = policy.decide(1000, load=_load(6e-4, compressing=3))  # 2x contention: 0.62 s
    assert not crowded.compress
    assert "3 compressions running on 2 CPUs" in crowded.reason


def test_cached_features_make_compression_cheaper_under_load() -> None:
    policy = AutoPolicy(PROFILE, {("mig", 4.0): 0.95}, 0.9)
    load = _load(3e-4)  # 0.225 s saved against 0.31 s cold
    assert not policy.decide(1000, load=load).compress
    assert policy.decide(1000, {"mig": 1.0}, load=load).compress


def test_a_load_that_has_seen_nothing_leaves_the_profile_to_decide() -> None:
    policy = AutoPolicy(PROFILE)
    unknown = Load(None, None)
    assert policy.decide(2000, load=unknown) == policy.decide(2000)


def test_rejected_candidates_are_named() -> None:
    decision = AutoPolicy(PROFILE, {("truncate", 4.0): 0.6}, 0.9).decide(1000, load=_load(2e-3))
    assert not decision.compress
    assert "truncate@4" in decision.reason and "mig@4 (unknown quality)" in decision.reason
