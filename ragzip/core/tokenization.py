"""Token counting in the generator's tokenizer.

Budgets are counted in the tokenizer of the model that will read the context, never in the
compressor's own. Every compressor receives a :class:`TokenCounter` for that reason.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ragzip.core.types import Span


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

    Counts of texts seen before are remembered (a bounded LRU keyed by the text's digest): the
    same passages, sentences and prompt pieces are counted again and again across requests.

    Args:
        tokenizer: A ``PreTrainedTokenizerFast`` (it must return offsets).
        name: Defaults to the tokenizer's ``name_or_path``.
        cache_entries: How many counts to remember (0 remembers none).
    """

    def __init__(
        self, tokenizer: Any, name: str | None = None, *, cache_entries: int = 65536
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            msg = "HFTokenCounter needs a fast tokenizer (one that returns character offsets)"
            raise TypeError(msg)
        self._tok = tokenizer
        self._name = name or str(getattr(tokenizer, "name_or_path", "") or "hf-tokenizer")
        self._cache_entries = max(0, int(cache_entries))
        self._counts: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def tokenizer(self) -> Any:
        """The wrapped tokenizer."""
        return self._tok

    @property
    def remembered(self) -> int:
        """How many counts are remembered now."""
        with self._lock:
            return len(self._counts)

    def count(self, text: str) -> int:
        return self.count_batch([text])[0]

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        texts = list(texts)
        if not texts:
            return []
        keys = [hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts]
        out: list[int | None] = [None] * len(texts)
        with self._lock:
            for i, k in enumerate(keys):
                if not texts[i]:
                    out[i] = 0
                elif (n := self._counts.get(k)) is not None:
                    self._counts.move_to_end(k)
                    out[i] = n
        todo = [i for i, n in enumerate(out) if n is None]
        if todo:
            ids = self._tok([texts[i] for i in todo], add_special_tokens=False)["input_ids"]
            with self._lock:
                for i, x in zip(todo, ids, strict=True):
                    out[i] = len(x)
                    if self._cache_entries:
                        self._counts[keys[i]] = len(x)
                while len(self._counts) > self._cache_entries:
                    self._counts.popitem(last=False)
        return [int(n or 0) for n in out]

    def offsets(self, text: str) -> list[Span]:
        if not text:
            return []
        enc = self._tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(int(s), int(e)) for s, e in enc["offset_mapping"]]
