"""Pipeline.run / arun with a soft compressor: vectors flow from the compressor to the generator."""

from __future__ import annotations

import asyncio

import pytest

from ragzip.core.errors import ConfigError
from ragzip.core.types import Budget
from ragzip.generators import OpenAIGenerator
from ragzip.pipeline import Pipeline
from ragzip.prompts import NUMBERED_CONTEXT, PROMPT_CONTEXT, build_messages, soft_context
from tests import soft_support as soft

QUERY, PASSAGES = soft.QUERY, soft.PASSAGES


def test_run_and_arun_with_a_soft_compressor() -> None:
    gen = soft.tiny_generator()
    comp = soft.MeanEmbeddingCompressor(counter=gen.counter, table=soft.embedding_table(gen))
    pipe = Pipeline(comp, Budget.tokens(2), generator=gen, max_new_tokens=4)
    result = pipe.run(QUERY, PASSAGES)
    assert result.compression.embeddings is not None
    assert result.compression.embeddings.shape == (2, soft.HIDDEN)
    assert [p.tokens for p in result.compression.passages] == [1, 1, 0]
    assert result.generation is not None
    messages = build_messages(QUERY, soft_context(result.compression))
    assert result.prompt_tokens == result.generation.prompt_tokens
    assert result.prompt_tokens == gen.count_prompt_tokens(messages)
    assert set(result.timings) == {"retrieve", "compress", "generate", "total"}
    assert result.generation.ttft_s > 0

    again = asyncio.run(pipe.arun(QUERY, PASSAGES))
    assert again.answer == result.answer
    assert again.prompt_tokens == result.prompt_tokens


def test_soft_prompt_is_shorter_than_the_text_prompt() -> None:
    from ragzip.registry import create_compressor

    gen = soft.tiny_generator()
    soft_comp = soft.MeanEmbeddingCompressor(counter=gen.counter, table=soft.embedding_table(gen))
    text = create_compressor("identity", counter=gen.counter)
    full = Pipeline(text, Budget.compression(1.0), generator=gen, max_new_tokens=2).run(
        QUERY, PASSAGES
    )
    small = Pipeline(soft_comp, Budget.compression(1.0), generator=gen, max_new_tokens=2).run(
        QUERY, PASSAGES
    )
    assert small.compression.compressed_tokens == 3
    # the text context stands between the question and the question again; the soft prompt
    # holds the numbered block with one placeholder per passage instead of its text
    text_messages = build_messages(QUERY, full.compression.texts, question_first=True)
    assert full.prompt_tokens == gen.count_prompt_tokens(text_messages)
    assert full.compression.compressed_tokens == gen.counter.count(
        PROMPT_CONTEXT.render_texts(full.compression.texts)
    )
    soft_block = gen.counter.count(NUMBERED_CONTEXT.render_texts(soft_context(small.compression)))
    assert soft_block < full.compression.compressed_tokens
    assert small.prompt_tokens < full.prompt_tokens


def test_text_only_generator_is_a_config_error() -> None:
    gen = soft.tiny_generator()
    comp = soft.MeanEmbeddingCompressor(counter=gen.counter, table=soft.embedding_table(gen))
    remote = OpenAIGenerator("http://127.0.0.1:9", "m", counter=gen.counter, max_retries=0)
    pipe = Pipeline(comp, Budget.tokens(2), generator=remote)
    with pytest.raises(ConfigError, match="cannot read soft-compressed context"):
        pipe.run(QUERY, PASSAGES)
    # Without a generator the pipeline only compresses, soft or not.
    only = Pipeline(comp, Budget.tokens(2)).run(QUERY, PASSAGES)
    assert only.generation is None and only.compression.compressed_tokens == 2


@pytest.mark.slow
def test_smollm2_reads_its_own_token_embeddings() -> None:
    """SmolLM2 answers from soft vectors that are exactly the passage's token embeddings."""
    from ragzip.generators.embedded import EmbeddedGenerator

    gen = EmbeddedGenerator(device="cpu")
    comp = soft.TokenEmbeddingCompressor(counter=gen.counter, table=soft.embedding_table(gen))
    pipe = Pipeline(comp, Budget.compression(1.0), generator=gen, max_new_tokens=12)
    result = pipe.run(QUERY, PASSAGES[:1])
    assert result.compression.compressed_tokens == gen.counter.count(PASSAGES[0])
    assert "Quillton" in result.answer
