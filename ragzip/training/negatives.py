"""Hard negatives for training: the passages BM25 ranks highest for a question, its gold passage
left out. One miner over ragzip's own BM25 index (:mod:`ragzip.retrievers.bm25`) for every
trainer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ragzip.experiments.datasets import NQExample
from ragzip.retrievers.bm25 import BM25Config, BM25Index


class HardNegatives:
    """BM25 over passages ``(title, text)``, deduplicated.

    Args:
        docs: The passages of the corpus; repeated ones are indexed once.
        stem: Stem words (``False`` keeps words as they are; the shipped artefacts were trained
            without stemming).
    """

    def __init__(self, docs: Iterable[tuple[str, str]], *, stem: bool = False) -> None:
        self.docs = list(dict.fromkeys(docs))
        texts = [f"{title} {text}" for title, text in self.docs]
        self._index = BM25Index.build(texts, BM25Config(stem=stem), progress=False)

    @classmethod
    def over_questions(cls, corpus: Sequence[NQExample], *, stem: bool = False) -> HardNegatives:
        """BM25 over the gold passages of ``corpus``."""
        return cls(((ex.title, ex.text) for ex in corpus), stem=stem)

    def top(self, questions: Sequence[NQExample], k: int) -> list[list[tuple[str, str]]]:
        """For each question, its ``k`` best passages other than its gold one, best first."""
        hits = self._index.search([q.question for q in questions], k + 1)
        out: list[list[tuple[str, str]]] = []
        for q, (positions, _) in zip(questions, hits, strict=True):
            docs = [self.docs[int(i)] for i in positions if self.docs[int(i)][1] != q.text]
            out.append(docs[:k])
        return out
