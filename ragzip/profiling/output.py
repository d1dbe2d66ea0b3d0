"""A profile as a terminal table and as latency and speed-up plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragzip.profiling.profile import Profile

if TYPE_CHECKING:
    pass


# -- output -----------------------------------------------------------------------------------


def summary_table(profile: Profile) -> Any:
    """A rich table: per (compressor, ratio) cost slope, break-even lengths and KV savings."""
    from rich.table import Table

    lengths = sorted({s.context_tokens for s in profile.compression_samples})
    memory = []
    if profile.peak_rss_bytes is not None:
        memory.append(f"peak RSS {profile.peak_rss_bytes / 2**20:.0f} MiB")
    if profile.kv_bytes_per_token is not None:
        memory.append(f"KV cache {profile.kv_bytes_per_token / 1024:.1f} KiB/token")
    table = Table(
        title=f"{profile.generator} on {profile.machine}", caption="; ".join(memory) or None
    )
    for col in ("compressor", "ratio", "T_c ms/1k tok", "n* TTFT", "n* end-to-end"):
        table.add_column(col, justify="right" if col != "compressor" else "left")
    for n in lengths:
        table.add_column(f"speedup @{n}", justify="right")
    table.add_column("KV saved @max", justify="right")
    for c in profile.compressors:
        n_ttft = profile.break_even(c.compressor, c.ratio)
        n_e2e = profile.break_even(c.compressor, c.ratio, end_to_end=True)
        kv = profile.kv_bytes_saved(c.ratio, lengths[-1]) if lengths else None
        table.add_row(
            c.compressor,
            f"{c.ratio:g}x",
            f"{1000 * 1000 * c.cost.slope:.2f}",
            "never" if n_ttft is None else str(n_ttft),
            "never" if n_e2e is None else str(n_e2e),
            *[f"{profile.predict(c.compressor, c.ratio, n).speedup:.2f}x" for n in lengths],
            "-" if kv is None else f"{kv / 2**20:.1f} MiB",
        )
    return table


def plot_profile(profile: Profile, out_dir: str | Path) -> list[Path]:
    """Write ``latency.png`` (latency vs n, n* marked) and ``speedup.png`` (n × r heat map)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = sorted({c.compressor for c in profile.compressors})
    measured = [s.context_tokens for s in profile.compression_samples]
    n_hi = int(max(measured) * 1.5) if measured else 4096
    ns = np.unique(np.geomspace(4, n_hi, 300).astype(int))  # log axis: small n* stay visible

    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        costs = sorted(
            (c for c in profile.compressors if c.compressor == name), key=lambda c: c.ratio
        )
        base, _ = profile.curves(name, costs[0].ratio, ns)
        ax.plot(ns, base, color="black", lw=2, label="no compression")
        for c in costs:
            _, comp = profile.curves(name, c.ratio, ns)
            (line,) = ax.plot(ns, comp, label=f"{c.ratio:g}x")
            n_star = profile.break_even(name, c.ratio, end_to_end=True)
            if n_star is not None and n_star <= n_hi:
                ax.axvline(n_star, color=line.get_color(), ls="--", lw=1)
                ax.text(
                    n_star,
                    0.98,
                    f" n*={n_star} ({c.ratio:g}x)",
                    transform=ax.get_xaxis_transform(),
                    color=line.get_color(),
                    rotation=90,
                    va="top",
                    fontsize=8,
                )
        gs = profile.generation_samples
        ax.scatter(
            [s.context_tokens for s in gs],
            [
                s.ttft_s
                + (s.decode_s_per_token if math.isfinite(s.decode_s_per_token) else 0)
                * (profile.expected_output_tokens - 1)
                for s in gs
            ],
            color="black",
            s=12,
            zorder=3,
            label="measured (no compression)",
        )
        ax.set_title(f"{name}: end-to-end latency, {profile.expected_output_tokens}-token answer")
        ax.set_xscale("log")
        ax.set_xlabel("context tokens n (log scale)")
        ax.set_ylabel("seconds")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{profile.generator}\n{profile.machine}", fontsize=8)
    fig.tight_layout()
    latency = out / LATENCY_PLOT
    fig.savefig(latency, dpi=110)
    plt.close(fig)

    grid_n = np.unique(np.geomspace(64, max(n_hi, 128), 12).astype(int))
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        costs = sorted(
            (c for c in profile.compressors if c.compressor == name), key=lambda c: c.ratio
        )
        speed = np.array(
            [
                [b / c_ for b, c_ in zip(*profile.curves(name, c.ratio, grid_n), strict=True)]
                for c in costs
            ]
        )
        bound = max(abs(np.log2(speed)).max(), 0.1)
        im = ax.imshow(
            np.log2(speed), aspect="auto", cmap="RdYlGn", vmin=-bound, vmax=bound, origin="lower"
        )
        ax.set_xticks(range(len(grid_n)), [str(n) for n in grid_n], rotation=60, fontsize=7)
        ax.set_yticks(range(len(costs)), [f"{c.ratio:g}x" for c in costs])
        for i in range(speed.shape[0]):
            for j in range(speed.shape[1]):
                ax.text(j, i, f"{speed[i, j]:.2f}", ha="center", va="center", fontsize=6)
        ax.set_title(f"{name}: predicted speedup (green > 1)")
        ax.set_xlabel("context tokens n")
        ax.set_ylabel("ratio r")
        fig.colorbar(im, ax=ax, label="log2 speedup")
    fig.tight_layout()
    speedup = out / SPEEDUP_PLOT
    fig.savefig(speedup, dpi=110)
    plt.close(fig)
    return [latency, speedup]


LATENCY_PLOT = "latency.png"
SPEEDUP_PLOT = "speedup.png"
CHECK_JSON = "check.json"
CHECK_MD = "check.md"
