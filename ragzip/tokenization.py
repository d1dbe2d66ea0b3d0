"""Token counting in the generator's tokenizer.

Budgets are counted in the tokenizer of the model that will read the context, never in the
compressor's own. Every compressor receives a :class:`TokenCounter` for that reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ragzip.types import Span


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens of plain text (no special tokens) in one tokenizer."""

    @property
    def name(self) -> str:
        """A name for the tokenizer, used in reports and profile keys."""
        ...

    def count(self, text: str) -> int:
        """Number of tokens of ``text``."""
        ...

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text."""
        ...

    def offsets(self, text: str) -> list[Span]:
        """Character span of each token of ``text``, in order."""
        ...


class HFTokenCounter:
    """A :class:`TokenCounter` over a Hugging Face *fast* tokenizer.

    Args:
        tokenizer: A ``PreTrainedTokenizerFast`` (it must return offsets).
        name: Defaults to the tokenizer's ``name_or_path``.
    """

    def __init__(self, tokenizer: Any, name: str | None = None) -> None:
        if not getattr(tokenizer, "is_fast", False):
            msg = "HFTokenCounter needs a fast tokenizer (one that returns character offsets)"
            raise TypeError(msg)
        self._tok = tokenizer
        self._name = name or str(getattr(tokenizer, "name_or_path", "") or "hf-tokenizer")

    @property
    def name(self) -> str:
        return self._name

    @property
    def tokenizer(self) -> Any:
        """The wrapped tokenizer."""
        return self._tok

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self._tok(text, add_special_tokens=False)["input_ids"])

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        texts = list(texts)
        if not texts:
            return []
        ids = self._tok(texts, add_special_tokens=False)["input_ids"]
        return [len(x) if t else 0 for x, t in zip(ids, texts, strict=True)]

    def offsets(self, text: str) -> list[Span]:
        if not text:
            return []
        enc = self._tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(int(s), int(e)) for s, e in enc["offset_mapping"]]
