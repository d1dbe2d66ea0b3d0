"""The Postgres schema of a :class:`~ragzip.retrievers.postgres.index.PostgresIndex`, versioned.

One index is these tables named after it (``TABLE`` below)::

    TABLE_meta      key text PRIMARY KEY, value jsonb    -- schema_version, embedder, dim, bm25
    TABLE           one row per chunk: chunk_id (unique), doc_id, title, text, metadata jsonb,
                    embedding vector(dim) (HNSW, cosine)
    TABLE_features  the chunks' sentence vectors for compression: chunk_id (→ TABLE, cascading
                    deletes), key bytea (content address), vector bytea (float16 bytes)
    TABLE_terms, TABLE_df, TABLE_bm25
                    BM25's postings and term statistics (:mod:`.bm25`)

Version 1 ranked lexically with full-text search (a generated ``tsvector`` column); version 2
replaced it with BM25 (:func:`migrate` tokenizes the stored chunks once).

Migrations are explicit: :func:`create_schema` makes a new index's tables, :func:`check_schema`
refuses tables of another schema version with a message naming :func:`migrate`, and
:func:`migrate` applies the steps from the stored version to :data:`SCHEMA_VERSION` (each in its
own transaction).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ragzip.core.errors import ConfigError, IndexFormatError, IndexNotFoundError
from ragzip.core.types import Passage
from ragzip.retrievers.bm25 import BM25Config, stemmer_for, terms
from ragzip.retrievers.building import indexed_text
from ragzip.retrievers.postgres import bm25

SCHEMA_VERSION = 2
TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


def check_table_name(table: str) -> str:
    """``table`` when it is a plain lower-case SQL identifier (it is spliced into SQL)."""
    if not TABLE_NAME.match(table):
        msg = f"table must be a lower-case identifier of at most 41 characters, got {table!r}"
        raise ConfigError(msg)
    return table


def _create(cur: Any, table: str, dim: int) -> None:
    cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
    cur.execute(f"CREATE TABLE {table}_meta (key text PRIMARY KEY, value jsonb NOT NULL)")
    cur.execute(
        f"""CREATE TABLE {table} (
            row_id bigserial PRIMARY KEY,
            chunk_id text NOT NULL UNIQUE,
            doc_id text NOT NULL,
            title text NOT NULL,
            text text NOT NULL,
            metadata jsonb NOT NULL,
            embedding vector({int(dim)}) NOT NULL
        )"""
    )
    cur.execute(f"CREATE INDEX {table}_doc ON {table} (doc_id)")
    cur.execute(
        f"CREATE INDEX {table}_embedding ON {table} USING hnsw (embedding vector_cosine_ops)"
    )
    cur.execute(
        f"""CREATE TABLE {table}_features (
            chunk_id text NOT NULL REFERENCES {table} (chunk_id) ON DELETE CASCADE,
            key bytea NOT NULL,
            vector bytea NOT NULL
        )"""
    )
    cur.execute(f"CREATE INDEX {table}_features_chunk ON {table}_features (chunk_id)")
    for statement in bm25.CREATE_SQL:
        cur.execute(statement.format(t=table))


def _bm25_from_fts(cur: Any, table: str, dim: int) -> None:
    """Version 1 → 2: BM25 postings for the stored chunks, in place of the ``tsvector``."""
    config = BM25Config().resolved()
    stemmer = stemmer_for(bool(config.stem))
    cur.execute(f"DROP INDEX IF EXISTS {table}_lexemes")
    cur.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS lexemes")
    for statement in bm25.CREATE_SQL:
        cur.execute(statement.format(t=table))
    last = 0
    while True:
        cur.execute(
            f"SELECT row_id, title, text FROM {table} WHERE row_id > %s ORDER BY row_id LIMIT 2000",
            (last,),
        )
        rows = cur.fetchall()
        if not rows:
            break
        texts = [indexed_text(Passage(text, title=title)) for _, title, text in rows]
        tokens = terms(texts, stemmer)
        bm25.record(cur, table, list(zip((r[0] for r in rows), tokens, strict=True)), config)
        last = rows[-1][0]
    cur.execute(
        f"INSERT INTO {table}_meta VALUES ('bm25', %s::jsonb)", (json.dumps(config.to_dict()),)
    )


# ---------------------------------------------------------------------- the search

SEARCH_SQL = """
WITH dense AS (
    SELECT row_id, row_number() OVER (ORDER BY dist) AS rank, 1 - dist AS score
    FROM (SELECT row_id, embedding <=> %(vec)s AS dist FROM {t}
          ORDER BY embedding <=> %(vec)s LIMIT %(dense_depth)s) d
), stats AS (
    {stats}
), lex AS (
    {lex}
), fused AS (
    SELECT coalesce(d.row_id, l.row_id) AS row_id,
           CASE %(mode)s
             WHEN 'dense' THEN coalesce(d.score, -1e9)
             WHEN 'bm25' THEN coalesce(l.score, -1e9)
             ELSE coalesce(%(w_lex)s / (%(rrf_k)s + l.rank), 0)
                  + coalesce(%(w_dense)s / (%(rrf_k)s + d.rank), 0)
           END AS score,
           l.rank AS bm25_rank, l.score AS bm25_score, d.rank AS dense_rank, d.score AS dense_score
    FROM dense d FULL OUTER JOIN lex l ON d.row_id = l.row_id
    WHERE %(mode)s = 'hybrid' OR (%(mode)s = 'dense' AND d.row_id IS NOT NULL)
          OR (%(mode)s = 'bm25' AND l.row_id IS NOT NULL)
    ORDER BY score DESC, row_id LIMIT %(k)s
)
SELECT f.score, f.bm25_rank, f.bm25_score, f.dense_rank, f.dense_score,
       c.chunk_id, c.title, c.text, c.metadata, {features}
