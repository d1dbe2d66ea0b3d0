"""Features of passages computed once: a content-addressed, byte-bounded cache.

Compressors that embed the same text again and again (the same retrieved passages for many
questions, a proxy serving many users over one corpus) look their vectors up here first. A key is
the SHA-256 of the model's identity and the exact text, so a changed model or a changed text is a
miss, never a stale hit. The cache holds at most ``max_bytes`` of arrays and evicts the least
recently used first; hits, misses and evictions are counted for reports and metrics.

Vectors computed ahead of time (``ragzip index`` stores the sentence vectors of every chunk) come
as a read-only :class:`FeatureTable` attached to a cache: a lookup that misses memory reads the
table before computing. Keys are the same content addresses, so a table made with another model
or precision simply never hits.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from ragzip.core.errors import ConfigError, IndexCorruptedError

if TYPE_CHECKING:
    from ragzip.compressor import CompressionRequest
    from ragzip.core.types import Passage

DEFAULT_MAX_BYTES = 64 * 2**20
KEY_BYTES = 32
KEYS_FILE = "keys.npy"
VECTORS_FILE = "vectors.npy"


def content_key(model: str, text: str) -> bytes:
    """The content address of ``text`` under ``model`` (SHA-256 of both)."""
    return hashlib.sha256(f"{model}\x00{text}".encode()).digest()


@dataclass(frozen=True)
class FeatureTable:
    """Vectors computed ahead of time, found by content address; read-only.

    Attributes:
        model: The identity the keys were made under (for reports; the keys already hold it).
        keys: ``(n, 32)`` uint8, one content address per row.
        vectors: ``(n, d)`` rows (stored compact, e.g. float16; read back as float32).
    """

    model: str
    keys: np.ndarray
    vectors: np.ndarray
    _rows: dict[bytes, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys, vectors = np.asarray(self.keys), np.asarray(self.vectors)
        if keys.ndim != 2 or keys.shape[1] != KEY_BYTES or keys.dtype != np.uint8:
            msg = f"feature keys must be (n, {KEY_BYTES}) uint8, got {keys.shape} {keys.dtype}"
            raise ConfigError(msg)
        if vectors.ndim != 2 or vectors.shape[0] != keys.shape[0]:
            msg = f"feature vectors {vectors.shape} do not match {keys.shape[0]} keys"
            raise ConfigError(msg)
        rows = {keys[i].tobytes(): i for i in range(keys.shape[0])}
        object.__setattr__(self, "_rows", rows)

    @classmethod
    def from_texts(
        cls, model: str, texts: Sequence[str], vectors: np.ndarray, dtype: str = "float16"
    ) -> FeatureTable:
        """A table of ``vectors`` (one row per text) keyed by the texts' content addresses."""
        unique: dict[bytes, int] = {}
        for i, text in enumerate(texts):
            unique.setdefault(content_key(model, text), i)
        keys = np.frombuffer(b"".join(unique), dtype=np.uint8).reshape(-1, KEY_BYTES)
        rows = np.asarray(vectors)[list(unique.values())].astype(dtype)
        return cls(model, keys, rows)

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def get(self, key: bytes) -> np.ndarray | None:
        """The row stored under ``key`` as float32, or ``None``."""
        row = self._rows.get(key)
        return None if row is None else np.asarray(self.vectors[row], dtype=np.float32)

    def save(self, folder: Path) -> list[str]:
        """Write the two arrays into ``folder`` (which must exist); returns the file names."""
        np.save(folder / KEYS_FILE, np.ascontiguousarray(self.keys), allow_pickle=False)
        np.save(folder / VECTORS_FILE, np.ascontiguousarray(self.vectors), allow_pickle=False)
        return [KEYS_FILE, VECTORS_FILE]

    @classmethod
    def load(cls, folder: Path, model: str) -> FeatureTable:
        """Read a table written by :meth:`save`.

        Raises:
            IndexCorruptedError: Missing or unreadable arrays, or arrays that disagree.
        """
        try:
            keys = np.load(folder / KEYS_FILE, allow_pickle=False)
            vectors = np.load(folder / VECTORS_FILE, allow_pickle=False)
            return cls(model, keys, vectors)
        except (OSError, ValueError, ConfigError) as exc:
            msg = f"cannot read the precomputed features in {folder}: {exc}"
            raise IndexCorruptedError(msg) from exc


@runtime_checkable
class CachesFeatures(Protocol):
    """A compressor whose cost falls when its features are cached (``mig``)."""

    def cached_share(self, request: CompressionRequest) -> float:
        """The share of the features ``request`` needs that are cached now."""
        ...


class Featurizer(Protocol):
    """What an index needs to store a compressor's features with its chunks (``mig``)."""

    @property
    def feature_model(self) -> str:
        """The namespace of the vectors."""
        ...

    def precompute(self, passages: Sequence[Passage]) -> FeatureTable:
        """The vectors of every unit of ``passages``."""
        ...

    def unit_keys(self, passage: Passage) -> list[bytes]:
        """The content addresses of ``passage``'s units."""
        ...


