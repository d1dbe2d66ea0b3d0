from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragzip.core.errors import (
    ConfigError,
    IndexCorruptedError,
    IndexFormatError,
    IndexNotFoundError,
    InputError,
)
from ragzip.core.types import Passage
from ragzip.encoders.embedding import PRECISION_ENV, resolve_precision
from ragzip.retrievers import HybridIndex, Retriever
from ragzip.retrievers.chunking import ChunkConfig
from ragzip.retrievers.dense import DenseConfig, DenseIndex, embed_texts
from ragzip.retrievers.fusion import HYBRID_RRF_K, MODES
from ragzip.weights import native_bf16_cpu
from tests.precision import score_tolerance

from .conftest import QUESTIONS, CountingEmbedder, beside, corpus_passages


@pytest.fixture(scope="module")
def index(embedder: Any) -> HybridIndex:
    return HybridIndex.build(corpus_passages(), embedder=embedder, progress=False)


@pytest.fixture(scope="module")
def saved(index: HybridIndex, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return index.save(tmp_path_factory.mktemp("saved") / "index")


def copy_index(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for file in src.rglob("*"):
        if file.is_file():
            target = dst / file.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.read_bytes())
    return dst


def results(index: HybridIndex, mode: str) -> list[list[tuple[str, float]]]:
    return [
        [(p.id, p.score or 0.0) for p in index.search(q, 5, mode=mode)]  # type: ignore[arg-type]
        for q in QUESTIONS.values()
    ]


# ---------------------------------------------------------------- building and searching


def test_build_chunks_and_indexes_everything(index: HybridIndex) -> None:
    assert len(index) == len(index.chunks) > len(QUESTIONS)  # the long document is split
    assert index.dense_kind == "flat"
    assert index.dim == 384
    assert set(index.build_timings) == {"chunk", "embed", "bm25", "faiss", "total"}
    rome = [c for c in index.chunks if c.metadata["doc_id"] == "rome"]
    assert len(rome) > 1
    assert [c.metadata["chunk_index"] for c in rome] == list(range(len(rome)))


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_finds_the_right_document(index: HybridIndex, mode: str) -> None:
    hits = 0
    for doc_id, question in QUESTIONS.items():
        found = index.search(question, 3, mode=mode)  # type: ignore[arg-type]
        assert 0 < len(found) <= 3
        scores = [p.score for p in found]
        assert all(s is not None for s in scores)
        assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
        hits += found[0].metadata["doc_id"] == doc_id
    assert hits >= len(QUESTIONS) - 1


def test_hybrid_score_is_the_fusion_of_the_reported_ranks(index: HybridIndex) -> None:
    for question in QUESTIONS.values():
        for passage in index.search(question, 5, weights=(1.0, 0.5)):
            meta = passage.metadata
            expected = 0.0
            if "bm25_rank" in meta:
                expected += 1.0 / (HYBRID_RRF_K + meta["bm25_rank"])
            if "dense_rank" in meta:
                expected += 0.5 / (HYBRID_RRF_K + meta["dense_rank"])
            assert passage.score == pytest.approx(expected)
            assert meta["title"] == passage.title
            assert passage.text == index.chunks[_position(index, passage.id)].text


def _position(index: HybridIndex, chunk_id: str) -> int:
    return [c.id for c in index.chunks].index(chunk_id)


def test_single_mode_scores_are_the_retrievers_own(index: HybridIndex) -> None:
    question = QUESTIONS["jupiter"]
    dense = index.search(question, 3, mode="dense")
    precision = index.dense.config.precision  # embedded as the index was
    vector = embed_texts(index.embedder, [question], precision=precision)[0]
    tol = score_tolerance(precision)  # one text alone vs the batches the index embedded
    for p in dense:
        chunk_vec = embed_texts(index.embedder, [f"{p.title}\n{p.text}"], precision=precision)[0]
        assert p.score == pytest.approx(float(vector @ chunk_vec), abs=tol)
    bm25 = index.search(question, 3, mode="bm25")
    assert all(p.score == p.metadata["bm25_score"] > 0 for p in bm25)


def test_search_batch_equals_one_by_one(index: HybridIndex) -> None:
    questions = list(QUESTIONS.values())
    for mode in MODES:
        batch = index.search_batch(questions, 4, mode=mode)
        single = [index.search(q, 4, mode=mode) for q in questions]
        assert [[p.id for p in r] for r in batch] == [[p.id for p in r] for r in single]
        # bfloat16 query vectors (the default on CPUs with native bfloat16) differ in the last
        # bits between a batch and a single query
        tol = score_tolerance(index.dense.config.precision)
        for rb, rs in zip(batch, single, strict=True):
            assert [p.score for p in rb] == pytest.approx([p.score for p in rs], abs=tol)


def test_zero_weight_skips_that_retriever(index: HybridIndex) -> None:
    counting = CountingEmbedder(index.embedder)
    idx = HybridIndex(
        index.chunks,
        index.bm25,
        index.dense,
        embedder=counting,
        embedder_name=index.embedder_name,
        chunk_config=index.chunk_config,
    )
    lexical = idx.search(QUESTIONS["chess"], 3, weights=(1.0, 0.0))
    assert counting.calls == []
    assert [p.id for p in lexical] == [p.id for p in idx.search(QUESTIONS["chess"], 3, mode="bm25")]
    idx.search(QUESTIONS["chess"], 3, weights=(0.0, 1.0))
    assert counting.texts == [QUESTIONS["chess"]]


def test_k_larger_than_the_corpus(index: HybridIndex) -> None:
    found = index.search(QUESTIONS["coffee"], 1000, mode="dense")
    assert len(found) == len(index)
    assert len({p.id for p in found}) == len(index)


def test_query_without_known_words_still_gets_dense_results(index: HybridIndex) -> None:
    assert index.search("zzzqqq xyzzy", 3, mode="bm25") == []
    assert len(index.search("zzzqqq xyzzy", 3)) == 3


def test_satisfies_the_retriever_protocol(index: HybridIndex) -> None:
    assert isinstance(index, Retriever)
    assert [p.id for p in index.retrieve(QUESTIONS["tides"], 2)] == [
        p.id for p in index.search(QUESTIONS["tides"], 2)
    ]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"query": ""}, InputError),
        ({"query": "   "}, InputError),
        ({"k": 0}, ConfigError),
        ({"k": 2.5}, ConfigError),
        ({"mode": "sparse"}, ConfigError),
        ({"weights": (1.0, -1.0)}, ConfigError),
        ({"weights": (0.0, 0.0)}, ConfigError),
        ({"weights": (1.0,)}, ConfigError),
    ],
)
def test_bad_search_arguments(index: HybridIndex, kwargs: dict[str, Any], error: type) -> None:
    args = {"query": "what causes tides?", **kwargs}
    with pytest.raises(error):
        index.search(**args)


