"""Budget-exact word selection (ragzip.compressors.token.selection)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragzip.compressor import join_spans
from ragzip.compressors.token.selection import select_words
from ragzip.compressors.units import split_words
from ragzip.core.tokenization import TokenCounter

_BUDGETS = st.integers(min_value=0, max_value=120)
_SEEDS = st.integers(min_value=0, max_value=1000)


def _texts(vocab: list[str], max_words: int) -> st.SearchStrategy[list[str]]:
    """One to four passages of up to ``max_words`` words drawn from ``vocab``."""
    words = st.lists(st.sampled_from(vocab), max_size=max_words).map(" ".join)
    return st.lists(words, min_size=1, max_size=4)


@settings(max_examples=40, deadline=None)
@given(
    texts=_texts(["alpha", "beta,", "Paris", "1965", "東", "😀", "|", "x_y", "—", "é"], 40),
    budget=_BUDGETS,
    seed=_SEEDS,
)
def test_selection_is_a_global_threshold_within_the_budget(
    smollm2_counter: TokenCounter, texts: list[str], budget: int, seed: int
) -> None:
    rng = random.Random(seed)
    words = [split_words(t) for t in texts]
    prio = [np.array([rng.random() for _ in w]) for w in words]
    kept = select_words(texts, words, prio, budget, smollm2_counter, max_refill=0)
    joined = [join_spans(t, s)[0] for t, s in zip(texts, kept, strict=True)]
    assert sum(smollm2_counter.count_batch(joined)) <= budget
    # without refill the kept set is exactly the words above one global threshold ...
    flat = [(p, i, j) for i, ps in enumerate(prio) for j, p in enumerate(ps)]
    ranked = sorted(flat, key=lambda x: -x[0])
    kept_ids = {(i, words[i].index(s)) for i, spans in enumerate(kept) for s in spans}
    n = len(kept_ids)
    assert kept_ids == {(i, j) for _, i, j in ranked[:n]}
    # ... and the next word would not fit
    if n < len(ranked):
        _, i, j = ranked[n]
        trial = [list(s) for s in kept]
        trial[i] = sorted([*trial[i], words[i][j]])
        joined = [join_spans(t, s)[0] for t, s in zip(texts, trial, strict=True)]
        assert sum(smollm2_counter.count_batch(joined)) > budget


@pytest.mark.xfail(
    reason="known gap: the exact fill can leave out a word that would still fit when joining "
    "merges separators (found by hypothesis); the budget itself is never exceeded",
    strict=False,
)
@settings(max_examples=40, deadline=None)
@given(
    texts=_texts(["alpha", "beta,", "Paris", "1965", "東", "😀", "x_y", "naïve", "é"], 30),
    budget=_BUDGETS,
    seed=_SEEDS,
)
def test_selection_fills_the_budget_exactly(
    smollm2_counter: TokenCounter, texts: list[str], budget: int, seed: int
) -> None:
    """With the slack filled word by word, no further word fits: the budget is met exactly up
    to the cost of the cheapest word left out."""
    rng = random.Random(seed)
    words = [split_words(t) for t in texts]
    prio = [np.array([rng.random() for _ in w]) for w in words]
    kept = select_words(texts, words, prio, budget, smollm2_counter, max_refill=10_000)

    def total(spans: Sequence[Sequence[tuple[int, int]]]) -> int:
        joined = [join_spans(t, s)[0] for t, s in zip(texts, spans, strict=True)]
        return sum(smollm2_counter.count_batch(joined))

    assert total(kept) <= budget
    for i, spans in enumerate(kept):
        for w in set(words[i]) - set(spans):
            trial = [list(s) for s in kept]
            trial[i] = sorted([*spans, w])
            assert total(trial) > budget, (i, w)
