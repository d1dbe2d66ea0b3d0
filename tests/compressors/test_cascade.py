"""``cascade``: coarse sentences, then words inside them, with the real shipped classifiers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

import ragzip
from ragzip import Budget, ConfigError
from ragzip.cache.feature_cache import forget_remembered
from ragzip.compressor import CompressionRequest
from ragzip.compressors.cascade import EXPANSION, CascadeCompressor, expansion
from ragzip.compressors.sentence import SentenceCompressor
from ragzip.compressors.token import TokenCompressor
from ragzip.core.tokenization import TokenCounter
from ragzip.experiments.answers import answer_in_text
from ragzip.prompts import NUMBERED_CONTEXT

from .conftest import NQCase, context_recall

QUESTION = "When was the Eiffel Tower completed?"
PASSAGES = [
    {
        "title": "Eiffel Tower",
        "text": "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. "
        "It was designed by the engineering company of Gustave Eiffel. Construction began in "
        "January 1887 and the tower was completed on 31 March 1889, in time for the World's "
        "Fair. It is 330 metres tall and was the tallest structure in the world until 1930.",
    },
    {
        "title": "Paris",
        "text": "Paris is the capital and largest city of France. The city has an estimated "
        "population of 2,102,650 residents. Since the 17th century Paris has been a centre of "
        "finance, diplomacy, commerce, fashion and science.",
    },
    {
        "title": "Gustave Eiffel",
        "text": "Gustave Eiffel was a French civil engineer. A graduate of the Ecole Centrale "
        "des Arts et Manufactures, he made his name with various bridges for the French railway "
        "network. His company built the Statue of Liberty's internal frame.",
    },
]


@pytest.fixture(scope="module")
def stages(minilm_counter: TokenCounter) -> tuple[SentenceCompressor, TokenCompressor]:
    return SentenceCompressor(counter=minilm_counter), TokenCompressor(counter=minilm_counter)


def _cascade(
    stages: tuple[SentenceCompressor, TokenCompressor], counter: TokenCounter, **config: Any
) -> CascadeCompressor:
    coarse, fine = stages
    return CascadeCompressor(
        CascadeCompressor.Config(**config), counter=counter, coarse=coarse, fine=fine
    )


def test_expansion_follows_the_ratio() -> None:
    assert expansion(1.5) == expansion(2.0) == EXPANSION[0][1] == 1.0
    assert expansion(4.0) == 1.5
    assert expansion(1000.0) == EXPANSION[-1][1]
    values = [expansion(r) for r in (4, 6, 8, 11, 16, 23, 32)]
    assert values == sorted(values)
    for ratio, expand in EXPANSION:
        assert expansion(ratio) == pytest.approx(expand)


@pytest.mark.parametrize(
    "bad",
    [
        {"coarse": "token"},
        {"expand": 0.5},
        {"expand": float("nan")},
        {"relevance_weight": -1},
        {"answer_weight": -0.5},
        {"cache_size": -1},
        {"cache_size": True},
    ],
)
def test_bad_config_is_a_config_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        CascadeCompressor.Config(**bad)


def test_forgetting_reaches_the_stages(
    stages: tuple[SentenceCompressor, TokenCompressor], minilm_counter: TokenCounter
) -> None:
    coarse, _ = stages
    comp = _cascade(stages, minilm_counter, coarse="sentence")
    passages = ["The river Avon runs through Bath. " * 6, "Jane Austen lived in Bath in 1801. " * 5]
    comp.compress("when did Jane Austen live in Bath?", passages, budget=Budget.compression(4))
    assert coarse.scorer._cache  # the coarse stage remembers the request by default
    forget_remembered(comp)
    assert not coarse.scorer._cache


def test_a_coarse_stage_that_cannot_rank_is_refused(minilm_counter: TokenCounter) -> None:
    truncate = ragzip.create_compressor("truncate", counter=minilm_counter)
    with pytest.raises(ConfigError, match="cannot rank"):
        CascadeCompressor(counter=minilm_counter, coarse=truncate)


def test_spec_reaches_the_config() -> None:
    _, config = ragzip.registry.resolve_config("cascade:coarse=mig;expand=2.5")
    assert (config.coarse, config.expand) == ("mig", 2.5)


def test_expand_one_is_the_coarse_stage_alone(
    stages: tuple[SentenceCompressor, TokenCompressor], minilm_counter: TokenCounter
) -> None:
    cascade = _cascade(stages, minilm_counter, expand=1.0)
    for ratio in (2.0, 4.0, 8.0):
        alone = stages[0].compress(QUESTION, PASSAGES, budget=Budget(ratio=ratio))
        both = cascade.compress(QUESTION, PASSAGES, budget=Budget(ratio=ratio))
        assert [p.spans for p in both.passages] == [p.spans for p in alone.passages]


def test_words_come_from_the_kept_sentences_and_only_those_are_read(
    stages: tuple[SentenceCompressor, TokenCompressor],
    minilm_counter: TokenCounter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cascade = _cascade(stages, minilm_counter, expand=3.0)
    read: list[str] = []
    real = stages[1].word_probabilities

    def recording(query: str, texts: Sequence[str], words: Any = None) -> list[np.ndarray]:
        read.extend(texts)
        return real(query, texts, words)

    monkeypatch.setattr(stages[1], "word_probabilities", recording)
    budget = Budget.tokens(24)
    result = cascade.compress(QUESTION, PASSAGES, budget=budget)
    assert 0 < result.compressed_tokens <= 24

    request = cascade.request(QUESTION, PASSAGES, budget=budget)
    units = stages[0].ranking(request, request.sent_limit).units
    sentences = [u for u in units.items if any(u.text in text for text in read)]
    assert len(read) == len({u.passage for u in sentences})  # one text per passage read
    for text in read:  # each text read is kept sentences of one passage, joined
        assert text == " ".join(u.text for u in sentences if u.text in text)
    for i, passage in enumerate(result.passages):
        for start, end in passage.spans:  # every kept word lies inside a sentence read
            assert any(u.passage == i and u.start <= start and end <= u.end for u in sentences)
    assert sum(map(len, read)) < sum(len(p["text"]) for p in PASSAGES) / 2


def test_numbers_are_kept_whole_and_the_answer_survives_16x(
    stages: tuple[SentenceCompressor, TokenCompressor], minilm_counter: TokenCounter
) -> None:
    cascade = _cascade(stages, minilm_counter)
    result = cascade.compress(QUESTION, PASSAGES, budget=Budget(ratio=16.0))
    assert result.compressed_tokens <= result.budget_tokens
    assert answer_in_text(["1889"], result.context)
    assert ("March" in result.context) == ("31 March 1889" in result.context)  # never halved


def test_layout_of_dropped_passages_is_not_charged(
    stages: tuple[SentenceCompressor, TokenCompressor], minilm_counter: TokenCounter
) -> None:
    """At a high ratio, two kept passages leave the other passages' numbering unspent: the
    context as sent fills the budget instead of reserving the layout of every passage."""
    cascade = _cascade(stages, minilm_counter)
    many = PASSAGES * 4  # twelve passages, numbered in the prompt layout
    whole = cascade.compress(QUESTION, many, budget=Budget(ratio=1.0), layout=NUMBERED_CONTEXT)
    framing = whole.original_tokens - sum(p.original_tokens for p in whole.passages)
    budget = framing + 20  # reserving every passage's layout would leave 20 tokens of text
    result = cascade.compress(QUESTION, many, budget=Budget.tokens(budget), layout=NUMBERED_CONTEXT)
    kept_text = sum(p.tokens for p in result.passages)
    assert result.compressed_tokens <= budget
    assert kept_text > 20 + framing / 2


def test_recall_at_16x_beats_whole_sentences(
    nq_eval_cases: list[NQCase],
    minilm_counter: TokenCounter,
    stages: tuple[SentenceCompressor, TokenCompressor],
) -> None:
    """On 60 held-out NQ questions (gold among 9 lexically similar passages), words inside more
    sentences carry the answer more often at 16x than whole sentences do."""
    cases = nq_eval_cases[:60]
    budget = Budget(ratio=16.0)
    cascade = _cascade(stages, minilm_counter)
    assert context_recall(cascade, cases, budget) > context_recall(stages[0], cases, budget)


def test_words_of_the_asked_shape_come_first(
    stages: tuple[SentenceCompressor, TokenCompressor], minilm_counter: TokenCounter
) -> None:
    """Under a four-token budget a *how tall* question keeps the numbers of its sentence (the
    classifier alone, in float32 on an AMD EPYC, keeps "is 330 metres was")."""
    cascade = _cascade(stages, minilm_counter, answer_weight=5.0)
    result = cascade.compress("How tall is the Eiffel Tower?", PASSAGES, budget=Budget.tokens(4))
    assert "330" in result.context and "1930" in result.context
    assert result.compressed_tokens <= 4


def test_request_without_sentences_keeps_nothing(
    stages: tuple[SentenceCompressor, TokenCompressor], minilm_counter: TokenCounter
) -> None:
    cascade = _cascade(stages, minilm_counter)
    request = CompressionRequest("q?", (), (), budget_tokens=10)
    assert not cascade.compress_request(request).spans
