"""Shared fixtures of the token classifier's tests: a tiny random encoder with the real MiniLM
tokenizer (budget and robustness properties do not depend on the model's quality) and the
compressor with the shipped weights."""

from __future__ import annotations

from typing import Any

import pytest

import ragzip
from ragzip.compressors.token.compressor import TokenCompressor
from ragzip.core.tokenization import TokenCounter
from tests.compressors.support import tiny_bert_config


@pytest.fixture(scope="module")
def tiny() -> TokenCompressor.Config:
    """Settings for the tiny-model compressor (small windows exercise window cutting)."""
    return TokenCompressor.Config(max_window=96, max_query_tokens=16, batch_size=4)


@pytest.fixture(scope="module")
def tiny_parts() -> tuple[Any, Any]:
    """A 1-layer, 32-wide random BertForTokenClassification with the real MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertForTokenClassification

    from ragzip.weights import minilm_dir

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    torch.manual_seed(0)
    config = tiny_bert_config(tokenizer.vocab_size, layers=1, num_labels=2)
    return BertForTokenClassification(config).eval(), tokenizer


@pytest.fixture(scope="module")
def tiny_compressor(
    smollm2_counter: TokenCounter, tiny_parts: tuple[Any, Any], tiny: TokenCompressor.Config
) -> TokenCompressor:
    model, tokenizer = tiny_parts
    return TokenCompressor(tiny, counter=smollm2_counter, model=model, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def shipped(smollm2_counter: TokenCounter) -> TokenCompressor:
    """The compressor with the shipped weights, built through the registry."""
    compressor = ragzip.create_compressor("token", counter=smollm2_counter)
    assert isinstance(compressor, TokenCompressor)
    return compressor
