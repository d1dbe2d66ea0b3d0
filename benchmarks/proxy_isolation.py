"""Small requests under abandoned heavy ones: does one request stall compression for everyone?

Loopback only, bounded in count and time. A fake upstream and the proxy run as processes (as in
``benchmarks/proxy_load.py``); the proxy compresses with ``--compressor``. Phases:

1. unloaded: ``--small`` small requests (5 NQ passages each), one at a time: p50/p95;
2. loaded: while ``--heavy`` heavy requests (``--heavy-passages`` passages each, within the
   limits) and as many oversized ones (10,000 passages, beyond ``max_passages``) are sent and
   abandoned after ``--abandon`` seconds, the same small requests again;
3. after: the proxy's resident memory once the abandoned work has stopped.

Aim: small-request p95 under load within 2x of unloaded, no errors but the intended 413s, memory
back to baseline.

    python benchmarks/proxy_isolation.py

Writes ``benchmarks/results/proxy_isolation.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from harness import rss_mib
from http_load import Connection, summarize
from proxy_load import (
    RESULTS,
    environment,
    make_bodies,
    run_proxy,
    run_upstream,
    start,
    wait_ready,
)


def heavy_body(n_passages: int, compressor: str) -> bytes:
    text = (
        "The river flows through the old town and past the harbour, where the ferries leave "
        "for the islands every morning. It was bridged in 1850 by the city engineers."
    )
    passages = [f"{text} Record {i}." for i in range(n_passages)]
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": "When was the river bridged?"}],
        "ragzip": {"passages": passages, "budget": "4x", "compressor": compressor},
    }
    return json.dumps(body).encode()


async def small_requests(port: int, bodies: list[bytes], n: int) -> dict[str, Any]:
    conn = Connection(port)
    latencies, statuses = [], {}
    for i in range(n):
        t0 = time.perf_counter()
        try:
            status, _ = await asyncio.wait_for(
                conn.request("POST", "/v1/chat/completions", bodies[i % len(bodies)]), 120
            )
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            conn.close()
            status = type(exc).__name__  # type: ignore[assignment]
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200:
            latencies.append(time.perf_counter() - t0)
    conn.close()
    return {"requests": n, "statuses": statuses, **summarize(latencies)}


async def abandon(port: int, body: bytes, after: float) -> str:
    """Send ``body`` and hang up after ``after`` seconds; the status if it came back sooner."""
    conn = Connection(port)
    try:
        status, _ = await asyncio.wait_for(
            conn.request("POST", "/v1/chat/completions", body), after
        )
        return str(status)
    except TimeoutError:
        return "abandoned"
    finally:
        conn.close()


async def scenario(port: int, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    small = make_bodies(5, args.compressor, "4x")
    await small_requests(port, small, 5)  # warm-up: models loaded, caches made
    unloaded = await small_requests(port, small, args.small)
    rss_before = rss_mib(pid)
    heavy = heavy_body(args.heavy_passages, args.compressor)
    oversized = heavy_body(10_000, args.compressor)
    senders = [abandon(port, heavy, args.abandon) for _ in range(args.heavy)]
    senders += [abandon(port, oversized, args.abandon) for _ in range(args.heavy)]
    t0 = time.perf_counter()
    results = await asyncio.gather(
        asyncio.gather(*senders), small_requests(port, small, args.small)
    )
    heavy_outcomes: dict[str, int] = {}
    for outcome in results[0]:
        heavy_outcomes[outcome] = heavy_outcomes.get(outcome, 0) + 1
    loaded = {**results[1], "seconds": round(time.perf_counter() - t0, 2)}
    await asyncio.sleep(args.settle)
    rss_round1 = rss_mib(pid)
    # a second heavy round: memory that grows again is a leak, memory that stays is the
    # allocator keeping its high-water mark
    await asyncio.gather(*(abandon(port, heavy, args.abandon) for _ in range(args.heavy)))
    await asyncio.sleep(args.settle)
    after = await small_requests(port, small, args.small)
    return {
        "unloaded": unloaded,
        "loaded": loaded,
        "after": after,
        "heavy_outcomes": heavy_outcomes,
        "rss_mib": {
            "before": round(rss_before, 1),
            "after_round_1": round(rss_round1, 1),
            "after_round_2": round(rss_mib(pid), 1),
        },
        "p95_ratio_loaded_vs_unloaded": round(loaded["p95_ms"] / unloaded["p95_ms"], 2),
    }


def markdown(report: dict[str, Any]) -> str:
    r = report["result"]
    rows = [
        f"| {phase} | {r[phase]['p50_ms']} | {r[phase]['p95_ms']} | {r[phase]['statuses']} |"
        for phase in ("unloaded", "loaded", "after")
    ]
    return "\n".join(
        [
            "# Proxy isolation: small requests while heavy ones are abandoned",
            "",
            f"Run {report['date']}; {report['environment']}. Command: `{report['command']}`.",
            "",
            f"Compressor `{report['args']['compressor']}`; {report['args']['heavy']} heavy "
            f"requests of {report['args']['heavy_passages']} passages and "
            f"{report['args']['heavy']} of "
            f"10,000 passages (over `max_passages`), each abandoned after "
            f"{report['args']['abandon']} s, while {report['args']['small']} small requests "
            "(5 NQ passages) run one at a time.",
            "",
            "| phase | small p50 ms | small p95 ms | statuses |",
            "|---|---:|---:|---|",
            *rows,
            "",
            f"Heavy requests: {r['heavy_outcomes']}. Small p95 loaded / unloaded: "
            f"{r['p95_ratio_loaded_vs_unloaded']} (aim ≤ 2). Proxy RSS before the heavy phase "
            f"{r['rss_mib']['before']} MiB, after it {r['rss_mib']['after_round_1']} MiB, after "
            f"a second heavy round {r['rss_mib']['after_round_2']} MiB.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compressor", default="mig")
    parser.add_argument("--small", type=int, default=30)
    parser.add_argument("--heavy", type=int, default=3)
    parser.add_argument("--heavy-passages", type=int, default=1_500)
    parser.add_argument("--abandon", type=float, default=1.5)
    parser.add_argument("--settle", type=float, default=3.0)
    args = parser.parse_args()
    upstream, up_port = start(run_upstream)
    settings = {
        "upstream_base_url": f"http://127.0.0.1:{up_port}/v1",
        "default_compressor": args.compressor,
        "access_log": False,
        "log_level": "warning",
    }
    proxy, port = start(run_proxy, settings)
    try:
        asyncio.run(wait_ready(port))
        result = asyncio.run(scenario(port, proxy.pid, args))
    finally:
        proxy.terminate()
        upstream.terminate()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python benchmarks/proxy_isolation.py " + " ".join(sys.argv[1:]),
        "environment": environment(),
        "args": vars(args),
        "result": result,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "proxy_isolation.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "proxy_isolation.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
