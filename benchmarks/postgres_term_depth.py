"""How many postings per query term the Postgres index reads (``PostgresIndex.term_depth``):
recall, agreement with reading every posting, and query latency at 100k chunks.

Runs on the 100k-chunk table ``benchmarks/retrieval.py --sizes 100000`` leaves in the embedded
Postgres under ``--cache-dir`` (the NQ chunks plus synthetic ones, whose sentences repeat, so
posting lists are longer than a natural corpus's). Questions: the NQ test split; gold: the
question's own passage, one of 100k chunks. Latency: one query at a time, embedding included,
one client thread.

    python benchmarks/retrieval.py --sizes 100000 --skip-langchain --skip-indexing
    python benchmarks/postgres_term_depth.py --threads 1

Writes ``benchmarks/results/postgres-bm25/term_depth.json`` and ``.md``. Needs ``../shared/data``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from results_io import RESULTS, machine
from retrieval_corpus import DEFAULT_DATA, load_nq
from timing import log, time_each

from ragzip.experiments import datasets as data
from ragzip.retrievers.postgres import PostgresIndex, embedded_dsn, release_embedded
from ragzip.retrievers.postgres.index import TERM_DEPTH
from ragzip.weights import load_embedder

EVERY = 10**9
"""A depth no term reaches: every posting read (plain BM25)."""


def _ranked(index: PostgresIndex, questions: list[str], mode: str) -> list[list[str]]:
    return [[p.id for p in index.search(q, 10, mode=mode)] for q in questions]  # type: ignore[arg-type]


def _doc(chunk_id: str) -> str:
    return chunk_id.split("#", 1)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache-dir", type=Path, default=Path("/tmp/ragzip-bench"))
    p.add_argument("--table", default="bench_100000")
    p.add_argument("--depths", type=int, nargs="*", default=[EVERY, 5000, 2000, 1000, 500])
    p.add_argument("--latency-queries", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = load_nq(args.data_dir)
    test = data.split_indices(len(rows))["test"]
    questions = [rows[i]["question"] for i in test]
    gold = [f"nq{i}" for i in test]
    folder = args.cache_dir / "pgdata"
    dsn = embedded_dsn(folder)
    record: dict[str, Any] = {"machine": machine(), "table": args.table, "depths": []}
    try:
        with PostgresIndex.connect(dsn, table=args.table, embedder=load_embedder()) as index:
            record["chunks"] = len(index)
            exact: dict[str, list[list[str]]] = {}
            for depth in args.depths:
                index.term_depth = depth
                row: dict[str, Any] = {"term_depth": depth}
                for mode in ("bm25", "hybrid"):
                    ranked = _ranked(index, questions, mode)
                    exact.setdefault(mode, ranked)
                    docs = [[_doc(c) for c in r] for r in ranked]
                    hits = list(zip(gold, docs, strict=True))
                    same = [
                        len(set(a) & set(b)) / 10 for a, b in zip(ranked, exact[mode], strict=True)
                    ]
                    row[mode] = {
                        "recall@1": float(np.mean([g in d[:1] for g, d in hits])),
                        "recall@10": float(np.mean([g in d for g, d in hits])),
                        "top10_overlap_with_every_posting": float(np.mean(same)),
                    }
                measured = questions[: args.latency_queries]
                row["hybrid_latency"] = time_each(
                    lambda q: index.search(q, 10), measured, questions[-20:]
                )
                log(f"{row}")
                record["depths"].append(row)
    finally:
        release_embedded(folder)
    record["questions"] = len(questions)
    record["when"] = time.strftime("%Y-%m-%d %H:%M:%S")
    out = RESULTS / "postgres-bm25"
    out.mkdir(parents=True, exist_ok=True)
    import json

    (out / "term_depth.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (out / "term_depth.md").write_text(_markdown(record, args.threads), encoding="utf-8")
    print(_markdown(record, args.threads))


def _markdown(record: dict[str, Any], threads: int) -> str:
    m = record["machine"]
    lines = [
        "# Postgres BM25: postings read per query term",
        "",
        f"{record['chunks']} chunks (table `{record['table']}`), {record['questions']} NQ test "
        f"questions, k=10. CPU: {m['processor']}, {m['cpus']} cores; client torch threads: "
        f"{threads}; Postgres on the same cores. Run {record['when']}. Command: "
        "`python benchmarks/postgres_term_depth.py --threads 1`. Top-10 = all postings: the "
        "share of the ten chunks found when every posting is read. The default is "
        f"`TERM_DEPTH = {TERM_DEPTH}` (`ragzip.retrievers.postgres.index`).",
        "",
        "| postings per term | BM25 R@1 | BM25 R@10 | BM25 top-10 = all postings | hybrid R@1 "
        "| hybrid R@10 | hybrid top-10 = all postings | hybrid p50 ms | p95 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in record["depths"]:
        depth = "all" if r["term_depth"] >= EVERY else str(r["term_depth"])
        b, h, lat = r["bm25"], r["hybrid"], r["hybrid_latency"]
        lines.append(
            f"| {depth} | {b['recall@1']:.3f} | {b['recall@10']:.3f} | "
            f"{b['top10_overlap_with_every_posting']:.3f} | {h['recall@1']:.3f} | "
            f"{h['recall@10']:.3f} | {h['top10_overlap_with_every_posting']:.3f} | "
            f"{lat['p50_ms']} | {lat['p95_ms']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
