"""The base class's promise, on inputs random search found: what is sent is never empty while
the context has text (a ratio is raised, a token budget is refused)."""

from __future__ import annotations

import pytest

from ragzip.core.errors import BudgetError
from ragzip.core.framing import ContextFormat
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Budget
from ragzip.registry import create_compressor
from ragzip.weights import smollm2_counter

QUERY = "who wrote the song yesterday"
PROMPT = ContextFormat(
    template="[{index}] {text}", separator="\n\n", prefix="Context:\n", suffix="\n\nQuestion: "
)
TITLED = ContextFormat(
    template="{text}", separator="\n---\n", prefix="Docs:\n", title_template="## {title}\n{text}"
)


def test_a_lone_control_character_is_not_kept_text(minilm_counter: TokenCounter) -> None:
    truncate = create_compressor("truncate", counter=minilm_counter)
    with pytest.raises(BudgetError, match="keeps nothing of this context"):
        truncate.compress(QUERY, ["0", "\x1b"], budget=Budget(max_tokens=1), layout=PROMPT)


def test_a_ratio_is_raised_when_what_fits_is_trimmed_away() -> None:
    token = create_compressor("token", counter=smollm2_counter())
    result = token.compress(QUERY, [" \r:; ;"], budget=Budget(ratio=2.0), layout=TITLED)
    assert result.budget_raised
    assert any(p.text.strip() for p in result.passages)
    assert result.compressed_tokens <= result.budget_tokens
