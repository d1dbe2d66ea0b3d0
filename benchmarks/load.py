"""Users per GPU: how many requests per second ragzip lets one (SIMULATED) GPU serve within a
latency target, with and without compression.

Open-loop load on loopback, bounded in count and time: requests arrive as a Poisson process at
each rate of ``--rates`` for ``--seconds``, through the real proxy (``ragzip serve``, its own
process) to a simulated GPU server (``ragzip serve-model --simulate PRESET``: prefill shared
first come first served at the preset's rate, batched decode, a KV-cache capacity;
:mod:`ragzip.generators.simulated_engine`). Each request is an NQ test question with the top
``--passages`` passages the hybrid index retrieves for it from the NQ corpus, drawn Zipf-like
from a pool of ``--questions`` (popular questions recur, as in production), sent by the client
(``--mode sent``) or retrieved by the proxy (``--mode retrieve``). Configs are compressor specs at
a budget (``identity@1x`` is uncompressed).

Per config and rate: p50/p95 time to the first streamed token at the client, answers/s, proxy
CPU-seconds per request; per config: the share of questions whose gold answer is still in the
context the proxy sends (answer recall, from ``/v1/compress`` on the same inputs). The figure
that matters: the highest offered rate each config sustains with p95 TTFT within ``--slo``
seconds and no failed request.

    python benchmarks/load.py --preset 8b-a100 --rates 4,8,16,24,32 --seconds 20

Writes ``benchmarks/results/load_PRESET_MODE.json``, ``.md`` and ``.png``. Every figure is a
simulation of the GPU; the proxy's CPU work is real (the CPU is named).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from harness import cpu_seconds, free_port, stop, wait_http

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RAGZIP = Path(sys.executable).with_name("ragzip")
CONFIGS = ("identity@1x", "mig@4x", "sentence@4x", "token@4x", "auto@4x")


MODES = {"sent": "sent by the client", "retrieve": "retrieved by the proxy"}


def workload(n_questions: int, k: int) -> tuple[list[dict[str, Any]], Path]:
    """``n_questions`` NQ test questions with their top-``k`` hybrid passages, and the index."""
    from ragzip.core.paths import paths
    from ragzip.evaluation.indexing import load_or_build_index
    from ragzip.experiments.datasets import load_nq, nq_corpus, nq_split

    examples = load_nq()
    corpus = nq_corpus(examples)
    index, _, _ = load_or_build_index(corpus, cache=paths().cache / "indexes", chunk=False)
    cached = sorted((paths().cache / "indexes").glob("nq-whole-*"))
    test = nq_split("test", examples=examples)[:n_questions]
    found = index.search_batch([e.question for e in test], k)
    items = [
        {"question": e.question, "answers": list(e.answers), "passages": [p.text for p in hits]}
        for e, hits in zip(test, found, strict=True)
    ]
    return items, cached[-1]


def zipf_order(n_items: int, n_draws: int, s: float, seed: int) -> list[int]:
    """Indices drawn Zipf-like (rank r with weight 1 / r^s)."""
    weights = 1.0 / np.arange(1, n_items + 1) ** s
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.choice(n_items, size=n_draws, p=weights / weights.sum())]


def body(item: dict[str, Any], config: str, mode: str, model: str, k: int) -> dict[str, Any]:
    name, budget = config.split("@")
    options: dict[str, Any] = {"compressor": name, "budget": budget}
    if mode == "retrieve":
        options.update(retrieve=True, k=k)
    else:
        options["passages"] = item["passages"]
    return {
        "model": model,
        "stream": True,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": item["question"]}],
        "ragzip": options,
    }


def asked_anew(payload: dict[str, Any], tag: str) -> dict[str, Any]:
    """``payload`` with a question the proxy has not seen: the same words and a request tag."""
    message = {**payload["messages"][0]}
    message["content"] = f"{message['content']} (request {tag})"
    return {**payload, "messages": [message]}


async def one(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> dict[str, Any]:
    sent = time.perf_counter()
    try:
        async with client.stream("POST", url, json=payload) as reply:
            ttft = None
            async for line in reply.aiter_lines():
                if ttft is None and line.startswith("data:") and '"content"' in line:
                    ttft = time.perf_counter() - sent
            return {"status": reply.status_code, "ttft": ttft, "total": time.perf_counter() - sent}
    except httpx.HTTPError as exc:
        return {"status": 0, "ttft": None, "error": type(exc).__name__}


async def run_rate(
    url: str, bodies: list[dict[str, Any]], rate: float, seconds: float, seed: int
) -> tuple[list[dict[str, Any]], float]:
    """Poisson arrivals at ``rate``/s for ``seconds``; every answer and the wall time."""
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    tasks = []
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        start = time.perf_counter()
        at = 0.0
        i = 0
        while at < seconds:
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
            tasks.append(asyncio.create_task(one(client, url, bodies[i % len(bodies)])))
            i += 1
            at += rng.expovariate(rate)
        done = await asyncio.gather(*tasks)
        return list(done), time.perf_counter() - start


def summary(done: list[dict[str, Any]], wall: float, cpu: float, slo: float) -> dict[str, Any]:
    ok = [d for d in done if d["status"] == 200 and d["ttft"] is not None]
    ttfts = np.asarray([d["ttft"] for d in ok]) if ok else np.asarray([np.inf])
    p95 = float(np.percentile(ttfts, 95))
    return {
        "requests": len(done),
        "failed": len(done) - len(ok),
        "answers_per_s": round(len(ok) / wall, 2),
        "p50_ttft_s": round(float(np.percentile(ttfts, 50)), 3),
        "p95_ttft_s": round(p95, 3),
        "cpu_s_per_request": round(cpu / max(1, len(done)), 4),
        "within_slo": bool(p95 <= slo and len(ok) == len(done)),
    }


def recall(url: str, items: list[dict[str, Any]], config: str) -> dict[str, float]:
    """Share of ``items`` whose gold answer survives ``config`` (``/v1/compress``), and the
    context tokens kept."""
    from ragzip.experiments.answers import answer_in_text

    name, budget = config.split("@")
    kept = 0
    before = after = 0
    with httpx.Client(timeout=120) as client:
        for item in items:
            payload = {"query": item["question"], "passages": item["passages"]}
            reply = client.post(url, json={**payload, "compressor": name, "budget": budget})
            reply.raise_for_status()
            data = reply.json()
            kept += answer_in_text(item["answers"], data["context"])
            before += data["original_tokens"]
            after += data["compressed_tokens"]
    return {"answer_recall": round(kept / len(items), 3), "ratio": round(before / after, 2)}


def start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(RAGZIP), *args], stdout=subprocess.DEVNULL)


async def warm(url: str, bodies: list[dict[str, Any]], concurrency: int = 2) -> None:
    """Every body once, ``concurrency`` at a time: the proxy's caches as after a while."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=300) as client:

        async def send(payload: dict[str, Any]) -> None:
            async with gate:
                await one(client, url, payload)

        await asyncio.gather(*(send(b) for b in bodies))


