"""Features of passages computed once: a content-addressed, byte-bounded cache.

Compressors that embed the same text again and again (the same retrieved passages for many
questions, a proxy serving many users over one corpus) look their vectors up here first. A key is
the SHA-256 of the model's identity and the exact text, so a changed model or a changed text is a
miss, never a stale hit. The cache holds at most ``max_bytes`` of arrays and evicts the least
recently used first; hits, misses and evictions are counted for reports and metrics.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ragzip.errors import ConfigError

DEFAULT_MAX_BYTES = 64 * 2**20


@dataclass(frozen=True)
class CacheStats:
    """Counters of a :class:`FeatureCache` since it was made."""

    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int


class FeatureCache:
    """Vectors of texts under one model, looked up by content.

    Args:
        max_bytes: The most array bytes held (0 holds nothing: every lookup computes).

    Thread-safe: lookups and inserts hold a lock; the computation of misses runs outside it.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            msg = f"max_bytes must be an int >= 0, got {max_bytes!r}"
            raise ConfigError(msg)
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._lock = threading.Lock()

    @staticmethod
    def key(model: str, text: str) -> bytes:
        """The content address of ``text`` under ``model``."""
        return hashlib.sha256(f"{model}\x00{text}".encode()).digest()

    def vectors(
        self,
        model: str,
        texts: Sequence[str],
        compute: Callable[[list[str]], np.ndarray],
    ) -> tuple[np.ndarray, int]:
        """The vectors of ``texts`` (one row each, in order), computing only the missing ones.

        Args:
            model: Identity of what makes the vectors (name, precision, ...).
            texts: The texts.
            compute: Makes the rows of a list of texts, in order (called at most once).

        Returns:
            The ``(len(texts), d)`` array and how many rows came from the cache.
        """
        keys = [self.key(model, t) for t in texts]
        found: dict[int, np.ndarray] = {}
        with self._lock:
            for i, k in enumerate(keys):
                row = self._entries.get(k)
                if row is not None:
                    self._entries.move_to_end(k)
                    found[i] = row
            self._hits += len(found)
            self._misses += len(keys) - len(found)
        missing = [i for i in range(len(keys)) if i not in found]
        # a text repeated in one call is computed once, so its copies are exactly equal
        first: dict[bytes, int] = {}  # key -> row of ``computed``
        unique_texts: list[str] = []
        for i in missing:
            if keys[i] not in first:
                first[keys[i]] = len(unique_texts)
                unique_texts.append(texts[i])
        unique = list(first)
        computed = None
        if unique:
            computed = np.asarray(compute(unique_texts))
            if computed.ndim != 2 or computed.shape[0] != len(unique):
                msg = f"compute returned shape {computed.shape} for {len(unique)} texts"
                raise ValueError(msg)
            self._store(unique, computed)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32), 0
        sample = computed[0] if computed is not None else next(iter(found.values()))
        out = np.empty((len(keys), sample.shape[0]), dtype=sample.dtype)
        for i, row in found.items():
            out[i] = row
        if computed is not None:
            for i in missing:
                out[i] = computed[first[keys[i]]]
        return out, len(found)

    def _store(self, keys: Sequence[bytes], rows: np.ndarray) -> None:
        if self.max_bytes == 0:
            return
        with self._lock:
            for k, row in zip(keys, rows, strict=True):
                copy = np.array(row, copy=True)
                copy.setflags(write=False)
                old = self._entries.pop(k, None)
                if old is not None:
                    self._bytes -= old.nbytes
                self._entries[k] = copy
                self._bytes += copy.nbytes
            while self._bytes > self.max_bytes and self._entries:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes
                self._evictions += 1

    def stats(self) -> CacheStats:
        """The counters now."""
        with self._lock:
            return CacheStats(
                self._hits, self._misses, self._evictions, len(self._entries), self._bytes
            )

    def clear(self) -> None:
        """Drop every entry (the counters stay)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