class RemoteTier(Protocol):
    """A store shared by several processes (:class:`~ragzip.cache.redis_tier.RedisTier`), read after
    memory and the attached tables, written with every computed row. It never raises: a
    failing store answers nothing and the cache computes."""

    def get_many(self, keys: Sequence[bytes]) -> list[np.ndarray | None]:
        """The rows held under ``keys`` (``None`` where none is, or the store failed)."""
        ...

    def put_many(self, keys: Sequence[bytes], rows: np.ndarray) -> None:
        """Hold ``rows`` under ``keys`` (best effort)."""
        ...


@dataclass(frozen=True)
class CacheStats:
    """Counters of a :class:`FeatureCache` since it was made."""

    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int
    table_hits: int = 0
    remote_hits: int = 0


class FeatureCache:
    """Vectors of texts under one model, looked up by content.

    Args:
        max_bytes: The most array bytes held (0 holds nothing: every lookup computes).
        remote: A store shared with other processes, read on a miss here (``None``: none).

    Thread-safe: lookups and inserts hold a lock; the computation of misses runs outside it.
    """

    def __init__(
        self, max_bytes: int = DEFAULT_MAX_BYTES, *, remote: RemoteTier | None = None
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            msg = f"max_bytes must be an int >= 0, got {max_bytes!r}"
            raise ConfigError(msg)
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._table_hits = 0
        self._remote_hits = 0
        self.remote = remote
        self._tables: tuple[FeatureTable, ...] = ()
        self._lock = threading.Lock()

    key = staticmethod(content_key)

    def attach(self, table: FeatureTable) -> None:
        """Read ``table`` on every memory miss from now on (it is never evicted or copied)."""
        with self._lock:
            if all(t is not table for t in self._tables):
                self._tables = (*self._tables, table)

    def detach(self, table: FeatureTable) -> None:
        """Stop reading ``table`` (an index version that was replaced)."""
        with self._lock:
            self._tables = tuple(t for t in self._tables if t is not table)

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
                    continue
                for table in self._tables:
                    row = table.get(k)
                    if row is not None:
                        found[i] = row
                        self._table_hits += 1
                        break
            self._hits += len(found)
            self._misses += len(keys) - len(found)
        missing = [i for i in range(len(keys)) if i not in found]
        if missing and self.remote is not None:
            fetched = self.remote.get_many([keys[i] for i in missing])
            got = {i: row for i, row in zip(missing, fetched, strict=True) if row is not None}
            if got:
                self._store([keys[i] for i in got], np.stack(list(got.values())))
                found.update(got)
                missing = [i for i in missing if i not in got]
                with self._lock:
                    self._hits += len(got)
                    self._misses -= len(got)
                    self._remote_hits += len(got)
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
            if self.remote is not None:
                self.remote.put_many(unique, computed)
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

    def found_share(self, model: str, texts: Sequence[str]) -> float:
        """The share of ``texts`` whose vectors are held (in memory or an attached table),
        without computing or counting anything."""
        if not texts:
            return 1.0
        keys = [self.key(model, t) for t in texts]
        with self._lock:
            found = sum(1 for k in keys if k in self._entries or any(k in t for t in self._tables))
        return found / len(keys)

    def put(self, keys: Sequence[bytes], rows: np.ndarray) -> None:
        """Hold ``rows`` under their content addresses ``keys`` (vectors fetched from elsewhere,
        such as the rows a database index returns with its chunks)."""
        self._store(keys, np.asarray(rows, dtype=np.float32))

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
                self._hits,
                self._misses,
                self._evictions,
                len(self._entries),
                self._bytes,
                self._table_hits,
                self._remote_hits,
            )

    def clear(self) -> None:
        """Drop every entry (the counters stay)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0


def forget_remembered(holder: object) -> None:
    """Make the next request ``holder`` (a compressor) sees a first sight: empty its feature
    cache (attached tables stay) and the model scores remembered by it, its scorer and the
    compressors it runs (a cascade's stages, ``auto``'s candidates), each once."""
    seen: set[int] = set()
    stack = [holder]
    while stack:
        part = stack.pop()
        if id(part) in seen:
            continue
        seen.add(id(part))
        features = getattr(part, "features", None)
        if isinstance(features, FeatureCache):
            features.clear()
        clear = getattr(part, "clear_cache", None)
        if callable(clear):
            clear()
        inner = [v for v in getattr(part, "__dict__", {}).values() if v is not part]
        inner += [v for d in inner if isinstance(d, dict) for v in d.values()]
        stack += [
            v for v in inner if callable(getattr(v, "compress", None)) or hasattr(v, "clear_cache")
        ]
