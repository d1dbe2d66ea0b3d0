"""Reranking from the compression pass: recall@1 of the passages ordered by each compressor's
own relevance scores, beside hybrid and dense retrieval's order.

For each question of the split: the top-10 passages of the NQ index (whole gold passages as
the corpus, as ``ragzip eval``), hybrid; each compressor compresses them at ``--ratio`` and
:meth:`~ragzip.core.types.CompressionResult.ranked` orders them by the relevance its pass computed
(the sentence classifier's best sentence probability, MIG's best cosine). Recall@k: a gold
passage among the first k. Recall@10 is the same set for every order.

    python benchmarks/rerank.py --split test --threads 2

Writes ``benchmarks/results/rerank_<split>.json`` and ``.md``. Needs ``../shared/data``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from results_io import machine, write
from timing import log

from ragzip import Budget, create_compressor
from ragzip.evaluation.indexing import load_or_build_index
from ragzip.evaluation.metrics import recall_at_k, source_id
from ragzip.experiments.datasets import gold_doc_ids, load_nq, nq_corpus, nq_split
from ragzip.experiments.reporting import markdown_table
from ragzip.weights import smollm2_counter


def _secs(row: dict[str, Any]) -> str:
    return "" if row["s_per_question"] is None else f"{row['s_per_question']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test")
    parser.add_argument("-n", type=int, default=0, help="questions (0: the whole split)")
    parser.add_argument("--ratio", type=float, default=4.0)
    parser.add_argument("--compressors", default="sentence,mig,cascade")
    parser.add_argument("--index-cache", type=Path, default=Path.home() / ".cache/ragzip/indexes")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    examples = load_nq()
    questions = nq_split(args.split, examples=examples)
    if args.n:
        questions = questions[: args.n]
    gold_of = gold_doc_ids(examples)
    gold = [gold_of[q.index] for q in questions]
    index, _, _ = load_or_build_index(
        nq_corpus(examples), cache=args.index_cache, chunk=False, progress=False
    )
    texts = [q.question for q in questions]
    orders: dict[str, list[list[str]]] = {}
    tops = {}
    for mode in ("hybrid", "dense", "bm25"):
        found = index.search_batch(texts, 10, mode=mode)  # type: ignore[arg-type]
        orders[mode] = [[source_id(p) for p in res] for res in found]
        tops[mode] = found
    counter = smollm2_counter()
    seconds: dict[str, float] = {}
    for spec in args.compressors.split(","):
        comp = create_compressor(spec, counter=counter)
        log(f"{spec}: compressing {len(questions)} contexts at {args.ratio:g}x")
        t0 = time.perf_counter()
        ranked = []
        for q, ctx in zip(texts, tops["hybrid"], strict=True):
            result = comp.compress(q, ctx, budget=Budget(ratio=args.ratio))
            ranked.append([source_id(p.passage) for p in result.ranked()])
        seconds[spec] = (time.perf_counter() - t0) / len(questions)
        orders[f"hybrid → {spec}"] = ranked
    rows = [
        {
            "order": name,
            "recall@1": round(recall_at_k(ids, gold, 1), 4),
            "recall@3": round(recall_at_k(ids, gold, 3), 4),
            "recall@10": round(recall_at_k(ids, gold, 10), 4),
            "s_per_question": round(seconds[name.split(" → ")[1]], 3) if "→" in name else None,
        }
        for name, ids in orders.items()
    ]
    record: dict[str, Any] = {
        "machine": machine(),
        "threads": args.threads,
        "split": args.split,
        "questions": len(questions),
        "ratio": args.ratio,
        "rows": rows,
    }
    lines = [
        f"# Reranking from the compression pass ({args.split}, {len(questions)} questions)",
        "",
        f"Top-10 hybrid passages reordered by each compressor's relevance while compressing "
        f"at {args.ratio:g}x; {record['machine']['processor']}, {args.threads} torch "
        "thread(s). `python benchmarks/rerank.py`",
        "",
        markdown_table(
            ["order", "recall@1", "recall@3", "recall@10", "s/question (compression)"],
            [
                [r["order"], *(f"{r[f'recall@{k}']:.3f}" for k in (1, 3, 10)), _secs(r)]
                for r in rows
            ],
            align="lrrrr",
        ),
    ]
    write(f"rerank_{args.split}", record, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
