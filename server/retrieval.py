"""The proxy's retrieval mode: passages fetched for the request's question, then compressed.

A request asks for it with ``"ragzip": {"retrieve": true, "k": 8}`` (or every request that marks
no context of its own, with ``retrieve_by_default``). The retriever is the folder index or the
Postgres index named in the settings (opened at startup, so a wrong path or DSN fails then), or
any :class:`~ragzip.retrievers.base.Retriever` given to
:func:`~ragzip.server.app.create_app` (a
:class:`~ragzip.integrations.langchain_retriever.LangChainRetriever` over any LangChain store).
Retrievals run on their own small thread pool
(``retrieval_workers``), each bounded by ``retrieval_timeout``; a failing or slow backend is
answered 503 (``retrieval_failed``) with its message masked of every configured secret.
Retrievers that take a feature cache share the proxy's, so ``mig`` reuses the question's vector
and the sentence vectors stored with the chunks.

Operations: a Postgres backend is reached through a connection pool that survives database
restarts by itself, and ``/readyz`` answers 503 while the database does not answer (start-up
waits ``retrieval_startup_wait`` seconds for it). A folder index is a
:class:`~ragzip.retrievers.live.LiveIndex`: a version published by ``ragzip index`` is picked up
within ``index_watch_interval`` seconds (and on ``SIGHUP`` or ``POST /admin/reload``) without
dropping a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ragzip.cache.feature_cache import FeatureCache
from ragzip.core.errors import ConfigError, InputError, RetrievalError
from ragzip.core.types import Passage
from ragzip.retrievers.base import Retriever
from ragzip.server.metrics import Metrics
from ragzip.server.redact import Redactor
from ragzip.server.schemas import RagzipUsage
from ragzip.server.settings import Settings

if TYPE_CHECKING:
    from ragzip.retrievers.live import Refresh

logger = logging.getLogger("ragzip.server")


def open_configured(settings: Settings) -> Retriever | None:
    """The retriever the settings name, or ``None`` when they name none.

    Raises:
        ConfigError, IndexStoreError, MissingDependencyError: The index cannot be opened.
    """
    if settings.retrieval_backend is None:
        return None
    from pathlib import Path

    from ragzip.retrievers.backends import open_retriever

    dsn = settings.retrieval_dsn.get_secret_value() if settings.retrieval_dsn else None
    return open_retriever(
        settings.retrieval_backend,
        index_path=Path(settings.retrieval_index or "."),
        dsn=dsn,
        table=settings.retrieval_table,
        wait=settings.retrieval_startup_wait,
        connections=settings.retrieval_workers + 1,
        live=True,
    )


class RetrievalService:
    """The proxy's retriever, its threads and its limits.

    Args:
        settings: Proxy settings.
        metrics: The app's metrics (the ``retrieve`` stage).
        features: The proxy's feature cache, shared with retrievers that take one.
        retriever: A retriever to use instead of the one the settings name.
        owned: Whether ``retriever`` was opened from these settings (then it is closed here,
            and an embedded Postgres released).
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        features: FeatureCache,
        *,
        retriever: Retriever | None = None,
        owned: bool = False,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._features = features
        self._retriever = retriever
        self._owned = owned  # opened from the settings (closed here too)
        self._watcher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool = ThreadPoolExecutor(settings.retrieval_workers, "ragzip-retrieve")
        self._redactor = Redactor(settings.secret_values())
        if retriever is not None:
            self._share(retriever)

    @property
    def available(self) -> bool:
        """Whether a retriever is configured (opened at startup, or given)."""
        return self._retriever is not None or self.settings.retrieval_backend is not None

    def _share(self, retriever: Retriever) -> None:
        share = getattr(retriever, "share_features", None)
        if callable(share):
            share(self._features)

    async def startup(self) -> None:
        """Open the configured retriever (a wrong path fails the start; an unreachable database
        after ``retrieval_startup_wait`` seconds) and start watching a folder index."""
        self._loop = asyncio.get_running_loop()
        if self._retriever is None and self.settings.retrieval_backend is not None:
            retriever = await self._loop.run_in_executor(self._pool, open_configured, self.settings)
            assert retriever is not None
            self._share(retriever)
            self._retriever = retriever
            self._owned = True
        interval = self.settings.index_watch_interval
        if interval > 0 and callable(getattr(self._retriever, "refresh", None)):
            self._watcher = asyncio.create_task(self._watch(interval), name="ragzip-index-watch")

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload(force=False)
            except Exception:  # the watch goes on; the index in use stays
                logger.exception("checking the index for a new version failed")

    async def reload(self, *, force: bool = True) -> Refresh | None:
        """Serve the version of the folder index its path names now (``None``: the retriever
        follows its source by itself, as Postgres does)."""
        refresh = getattr(self._retriever, "refresh", None)
        if not callable(refresh):
            return None
        loop = asyncio.get_running_loop()
        done: Refresh = await loop.run_in_executor(None, lambda: refresh(force=force))
        return done

    def reload_soon(self) -> None:
        """Reload from any thread (the ``SIGHUP`` handler)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.reload()))

    async def health(self) -> tuple[bool, str]:
        """Whether the retriever's backend answers now (one ``ping`` of a database; a retriever
        without one is healthy once opened)."""
        ping = getattr(self._retriever, "ping", None)
        if not callable(ping):
            return True, "ok"
        timeout = self.settings.readiness_timeout
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, ping, timeout), timeout + 1)
        except Exception as exc:  # any failure to answer means: not ready
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())
            return False, f"retrieval backend unreachable: {self._redactor.mask_text(detail)}"
        return True, "ok"

    def shutdown(self) -> None:
        """Stop the threads and the watcher, close the retriever's connections if it has any,
        and release an embedded Postgres."""
        if self._watcher is not None:
            self._watcher.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if not self._owned:
            return
        close = getattr(self._retriever, "close", None)
        if callable(close):
            close()
        if self.settings.retrieval_backend == "postgres" and self.settings.retrieval_dsn:
            from ragzip.retrievers.backends import release_dsn

            release_dsn(self.settings.retrieval_dsn.get_secret_value())

    def wanted(self, options: Any, marks_context: bool, has_question: bool = True) -> bool:
        """Whether a request retrieves: it asks to, or the server retrieves by default and the
        request marks no context of its own and asks something (a request with only a system
        message, say, passes through as it came)."""
        if options is not None and options.retrieve is not None:
            return bool(options.retrieve)
        return self.settings.retrieve_by_default and not marks_context and has_question

    async def retrieve(self, query: str, k: int | None) -> tuple[list[Passage], float]:
        """The top ``k`` passages for ``query`` (``retrieval_k`` when ``None``) and the
        milliseconds it took.

        Raises:
            ConfigError: No retriever configured, or ``k`` above ``max_retrieval_k``.
            RetrievalError: The backend failed or took longer than ``retrieval_timeout``.
        """
        if not self.available:
            msg = (
                "this proxy has no retriever: start it with retrieval_index (a folder index) or "
                "retrieval_dsn (Postgres), or send the passages yourself"
            )
            raise ConfigError(msg)
        k = self.settings.retrieval_k if k is None else k
        if k > self.settings.max_retrieval_k:
            msg = f"k={k} exceeds the limit of {self.settings.max_retrieval_k} (max_retrieval_k)"
            raise ConfigError(msg)
        retriever = self._retriever
        assert retriever is not None, "startup() opens the configured retriever"
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._pool, retriever.retrieve, query, k)
        try:
            found = await asyncio.wait_for(work, timeout=self.settings.retrieval_timeout)
        except TimeoutError as exc:
            msg = f"retrieval took longer than {self.settings.retrieval_timeout:g} s"
            raise RetrievalError(msg) from exc
        except (ConfigError, InputError):
            raise
        except Exception as exc:
            detail = self._redactor.mask_text(f"{type(exc).__name__}: {exc}")
            logger.warning("retrieval failed: %s", detail)
            msg = f"retrieval failed: {detail}"
            raise RetrievalError(msg) from exc
        finally:
            self.metrics.stage.labels("retrieve").observe(time.perf_counter() - start)
        return list(found), round((time.perf_counter() - start) * 1000, 3)


@dataclass(frozen=True)
class Retrieved:
    """What the proxy retrieved for one request."""

    passages: list[Passage] = field(default_factory=list)
    ms: float = 0.0

    def report(self, usage: RagzipUsage) -> RagzipUsage:
        """``usage`` with the retrieval counted."""
        if not self.passages:
            return usage
        return usage.model_copy(update={"retrieved": len(self.passages), "retrieve_ms": self.ms})
