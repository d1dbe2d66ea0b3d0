"""Choose ragzip's retrieval defaults on held-out data, and report them on the test split.

1. Embedding precision: float32 vs bfloat16 indexing throughput, side by side on the same
   passages in one run, and retrieval recall of an index built with each.
2. Fusion: BM25, dense and weighted reciprocal rank fusion (weights x rank constant) on
   - NQ-open: the 2,000 gold passages as the corpus (default chunking), recall@10 of the gold
     passage for the val questions (choice) and the test questions (report);
   - the key-value set: 75 ``"key": "value"`` records per case as the corpus, recall@1/@10 of
     the asked record (BM25 should win: the question holds the exact key).
   The default is the fusion that is at least as good as the better single retriever on both
   sets on val, with the best NQ val recall@10 (then KV recall@1) among those.

    python benchmarks/fusion.py --threads 1

Writes ``benchmarks/results/fusion.json`` and ``fusion.md``. Needs ``../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from timing import log

from ragzip.experiments.datasets import gold_doc_ids, load_kv, load_nq, nq_corpus, nq_split
from ragzip.retrievers.building import indexed_text
from ragzip.retrievers.chunking import ChunkConfig, chunk_passages
from ragzip.retrievers.dense import DenseConfig, embed_texts
from ragzip.retrievers.index import HybridIndex

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WEIGHTS = [(1.0, 1.0), (0.5, 1.0), (0.3, 1.0), (0.2, 1.0), (1.0, 0.5), (1.0, 0.0), (0.0, 1.0)]
RRF_KS = [60, 20, 5]


def doc_recall(results: list[list[Any]], gold: list[frozenset[str]], k: int) -> float:
    hits = 0
    for res, g in zip(results, gold, strict=True):
        ids = list(dict.fromkeys(p.metadata.get("doc_id", p.id) for p in res))[:k]
        hits += any(i in g for i in ids)
    return round(hits / len(gold), 4)


def precision_throughput(embedder: Any, texts: list[str], rounds: int) -> dict[str, float]:
    """Passages/s of float32 and bfloat16 embedding, interleaved (best of ``rounds``)."""
    best = {"float32": 0.0, "bfloat16": 0.0}
    embed_texts(embedder, texts[:16], precision="float32")  # warm-up
    for _ in range(rounds):
        for precision in best:
            t0 = time.perf_counter()
            embed_texts(embedder, texts, precision=precision)  # type: ignore[arg-type]
            best[precision] = max(best[precision], len(texts) / (time.perf_counter() - t0))
    return {k: round(v, 1) for k, v in best.items()}


def grid_rows(
    search: Callable[[tuple[float, float], float], list[list[Any]]], gold: list[frozenset[str]]
) -> list[dict[str, Any]]:
    """Recall of every (weights, rrf k) of the grid; ``search(weights, rrf_k)`` ranks."""
    rows = []
    for wb, wd in WEIGHTS:
        for rrf_k in RRF_KS if wb and wd else RRF_KS[:1]:
            res = search((wb, wd), rrf_k)
            rows.append(
                {
                    "weights": [wb, wd],
                    "rrf_k": rrf_k,
                    "recall@1": doc_recall(res, gold, 1),
                    "recall@10": doc_recall(res, gold, 10),
                }
            )
    return rows


def fusion_rows(index: HybridIndex, questions: list[str], gold: list[frozenset[str]]) -> list:
    return grid_rows(lambda w, k: index.search_batch(questions, 10, weights=w, rrf_k=k), gold)


def kv_rows(embedder: Any, n_cases: int) -> list[dict[str, Any]]:
    cases = load_kv()[:n_cases]
    indexes, questions, gold = [], [], []
    for case in cases:
        passages = case.passages()
        vectors = embed_texts(embedder, [p.text for p in passages], batch_size=75)
        indexes.append(
            HybridIndex.from_embeddings(passages, vectors, embedder=embedder, progress=False)
        )
        questions.append(case.query)
        gold.append(frozenset({passages[case.gold_position].id}))

    def search(weights: tuple[float, float], rrf_k: float) -> list[list[Any]]:
        pairs = zip(indexes, questions, strict=True)
        return [idx.search(q, 10, weights=weights, rrf_k=rrf_k) for idx, q in pairs]

    return grid_rows(search, gold)


def choose(val: list[dict], kv: list[dict]) -> dict[str, Any]:
    def key(r: dict) -> tuple:
        return (tuple(r["weights"]), r["rrf_k"])

    kv_by = {key(r): r for r in kv}
    singles = [r for r in val if 0.0 in r["weights"]]
    best_nq = max(r["recall@10"] for r in singles)
    best_kv1 = max(kv_by[key(r)]["recall@1"] for r in singles)
    best_kv10 = max(kv_by[key(r)]["recall@10"] for r in singles)
    ok = [
        r
        for r in val
        if 0.0 not in r["weights"]
        and r["recall@10"] >= best_nq
        and kv_by[key(r)]["recall@1"] >= best_kv1
        and kv_by[key(r)]["recall@10"] >= best_kv10
    ]
    pool = ok or [r for r in val if 0.0 not in r["weights"]]
    pick = max(pool, key=lambda r: (r["recall@10"], kv_by[key(r)]["recall@1"], r["recall@1"]))
    return {"weights": pick["weights"], "rrf_k": pick["rrf_k"], "meets_both": bool(ok)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kv-cases", type=int, default=100)
    parser.add_argument("--throughput-passages", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    from ragzip.weights import minilm_dir

    embedder = SentenceTransformer(str(minilm_dir()), device="cpu", local_files_only=True)
    examples = load_nq()
    corpus = nq_corpus(examples)
    gold_of = gold_doc_ids(examples)
    chunks = chunk_passages(corpus, ChunkConfig())
    texts = [indexed_text(c) for c in chunks]
    report: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} thread(s)",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "corpus_chunks": len(chunks),
    }
    log("embedding throughput, float32 vs bfloat16")
    report["passages_per_s"] = precision_throughput(
        embedder, texts[: args.throughput_passages], rounds=2
    )
    log(str(report["passages_per_s"]))
    splits = {name: nq_split(name, examples=examples) for name in ("val", "test")}
    per_precision = {}
    indexes = {}
    for precision in ("float32", "bfloat16"):
        log(f"index of {len(chunks)} chunks in {precision}")
        t0 = time.perf_counter()
        vectors = embed_texts(embedder, texts, precision=precision)  # type: ignore[arg-type]
        seconds = time.perf_counter() - t0
        index = HybridIndex.from_embeddings(
            chunks,
            vectors,
            embedder=embedder,
            progress=False,
            dense_config=DenseConfig(precision=precision),  # type: ignore[arg-type]
            chunk_config=ChunkConfig(),
        )
        indexes[precision] = index
        row: dict[str, Any] = {"embed_s": round(seconds, 1)}
        for split, qs in splits.items():
            gold = [gold_of[q.index] for q in qs]
            for mode in ("bm25", "dense", "hybrid"):
                res = index.search_batch([q.question for q in qs], 10, mode=mode)  # type: ignore[arg-type]
                row[f"{split}_{mode}_recall@10"] = doc_recall(res, gold, 10)
        per_precision[precision] = row
        log(f"{precision}: {row}")
    report["precision"] = per_precision
    index = indexes["float32"]
    fusion: dict[str, Any] = {}
    for split, qs in splits.items():
        fusion[split] = fusion_rows(index, [q.question for q in qs], [gold_of[q.index] for q in qs])
        log(f"fusion {split}: done")
    log("key-value cases")
    fusion["kv"] = kv_rows(embedder, args.kv_cases)
    report["fusion"] = fusion
    report["chosen"] = choose(fusion["val"], fusion["kv"])
    log(f"chosen: {report['chosen']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fusion.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "fusion.md").write_text(markdown(report))
    log("wrote benchmarks/results/fusion.{json,md}")


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Retrieval defaults: fusion and embedding precision",
        "",
        f"Run {report['date']} on {report['machine']}. Command: "
        "`python benchmarks/fusion.py --threads 1`.",
        "",
        f"Corpus: the 2,000 NQ gold passages, default chunking ({report['corpus_chunks']} chunks).",
        "",
        "## Embedding precision (indexing, same passages, interleaved, best of 2)",
        "",
        "| precision | passages/s | embed all s | val dense R@10 | test dense R@10 | "
        "test hybrid R@10 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p, row in report["precision"].items():
        lines.append(
            f"| {p} | {report['passages_per_s'][p]} | {row['embed_s']} | "
            f"{row['val_dense_recall@10']} | {row['test_dense_recall@10']} | "
            f"{row['test_hybrid_recall@10']} |"
        )
    lines += [
        "",
        "## Fusion (float32 index): recall of the gold passage / asked record",
        "",
        "| weights (bm25, dense) | rrf k | NQ val R@10 | NQ test R@10 | NQ test R@1 | KV R@1 | "
        "KV R@10 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    fusion = report["fusion"]
    for v, t, kv in zip(fusion["val"], fusion["test"], fusion["kv"], strict=True):
        w = v["weights"]
        label = "BM25 only" if w[1] == 0 else "dense only" if w[0] == 0 else f"{w[0]:g}, {w[1]:g}"
        chosen = report["chosen"]
        mark = " **(default)**" if w == chosen["weights"] and v["rrf_k"] == chosen["rrf_k"] else ""
        lines.append(
            f"| {label}{mark} | {v['rrf_k'] if 0.0 not in w else '-'} | {v['recall@10']} | "
            f"{t['recall@10']} | {t['recall@1']} | {kv['recall@1']} | {kv['recall@10']} |"
        )
    lines += [
        "",
        f"Chosen on NQ val + KV: weights {report['chosen']['weights']}, rrf k "
        f"{report['chosen']['rrf_k']} (at least as good as the better single retriever on both: "
        f"{report['chosen']['meets_both']}).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