def sweep(
    args: argparse.Namespace,
    config: str,
    upstream: str,
    index: Path,
    items: list[Any],
    order: list[int],
    model: str,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """One config on a fresh proxy: warm-up over the pool, the rates, then answer recall."""
    port = free_port()
    proxy_args = ["serve", "--port", str(port), "--upstream", upstream, "--compressor", "identity"]
    if args.mode == "retrieve":
        proxy_args += ["--index", str(index)]
    proc = start(proxy_args)
    base = f"http://127.0.0.1:{port}"
    chat = f"{base}/v1/chat/completions"
    rows = []
    try:
        wait_http(f"{base}/readyz")
        pool = [body(item, config, args.mode, model, args.passages) for item in items]
        cpu0 = cpu_seconds(proc.pid)
        asyncio.run(warm(chat, pool))
        first_sight = (cpu_seconds(proc.pid) - cpu0) / len(pool)
        bodies = [body(items[i], config, args.mode, model, args.passages) for i in order]
        for rate in args.rates:
            sent = bodies
            if args.novel:
                sent = [asked_anew(b, f"{rate:g}.{n}") for n, b in enumerate(bodies)]
            cpu0 = cpu_seconds(proc.pid)
            done, wall = asyncio.run(run_rate(chat, sent, rate, args.seconds, args.seed))
            row = summary(done, wall, cpu_seconds(proc.pid) - cpu0, args.slo)
            rows.append({"config": config, "rate": rate, **row})
            print(json.dumps(rows[-1]), flush=True)
            if row["p95_ttft_s"] > 3 * args.slo:
                break  # saturated: higher rates only queue longer
        quality = recall(f"{base}/v1/compress", items[: args.recall_questions], config)
    finally:
        stop(proc)
    return rows, {**quality, "first_sight_cpu_s_per_request": round(first_sight, 4)}


def bench(args: argparse.Namespace, preset: str) -> dict[str, Any]:
    from ragzip.core.machine import cpu_label
    from ragzip.generators.simulated import preset as timing

    items, index = workload(args.questions, args.passages)
    order = zipf_order(len(items), 5000, args.zipf, args.seed)
    up = free_port()
    model = timing(preset).name
    upstream = start(
        ["serve-model", "--simulate", preset, "--port", str(up), "--log-level", "warning"]
    )
    rows: list[dict[str, Any]] = []
    recalls = {}
    try:
        wait_http(f"http://127.0.0.1:{up}/v1/models")
        for config in args.configs:
            got, recalls[config] = sweep(
                args, config, f"http://127.0.0.1:{up}/v1", index, items, order, model
            )
            rows += got
    finally:
        stop(upstream)
    best = {
        c: max((r["rate"] for r in rows if r["config"] == c and r["within_slo"]), default=0.0)
        for c in args.configs
    }
    return {
        "benchmark": "load",
        "preset": preset,
        "simulated": timing(preset).describe(),
        "mode": args.mode,
        "novel": args.novel,
        "cpu": cpu_label(),
        "cpus": os.cpu_count(),
        "slo_s": args.slo,
        "seconds": args.seconds,
        "questions": args.questions,
        "passages": args.passages,
        "rows": rows,
        "recall": recalls,
        "sustained_rate": best,
        "vs_uncompressed": {
            c: round(best[c] / best[args.configs[0]], 2) if best[args.configs[0]] else None
            for c in args.configs
        },
    }


def markdown(r: dict[str, Any], command: str) -> str:
    lines = [
        f"# Users per GPU: {r['preset']} (SIMULATED GPU), contexts {MODES[r['mode']]}",
        "",
        f"`{command}` on {r['cpu']} ({r['cpus']} CPUs; the proxy's CPU work is real). "
        f"{r['simulated']}. SLO: p95 time to first token ≤ {r['slo_s']} s; "
        f"{r['seconds']:g} s per rate; {r['questions']} NQ test questions, {r['passages']} "
        "passages each, drawn Zipf-like.",
        "",
        "Each config runs on a fresh proxy that first sees every question of the pool once "
        "(its CPU-seconds per request then: *first sight*); the rates are then measured in "
        "that steady state, where recurring passages hit the proxy's feature cache"
        + (
            "; every measured request asks its question anew (a request tag appended), so only "
            "the passages recur."
            if r.get("novel")
            else " and a recurring question over the same passages is a request seen before "
            "(the SIMULATED GPU has no prefix cache: a real one would skip a repeated prompt's "
            "prefill, uncompressed or not)."
        )
        + " Answer recall and ratio are measured right after the sweep (`/v1/compress`), so "
        "`auto`, whose choice follows the load, still sees the load the sweep left.",
        "",
        "| config | sustained rate (req/s) | vs uncompressed | answer recall | ratio | "
        "first-sight CPU-s/req |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c, rate in r["sustained_rate"].items():
        q = r["recall"][c]
        lines.append(
            f"| `{c}` | {rate:g} | {r['vs_uncompressed'][c]} | {q['answer_recall']} | "
            f"{q['ratio']}x | {q['first_sight_cpu_s_per_request']} |"
        )
    lines += [
        "",
        "| config | offered/s | answers/s | p50 TTFT s | p95 TTFT s | failed | proxy CPU-s/req |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| `{row['config']}` | {row['rate']:g} | {row['answers_per_s']} | "
            f"{row['p50_ttft_s']} | {row['p95_ttft_s']} | {row['failed']} | "
            f"{row['cpu_s_per_request']} |"
        )
    return "\n".join(lines) + "\n"


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for c in r["sustained_rate"]:
        rows = [x for x in r["rows"] if x["config"] == c]
        ax.plot([x["rate"] for x in rows], [x["p95_ttft_s"] for x in rows], marker="o", label=c)
    ax.axhline(r["slo_s"], color="grey", linestyle="--", label="SLO")
    ax.set_yscale("log")
    ax.set_xlabel("offered requests/s")
    ax.set_ylabel("p95 time to first token (s)")
    ax.set_title(f"{r['preset']} (SIMULATED GPU), proxy on {r['cpus']} CPUs of {r['cpu']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def check_configs(configs: list[str]) -> None:
    """Every ``SPEC@BUDGET`` well formed, so a misspelt setting fails now, not after a sweep."""
    from ragzip.core.types import Budget
    from ragzip.registry import resolve_config

    for config in configs:
        spec, sep, budget = config.rpartition("@")
        if not sep:
            raise SystemExit(f"config {config!r}: write SPEC@BUDGET, e.g. mig@4x")
        resolve_config(spec)
        Budget.parse(budget)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", action="append", help="simulated GPU (default 8b-a100)")
    parser.add_argument("--mode", choices=("sent", "retrieve"), default="sent")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--rates", default="2,4,8,12,16,24,32")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--slo", type=float, default=2.0)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--passages", type=int, default=10)
    parser.add_argument("--recall-questions", type=int, default=100)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--suffix", default="", help="appended to the reports' file names")
    parser.add_argument(
        "--novel", action="store_true", help="every measured request asks its question anew"
    )
    args = parser.parse_args()
    args.configs = args.configs.split(",")
    args.rates = [float(x) for x in args.rates.split(",")]
    check_configs(args.configs)
    command = "python benchmarks/load.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    for preset in args.preset or ["8b-a100"]:
        result = bench(args, preset)
        novel = "_novel" if args.novel else ""
        out = RESULTS / f"load_{preset}_{args.mode}{novel}{args.suffix}"
        out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        out.with_suffix(".md").write_text(markdown(result, command))
        plot(result, out.with_suffix(".png"))
        print(markdown(result, command))


if __name__ == "__main__":
    main()
