"""The evaluation corpus's index, built once and reused while the corpus and settings match."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragzip.errors import IndexStoreError
from ragzip.types import Passage

if TYPE_CHECKING:
    from ragzip.retrievers.index import HybridIndex

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
) -> tuple[HybridIndex, str, float]:
    """The NQ index: loaded from ``cache`` when a matching one is there, else built (and saved).

    Returns:
        The index, ``"cache"`` or ``"built"``, and the seconds it took.
    """
    from ragzip.retrievers.index import HybridIndex

    t0 = time.perf_counter()
    path = None
    if cache is not None:
        mode = "chunked" if chunk else "whole"
        path = Path(cache) / f"nq-{mode}-{corpus_fingerprint(corpus, chunk=chunk)[:16]}"
        if path.exists():
            try:
                index = HybridIndex.load(path)
            except IndexStoreError as exc:
                logger.warning("cached index at %s is unusable (%s); rebuilding", path, exc)
            else:
                return index, "cache", time.perf_counter() - t0
    chunking: Any = None
    if chunk:
        from ragzip.retrievers.chunking import ChunkConfig

        chunking = ChunkConfig()
    index = HybridIndex.build(list(corpus), chunking=chunking, embedder=embedder, progress=progress)
    if path is not None:
        index.save(path)
    return index, "built", time.perf_counter() - t0
