"""The seeded random-sentence baseline."""

from __future__ import annotations

import pytest

import ragzip
from ragzip import Budget, ConfigError
from ragzip.compressors.units import sentence_spans
from ragzip.core.tokenization import TokenCounter

PASSAGES = [
    " ".join(f"Fact number {i} about topic {j} is stated here." for i in range(8)) for j in range(5)
]


def _spans(seed: int, counter: TokenCounter) -> list[tuple[tuple[int, int], ...]]:
    comp = ragzip.create_compressor("random", counter=counter, config={"seed": seed})
    result = comp.compress("which fact?", PASSAGES, budget=Budget.compression(4))
    return [p.spans for p in result.passages]


def test_same_seed_same_output_and_seeds_differ(minilm_counter: TokenCounter) -> None:
    assert _spans(0, minilm_counter) == _spans(0, minilm_counter)
    outputs = {tuple(_spans(seed, minilm_counter)) for seed in range(5)}
    assert len(outputs) >= 4


def test_keeps_whole_sentences(counter: TokenCounter) -> None:
    comp = ragzip.create_compressor("random", counter=counter)
    result = comp.compress("which fact?", PASSAGES, budget=Budget.compression(3))
    assert result.compressed_tokens > 0
    for out in result.passages:
        sentences = sentence_spans(out.passage.text)
        starts = {s for s, _ in sentences}
        ends = {e for _, e in sentences}
        for a, b in out.spans:  # merged runs of adjacent sentences
            assert a in starts
            assert b in ends


def test_bad_config(minilm_counter: TokenCounter) -> None:
    with pytest.raises(ConfigError):
        ragzip.create_compressor("random", counter=minilm_counter, config={"seed": "zero"})
    with pytest.raises(ConfigError, match="valid keys"):
        ragzip.create_compressor("random", counter=minilm_counter, config={"sed": 1})
