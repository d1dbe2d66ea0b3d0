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
def native_bf16_cpu() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX), read on Linux only."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


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
