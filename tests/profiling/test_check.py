"""check_profile: fresh measurements at multiples of n*, on a real (tiny) model and compressor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragzip.core.errors import ConfigError
from ragzip.generators.embedded import EmbeddedGenerator
from ragzip.profiling.check import (
    MIN_CHECK_TOKENS,
    CheckPoint,
    CheckReport,
    check_profile,
    render_check_markdown,
)
from ragzip.profiling.fit import LinearModel, QuadraticModel
from ragzip.profiling.measure import load_nq_passages, profile_name
from ragzip.profiling.profile import Profile
from ragzip.profiling.samples import CompressorCost
from ragzip.registry import create_compressor
from tests.soft_support import small_generator


@pytest.fixture(scope="module")
def tiny() -> EmbeddedGenerator:
    return small_generator(seed=0, max_positions=1024, name="tiny")


def _profile(overhead: int) -> Profile:
    # TTFT 10 ms + 0.1 ms per prompt token; truncate at 4x: 5 ms + 1 µs per token → n* = 71.
    return Profile(
        machine="m",
        generator="tiny",
        ttft=QuadraticModel(0.01, 1e-4, 0.0),
        decode=LinearModel(0.0, 0.0),
        prompt_overhead_tokens=overhead,
        compressors=(
            CompressorCost("truncate", 4.0, LinearModel(0.005, 1e-6), 4.0),
            CompressorCost("truncate", 2.0, LinearModel(0.005, 1e-6), 2.0),
            CompressorCost("mig", 4.0, LinearModel(100.0, 0.0), 4.0),  # never pays
        ),
        expected_output_tokens=1,
        kv_bytes_per_token=1000,
        max_context_tokens=1024,
    )


def test_check_measures_at_multiples_of_n_star(tiny: EmbeddedGenerator, data_dir: Path) -> None:
    profile = _profile(overhead=30)
    n_star = profile.break_even("truncate", 4.0)
    assert n_star is not None
    pool = load_nq_passages(data_dir / "nq_open_dev.jsonl.gz", limit=40)
    truncate = create_compressor("truncate", counter=tiny.counter)
    mig_stand_in = create_compressor("truncate", counter=tiny.counter)
    report = check_profile(
        profile,
        tiny,
        {"truncate": truncate, "mig": mig_stand_in},
        pool,
        repeats=2,
        ratios=[4.0],
    )
    assert [p.context_tokens for p in report.points] == [
        max(MIN_CHECK_TOKENS, round(n_star * f)) for f in (0.5, 1.0, 1.5)
    ]
    assert {p.ratio for p in report.points} == {4.0}
    assert report.skipped == {"mig@4": "compression never pays within the context window"}
    for p in report.points:
        pred = profile.predict("truncate", 4.0, p.context_tokens)
        assert p.predicted_baseline_s == pytest.approx(pred.baseline_ttft_s)
        assert p.predicted_compressed_s == pytest.approx(pred.compressed_ttft_s)
        assert p.measured_baseline_s > 0 and p.measured_compressed_s > p.measured_compression_s
        assert 0 < p.compressed_tokens <= p.context_tokens // 4
        assert p.kv_bytes_saved == 1000 * (p.context_tokens - p.compressed_tokens)
        assert p.baseline_error == pytest.approx(p.predicted_baseline_s / p.measured_baseline_s - 1)
    assert report.passed is (report.max_abs_error <= 0.15)
    as_json = json.loads(json.dumps(report.to_dict()))
    assert len(as_json["points"]) == 3 and "compressed_error" in as_json["points"][0]
    text = render_check_markdown([report])
    assert "| truncate | 4x |" in text and "Not checked: mig@4" in text


def test_check_report_verdict() -> None:
    point = CheckPoint("t", 4.0, 100, 1.0, 100, 25, 0.11, 0.10, 0.09, 0.10, 0.001, None)
    assert point.baseline_error == pytest.approx(0.1)
    assert point.compressed_error == pytest.approx(-0.1)
    assert point.measured_speedup == pytest.approx(1.0)
    ok = CheckReport("m", "g", (point,), {}, 0.15, 1)
    assert ok.passed and ok.max_abs_error == pytest.approx(0.1)
    assert not CheckReport("m", "g", (point,), {}, 0.05, 1).passed
    assert not CheckReport("m", "g", (), {}, 0.15, 1).passed


def test_check_rejects_bad_arguments(tiny: EmbeddedGenerator, data_dir: Path) -> None:
    pool = load_nq_passages(data_dir / "nq_open_dev.jsonl.gz", limit=5)
    with pytest.raises(ConfigError):
        check_profile(_profile(0), tiny, {}, pool, repeats=0)
    with pytest.raises(ConfigError):
        check_profile(_profile(0), tiny, {}, pool, factors=(0.0, 1.0))


def test_profile_name_keeps_remote_and_embedded_apart(tiny: EmbeddedGenerator) -> None:
    from ragzip.generators.openai_compat import OpenAIGenerator

    assert profile_name(tiny) == "tiny"
    with OpenAIGenerator("http://127.0.0.1:9/v1", "tiny", counter=tiny.counter) as remote:
        assert profile_name(remote) == "tiny@http://127.0.0.1:9"
