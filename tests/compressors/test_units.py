"""Units and the exact greedy fill shared by the selection compressors."""

from __future__ import annotations

import pytest

from ragzip.compressor import join_spans
from ragzip.compressors.units import greedy_fill, sentence_spans, split_units, word_spans
from ragzip.errors import ConfigError
from ragzip.text import split_sentences
from ragzip.tokenization import TokenCounter

TEXTS = [
    "Yesterday is a song by the Beatles. It was written by Paul McCartney. It is famous.",
    "",
    "Paris is the capital of France.\n\nThe Seine flows through it.",
]


def test_sentence_units_follow_the_splitter(counter: TokenCounter) -> None:
    units = split_units(TEXTS, counter)
    expected = [(i, s, e) for i, t in enumerate(TEXTS) for s, e in split_sentences(t)]
    assert [(u.passage, u.start, u.end) for u in units.items] == expected
    for u in units.items:
        assert u.text == TEXTS[u.passage][u.start : u.end]
        assert u.tokens == counter.count(u.text)
    assert sentence_spans(TEXTS[0]) == tuple(split_sentences(TEXTS[0]))


def test_word_units(counter: TokenCounter) -> None:
    units = split_units(TEXTS, counter, granularity="word")
    assert [u.text for u in units.items if u.passage == 2] == TEXTS[2].split()
    assert word_spans("  a  bc ") == ((2, 3), (5, 7))


def test_unknown_granularity(minilm_counter: TokenCounter) -> None:
    with pytest.raises(ConfigError, match="granularity"):
        split_units(TEXTS, minilm_counter, granularity="clause")  # type: ignore[arg-type]


def test_priority_order_and_skipping(minilm_counter: TokenCounter) -> None:
    units = split_units(TEXTS, minilm_counter)
    costs = [u.tokens for u in units.items]
    # after units 3 and 0, unit 1 no longer fits but the smaller unit 2 does
    order = [3, 0, 1, 2, 4]
    budget = costs[3] + costs[0] + costs[2]
    assert costs[1] > costs[2]
    sel = greedy_fill(units, order, budget, minilm_counter)
    assert sel.kept == (3, 0, 2)  # in priority order
    assert sel.tokens <= budget
    assert sel.spans[0] == (units[0].span, units[2].span)
    assert sel.spans[1] == ()
    assert sel.spans[2] == (units[3].span,)


def test_units_outside_the_order_are_never_kept(minilm_counter: TokenCounter) -> None:
    units = split_units(TEXTS, minilm_counter)
    sel = greedy_fill(units, [2, 2, 2], 10_000, minilm_counter)
    assert sel.kept == (2,)


def test_bad_index(minilm_counter: TokenCounter) -> None:
    units = split_units(TEXTS, minilm_counter)
    with pytest.raises(ConfigError, match="out of range"):
        greedy_fill(units, [0, 99], 100, minilm_counter)


def test_exact_verification_when_joins_cost_more(bytebpe_counter: TokenCounter) -> None:
    """Whitespace between adjacent kept sentences is kept by the join and costs tokens in a
    byte-level BPE; unit costs alone underestimate, and the exact check must catch it."""
    text = "\n\n\n\n".join(["One fact.", "Two facts.", "Three facts.", "Four facts."])
    units = split_units([text], bytebpe_counter)
    assert len(units) == 4
    estimate = sum(u.tokens for u in units.items)
    assert bytebpe_counter.count(text) > estimate  # the premise of this test
    sel = greedy_fill(units, range(4), estimate, bytebpe_counter)
    joined = join_spans(text, sel.spans[0])[0]
    assert sel.tokens == bytebpe_counter.count(joined) <= estimate
    assert len(sel.kept) < 4
    assert sel.kept[:2] == (0, 1)  # the check drops from the low-priority end


def test_selection_tokens_match_the_base_count(counter: TokenCounter) -> None:
    units = split_units(TEXTS, counter)
    for budget in range(0, sum(u.tokens for u in units.items) + 3, 3):
        sel = greedy_fill(units, list(reversed(range(len(units)))), budget, counter)
        exact = sum(
            counter.count(join_spans(t, s)[0]) for t, s in zip(TEXTS, sel.spans, strict=True)
        )
        assert sel.tokens == exact <= budget
