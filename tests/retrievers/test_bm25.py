from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragzip.core.errors import ConfigError
from ragzip.retrievers.bm25 import BM25Config, BM25Index, stemmer_available

from .conftest import CORPUS, QUESTIONS

TEXTS = [f"{title}\n{text}" for title, text in CORPUS.values()]


@pytest.fixture(scope="module")
def index() -> BM25Index:
    return BM25Index.build(TEXTS, progress=False)


def test_scores_match_bm25s_own_retrieval(index: BM25Index) -> None:
    retriever = index._retriever
    for question in QUESTIONS.values():
        positions, scores = index.search([question], 5)[0]
        tokens = [t for t in index.tokenize([question])[0] if t in retriever.vocab_dict]
        docs, ref = retriever.retrieve([tokens], k=5, show_progress=False)
        keep = ref[0] > 0
        assert scores.tolist() == pytest.approx(ref[0][keep].tolist(), abs=1e-6)
        assert set(positions.tolist()) == set(docs[0][keep].tolist())


def test_results_are_sorted_and_positive(index: BM25Index) -> None:
    for positions, scores in index.search(list(QUESTIONS.values()), 10):
        assert (scores > 0).all()
        assert list(scores) == sorted(scores, reverse=True)
        assert len(set(positions.tolist())) == len(positions)


def test_finds_the_matching_document(index: BM25Index) -> None:
    keys = list(CORPUS)
    top = [keys[hits[0][0]] for hits in index.search(list(QUESTIONS.values()), 1)]
    assert sum(t == q for t, q in zip(top, QUESTIONS, strict=True)) >= len(QUESTIONS) - 1


def test_unknown_words_and_stopwords_give_nothing(index: BM25Index) -> None:
    [(positions, scores)] = index.search(["the and of xyzzy"], 5)
    assert positions.size == 0 and scores.size == 0


def test_save_load_round_trip(index: BM25Index, tmp_path: Path) -> None:
    index.save(tmp_path)
    loaded = BM25Index.load(tmp_path, index.config)
    for (a_pos, a_sc), (b_pos, b_sc) in zip(
        index.search(list(QUESTIONS.values()), 5),
        loaded.search(list(QUESTIONS.values()), 5),
        strict=True,
    ):
        assert np.array_equal(a_pos, b_pos)
        assert np.allclose(a_sc, b_sc)


def test_stemming_is_decided_once_and_recorded(index: BM25Index) -> None:
    assert index.config.stem is stemmer_available()
    assert BM25Config(stem=False).resolved().stem is False


@pytest.mark.parametrize("kwargs", [{"k1": -1.0}, {"b": 1.5}])
def test_bad_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        BM25Config(**kwargs)  # type: ignore[arg-type]


def test_empty_corpus_is_refused() -> None:
    with pytest.raises(ConfigError):
        BM25Index.build([], progress=False)
