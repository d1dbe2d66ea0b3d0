"""Retrieved contexts per question and their soft-context chat messages."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragzip.core.types import Passage
from ragzip.experiments.datasets import NQExample, nq_corpus
from ragzip.prompts import SOFT_PLACEHOLDER, build_messages

if TYPE_CHECKING:
    pass


# ------------------------------------------------------------------------------------ contexts


def retrieve_contexts(
    questions: Sequence[NQExample],
    all_nq: Sequence[NQExample],
    *,
    k: int,
    index_cache: str | Path | None,
    ensure_gold: bool,
) -> list[list[Passage]]:
    """Top-``k`` hybrid passages per question (as ``ragzip eval`` retrieves them).

    Args:
        questions: The questions.
        all_nq: All 2,000 NQ examples (the corpus).
        k: Passages per question.
        index_cache: Where the index is cached (see
            :func:`ragzip.evaluation.indexing.load_or_build_index`).
        ensure_gold: Put the gold passage in place of the last one when retrieval missed it.
    """
    from ragzip.evaluation.indexing import load_or_build_index
    from ragzip.evaluation.metrics import source_id
    from ragzip.experiments.datasets import gold_doc_ids

    cache = Path(index_cache).expanduser() if index_cache is not None else None
    index, _, _ = load_or_build_index(nq_corpus(all_nq), cache=cache, chunk=False, progress=False)
    found = index.search_batch([q.question for q in questions], k, mode="hybrid")
    contexts = [list(r) for r in found]
    if ensure_gold:
        gold = gold_doc_ids(all_nq)
        for q, ctx in zip(questions, contexts, strict=True):
            if not any(source_id(p) in gold[q.index] for p in ctx):
                ctx[-1] = q.passage()
    return contexts


def soft_messages(query: str, vectors_per_passage: Sequence[int]) -> list[Any]:
    """Chat messages of a soft context: one placeholder per vector, passages with none left
    out."""
    context = [SOFT_PLACEHOLDER * n for n in vectors_per_passage if n > 0]
    return build_messages(query, context)
