"""End-to-end time to first token on 10 retrieved NQ passages: uncompressed vs 4x, side by side.

For each NQ test question the :class:`~ragzip.pipeline.Pipeline` retrieves the top 10 passages
from the hybrid index over all 2,000 NQ passages, compresses them (``identity`` = uncompressed,
``truncate`` 4x, ``mig`` 4x) and answers with the embedded SmolLM2 generator. Time to first
token is what the user waits for after retrieval: the compression stage plus the generator's
prefill (``timings["compress"] + generation.ttft_s``). The three configurations run
interleaved in one process (rotating order, after one warm-up each), ``--repeats`` times per
question; a question's figure is the median of its repeats, the reported figure the median over
questions. Also recorded: prompt tokens, KV-cache bytes the prompt occupies, answer accuracy,
peak RSS.

Run timing-sensitive::

    /work/notes/heavy --exclusive python benchmarks/ttft.py --questions 8 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS: tuple[tuple[str, str, float], ...] = (
    ("uncompressed", "identity", 1.0),
    ("truncate 4x", "truncate", 4.0),
    ("mig 4x", "mig", 4.0),
)


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument(
        "--index-cache",
        type=Path,
        default=Path("/tmp/evcache"),
        help="Folder with (or for) the NQ index of `ragzip eval`.",
    )
    args = parser.parse_args()

    from ragzip.core.machine import peak_rss_bytes
    from ragzip.core.types import Budget
    from ragzip.evaluation.indexing import load_or_build_index
    from ragzip.evaluation.metrics import answer_accuracy
    from ragzip.experiments.datasets import load_nq, nq_corpus, nq_split
    from ragzip.generators.embedded import EmbeddedGenerator
    from ragzip.pipeline import Pipeline
    from ragzip.profiling.measure import kv_bytes_per_token
    from ragzip.registry import create_compressor

    examples = load_nq(ROOT.parent / "shared" / "data")
    index, source, index_s = load_or_build_index(
        nq_corpus(examples), cache=args.index_cache, chunk=False, progress=False
    )
    questions = nq_split("test", examples=examples)[: args.questions]
    generator = EmbeddedGenerator()
    kv_per_token = kv_bytes_per_token(generator.model)
    pipes = {
        label: Pipeline(
            create_compressor(name, counter=generator.counter),
            Budget.compression(ratio),
            retriever=index,
            generator=generator,
            k=args.k,
            max_new_tokens=args.max_new_tokens,
        )
        for label, name, ratio in CONFIGS
    }
    for pipe in pipes.values():  # warm-up: models loaded, caches filled
        pipe.run(questions[0].question)

    rows: list[dict[str, Any]] = []
    labels = [c[0] for c in CONFIGS]
    for qi, ex in enumerate(questions):
        runs: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
        answers: dict[str, str] = {}
        context_tokens = 0
        for rep in range(args.repeats):
            shift = (qi + rep) % len(labels)
            for label in labels[shift:] + labels[:shift]:
                res = pipes[label].run(ex.question)
                assert res.generation is not None
                runs[label].append(
                    {
                        "ttft_s": res.timings["compress"] + res.generation.ttft_s,
                        "compress_s": res.timings["compress"],
                        "prefill_s": res.generation.ttft_s,
                        "retrieve_s": res.timings["retrieve"],
                        "prompt_tokens": float(res.prompt_tokens),
                        "context_tokens": float(res.compression.compressed_tokens),
                    }
                )
                answers[label] = res.answer
                context_tokens = res.compression.original_tokens
        row: dict[str, Any] = {"index": ex.index, "question": ex.question}
        row["retrieved_context_tokens"] = context_tokens
        for label in labels:
            med = {key: _median([r[key] for r in runs[label]]) for key in runs[label][0]}
            med["accuracy"] = answer_accuracy(answers[label], ex.answers)
            med["answer"] = answers[label]  # type: ignore[assignment]
            row[label] = med
        rows.append(row)
        print(
            f"[{qi + 1}/{len(questions)}] "
            + "  ".join(f"{label}: {1000 * row[label]['ttft_s']:.0f} ms" for label in labels),
            flush=True,
        )

    summary: dict[str, Any] = {}
    base = _median([r["uncompressed"]["ttft_s"] for r in rows])
    for label in labels:
        ttft = _median([r[label]["ttft_s"] for r in rows])
        prompt = _median([r[label]["prompt_tokens"] for r in rows])
        summary[label] = {
            "median_ttft_s": ttft,
            "median_compress_s": _median([r[label]["compress_s"] for r in rows]),
            "median_prefill_s": _median([r[label]["prefill_s"] for r in rows]),
            "median_prompt_tokens": prompt,
            "median_context_tokens": _median([r[label]["context_tokens"] for r in rows]),
            "kv_cache_bytes": None if kv_per_token is None else int(kv_per_token * prompt),
            "ttft_reduction_x": base / ttft,
            "median_speedup_per_question_x": _median(
                [r["uncompressed"]["ttft_s"] / r[label]["ttft_s"] for r in rows]
            ),
            "accuracy": sum(r[label]["accuracy"] for r in rows) / len(rows),
        }
    doc = {
        "schema": "ragzip-ttft/1",
        "command": "python benchmarks/ttft.py " + shlex.join(sys.argv[1:]),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "generator": generator.name,
        "k": args.k,
        "questions": len(rows),
        "repeats": args.repeats,
        "index": {"source": source, "seconds": index_s, "passages": len(examples)},
        "kv_bytes_per_token": kv_per_token,
        "peak_rss_bytes": peak_rss_bytes(),
        "summary": summary,
        "rows": rows,
    }
    write(doc)


def write(doc: dict[str, Any]) -> None:
    """Write ``ttft.json`` and ``ttft.md`` under ``benchmarks/results``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ttft.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "ttft.md").write_text(_markdown(doc), encoding="utf-8")
    print(f"wrote {RESULTS / 'ttft.json'} and ttft.md", flush=True)


