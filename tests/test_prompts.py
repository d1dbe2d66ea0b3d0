"""The RAG prompt: a text context between the question and the question again; a soft context in
the numbered layout its artefacts were trained on; the question and instructions verbatim."""

from __future__ import annotations

import numpy as np

from ragzip.core.types import CompressedPassage, CompressionResult, Passage
from ragzip.prompts import (
    DEFAULT_SYSTEM_PROMPT,
    NUMBERED_CONTEXT,
    PROMPT_CONTEXT,
    SOFT_PLACEHOLDER,
    build_messages,
    build_result_messages,
)

QUESTION = "Which library does ragzip use for BM25?"


def _result(texts: list[str], embeddings: np.ndarray | None = None) -> CompressionResult:
    passages = tuple(
        CompressedPassage(passage=Passage(text=t), text=t, tokens=1, original_tokens=1, spans=())
        for t in texts
    )
    return CompressionResult(
        query=QUESTION,
        passages=passages,
        original_tokens=len(texts),
        compressed_tokens=len(texts),
        budget_tokens=len(texts),
        compressor="test",
        embeddings=embeddings,
    )


def test_a_text_context_stands_between_the_question_and_the_question_again() -> None:
    system, user = build_messages(QUESTION, ["bm25s ranks.", "MiniLM embeds."], question_first=True)
    assert (system.role, system.content) == ("system", DEFAULT_SYSTEM_PROMPT)
    assert user.content == (
        f"Question: {QUESTION}\n\nContext:\nbm25s ranks.\n\nMiniLM embeds.\n\n"
        f"Question: {QUESTION}\nAnswer:"
    )
    # what the budget counts is exactly the block between the two questions
    block = PROMPT_CONTEXT.render_texts(["bm25s ranks.", "MiniLM embeds."])
    assert f"\n\n{block}{QUESTION}\nAnswer:" in user.content


def test_the_numbered_layout_is_kept_without_question_first() -> None:
    _, user = build_messages(QUESTION, ["bm25s ranks."])
    assert user.content == f"{NUMBERED_CONTEXT.render_texts(['bm25s ranks.'])}{QUESTION}"
    assert user.content.startswith("Context:\n[1] bm25s ranks.")


def test_no_context_asks_the_question_alone() -> None:
    for first in (True, False):
        _, user = build_messages(QUESTION, [], question_first=first)
        assert user.content == QUESTION


def test_results_pick_their_layout_by_kind() -> None:
    _, text_user = build_result_messages(_result(["bm25s ranks."]))
    assert text_user.content.startswith(f"Question: {QUESTION}\n\nContext:\nbm25s ranks.")
    soft = _result(["a", "b"], embeddings=np.zeros((2, 4), dtype=np.float32))
    _, soft_user = build_result_messages(soft)
    assert soft_user.content == (
        f"Context:\n[1] {SOFT_PLACEHOLDER}\n\n[2] {SOFT_PLACEHOLDER}\n\nQuestion: {QUESTION}"
    )
