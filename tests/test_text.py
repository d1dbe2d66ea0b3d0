"""Sentence splitting stays exact on long texts that are split in blocks."""

from __future__ import annotations

import itertools

from ragzip.text import BLOCK_CHARS, split_sentences

PARAGRAPH = (
    "The river flows through the old town. It was bridged in 1850 by Dr. Smith, e.g. with "
    "the U.S. firm. Prices rose 3.5% in May!"
)


def _check_cover(text: str, spans: list[tuple[int, int]]) -> None:
    assert spans == sorted(spans)
    for (_, e0), (s1, _) in itertools.pairwise(spans):
        assert e0 <= s1
    covered = set()
    for s, e in spans:
        covered.update(range(s, e))
    assert all(i in covered for i, c in enumerate(text) if not c.isspace())


def test_long_text_gives_the_same_sentences_as_its_paragraphs() -> None:
    text = "\n\n".join([PARAGRAPH] * 400)
    assert len(text) > 5 * BLOCK_CHARS
    spans = split_sentences(text)
    _check_cover(text, spans)
    one = [text[s:e] for s, e in split_sentences(PARAGRAPH)]
    assert [text[s:e] for s, e in spans] == one * 400


def test_a_long_single_line_is_split_at_sentence_ends() -> None:
    text = " ".join([PARAGRAPH] * 300)  # no line break at all
    spans = split_sentences(text)
    _check_cover(text, spans)
    sentences = [text[s:e] for s, e in spans]
    assert len(sentences) == 3 * 300
    assert set(sentences) == {text[s:e] for s, e in split_sentences(PARAGRAPH)}
