from __future__ import annotations

import math

import pytest

from ragzip import Budget, BudgetError, InputError, Passage


def test_budget_resolve_tokens_ratio_and_both() -> None:
    assert Budget.tokens(100).resolve(1000) == 100
    assert Budget.tokens(100).resolve(40) == 40
    assert Budget.compression(4).resolve(1000) == 250
    assert Budget.compression(3).resolve(10) == 3
    assert Budget(max_tokens=100, ratio=2).resolve(1000) == 100
    assert Budget(max_tokens=600, ratio=2).resolve(1000) == 500
    assert Budget.tokens(1).resolve(10) == 1
    assert Budget.compression(100).resolve(10) == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("256", Budget(max_tokens=256)), ("4x", Budget(ratio=4.0)), ("2.5X", Budget(ratio=2.5))],
)
def test_budget_parse(text: str, expected: Budget) -> None:
    assert Budget.parse(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-3", "0.5x", "2.5", "x4", "inf"])
def test_budget_parse_rejects(text: str) -> None:
    with pytest.raises(BudgetError):
        Budget.parse(text)


@pytest.mark.parametrize(
    "kwargs", [{}, {"max_tokens": -1}, {"ratio": 0.5}, {"ratio": math.nan}, {"max_tokens": 1.5}]
)
def test_budget_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(BudgetError):
        Budget(**kwargs)


def test_passage_coerce_and_ids() -> None:
    p = Passage.coerce({"text": "hello", "title": "T", "url": "u"})
    assert p.text == "hello" and p.title == "T" and p.metadata["url"] == "u"
    assert p.id and p.id == Passage("hello", title="T").id
    assert Passage.coerce("x").text == "x"
    with pytest.raises(InputError):
        Passage.coerce({"title": "no text"})
    with pytest.raises(InputError):
        Passage.coerce(3)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        Passage(text=None)  # type: ignore[arg-type]


def test_passage_metadata_is_copied_and_read_only() -> None:
    meta = {"a": 1}
    p = Passage("t", metadata=meta)
    meta["a"] = 2
    assert p.metadata["a"] == 1
    with pytest.raises(TypeError):
        p.metadata["a"] = 3  # type: ignore[index]


def test_ranked_orders_by_relevance_and_keeps_unscored_last() -> None:
    from ragzip.core.types import CompressedPassage, CompressionResult

    def kept(text: str, relevance: float | None) -> CompressedPassage:
        return CompressedPassage(Passage(text), text, ((0, len(text)),), 1, 1, relevance)

    result = CompressionResult(
        "x", "q", (kept("a", None), kept("b", 0.2), kept("c", 0.9), kept("d", None)), 4, 4, 4
    )
    assert [p.text for p in result.ranked()] == ["c", "b", "a", "d"]
    assert [p.text for p in result.passages] == ["a", "b", "c", "d"]  # the context's order stays
