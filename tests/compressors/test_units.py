"""Units and the exact greedy fill shared by the selection compressors."""

from __future__ import annotations

import pytest

from ragzip.compressor import join_spans
from ragzip.compressors.kept_whole import named_values, value_units
from ragzip.compressors.units import (
    greedy_fill,
    sentence_spans,
    split_units,
    split_words,
    word_spans,
)
from ragzip.core.errors import ConfigError
from ragzip.core.text import split_sentences
from ragzip.core.tokenization import TokenCounter

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


def _units(text: str) -> list[str]:
    return [text[s:e] for s, e in value_units(text, split_words(text))]


LONG = " with more words after it on the same long line"
JSON = '{"lat": 48.1374, "lon": 11.5755, "name": "Munich", "kind": "station", "open": true}'


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        (
            "Call the inspection hotline: +49 89 1234567." + LONG,
            "Call the inspection hotline: +49 89 1234567.",
        ),
        (JSON, '{"lat": 48.1374,'),
        (JSON, '"lon": 11.5755,'),
        ("Unit 16: SN-1\nUnit 17: SN-74694-FL\nUnit 18: SN-3", "Unit 17: SN-74694-FL"),
        ("It opened on 12 May 2024 in Munich" + LONG, "12 May 2024"),
        ("The station sits at latitude 48.1374 today" + LONG, "latitude 48.1374"),
        ("The tower is 41.7 m tall" + LONG, "41.7 m"),
        ("It was built in 2019 by the city" + LONG, "2019"),
        ("It cost $ 5 million in total" + LONG, "cost $ 5 million"),
        ("Revenue 2023: 41.7, 2024: 42.1 and more" + LONG, "2024: 42.1"),
        (
            "id = 7f3c9a1b-1111-2222-3333-444455556666 done" + LONG,
            "id = 7f3c9a1b-1111-2222-3333-444455556666",
        ),
        ("Short line 7: kept as one record", "Short line 7: kept as one record"),
    ],
)
def test_values_stay_with_their_keys_and_whole(text: str, unit: str) -> None:
    assert unit in _units(text)


def test_value_units_cover_every_word_and_respect_lines() -> None:
    text = "Plain words here.\nA table row: 1 2 3 4 5 6 7 8 9 10 11 12 13 14\n\nkey:\nvalue"
    words = split_words(text)
    units = value_units(text, words)
    starts = {s for s, _ in words}
    ends = {e for _, e in words}
    assert all(s in starts and e in ends for s, e in units)
    assert sum(len(split_words(text[s:e])) for s, e in units) == len(words)
    assert all("\n" not in text[s:e] for s, e in units)
    assert all(len(split_words(text[s:e])) <= 8 for s, e in units)
    assert "key:" in _units(text)  # a key does not take a value from the next line


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("unit 17 is red", True),
        ("(17)", True),
        ("it was 17.", True),
        ("unit 170", False),
        ("v1.17", False),
        ("17.5 m", False),
        ("17-a", False),
        ("x17", False),
    ],
)
def test_named_values_match_the_questions_numbers_as_whole_words(text: str, named: bool) -> None:
    pattern = named_values("What is the serial number of unit 17?")
    assert pattern is not None
    assert bool(pattern.search(text)) is named


def test_a_question_naming_no_value_names_none() -> None:
    assert named_values("Who wrote Hamlet?") is None
