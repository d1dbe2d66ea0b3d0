from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragzip.core.errors import ConfigError
from ragzip.core.text import split_sentences
from ragzip.core.types import Passage
from ragzip.retrievers.chunking import ChunkConfig, chunk_passages, chunk_spans

WORD = re.compile(r"\S+")


def n_words(text: str) -> int:
    return len(WORD.findall(text))


def word_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in WORD.finditer(text)]


def check_invariants(text: str, config: ChunkConfig) -> list[tuple[int, int]]:
    """Verbatim, bounded, covering, advancing: the properties every chunking must have."""
    spans = chunk_spans(text, config)
    for start, end in spans:
        assert 0 <= start < end <= len(text)
        assert n_words(text[start:end]) <= config.max_words
        assert text[start:end] == text[start:end].strip()
    # Coverage: every word of the source lies inside some chunk.
    for ws, we in word_spans(text):
        assert any(s <= ws and we <= e for s, e in spans), text[ws:we]
    # Chunks advance through the text.
    assert [s for s, _ in spans] == sorted({s for s, _ in spans})
    assert [e for _, e in spans] == sorted({e for _, e in spans})
    return spans


def sentences_text(n: int, words_per_sentence: int) -> str:
    return " ".join(
        " ".join(f"w{i}x{j}" for j in range(words_per_sentence - 1)) + f" end{i}." for i in range(n)
    )


def test_chunk_text_is_verbatim_with_metadata() -> None:
    text = sentences_text(40, 9)
    doc = Passage(text=text, id="doc", title="T", metadata={"source": "s.txt"})
    chunks = chunk_passages([doc], ChunkConfig(max_words=50, overlap_words=10))
    assert len(chunks) > 1
    for index, chunk in enumerate(chunks):
        meta = chunk.metadata
        assert chunk.text == text[meta["char_start"] : meta["char_end"]]
        assert meta["doc_id"] == "doc"
        assert meta["chunk_index"] == index
        assert meta["source"] == "s.txt"
        assert chunk.id == f"doc#{index}"
        assert chunk.title == "T"


def test_chunks_end_on_sentence_boundaries() -> None:
    text = sentences_text(30, 7)
    sentence_starts = {s for s, _ in split_sentences(text)}
    sentence_ends = {e for _, e in split_sentences(text)}
    for start, end in check_invariants(text, ChunkConfig(max_words=40, overlap_words=10)):
        assert start in sentence_starts
        assert end in sentence_ends


@pytest.mark.parametrize(("words_per_sentence", "overlap"), [(7, 10), (5, 24), (9, 0)])
def test_consecutive_chunks_overlap_by_about_the_target(
    words_per_sentence: int, overlap: int
) -> None:
    text = sentences_text(60, words_per_sentence)
    spans = check_invariants(text, ChunkConfig(max_words=60, overlap_words=overlap))
    assert len(spans) > 2
    for (_, prev_end), (next_start, _) in itertools.pairwise(spans):
        shared = n_words(text[next_start:prev_end]) if next_start < prev_end else 0
        # Whole sentences only, nearest to the target: within half a sentence of it.
        assert abs(shared - overlap) <= words_per_sentence / 2


def test_short_document_stays_one_chunk() -> None:
    text = "  A short document. It has two sentences.\n"
    chunks = chunk_passages([Passage(text=text, id="d")])
    assert [c.text for c in chunks] == [text.strip()]


def test_whitespace_document_gives_no_chunks() -> None:
    assert chunk_passages([Passage(text=" \n\t ", id="d")]) == []


def test_long_sentence_is_cut_into_overlapping_word_windows() -> None:
    long_sentence = " ".join(f"word{i}" for i in range(250)) + "."
    text = f"Intro sentence here. {long_sentence} Closing sentence."
    config = ChunkConfig(max_words=100, overlap_words=20)
    spans = check_invariants(text, config)
    windows = [text[s:e] for s, e in spans if "word" in text[s:e]]
    assert len(windows) >= 3
    for a, b in itertools.pairwise(windows):
        assert a.split()[-20:] == b.split()[:20]


def test_default_config_matches_documented_values() -> None:
    config = ChunkConfig()
    assert (config.max_words, config.overlap_words) == (120, 24)
    assert ChunkConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_words": 0},
        {"max_words": 10, "overlap_words": 10},
        {"overlap_words": -1},
        {"max_words": 1.5},
        {"max_words": True},
    ],
)
def test_bad_config_raises(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ChunkConfig(**kwargs)  # type: ignore[arg-type]


def test_unknown_config_key_raises() -> None:
    with pytest.raises(ConfigError):
        ChunkConfig.from_dict({"max_words": 5, "stride": 2})


def _end_mark(n: int) -> str:
    return "?" if n % 3 == 0 else "."


sentence = st.lists(
    st.text(alphabet="abcdefghij", min_size=1, max_size=8), min_size=1, max_size=40
).map(lambda ws: " ".join(ws) + _end_mark(len(ws)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(sentence, min_size=1, max_size=25),
    st.sampled_from(["  ", "\n", " ", "\n\n"]),
    st.integers(5, 60),
    st.data(),
)
def test_invariants_hold_on_arbitrary_text(
    sentences: list[str], sep: str, max_words: int, data: st.DataObject
) -> None:
    overlap = data.draw(st.integers(0, max_words - 1))
    text = sep.join(sentences)
    check_invariants(text, ChunkConfig(max_words=max_words, overlap_words=overlap))