def _markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# End-to-end time to first token: 10 retrieved NQ passages, uncompressed vs 4x",
        "",
        f"Generator `{doc['generator']}` (embedded, CPU, OMP_NUM_THREADS="
        f"{doc['omp_num_threads']}); top-{doc['k']} passages from the hybrid index over "
        f"{doc['index']['passages']} NQ passages; {doc['questions']} NQ test questions × "
        f"{doc['repeats']} interleaved repeats, medians. TTFT = compression + prefill (after "
        "retrieval, which is the same for all). Peak RSS "
        f"{doc['peak_rss_bytes'] / 2**20:.0f} MiB.",
        "",
        f"Command: `{doc['command']}` (under `/work/notes/heavy`)",
        "",
        "| configuration | median TTFT (ms) | compress (ms) | prefill (ms) | prompt tokens "
        "| context tokens | KV cache (MiB) | TTFT reduction | accuracy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, s in doc["summary"].items():
        kv = "-" if s["kv_cache_bytes"] is None else f"{s['kv_cache_bytes'] / 2**20:.1f}"
        lines.append(
            f"| {label} | {1000 * s['median_ttft_s']:.0f} | {1000 * s['median_compress_s']:.1f} "
            f"| {1000 * s['median_prefill_s']:.0f} | {s['median_prompt_tokens']:.0f} "
            f"| {s['median_context_tokens']:.0f} | {kv} | {s['ttft_reduction_x']:.2f}x "
            f"| {s['accuracy']:.2f} |"
        )
    lines += ["", "Per question (median TTFT in ms):", ""]
    labels = list(doc["summary"])
    lines.append("| question | context tokens | " + " | ".join(labels) + " |")
    lines.append("|---|---|" + "---|" * len(labels))
    for r in doc["rows"]:
        lines.append(
            f"| {r['question']} | {r['retrieved_context_tokens']} | "
            + " | ".join(f"{1000 * r[label]['ttft_s']:.0f}" for label in labels)
            + " |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)
