"""The retrieval benchmark's measured stages on real NQ text: indexing with embedding, one query's
embedding, and recall of each retriever (ragzip's folder index, Postgres, LangChain)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from retrieval_corpus import nq_docs
from retrieval_langchain import langchain_ensemble, minilm_for_langchain
from timing import Stopwatch, log, time_each

from ragzip.encoders.embedding import Precision
from ragzip.experiments import datasets as data
from ragzip.retrievers import HybridIndex
from ragzip.retrievers.building import indexed_text
from ragzip.retrievers.dense import DenseConfig, embed_texts
from ragzip.retrievers.fusion import Mode


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
