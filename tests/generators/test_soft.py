"""Soft context: placeholders in the prompt, vectors spliced in by the generator.

Runs over a tiny random Llama with SmolLM2's tokenizer (same code path as SmolLM2, fast).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from ragzip.core.errors import ConfigError, InputError
from ragzip.core.types import Budget
from ragzip.generators import Generation, OpenAIGenerator
from ragzip.prompts import (
    SOFT_PLACEHOLDER,
    build_messages,
    build_result_messages,
    soft_context,
)
from tests import soft_support as soft

QUERY = "What is the capital of Zorbania?"
PASSAGES = [
    "The capital of Zorbania is Quillton.",
    "",
    "Zorbania borders the Sea of Mists and exports amber.",
]


@pytest.fixture(scope="module")
def gen():  # type: ignore[no-untyped-def]
    return soft.tiny_generator()


@pytest.fixture(scope="module")
def mean_comp(gen):  # type: ignore[no-untyped-def]
    return soft.MeanEmbeddingCompressor(counter=gen.counter, table=soft.embedding_table(gen))


@pytest.fixture(scope="module")
def token_comp(gen):  # type: ignore[no-untyped-def]
    return soft.TokenEmbeddingCompressor(counter=gen.counter, table=soft.embedding_table(gen))


# --- prompts ---------------------------------------------------------------------------------


def test_placeholder_is_one_special_token(gen) -> None:
    assert SOFT_PLACEHOLDER == "<empty_output>"
    assert gen.tokenizer(SOFT_PLACEHOLDER, add_special_tokens=False)["input_ids"] == [16]


def test_soft_context_repeats_the_placeholder_per_vector(mean_comp, token_comp) -> None:
    mean = mean_comp.compress(QUERY, PASSAGES, budget=Budget.compression(1.0))
    assert mean.embeddings is not None and mean.embeddings.shape == (2, soft.HIDDEN)
    # The empty passage has no vector and is left out.
    assert soft_context(mean) == [SOFT_PLACEHOLDER, SOFT_PLACEHOLDER]

    tokens = token_comp.compress(QUERY, PASSAGES, budget=Budget.tokens(12))
    counts = [p.tokens for p in tokens.passages]
    assert sum(counts) == 12 and counts[1] == 0
    assert soft_context(tokens) == [SOFT_PLACEHOLDER * n for n in counts if n]


def test_soft_context_of_a_text_result_is_an_error(gen) -> None:
    from ragzip.registry import create_compressor

    text = create_compressor("identity", counter=gen.counter).compress(
        QUERY, PASSAGES, budget=Budget.compression(1.0)
    )
    with pytest.raises(InputError, match="holds text, not embeddings"):
        soft_context(text)
    # The generic builder falls back to the kept texts.
    assert build_result_messages(text) == build_messages(QUERY, text.texts, question_first=True)


# --- EmbeddedGenerator -----------------------------------------------------------------------


def test_vectors_sit_at_the_placeholder_positions(gen, token_comp) -> None:
    """Token embeddings spliced at the placeholders read exactly as those tokens would."""
    result = token_comp.compress(QUERY, PASSAGES, budget=Budget.compression(1.0))
    messages = build_result_messages(result)
    soft_answer = gen.generate_compressed(result, max_new_tokens=6)

    ids = gen.prompt_ids(messages)
    positions = [i for i, t in enumerate(ids) if t == 16]
    assert len(positions) == result.compressed_tokens
    kept = [
        int(t)
        for p in PASSAGES
        if p
        for t in gen.tokenizer(p, add_special_tokens=False)["input_ids"]
    ]
    for pos, token in zip(positions, kept, strict=True):
        ids[pos] = token
    table = soft.embedding_table(gen)
    reference = gen.generate_from_embeds(table[ids], max_new_tokens=6)
    assert soft_answer.text == reference.text
    assert soft_answer.completion_tokens == reference.completion_tokens
    # The prompt counts every placeholder once: it is the real prompt length.
    assert soft_answer.prompt_tokens == len(ids) == gen.count_prompt_tokens(messages)
    assert 0 < soft_answer.ttft_s <= soft_answer.total_s

    # The splice matters: the bare placeholders give other logits than the vectors.
    with torch.inference_mode():
        bare = gen.model(inputs_embeds=gen.embed_messages(messages)).logits[0, -1]
        spliced = gen.model(
            inputs_embeds=gen.embed_messages(
                messages, placeholder=SOFT_PLACEHOLDER, replacements=result.embeddings
            )
        ).logits[0, -1]
    assert not torch.allclose(bare, spliced)


def test_generate_compressed_of_text_equals_generate(gen) -> None:
    from ragzip.registry import create_compressor

    text = create_compressor("identity", counter=gen.counter).compress(
        QUERY, PASSAGES, budget=Budget.compression(1.0)
    )
    a = gen.generate_compressed(text, max_new_tokens=5, system_prompt="Be brief.")
    messages = build_messages(QUERY, text.texts, system_prompt="Be brief.", question_first=True)
    b = gen.generate(messages, max_new_tokens=5)
    assert (a.text, a.prompt_tokens, a.completion_tokens) == (
        b.text,
        b.prompt_tokens,
        b.completion_tokens,
    )


def test_zero_vectors_answer_from_the_question_alone(gen, mean_comp) -> None:
    result = mean_comp.compress(QUERY, ["", ""], budget=Budget.tokens(1))
    assert result.embeddings is not None and result.embeddings.shape == (0, soft.HIDDEN)
    assert soft_context(result) == []
    out = gen.generate_compressed(result, max_new_tokens=3)
    assert out.prompt_tokens == gen.count_prompt_tokens(build_messages(QUERY, []))


def test_async_variant_matches(gen, mean_comp) -> None:
    result = mean_comp.compress(QUERY, PASSAGES, budget=Budget.compression(1.0))
    sync = gen.generate_compressed(result, max_new_tokens=4)
    run = asyncio.run(gen.agenerate_compressed(result, max_new_tokens=4))
    assert isinstance(run, Generation)
    assert (run.text, run.prompt_tokens) == (sync.text, sync.prompt_tokens)


def test_placeholder_count_must_match_the_vectors(gen) -> None:
    messages = build_messages(QUERY, [SOFT_PLACEHOLDER * 2])
    with pytest.raises(InputError, match="2 placeholder token"):
        gen.generate_soft(messages, np.zeros((3, soft.HIDDEN), np.float32), max_new_tokens=2)
    # A question that itself holds the placeholder is caught the same way.
    tricky = build_messages(f"{SOFT_PLACEHOLDER}?", [SOFT_PLACEHOLDER])
    with pytest.raises(InputError, match="placeholder"):
        gen.generate_soft(tricky, np.zeros((1, soft.HIDDEN), np.float32), max_new_tokens=2)


def test_bad_vectors_are_input_errors(gen) -> None:
    messages = build_messages(QUERY, [SOFT_PLACEHOLDER])
    with pytest.raises(InputError, match=f"\\(n, {soft.HIDDEN}\\)"):
        gen.generate_soft(messages, np.zeros((1, 8), np.float32), max_new_tokens=2)
    with pytest.raises(InputError, match=r"\(n, hidden\)"):
        gen.generate_soft(messages, np.zeros(soft.HIDDEN, np.float32), max_new_tokens=2)
    bad = np.zeros((1, soft.HIDDEN), np.float32)
    bad[0, 3] = np.nan
    with pytest.raises(InputError, match="finite"):
        gen.generate_soft(messages, bad, max_new_tokens=2)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        gen.generate_soft(messages, np.zeros((1, soft.HIDDEN), np.float32), max_new_tokens=0)


def test_embedded_generator_accepts_embeddings(gen) -> None:
    assert gen.accepts_embeddings
    assert gen.embeddings_unsupported_reason() == ""


# --- generators that cannot read vectors -----------------------------------------------------


def test_text_only_generator_names_the_reason(gen, mean_comp) -> None:
    result = mean_comp.compress(QUERY, PASSAGES, budget=Budget.compression(1.0))
    remote = OpenAIGenerator("http://127.0.0.1:9", "some-model", counter=gen.counter)
    assert not remote.accepts_embeddings
    with pytest.raises(ConfigError, match="cannot read soft-compressed context") as info:
        remote.generate_compressed(result, max_new_tokens=2)
    assert "prompt_embeds" in str(info.value)
