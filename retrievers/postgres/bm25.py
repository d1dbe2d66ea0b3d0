"""Okapi BM25 inside Postgres, scored as the folder index's bm25s scores it.

Term statistics live in the database, beside the chunks (``TABLE`` is the index's table)::

    TABLE_terms   term, row_id (→ TABLE, cascading deletes), tf, dl, impact
                  -- indexed by (term, impact DESC): a term's strongest postings first
    TABLE_df      term PRIMARY KEY, df          -- chunks holding the term
    TABLE_bm25    docs, length                  -- chunks, and their summed lengths (one row)

Texts are tokenized by bm25s' tokenizer in Python (lower case, ``\\b\\w\\w+\\b``, English
stopwords, PyStemmer's English stemmer when the index was built with it), so a chunk has the
same terms in both backends. Writers keep ``df`` and the totals current in the transaction that
writes or removes chunks; a query reads only the postings of its own terms, at most ``depth`` of
each, strongest first (a posting's ``impact`` is its term-frequency factor with the average length
of when it was written; the score itself uses the current one), and scores with the
statistics of that moment, in Lucene's variant as bm25s computes it: ``idf · tf / (tf + k1 · (1 -
b + b · dl / avgdl))`` summed over the query's terms, ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ragzip.retrievers.bm25 import BM25Config, terms

CREATE_SQL = (
    """CREATE TABLE {t}_terms (
        term text NOT NULL,
        row_id bigint NOT NULL REFERENCES {t} (row_id) ON DELETE CASCADE,
        tf integer NOT NULL,
        dl integer NOT NULL,
        impact real NOT NULL
    )""",
    "CREATE INDEX {t}_terms_impact ON {t}_terms (term, impact DESC) INCLUDE (row_id, tf, dl)",
    "CREATE INDEX {t}_terms_row ON {t}_terms (row_id)",
    "CREATE TABLE {t}_df (term text PRIMARY KEY, df integer NOT NULL)",
    "CREATE TABLE {t}_bm25 (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
    "docs bigint NOT NULL, length bigint NOT NULL)",
    "INSERT INTO {t}_bm25 (docs, length) VALUES (0, 0)",
)

LEX_SQL = """
    SELECT row_id, row_number() OVER (ORDER BY score DESC, row_id) AS rank, score
    FROM (SELECT p.row_id,
                 sum(q.idf * p.tf / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.dl
                                                      / (SELECT avgdl FROM stats)))) AS score
          FROM (SELECT t.term,
                       t.n * ln(1 + ((SELECT docs FROM stats) - d.df + 0.5) / (d.df + 0.5)) AS idf
                FROM unnest(%(terms)s::text[], %(counts)s::int[]) AS t (term, n)
                JOIN {t}_df d ON d.term = t.term AND d.df > 0) q,
               LATERAL (SELECT row_id, tf, dl FROM {t}_terms WHERE term = q.term
                        ORDER BY impact DESC LIMIT %(term_depth)s) p
          GROUP BY p.row_id
          ORDER BY score DESC, p.row_id
          LIMIT %(lex_depth)s) l
"""
"""The lexical ranking: only the strongest ``term_depth`` postings of each query term are read (one
index range per term; the ``LIMIT`` also keeps the planner from scanning every posting)."""

STATS_SQL = (
    "SELECT docs::float8 AS docs, greatest(length::float8 / greatest(docs, 1), 1e-9) AS avgdl "
    "FROM {t}_bm25"
)


def query_terms(query: str, stemmer: Callable[..., Any] | None) -> tuple[list[str], list[int]]:
    """The query's distinct terms and how often each occurs (bm25s sums a repeated term)."""
    counts = Counter(terms([query], stemmer)[0])
    return list(counts), list(counts.values())


def forget(cur: Any, table: str, row_ids: Sequence[int]) -> None:
    """Take the chunks ``row_ids`` out of the statistics (before deleting them)."""
    if not row_ids:
        return
    cur.execute(
        f"""UPDATE {table}_df d SET df = d.df - x.n
            FROM (SELECT term, count(*) AS n FROM {table}_terms
                  WHERE row_id = ANY(%(ids)s) GROUP BY term) x
            WHERE d.term = x.term""",
        {"ids": list(row_ids)},
    )
    cur.execute(f"DELETE FROM {table}_df WHERE df <= 0")
    cur.execute(
        f"""UPDATE {table}_bm25 SET docs = docs - %(n)s, length = length - (
                SELECT coalesce(sum(dl), 0) FROM (SELECT DISTINCT ON (row_id) dl
                FROM {table}_terms WHERE row_id = ANY(%(ids)s)) r)""",
        {"ids": list(row_ids), "n": len(row_ids)},
    )


def record(cur: Any, table: str, rows: Sequence[tuple[int, list[str]]], config: BM25Config) -> None:
    """Write the postings of new chunks ``(row_id, terms)`` and add them to the statistics."""
    df: Counter[str] = Counter()
    docs, length = len(rows), sum(len(terms) for _, terms in rows)
    cur.execute(f"SELECT docs, length FROM {table}_bm25")
    before_docs, before_length = cur.fetchone()
    avgdl = max((before_length + length) / max(before_docs + docs, 1), 1e-9)
    k1, b = config.k1, config.b
    with cur.copy(f"COPY {table}_terms (term, row_id, tf, dl, impact) FROM STDIN") as copy:
        for row_id, terms in rows:
            tf = Counter(terms)
            df.update(tf.keys())
            norm = k1 * (1 - b + b * len(terms) / avgdl)
            for term, n in tf.items():
                copy.write_row((term, row_id, n, len(terms), n / (n + norm)))
    if df:
        cur.execute(
            f"""INSERT INTO {table}_df (term, df)
                SELECT * FROM unnest(%s::text[], %s::int[])
                ON CONFLICT (term) DO UPDATE SET df = {table}_df.df + EXCLUDED.df""",
            (list(df), list(df.values())),
        )
    cur.execute(f"UPDATE {table}_bm25 SET docs = docs + %s, length = length + %s", (docs, length))
