"""The uncompressed baseline: whole passages, in retrieval order, while they fit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Span


class IdentityCompressor(Compressor):
    """Keep whole passages in retrieval order until the next one would not fit.

    This is what a RAG pipeline without compression does with a context limit: take the top
    passages and stop at the first one that no longer fits (a later, lower-ranked passage is not
    promoted over it). With a ratio of 1 everything is kept, byte for byte.

    Args:
        config: Takes no settings; accepted for a uniform constructor.
        counter: Token counter of the generator's tokenizer.
    """

    name: ClassVar[str] = "identity"

    @dataclass(frozen=True)
    class Config:
        """No settings."""

    def __init__(self, config: Config | None = None, *, counter: TokenCounter) -> None:
        super().__init__(counter=counter)
        self.config = config or IdentityCompressor.Config()

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        left = request.budget_tokens
        spans: list[list[Span]] = []
        full = True
        for passage, tokens in zip(request.passages, request.passage_tokens, strict=True):
            # passage_tokens counts the whole text, which is exactly what the span (0, len) cuts
            if full and tokens <= left:
                spans.append([(0, len(passage.text))])
                left -= tokens
            else:
                full = False
                spans.append([])
        return CompressionOutput(spans=spans)