def test_search_batch_refuses_a_bare_string(index: HybridIndex) -> None:
    with pytest.raises(InputError, match="list of queries"):
        index.search_batch("what causes tides?")


def test_build_refuses_empty_input_and_duplicate_ids(embedder: Any) -> None:
    with pytest.raises(InputError, match="nothing to index"):
        HybridIndex.build(["  ", "\n"], embedder=embedder, progress=False)
    with pytest.raises(InputError, match="share the id"):
        HybridIndex.build(
            [Passage(text="a", id="x"), Passage(text="b", id="x")],
            embedder=embedder,
            progress=False,
        )


def test_build_without_chunking_indexes_passages_whole(embedder: Any) -> None:
    docs = corpus_passages()
    idx = HybridIndex.build(docs, chunking=None, embedder=embedder, progress=False)
    assert [c.text for c in idx.chunks] == [d.text for d in docs]
    assert [c.metadata["doc_id"] for c in idx.chunks] == [d.id for d in docs]


def test_from_embeddings_checks_shapes(embedder: Any) -> None:
    chunks = corpus_passages()[:3]
    with pytest.raises(InputError, match="one embedding row per chunk"):
        HybridIndex.from_embeddings(chunks, np.zeros((2, 384)), embedder=embedder)
    with pytest.raises(ConfigError, match="dimensions"):
        HybridIndex.from_embeddings(chunks, np.ones((3, 8)), embedder=embedder)
    with pytest.raises(InputError, match="NaN"):
        HybridIndex.from_embeddings(chunks, np.full((3, 384), np.nan), embedder=embedder)


