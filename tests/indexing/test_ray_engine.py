"""``ragzip index --engine ray`` on a real local Ray cluster, the real MiniLM and an embedded
Postgres: the same index as the local build, and a build killed mid-run (driver or worker)
completes when run again, with no chunk twice and none lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import ray

from ragzip.core.errors import InputError
from ragzip.core.types import Passage
from ragzip.encoders.embedding import resolve_precision
from ragzip.indexing import shards
from ragzip.indexing.ray_engine import (
    DOCS_PER_ITEM,
    Preparer,
    RayOptions,
    plan,
    settings,
    write_index_ray,
)
from ragzip.retrievers.backends import fingerprint, write_index
from ragzip.retrievers.chunking import ChunkConfig
from ragzip.retrievers.documents import read_documents
from ragzip.retrievers.index import HybridIndex
from ragzip.retrievers.postgres import PostgresIndex, embedded_dsn
from tests.precision import score_tolerance

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ["How does the proxy authenticate requests?", "What does the feature cache hold?"]
COMMON: dict[str, Any] = {"chunking": ChunkConfig(), "features": True}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 Markdown files, one paragraph of ragzip's docs each (four work items of 16)."""
    folder = tmp_path_factory.mktemp("corpus")
    paragraphs = [
        p.strip()
        for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
        for p in doc.read_text(encoding="utf-8").split("\n\n")
        if len(p.strip()) > 150 and not p.lstrip().startswith(("```", "|", "<"))
    ]
    assert len(paragraphs) >= 64
    for i, text in enumerate(paragraphs[:64]):
        (folder / f"part{i:02d}.md").write_text(f"# Part {i}\n\n{text}\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def documents(corpus: Path) -> list[Passage]:
    return read_documents([corpus]).passages


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray of two CPUs for the library-level tests (builds reuse a running Ray)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return embedded_dsn(tmp_path_factory.mktemp("pg"))


@pytest.fixture(scope="module")
def local(documents: list[Passage], tmp_path_factory: pytest.TempPathFactory) -> HybridIndex:
    """What ``ragzip index`` (the local engine) builds of the same documents."""
    path = tmp_path_factory.mktemp("local") / "index"
    write_index("folder", documents, index_path=path, dsn=None, table="", **COMMON)
    return HybridIndex.load(path)


def _same_rankings(a: Any, b: Any, tolerance: float) -> None:
    for query in QUERIES:
        top_a, top_b = a.search(query, 10), b.search(query, 10)
        if tolerance <= 1e-4:
            assert [h.id for h in top_a] == [h.id for h in top_b], query
        else:  # bfloat16: near-ties may swap places, and at the edge of the ten
            assert len({h.id for h in top_a} & {h.id for h in top_b}) >= 9, query


def _same_index(built: HybridIndex, local: HybridIndex) -> None:
    assert [c.id for c in built.chunks] == [c.id for c in local.chunks]
    assert [dict(c.metadata) for c in built.chunks] == [dict(c.metadata) for c in local.chunks]
    tolerance = score_tolerance(resolve_precision("auto"))
    cosines = np.einsum("ij,ij->i", built.dense.vectors(), local.dense.vectors())
    assert cosines.min() >= 1 - tolerance
    assert built.features is not None and local.features is not None
    assert sorted(map(bytes, built.features.keys)) == sorted(map(bytes, local.features.keys))
    _same_rankings(local, built, tolerance)


def test_a_folder_index_built_on_ray_is_the_local_one(
    documents: list[Passage], local: HybridIndex, tmp_path: Path, local_ray: None
) -> None:
    reports: list[tuple[str, int, int]] = []
    written = write_index_ray(
        "folder",
        documents,
        index_path=tmp_path / "ray",
        options=RayOptions(workers=2),
        progress=lambda *r: reports.append(r),
        **COMMON,
    )
    built = HybridIndex.load(tmp_path / "ray")
    assert written.chunks == len(local) and written.documents == len(documents)
    _same_index(built, local)
    assert [r[1] for r in reports if r[0] == "embed"][-1] == len(documents)
    assert not shards.staging_folder(tmp_path / "ray").exists()


def test_a_rerun_prepares_only_the_items_without_a_shard(
    documents: list[Passage], local: HybridIndex, tmp_path: Path, local_ray: None
) -> None:
    # what a run killed after two of its four items leaves: their shards, prepared for real
    init, salt = settings(COMMON["chunking"], COMMON["features"])
    prints = [fingerprint(d, COMMON["chunking"], COMMON["features"]) for d in documents]
    items = plan(documents, prints, DOCS_PER_ITEM, salt)
    assert len(items) == 4
    staging = shards.staging_folder(tmp_path / "index")
    preparer = Preparer(**init)
    for item in items[:2]:
        docs = [
            {"text": d.text, "id": d.id, "title": d.title, "metadata": dict(d.metadata)}
            for d in item.documents
        ]
        batch = {"key": np.array([item.key]), "documents": np.array([json.dumps(docs)])}
        shards.save(staging, item.key, preparer(batch)["payload"][0])
    reports: list[tuple[str, int, int]] = []
    write_index_ray(
        "folder",
        documents,
        index_path=tmp_path / "index",
        options=RayOptions(workers=2),
        progress=lambda *r: reports.append(r),
        **COMMON,
    )
    done = [r[1] for r in reports if r[0] == "embed"]
    assert done == [48, 64]  # two items left to prepare, counted on from the 32 documents kept
    _same_index(HybridIndex.load(tmp_path / "index"), local)


def _chunk_ids(dsn: str, table: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(f"SELECT chunk_id FROM {table} ORDER BY chunk_id")]


def test_a_postgres_index_built_on_ray_is_the_upserted_one(
    documents: list[Passage], dsn: str, local_ray: None
) -> None:
    write_index("postgres", documents, index_path=Path(), dsn=dsn, table="upserted", **COMMON)
    written = write_index_ray(
        "postgres",
        documents,
        dsn=dsn,
        table="on_ray",
        options=RayOptions(workers=2),
        **COMMON,
    )
    assert written.documents == len(documents) and written.unchanged == 0
    assert _chunk_ids(dsn, "on_ray") == _chunk_ids(dsn, "upserted")
    with psycopg.connect(dsn) as conn:
        counts = [
            conn.execute(f"SELECT count(*) FROM {t}_features").fetchone()[0]  # type: ignore[index]
            for t in ("upserted", "on_ray")
        ]
        df = [
            conn.execute(f"SELECT sum(df) FROM {t}_df").fetchone()[0]  # type: ignore[index]
            for t in ("upserted", "on_ray")
        ]
    assert counts[0] == counts[1] > 0 and df[0] == df[1] > 0
    tolerance = score_tolerance(resolve_precision("auto"))
    with (
        PostgresIndex.connect(dsn, table="upserted") as a,
        PostgresIndex.connect(dsn, table="on_ray") as b,
    ):
        _same_rankings(a, b, tolerance)
    again = write_index_ray(
        "postgres",
        documents,
        dsn=dsn,
        table="on_ray",
        options=RayOptions(workers=2),
        **COMMON,
    )
    assert again.documents == 0 and again.unchanged == len(documents) and again.chunks == 0


# ---------------------------------------------------------------- killed and run again


def _ragzip_index(corpus: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ragzip")),
            "index",
            str(corpus),
            "--engine",
            "ray",
            "--workers",
            "2",
            "--no-progress",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the driver and the Ray it starts, killed together
    )


def _kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 240
    while not ready():
        assert proc.poll() is None, f"the build ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} within 240 s"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def _finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out + err  # the summary line is on stderr, with the progress


def test_killing_the_driver_then_running_again_completes_the_folder_index(
    corpus: Path, local: HybridIndex, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    staging = shards.staging_folder(index)
    proc = _ragzip_index(corpus, "--index", str(index))
    _kill_when(proc, lambda: len(shards.saved(staging)) >= 1, "first shard")
    left = shards.saved(staging)
    assert 1 <= len(left) < 4 and not index.exists()
    out = _finish(_ragzip_index(corpus, "--index", str(index)))
    assert "64 documents" in out
    _same_index(HybridIndex.load(index), local)
    assert not staging.exists()


def _stored_documents(dsn: str, table: str) -> int:
    try:
        with psycopg.connect(dsn) as conn:
            return int(conn.execute(f"SELECT count(DISTINCT doc_id) FROM {table}").fetchone()[0])  # type: ignore[index]
    except psycopg.Error:
        return 0  # not created yet


def test_killing_the_driver_then_running_again_completes_the_postgres_index(
    corpus: Path, local: HybridIndex, dsn: str
) -> None:
    args = ("--backend", "postgres", "--dsn", dsn, "--table", "killed")
    proc = _ragzip_index(corpus, *args)
    _kill_when(proc, lambda: _stored_documents(dsn, "killed") >= 16, "first write")
    stored = _stored_documents(dsn, "killed")
    assert 16 <= stored < 64 and stored % 16 == 0  # whole items only: one transaction each
    out = _finish(_ragzip_index(corpus, *args))
    assert "indexed 64 documents" not in out and f"{stored} unchanged" in out
    ids = _chunk_ids(dsn, "killed")
    assert len(ids) == len(set(ids)) == len(local)
    assert ids == sorted(c.id for c in local.chunks)


def _preparer_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"MapBatches(Preparer)" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_a_killed_worker_is_replaced_and_the_build_completes(
    corpus: Path, local: HybridIndex, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    proc = _ragzip_index(corpus, "--index", str(index))
    victims: list[int] = []

    def kill_one() -> bool:
        pids = _preparer_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            victims.append(pids[0])
        return bool(pids)

    deadline = time.monotonic() + 240
    while not kill_one():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    out = _finish(proc)
    assert victims and "64 documents" in out
    _same_index(HybridIndex.load(index), local)


def test_documents_without_text_and_metadata_without_json(
    documents: list[Passage], dsn: str, tmp_path: Path, local_ray: None
) -> None:
    empty = [Passage(id=f"empty{i}", text="  ", title="") for i in range(16)]
    with_text = documents[:16]
    options = RayOptions(workers=2)
    built = write_index_ray(
        "folder", [*with_text, *empty], index_path=tmp_path / "i", options=options, **COMMON
    )
    alone = write_index_ray(
        "folder", with_text, index_path=tmp_path / "alone", options=options, **COMMON
    )
    assert built.chunks == alone.chunks > 0  # a work item of empty documents adds nothing
    into_pg = write_index_ray(
        "postgres", [*with_text, *empty], dsn=dsn, table="empties", options=options, **COMMON
    )
    assert into_pg.chunks == alone.chunks and len(_chunk_ids(dsn, "empties")) == alone.chunks
    odd = [Passage(id="odd", text="Some text.", metadata={"when": object()})]
    with pytest.raises(InputError, match="metadata must be JSON"):
        write_index_ray("folder", odd, index_path=tmp_path / "odd", options=options, **COMMON)
