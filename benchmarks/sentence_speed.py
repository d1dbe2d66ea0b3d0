"""Benchmark of the EXIT-style sentence compressor (``ragzip.compressors.sentence``).

Three parts, each writing JSON and Markdown under ``benchmarks/results/``:

* ``speed`` — throughput and memory on CPU: requests of 10 NQ passages of 4-6 sentences
  (≈50 sentences, the passages BM25 ranks highest for a test question among such passages);
  sentences scored per second, request latency p50/p95 (adaptive mode, the generator's
  tokenizer counting the budget), model load time and peak resident memory.
* ``quality`` — answer-in-context recall on NQ test questions. Context: the 10 passages BM25
  (bm25s) ranks highest among all 2,000 NQ passages for the question, the gold passage put in
  place of the 10th when BM25 missed it. Compressors ``sentence`` (budgeted) and the baselines
  ``mig``, ``random``, ``truncate`` at 2x/4x/8x; ``sentence`` adaptive with no budget cap (its
  achieved ratio reported). Budgets are counted in SmolLM2's tokenizer.
* ``em`` — SQuAD exact match, answer accuracy and prompt tokens of the embedded generator
  (SmolLM2-135M-Instruct) on the first test questions: uncompressed context vs the adaptive
  sentence compressor.

Run from the project root (the data folder is ``../shared/data``)::

    python benchmarks/sentence_speed.py speed --requests 30
    python benchmarks/sentence_speed.py quality --questions 500
    python benchmarks/sentence_speed.py em --questions 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from results_io import machine, peak_rss_mb, write
from sentence_em import BM25Corpus, contexts, run_em

from ragzip import Budget, Passage
from ragzip.compressors.sentence.compressor import SentenceCompressor
from ragzip.compressors.sentence.features import PassageSentences
from ragzip.compressors.sentence.scorer import SentenceScorer, load_scorer
from ragzip.compressors.units import sentence_spans
from ragzip.encoders.embedding import FixedPrecision
from ragzip.experiments.answers import answer_in_text
from ragzip.experiments.datasets import NQExample, load_nq, nq_split
from ragzip.experiments.reporting import markdown_table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RATIOS = (2.0, 4.0, 8.0)


class MemoScorer(SentenceScorer):
    """A scorer that reuses the probabilities of a (query, passages) it has already scored.

    Lets one benchmark score each context once and reuse it across ratios and modes; the
    selection code under test is unchanged.
    """

    def __init__(self, inner: SentenceScorer) -> None:
        self.__dict__.update(inner.__dict__)
        self._memo: dict[tuple[str, tuple[PassageSentences, ...]], list[np.ndarray]] = {}
        self.scored_sentences = 0
        self.score_seconds = 0.0

    def score(
        self,
        query: str,
        passages: Sequence[PassageSentences],
        *,
        batch_size: int = 32,
        precision: FixedPrecision = "float32",
    ) -> list[np.ndarray]:
        key = (query, tuple(passages))
        if key not in self._memo:
            t0 = time.perf_counter()
            self._memo[key] = super().score(
                query, passages, batch_size=batch_size, precision=precision
            )
            self.score_seconds += time.perf_counter() - t0
            self.scored_sentences += sum(len(p.sentences) for p in passages)
        return self._memo[key]


class MemoEmbedder:
    """Caches sentence embeddings of an embedder by text (for MIG across ratios)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.memo: dict[str, np.ndarray] = {}

    def encode(self, sentences: list[str], **kwargs: Any) -> np.ndarray:
        todo = [s for s in dict.fromkeys(sentences) if s not in self.memo]
        if todo:
            vecs = self.inner.encode(todo, **kwargs)
            self.memo.update(zip(todo, np.asarray(vecs, dtype=np.float32), strict=True))
        return np.stack([self.memo[s] for s in sentences])


# ------------------------------------------------------------------------------------ speed


