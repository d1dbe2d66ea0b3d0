"""NQ contexts for the sentence compressor's benchmark (the passages bm25s ranks highest, the
gold one put in when missed), and its ``em`` part: the embedded generator's exact match on
uncompressed vs sentence-compressed context (``python benchmarks/sentence_speed.py em``)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from results_io import machine, write

from ragzip import Budget, Passage
from ragzip.compressors.sentence.compressor import SentenceCompressor
from ragzip.compressors.sentence.scorer import load_scorer
from ragzip.experiments.datasets import NQExample, load_nq, nq_split

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class BM25Corpus:
    """bm25s over NQ passages (deduplicated by title and text)."""

    def __init__(self, examples: Sequence[NQExample]) -> None:
        import bm25s

        seen: dict[tuple[str, str], int] = {}
        for ex in examples:
            seen.setdefault((ex.title, ex.text), len(seen))
        self.docs = list(seen)
        self._bm25s = bm25s
        self._bm25 = bm25s.BM25()
        self._bm25.index(
            bm25s.tokenize([f"{t} {x}" for t, x in self.docs], stopwords="en", show_progress=False),
            show_progress=False,
        )

    def top(self, queries: Sequence[str], k: int) -> list[list[int]]:
        tokens = self._bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
        ids, _ = self._bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [[int(i) for i in row] for row in ids]


def contexts(questions: Sequence[NQExample], corpus: BM25Corpus, k: int) -> list[list[Passage]]:
    """Top-``k`` BM25 passages per question, the gold one in place of the k-th if missed."""
    out = []
    for q, row in zip(questions, corpus.top([q.question for q in questions], k), strict=True):
        docs = [corpus.docs[i] for i in row]
        if (q.title, q.text) not in docs:
            docs[-1] = (q.title, q.text)
        out.append([Passage(text=x, title=t) for t, x in docs])
    return out


def run_em(args: argparse.Namespace) -> None:
    from ragzip.evaluation.metrics import answer_accuracy, exact_match
    from ragzip.generators.embedded import EmbeddedGenerator
    from ragzip.prompts import build_messages

    torch.set_num_threads(args.threads)
    examples = load_nq(args.data_dir)
    test = nq_split("test", examples=examples)[: args.questions]
    ctxs = contexts(test, BM25Corpus(examples), args.k)
    generator = EmbeddedGenerator(device="cpu")
    counter = generator.counter
    comp = SentenceCompressor(counter=counter, scorer=load_scorer(None, "cpu"))
    out: dict[str, dict[str, list[float]]] = {
        name: {"em": [], "acc": [], "prompt_tokens": [], "context_tokens": [], "seconds": []}
        for name in ("uncompressed", "sentence (adaptive)")
    }
    for q, c in zip(test, ctxs, strict=True):
        result = comp.compress(q.question, c, budget=Budget.compression(1.0))
        for name, texts, n_ctx in (
            ("uncompressed", [p.text for p in c], result.original_tokens),
            ("sentence (adaptive)", result.texts, result.compressed_tokens),
        ):
            messages = build_messages(q.question, texts)
            t = time.perf_counter()
            gen = generator.generate(messages, max_new_tokens=args.max_new_tokens)
            row = out[name]
            row["seconds"].append(time.perf_counter() - t)
            row["em"].append(exact_match(gen.text, list(q.answers)))
            row["acc"].append(answer_accuracy(gen.text, list(q.answers)))
            row["prompt_tokens"].append(generator.count_prompt_tokens(messages))
            row["context_tokens"].append(n_ctx)
    summary = {
        name: {
            "exact_match": float(np.mean(v["em"])),
            "answer_accuracy": float(np.mean(v["acc"])),
            "prompt_tokens_mean": float(np.mean(v["prompt_tokens"])),
            "context_tokens_mean": float(np.mean(v["context_tokens"])),
            "generate_seconds_mean": float(np.mean(v["seconds"])),
        }
        for name, v in out.items()
    }
    ratio = sum(out["uncompressed"]["context_tokens"]) / max(
        1, sum(out["sentence (adaptive)"]["context_tokens"])
    )
    record = {
        "machine": machine(),
        "setup": {
            "split": "test",
            "questions": len(test),
            "k": args.k,
            "generator": generator.name,
            "max_new_tokens": args.max_new_tokens,
            "adaptive_threshold": comp.threshold,
            "achieved_context_ratio": ratio,
        },
        "results": summary,
    }
    lines = [
        "# Sentence compressor: generator exact match on NQ test questions\n",
        f"`python benchmarks/sentence_speed.py em --questions {args.questions} --k {args.k}`\n",
        f"{len(test)} test questions, top-{args.k} BM25 passages (gold inserted when missed), "
        f"{generator.name}, greedy, {args.max_new_tokens} new tokens at most. Adaptive mode "
        f"kept 1/{ratio:.1f} of the context tokens.\n",
        "| context | EM | answer accuracy | prompt tokens | generate s |",
        "|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {s['exact_match']:.3f} | {s['answer_accuracy']:.3f} | "
            f"{s['prompt_tokens_mean']:.0f} | {s['generate_seconds_mean']:.2f} |"
        )
    write("sentence_em", record, "\n".join(lines) + "\n")