def test_hnsw_agrees_with_exact_search(embedder: Any) -> None:
    docs = corpus_passages()
    config = ChunkConfig(max_words=25, overlap_words=5)
    flat = HybridIndex.build(
        docs, chunking=config, embedder=embedder, progress=False, dense_kind="flat"
    )
    vectors = flat.dense.vectors()
    hnsw = HybridIndex.from_embeddings(
        flat.chunks, vectors, embedder=embedder, progress=False, dense_kind="hnsw"
    )
    auto_small = DenseIndex.build(vectors, DenseConfig(kind="auto", hnsw_threshold=len(vectors)))
    assert (hnsw.dense_kind, auto_small.kind) == ("hnsw", "hnsw")
    for question in QUESTIONS.values():
        a = [p.id for p in flat.search(question, 5, mode="dense")]
        b = [p.id for p in hnsw.search(question, 5, mode="dense")]
        assert a == b  # a tiny graph with ef_search 128 is exhaustive


# ---------------------------------------------------------------- persistence


def test_round_trip_gives_identical_results_without_re_embedding(
    index: HybridIndex, saved: Path, counting_embedder: CountingEmbedder
) -> None:
    loaded = HybridIndex.load(saved, embedder=counting_embedder)
    assert counting_embedder.calls == []  # nothing embedded on load
    assert len(loaded) == len(index)
    assert loaded.chunks == index.chunks
    assert [dict(c.metadata) for c in loaded.chunks] == [dict(c.metadata) for c in index.chunks]
    assert loaded.chunk_config == index.chunk_config
    for mode in MODES:
        before = results(index, mode)
        after = results(loaded, mode)
        assert [[i for i, _ in r] for r in after] == [[i for i, _ in r] for r in before]
        for ra, rb in zip(after, before, strict=True):
            assert [s for _, s in ra] == pytest.approx([s for _, s in rb], abs=1e-6)
    # Only the questions themselves were embedded, never a chunk.
    assert set(counting_embedder.texts) == set(QUESTIONS.values())
    assert not {f"{c.title}\n{c.text}" for c in index.chunks} & set(counting_embedder.texts)


def test_manifest_describes_the_index(index: HybridIndex, saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["format"] == "ragzip-index"
    assert manifest["version"] == 2
    assert manifest["features"] is None  # none were precomputed for this index
    assert manifest["embedder"] == {"name": "sentence-transformers/all-MiniLM-L6-v2", "dim": 384}
    assert manifest["n_chunks"] == len(index)
    assert manifest["chunking"] == {"max_words": 120, "overlap_words": 24}
    assert manifest["dense"]["index"] == "flat"
    files = manifest["files"]
    assert {"chunks.jsonl", "dense.faiss"} <= set(files)
    assert any(name.startswith("bm25/") for name in files)
    for name, entry in files.items():
        assert (saved / name).stat().st_size == entry["size"]
        assert len(entry["sha256"]) == 64


def test_hnsw_kind_survives_a_round_trip(embedder: Any, tmp_path: Path) -> None:
    idx = HybridIndex.build(corpus_passages(), embedder=embedder, progress=False, dense_kind="hnsw")
    loaded = HybridIndex.load(idx.save(tmp_path / "h"), embedder=embedder)
    assert loaded.dense_kind == "hnsw"
    assert loaded.dense.faiss_index.hnsw.efSearch == DenseConfig().ef_search
    q = QUESTIONS["bread"]
    assert [p.id for p in loaded.search(q, 5)] == [p.id for p in idx.search(q, 5)]


@pytest.mark.parametrize("name", ["dense.faiss", "chunks.jsonl", "bm25/vocab.index.json"])
def test_flipped_byte_is_detected(saved: Path, tmp_path: Path, name: str) -> None:
    copy = copy_index(saved, tmp_path / "copy")
    target = copy / name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptedError, match="checksum"):
        HybridIndex.load(copy)


