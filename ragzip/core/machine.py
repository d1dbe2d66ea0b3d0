"""Facts about the machine a measurement ran on, in one place.

:func:`machine_key` names what decides compression and prefill speed (profiles are keyed by it);
:func:`machine_info` is the fuller record written beside every report and trained artefact;
:func:`peak_rss_bytes` is this process's peak memory.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """The first CPU's feature flags, read on Linux only (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16_cpu() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX), read on Linux only."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def amx_cpu() -> bool:
    """Whether this CPU multiplies bfloat16 matrices on AMX tile units (Intel Xeon from Sapphire
    Rapids on), read on Linux only: where torch's bfloat16 autocast is MiniLM's fast path."""
    return "amx_bf16" in _cpu_flags()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS tells, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cpu_model() -> str:
    """The CPU's model name, as every reported figure names it (e.g. "AMD EPYC")."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware")):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


_DECISIVE_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
"""The CPU features that decide MiniLM's speed and ragzip's backend and precision choices."""


def cpu_features() -> list[str]:
    """Which of the decisive CPU features (AVX2, AVX-512, VNNI, bfloat16, AMX) this CPU has."""
    flags = _cpu_flags()
    return [f for f in _DECISIVE_FLAGS if f in flags]


def cpu_label() -> str:
    """The CPU as a report names it: its model and decisive features, since one model name
    covers CPUs that differ there (e.g. "AMD EPYC (avx2, avx512f, avx512_vnni, avx512_bf16)")."""
    features = cpu_features()
    return f"{cpu_model()} ({', '.join(features)})" if features else cpu_model()


def machine_key() -> str:
    """What decides compression and prefill speed on this machine: OS, CPU model and count.

    Kernel builds, host names and library patch levels are left out, so a profile stays valid
    across updates of the same machine (and on identical machines).
    """
    return f"{platform.system()}-{platform.machine()}|{cpu_model()}|{os.cpu_count()}cpu"


_VERSIONED = ("ragzip", "torch", "transformers", "sentence-transformers", "bm25s", "faiss-cpu")


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def machine_info() -> dict[str, Any]:
    """Platform, CPU count, Python and library versions, git commit and uncommitted-changes flag."""
    versions: dict[str, str | None] = {}
    for dist in _VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    torch_threads: int | None = None
    if "torch" in sys.modules:  # report torch's intra-op threads only when torch is in use
        torch_threads = int(sys.modules["torch"].get_num_threads())
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch_threads": torch_threads,
        "versions": versions,
        "git_commit": _git("rev-parse", "HEAD") or None,
        "git_dirty": None if (status := _git("status", "--porcelain")) is None else bool(status),
    }


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (``getrusage``; kilobytes on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)
