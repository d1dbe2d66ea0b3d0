"""EmbeddedGenerator.stream: the same tokens as generate, handed out one by one."""

from __future__ import annotations

import pytest

from ragzip.core.errors import ConfigError, InputError
from ragzip.generators.embedded import EmbeddedGenerator
from tests.soft_support import small_generator

MESSAGES = [{"role": "user", "content": "Name a river in France."}]


@pytest.fixture(scope="module")
def tiny() -> EmbeddedGenerator:
    return small_generator(seed=1, max_positions=256, name="tiny")


def test_stream_yields_the_text_and_tokens_of_generate(tiny: EmbeddedGenerator) -> None:
    whole = tiny.generate(MESSAGES, max_new_tokens=15)
    pieces = list(tiny.stream(MESSAGES, max_new_tokens=15))
    assert len(pieces) == whole.completion_tokens
    assert "".join(p.text for p in pieces) == whole.text
    assert [p.finish_reason for p in pieces[:-1]] == [None] * (len(pieces) - 1)
    assert pieces[-1].finish_reason == whole.finish_reason == "length"


def test_a_too_long_prompt_fails_before_iterating(tiny: EmbeddedGenerator) -> None:
    with pytest.raises(InputError, match="reads at most"):
        tiny.stream([{"role": "user", "content": "word " * 400}])
    with pytest.raises(InputError):
        tiny.stream_ids([])
    with pytest.raises(InputError):
        tiny.stream_ids([len(tiny.tokenizer) + 5])
    with pytest.raises(ConfigError):
        tiny.stream(MESSAGES, max_new_tokens=0)


def test_closing_a_stream_early_frees_the_model(tiny: EmbeddedGenerator) -> None:
    stream = tiny.stream(MESSAGES, max_new_tokens=50)
    first = next(stream)
    assert first.finish_reason is None
    stream.close()
    assert tiny.generate(MESSAGES, max_new_tokens=2).completion_tokens >= 1