def test_truncated_or_missing_file_is_detected_even_without_hashing(
    saved: Path, tmp_path: Path
) -> None:
    copy = copy_index(saved, tmp_path / "copy")
    faiss_file = copy / "dense.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:-10])
    with pytest.raises(IndexCorruptedError, match="bytes"):
        HybridIndex.load(copy, verify=False)
    faiss_file.unlink()
    with pytest.raises(IndexCorruptedError, match="missing"):
        HybridIndex.load(copy, verify=False)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError):
        HybridIndex.load(tmp_path / "absent")


def test_foreign_directory_or_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(IndexFormatError, match=r"no manifest\.json"):
        HybridIndex.load(tmp_path)
    with pytest.raises(IndexFormatError, match="is a file"):
        HybridIndex.load(tmp_path / "notes.txt")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(IndexFormatError, match="not a ragzip index"):
        HybridIndex.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(IndexFormatError, match="JSON"):
        HybridIndex.load(tmp_path)


@pytest.mark.parametrize("version", [1, 3])
def test_other_format_version_is_refused(saved: Path, tmp_path: Path, version: int) -> None:
    copy = copy_index(saved, tmp_path / "copy")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["version"] = version
    if version == 1:  # what a version-1 index holds: no features entry
        del manifest["features"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match=rf"version {version}.*rebuild the index"):
        HybridIndex.load(copy)


def test_manifest_that_escapes_the_directory_is_refused(saved: Path, tmp_path: Path) -> None:
    copy = copy_index(saved, tmp_path / "copy")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["../outside"] = {"sha256": "0" * 64, "size": 1}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="outside"):
        HybridIndex.load(copy)


def test_chunk_count_mismatch_is_detected(saved: Path, tmp_path: Path) -> None:
    copy = copy_index(saved, tmp_path / "copy")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["n_chunks"] += 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptedError, match="disagree"):
        HybridIndex.load(copy)


def test_embedder_of_another_size_is_refused(saved: Path) -> None:
    class Other:
        def encode(self, sentences: Any, **kwargs: Any) -> np.ndarray:
            return np.ones((len(sentences), 8), dtype=np.float32)

        def get_sentence_embedding_dimension(self) -> int:
            return 8

    with pytest.raises(ConfigError, match="384"):
        HybridIndex.load(saved, embedder=Other())


def test_save_replaces_an_existing_index_atomically(
    index: HybridIndex, embedder: Any, tmp_path: Path
) -> None:
    target = tmp_path / "idx"
    index.save(target)
    small = HybridIndex.build(corpus_passages()[:3], embedder=embedder, progress=False)
    small.save(target)
    assert len(HybridIndex.load(target, embedder=embedder)) == len(small)
    assert beside(tmp_path) == ["idx"]  # no temp or old siblings


def test_failed_save_leaves_the_old_index_intact(
    index: HybridIndex, embedder: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "idx"
    index.save(target)
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}

    def crash(self: DenseIndex, path: Path) -> None:
        path.write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(DenseIndex, "save", crash)
    other = HybridIndex.build(corpus_passages()[:2], embedder=embedder, progress=False)
    with pytest.raises(OSError, match="No space"):
        other.save(target)
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert beside(tmp_path) == ["idx"]
    monkeypatch.undo()
    assert len(HybridIndex.load(target, embedder=embedder)) == len(index)


