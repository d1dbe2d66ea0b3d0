"""A loopback load client for the proxy benchmarks: one keep-alive HTTP/1.1 connection per
simulated user, sequential and concurrent request loops, and latency percentiles."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np
from harness import cpu_seconds

HOST = "127.0.0.1"


# --- a minimal keep-alive HTTP/1.1 client ---------------------------------------------------


class Connection:
    """One keep-alive connection; ``post`` returns (status, body)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        data = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, data


# --- measurements ---------------------------------------------------------------------------


def summarize(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    arr = np.asarray(latencies) * 1000
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p95_ms": round(float(np.percentile(arr, 95)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "mean_ms": round(float(arr.mean()), 3),
    }


async def sequential(port: int, bodies: list[bytes], n: int, warmup: int = 20) -> dict[str, Any]:
    """``n`` requests one after another on one connection, after ``warmup`` unmeasured ones."""
    conn = Connection(port)
    latencies: list[float] = []
    errors = 0
    saved: list[int] = []
    for i in range(n + warmup):
        body = bodies[i % len(bodies)]
        start = time.perf_counter()
        try:
            status, data = await conn.request("POST", "/v1/chat/completions", body)
        except (OSError, asyncio.IncompleteReadError):
            conn.close()
            status, data = 0, b""
        elapsed = time.perf_counter() - start
        if i < warmup:
            continue
        if status != 200:
            errors += 1
            continue
        latencies.append(elapsed)
        if b'"ragzip"' in data:
            saved.append(json.loads(data)["ragzip"]["saved_tokens"])
    conn.close()
    out: dict[str, Any] = {"requests": n, "errors": errors, **summarize(latencies)}
    if saved:
        out["mean_tokens_saved"] = round(float(np.mean(saved)), 1)
    return out


async def load(
    port: int, bodies: list[bytes], concurrency: int, duration: float, pid: int | None
) -> dict[str, Any]:
    """``concurrency`` connections sending back to back for ``duration`` seconds."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    cpu0 = cpu_seconds(pid) if pid else 0.0
    start_all = time.perf_counter()
    deadline = start_all + duration

    async def worker(k: int) -> None:
        conn = Connection(port)
        i = k
        while time.perf_counter() < deadline:
            body = bodies[i % len(bodies)]
            i += concurrency
            start = time.perf_counter()
            try:
                status, _ = await asyncio.wait_for(
                    conn.request("POST", "/v1/chat/completions", body), timeout=30
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                conn.close()
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            if status == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
        conn.close()

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - start_all
    out: dict[str, Any] = {
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "errors_by_type": errors,
        "req_per_s": round(len(latencies) / elapsed, 1),
        **summarize(latencies),
    }
    if pid:
        cpu = cpu_seconds(pid) - cpu0
        per_request = cpu / max(1, len(latencies))
        out["proxy_cpu_ms_per_request"] = round(1000 * per_request, 3)
        # What one fully available core would sustain at that cost (derived, not measured).
        out["proxy_req_per_s_per_core"] = round(1 / per_request, 1) if per_request else None
        out["proxy_cpu_utilization"] = round(cpu / elapsed, 2)
    return out
