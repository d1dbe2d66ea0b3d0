"""The generation stage with a soft compressor: EM/F1, real prompt lengths and TTFT per row."""

from __future__ import annotations

import pytest

from ragzip.core.errors import ConfigError
from ragzip.core.types import Budget, Passage
from ragzip.evaluation.config import NO_CONTEXT, UNCOMPRESSED
from ragzip.evaluation.stages import evaluate_generation
from ragzip.experiments.datasets import NQExample
from ragzip.generators import OpenAIGenerator
from ragzip.prompts import build_messages, soft_context
from tests.soft_support import MeanEmbeddingCompressor, embedding_table, tiny_generator

QUESTIONS = [
    NQExample(0, "What is the capital of Zorbania?", ("Quillton",), "Zorbania", "..."),
    NQExample(1, "Who painted the Blue Orchard?", ("Mira Tallis",), "Blue Orchard", "..."),
]
CONTEXTS = [
    [
        Passage("The capital of Zorbania is Quillton, a port on the Sea of Mists."),
        Passage("Zorbania exports amber and dried figs."),
    ],
    [
        Passage("The Blue Orchard was painted by Mira Tallis in 1911."),
        Passage("Tallis later taught in Vienna."),
        Passage("The painting hangs in the city museum."),
    ],
]


def test_soft_rows_report_vectors_prompt_length_and_ttft() -> None:
    gen = tiny_generator()
    soft = MeanEmbeddingCompressor(counter=gen.counter, table=embedding_table(gen))
    rows, examples = evaluate_generation(
        gen, {"soft": soft}, QUESTIONS, CONTEXTS, 4.0, max_new_tokens=4, n_examples=1
    )
    assert [r.setting for r in rows] == [UNCOMPRESSED, NO_CONTEXT, "soft"]
    row = rows[2]
    assert row.n == 2 and row.ratio == 4.0
    # One vector per passage, as many as the 4x budget allows.
    expected_vectors = []
    expected_prompt = []
    for q, ctx in zip(QUESTIONS, CONTEXTS, strict=True):
        result = soft.compress(q.question, ctx, budget=Budget.compression(4.0))
        expected_vectors.append(result.compressed_tokens)
        messages = build_messages(q.question, soft_context(result))
        expected_prompt.append(gen.count_prompt_tokens(messages))
    assert row.context_tokens == pytest.approx(sum(expected_vectors) / 2)
    assert row.prompt_tokens == pytest.approx(sum(expected_prompt) / 2)
    # The soft prompt is far shorter than the full text prompt.
    assert row.prompt_tokens < rows[0].prompt_tokens
    assert row.ttft_ms > 0 and row.total_ms >= row.ttft_ms and row.compress_ms > 0
    assert 0.0 <= row.em <= 1.0 and 0.0 <= row.f1 <= 1.0
    assert [e["setting"] for e in examples] == [UNCOMPRESSED, NO_CONTEXT, "soft"]
    assert rows[1].context_tokens == 0 < row.context_tokens


def test_text_only_generator_fails_clearly() -> None:
    gen = tiny_generator()
    soft = MeanEmbeddingCompressor(counter=gen.counter, table=embedding_table(gen))
    remote = OpenAIGenerator("http://127.0.0.1:9", "m", counter=gen.counter, max_retries=0)
    # Found before any generation: the unreachable server is never called.
    with pytest.raises(ConfigError, match=r"'soft' returns embeddings.*cannot read them"):
        evaluate_generation(remote, {"soft": soft}, QUESTIONS, CONTEXTS, 4.0, max_new_tokens=2)
