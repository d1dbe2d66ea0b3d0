"""What one compression costs per request, cold and warm, beside the answer recall it keeps.

For the first ``--questions`` NQ-open test questions, the top-10 hybrid passages (retrieved as
``ragzip eval`` retrieves them) are compressed at 4x by every text compressor. Each request is
timed cold (the compressor's feature cache emptied first: first sight of the passages) and warm
(the same request again, and the same passages with another question), at each ``--threads``
setting. Every cost is also given as a
ratio to one plain float32 PyTorch MiniLM forward pass over the same passages, timed in the same
run: a figure that survives a noisy machine (and compares backends: ``mig:backend=torch`` beside
``mig`` shows what the fast path gains). Answer-in-context recall at 4x is measured in the same run.

    python benchmarks/compress_latency.py --questions 30 --threads 1,2

A request over chunks of a ``ragzip index`` is also timed for compressors that precompute
(``indexed``: the passages' sentence vectors from the index, the question's from retrieval).
``--device cuda`` times the model-based compressors on a GPU; ``--save-contexts`` and
``--contexts`` carry the retrieved passages to a machine without the data or the index, and
``--tokenizer`` names a tokenizer folder there. ``--blocks 20`` has the configs take turns over
blocks of 20 questions (each block after one untimed request), so that backends or graphs
compared side by side share the machine's drift.

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
from timing import log

from ragzip import Budget
from ragzip.core.machine import cpu_label, machine_info
from ragzip.core.paths import paths
from ragzip.core.types import Passage
from ragzip.evaluation.metrics import answer_in_context
from ragzip.experiments.reporting import markdown_table
from ragzip.profiling.measure import forget_features
from ragzip.registry import create_compressor
from ragzip.weights import counter_from_folder, load_embedder, smollm2_counter

RESULTS = Path(__file__).resolve().parent / "results"
COMPRESSORS = ("truncate", "mig", "token", "sentence")
WITH_DEVICE = ("mig", "token", "sentence")
RATIO = 4.0


def contexts(
    n: int, k: int, index_cache: Path, split: str = "test"
) -> tuple[list[Any], list[list[Passage]]]:
    """The first ``n`` questions of ``split`` (``question``, ``answers``) and their top-``k`` hybrid
    passages."""
    from ragzip.evaluation.indexing import load_or_build_index
    from ragzip.experiments.datasets import load_nq, nq_corpus, nq_split

    examples = load_nq()
    questions = nq_split(split, examples=examples)[:n]
    corpus = nq_corpus(examples)
    index, _, _ = load_or_build_index(corpus, cache=index_cache, chunk=False, progress=False)
    rows = [{"question": q.question, "answers": list(q.answers)} for q in questions]
    return rows, [index.search(q.question, k) for q in questions]


def save_contexts(path: Path, questions: list[Any], retrieved: list[list[Passage]]) -> None:
    passages = [[{"text": p.text, "title": p.title, "id": p.id} for p in c] for c in retrieved]
    path.write_text(json.dumps({"questions": questions, "retrieved": passages}))


def read_contexts(path: Path) -> tuple[list[Any], list[list[Passage]]]:
    doc = json.loads(path.read_text())
    retrieved = [[Passage(**p) for p in ctx] for ctx in doc["retrieved"]]
    return doc["questions"], retrieved


def encoder_pass_s(embedder: Any, passages: list[Any]) -> float:
    """Seconds of one MiniLM forward pass over ``passages`` (one batch, no cache)."""
    t0 = time.perf_counter()
    embedder.encode([p.text for p in passages], batch_size=len(passages), show_progress_bar=False)
    return time.perf_counter() - t0


def indexed_s(comp: Any, precompute: Any, question: str, ctx: list[Passage], budget: Any) -> float:
    """Seconds of a request over indexed chunks: the sentence vectors come from a table made
    ahead (as ``ragzip index`` stores it), the question's vector from retrieval (untimed)."""
    from ragzip.cache.feature_cache import FeatureCache

    table = precompute(ctx)
    own = comp.features
    comp.features = FeatureCache(own.max_bytes)
    try:
        comp.features.attach(table)
        comp.features.vectors(comp.feature_model, [question], comp._encode)  # as retrieval does
        t0 = time.perf_counter()
        comp.compress(question, ctx, budget=budget)
        return time.perf_counter() - t0
    finally:
        comp.features = own


