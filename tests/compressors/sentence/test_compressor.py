"""The sentence compressor: configuration, input limits and its contract on a tiny random scorer
(ragzip.compressors.sentence.compressor)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ragzip
from ragzip import PLAIN_CONTEXT, Budget, BudgetError, ConfigError, InputError, Passage
from ragzip.cache.feature_cache import forget_remembered
from ragzip.compressor import REMEMBERED_REQUESTS
from ragzip.compressors.sentence.compressor import SentenceCompressor
from ragzip.compressors.sentence.features import (
    InputLimits,
    PassageSentences,
)
from ragzip.compressors.sentence.scorer import SentenceScorer
from ragzip.compressors.units import place_penalty, sentence_spans, split_units
from ragzip.core.tokenization import TokenCounter
from ragzip.registry import get_class
from tests.compressors.sentence.support import (
    BATH,
    EASY,
    PRIDE,
    REGENCY,
    assert_whole_sentences,
    count_predictions,
    make_tiny_scorer,
    sentence_count,
)

# ---------------------------------------------------------------------------- configuration


def test_registered_under_its_name() -> None:
    assert get_class("sentence") is SentenceCompressor
    assert "sentence" in ragzip.available_compressors()


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "greedy"},
        {"threshold": 1.5},
        {"threshold": float("nan")},
        {"threshold": True},
        {"batch_size": 0},
        {"precision": "float16"},
        {"min_sentences": -1},
        {"thresold": 0.3},
    ],
)
def test_bad_config_is_a_config_error(bad: dict[str, Any], minilm_counter: TokenCounter) -> None:
    with pytest.raises(ConfigError):
        ragzip.create_compressor("sentence", counter=minilm_counter, config=bad)


def test_input_limits_are_checked() -> None:
    with pytest.raises(ConfigError):
        InputLimits(query=0)
    with pytest.raises(ConfigError):
        InputLimits(context=-1)


def test_bad_input_is_an_input_error(
    tiny_scorer: SentenceScorer, minilm_counter: TokenCounter
) -> None:
    comp = SentenceCompressor(counter=minilm_counter, scorer=tiny_scorer)
    with pytest.raises(InputError):
        comp.compress("  ", [PRIDE], budget=Budget.compression(2))
    with pytest.raises(InputError):
        comp.compress("q", "a single string", budget=Budget.compression(2))


# ---------------------------------------------------------------------------- contract (tiny)

_WORDS = ["the", "river", "Paris", "1965", "naïve", "Dr.", "U.S.", "e.g.", "東京", "😀", "Ω"]
_sentence = st.builds(
    lambda ws, end: " ".join(ws) + end,
    st.lists(st.sampled_from(_WORDS), min_size=1, max_size=14),
    st.sampled_from([".", "!", "?", "", "。"]),
)
_passage = st.one_of(
    st.builds(
        lambda ss, sep, title: {"text": sep.join(ss), "title": title},
        st.lists(_sentence, min_size=0, max_size=7),
        st.sampled_from([" ", "\n", "\n\n"]),
        st.text(max_size=15),
    ),
    st.text(max_size=120),
)
_budget = st.one_of(
    st.integers(min_value=1, max_value=250).map(Budget.tokens),
    st.floats(min_value=1.0, max_value=16.0).map(Budget.compression),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    query=st.text(min_size=1, max_size=30).filter(str.strip),
    passages=st.lists(_passage, min_size=0, max_size=6),
    budget=_budget,
    mode=st.sampled_from(["adaptive", "budgeted"]),
    threshold=st.floats(min_value=0.0, max_value=1.0),
)
def test_contract_properties(
    tiny_scorer: SentenceScorer,
    minilm_counter: TokenCounter,
    trim_warnings: list[str],
    query: str,
    passages: list[dict[str, str] | str],
    budget: Budget,
    mode: str,
    threshold: float,
) -> None:
    config = SentenceCompressor.Config(mode=mode, threshold=threshold)
    comp = SentenceCompressor(config, counter=minilm_counter, scorer=tiny_scorer)
    sent = (
        PLAIN_CONTEXT.render(
            [Passage.coerce(p) for p in passages], [Passage.coerce(p).text for p in passages]
        )[0]
        if passages
        else ""
    )
    original = minilm_counter.count(sent) if sent else 0
    if original > 0 and budget.resolve(original) == 0:
        with pytest.raises(BudgetError):
            comp.compress(query, passages, budget=budget)
        return
    try:
        result = comp.compress(query, passages, budget=budget)
    except BudgetError as exc:  # a token budget that keeps nothing is refused, never emptied
        assert budget.max_tokens is not None and "keeps nothing" in str(exc)
        return
    assert not trim_warnings
    assert result.query == query
    assert result.compressor == "sentence"
    recount = minilm_counter.count(result.context) if result.context else 0
    assert recount == result.compressed_tokens <= result.budget_tokens
    assert len(result.passages) == len(passages)
    assert_whole_sentences(result)
    again = comp.compress(query, passages, budget=budget)
    assert [p.spans for p in again.passages] == [p.spans for p in result.passages]


def test_position_prior_orders_the_fill(
    tiny_scorer: SentenceScorer, minilm_counter: TokenCounter
) -> None:
    """With the prior, a slightly less probable sentence of an earlier passage is kept first."""
    comp = SentenceCompressor(counter=minilm_counter, scorer=tiny_scorer)
    units = split_units(["Passage one here.", "Passage two here."], minilm_counter)
    probs = np.array([0.5, 0.6], dtype=np.float32)
    room = max(u.tokens for u in units.items)  # one sentence fits, not two

    def kept(prior: np.ndarray | None) -> list[str]:
        return [units[i].text for i in comp.select(units, probs, room, prior=prior).kept]

    assert kept(None) == ["Passage two here."]
    assert kept(-place_penalty([u.passage for u in units.items], 0.2)) == ["Passage one here."]
    assert comp.config.position_weight == 0.2


def test_empty_and_zero_budget(tiny_scorer: SentenceScorer, minilm_counter: TokenCounter) -> None:
    comp = SentenceCompressor(counter=minilm_counter, scorer=tiny_scorer)
    assert comp.compress("q", [], budget=Budget.tokens(10)).passages == ()
    with pytest.raises(BudgetError):
        comp.compress("q", ["", "  \n", PRIDE], budget=Budget.compression(10_000))
    result = comp.compress("q", ["", "  \n"], budget=Budget.tokens(1))
    assert result.compressed_tokens == 0


def test_adaptive_falls_back_to_min_sentences(
    tiny_scorer: SentenceScorer, minilm_counter: TokenCounter
) -> None:
    passages = [PRIDE, BATH]
    query = EASY[0]
    for minimum in (0, 1, 2):
        config = SentenceCompressor.Config(mode="adaptive", threshold=1.0, min_sentences=minimum)
        comp = SentenceCompressor(config, counter=minilm_counter, scorer=tiny_scorer)
        result = comp.compress(query, passages, budget=Budget.compression(1))
        assert sentence_count(result) == minimum
        assert_whole_sentences(result)
    # a budget too small for the most probable sentence still keeps one that fits
    smallest = min(
        minilm_counter.count(p.text[s:e]) for p in passages for s, e in sentence_spans(p.text)
    )
    comp = SentenceCompressor(
        SentenceCompressor.Config(mode="adaptive", threshold=1.0),
        counter=minilm_counter,
        scorer=tiny_scorer,
    )
    result = comp.compress(query, passages, budget=Budget.tokens(smallest))
    assert sentence_count(result) == 1


def test_kept_whole_or_dropped_whole_on_nq_passages(
    tiny_scorer: SentenceScorer, minilm_counter: TokenCounter, data_dir: Path
) -> None:
    """On real passages, at every budget and in both modes, no sentence is ever cut."""
    from ragzip.experiments.datasets import nq_split

    questions = nq_split("val", data_dir)[:6]
    passages = [Passage(text=q.text, title=q.title) for q in questions]
    for mode in ("adaptive", "budgeted"):
        config = SentenceCompressor.Config(mode=mode, threshold=0.5)
        comp = SentenceCompressor(config, counter=minilm_counter, scorer=tiny_scorer)
        for q in questions[:3]:
            for budget in (Budget.compression(r) for r in (1.0, 1.5, 2.0, 4.0, 8.0)):
                result = comp.compress(q.question, passages, budget=budget)
                assert result.compressed_tokens <= result.budget_tokens
                assert_whole_sentences(result)


def test_a_repeated_request_is_scored_once_by_default(
    tokenizer: Any, minilm_counter: TokenCounter
) -> None:
    scorer = make_tiny_scorer(tokenizer)
    comp = SentenceCompressor(counter=minilm_counter, scorer=scorer)
    assert scorer.cache_size == REMEMBERED_REQUESTS
    calls = count_predictions(scorer)
    first = comp.compress(EASY[0], [BATH, PRIDE], budget=Budget.compression(4))
    again = comp.compress(EASY[0], [BATH, PRIDE], budget=Budget.compression(4))
    assert len(calls) == 1
    assert [p.spans for p in first.passages] == [p.spans for p in again.passages]
    forget_remembered(comp)  # what a cold measurement starts with
    comp.compress(EASY[0], [BATH, PRIDE], budget=Budget.compression(4))
    assert len(calls) == 2


def test_score_cache_reuses_probabilities(tokenizer: Any, minilm_counter: TokenCounter) -> None:
    scorer = make_tiny_scorer(tokenizer, cache_size=2)
    calls = count_predictions(scorer)
    inputs = {
        name: [PassageSentences(p.title, tuple(p.text[s:e] for s, e in sentence_spans(p.text)))]
        for name, p in (("pride", PRIDE), ("bath", BATH), ("regency", REGENCY))
    }
    first = scorer.score(EASY[0], inputs["pride"])
    again = scorer.score(EASY[0], inputs["pride"])
    assert len(calls) == 1
    np.testing.assert_array_equal(first[0], again[0])
    again[0][:] = -1  # callers get copies
    np.testing.assert_array_equal(scorer.score(EASY[0], inputs["pride"])[0], first[0])
    scorer.score("another question?", inputs["pride"])  # the question is part of the key
    scorer.score(EASY[0], inputs["pride"], precision="bfloat16")  # and the precision
    assert len(calls) == 3
    scorer.score(EASY[0], inputs["bath"])
    scorer.score(EASY[0], inputs["pride"])  # evicted: two requests remembered
    assert len(calls) == 5
    # a compressor asking for a cache makes it at least that large, never smaller
    config = SentenceCompressor.Config(cache_size=8)
    SentenceCompressor(config, counter=minilm_counter, scorer=scorer)
    assert scorer.cache_size == 8
    SentenceCompressor(
        SentenceCompressor.Config(cache_size=1), counter=minilm_counter, scorer=scorer
    )
    assert scorer.cache_size == 8
    # compressing at several budgets scores the context once, with the same selections
    uncached = make_tiny_scorer(tokenizer)
    cached_comp = SentenceCompressor(
        SentenceCompressor.Config(mode="budgeted"), counter=minilm_counter, scorer=scorer
    )
    plain_comp = SentenceCompressor(
        SentenceCompressor.Config(mode="budgeted"), counter=minilm_counter, scorer=uncached
    )
    before = len(calls)
    for ratio in (1.0, 2.0, 4.0):
        budget = Budget.compression(ratio)
        a = cached_comp.compress(EASY[0], [BATH, PRIDE, REGENCY], budget=budget)
        b = plain_comp.compress(EASY[0], [BATH, PRIDE, REGENCY], budget=budget)
        assert [p.spans for p in a.passages] == [p.spans for p in b.passages]
    assert len(calls) == before + 1
    with pytest.raises(ConfigError):
        SentenceCompressor.Config(cache_size=-1)
    with pytest.raises(ConfigError):
        scorer.reserve_cache(-2)


def test_spec_selects_the_mode(tiny_scorer: SentenceScorer, minilm_counter: TokenCounter) -> None:
    comp = ragzip.create_compressor(
        "sentence:mode=budgeted;threshold=0.4;batch_size=4",
        counter=minilm_counter,
        scorer=tiny_scorer,
    )
    assert isinstance(comp, SentenceCompressor)
    assert comp.config == SentenceCompressor.Config(mode="budgeted", threshold=0.4, batch_size=4)
    assert comp.threshold == 0.4
