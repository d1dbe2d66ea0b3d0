"""From documents to what the index holds: chunks with their document metadata, the text each
retriever reads, and the chunks' vectors (embedded in slices so a build can report progress)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragzip.cache.feature_cache import FeatureTable, Featurizer
from ragzip.core.errors import ConfigError, InputError
from ragzip.core.types import Passage
from ragzip.retrievers.chunking import ChunkConfig, chunk_passages
from ragzip.retrievers.dense import DenseConfig, embed_texts, embedding_dim

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: how far an index build is."""
EMBED_SLICE = 512
"""Chunks embedded between two progress reports."""


def unique_documents(passages: Sequence[Passage | str | Mapping[str, Any]]) -> list[Passage]:
    """``passages`` as :class:`Passage` objects.

    Raises:
        InputError: Two documents share an id.
    """
    docs = [Passage.coerce(p) for p in passages]
    seen: set[str] = set()
    for doc in docs:
        if doc.id in seen:
            msg = f"two documents share the id {doc.id!r}; ids must be unique"
            raise InputError(msg)
        seen.add(doc.id)
    return docs


def checked_embeddings(chunks: Sequence[Passage], embeddings: Any, embedder: Any) -> np.ndarray:
    """``embeddings`` as an array, one finite row per chunk of ``embedder``'s size.

    Raises:
        InputError: No chunks, another row count, or NaN or infinite values.
        ConfigError: Rows of another size than ``embedder`` makes.
    """
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(chunks):
        msg = f"need one embedding row per chunk: {len(chunks)} chunks, {embeddings.shape}"
        raise InputError(msg)
    if not chunks:
        msg = "nothing to index: no chunks given"
        raise InputError(msg)
    if not np.isfinite(embeddings).all():
        msg = "embeddings contain NaN or infinite values"
        raise InputError(msg)
    dim = embedding_dim(embedder) if embedder is not None else None
    if dim is not None and dim != embeddings.shape[1]:
        msg = f"embeddings have {embeddings.shape[1]} dimensions, the embedder makes {dim}"
        raise ConfigError(msg)
    return embeddings


def chunk_documents(
    docs: Sequence[Passage], chunking: ChunkConfig | None, report: ProgressFn | None
) -> list[Passage]:
    """``docs`` cut by ``chunking`` (or each kept whole when ``None``).

    Raises:
        InputError: No document has any text.
    """
    if chunking is not None:
        chunks = []
        for i, doc in enumerate(docs):
            chunks.extend(chunk_passages([doc], chunking))
            if report:
                report("chunk", i + 1, len(docs))
    else:
        chunks = [as_whole_chunk(doc) for doc in docs if doc.text.strip()]
    if not chunks:
        msg = f"nothing to index: the {len(docs)} passage(s) given have no text"
        raise InputError(msg)
    return chunks


def embed_chunks(
    embedder: Any,
    chunks: Sequence[Passage],
    config: DenseConfig,
    *,
    report: ProgressFn | None,
    bars: bool,
) -> np.ndarray:
    """The vectors of ``chunks`` (:func:`indexed_text`), in ``config``'s precision."""
    texts = [indexed_text(c) for c in chunks]
    step = len(texts) if report is None else EMBED_SLICE
    parts = []
    for start in range(0, len(texts), step):
        parts.append(
            embed_texts(
                embedder,
                texts[start : start + step],
                batch_size=config.batch_size,
                progress=bars,
                precision=config.precision,
            )
        )
        if report:
            report("embed", min(len(texts), start + step), len(texts))
    return np.concatenate(parts)


def as_whole_chunk(doc: Passage) -> Passage:
    """``doc`` indexed whole, with the metadata a chunk carries."""
    metadata = dict(doc.metadata)
    metadata.setdefault("doc_id", doc.id)
    metadata.setdefault("chunk_index", 0)
    metadata.setdefault("char_start", 0)
    metadata.setdefault("char_end", len(doc.text))
    return Passage(text=doc.text, id=doc.id, title=doc.title, metadata=metadata)


def with_doc_metadata(chunk: Passage) -> Passage:
    """``chunk`` with its document id and title in its metadata."""
    if "doc_id" in chunk.metadata and chunk.metadata.get("title") == chunk.title:
        return chunk
    metadata = dict(chunk.metadata)
    metadata.setdefault("doc_id", chunk.id)
    metadata["title"] = chunk.title
    return Passage(text=chunk.text, id=chunk.id, title=chunk.title, metadata=metadata)


def indexed_text(chunk: Passage) -> str:
    """What both retrievers read of a chunk: its title as context, then its text."""
    return f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text


@dataclass(frozen=True)
class Prepared:
    """Documents made ready to write into an index, with no index at hand (what a build worker
    computes).

    Attributes:
        chunks: The documents' chunks, with their document metadata, in document order.
        vectors: ``(len(chunks), dim)`` unit vectors of :func:`indexed_text` of each chunk.
        features: The featurizer's vectors of every chunk's units, or ``None``.
        unit_keys: Per chunk, the content addresses of its units in ``features`` (empty
            without a featurizer).
    """

    chunks: tuple[Passage, ...]
    vectors: np.ndarray
    features: FeatureTable | None = None
    unit_keys: tuple[tuple[bytes, ...], ...] = ()

    def feature_rows(self) -> list[tuple[str, bytes, bytes]]:
        """``(chunk id, unit key, float16 vector bytes)`` for every unit of every chunk."""
        rows = []
        if self.features is not None:
            for chunk, keys in zip(self.chunks, self.unit_keys, strict=True):
                for key in keys:
                    row = self.features.get(key)
                    if row is not None:
                        rows.append((chunk.id, key, row.astype(np.float16).tobytes()))
        return rows


def prepare_documents(
    documents: Sequence[Passage],
    chunking: ChunkConfig | None,
    embedder: Any,
    config: DenseConfig,
    *,
    featurizer: Featurizer | None = None,
    report: ProgressFn | None = None,
    vectors: np.ndarray | None = None,
) -> Prepared:
    """Chunk ``documents``, embed the chunks in ``config``'s precision (unless ``vectors`` are
    given, one row per chunk) and compute ``featurizer``'s vectors of their units.

    Raises:
        InputError: No document has any text, or ``vectors`` of another row count.
    """
    chunks = tuple(with_doc_metadata(c) for c in chunk_documents(documents, chunking, report))
    if vectors is None:
        vectors = embed_chunks(embedder, chunks, config, report=report, bars=False)
    elif vectors.ndim != 2 or vectors.shape[0] != len(chunks):
        msg = f"vectors {vectors.shape} for {len(chunks)} chunks"
        raise InputError(msg)
    if featurizer is None:
        return Prepared(chunks, vectors)
    keys = tuple(tuple(featurizer.unit_keys(c)) for c in chunks)
    return Prepared(chunks, vectors, featurizer.precompute(chunks), keys)
