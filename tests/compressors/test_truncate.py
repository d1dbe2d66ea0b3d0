"""Head truncation and its water-filled budget split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ragzip
from ragzip import Budget, BudgetError
from ragzip.compressors.kept_whole import value_units
from ragzip.compressors.truncate import water_fill
from ragzip.compressors.units import split_words
from ragzip.core.tokenization import TokenCounter


@pytest.mark.parametrize(
    ("sizes", "budget", "expected"),
    [
        ([10, 100, 100], 60, [10, 25, 25]),
        ([100, 100, 100], 10, [4, 3, 3]),
        ([5, 0, 7], 100, [5, 0, 7]),
        ([5, 9], 0, [0, 0]),
        ([], 5, []),
        ([3, 50, 1, 50], 40, [3, 18, 1, 18]),
    ],
)
def test_water_fill_examples(sizes: list[int], budget: int, expected: list[int]) -> None:
    assert water_fill(sizes, budget) == expected


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=500), max_size=12),
    budget=st.integers(min_value=0, max_value=3000),
)
def test_water_fill_is_fair_and_exact(sizes: list[int], budget: int) -> None:
    alloc = water_fill(sizes, budget)
    assert sum(alloc) == min(budget, sum(sizes))
    assert all(0 <= a <= s for a, s in zip(alloc, sizes, strict=True))
    # max-min fair: a passage that was cut has no less than any other share minus one token
    for a, s in zip(alloc, sizes, strict=True):
        if a < s:
            assert all(a >= other - 1 for other in alloc)


PASSAGES = [
    "Yesterday is a song by the Beatles, written by Paul McCartney and first released on the "
    "album Help! in August 1965. It is one of the most covered songs in history.",
    "Short one.",
    "   Leading spaces: Paris is the capital and most populous city of France, with an estimated "
    "population of 2,102,650 residents.",
    "東京は日本の首都であり、世界最大の都市圏を持つ。😀🇫🇷 The emoji make byte-level BPE split "
    "characters into several tokens.",
]


@pytest.mark.parametrize("ratio", [1.5, 2.0, 4.0, 8.0])
def test_keeps_heads_and_fills_the_budget(counter: TokenCounter, ratio: float) -> None:
    truncate = ragzip.create_compressor("truncate", counter=counter)
    result = truncate.compress("who wrote yesterday?", PASSAGES, budget=Budget.compression(ratio))
    for out in result.passages:
        assert len(out.spans) <= 1
        if out.text:
            start, end = out.spans[0]
            assert not out.passage.text[:start].strip()  # only whitespace before the head
            assert out.text == out.passage.text[start:end]
    # the budget is filled: what the passages leave unused is too little for the next whole
    # unit of any cut passage (heads end at unit ends, so a cut can leave more than one token
    # unused; the layout's separators are paid for all passages first)
    assert result.compressed_tokens <= result.budget_tokens
    framing = result.original_tokens - sum(out.original_tokens for out in result.passages)
    slack = result.budget_tokens - framing - sum(out.tokens for out in result.passages)
    assert slack >= 0
    for out in result.passages:
        if out.tokens < out.original_tokens:
            text = out.passage.text
            start = out.spans[0][0] if out.spans else len(text) - len(text.lstrip())
            end = out.spans[0][1] if out.spans else start
            ends = [e for _, e in value_units(text, split_words(text)) if e > end]
            if ends:
                longer = counter.count(text[start : ends[0]])
                assert longer > out.tokens + slack
    # the short passage is kept whole and its leftover goes to the others
    short = result.passages[1]
    assert short.text == "Short one." or result.budget_tokens < 4 * short.original_tokens


def test_shares_are_even(minilm_counter: TokenCounter) -> None:
    long = " ".join(["word"] * 200)
    truncate = ragzip.create_compressor("truncate", counter=minilm_counter)
    result = truncate.compress("q?", [long, long, long], budget=Budget.tokens(90))
    assert [p.tokens for p in result.passages] == [30, 30, 30]
    assert result.passages[0].text == " ".join(["word"] * 30)


def test_never_cuts_an_identifier_or_a_number(counter: TokenCounter) -> None:
    comp = ragzip.create_compressor("truncate", counter=counter)
    uuid = "7f3c9a1b-1111-2222-3333-444455556666"
    passages = [
        f"The sensor id is {uuid} and it was installed in 2019 by the city.",
        "Inspection hotline: +49 89 1234567. The station sits at latitude 48.1374 today.",
    ]
    for n in range(1, 60):
        try:
            result = comp.compress("id?", passages, budget=Budget.tokens(n))
        except BudgetError:  # too small to keep anything whole: refused, never emptied
            continue
        for out in result.passages:
            kept, text = out.text, out.passage.text
            assert text.startswith(kept)
            assert len(kept) == len(text) or not kept or text[len(kept)].isspace(), kept
            assert not kept.endswith(("+49", "+49 89", "hotline:")), kept