def _time_requests(
    comp: SentenceCompressor, test: Sequence[NQExample], requests: Sequence[list[Passage]]
) -> dict[str, float]:
    comp.compress(test[0].question, requests[0], budget=Budget.compression(1))  # warm-up
    latencies, cpu, score_s, n_sent = [], [], [], []
    for q, passages in zip(test, requests, strict=True):
        t, c = time.perf_counter(), time.process_time()
        result = comp.compress(q.question, passages, budget=Budget.compression(1))
        latencies.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        score_s.append(result.timings["score"])
        n_sent.append(sum(len(sentence_spans(p.text)) for p in passages))
    return {
        "sentences_per_second_scoring": sum(n_sent) / sum(score_s),
        "sentences_per_second_end_to_end": sum(n_sent) / sum(latencies),
        "latency_ms_p50": 1000 * float(np.percentile(latencies, 50)),
        "latency_ms_p95": 1000 * float(np.percentile(latencies, 95)),
        "cpu_ms_per_request": 1000 * statistics.mean(cpu),
        "sentences_per_cpu_second": sum(n_sent) / sum(cpu),
        "load_average_1min_after": os.getloadavg()[0],
    }


def run_speed(args: argparse.Namespace) -> None:
    from ragzip.weights import smollm2_counter

    examples = load_nq(args.data_dir)
    test = nq_split("test", examples=examples)[: args.requests]
    pool = [ex for ex in examples if 4 <= len(sentence_spans(ex.text)) <= 6]
    corpus = BM25Corpus(pool)
    counter = smollm2_counter()
    requests = [
        [Passage(text=corpus.docs[i][1], title=corpus.docs[i][0]) for i in row]
        for row in corpus.top([q.question for q in test], 10)
    ]
    rss0 = peak_rss_mb()
    t0 = time.perf_counter()
    scorer = load_scorer(None, "cpu")
    load_s = time.perf_counter() - t0
    rss_loaded = peak_rss_mb()
    n_sent = [sum(len(sentence_spans(p.text)) for p in r) for r in requests]
    n_tokens = counter.count_batch([p.text for r in requests for p in r])
    rows = []
    for threads in args.thread_grid:
        for precision in ("float32", "bfloat16"):
            torch.set_num_threads(threads)
            config = SentenceCompressor.Config(precision=precision)
            comp = SentenceCompressor(config, counter=counter, scorer=scorer)
            rows.append(
                {"threads": threads, "precision": precision, **_time_requests(comp, test, requests)}
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    record: dict[str, Any] = {
        "machine": machine(),
        "workload": {
            "requests": len(requests),
            "passages_per_request": 10,
            "sentences_per_request_mean": statistics.mean(n_sent),
            "context_tokens_per_request_mean": sum(n_tokens) / len(requests),
            "counter": counter.name,
            "mode": "adaptive",
        },
        "model_load_seconds": load_s,
        "rows": rows,
        "peak_rss_mib_before_model": rss0,
        "peak_rss_mib_after_load": rss_loaded,
        "peak_rss_mib_after_run": peak_rss_mb(),
    }
    work = record["workload"]
    lines = [
        "# Sentence compressor speed (CPU)\n",
        f"`python benchmarks/sentence_speed.py speed --requests {args.requests}`\n",
        f"{len(requests)} requests of 10 NQ passages, {work['sentences_per_request_mean']:.1f} "
        f"sentences and {work['context_tokens_per_request_mean']:.0f} {counter.name} tokens on "
        f"average, adaptive mode, on {os.cpu_count()} CPU cores shared with other jobs (1-min "
        "load average given per row; wall-clock figures depend on it, CPU-time ones less).\n",
        "| threads | precision | sentences/s (scoring) | sentences/s (end to end) | p50 ms "
        "| p95 ms | CPU ms/request | load avg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['threads']} | {r['precision']} | {r['sentences_per_second_scoring']:.1f} | "
            f"{r['sentences_per_second_end_to_end']:.1f} | {r['latency_ms_p50']:.0f} | "
            f"{r['latency_ms_p95']:.0f} | {r['cpu_ms_per_request']:.0f} | "
            f"{r['load_average_1min_after']:.1f} |"
        )
    lines += [
        "",
        f"Model load {load_s:.2f} s. Peak RSS: {rss0:.0f} MiB before the model (data, "
        f"tokenizers), {rss_loaded:.0f} MiB after loading it, "
        f"{record['peak_rss_mib_after_run']:.0f} MiB after all runs.",
    ]
    write("sentence_speed", record, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------- quality


def run_quality(args: argparse.Namespace) -> None:
    import ragzip
    from ragzip.weights import load_embedder, smollm2_counter

    torch.set_num_threads(args.threads)
    examples = load_nq(args.data_dir)
    test = nq_split("test", examples=examples)[: args.questions]
    ctxs = contexts(test, BM25Corpus(examples), args.k)
    counter = smollm2_counter()
    scorer = MemoScorer(load_scorer(None, "cpu"))
    built: dict[str, Any] = {
        "sentence (budgeted)": SentenceCompressor(
            SentenceCompressor.Config(mode="budgeted"), counter=counter, scorer=scorer
        ),
        "mig": ragzip.create_compressor(
            "mig", counter=counter, embedder=MemoEmbedder(load_embedder("cpu"))
        ),
        "random": ragzip.create_compressor("random", counter=counter),
        "truncate": ragzip.create_compressor("truncate", counter=counter),
    }
    adaptive = SentenceCompressor(counter=counter, scorer=scorer)
    rows: list[dict[str, Any]] = []
    full_recall = float(
        np.mean(
            [
                answer_in_text(list(q.answers), "\n\n".join(p.text for p in c))
                for q, c in zip(test, ctxs, strict=True)
            ]
        )
    )

    def evaluate(label: str, comp: Any, budget: Budget, requested: float | None) -> None:
        hits, orig, kept, secs = [], 0, 0, 0.0
        for q, c in zip(test, ctxs, strict=True):
            t = time.perf_counter()
            result = comp.compress(q.question, c, budget=budget)
            secs += time.perf_counter() - t
            assert result.compressed_tokens <= result.budget_tokens
            hits.append(answer_in_text(list(q.answers), result.context))
            orig += result.original_tokens
            kept += result.compressed_tokens
        rows.append(
            {
                "compressor": label,
                "requested_ratio": requested,
                "answer_in_context_recall": float(np.mean(hits)),
                "achieved_ratio": orig / max(kept, 1),
                "kept_tokens_mean": kept / len(test),
                "seconds_total": secs,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    evaluate("sentence (adaptive)", adaptive, Budget.compression(1.0), None)
    for ratio in RATIOS:
        for label, comp in built.items():
            evaluate(label, comp, Budget.compression(ratio), ratio)
    record = {
        "machine": machine(),
        "setup": {
            "split": "test",
            "questions": len(test),
            "k": args.k,
            "retrieval": "bm25s top-k over all 2,000 NQ passages, gold put in place of the k-th "
            "when missed",
            "counter": counter.name,
            "context_answer_recall_uncompressed": full_recall,
            "adaptive_threshold": adaptive.threshold,
            "sentence_scoring_seconds": scorer.score_seconds,
            "sentences_scored": scorer.scored_sentences,
        },
        "rows": rows,
    }
    lines = [
        "# Sentence compressor: answer-in-context recall on NQ test questions\n",
        f"`python benchmarks/sentence_speed.py quality --questions {args.questions} "
        f"--k {args.k}`\n",
        f"{len(test)} test questions, top-{args.k} BM25 passages (gold inserted when missed); "
        f"uncompressed recall {full_recall:.3f}; budgets in {counter.name} tokens.\n",
        markdown_table(
            ["compressor", "requested", "achieved ratio", "answer-in-context recall"],
            [
                [
                    r["compressor"],
                    "adaptive" if r["requested_ratio"] is None else f"{r['requested_ratio']:g}x",
                    f"{r['achieved_ratio']:.2f}x",
                    f"{r['answer_in_context_recall']:.3f}",
                ]
                for r in rows
            ],
        ),
    ]
    write("sentence_quality", record, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------- em


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("speed", "quality", "em"))
    parser.add_argument("--data-dir", default=str(DATA))
    parser.add_argument("--threads", type=int, default=2, help="quality/em: torch threads")
    parser.add_argument(
        "--thread-grid", type=int, nargs="+", default=[1, 2], help="speed: torch threads to time"
    )
    parser.add_argument("--requests", type=int, default=30, help="speed: requests timed")
    parser.add_argument("--questions", type=int, default=None, help="quality/em: test questions")
    parser.add_argument("--k", type=int, default=10, help="passages per context")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    if args.questions is None:
        args.questions = 100 if args.part == "em" else 500
    {"speed": run_speed, "quality": run_quality, "em": run_em}[args.part](args)


if __name__ == "__main__":
    main()
