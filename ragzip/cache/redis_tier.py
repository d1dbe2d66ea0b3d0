"""A feature cache shared by proxy replicas, in Redis (``pip install 'ragzip[redis]'``).

:class:`RedisTier` is the :class:`~ragzip.cache.feature_cache.RemoteTier` of a
:class:`~ragzip.cache.feature_cache.FeatureCache`: a vector one replica computed is found by the
others.
Entries are keyed by the cache's content address (the SHA-256 of the model identity and the
text, so model versions never share an entry) under a ``namespace`` prefix, stored as float32
bytes with a time to live; bound Redis's memory with its own ``maxmemory`` and an LRU
``maxmemory-policy`` (``allkeys-lru``), which evicts the least recently used entries first.

Redis being slow or down never fails a request: a call that errs or exceeds ``timeout_s``
answers nothing (the cache computes locally), is counted in :attr:`RedisTier.failures`, and
Redis is left alone for ``retry_after_s`` before it is tried again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ragzip.core.errors import ConfigError, needs_extra

logger = logging.getLogger(__name__)


class RedisTier:
    """Vectors in Redis, shared by every process that uses the same URL and namespace.

    Args:
        url: ``redis://host:port/db``.
        namespace: Key prefix (one per deployment).
        ttl_s: Seconds an entry lives after it was last written.
        timeout_s: Socket timeout of each call.
        retry_after_s: How long Redis is left alone after a failure.
        client: A ready ``redis.Redis`` (tests); made from ``url`` when ``None``.
        on_failure: Called once per failed call (a metrics counter's ``inc``).
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "ragzip",
        ttl_s: int = 7 * 24 * 3600,
        timeout_s: float = 0.25,
        retry_after_s: float = 5.0,
        client: Any = None,
        on_failure: Callable[[], object] | None = None,
    ) -> None:
        if ttl_s < 1 or timeout_s <= 0 or retry_after_s < 0:
            msg = "ttl_s must be >= 1, timeout_s > 0 and retry_after_s >= 0"
            raise ConfigError(msg)
        if client is None:
            with needs_extra("redis", "the shared feature cache needs redis"):
                import redis
            client = redis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
        self._client = client
        self.namespace = namespace
        self.ttl_s = int(ttl_s)
        self.retry_after_s = retry_after_s
        self._on_failure = on_failure
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.failures = 0
        self.hits = 0
        self.misses = 0

    def _key(self, key: bytes) -> str:
        return f"{self.namespace}:vec:{key.hex()}"

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self.failures += 1
            self._down_until = time.monotonic() + self.retry_after_s
        if self._on_failure is not None:
            self._on_failure()
        logger.warning("redis feature cache unavailable (%s); computing locally", exc)

    def get_many(self, keys: Sequence[bytes]) -> list[np.ndarray | None]:
        """The rows held under ``keys``; ``None`` for each one missing, or for all when Redis
        fails (the failure is counted)."""
        if not keys or not self._available():
            return [None] * len(keys)
        try:
            values = self._client.mget([self._key(k) for k in keys])
        except Exception as exc:
            self._failed(exc)
            return [None] * len(keys)
        out = [None if v is None else np.frombuffer(v, dtype=np.float32).copy() for v in values]
        found = sum(v is not None for v in out)
        with self._lock:
            self.hits += found
            self.misses += len(keys) - found
        return out

    def put_many(self, keys: Sequence[bytes], rows: np.ndarray) -> None:
        """Hold ``rows`` under ``keys`` for ``ttl_s`` (best effort; a failure is counted)."""
        if not len(keys) or not self._available():
            return
        data = np.ascontiguousarray(rows, dtype=np.float32)
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for key, row in zip(keys, data, strict=True):
                    pipe.set(self._key(key), row.tobytes(), ex=self.ttl_s)
                pipe.execute()
        except Exception as exc:
            self._failed(exc)
