"""What one compression costs per request, cold and warm, beside the answer recall it keeps.

For the first ``--questions`` NQ-open test questions, the top-10 hybrid passages (retrieved as
``ragzip eval`` retrieves them) are compressed at 4x by every text compressor. Each request is
timed cold (the compressor's feature cache emptied first: first sight of the passages) and warm
(the same request again, and the same passages with another question), at each ``--threads``
setting. Every cost is also given as a
ratio to one plain MiniLM forward pass over the same passages, timed in the same run: a figure
that survives a noisy machine. Answer-in-context recall at 4x is measured in the same run.

    python benchmarks/compress_latency.py --questions 30 --threads 1,2

Writes ``benchmarks/results/compress_latency.json`` and ``.md``. Needs ``../shared/data`` (or
``RAGZIP_DATA_DIR``); builds or reuses the evaluation index under the cache folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragzip import Budget
from ragzip.datasets import load_nq, nq_corpus, nq_split
from ragzip.evaluation.indexing import load_or_build_index
from ragzip.evaluation.metrics import answer_in_context
from ragzip.machine import machine_info
from ragzip.models import load_embedder, smollm2_counter
from ragzip.paths import paths
from ragzip.registry import create_compressor
from ragzip.reporting import markdown_table

RESULTS = Path(__file__).resolve().parent / "results"
COMPRESSORS = ("truncate", "mig", "token", "sentence")
RATIO = 4.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def contexts(n: int, k: int, index_cache: Path) -> tuple[list[Any], list[list[Any]]]:
    """The first ``n`` test questions and their top-``k`` hybrid passages."""
    examples = load_nq()
    questions = nq_split("test", examples=examples)[:n]
    corpus = nq_corpus(examples)
    index, _, _ = load_or_build_index(corpus, cache=index_cache, chunk=False, progress=False)
    return questions, [index.search(q.question, k) for q in questions]


def encoder_pass_s(embedder: Any, passages: list[Any]) -> float:
    """Seconds of one MiniLM forward pass over ``passages`` (one batch, no cache)."""
    t0 = time.perf_counter()
    embedder.encode([p.text for p in passages], batch_size=len(passages), show_progress_bar=False)
    return time.perf_counter() - t0


def clear_caches(comp: Any) -> None:
    """Forget what ``comp`` remembers of earlier requests (a cold request follows)."""
    features = getattr(comp, "features", None)
    if features is not None:
        features.clear()
    scorer = getattr(comp, "scorer", None)
    if scorer is not None:
        scorer.clear_cache()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--compressors", default=",".join(COMPRESSORS))
    parser.add_argument("--index-cache", type=Path, default=paths().index_cache)
    parser.add_argument("--out", type=Path, default=RESULTS / "compress_latency")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    names = [n for n in args.compressors.split(",") if n]
    questions, retrieved = contexts(args.questions, args.k, args.index_cache)
    counter = smollm2_counter()
    embedder = load_embedder("cpu")
    comps = {name: create_compressor(name, counter=counter) for name in names}
    budget = Budget.compression(RATIO)
    recall: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    for t in threads:
        torch.set_num_threads(t)
        log(f"{t} thread(s)")
        encoder_pass_s(embedder, retrieved[0])  # warm the encoder up
        passes = [encoder_pass_s(embedder, ctx) for ctx in retrieved]
        for name, comp in comps.items():
            comp.compress(questions[0].question, retrieved[0], budget=budget)  # load, warm up
            cold: list[float] = []
            warm: list[float] = []
            seen: list[float] = []
            found = 0
            for i, (q, ctx) in enumerate(zip(questions, retrieved, strict=True)):
                clear_caches(comp)
                t0 = time.perf_counter()
                result = comp.compress(q.question, ctx, budget=budget)
                cold.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                comp.compress(q.question, ctx, budget=budget)
                warm.append(time.perf_counter() - t0)
                other = questions[(i + 1) % len(questions)].question
                t0 = time.perf_counter()
                comp.compress(other, ctx, budget=budget)
                seen.append(time.perf_counter() - t0)
                found += answer_in_context(q.answers, result.texts)
            recall.setdefault(name, found / len(questions))
            for mode, secs in (("cold", cold), ("warm", warm), ("seen passages", seen)):
                ratios = [s / p for s, p in zip(secs, passes, strict=True)]
                rows.append(
                    {
                        "compressor": name,
                        "threads": t,
                        "mode": mode,
                        "p50_ms": 1000 * statistics.median(secs),
                        "p95_ms": 1000 * pct(secs, 95),
                        "encoder_passes_p50": statistics.median(ratios),
                        "encoder_pass_ms_p50": 1000 * statistics.median(passes),
                        "recall_4x": recall[name],
                    }
                )
                log(f"{name} {mode}: {rows[-1]}")
    report = {
        "questions": len(questions),
        "k": args.k,
        "ratio": RATIO,
        "counter": counter.name,
        "context_tokens_mean": float(
            np.mean([sum(counter.count_batch([p.text for p in ctx])) for ctx in retrieved])
        ),
        "machine": machine_info(),
        "rows": rows,
        "command": "python benchmarks/compress_latency.py " + " ".join(sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_table(
        ["compressor", "threads", "mode", "p50 ms", "p95 ms", "encoder passes (p50)", "recall@4x"],
        [
            [
                r["compressor"],
                str(r["threads"]),
                r["mode"],
                f"{r['p50_ms']:.1f}",
                f"{r['p95_ms']:.1f}",
                f"{r['encoder_passes_p50']:.3f}",
                f"{r['recall_4x']:.3f}",
            ]
            for r in rows
        ],
    )
    intro = (
        f"{report['questions']} NQ-open test questions, top-{args.k} hybrid passages "
        f"({report['context_tokens_mean']:.0f} {counter.name} tokens on average), compressed "
        f"at {RATIO:g}x on {report['machine']['processor'] or 'CPU'} "
        f"({report['machine']['cpu_count']} cores). Cold: the compressor's feature cache emptied "
        "before each request; warm: the same request again; seen passages: the same passages "
        "with another question. Encoder passes: the compression "
        "time over one MiniLM forward pass on the same passages, timed in the same run."
    )
    args.out.with_suffix(".md").write_text(
        f"# Compression cost per request\n\n{intro}\n\n{table}\n\nCommand: `{report['command']}`\n"
    )


if __name__ == "__main__":
    main()