def schedule(names: list[str], n: int, blocks: int) -> list[tuple[str, list[int]]]:
    """The order requests run in: each config over all ``n`` questions in turn (``blocks`` 0),
    or the configs taking turns over blocks of ``blocks`` questions, so a drift of the machine's
    speed during the run falls on all of them alike."""
    if not blocks:
        return [(name, list(range(n))) for name in names]
    return [
        (name, list(range(start, min(start + blocks, n))))
        for start in range(0, n, blocks)
        for name in names
    ]


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
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--split", default="test", help="NQ split (choose settings on val)")
    parser.add_argument("--modes", default="cold,warm,seen passages,indexed")
    parser.add_argument("--contexts", type=Path, help="Read questions and passages from here.")
    parser.add_argument("--save-contexts", type=Path, help="Write questions and passages here.")
    parser.add_argument("--tokenizer", type=Path, help="Tokenizer folder (default: SmolLM2's).")
    parser.add_argument("--ratio", type=float, default=RATIO, help="Compression ratio.")
    parser.add_argument(
        "--blocks",
        type=int,
        default=0,
        help="Configs take turns over blocks of this many questions, each block after one "
        "untimed request (0: each config over all questions in turn).",
    )
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    modes = set(args.modes.split(","))
    names = [n for n in args.compressors.split(",") if n]
    if args.contexts:
        questions, retrieved = read_contexts(args.contexts)
        questions, retrieved = questions[: args.questions], retrieved[: args.questions]
    else:
        questions, retrieved = contexts(args.questions, args.k, args.index_cache, args.split)
    if args.save_contexts:
        save_contexts(args.save_contexts, questions, retrieved)
    counter = counter_from_folder(args.tokenizer) if args.tokenizer else smollm2_counter()
    embedder = load_embedder(args.device, "torch")  # the yardstick: plain float32 torch
    comps = {
        name: create_compressor(
            name,
            counter=counter,
            config={"device": args.device} if name.split(":")[0] in WITH_DEVICE else None,
        )
        for name in names
    }
    budget = Budget.compression(args.ratio)
    recall: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    for t in threads:
        torch.set_num_threads(t)
        log(f"{t} thread(s)")
        encoder_pass_s(embedder, retrieved[0])  # warm the encoder up
        passes = [encoder_pass_s(embedder, ctx) for ctx in retrieved]
        times: dict[str, dict[str, list[float]]] = {}
        found = dict.fromkeys(comps, 0)
        for name, comp in comps.items():
            comp.compress(questions[0]["question"], retrieved[0], budget=budget)  # load, warm up
            times[name] = {"cold": [], "warm": [], "seen passages": []}
            if getattr(comp, "precompute", None) is not None:
                times[name]["indexed"] = []
        for name, block in schedule(list(comps), len(questions), args.blocks):
            comp = comps[name]
            precompute = getattr(comp, "precompute", None)
            if args.blocks:  # this config's weights back in the caches, untimed
                forget_features(comp)
                comp.compress(questions[block[0]]["question"], retrieved[block[0]], budget=budget)
            for i in block:
                q, ctx = questions[i], retrieved[i]
                question = q["question"]
                forget_features(comp)  # cold: first sight
                t0 = time.perf_counter()
                result = comp.compress(question, ctx, budget=budget)
                times[name]["cold"].append(time.perf_counter() - t0)
                if "warm" in modes:
                    t0 = time.perf_counter()
                    comp.compress(question, ctx, budget=budget)
                    times[name]["warm"].append(time.perf_counter() - t0)
                if "seen passages" in modes:
                    other = questions[(i + 1) % len(questions)]["question"]
                    t0 = time.perf_counter()
                    comp.compress(other, ctx, budget=budget)
                    times[name]["seen passages"].append(time.perf_counter() - t0)
                if precompute is not None and "indexed" in modes:
                    times[name]["indexed"].append(
                        indexed_s(comp, precompute, question, ctx, budget)
                    )
                found[name] += answer_in_context(q["answers"], result.texts)
        for name in comps:
            recall.setdefault(name, found[name] / len(questions))
            for mode, secs in times[name].items():
                if mode not in modes:
                    continue
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
                        "recall": recall[name],
                    }
                )
                log(f"{name} {mode}: {rows[-1]}")
    report = {
        "questions": len(questions),
        "k": args.k,
        "ratio": args.ratio,
        "counter": counter.name,
        "context_tokens_mean": float(
            np.mean([sum(counter.count_batch([p.text for p in ctx])) for ctx in retrieved])
        ),
        "machine": machine_info(),
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        "rows": rows,
        "command": "python benchmarks/compress_latency.py " + " ".join(sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_table(
        [
            "compressor",
            "threads",
            "mode",
            "p50 ms",
            "p95 ms",
            "encoder passes (p50)",
            f"recall@{args.ratio:g}x",
        ],
        [
            [
                r["compressor"],
                str(r["threads"]),
                r["mode"],
                f"{r['p50_ms']:.1f}",
                f"{r['p95_ms']:.1f}",
                f"{r['encoder_passes_p50']:.3f}",
                f"{r['recall']:.3f}",
            ]
            for r in rows
        ],
    )
    intro = (
        f"{report['questions']} NQ-open {args.split} questions, top-{args.k} hybrid passages "
        f"({report['context_tokens_mean']:.0f} {counter.name} tokens on average), compressed "
        f"at {report['ratio']:g}x on {report['gpu'] or cpu_label()} "
        f"({report['machine']['cpu_count']} cores). Cold: the compressor's feature cache emptied "
        "before each request; warm: the same request again; seen passages: the same passages "
        "with another question; indexed: the passages' sentence vectors from the index and the "
        "question's from retrieval. Encoder passes: the compression "
        "time over one float32 PyTorch MiniLM forward pass on the same passages, timed in the "
        "same run."
        + (
            f" The configs took turns over blocks of {args.blocks} questions, each block after "
            "one untimed request."
            if args.blocks
            else ""
        )
    )
    args.out.with_suffix(".md").write_text(
        f"# Compression cost per request\n\n{intro}\n\n{table}\n\nCommand: `{report['command']}`\n"
    )


if __name__ == "__main__":
    main()
