"""Where benchmark results go and what they record about the machine: one writer of
``benchmarks/results/<name>.json`` and ``.md``, the machine a run measured on (from
``ragzip.core.machine``), and the process's peak memory. Imported by the scripts beside it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ragzip.core.machine import machine_info, peak_rss_bytes

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_CORES = "2 CPU cores shared with other jobs; wall figures depend on their load"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    return peak_rss_bytes() / 2**20


def machine() -> dict[str, Any]:
    """What the numbers were measured on: ``ragzip.core.machine.machine_info()`` with the CPU
    count as ``cpus``, torch's version, the 1-minute load average and a note on the shared cores."""
    info = machine_info()
    return {
        **info,
        "cpus": info["cpu_count"],
        "processor": info["cpu"] or info["processor"] or info["machine"],
        "torch": info["versions"].get("torch"),
        "load_average_1min": os.getloadavg()[0],
        "note": SHARED_CORES,
    }


def write(name: str, record: dict[str, Any], markdown: str) -> None:
    """``benchmarks/results/<name>.json`` and ``.md``; the Markdown is also printed."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"{name}.md").write_text(markdown, encoding="utf-8")
    print(markdown)
