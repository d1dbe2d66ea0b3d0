"""AutoPolicy decisions on synthetic profiles, eval quality loading, and the "auto" compressor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragzip.compressors.auto import AutoCompressor
from ragzip.core.errors import ConfigError, InputError
from ragzip.core.types import Budget
from ragzip.policy import AutoPolicy, load_quality, policy_from_files
from ragzip.profiling.fit import LinearModel, QuadraticModel
from ragzip.profiling.profile import Profile, save_profile
from ragzip.profiling.samples import CompressorCost
from ragzip.registry import create_compressor

MACHINE = "test-machine|2cpu"


def make_profile(*costs: CompressorCost, generator: str = "gen") -> Profile:
    # TTFT(p) = 0.1 + 1e-3·p; no prompt overhead, one output token (TTFT = end-to-end).
    return Profile(
        machine=MACHINE,
        generator=generator,
        ttft=QuadraticModel(0.1, 1e-3, 0.0),
        decode=LinearModel(0.0, 0.0),
        prompt_overhead_tokens=0,
        compressors=costs,
        expected_output_tokens=1,
        max_context_tokens=8192,
    )


# truncate: cheap. mig: costlier per token but also fine. At ratio r the compressed side costs
# T_c(n) + 0.1 + 1e-3·floor(n/r).
TRUNC2 = CompressorCost("truncate", 2.0, LinearModel(0.05, 1e-4), 2.0)
TRUNC4 = CompressorCost("truncate", 4.0, LinearModel(0.05, 1e-4), 4.0)
MIG4 = CompressorCost("mig", 4.0, LinearModel(0.08, 2e-4), 4.0)
PROFILE = make_profile(TRUNC2, TRUNC4, MIG4)
SLOW_TRUNCATE = make_profile(CompressorCost("truncate", 4.0, LinearModel(0.3, 1e-4), 4.0))
"""A truncation slow enough (0.3 s fixed) that only long contexts pay for it."""


def test_skips_below_break_even() -> None:
    n_star = min(PROFILE.break_even(c.compressor, c.ratio) or 10**9 for c in PROFILE.compressors)
    decision = AutoPolicy(PROFILE).decide(n_star - 1)
    assert not decision.compress
    assert decision.compressor is None and decision.ratio is None
    assert "break-even" in decision.reason
    assert decision.predicted_s == decision.baseline_s == pytest.approx(0.1 + 1e-3 * (n_star - 1))
    assert AutoPolicy(PROFILE).decide(n_star).compress


def test_picks_the_fastest_candidate() -> None:
    decision = AutoPolicy(PROFILE).decide(2000)
    # truncate@4: 0.05+0.2+0.1+0.5 = 0.85; truncate@2: 0.25+0.1+1.0 = 1.35; mig@4: 0.48+0.6 = 1.08
    assert (decision.compress, decision.compressor, decision.ratio) == (True, "truncate", 4.0)
    assert decision.predicted_s == pytest.approx(0.85)
    assert decision.baseline_s == pytest.approx(2.1)
    assert decision.context_tokens == 2000


def test_picks_the_fastest_that_meets_the_quality_floor() -> None:
    quality = {("truncate", 4.0): 0.40, ("truncate", 2.0): 0.70, ("mig", 4.0): 0.65}
    decision = AutoPolicy(PROFILE, quality, min_quality=0.6).decide(2000)
    assert (decision.compressor, decision.ratio) == ("mig", 4.0)
    decision = AutoPolicy(PROFILE, quality, min_quality=0.68).decide(2000)
    assert (decision.compressor, decision.ratio) == ("truncate", 2.0)


def test_none_meets_the_floor_skips_with_a_reason() -> None:
    quality = {("truncate", 4.0): 0.40, ("truncate", 2.0): 0.50}  # mig@4 unknown
    decision = AutoPolicy(PROFILE, quality, min_quality=0.9).decide(2000)
    assert not decision.compress
    assert "quality floor" in decision.reason
    assert "mig@4 (unknown quality)" in decision.reason
    assert "truncate@4 (quality 0.400 < 0.900)" in decision.reason


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        AutoPolicy(PROFILE, min_quality=1.5)
    with pytest.raises(ConfigError, match="no compressors"):
        AutoPolicy(make_profile())
    with pytest.raises(InputError):
        AutoPolicy(PROFILE).decide(-5)


def write_eval(path: Path, rows: list[dict[str, object]]) -> Path:
    doc = {"schema": "ragzip-eval/1", "compression": {"rows": rows}}
    path.write_text(json.dumps(doc))
    return path


def test_load_quality_reads_answer_recall(tmp_path: Path) -> None:
    path = write_eval(
        tmp_path / "eval.json",
        [
            {"compressor": "truncate", "requested_ratio": 4, "answer_recall": 0.41},
            {"compressor": "mig", "requested_ratio": 4.0, "answer_recall": 0.66},
            {"compressor": "random", "requested_ratio": 2.0, "answer_recall": None},
        ],
    )
    assert load_quality(path) == {("truncate", 4.0): 0.41, ("mig", 4.0): 0.66}
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"schema": "ragzip-eval/1", "compression": None}))
    with pytest.raises(ConfigError, match="no compression results"):
        load_quality(empty)
    with pytest.raises(ConfigError, match="cannot read"):
        load_quality(tmp_path / "missing.json")


def test_policy_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ragzip.core.machine.machine_key", lambda: MACHINE)
    prof_path = save_profile(PROFILE, tmp_path / "profile.json")
    eval_path = write_eval(
        tmp_path / "eval.json",
        [{"compressor": "mig", "requested_ratio": 4.0, "answer_recall": 0.7}],
    )
    policy = policy_from_files(prof_path, eval_path, min_quality=0.6)
    assert policy.decide(2000).compressor == "mig"


# -- the "auto" compressor over real compressors and a real tokenizer ------------------------------


def _passages(data_dir: Path, count: int) -> list[str]:
    from ragzip.profiling.measure import load_nq_passages

    return [p.text for p in load_nq_passages(data_dir / "nq_open_dev.jsonl.gz", limit=count)]


def test_auto_compressor_skips_short_and_compresses_long(
    data_dir: Path,
    minilm_counter,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ragzip.core.machine.machine_key", lambda: MACHINE)
    profile = make_profile(
        CompressorCost("truncate", 2.0, LinearModel(0.3, 1e-4), 2.0),
        CompressorCost("truncate", 4.0, LinearModel(0.3, 1e-4), 4.0),
    )  # n* ≈ 460 tokens at 4x
    path = save_profile(profile, tmp_path / "profile.json")
    config = {"profile_path": str(path), "eval_path": None, "min_quality": 0.0}
    auto = create_compressor("auto", counter=minilm_counter, config=config)
    assert isinstance(auto, AutoCompressor)
    n_star = profile.break_even("truncate", 4)
    assert n_star is not None

    short = _passages(data_dir, 1)
    res = auto.compress("who wrote it?", short, budget=Budget.compression(1.0))
    assert res.original_tokens < n_star
    assert res.compressed_tokens == res.original_tokens
    assert res.texts == short
    assert res.decision is not None and not res.decision.compress

    long = _passages(data_dir, 12)
    res = auto.compress("who wrote it?", long, budget=Budget.compression(1.0))
    assert res.original_tokens >= n_star
    assert res.compressor == "auto"
    assert res.decision is not None and res.decision.compress
    assert res.decision.ratio == 4.0
    assert res.decision.predicted_s < res.decision.baseline_s
    assert 0 < res.compressed_tokens <= res.original_tokens // 4
    assert res.decision is not None
    assert res.decision.compressor == "truncate"
    # the same choice made directly gives the same text
    direct = create_compressor("truncate", counter=minilm_counter).compress(
        "who wrote it?", long, budget=Budget.compression(4.0)
    )
    assert res.texts == direct.texts


def test_auto_compressor_keeps_the_callers_budget_as_a_cap(
    data_dir: Path,
    minilm_counter,  # type: ignore[no-untyped-def]
) -> None:
    never = make_profile(CompressorCost("truncate", 2.0, LinearModel(10.0, 1e-4), 2.0))
    auto = AutoCompressor(counter=minilm_counter, policy=AutoPolicy(never))
    short = _passages(data_dir, 2)
    cap = max(minilm_counter.count(p) for p in short)  # room for one whole passage
    res = auto.compress("who wrote it?", short, budget=Budget.tokens(cap))
    assert res.decision is not None and not res.decision.compress
    assert 0 < res.compressed_tokens <= cap


def test_auto_compressor_without_a_profile_is_a_config_error(
    minilm_counter,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="ragzip profile"):
        create_compressor(
            "auto",
            counter=minilm_counter,
            config={"profile_path": str(tmp_path / "none.json"), "eval_path": None},
        )


def test_auto_compressor_rejects_candidates_on_another_counter(
    minilm_counter,  # type: ignore[no-untyped-def]
) -> None:
    from ragzip.compressors.truncate import TruncateCompressor
    from ragzip.core.tokenization import HFTokenCounter

    other = HFTokenCounter(minilm_counter.tokenizer, name="other")
    with pytest.raises(ConfigError, match="another counter"):
        AutoCompressor(
            counter=minilm_counter,
            policy=AutoPolicy(make_profile(TRUNC2)),
            candidates={"truncate": TruncateCompressor(counter=other)},
        )


def test_the_decision_travels_with_each_result(
    data_dir: Path,
    minilm_counter,  # type: ignore[no-untyped-def]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from ragzip.policy import AutoCompressionResult, decision_of

    auto = AutoCompressor(counter=minilm_counter, policy=AutoPolicy(SLOW_TRUNCATE))
    short, long = _passages(data_dir, 1), _passages(data_dir, 12)
    jobs = [short, long] * 8
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(lambda ps: auto.compress("who?", ps, budget=Budget.compression(1.0)), jobs)
        )
    for passages, res in zip(jobs, results, strict=True):
        assert isinstance(res, AutoCompressionResult)
        decision = decision_of(res)
        assert decision is not None
        assert decision.context_tokens == res.original_tokens
        assert decision.compress is (passages is long)
        assert (res.compressed_tokens < res.original_tokens) is decision.compress
    as_json = json.loads(json.dumps(results[1].to_dict()))
    assert as_json["decision"]["compressor"] == "truncate"
    assert "predicted fastest" in as_json["decision"]["reason"]
    plain = create_compressor("truncate", counter=minilm_counter).compress(
        "who?", short, budget=Budget.compression(2.0)
    )
    assert decision_of(plain) is None


def test_pipeline_result_has_the_auto_decision(
    data_dir: Path,
    minilm_counter,  # type: ignore[no-untyped-def]
) -> None:
    from ragzip.pipeline import Pipeline

    auto = AutoCompressor(counter=minilm_counter, policy=AutoPolicy(SLOW_TRUNCATE))
    pipe = Pipeline(auto, Budget.compression(1.0))
    skipped = pipe.run("who wrote it?", _passages(data_dir, 1))
    assert skipped.decision is not None and not skipped.decision.compress
    assert "break-even" in skipped.decision.reason
    chosen = pipe.run("who wrote it?", _passages(data_dir, 12))
    assert chosen.decision is not None and chosen.decision.compress
    assert (chosen.decision.compressor, chosen.decision.ratio) == ("truncate", 4.0)
    plain = Pipeline(create_compressor("truncate", counter=minilm_counter), Budget.compression(2))
    assert plain.run("who wrote it?", _passages(data_dir, 2)).decision is None


def test_by_default_auto_reads_the_shipped_quality_and_keeps_answers(
    minilm_counter,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ragzip.policy import SHIPPED_QUALITY

    monkeypatch.setattr("ragzip.core.machine.machine_key", lambda: MACHINE)
    path = save_profile(make_profile(TRUNC4, MIG_CACHED), tmp_path / "profile.json")
    auto = create_compressor("auto", counter=minilm_counter, config={"profile_path": str(path)})
    assert isinstance(auto, AutoCompressor)
    assert auto.policy.quality == load_quality(SHIPPED_QUALITY)
    assert auto.policy.min_quality == 0.9
    assert auto.policy.quality[("truncate", 4.0)] < 0.9 <= auto.policy.quality[("mig", 4.0)]
    decision = auto.policy.decide(20_000)  # long enough for both to pay: truncate is cheaper
    assert decision.compressor == "mig"
    assert (
        "truncate@4 (quality"
        in AutoPolicy(make_profile(TRUNC4), auto.policy.quality, 0.9).decide(20_000).reason
    )


def test_missing_default_eval_report_means_unknown_quality(
    minilm_counter,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ragzip.core.machine.machine_key", lambda: MACHINE)
    path = save_profile(make_profile(TRUNC4), tmp_path / "profile.json")
    missing = str(tmp_path / "no-eval.json")
    config = {"profile_path": str(path), "eval_path": missing, "min_quality": 0.0}
    auto = create_compressor("auto", counter=minilm_counter, config=config)
    assert isinstance(auto, AutoCompressor) and auto.policy.quality == {}
    with pytest.raises(ConfigError, match="cannot read eval report"):
        create_compressor(
            "auto",
            counter=minilm_counter,
            config={"profile_path": str(path), "eval_path": missing, "min_quality": 0.5},
        )


# mig that is slow cold (embedding every sentence) and nearly free warm (all vectors cached)
MIG_CACHED = CompressorCost(
    "mig", 4.0, LinearModel(0.5, 5e-4), 4.0, warm_cost=LinearModel(0.001, 1e-6)
)


def test_a_cached_request_moves_the_cost_to_the_warm_line() -> None:
    policy = AutoPolicy(make_profile(MIG_CACHED))
    cold = policy.decide(1000)  # 0.5+0.5 + 0.1+0.25 = 1.35 > 1.1 uncompressed
    warm = policy.decide(1000, {"mig": 1.0})  # 0.002 + 0.35
    half = policy.decide(1000, {"mig": 0.5})
    assert not cold.compress
    assert (warm.compress, warm.compressor) == (True, "mig")
    assert warm.predicted_s == pytest.approx(0.002 + 0.35)
    assert half.compress and half.predicted_s == pytest.approx(0.5 * 1.0 + 0.5 * 0.002 + 0.35)
    assert PROFILE.predict("mig", 4.0, 1000, cached_share=1.0) == PROFILE.predict("mig", 4.0, 1000)


def test_warm_cost_survives_the_profile_file(tmp_path: Path) -> None:
    from ragzip.profiling.profile import load_profile

    path = save_profile(make_profile(MIG_CACHED, TRUNC4), tmp_path / "p.json")
    back = load_profile(path, generator="gen", any_machine=True)
    assert back.cost("mig", 4.0).warm_cost == MIG_CACHED.warm_cost
    assert back.cost("truncate", 4.0).warm_cost is None


def test_auto_reads_how_much_of_a_request_mig_has_cached(
    data_dir: Path,
    minilm_counter,  # type: ignore[no-untyped-def]
) -> None:
    mig = create_compressor("mig", counter=minilm_counter)
    auto = AutoCompressor(
        counter=minilm_counter,
        policy=AutoPolicy(make_profile(MIG_CACHED)),
        candidates={"mig": mig},
    )
    long = _passages(data_dir, 4)
    question = "who wrote it?"
    first = auto.compress(question, long, budget=Budget.compression(1.0))
    assert first.decision is not None and not first.decision.compress  # nothing cached: skip
    mig.compress(question, long, budget=Budget.compression(4.0))  # now every vector is cached
    second = auto.compress(question, long, budget=Budget.compression(1.0))
    assert second.decision is not None
    assert (second.decision.compress, second.decision.compressor) == (True, "mig")