def test_save_never_overwrites_something_that_is_not_an_index(
    index: HybridIndex, tmp_path: Path
) -> None:
    precious = tmp_path / "data"
    precious.mkdir()
    (precious / "thesis.md").write_text("years of work")
    with pytest.raises(IndexFormatError, match="refusing to replace"):
        index.save(precious)
    assert (precious / "thesis.md").read_text() == "years of work"
    empty = tmp_path / "empty"
    empty.mkdir()
    index.save(empty)
    assert (empty / "manifest.json").is_file()


def test_unserialisable_metadata_is_a_clear_error(embedder: Any, tmp_path: Path) -> None:
    doc = Passage(text="Some text here.", id="d", metadata={"when": object()})
    idx = HybridIndex.build([doc], embedder=embedder, progress=False)
    with pytest.raises(InputError, match="metadata JSON cannot hold"):
        idx.save(tmp_path / "idx")
    assert beside(tmp_path) == []


# ---------------------------------------------------------------- progress


def test_progress_bars_can_be_turned_off(embedder: Any, capfd: pytest.CaptureFixture[str]) -> None:
    docs = corpus_passages()
    capfd.readouterr()
    HybridIndex.build(docs, embedder=embedder, progress=False)
    quiet = capfd.readouterr()
    assert quiet.out == "" and quiet.err == ""
    HybridIndex.build(docs, embedder=embedder, progress=True)
    loud = capfd.readouterr()
    assert "Batches" in loud.err or "%" in loud.err


def test_load_is_quiet(saved: Path, embedder: Any, capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()
    HybridIndex.load(saved, embedder=embedder)
    out = capfd.readouterr()
    assert out.out == "" and out.err == ""


def test_no_stray_files_after_save(saved: Path) -> None:
    assert beside(saved.parent, "index") == ["index"]


# ---------------------------------------------------------------- precision


def test_bfloat16_embeddings_match_float32(index: HybridIndex, tmp_path: Path) -> None:
    from ragzip.weights import load_embedder

    embedder = load_embedder("cpu", "torch")  # bfloat16 is torch's autocast
    bf16, f32 = (
        HybridIndex.build(
            corpus_passages(),
            embedder=embedder,
            progress=False,
            dense_config=DenseConfig(precision=precision),
        )
        for precision in ("bfloat16", "float32")
    )
    cosines = np.sum(bf16.dense.vectors() * f32.dense.vectors(), axis=1)
    assert cosines.min() > 0.999
    assert not np.array_equal(bf16.dense.vectors(), f32.dense.vectors())  # really bf16
    loaded = HybridIndex.load(bf16.save(tmp_path / "bf16"), embedder=embedder)
    assert loaded.dense.config.precision == "bfloat16"
    question = QUESTIONS["vaccines"]
    assert np.array_equal(loaded.embed_queries([question]), bf16.embed_queries([question]))
    assert [p.id for p in loaded.search(question, 3)] == [p.id for p in f32.search(question, 3)]


def test_auto_precision_is_resolved_and_recorded(index: HybridIndex, saved: Path) -> None:
    expected = resolve_precision("auto")  # the CPU's, or what RAGZIP_PRECISION fixes
    assert expected == os.environ.get(PRECISION_ENV) or expected == (
        "bfloat16" if native_bf16_cpu() else "float32"
    )
    assert index.dense.config.precision == expected
    assert json.loads((saved / "manifest.json").read_text())["dense"]["precision"] == expected


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ConfigError, match="precision"):
        DenseConfig(precision="int4")  # type: ignore[arg-type]


def test_progress_function_hears_every_stage_and_nothing_prints(
    embedder: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    docs = corpus_passages()
    seen: list[tuple[str, int, int]] = []
    capfd.readouterr()
    built = HybridIndex.build(docs, embedder=embedder, progress=lambda *a: seen.append(a))
    out = capfd.readouterr()
    assert out.out == "" and out.err == ""
    assert [s for s in seen if s[0] == "chunk"][-1] == ("chunk", len(docs), len(docs))
    assert [s for s in seen if s[0] == "embed"][-1] == ("embed", len(built), len(built))
    assert {s[0] for s in seen} == {"chunk", "embed", "bm25", "faiss"}
