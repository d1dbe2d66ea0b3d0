"""``ensemble``: the sentence classifier's and MiniLM's scores fused, with the real shipped
models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import ragzip
from ragzip import Budget, ConfigError
from ragzip.compressors.ensemble import EnsembleCompressor, standardised
from ragzip.compressors.mig import MIGCompressor
from ragzip.compressors.sentence import SentenceCompressor
from ragzip.core.tokenization import TokenCounter
from tests.compressors.support import PROSE, PROSE_QUERY

from .conftest import NQCase, context_recall


@pytest.fixture(scope="module")
def scorers(minilm_counter: TokenCounter) -> tuple[SentenceCompressor, MIGCompressor]:
    return SentenceCompressor(counter=minilm_counter), MIGCompressor(counter=minilm_counter)


def _ensemble(
    scorers: tuple[SentenceCompressor, MIGCompressor], counter: TokenCounter, **config: Any
) -> EnsembleCompressor:
    sentence, mig = scorers
    return EnsembleCompressor(
        EnsembleCompressor.Config(**config), counter=counter, sentence=sentence, mig=mig
    )


def test_standardised() -> None:
    z = standardised(np.array([1.0, 2.0, 3.0]))
    assert z.mean() == pytest.approx(0.0) and z.std() == pytest.approx(1.0)
    assert list(standardised(np.array([0.5, 0.5]))) == [0.0, 0.0]
    assert standardised(np.zeros(0)).shape == (0,)


@pytest.mark.parametrize(
    "bad",
    [
        {"classifier_weight": 1.5},
        {"classifier_weight": float("nan")},
        {"position_weight": -0.1},
        {"cache_size": -1},
    ],
)
def test_bad_config_is_a_config_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        EnsembleCompressor.Config(**bad)


def test_scorers_must_agree_on_units_and_counter(
    scorers: tuple[SentenceCompressor, MIGCompressor],
    minilm_counter: TokenCounter,
    smollm2_counter: TokenCounter,
) -> None:
    sentence, _ = scorers
    words = MIGCompressor(MIGCompressor.Config(granularity="word"), counter=minilm_counter)
    ensemble = EnsembleCompressor(counter=minilm_counter, sentence=sentence, mig=words)
    with pytest.raises(ConfigError, match="splits sentences"):
        ensemble.compress(PROSE_QUERY, PROSE, budget=Budget(ratio=4.0))
    with pytest.raises(ConfigError, match="another counter"):
        EnsembleCompressor(counter=smollm2_counter, sentence=sentence, mig=words)


def test_ranking_is_scaled_best_first(
    scorers: tuple[SentenceCompressor, MIGCompressor], minilm_counter: TokenCounter
) -> None:
    ensemble = _ensemble(scorers, minilm_counter)
    request = ensemble.request(PROSE_QUERY, PROSE, budget=Budget(ratio=4.0))
    ranking = ensemble.ranking(request, request.budget_tokens)
    scores = [float(ranking.scores[i]) for i in ranking.order]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == 1.0 and min(scores) == 0.0
    assert sorted(ranking.order) == list(range(len(ranking.units)))


def test_position_prior_orders_passages_but_not_their_relevance(
    scorers: tuple[SentenceCompressor, MIGCompressor], minilm_counter: TokenCounter
) -> None:
    """A prior far above any content score keeps passages in the order given; the relevance
    reported for reranking is the content's alone."""
    plain = _ensemble(scorers, minilm_counter, position_weight=0.0)
    ordered = _ensemble(scorers, minilm_counter, position_weight=100.0)
    request = ordered.request(PROSE_QUERY, PROSE, budget=Budget(ratio=4.0))
    ranking = ordered.ranking(request, request.budget_tokens)
    passages = [ranking.units[i].passage for i in ranking.order]
    assert passages == sorted(passages)
    a = plain.compress(PROSE_QUERY, PROSE, budget=Budget(ratio=1.5))
    b = ordered.compress(PROSE_QUERY, PROSE, budget=Budget(ratio=1.5))
    assert [p.relevance for p in a.passages] == pytest.approx([p.relevance for p in b.passages])


def test_both_scorers_together_beat_each_alone(
    nq_eval_cases: list[NQCase],
    scorers: tuple[SentenceCompressor, MIGCompressor],
    minilm_counter: TokenCounter,
) -> None:
    """On 60 held-out NQ questions (gold among 9 lexically similar passages, at a random place,
    so no position prior), the fused ranking keeps an answer at 4x at least as often as either
    scorer alone, and more often than the weaker."""
    cases = nq_eval_cases[:60]
    budget = Budget(ratio=4.0)
    fused = context_recall(_ensemble(scorers, minilm_counter, position_weight=0.0), cases, budget)
    alone = [context_recall(s, cases, budget) for s in scorers]
    assert fused >= max(alone) and fused > min(alone)


def test_cascade_takes_it_as_coarse_stage(minilm_counter: TokenCounter) -> None:
    cascade = ragzip.create_compressor("cascade:coarse=ensemble", counter=minilm_counter)
    result = cascade.compress(PROSE_QUERY, PROSE, budget=Budget(ratio=8.0))
    assert 0 < result.compressed_tokens <= result.budget_tokens


def test_a_record_the_question_names_is_kept_wherever_it_stands(
    scorers: tuple[SentenceCompressor, MIGCompressor], minilm_counter: TokenCounter
) -> None:
    """Among 30 look-alike records, the one whose key the question names survives a budget of
    a few records from the last place, where the position prior weighs most."""
    records = [f'"unit-{1000 + i}": "serial {7 * i + 3} of the east depot."' for i in range(30)]
    question = "What is the serial of unit-1029?"
    ensemble = _ensemble(scorers, minilm_counter)
    result = ensemble.compress(question, records, budget=Budget(ratio=10.0))
    assert "serial 206" in result.context
    ignoring = _ensemble(scorers, minilm_counter, named_first=False)
    request = ignoring.request(question, records, budget=Budget(ratio=10.0))
    assert ignoring.ranking(request, request.budget_tokens).order[0] != 29
