"""Generators: the LLM that reads the compressed context.

- :class:`EmbeddedGenerator` runs a local causal LM (SmolLM2-135M-Instruct by default); it needs
  ``ragzip[models]`` and is imported on first use, so this package imports without torch.
- :class:`OpenAIGenerator` calls an OpenAI-compatible server over HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragzip.core.messages import ChatMessage
from ragzip.generators.base import Generation, Generator
from ragzip.generators.openai_compat import OpenAIGenerator
from ragzip.generators.openai_wire import iter_sse_data

if TYPE_CHECKING:
    from ragzip.generators.embedded import EmbeddedGenerator

__all__ = [
    "ChatMessage",
    "EmbeddedGenerator",
    "Generation",
    "Generator",
    "OpenAIGenerator",
    "iter_sse_data",
]


def __getattr__(name: str) -> Any:
    if name == "EmbeddedGenerator":
        from ragzip.generators.embedded import EmbeddedGenerator

        return EmbeddedGenerator
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
