"""The RAG prompt: how the question and the (compressed) context become chat messages.

The question and the instructions are placed verbatim; only the context block comes from a
compressor.
"""

from __future__ import annotations

from collections.abc import Sequence

from ragzip.generators.base import ChatMessage

DEFAULT_SYSTEM_PROMPT = (
    "Answer the question using the context. Reply with a short answer only, a few words."
)


def format_context(texts: Sequence[str]) -> str:
    """Number the passages: ``[1] text`` blocks separated by blank lines."""
    return "\n\n".join(f"[{i}] {t}" for i, t in enumerate(texts, start=1))


def build_messages(
    query: str,
    context: Sequence[str],
    *,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> list[ChatMessage]:
    """Chat messages for a RAG question.

    Args:
        query: The user's question, kept verbatim.
        context: Passage texts (already compressed, or not), in order.
        system_prompt: Instructions, kept verbatim.
    """
    user = f"Context:\n{format_context(context)}\n\nQuestion: {query}" if context else query
    return [ChatMessage("system", system_prompt), ChatMessage("user", user)]
