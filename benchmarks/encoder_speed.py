"""What MiniLM costs on each backend, one thread: a question's embedding (the retrieval and
``mig`` path of every request) and passages embedded per second (indexing).

    python benchmarks/encoder_speed.py --questions 200 --passages 500

Backends side by side in one run: ``torch`` (float32; bfloat16 autocast where the CPU has it
natively and ``--precision auto``), ``onnx`` (float32 graph) and ``onnx-int8``. Writes
``benchmarks/results/encoder_speed.json`` and ``.md``. Needs ``../shared/data`` (or
``RAGZIP_DATA_DIR``).
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

from ragzip.core.machine import cpu_label, machine_info
from ragzip.encoders.embedding import autocast, resolve_precision
from ragzip.experiments.datasets import load_nq, nq_corpus, nq_split
from ragzip.experiments.reporting import markdown_table
from ragzip.weights import load_embedder

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--passages", type=int, default=500)
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--precision", default="float32", help="torch's: float32 or auto")
    parser.add_argument("--out", type=Path, default=RESULTS / "encoder_speed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    examples = load_nq()
    questions = [q.question for q in nq_split("test", examples=examples)[: args.questions]]
    passages = [f"{p.title}. {p.text}" for p in nq_corpus(examples)[: args.passages]]
    rows: list[dict[str, Any]] = []
    for backend in args.backends.split(","):
        embedder = load_embedder("cpu", backend)
        graph = {"onnx": "float32", "onnx-int8": "int8"}
        precision = resolve_precision(args.precision) if backend == "torch" else graph[backend]
        kwargs = {"batch_size": 32, "normalize_embeddings": True, "show_progress_bar": False}
        with autocast("cpu", args.precision if backend == "torch" else "float32"):  # type: ignore[arg-type]
            embedder.encode(questions[:5], **kwargs)  # warm up
            seconds = []
            for q in questions:
                t0 = time.perf_counter()
                embedder.encode([q], **kwargs)
                seconds.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            embedder.encode(passages, **kwargs)
            indexing = time.perf_counter() - t0
        rows.append(
            {
                "backend": backend,
                "precision": precision,
                "query_p50_ms": 1000 * statistics.median(seconds),
                "query_p95_ms": 1000 * float(np.percentile(seconds, 95)),
                "passages_per_s": len(passages) / indexing,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    report = {
        "threads": 1,
        "questions": len(questions),
        "passages": len(passages),
        "cpu": cpu_label(),
        "machine": machine_info(),
        "rows": rows,
        "command": "python benchmarks/encoder_speed.py " + " ".join(sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_table(
        ["backend", "precision", "question p50 ms", "question p95 ms", "passages/s"],
        [
            [
                r["backend"],
                r["precision"],
                f"{r['query_p50_ms']:.2f}",
                f"{r['query_p95_ms']:.2f}",
                f"{r['passages_per_s']:.0f}",
            ]
            for r in rows
        ],
    )
    args.out.with_suffix(".md").write_text(
        f"# MiniLM per backend, one thread\n\n{report['cpu']}: {len(questions)} NQ-open test "
        f"questions embedded one at a time, then {len(passages)} NQ passages (title and text) "
        f"as one indexing job.\n\n{table}\n\nCommand: `{report['command']}`\n"
    )


if __name__ == "__main__":
    main()
