"""A hybrid lexical + dense index of chunks that lives in one directory on disk.

BM25 (:mod:`ragzip.retrievers.bm25`) and dense retrieval (:mod:`ragzip.retrievers.dense`) each
rank the chunks; hybrid search fuses the two rankings with weighted reciprocal rank fusion
(:mod:`ragzip.retrievers.fusion`, Cormack et al. 2009). The folder format, its atomic saving and
its checks on loading are described in :mod:`ragzip.retrievers.folder`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ragzip.cache.feature_cache import FeatureCache, FeatureTable
from ragzip.core.errors import InputError
from ragzip.core.types import Passage
from ragzip.encoders.embedding import normalize
from ragzip.retrievers.bm25 import BM25Config, BM25Index
from ragzip.retrievers.building import (
    ProgressFn,
    checked_embeddings,
    chunk_documents,
    embed_chunks,
    indexed_text,
    unique_documents,
    with_doc_metadata,
)
from ragzip.retrievers.chunking import ChunkConfig
from ragzip.retrievers.dense import (
    MINILM_NAME,
    DenseConfig,
    DenseIndex,
    DenseKind,
    check_dim,
    default_embedder,
    embed_cached,
    embedder_name,
)
from ragzip.retrievers.folder import StoredIndex, open_index, save_index
from ragzip.retrievers.fusion import (
    HybridSearch,
    SearchOptions,
    fuse_hits,
)

logger = logging.getLogger(__name__)


class HybridIndex(HybridSearch):
    """BM25 + dense retrieval over chunks, fused with reciprocal rank fusion.

    Build one with :meth:`build` (or :meth:`from_embeddings`), query it with :meth:`search`,
    :meth:`search_batch` or :meth:`retrieve` (the :class:`~ragzip.retrievers.base.Retriever`
    protocol), persist it with :meth:`save` and :meth:`load`.

    Attributes:
        build_timings: Seconds per build stage (``chunk``, ``bm25``, ``embed``, ``faiss``,
            ``total``) when the index was built in this process; empty after :meth:`load`.
        features: Vectors of the chunks' sentences computed at index time (saved and loaded
            with the index), or ``None``; see :meth:`share_features`.
    """

    def __init__(
        self,
        chunks: Sequence[Passage],
        bm25: BM25Index,
        dense: DenseIndex,
        *,
        embedder: Any | None = None,
        embedder_name: str,
        chunk_config: ChunkConfig | None,
    ) -> None:
        if not (len(chunks) == len(bm25) == len(dense)):
            msg = (
                f"index parts disagree: {len(chunks)} chunks, {len(bm25)} BM25 documents, "
                f"{len(dense)} vectors"
            )
            raise InputError(msg)
        self._chunks = tuple(chunks)
        self._bm25 = bm25
        self._dense = dense
        self._embedder = embedder
        self.embedder_name = embedder_name
        self.chunk_config = chunk_config
        self.build_timings: dict[str, float] = {}
        self.features: FeatureTable | None = None
        self._query_cache: FeatureCache | None = None

    def share_features(self, cache: FeatureCache) -> None:
        """Look query vectors up in (and add them to) ``cache``, and attach this index's
        precomputed :attr:`features` to it: a compressor that embeds with the same model in the
        same namespace (``mig``) then finds the question and every indexed sentence there."""
        self._query_cache = cache
        if self.features is not None:
            cache.attach(self.features)

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        passages: Sequence[Passage | str | Mapping[str, Any]],
        *,
        chunking: ChunkConfig | None = ChunkConfig(),  # noqa: B008 - frozen, never mutated
        embedder: Any | None = None,
        progress: bool | ProgressFn = True,
        dense_kind: DenseKind | None = None,
        bm25_config: BM25Config | None = None,
        dense_config: DenseConfig | None = None,
    ) -> HybridIndex:
        """Chunk, embed and index ``passages``.

        Args:
            passages: Documents (passages, strings, or mappings with a ``text`` key).
            chunking: How to cut documents into chunks; ``None`` indexes each passage whole.
            embedder: A sentence-transformers model (anything with its ``encode``); the
                embedded all-MiniLM-L6-v2 when ``None``.
            progress: Show the libraries' progress bars while indexing (``True``), nothing
                (``False``), or report to a function ``progress(stage, done, total)`` called
                as documents are chunked (``"chunk"``), chunks embedded (``"embed"``) and
                the two indexes built (``"bm25"``, ``"faiss"``), with no other output.
            dense_kind: ``"auto"`` (the default), ``"flat"`` or ``"hnsw"``; overrides
                ``dense_config.kind``.
            bm25_config: BM25 parameters (defaults of :class:`BM25Config`).
            dense_config: faiss parameters (defaults of :class:`DenseConfig`).

        Raises:
            InputError: No passage has any text, or two documents share an id.
        """
        t0 = time.perf_counter()
        docs = unique_documents(passages)
        report = progress if callable(progress) else None
        bars = progress is True
        chunks = chunk_documents(docs, chunking, report)
        t_chunk = time.perf_counter()
        if embedder is None:
            embedder = default_embedder()
        # record the precision actually used, so queries are embedded the same way anywhere
        dense_config = (dense_config or DenseConfig()).resolved(embedder)
        vectors = embed_chunks(embedder, chunks, dense_config, report=report, bars=bars)
        t_embed = time.perf_counter()
        if report:
            report("bm25", 0, 1)
        index = cls.from_embeddings(
            chunks,
            vectors,
            embedder=embedder,
            progress=bars,
            dense_kind=dense_kind,
            bm25_config=bm25_config,
            dense_config=dense_config,
            chunk_config=chunking,
        )
        if report:
            report("faiss", 1, 1)
        index.build_timings = {
            "chunk": t_chunk - t0,
            "embed": t_embed - t_chunk,
            "bm25": index.build_timings["bm25"],
            "faiss": index.build_timings["faiss"],
            "total": time.perf_counter() - t0,
        }
        return index

    @classmethod
    def from_embeddings(
        cls,
        chunks: Sequence[Passage],
        embeddings: np.ndarray,
        *,
        embedder: Any | None = None,
        progress: bool = True,
        dense_kind: DenseKind | None = None,
        bm25_config: BM25Config | None = None,
        dense_config: DenseConfig | None = None,
        chunk_config: ChunkConfig | None = None,
        name: str | None = None,
    ) -> HybridIndex:
        """Index chunks whose embeddings were computed already (row ``i`` embeds chunk ``i``).

        Args:
            chunks: The chunks, indexed as they are (no further chunking).
            embeddings: ``(len(chunks), dim)`` vectors from ``embedder``; normalised here.
            embedder: The model that made them, used for query embedding (loaded lazily when
                ``None``: the embedded all-MiniLM-L6-v2).
            progress: Show progress bars while indexing.
            dense_kind: Overrides ``dense_config.kind``.
            bm25_config: BM25 parameters.
            dense_config: faiss parameters.
            chunk_config: The chunking the chunks came from, recorded in the manifest.
            name: The embedder's name for the manifest; derived from ``embedder`` when ``None``.
        """
        chunks = [with_doc_metadata(c) for c in chunks]
        embeddings = checked_embeddings(chunks, embeddings, embedder)
        dense_config = dense_config or DenseConfig()
        if dense_kind is not None:
            dense_config = dataclasses.replace(dense_config, kind=dense_kind)
        t0 = time.perf_counter()
        bm25 = BM25Index.build([indexed_text(c) for c in chunks], bm25_config, progress=progress)
        t1 = time.perf_counter()
        dense = DenseIndex.build(normalize(embeddings), dense_config, progress=progress)
        t2 = time.perf_counter()
        if name is None:
            name = embedder_name(embedder) if embedder is not None else MINILM_NAME
        index = cls(
            chunks,
            bm25,
            dense,
            embedder=embedder,
            embedder_name=name,
            chunk_config=chunk_config,
        )
        index.build_timings = {"bm25": t1 - t0, "faiss": t2 - t1, "total": t2 - t0}
        return index

    def __len__(self) -> int:
        return len(self._chunks)

    @property
    def chunks(self) -> tuple[Passage, ...]:
        """The indexed chunks, in index order."""
        return self._chunks

    @property
    def bm25(self) -> BM25Index:
        """The lexical half of the index."""
        return self._bm25

    @property
    def dense(self) -> DenseIndex:
        """The dense half of the index."""
        return self._dense

    @property
    def dim(self) -> int:
        """Embedding size."""
        return self._dense.dim

    @property
    def dense_kind(self) -> Literal["flat", "hnsw"]:
        """The faiss index in use: ``"flat"`` or ``"hnsw"``."""
        return self._dense.kind

    @property
    def embedder(self) -> Any:
        """The query embedder (the embedded MiniLM is loaded on first use when none was given)."""
        if self._embedder is None:
            self._embedder = default_embedder()
            check_dim(self._embedder, self.dim)
        return self._embedder

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Unit query vectors ``(len(queries), dim)``, made as the index's chunk vectors were."""
        precision = self._dense.config.precision
        return embed_cached(self.embedder, queries, self._query_cache, precision=precision)

    def _search_batch(self, queries: list[str], options: SearchOptions) -> list[list[Passage]]:
        k, mode = options.k, options.mode
        n = max(k, options.depth) if mode == "hybrid" else k
        empty: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.int64), np.empty(0, np.float32))
        bm25_hits = self._bm25.search(queries, n) if options.uses_bm25 else [empty] * len(queries)
        if options.uses_dense:
            vectors = self.embed_queries(queries)
            dense_hits = self._dense.search(vectors, n)
        else:
            dense_hits = [empty] * len(queries)
        pairs = zip(bm25_hits, dense_hits, strict=True)
        return [fuse_hits(self._chunks, b, d, options) for b, d in pairs]

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to the directory ``path`` atomically (see the module docstring).

        Returns:
            The index directory.

        Raises:
            IndexFormatError: ``path`` exists and is neither an empty directory nor a ragzip
                index (it is never overwritten then).
            InputError: Chunk metadata that JSON cannot hold.
        """
        return save_index(
            Path(path),
            StoredIndex(
                self._chunks,
                self._bm25,
                self._dense,
                self.embedder_name,
                self.dim,
                self.chunk_config,
                self.features,
            ),
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        embedder: Any | None = None,
        *,
        verify: bool = True,
    ) -> HybridIndex:
        """Open an index written by :meth:`save`, without re-embedding anything.

        Args:
            path: The index directory.
            embedder: The query embedder; the embedded all-MiniLM-L6-v2 (loaded on the first
                dense query) when ``None``. Its dimension must match the index's.
            verify: Check every file's SHA-256 as well as its size.

        Raises:
            IndexNotFoundError: No directory at ``path``.
            IndexFormatError: Not a ragzip index, or another format version.
            IndexCorruptedError: A file is missing, has the wrong size or checksum, or the parts
                disagree.
            ConfigError: ``embedder`` makes vectors of another size.
        """
        folder = Path(path)
        stored = open_index(folder, verify=verify)
        name, dim = stored.embedder_name, stored.dim
        if embedder is not None:
            check_dim(embedder, dim)
            given = embedder_name(embedder)
            if given != name:
                logger.warning(
                    "index %s was embedded with %r but queries will use %r", folder, name, given
                )
        index = cls(
            stored.chunks,
            stored.bm25,
            stored.dense,
            embedder=embedder,
            embedder_name=name,
            chunk_config=stored.chunk_config,
        )
        index.features = stored.features
        return index
