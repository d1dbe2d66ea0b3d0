"""The sentence compressor with the shipped classifier: budgets filled, adaptive keeping,
determinism, bfloat16 scores and ranking against an untrained head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ragzip import Budget
from ragzip.compressor import join_spans
from ragzip.compressors.sentence.compressor import SentenceCompressor
from ragzip.compressors.sentence.features import PassageSentences
from ragzip.compressors.sentence.model import (
    WEIGHTS_DIR,
    load_base,
    read_config,
)
from ragzip.compressors.sentence.scorer import SentenceScorer
from ragzip.compressors.units import sentence_spans
from ragzip.core.tokenization import TokenCounter
from ragzip.experiments.answers import answer_in_text
from tests.compressors.sentence.support import EASY, assert_whole_sentences, sentence_count


def test_budgeted_fills_the_budget(trained: SentenceScorer, gen_counter: TokenCounter) -> None:
    query, passages, _ = EASY
    comp = SentenceCompressor(
        SentenceCompressor.Config(mode="budgeted"), counter=gen_counter, scorer=trained
    )
    for ratio in (2.0, 4.0):
        result = comp.compress(query, passages, budget=Budget.compression(ratio))
        assert result.compressed_tokens <= result.budget_tokens
        assert_whole_sentences(result)
        # no dropped sentence would still fit in what is left for the passages once the
        # separators are paid (``original_tokens`` counts them, the passages' own do not)
        framing = result.original_tokens - sum(p.original_tokens for p in result.passages)
        kept = sum(p.tokens for p in result.passages)
        for cp in result.passages:
            for s, e in sentence_spans(cp.passage.text):
                if any(a <= s and e <= b for a, b in cp.spans):
                    continue
                trial = gen_counter.count(join_spans(cp.passage.text, [*cp.spans, (s, e)])[0])
                assert kept - cp.tokens + trial > result.budget_tokens - framing


def test_adaptive_keeps_less_for_an_easy_question(
    trained: SentenceScorer, gen_counter: TokenCounter
) -> None:
    query, passages, answer = EASY
    adaptive = SentenceCompressor(
        SentenceCompressor.Config(mode="adaptive"), counter=gen_counter, scorer=trained
    )
    budgeted = SentenceCompressor(
        SentenceCompressor.Config(mode="budgeted"), counter=gen_counter, scorer=trained
    )
    a = adaptive.compress(query, passages, budget=Budget.compression(1.0))
    b = budgeted.compress(query, passages, budget=Budget.compression(1.0))
    assert sentence_count(b) == sum(len(sentence_spans(p.text)) for p in passages)
    assert 1 <= sentence_count(a) < sentence_count(b)
    assert answer in a.context
    assert_whole_sentences(a)


def test_adaptive_over_budget_keeps_the_most_probable_that_fit(
    trained: SentenceScorer, gen_counter: TokenCounter
) -> None:
    query, passages, _ = EASY
    comp = SentenceCompressor(
        SentenceCompressor.Config(mode="adaptive", threshold=0.0),
        counter=gen_counter,
        scorer=trained,
    )
    result = comp.compress(query, passages, budget=Budget.tokens(20))
    assert 0 < result.compressed_tokens <= 20
    probs = np.concatenate(
        trained.score(
            query,
            [
                PassageSentences(p.title, tuple(p.text[s:e] for s, e in sentence_spans(p.text)))
                for p in passages
            ],
        )
    )
    flat = [(i, s, e) for i, p in enumerate(passages) for s, e in sentence_spans(p.text)]
    best = int(np.argmax(probs))
    i, s, e = flat[best]
    framing = result.original_tokens - sum(p.original_tokens for p in result.passages)
    if gen_counter.count(passages[i].text[s:e]) <= 20 - framing:
        assert (s, e) in result.passages[i].spans


def test_deterministic_with_the_trained_model(
    trained: SentenceScorer, gen_counter: TokenCounter
) -> None:
    query, passages, _ = EASY
    comp = SentenceCompressor(counter=gen_counter, scorer=trained)
    first = comp.compress(query, passages, budget=Budget.compression(2))
    second = comp.compress(query, passages, budget=Budget.compression(2))
    assert first.to_dict()["passages"] == second.to_dict()["passages"]


def test_bfloat16_scores_stay_close(trained: SentenceScorer) -> None:
    query, passages, _ = EASY
    inputs = [
        PassageSentences(p.title, tuple(p.text[s:e] for s, e in sentence_spans(p.text)))
        for p in passages
    ]
    full = np.concatenate(trained.score(query, inputs))
    half = np.concatenate(trained.score(query, inputs, precision="bfloat16"))
    assert np.abs(full - half).max() < 0.05
    assert int(np.argmax(full)) == int(np.argmax(half))


@pytest.mark.slow
def test_trained_ranks_answer_sentences_above_an_untrained_head(
    trained: SentenceScorer, data_dir: Path
) -> None:
    """Within-passage AUC on val questions: the trained model clearly beats a random head."""
    from ragzip.experiments.datasets import nq_split
    from ragzip.training.sentence.train import auc

    questions = nq_split("val", data_dir)[:80]
    config = read_config(WEIGHTS_DIR)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        base, tokenizer, _ = load_base(int(config["n_frozen"]), int(config["head_hidden"]))
    untrained = SentenceScorer(base, tokenizer, limits=trained.limits)
    scores: dict[str, list[float]] = {"trained": [], "untrained": []}
    for q in questions:
        sents = tuple(q.text[s:e] for s, e in sentence_spans(q.text))
        labels = [answer_in_text(list(q.answers), s) for s in sents]
        if not 0 < sum(labels) < len(labels):
            continue
        passage = [PassageSentences(q.title, sents)]
        for name, scorer in (("trained", trained), ("untrained", untrained)):
            scores[name].append(auc(labels, scorer.score(q.question, passage)[0]))
    assert len(scores["trained"]) >= 30
    trained_auc = float(np.mean(scores["trained"]))
    untrained_auc = float(np.mean(scores["untrained"]))
    assert trained_auc >= 0.8
    assert trained_auc - untrained_auc >= 0.2
