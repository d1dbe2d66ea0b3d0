"""Latency profiler: cost-model fits, break-even search, JSON round trip, and a real small run."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from ragzip.core.errors import ConfigError, InputError
from ragzip.core.machine import machine_key
from ragzip.profiling.fit import (
    LinearModel,
    QuadraticModel,
    fit_cost,
    fit_decode,
    fit_linear,
    fit_quadratic,
)
from ragzip.profiling.measure import (
    build_context,
    calibration_passages,
    fit_profile,
    kv_bytes_per_token,
    load_nq_passages,
)
from ragzip.profiling.output import plot_profile, summary_table
from ragzip.profiling.profile import (
    Profile,
    find_profile,
    load_profile,
    save_profile,
    user_profile_path,
)
from ragzip.profiling.samples import CompressionSample, CompressorCost, GenerationSample


def synthetic_profile(
    *,
    ttft: QuadraticModel | None = None,
    costs: tuple[CompressorCost, ...] = (
        CompressorCost("truncate", 2.0, LinearModel(0.05, 0.0001), 2.0),
    ),
    decode: LinearModel | None = None,
    overhead: int = 0,
    generator: str = "gen-a",
    out_tokens: int = 1,
) -> Profile:
    return Profile(
        machine="test-machine|2cpu",
        generator=generator,
        ttft=ttft or QuadraticModel(0.1, 0.001, 0.0),
        decode=decode or LinearModel(0.0, 0.0),
        prompt_overhead_tokens=overhead,
        compressors=costs,
        expected_output_tokens=out_tokens,
        kv_bytes_per_token=1000,
        max_context_tokens=8192,
        generation_samples=(GenerationSample(100, 130, 0.2, 0.01, 3),),
        compression_samples=(CompressionSample("truncate", 2.0, 100, 50, 0.06, 3),),
        created_at="2026-01-01T00:00:00+00:00",
    )


# -- fits -------------------------------------------------------------------------------------


def test_fit_linear_recovers_coefficients_under_noise() -> None:
    rng = np.random.default_rng(0)
    x = np.repeat([256, 512, 1024, 2048], 5).astype(float)
    y = 0.004 + 2.5e-5 * x + rng.normal(0, 1e-5, x.size)
    line = fit_linear(x.tolist(), y.tolist())
    assert line.intercept == pytest.approx(0.004, abs=2e-5)
    assert line.slope == pytest.approx(2.5e-5, rel=1e-2)


def test_fit_quadratic_recovers_coefficients() -> None:
    x = [100.0, 300.0, 700.0, 1500.0, 3000.0, 6000.0]
    y = [0.02 + 4e-4 * v + 3e-8 * v * v for v in x]
    q = fit_quadratic(x, y)
    assert (q.a, q.b, q.c) == pytest.approx((0.02, 4e-4, 3e-8), rel=1e-6)
    assert float(q(1000.0)) == pytest.approx(0.02 + 0.4 + 0.03)


def test_fit_quadratic_two_lengths_is_a_line_and_one_length_is_refused() -> None:
    q = fit_quadratic([100, 200, 200], [1.0, 2.0, 2.0])
    assert (q.a, q.b, q.c) == pytest.approx((0.0, 0.01, 0.0), abs=1e-12)
    with pytest.raises(InputError, match="distinct"):
        fit_quadratic([100, 100], [1.0, 1.1])
    with pytest.raises(InputError, match="finite"):
        fit_linear([1, 2], [1.0, math.nan])
    with pytest.raises(InputError):
        fit_linear([1, 2, 3], [1.0, 2.0])


def test_fit_cost_never_predicts_negative_fixed_costs() -> None:
    assert fit_cost([256, 512], [0.01, 0.02]) == fit_linear([256, 512], [0.01, 0.02])
    through_origin = fit_cost([256, 512, 1024], [0.1, 0.9, 1.8])
    assert through_origin.intercept == 0.0
    assert through_origin.slope == pytest.approx(
        (256 * 0.1 + 512 * 0.9 + 1024 * 1.8) / (256**2 + 512**2 + 1024**2)
    )


def test_fit_decode_falls_back_to_the_median_when_the_slope_is_negative() -> None:
    assert fit_decode([100, 200, 300], [0.03, 0.02, 0.025]) == LinearModel(0.025, 0.0)
    rising = fit_decode([100, 200, 300], [0.01, 0.02, 0.03])
    assert rising.slope == pytest.approx(1e-4)


def test_fit_profile_from_samples() -> None:
    gen = [
        GenerationSample(n, n + 40, 0.05 + 1e-4 * (n + 40) + 2e-8 * (n + 40) ** 2, 0.02, 3)
        for n in (128, 256, 512, 1024, 2048)
    ]
    comp = [
        CompressionSample("mig", r, n, int(n // r), 0.01 + 3e-5 * n, 3)
        for n in (256, 512, 1024, 2048)
        for r in (2.0, 4.0)
    ]
    prof = fit_profile(generator="g", generation=gen, compression=comp, machine="m")
    assert prof.prompt_overhead_tokens == 40
    assert (prof.ttft.a, prof.ttft.b, prof.ttft.c) == pytest.approx((0.05, 1e-4, 2e-8), rel=1e-5)
    assert prof.decode == LinearModel(0.02, 0.0)
    assert {c.key for c in prof.compressors} == {"mig@2", "mig@4"}
    cost = prof.cost("mig", 4)
    assert cost.cost.slope == pytest.approx(3e-5)
    assert cost.achieved_ratio == pytest.approx(4.0)


# -- break-even -------------------------------------------------------------------------------


def test_break_even_matches_the_analytic_answer() -> None:
    # T_c(n) + TTFT(n/2) < TTFT(n)  ⇔  0.05 + 1e-4·n < 1e-3·ceil(n/2): first true at n = 125.
    prof = synthetic_profile()
    assert prof.break_even("truncate", 2) == 125
    before = prof.predict("truncate", 2, 124)
    after = prof.predict("truncate", 2, 125)
    assert before.compressed_ttft_s >= before.baseline_ttft_s
    assert after.compressed_ttft_s < after.baseline_ttft_s
    assert after.compressed_tokens == 62
    assert after.compression_s == pytest.approx(0.0625)


def test_end_to_end_break_even_counts_decoding_against_a_brute_force_search() -> None:
    decode = LinearModel(0.001, 2e-5)  # decoding slows as the prompt grows
    prof = synthetic_profile(decode=decode, overhead=30, out_tokens=17)

    def latency(context: int) -> float:
        p = context + 30
        return 0.1 + 0.001 * p + (0.001 + 2e-5 * p) * 16

    expected = next(n for n in range(1, 8193) if 0.05 + 1e-4 * n + latency(n // 2) < latency(n))
    assert prof.break_even("truncate", 2, end_to_end=True) == expected
    assert expected < prof.break_even("truncate", 2)  # cheaper decoding widens the window


def test_break_even_is_none_when_compression_never_pays() -> None:
    slow = (CompressorCost("mig", 2.0, LinearModel(1.0, 0.01), 2.0),)
    prof = synthetic_profile(costs=slow)
    assert prof.break_even("mig", 2) is None
    assert prof.predict("mig", 2, 4000).speedup < 1.0


def test_predict_rejects_unknown_pairs_and_bad_lengths() -> None:
    prof = synthetic_profile()
    with pytest.raises(ConfigError, match="truncate@2"):
        prof.predict("truncate", 4, 100)
    with pytest.raises(InputError):
        prof.predict("truncate", 2, -1)


def test_kv_bytes_saved() -> None:
    prof = synthetic_profile()
    assert prof.kv_bytes_saved(4, 1000) == 1000 * 750


def test_kv_bytes_per_token_from_a_real_config() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
    )
    model = LlamaForCausalLM(config)
    assert kv_bytes_per_token(model) == 2 * 3 * 2 * 8 * 4
    assert kv_bytes_per_token(object()) is None


# -- JSON -------------------------------------------------------------------------------------


def test_json_round_trip_keeps_every_profile_in_the_file(tmp_path: Path) -> None:
    a = synthetic_profile(decode=LinearModel(0.01, 1e-6), overhead=42)
    b = synthetic_profile(generator="gen-b")
    path = tmp_path / "p" / "profile.json"
    save_profile(a, path)
    save_profile(b, path)
    doc = json.loads(path.read_text())
    assert doc["schema"] == "ragzip-profile/1"
    assert set(doc["profiles"]) == {a.key, b.key}
    assert "truncate@2" in doc["profiles"][a.key]["compressors"]
    assert load_profile(path, generator="gen-a", machine=a.machine) == a
    assert load_profile(path, generator="gen-b", machine=a.machine) == b
    with pytest.raises(ConfigError, match="several profiles"):
        load_profile(path, machine=a.machine)
    with pytest.raises(ConfigError, match="no profile for machine"):
        load_profile(path, generator="gen-a", machine="elsewhere")


def test_nan_decode_is_written_as_null_and_read_back(tmp_path: Path) -> None:
    prof = synthetic_profile()
    sample = GenerationSample(10, 40, 0.1, math.nan, 1)
    prof = Profile(**{**prof.__dict__, "generation_samples": (sample,)})
    path = save_profile(prof, tmp_path / "profile.json")
    assert "NaN" not in path.read_text()
    back = load_profile(path, machine=prof.machine)
    assert math.isnan(back.generation_samples[0].decode_s_per_token)


def test_bad_profile_files_raise_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ragzip profile"):
        load_profile(tmp_path / "missing.json")
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"schema": "other"}')
    with pytest.raises(ConfigError, match="not a ragzip profile"):
        load_profile(foreign)
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": "ragzip-profile/1", "profiles": {"k": {"machine": "m"}}}')
    with pytest.raises(ConfigError, match="malformed"):
        load_profile(broken, machine="m")


# -- output -----------------------------------------------------------------------------------


def test_plots_and_table(tmp_path: Path) -> None:
    costs = (
        CompressorCost("truncate", 2.0, LinearModel(0.05, 0.0001), 2.0),
        CompressorCost("truncate", 4.0, LinearModel(0.05, 0.0001), 4.0),
    )
    prof = synthetic_profile(costs=costs)
    files = plot_profile(prof, tmp_path)
    assert [f.name for f in files] == ["latency.png", "speedup.png"]
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(summary_table(prof))
    text = console.export_text()
    assert "125" in text  # n* of truncate@2
    assert "truncate" in text


# -- contexts from real data ------------------------------------------------------------------


def test_build_context_hits_the_length_in_the_tokenizer(data_dir: Path, minilm_counter) -> None:  # type: ignore[no-untyped-def]
    pool = load_nq_passages(data_dir / "nq_open_dev.jsonl.gz", limit=30)
    for n in (1, 57, 300, 700):
        ctx = build_context(pool, n, minilm_counter)
        total = sum(minilm_counter.count(p.text) for p in ctx)
        assert n - 3 <= total <= n
        assert all(p.text in q.text or p.text == q.text for p, q in zip(ctx, pool, strict=False))
    with pytest.raises(InputError, match="fewer than"):
        build_context(pool[:1], 100_000, minilm_counter)
    with pytest.raises(InputError):
        build_context(pool, 0, minilm_counter)


def test_missing_data_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no NQ data"):
        load_nq_passages(tmp_path / "none.jsonl.gz")


def test_cli_rejects_bad_lists_before_loading_a_model(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from ragzip.profiling.command import profile_command

    app = typer.Typer()
    app.command("profile")(profile_command)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["profile", "--lengths", "256,abc", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--lengths" in result.output


# -- a real run ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_real_profile_with_smollm2(data_dir: Path, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from ragzip.profiling.command import profile_command

    app = typer.Typer()
    app.command("profile")(profile_command)
    app.command("noop")(lambda: None)
    out = tmp_path / "profile"
    result = CliRunner().invoke(
        app,
        [
            "profile",
            "--compressors",
            "truncate",
            "--lengths",
            "64,256",
            "--ratios",
            "2",
            "--repeats",
            "1",
            "--expected-output-tokens",
            "4",
            "--out",
            str(out),
            "--data",
            str(data_dir / "nq_open_dev.jsonl.gz"),
        ],
    )
    assert result.exit_code == 0, result.output
    prof = load_profile(out / "profile.json")
    assert prof.generator == "smollm2-135m-instruct"
    assert {s.context_tokens for s in prof.generation_samples} == {32, 64, 128, 256}
    assert all(s.ttft_s > 0 for s in prof.generation_samples)
    assert all(s.prompt_tokens > s.context_tokens for s in prof.generation_samples)
    assert prof.prompt_overhead_tokens > 0
    assert [c.key for c in prof.compressors] == ["truncate@2"]
    assert {s.context_tokens for s in prof.compression_samples} == {64, 256}
    assert all(s.compressed_tokens <= s.context_tokens // 2 for s in prof.compression_samples)
    # SmolLM2-135M: 30 layers, 3 KV heads of 64 dims, float32
    assert prof.kv_bytes_per_token == 2 * 30 * 3 * 64 * 4
    assert prof.peak_rss_bytes is not None and prof.peak_rss_bytes > 100 * 2**20
    assert (out / "latency.png").is_file() and (out / "speedup.png").is_file()


def test_relative_fits_weigh_short_points_like_long_ones() -> None:
    # A point 10 ms off at 2,000 tokens drags an absolute fit far off at 64 tokens.
    x = [64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0]
    y = [0.01 + 1e-4 * v for v in x]
    y[-1] += 0.01
    absolute = fit_quadratic(x, y)
    relative = fit_quadratic(x, y, relative=True)
    err_abs = abs(float(absolute(64.0)) / y[0] - 1)
    err_rel = abs(float(relative(64.0)) / y[0] - 1)
    assert err_rel < err_abs
    assert err_rel < 0.01
    exact = [0.02 + 3e-5 * v for v in x]
    assert fit_cost(x, exact, relative=True).slope == pytest.approx(3e-5)
    # a negative intercept: through the origin, minimising relative residuals
    xs, ys = np.array([100.0, 200.0, 400.0]), np.array([0.01, 0.05, 0.13])
    origin = fit_cost(xs.tolist(), ys.tolist(), relative=True)
    assert origin.intercept == 0.0
    assert origin.slope == pytest.approx(float(np.sum(xs / ys) / np.sum((xs / ys) ** 2)))


# -- a fresh machine ---------------------------------------------------------------------------


def test_machine_key_leaves_out_kernel_builds() -> None:
    import platform

    key = machine_key()
    assert platform.release() not in key  # a kernel update must not orphan a profile
    assert key.endswith(f"|{os.cpu_count()}cpu")


def test_another_machines_profile_is_used_only_when_asked_with_a_notice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = save_profile(synthetic_profile(), tmp_path / "profile.json")
    with pytest.raises(ConfigError, match="no profile for machine"):
        load_profile(path, machine="elsewhere")
    with caplog.at_level("WARNING"):
        prof = load_profile(path, machine="elsewhere", any_machine=True)
    assert prof == synthetic_profile()
    assert "run `ragzip profile`" in caplog.text


def test_auto_finds_a_profile_on_a_fresh_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No cache, another machine: the shipped portable profile, with a notice; once this
    machine is profiled into the user cache, its own profile wins."""
    monkeypatch.setenv("RAGZIP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("ragzip.core.machine.machine_key", lambda: "Plan9-vax|Some CPU|64cpu")
    with caplog.at_level("WARNING"):
        shipped = find_profile(None)
    assert shipped.generator == "smollm2-135m-instruct"
    assert "Plan9-vax" in caplog.text
    own = Profile(**{**synthetic_profile().__dict__, "machine": "Plan9-vax|Some CPU|64cpu"})
    save_profile(own, user_profile_path())
    assert user_profile_path().is_absolute()
    assert find_profile(None) == own


def test_calibration_corpus_ships_with_the_package() -> None:
    from ragzip.weights import smollm2_counter as make_counter

    smollm2_counter = make_counter()
    pool = calibration_passages()
    assert len(pool) > 50
    assert sum(smollm2_counter.count_batch([p.text for p in pool])) > 4096
    context = build_context(pool, 3072, smollm2_counter)
    assert sum(smollm2_counter.count_batch([p.text for p in context])) <= 3072
