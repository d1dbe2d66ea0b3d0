"""What the sentence classifier's tests share: a tiny random scorer, passages with a known answer,
and checks that kept spans are whole sentences."""

from __future__ import annotations

from typing import Any

import torch

from ragzip import Passage
from ragzip.compressor import join_spans
from ragzip.compressors.sentence.features import InputLimits
from ragzip.compressors.sentence.model import SentenceClassifier
from ragzip.compressors.sentence.scorer import SentenceScorer
from ragzip.compressors.units import sentence_spans
from tests.compressors.support import tiny_bert_config


def make_tiny_scorer(tokenizer: Any, *, cache_size: int = 0) -> SentenceScorer:
    """A 2-layer, 32-wide BERT with a random head: real code path, fast."""
    from transformers import BertModel

    config = tiny_bert_config(tokenizer.vocab_size, layers=2, max_position_embeddings=256)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = SentenceClassifier(BertModel(config, add_pooling_layer=False), n_frozen=1)
    return SentenceScorer(
        model, tokenizer, limits=InputLimits(), threshold=0.5, cache_size=cache_size
    )


def count_predictions(scorer: SentenceScorer) -> list[int]:
    """The inputs of each call to ``scorer.predict`` from now on (the list grows in place)."""
    calls: list[int] = []
    predict = scorer.predict

    def counting_predict(encoded: Any, **kwargs: Any) -> Any:
        calls.append(len(encoded))
        return predict(encoded, **kwargs)

    scorer.predict = counting_predict  # type: ignore[method-assign]
    return calls


PRIDE = Passage(
    title="Pride and Prejudice",
    text=(
        "Pride and Prejudice is an 1813 novel of manners written by Jane Austen. "
        "The novel follows the character development of Elizabeth Bennet, the dynamic "
        "protagonist of the book. It was first published by Thomas Egerton. "
        "The story is set in rural England at the turn of the 19th century."
    ),
)
BATH = Passage(
    title="Bath, Somerset",
    text=(
        "Bath is the largest city in the county of Somerset, England. "
        "It is known for and named after its Roman-built baths. "
        "The city became a World Heritage Site in 1987."
    ),
)
REGENCY = Passage(
    title="Regency era",
    text=(
        "The Regency era of British history officially spanned the years 1811 to 1820. "
        "It was a period distinguished by elegance and achievements in the fine arts and "
        "architecture. The era saw the rise of the Romantic movement in literature."
    ),
)
EASY = ("Who wrote the novel Pride and Prejudice?", [BATH, PRIDE, REGENCY], "Jane Austen")


def sentence_count(result: Any) -> int:
    """Number of kept sentences, counted on the original texts' sentence spans."""
    n = 0
    for cp in result.passages:
        for s, e in sentence_spans(cp.passage.text):
            n += any(a <= s and e <= b for a, b in cp.spans)
    return n


def assert_whole_sentences(result: Any) -> None:
    """Every kept span is a run of whole sentences (or the whole passage, when a budget covers
    it: with the whitespace around its sentences); the text is the spans joined."""
    for cp in result.passages:
        text = cp.passage.text
        sents = sentence_spans(text)
        starts, ends = {s for s, _ in sents}, {e for _, e in sents}
        if cp.spans == ((0, len(text)),):  # the passage kept whole, its edge whitespace too
            continue
        for a, b in cp.spans:
            assert a in starts and b in ends, (text, cp.spans)
        for s, e in sents:
            inside = any(a <= s and e <= b for a, b in cp.spans)
            outside = all(e <= a or b <= s for a, b in cp.spans)
            assert inside or outside, f"sentence {text[s:e]!r} was cut"
        assert cp.text == join_spans(text, cp.spans)[0]
