"""What the benchmarks that time work share: a log line, the load average, latency statistics,
per-query wall and CPU time, and a stopwatch. Imported by the scripts beside it."""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def log(msg: str) -> None:
    """A timestamped progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def stats_ms(seconds: Sequence[float]) -> dict[str, float]:
    a = np.asarray(seconds) * 1000.0
    return {
        "n": len(a),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "min_ms": round(float(a.min()), 3),
    }


def time_each(fn: Callable[[str], Any], queries: Sequence[str], warmup: Sequence[str]) -> dict:
    """Per-query wall and process-CPU time of ``fn``, one query at a time, after warm-up.

    CPU time (all threads of this process) is what the query cost on its own; on shared cores
    the wall time also holds the waits for other people's work.
    """
    for q in warmup:
        fn(q)
    gc.collect()
    gc.disable()
    load_before = loadavg()
    wall, cpu = [], []
    try:
        for q in queries:
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn(q)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    finally:
        gc.enable()
    c = stats_ms(cpu)
    return {
        **stats_ms(wall),
        "cpu_p50_ms": c["p50_ms"],
        "cpu_p95_ms": c["p95_ms"],
        "loadavg_1min": [load_before, loadavg()],
    }


class Stopwatch:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self) -> Stopwatch:
        self.c0, self.t0 = time.process_time(), time.perf_counter()
        self.load0 = loadavg()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0
        self.load = [self.load0, loadavg()]
