"""Which sentences the classifier reads: the static shortlist follows meaning and the
retriever's order, the word shortlist shared words; both read at least one and all at 1.0."""

from __future__ import annotations

import numpy as np
import pytest

import ragzip
from ragzip.compressors.sentence import SentenceCompressor
from ragzip.compressors.sentence.scorer import SentenceScorer
from ragzip.compressors.sentence.shortlist import lexical_shortlist, static_shortlist
from ragzip.compressors.units import split_units
from ragzip.core.errors import ConfigError
from ragzip.core.tokenization import TokenCounter
from ragzip.encoders.static import StaticEmbedder, load_static_embedder

QUESTION = "who wrote the novel pride and prejudice"
PASSAGES = [
    "The Pacific Ocean is the largest ocean. It covers a third of the planet.",
    "Pride and Prejudice is an 1813 novel. It was written by Jane Austen. It sold well.",
]


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    return load_static_embedder()


@pytest.mark.slow
def test_static_shortlist_reads_what_is_about_the_question(
    static: StaticEmbedder, minilm_counter: TokenCounter
) -> None:
    units = split_units(PASSAGES, minilm_counter)
    texts = [u.text for u in units.items]
    read = static_shortlist(QUESTION, units, ["", ""], 0.4, static)
    assert read.dtype == bool and int(read.sum()) == 2  # ceil(0.4 * 5)
    assert read[texts.index("Pride and Prejudice is an 1813 novel.")]
    assert not read[texts.index("The Pacific Ocean is the largest ocean.")]
    assert static_shortlist(QUESTION, units, ["", ""], 1.0, static).all()
    assert int(static_shortlist(QUESTION, units, ["", ""], 0.01, static).sum()) == 1


@pytest.mark.slow
def test_static_shortlist_weighs_titles_and_places(
    static: StaticEmbedder, minilm_counter: TokenCounter
) -> None:
    """The same sentence in two passages: the first passage's copy is read; a title that
    names the subject brings a sentence that does not name it into the shortlist."""
    same = split_units(
        ["It was written by Jane Austen.", "It was written by Jane Austen."], minilm_counter
    )
    read = static_shortlist(QUESTION, same, ["", ""], 0.5, static)
    assert read.tolist() == [True, False]
    units = split_units(["It sold well in 1813.", "It is very large."], minilm_counter)
    titled = static_shortlist(QUESTION, units, ["Ocean", "Pride and Prejudice"], 0.5, static)
    assert titled.tolist() == [False, True]


def test_word_shortlist_counts_shared_content_words(minilm_counter: TokenCounter) -> None:
    units = split_units(PASSAGES, minilm_counter)
    read = lexical_shortlist(QUESTION, units, 0.2)
    assert [u.text for u, r in zip(units.items, read, strict=True) if r] == [
        "Pride and Prejudice is an 1813 novel."
    ]
    assert lexical_shortlist(QUESTION, units, 1.0).all()
    empty = split_units([], minilm_counter)
    assert lexical_shortlist(QUESTION, empty, 0.5).shape == (0,)


def test_unread_sentences_rank_last(
    tiny_scorer: SentenceScorer, minilm_counter: TokenCounter
) -> None:
    config = SentenceCompressor.Config(shortlist="words", prefilter=0.2)
    comp = SentenceCompressor(config, counter=minilm_counter, scorer=tiny_scorer)
    assert comp.static is None  # the word shortlist loads no static vectors
    units = split_units(PASSAGES, minilm_counter)
    probs = comp.score(QUESTION, [ragzip.Passage(text=t) for t in PASSAGES], units)
    assert int((probs >= 0).sum()) == 1 and np.sort(probs)[:-1].tolist() == [-1.0] * 4


@pytest.mark.parametrize("bad", [{"shortlist": "bm25"}, {"prefilter": 0}, {"prefilter": 1.5}])
def test_bad_shortlist_settings_are_config_errors(
    bad: dict[str, object], minilm_counter: TokenCounter
) -> None:
    with pytest.raises(ConfigError):
        ragzip.create_compressor("sentence", counter=minilm_counter, config=bad)
