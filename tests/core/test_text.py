"""Sentence splitting stays exact on long texts that are split in blocks."""

from __future__ import annotations

import itertools

from ragzip.core.text import BLOCK_CHARS, split_sentences, unwrap

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


WRAPPED = """# Hybrid retrieval

- **Sparse retrieval.** ragzip uses the bm25s library for BM25 retrieval. bm25s stores the
  BM25 scores in sparse matrices, so a query over a large corpus takes a few milliseconds.
- **Dense retrieval.** ragzip embeds passages with the all-MiniLM-L6-v2 sentence-transformers
  model and searches them with a faiss-cpu index.

Unit 17: SN-74694-FL
Unit 18: SN-11111-AB
"""


def test_hard_wrapped_markdown_splits_into_whole_sentences() -> None:
    got = [WRAPPED[s:e] for s, e in split_sentences(WRAPPED)]
    assert got == [
        "# Hybrid retrieval",
        # a run-in heading belongs to the sentence after it on its line
        "- **Sparse retrieval.** ragzip uses the bm25s library for BM25 retrieval.",
        "bm25s stores the\n  BM25 scores in sparse matrices, so a query over a large corpus takes "
        "a few milliseconds.",
        "- **Dense retrieval.** ragzip embeds passages with the all-MiniLM-L6-v2 "
        "sentence-transformers\n  model and searches them with a faiss-cpu index.",
        "Unit 17: SN-74694-FL",  # short lines (records, lists) stay lines of their own
        "Unit 18: SN-11111-AB",
    ]


def test_unwrap_keeps_offsets_and_structure() -> None:
    flat = unwrap(WRAPPED)
    assert len(flat) == len(WRAPPED)
    assert "bm25s stores the   BM25 scores" in flat
    assert "\n- **Dense" in flat  # a list item starts a line
    assert "SN-74694-FL\nUnit 18" in flat
    assert unwrap("Short line\n  goes on here.") == "Short line   goes on here."  # lower case next
