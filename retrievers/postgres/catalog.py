"""What a Postgres index holds, by document: for re-indexing only what changed, pruning what
left the sources, and ``ragzip index --stats``; and the passages a search's rows stand for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ragzip.core.types import Passage

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ragzip.cache.feature_cache import FeatureCache


@dataclass(frozen=True)
class StoredDocument:
    """One indexed document.

    Attributes:
        doc_id: Its id.
        chunks: Its chunks in the index.
        path: The file it was read from (``metadata["path"]``), if it came from one.
        indexed_as: The fingerprint of its content and indexing settings
            (``metadata["indexed_as"]``), if it was written by ``ragzip index``.
    """

    doc_id: str
    chunks: int
    path: str | None
    indexed_as: str | None


def documents(cur: Any, table: str) -> dict[str, StoredDocument]:
    """Every document of the index ``table``, by id."""
    cur.execute(
        f"SELECT doc_id, count(*), min(metadata->>'path'), min(metadata->>'indexed_as') "
        f"FROM {table} GROUP BY doc_id"
    )
    return {row[0]: StoredDocument(row[0], int(row[1]), row[2], row[3]) for row in cur.fetchall()}


def stats(cur: Any, table: str) -> dict[str, Any]:
    """Counts and sizes of the index ``table``."""
    cur.execute(
        f"SELECT count(DISTINCT doc_id), count(*), "
        f"(SELECT count(*) FROM {table}_features), "
        f"pg_total_relation_size(%s) + pg_total_relation_size(%s) FROM {table}",
        (table, f"{table}_features"),
    )
    docs, chunks, vectors, size = cur.fetchone()
    return {
        "documents": int(docs),
        "chunks": int(chunks),
        "sentence_vectors": int(vectors),
        "bytes": int(size),
    }


def passages(rows: Sequence[Any], cache: FeatureCache | None) -> list[Passage]:
    """The passages of the search query's ``rows`` (:func:`.schema.search_sql`), ranks and
    scores in their metadata; the sentence vectors stored with them go into ``cache``."""
    out = []
    for score, b_rank, b_score, d_rank, d_score, cid, title, text, meta, keys, vecs in rows:
        metadata = dict(meta)
        for name, value in (
            ("bm25_rank", b_rank),
            ("bm25_score", b_score),
            ("dense_rank", d_rank),
            ("dense_score", d_score),
        ):
            if value is not None:
                metadata[name] = int(value) if name.endswith("rank") else float(value)
        out.append(Passage(text=text, id=cid, title=title, metadata=metadata, score=float(score)))
        if keys and cache is not None:
            rows16 = np.stack([np.frombuffer(bytes(v), dtype=np.float16) for v in vecs])
            cache.put([bytes(key) for key in keys], rows16)
    return out
