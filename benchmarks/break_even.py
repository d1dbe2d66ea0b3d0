"""Where compression pays: end-to-end time to first token against SIMULATED fast generators.

For each simulated generator (``ragzip serve-model --simulate NAME``, a real loopback HTTP server
whose first token comes ``a + b·prompt tokens`` seconds after a request; see
:mod:`ragzip.generators.simulated`), this script

1. profiles the generator and the compressors with ``ragzip``'s own profiler (cold and warm
   compression costs, the generator's TTFT curve over HTTP);
2. measures answer-in-context recall at 4x of each compressor on validation questions (the
   quality ``auto`` is given, with a floor of ``--min-quality``);
3. answers the first ``--questions`` NQ-open test questions over their top-10 hybrid passages
   with every configuration — uncompressed, each compressor at 4x, and ``auto`` — cold (the
   compressors' feature caches emptied: first sight of the passages) and warm (the same request
   seen before, as for chunks of an index that stores their vectors), side by side in one run.

TTFT here is compression time plus the time the HTTP client waits for the first streamed token.
Every generator figure is SIMULATED and labelled so.

    python benchmarks/break_even.py --questions 10 --threads 2

Writes ``benchmarks/results/break_even.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import torch
from compress_latency import contexts
from timing import log

from ragzip import Budget
from ragzip.compressor import Compressor
from ragzip.compressors.auto import AutoCompressor
from ragzip.core.machine import machine_info
from ragzip.core.paths import paths
from ragzip.evaluation.metrics import answer_in_context
from ragzip.experiments.reporting import markdown_table
from ragzip.generators.openai_compat import OpenAIGenerator
from ragzip.generators.simulated import preset
from ragzip.policy import AutoPolicy
from ragzip.profiling.measure import forget_features, load_nq_passages, measure
from ragzip.prompts import build_result_messages
from ragzip.registry import create_compressor
from ragzip.weights import smollm2_counter

RESULTS = Path(__file__).resolve().parent / "results"
COMPRESSORS = ("truncate", "mig", "token", "sentence")
RATIO = 4.0
RAGZIP = [sys.executable, "-c", "from ragzip.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def simulated_server(name: str) -> Iterator[str]:
    """``ragzip serve-model --simulate name`` on a free loopback port, until the block ends."""
    port = free_port()
    proc = subprocess.Popen(
        [*RAGZIP, "serve-model", "--simulate", name, "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the simulated server {name} did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def val_recall(comps: dict[str, Compressor], n: int) -> dict[tuple[str, float], float]:
    """Answer-in-context recall at 4x of each compressor on ``n`` validation questions."""
    from ragzip.evaluation.indexing import load_or_build_index
    from ragzip.experiments.datasets import load_nq, nq_corpus, nq_split

    examples = load_nq()
    questions = nq_split("val", examples=examples)[:n]
    index, _, _ = load_or_build_index(
        nq_corpus(examples), cache=paths().index_cache, chunk=False, progress=False
    )
    out = {}
    for name, comp in comps.items():
        found = 0
        for q in questions:
            res = comp.compress(
                q.question, index.search(q.question, 10), budget=Budget(ratio=RATIO)
            )
            found += answer_in_context(q.answers, res.texts)
        out[(name, RATIO)] = found / len(questions)
        log(f"val recall {name}: {out[(name, RATIO)]:.3f}")
    return out


def budget_of(comp: Compressor) -> Budget:
    """4x for a fixed compressor; the whole context for ``identity`` and ``auto`` (which decides
    the amount itself)."""
    return Budget(ratio=1.0 if comp.name in ("identity", "auto") else RATIO)


def ttft_s(
    comp: Compressor, gen: OpenAIGenerator, question: str, ctx: list[Any]
) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = comp.compress(question, ctx, budget=budget_of(comp))
    compress_s = time.perf_counter() - t0
    generation = gen.generate(build_result_messages(result), max_new_tokens=1)
    return compress_s + generation.ttft_s, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generators", default="8b-a100,70b-a100,smollm2-cpu")
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--val-questions", type=int, default=30)
    parser.add_argument("--min-quality", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "break_even")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    counter = smollm2_counter()
    comps = {name: create_compressor(name, counter=counter) for name in COMPRESSORS}
    identity = create_compressor("identity", counter=counter)
    quality = val_recall(comps, args.val_questions)
    questions, retrieved = contexts(args.questions, 10, paths().index_cache)
    pool = load_nq_passages(paths().data / "nq_open_dev.jsonl.gz", limit=400)
    rows: list[dict[str, Any]] = []
    scenarios: list[dict[str, Any]] = []
    for gen_name in args.generators.split(","):
        timing = preset(gen_name)
        with (
            simulated_server(gen_name) as url,
            OpenAIGenerator(url, timing.name, counter=counter) as gen,
        ):
            log(f"profiling against {timing.name}")
            profile = measure(
                gen,
                comps,
                lengths=[256, 512, 1024, 2048],
                ratios=[RATIO],
                pool=pool,
                repeats=2,
                expected_output_tokens=1,
                max_context_tokens=8192,
            )
            auto = AutoCompressor(
                counter=counter,
                policy=AutoPolicy(profile, quality, args.min_quality, expected_output_tokens=1),
                candidates=comps,
            )
            configs: dict[str, Compressor] = {"uncompressed": identity, **comps, "auto": auto}
            times: dict[tuple[str, str], list[float]] = {}
            choices: dict[str, Counter[str]] = {"cold": Counter(), "warm": Counter()}
            for i, (q, ctx) in enumerate(zip(questions, retrieved, strict=True)):
                for label, comp in configs.items():
                    for mode in ("cold", "warm"):
                        forget_features(comp)  # its candidates' caches too
                        if mode == "warm":  # the request seen before: every vector cached
                            for c in (comp, *getattr(comp, "candidates", {}).values()):
                                c.compress(q["question"], ctx, budget=budget_of(c))
                        secs, result = ttft_s(comp, gen, q["question"], ctx)
                        times.setdefault((label, mode), []).append(secs)
                        if label == "auto" and result.decision is not None:
                            d = result.decision
                            choices[mode][
                                f"{d.compressor}@{d.ratio:g}" if d.compress else "skip"
                            ] += 1
                log(f"{timing.name}: question {i + 1}/{len(questions)}")
            base = {m: statistics.median(times[("uncompressed", m)]) for m in ("cold", "warm")}
            for (label, mode), secs in times.items():
                eligible = (
                    label in ("uncompressed", "auto")
                    or quality.get((label, RATIO), 0.0) >= args.min_quality
                )
                rows.append(
                    {
                        "generator": timing.name,
                        "config": label,
                        "mode": mode,
                        "ttft_p50_ms": 1000 * statistics.median(secs),
                        "vs_uncompressed": statistics.median(secs) / base[mode],
                        "meets_quality_floor": eligible,
                        "val_recall_4x": quality.get((label, RATIO)),
                    }
                )
            for mode in ("cold", "warm"):
                fixed = [
                    r
                    for r in rows
                    if r["generator"] == timing.name
                    and r["mode"] == mode
                    and r["config"] != "auto"
                    and r["meets_quality_floor"]
                ]
                best = min(fixed, key=lambda r: r["ttft_p50_ms"])
                auto_row = next(
                    r
                    for r in rows
                    if r["generator"] == timing.name and r["mode"] == mode and r["config"] == "auto"
                )
                scenarios.append(
                    {
                        "generator": timing.name,
                        "mode": mode,
                        "best_fixed": best["config"],
                        "best_fixed_ms": best["ttft_p50_ms"],
                        "auto_ms": auto_row["ttft_p50_ms"],
                        "auto_vs_best": auto_row["ttft_p50_ms"] / best["ttft_p50_ms"],
                        "auto_choices": dict(choices[mode]),
                        "source": timing.source,
                    }
                )
                log(f"{scenarios[-1]}")
    report = {
        "simulated": True,
        "questions": len(questions),
        "ratio": RATIO,
        "min_quality": args.min_quality,
        "threads": args.threads,
        "machine": machine_info(),
        "rows": rows,
        "scenarios": scenarios,
        "command": "python benchmarks/break_even.py " + " ".join(sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_table(
        [
            "generator (SIMULATED)",
            "config",
            "mode",
            "TTFT p50 ms",
            "vs uncompressed",
            "val recall@4x",
        ],
        [
            [
                r["generator"],
                r["config"],
                r["mode"],
                f"{r['ttft_p50_ms']:.0f}",
                f"{r['vs_uncompressed']:.2f}",
                "-" if r["val_recall_4x"] is None else f"{r['val_recall_4x']:.3f}",
            ]
            for r in rows
        ],
    )
    auto_table = markdown_table(
        [
            "generator (SIMULATED)",
            "mode",
            "best fixed choice",
            "its ms",
            "auto ms",
            "auto / best",
            "auto chose",
        ],
        [
            [
                s["generator"],
                s["mode"],
                s["best_fixed"],
                f"{s['best_fixed_ms']:.0f}",
                f"{s['auto_ms']:.0f}",
                f"{s['auto_vs_best']:.2f}",
                ", ".join(f"{k}: {v}" for k, v in sorted(s["auto_choices"].items())),
            ]
            for s in scenarios
        ],
    )
    intro = (
        f"SIMULATED generators (first token after a + b·prompt tokens over loopback HTTP; see "
        f"`ragzip serve-model --simulate`). {len(questions)} NQ-open test questions, top-10 hybrid "
        f"passages, compressors at {RATIO:g}x, {args.threads} torch threads on "
        f"{report['machine']['processor'] or 'CPU'}. TTFT = compression + the wait for the first "
        "streamed token. Cold: feature caches emptied; warm: the request seen before (every "
        f"vector cached, as for indexed chunks). auto's quality floor: recall {args.min_quality:g} "
        f"on {args.val_questions} validation questions; the best fixed choice is the fastest "
        "configuration meeting that floor (uncompressed included)."
    )
    sources = "\n".join(
        f"- {s['generator']}: {s['source']}" for s in scenarios if s["mode"] == "cold"
    )
    args.out.with_suffix(".md").write_text(
        f"# Break-even against fast generators (SIMULATED)\n\n{intro}\n\n{table}\n\n"
        f"## auto against the best fixed choice\n\n{auto_table}\n\n"
        f"Simulated timings:\n{sources}\n\n"
        f"Command: `{report['command']}`\n"
    )


if __name__ == "__main__":
    main()
