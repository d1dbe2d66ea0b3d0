"""Bounded load test of the ragzip proxy on loopback.

Three processes on 127.0.0.1: a fast fake OpenAI upstream (a bare ASGI app under uvicorn), the
proxy (``ragzip.server.create_app`` under uvicorn, one worker), and this script as the client
(a minimal keep-alive HTTP/1.1 client on asyncio, so the load generator itself stays cheap).

Phases, each against the upstream directly and through the proxy:

1. latency: one request at a time (``--latency-requests``), to measure the latency the proxy adds;
2. load: ``--concurrency`` connections for ``--duration`` seconds: requests/s, latency
   percentiles, errors, and the proxy's CPU time per request.

Through the proxy, compression is measured off (a plain chat request, forwarded as is) and on
(a ``ragzip`` field with ``--passages`` real NQ passages, one run per ``--compressors`` name).
The proxy's resident memory is read before and after. Every loop is bounded in count and time.

Run::

    python benchmarks/proxy_load.py                       # 64 connections, 30 s per load phase
    python benchmarks/proxy_load.py --duration 5 --concurrency 16 --compressors truncate,mig

Writes ``benchmarks/results/proxy_load.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing as mp
import os
import platform
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any

from harness import rss_mib
from http_load import Connection, load, sequential

from ragzip.experiments.datasets import read_nq
from ragzip.experiments.reporting import markdown_table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nq_open_dev.jsonl.gz"
RESULTS = ROOT / "benchmarks" / "results"
HOST = "127.0.0.1"

# --- the fake upstream: answers every POST with a fixed chat completion ----------------------

_COMPLETION = json.dumps(
    {
        "id": "cmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 2, "total_tokens": 102},
    }
).encode()


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app: read the body, answer the completion above."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_COMPLETION)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _COMPLETION})


LATENCY_TABLE = {  # column title: result key
    "p50 ms": "p50_ms",
    "p95 ms": "p95_ms",
    "added p50 ms": "added_p50_ms",
    "added p95 ms": "added_p95_ms",
    "tokens saved": "mean_tokens_saved",
    "errors": "errors",
}
LOAD_TABLE = {
    "req/s": "req_per_s",
    "p50 ms": "p50_ms",
    "p95 ms": "p95_ms",
    "p99 ms": "p99_ms",
    "errors": "errors",
    "proxy CPU ms/req": "proxy_cpu_ms_per_request",
    "proxy CPU used (cores)": "proxy_cpu_utilization",
    "req/s per proxy core (derived)": "proxy_req_per_s_per_core",
}


def _table(results: dict[str, dict[str, Any]], columns: dict[str, str]) -> str:
    return markdown_table(
        ["target", *columns],
        [[key, *(row.get(c, "") for c in columns.values())] for key, row in results.items()],
        align="l" + "r" * len(columns),
    )


def _serve(app: Any, port_queue: Any) -> None:
    import uvicorn

    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port_queue.put(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, backlog=2048, lifespan="on")
    )
    server.run(sockets=[sock])


def run_upstream(port_queue: Any) -> None:
    """Child process: the fake upstream."""
    _serve(upstream_app, port_queue)


def run_proxy(port_queue: Any, settings: dict[str, Any]) -> None:
    """Child process: the proxy."""
    from ragzip.server import Settings, create_app

    _serve(create_app(Settings(**settings)), port_queue)


# --- requests -------------------------------------------------------------------------------


def make_bodies(n_passages: int, compressor: str | None, budget: str) -> list[bytes]:
    """50 chat requests over NQ questions; with ``compressor``, ``n_passages`` passages each."""
    if not DATA.is_file():
        sys.exit(f"benchmark data not found at {DATA}")
    rows = [dataclasses.asdict(e) for e in read_nq(DATA, limit=400)]
    rng = random.Random(0)
    bodies = []
    for row in rows[:50]:
        body: dict[str, Any] = {
            "model": "bench",
            "temperature": 0,
            "messages": [
                {"role": "system", "content": "Answer with a few words."},
                {"role": "user", "content": row["question"]},
            ],
        }
        if compressor:
            others = rng.sample([r for r in rows if r is not row], n_passages - 1)
            passages = [{"title": r["title"], "text": r["text"]} for r in [row, *others]]
            rng.shuffle(passages)
            body["ragzip"] = {"passages": passages, "budget": budget, "compressor": compressor}
        bodies.append(json.dumps(body).encode())
    return bodies


# --- main -----------------------------------------------------------------------------------


def start(target: Any, *args: Any) -> tuple[Any, int]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(queue, *args), daemon=True)
    proc.start()
    port = int(queue.get(timeout=60))
    queue.close()
    queue.join_thread()
    return proc, port


async def wait_ready(port: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = Connection(port)
        try:
            status, _ = await conn.request("GET", "/healthz")
            if status == 200:
                return
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            conn.close()
        await asyncio.sleep(0.2)
    sys.exit(f"server on port {port} not ready after {timeout:.0f} s")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    compressors = [c for c in args.compressors.split(",") if c]
    load_before = os.getloadavg()
    upstream_proc, upstream_port = start(run_upstream)
    settings = {
        "upstream_base_url": f"http://{HOST}:{upstream_port}/v1",
        "default_compressor": compressors[0] if compressors else "identity",
        "access_log": False,
        "log_level": "warning",
        "max_retries": 0,
    }
    if args.tokenizer:
        settings["tokenizer"] = args.tokenizer
    proxy_proc, proxy_port = start(run_proxy, settings)
    try:
        await wait_ready(proxy_port)
        plain = make_bodies(args.passages, None, args.budget)
        on = {c: make_bodies(args.passages, c, args.budget) for c in compressors}
        # Build each compressor once before measuring (the first request loads its model).
        for c in compressors:
            await sequential(proxy_port, on[c][:1], 1, warmup=0)
        rss_before = rss_mib(proxy_proc.pid)
        result: dict[str, Any] = {"latency": {}, "load": {}}
        n, w = args.latency_requests, args.warmup
        result["latency"]["direct"] = await sequential(upstream_port, plain, n, w)
        result["latency"]["proxy_off"] = await sequential(proxy_port, plain, n, w)
        for c in compressors:
            result["latency"][f"proxy_{c}"] = await sequential(proxy_port, on[c], n, w)
        d50 = result["latency"]["direct"]["p50_ms"]
        d95 = result["latency"]["direct"]["p95_ms"]
        for key, row in result["latency"].items():
            if key != "direct":
                row["added_p50_ms"] = round(row["p50_ms"] - d50, 3)
                row["added_p95_ms"] = round(row["p95_ms"] - d95, 3)
        conc, dur = args.concurrency, args.duration
        result["load"]["direct"] = await load(upstream_port, plain, conc, dur, None)
        result["load"]["proxy_off"] = await load(proxy_port, plain, conc, dur, proxy_proc.pid)
        for c in compressors:
            result["load"][f"proxy_{c}"] = await load(proxy_port, on[c], conc, dur, proxy_proc.pid)
        result["load_average_1m"] = {
            "before": round(load_before[0], 2),
            "after": round(os.getloadavg()[0], 2),
        }
        result["proxy_rss_mib"] = {
            "before": round(rss_before, 1),
            "after": round(rss_mib(proxy_proc.pid), 1),
        }
        return result
    finally:
        for proc in (proxy_proc, upstream_proc):
            proc.terminate()
            proc.join(timeout=10)


def environment() -> dict[str, Any]:
    import fastapi
    import httpx
    import uvicorn

    def has(name: str) -> bool:
        import importlib.util

        return importlib.util.find_spec(name) is not None

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "uvicorn": uvicorn.__version__,
        "fastapi": fastapi.__version__,
        "httpx": httpx.__version__,
        "httptools": has("httptools"),
        "uvloop": has("uvloop"),
    }


def markdown(report: dict[str, Any]) -> str:
    args, res = report["args"], report["result"]
    lines = [
        "# Proxy load benchmark",
        "",
        f"`python benchmarks/proxy_load.py {report['argv']}` — {report['date']}",
        "",
        f"Environment: {json.dumps(report['environment'])}",
        "",
        f"Budget `{args['budget']}`, {args['passages']} NQ passages per request when compressing.",
        "",
        f"## Latency, one request at a time ({args['latency_requests']} requests)",
        "",
        _table(res["latency"], LATENCY_TABLE),
    ]
    lines += [
        "",
        f"## Load: {args['concurrency']} connections for {args['duration']} s each",
        "",
        _table(res["load"], LOAD_TABLE),
    ]
    rss, load = res["proxy_rss_mib"], res["load_average_1m"]
    lines += [
        "",
        f"Proxy RSS: {rss['before']} MiB before the runs, {rss['after']} MiB after.",
        "",
        f"Machine load average (1 min) before/after: {load['before']} / {load['after']} "
        f"on {report['environment']['cpus']} CPUs (other work shares the machine).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per load phase")
    parser.add_argument("--latency-requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests first")
    parser.add_argument("--compressors", default="truncate", help="comma-separated, '' for none")
    parser.add_argument("--budget", default="4x")
    parser.add_argument("--passages", type=int, default=5)
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: SmolLM2)")
    parser.add_argument("--out", type=Path, default=RESULTS / "proxy_load.json")
    args = parser.parse_args()
    if not (1 <= args.concurrency <= 512 and 0 < args.duration <= 300):
        parser.error("concurrency must be 1..512 and duration 0..300 s")
    result = asyncio.run(bench(args))
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "argv": " ".join(sys.argv[1:]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "environment": environment(),
        "result": result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