FROM fused f JOIN {t} c USING (row_id)
{join}
ORDER BY f.score DESC, f.row_id
"""
WITH_FEATURES = {
    "features": "x.keys, x.vectors",
    "join": "LEFT JOIN LATERAL (SELECT array_agg(key) AS keys, array_agg(vector) AS vectors\n"
    "                   FROM {t}_features WHERE chunk_id = c.chunk_id) x ON true",
}
WITHOUT_FEATURES = {"features": "NULL, NULL", "join": ""}
"""The stored sentence vectors come back only when a feature cache wants them."""


MIGRATIONS: dict[int, Callable[[Any, str, int], None]] = {1: _bm25_from_fts}
"""Step from version ``v`` to ``v + 1``, by ``v``."""


def search_sql(table: str, *, features: bool) -> str:
    """The hybrid query of ``table`` (with the stored sentence vectors when ``features``)."""
    parts = WITH_FEATURES if features else WITHOUT_FEATURES
    sql = SEARCH_SQL.format(t="{t}", stats=bm25.STATS_SQL, lex=bm25.LEX_SQL, **parts)
    return sql.replace("{t}", table)


def read_meta(cur: Any, table: str) -> dict[str, Any] | None:
    """The meta rows of ``table``, or ``None`` when the index does not exist."""
    cur.execute("SELECT to_regclass(%s)", (f"{table}_meta",))
    if cur.fetchone()[0] is None:
        return None
    cur.execute(f"SELECT key, value FROM {table}_meta")
    return {k: v for k, v in cur.fetchall()}


def create_schema(
    conn: Any,
    table: str,
    *,
    embedder: str,
    dim: int,
    features_model: str,
    bm25_config: BM25Config | None = None,
) -> None:
    """Make the tables of a new index (one transaction)."""
    config = (bm25_config or BM25Config()).resolved()
    with conn.transaction(), conn.cursor() as cur:
        _create(cur, table, dim)
        for key, value in (
            ("schema_version", SCHEMA_VERSION),
            ("embedder", embedder),
            ("dim", dim),
            ("features_model", features_model),
            ("bm25", config.to_dict()),
        ):
            cur.execute(
                f"INSERT INTO {table}_meta VALUES (%s, %s::jsonb)", (key, json.dumps(value))
            )


def check_schema(meta: dict[str, Any] | None, table: str) -> dict[str, Any]:
    """``meta`` of an index this ragzip reads.

    Raises:
        IndexNotFoundError: No index of that name.
        IndexFormatError: Another schema version (the message says how to migrate).
    """
    if meta is None:
        msg = f"no ragzip index named {table!r} in this database (build one with ragzip index)"
        raise IndexNotFoundError(msg)
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        msg = (
            f"the ragzip index {table!r} has schema version {version!r}; this ragzip uses "
            f"{SCHEMA_VERSION}: run ragzip.retrievers.postgres.migrate(dsn, {table!r}) first"
        )
        raise IndexFormatError(msg)
    return meta


def migrate(conn: Any, table: str) -> int:
    """Bring the index ``table`` to :data:`SCHEMA_VERSION`, one step per transaction; returns
    the version it had.

    Raises:
        IndexNotFoundError: No index of that name.
        IndexFormatError: A version newer than this ragzip, or one with no migration path.
    """
    with conn.cursor() as cur:
        meta = read_meta(cur, table)
    if meta is None:
        msg = f"no ragzip index named {table!r} in this database"
        raise IndexNotFoundError(msg)
    start = version = int(meta.get("schema_version", 0))
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            msg = f"no migration from schema version {version} of {table!r}"
            raise IndexFormatError(msg)
        with conn.transaction(), conn.cursor() as cur:
            step(cur, table, int(meta["dim"]))
            version += 1
            cur.execute(
                f"UPDATE {table}_meta SET value = %s::jsonb WHERE key = 'schema_version'",
                (json.dumps(version),),
            )
    if version > SCHEMA_VERSION:
        msg = f"{table!r} has schema version {version}, newer than this ragzip ({SCHEMA_VERSION})"
        raise IndexFormatError(msg)
    return start
