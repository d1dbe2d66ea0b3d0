"""The token compressor's answer recall on NQ and its key/value survival, beside ``mig``,
``random`` and ``truncate`` (``python benchmarks/token_speed.py quality|kv``)."""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from results_io import machine

import ragzip
from ragzip import Budget
from ragzip.compressors.token.compressor import TokenCompressor
from ragzip.experiments.answers import answer_in_text
from ragzip.experiments.datasets import load_kv, load_nq, nq_split
from ragzip.weights import smollm2_counter

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RATIOS = (2.0, 4.0, 8.0)


def make_compressor(name: str, counter: Any) -> Any:
    """A registered compressor; ``token-int8`` / ``token-fp32`` pin the token compressor's
    quantisation."""
    if name in ("token-int8", "token-fp32"):
        quantize = "int8" if name == "token-int8" else "none"
        return TokenCompressor(TokenCompressor.Config(quantize=quantize), counter=counter)
    return ragzip.create_compressor(name, counter=counter)


def quality_contexts(split: str, n: int, retrieved: int) -> list[tuple[str, list[str], list[str]]]:
    """Question, answers and context (gold + ``retrieved`` BM25 passages, seeded order)."""
    import bm25s

    rows = load_nq(DATA)
    questions = nq_split(split, examples=rows)[:n]
    docs = list(dict.fromkeys((r.title, r.text) for r in rows))
    index = bm25s.BM25()
    index.index(
        bm25s.tokenize([f"{t} {x}" for t, x in docs], stopwords="en", show_progress=False),
        show_progress=False,
    )
    ids, _ = index.retrieve(
        bm25s.tokenize([q.question for q in questions], stopwords="en", show_progress=False),
        k=retrieved + 3,
        show_progress=False,
        n_threads=1,
    )
    rng = random.Random(0)
    out = []
    for q, row in zip(questions, ids, strict=True):
        others = [docs[int(i)][1] for i in row if docs[int(i)][1] != q.text][:retrieved]
        passages = [q.text, *others]
        rng.shuffle(passages)
        out.append((q.question, list(q.answers), passages))
    return out


def quality(args: argparse.Namespace) -> dict[str, Any]:
    """Answer-in-context recall per compressor and ratio."""
    torch.set_num_threads(args.threads)
    counter = smollm2_counter()
    contexts = quality_contexts(args.split, args.questions, args.retrieved)
    full = float(np.mean([answer_in_text(a, "\n\n".join(p)) for _, a, p in contexts]))
    rows = []
    for name in args.compressors:
        compressor = make_compressor(name, counter)
        for ratio in RATIOS:
            hits, kept, orig, secs = 0, 0, 0, 0.0
            answered = []
            for i, (question, answers, passages) in enumerate(contexts):
                t = time.perf_counter()
                result = compressor.compress(question, passages, budget=Budget(ratio=ratio))
                secs += time.perf_counter() - t
                hit = answer_in_text(answers, result.context)
                hits += hit
                if hit:
                    answered.append(i)
                kept += result.compressed_tokens
                orig += result.original_tokens
                assert result.compressed_tokens <= result.budget_tokens
            row = {
                "compressor": name,
                "ratio": ratio,
                "answer_recall": round(hits / len(contexts), 4),
                "achieved_ratio": round(orig / max(1, kept), 3),
                "ms_per_context_wall": round(1000 * secs / len(contexts), 1),
                "answered": answered,
            }
            print(json.dumps({k: v for k, v in row.items() if k != "answered"}))
            rows.append(row)
    return {
        "part": "quality",
        "split": args.split,
        "questions": len(contexts),
        "passages_per_context": args.retrieved + 1,
        "uncompressed_answer_recall": round(full, 4),
        "machine": machine(),
        "rows": rows,
    }


def quality_markdown(report: dict[str, Any]) -> str:
    """The recall table."""
    by: dict[str, dict[float, float]] = {}
    for r in report["rows"]:
        by.setdefault(r["compressor"], {})[r["ratio"]] = r["answer_recall"]
    lines = [
        f"# Answer-in-context recall, NQ {report['split']} ({report['questions']} questions)",
        "",
        f"Context: gold passage + {report['passages_per_context'] - 1} BM25 passages; "
        f"uncompressed recall {report['uncompressed_answer_recall']:.3f}. "
        "Budgets in SmolLM2 tokens.",
        "",
        "| compressor | " + " | ".join(f"{r:g}x" for r in RATIOS) + " |",
        "|---|" + "---|" * len(RATIOS),
    ]
    for name, vals in by.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals[r]:.3f}" for r in RATIOS) + " |")
    return "\n".join(lines) + "\n"


def kv(args: argparse.Namespace) -> dict[str, Any]:
    """Exact value survival on the KV cases at ``args.ratio``."""
    torch.set_num_threads(args.threads)
    counter = smollm2_counter()
    cases = load_kv(DATA)
    rows = []
    for name in args.compressors:
        compressor = make_compressor(name, counter)
        hits, secs = 0, 0.0
        for case in cases:
            t = time.perf_counter()
            result = compressor.compress(
                case.query, case.passages(), budget=Budget(ratio=args.ratio)
            )
            secs += time.perf_counter() - t
            hits += case.value in result.context
        row = {
            "compressor": name,
            "ratio": args.ratio,
            "value_survives": round(hits / len(cases), 4),
            "ms_per_case_wall": round(1000 * secs / len(cases), 1),
        }
        print(json.dumps(row))
        rows.append(row)
    return {"part": "kv", "cases": len(cases), "machine": machine(), "rows": rows}


def kv_markdown(report: dict[str, Any]) -> str:
    """The KV table."""
    lines = [
        f"# Key-value retrieval ({report['cases']} cases, 75 UUID records each)",
        "",
        "| compressor | ratio | exact value survives | ms/case (wall) |",
        "|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['compressor']} | {r['ratio']:g}x | {r['value_survives']:.2f} | "
            f"{r['ms_per_case_wall']} |"
        )
    return "\n".join(lines) + "\n"
