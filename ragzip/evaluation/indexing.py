"""The evaluation corpus's index, built once and reused while the corpus and settings match."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragzip.core.errors import IndexStoreError
from ragzip.core.types import Passage

if TYPE_CHECKING:
    from ragzip.retrievers.base import SearchIndex

logger = logging.getLogger(__name__)


def corpus_fingerprint(corpus: Sequence[Passage], *, chunk: bool) -> str:
    """A hash of the corpus and index settings, naming the cached index."""
    h = hashlib.sha256(f"chunk={chunk}\x00".encode())
    for p in corpus:
        h.update(f"{p.id}\x00{p.title}\x00{p.text}\x01".encode())
    return h.hexdigest()


def load_or_build_index(
    corpus: Sequence[Passage],
    *,
    cache: Path | None,
    chunk: bool,
    embedder: Any = None,
    progress: bool = True,
    backend: str = "folder",
    dsn: str | None = None,
) -> tuple[SearchIndex, str, float]:
    """The NQ index: loaded from ``cache`` (or the Postgres table named after the corpus) when
    a matching one is there, else built (and saved).

    Returns:
        The index, ``"cache"`` or ``"built"``, and the seconds it took.
    """
    t0 = time.perf_counter()
    chunking: Any = None
    if chunk:
        from ragzip.retrievers.chunking import ChunkConfig

        chunking = ChunkConfig()
    mode = "chunked" if chunk else "whole"
    name = f"nq-{mode}-{corpus_fingerprint(corpus, chunk=chunk)[:16]}"
    if backend == "postgres":
        index, source = _postgres_index(corpus, name, dsn, chunking, embedder)
        return index, source, time.perf_counter() - t0
    from ragzip.retrievers.index import HybridIndex

    path = None
    if cache is not None:
        path = Path(cache) / name
        if path.exists():
            try:
                loaded = HybridIndex.load(path)
            except IndexStoreError as exc:
                logger.warning("cached index at %s is unusable (%s); rebuilding", path, exc)
            else:
                return loaded, "cache", time.perf_counter() - t0
    built = HybridIndex.build(list(corpus), chunking=chunking, embedder=embedder, progress=progress)
    if path is not None:
        built.save(path)
    return built, "built", time.perf_counter() - t0


def _postgres_index(
    corpus: Sequence[Passage], name: str, dsn: str | None, chunking: Any, embedder: Any
) -> tuple[SearchIndex, str]:
    """The corpus's table in Postgres: reused when it holds rows (an upsert is one
    transaction, so a table with rows is complete), else written."""
    from ragzip.retrievers.backends import resolve_dsn
    from ragzip.retrievers.postgres import PostgresIndex

    url = resolve_dsn(dsn)
    table = name.replace("-", "_")
    index = PostgresIndex.connect(url, table=table, embedder=embedder, create=True)
    if len(index):
        return index, "cache"
    index.upsert(list(corpus), chunking=chunking)
    return index, "built"
