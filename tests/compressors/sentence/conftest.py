"""Shared fixtures of the sentence classifier's tests: the MiniLM tokenizer, a tiny random scorer,
the shipped scorer and the generator's token counter."""

from __future__ import annotations

from typing import Any

import pytest

from ragzip.compressors.sentence.scorer import SentenceScorer, load_scorer
from ragzip.core.tokenization import TokenCounter
from tests.compressors.sentence.support import make_tiny_scorer


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from ragzip.weights import minilm_dir

    return AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)


@pytest.fixture(scope="module")
def tiny_scorer(tokenizer: Any) -> SentenceScorer:
    return make_tiny_scorer(tokenizer)


@pytest.fixture(scope="module")
def trained() -> SentenceScorer:
    return load_scorer()


@pytest.fixture(scope="module")
def gen_counter(minilm_counter: TokenCounter) -> TokenCounter:
    """The generator's tokenizer when ``smollm2_counter`` is available, else MiniLM's."""
    from ragzip import weights as models

    factory = getattr(models, "smollm2_counter", None)
    if factory is None:
        return minilm_counter
    counter: TokenCounter = factory()
    return counter
