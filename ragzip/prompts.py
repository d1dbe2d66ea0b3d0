"""The RAG prompt: how the question and the (compressed) context become chat messages.

The question and the instructions are placed verbatim; only the context block comes from a
compressor. A text compressor's context is its kept text. A soft compressor's context is a run
of :data:`SOFT_PLACEHOLDER` tokens per passage, one per vector, that the generator replaces by
the vectors themselves (as in xRAG: Cheng et al., 2024, "xRAG: Extreme Context Compression for
Retrieval-augmented Generation with One Token").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ragzip.core.errors import InputError
from ragzip.core.framing import ContextFormat
from ragzip.core.messages import ChatMessage

if TYPE_CHECKING:
    from ragzip.core.types import CompressionResult

DEFAULT_SYSTEM_PROMPT = (
    "Answer the question using the context. Reply with a short answer only, a few words."
)

SOFT_PLACEHOLDER = "<empty_output>"
"""The token each soft vector takes the place of: a SmolLM2 special token (id 16), always
exactly one token whatever surrounds it."""


PROMPT_CONTEXT = ContextFormat(template="{text}", prefix="Context:\n", suffix="\n\nQuestion: ")
"""How :func:`build_messages` writes a text context into the user turn: passages separated by
blank lines, between the question asked first and the question asked again. Pass it as
``layout`` to :meth:`~ragzip.compressor.Compressor.compress` so that the budget counts exactly
what the prompt holds (the pipeline does); the question stands outside it.

The small readers that run on a CPU answer from the passages far more often so than from
numbered passages after which the question is asked once, where they echo the numbers: on 12
questions about ragzip's own docs (SmolLM2-135M, ``sentence`` at 4x,
``benchmarks/demo_quality.py``), 5 right instead of 0."""

NUMBERED_CONTEXT = ContextFormat(
    template="[{index}] {text}", prefix="Context:\n", suffix="\n\nQuestion: "
)
"""Numbered passages followed by the question once: the layout of a soft context (one
placeholder run per passage), on which the ``xrag`` and ``merge`` artefacts were trained."""


def format_context(texts: Sequence[str]) -> str:
    """The passages as :data:`PROMPT_CONTEXT` writes them, without its prefix and suffix:
    texts separated by blank lines (what a framework's prompt template puts after
    ``Context:``)."""
    return ContextFormat(template=PROMPT_CONTEXT.template).render_texts(texts)


def build_messages(
    query: str,
    context: Sequence[str],
    *,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    question_first: bool = False,
) -> list[ChatMessage]:
    """Chat messages for a RAG question.

    Args:
        query: The user's question, kept verbatim.
        context: Passage texts (already compressed, or not), in order.
        system_prompt: Instructions, kept verbatim.
        question_first: Write the context as :data:`PROMPT_CONTEXT` between the question and
            the question again, ending the turn with ``Answer:``; otherwise as
            :data:`NUMBERED_CONTEXT` followed by the question (the soft layout).
    """
    if question_first and context:
        user = f"Question: {query}\n\n{PROMPT_CONTEXT.render_texts(context)}{query}\nAnswer:"
    else:
        user = f"{NUMBERED_CONTEXT.render_texts(context)}{query}"
    return [ChatMessage("system", system_prompt), ChatMessage("user", user)]


def soft_context(result: CompressionResult) -> list[str]:
    """The context strings of a soft compressor's result.

    Passage ``i`` becomes :data:`SOFT_PLACEHOLDER` repeated once per vector that stands for it;
    passages with no vector are left out, as dropped passages are for text compressors.

    Args:
        result: A result that carries ``embeddings``.

    Raises:
        InputError: The result has no embeddings, or its per-passage vector counts do not add up
            to its embedding rows.
    """
    if result.embeddings is None:
        msg = f"the {result.compressor!r} result holds text, not embeddings: use result.texts"
        raise InputError(msg)
    counts = [p.tokens for p in result.passages]
    rows = int(result.embeddings.shape[0])
    if sum(counts) != rows:
        msg = (
            f"the {result.compressor!r} result gives {sum(counts)} vectors over its passages "
            f"but holds {rows} embedding rows"
        )
        raise InputError(msg)
    return [SOFT_PLACEHOLDER * n for n in counts if n > 0]


def result_context(result: CompressionResult) -> list[str]:
    """The context strings of any result: kept texts, or placeholders for a soft result."""
    return result.texts if result.embeddings is None else soft_context(result)


def build_result_messages(
    result: CompressionResult, *, system_prompt: str = DEFAULT_SYSTEM_PROMPT
) -> list[ChatMessage]:
    """Chat messages for ``result.query`` over the result's context: a text context between the
    question and the question again, a soft one as its artefacts were trained."""
    return build_messages(
        result.query,
        result_context(result),
        system_prompt=system_prompt,
        question_first=result.embeddings is None,
    )
