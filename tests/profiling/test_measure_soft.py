"""The profiler with a soft compressor: T_c, a prefill sample at the vector count, predictions."""

from __future__ import annotations

import math
from pathlib import Path

from ragzip.core.types import Budget
from ragzip.profiling.fit import LinearModel, QuadraticModel
from ragzip.profiling.measure import build_context, load_nq_passages, measure
from ragzip.profiling.profile import Profile
from ragzip.profiling.samples import CompressorCost
from ragzip.prompts import build_messages, soft_context
from tests.soft_support import MeanEmbeddingCompressor, embedding_table, tiny_generator


def test_measure_times_a_soft_compressor_and_its_prefill(data_dir: Path) -> None:
    gen = tiny_generator()
    comp = MeanEmbeddingCompressor(counter=gen.counter, table=embedding_table(gen))
    pool = load_nq_passages(data_dir / "nq_open_dev.jsonl.gz", limit=40)
    prof = measure(
        gen,
        {"soft": comp},
        lengths=[64, 256],
        ratios=[4.0],
        pool=pool,
        repeats=1,
        expected_output_tokens=2,
    )
    samples = {s.context_tokens: s for s in prof.compression_samples}
    assert set(samples) == {64, 256}
    for n, s in samples.items():
        assert s.seconds > 0
        assert 1 <= s.compressed_tokens <= n // 4  # one vector per passage within the budget
    cost = prof.cost("soft", 4.0)
    assert cost.achieved_ratio > 4.0  # a vector stands for a whole passage

    text_lengths = {16, 64, 256}  # n and n / r
    soft = [s for s in prof.generation_samples if s.context_tokens not in text_lengths]
    assert {s.context_tokens for s in soft} == {s.compressed_tokens for s in samples.values()}
    for s in soft:  # a real prefill of the soft prompt, one token generated
        assert s.ttft_s > 0 and math.isnan(s.decode_s_per_token)
    # The prompt length is the one the generator saw: placeholders, template and question.
    s256 = samples[256]
    query = str(pool[0].metadata.get("q") or "What is this about?")
    result = comp.compress(query, build_context(pool, 256, gen.counter), budget=Budget(ratio=4.0))
    assert result.compressed_tokens == s256.compressed_tokens
    sample = next(s for s in soft if s.context_tokens == s256.compressed_tokens)
    messages = build_messages(query, soft_context(result))
    assert sample.prompt_tokens == gen.count_prompt_tokens(messages)

    # Predictions use the vectors the compressor really keeps, not n / r.
    pred = prof.predict("soft", 4.0, 1000)
    assert pred.compressed_tokens == int(1000 // cost.achieved_ratio)


def test_predict_uses_the_measured_ratio_only_when_it_is_higher() -> None:
    def profile(achieved: float) -> Profile:
        return Profile(
            machine="m",
            generator="g",
            ttft=QuadraticModel(0.1, 0.001, 0.0),
            decode=LinearModel(0.0, 0.0),
            prompt_overhead_tokens=0,
            compressors=(CompressorCost("c", 4.0, LinearModel(0.0, 0.0), achieved),),
        )

    assert profile(50.0).predict("c", 4.0, 1000).compressed_tokens == 20
    assert profile(3.5).predict("c", 4.0, 1000).compressed_tokens == 250
    assert profile(math.nan).predict("c", 4.0, 1000).compressed_tokens == 250
