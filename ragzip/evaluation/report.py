"""Write an :class:`~ragzip.evaluation.results.EvalReport` as JSON, Markdown and a PNG plot.

* ``eval.json`` — every number, the configuration, machine information and timestamps
  (``schema`` names the layout; NaN and infinity are written as ``null``).
* ``eval.md`` — the same numbers as Markdown tables.
* ``eval.png`` — answer-in-context recall (NQ) and value survival (KV) against the requested
  compression ratio, one line per compressor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragzip.core.errors import ConfigError
from ragzip.evaluation.results import EvalReport
from ragzip.experiments.reporting import json_ready, markdown_table

SCHEMA = "ragzip-eval/1"
JSON_NAME = "eval.json"
MARKDOWN_NAME = "eval.md"
PLOT_NAME = "eval.png"


def report_to_dict(report: EvalReport) -> dict[str, Any]:
    """The JSON document of ``report``."""
    out: dict[str, Any] = {"schema": SCHEMA}
    out.update(json_ready(report))
    out["config"] = json_ready(report.config.to_dict())
    return out


# -- Markdown ---------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "∞"
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{100 * value:.1f}%"


Column = tuple[str, Callable[[Any], str]]
"""A table column: its header and what it shows of a row."""

_COMPRESSION_COLUMNS: tuple[Column, ...] = (
    ("compressor", lambda r: r.compressor),
    ("requested", lambda r: f"{r.requested_ratio:g}x"),
    ("answer recall", lambda r: _pct(r.answer_recall)),
    ("achieved", lambda r: f"{_fmt(r.achieved_ratio, 2)}x"),
    ("adherence", lambda r: _fmt(r.adherence, 2)),
    ("violations", lambda r: str(r.budget_violations)),
    ("tokens before", lambda r: _fmt(r.original_tokens, 0)),
    ("tokens after", lambda r: _fmt(r.compressed_tokens, 0)),
    ("ms / 1k tok", lambda r: _fmt(r.ms_per_1k_tokens, 1)),
    ("ms p95", lambda r: _fmt(r.ms_p95, 1)),
)
_GENERATION_COLUMNS: tuple[Column, ...] = (
    ("context", lambda r: r.setting),
    ("ratio", lambda r: f"{r.ratio:g}x"),
    ("n", lambda r: str(r.n)),
    ("EM", lambda r: _pct(r.em)),
    ("F1", lambda r: _pct(r.f1)),
    ("accuracy", lambda r: _pct(r.accuracy)),
    ("context tok", lambda r: _fmt(r.context_tokens, 0)),
    ("prompt tok", lambda r: _fmt(r.prompt_tokens, 0)),
    ("TTFT ms", lambda r: _fmt(r.ttft_ms, 0)),
    ("TTFT p50", lambda r: _fmt(r.ttft_ms_p50, 0)),
    ("generate ms", lambda r: _fmt(r.total_ms, 0)),
    ("compress ms", lambda r: _fmt(r.compress_ms, 1)),
    ("prefill GFLOP", lambda r: _fmt(r.prefill_gflops, 1)),
)
_KV_COLUMNS: tuple[Column, ...] = (
    ("compressor", lambda r: r.compressor),
    ("requested", lambda r: f"{r.requested_ratio:g}x"),
    ("value survives", lambda r: _pct(r.value_survival)),
    ("record survives", lambda r: _pct(r.pair_survival)),
    ("achieved", lambda r: f"{_fmt(r.achieved_ratio, 2)}x"),
    ("violations", lambda r: str(r.budget_violations)),
    ("ms / 1k tok", lambda r: _fmt(r.ms_per_1k_tokens, 1)),
)


def _table(columns: Sequence[Column], rows: Sequence[Any]) -> str:
    return markdown_table([h for h, _ in columns], [[show(r) for _, show in columns] for r in rows])


def render_markdown(report: EvalReport) -> str:
    """The report as Markdown tables."""
    cfg = report.config
    parts = [
        "# ragzip evaluation",
        "",
        f"- Run: {report.started_at} → {report.finished_at} ({report.duration_s:.0f} s)",
        f"- Tokens counted in: `{report.tokenizer}`",
        f"- Machine: {report.machine.get('cpu') or '-'}, {report.machine.get('platform')}, "
        f"{report.machine.get('cpu_count')} CPUs "
        f"(torch threads: {report.machine.get('torch_threads') or '-'}), "
        f"Python {report.machine.get('python')}, commit {report.machine.get('git_commit') or '-'}"
        + (" (with uncommitted changes)" if report.machine.get("git_dirty") else ""),
    ]
    if report.retrieval or report.compression or report.generation:
        parts.insert(
            3,
            f"- Data: NQ-open `{cfg.split}` split, {report.data.get('questions')} questions "
            f"(of {report.data.get('split_size')}); corpus of "
            f"{report.data.get('corpus_documents')} passages",
        )
    if report.retrieval is not None:
        r = report.retrieval
        ks = sorted({k for m in r.modes for k in m.recall})
        parts += [
            "",
            "## Retrieval",
            "",
            f"Recall@k of the gold passage over {r.questions} questions; index of "
            f"{r.index_units} units over {r.corpus_documents} passages "
            f"({r.index_source}, {r.index_seconds:.1f} s).",
            "",
            markdown_table(
                ["mode", *[f"recall@{k}" for k in ks], "ms/query"],
                [
                    [m.mode, *[_pct(m.recall[k]) for k in ks], _fmt(m.ms_per_query, 1)]
                    for m in r.modes
                ],
            ),
        ]
    if report.compression is not None:
        c = report.compression
        parts += [
            "",
            "## Compression (NQ)",
            "",
            f"Top-{c.k} hybrid passages per question, {c.questions} questions. Uncompressed "
            f"context holds an answer for {_pct(c.context_answer_recall)} and the gold passage "
            f"for {_pct(c.gold_in_context)} of questions.",
            "",
            _table(_COMPRESSION_COLUMNS, c.rows),
        ]
    if report.generation is not None:
        g = report.generation
        parts += [
            "",
            "## Generation",
            "",
            f"{g.generator} (`{g.tokenizer}`), greedy answers of at most {g.max_new_tokens} "
            "tokens. EM/F1 as in SQuAD; accuracy: an accepted answer occurs in the answer.",
            "",
            _table(_GENERATION_COLUMNS, g.rows),
        ]
    if report.kv is not None:
        kv = report.kv
        parts += [
            "",
            "## Key-value retrieval",
            "",
            f'{kv.cases} cases of {kv.records_per_case:.0f} `"key": "value"` passages; '
            "does the asked value survive verbatim?",
            "",
            _table(_KV_COLUMNS, kv.rows),
        ]
    return "\n".join(parts) + "\n"


# -- plot -------------------------------------------------------------------------------------


def _series(rows: Sequence[Any], value: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        out.setdefault(row.compressor, []).append((row.requested_ratio, getattr(row, value)))
    return {k: sorted(v) for k, v in out.items()}


def plot_report(report: EvalReport, path: Path) -> Path | None:
    """Answer-in-context recall (and KV value survival) against the requested ratio.

    Returns:
        ``path``, or ``None`` when the report has neither compression nor KV results.

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    panels: list[tuple[str, str, dict[str, list[tuple[float, float]]]]] = []
    if report.compression is not None and report.compression.rows:
        panels.append(
            (
                f"NQ: answer in compressed context (top-{report.compression.k})",
                "answer-in-context recall",
                _series(report.compression.rows, "answer_recall"),
            )
        )
    if report.kv is not None and report.kv.rows:
        panels.append(
            (
                f"Key-value: exact value survives ({report.kv.cases} cases)",
                "value survival",
                _series(report.kv.rows, "value_survival"),
            )
        )
    if not panels:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError as exc:
        from ragzip.core.errors import MissingDependencyError

        msg = "plots need matplotlib: pip install 'ragzip[plots]'"
        raise MissingDependencyError(msg, name=exc.name) from exc

    fig = Figure(figsize=(5.5 * len(panels), 4.2), dpi=110)
    FigureCanvasAgg(fig)  # render with Agg, without touching pyplot's global backend
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, ylabel, series) in zip(axes, panels, strict=True):
        ratios = sorted({r for pts in series.values() for r, _ in pts})
        for name, pts in series.items():
            ax.plot([r for r, _ in pts], [v for _, v in pts], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ratios)
        ax.set_xticklabels([f"{r:g}x" for r in ratios])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("requested compression ratio")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if report.compression is not None:
        axes[0].axhline(
            report.compression.context_answer_recall,
            color="grey",
            linestyle="--",
            linewidth=0.8,
            label="uncompressed",
        )
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create the report folder (and parents).

    Raises:
        ConfigError: A file is in the way, or the folder cannot be created.
    """
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        msg = f"cannot write the report to {out}: a file is in the way"
        raise ConfigError(msg) from exc
    except OSError as exc:
        msg = f"cannot create the report folder {out}: {exc}"
        raise ConfigError(msg) from exc
    return out


def write_report(report: EvalReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``eval.json``, ``eval.md`` and ``eval.png`` (when there is something to plot).

    Returns:
        The written files by kind (``json``, ``markdown``, ``plot``).

    Raises:
        ConfigError: ``out_dir`` exists and is not a folder, or cannot be created.
    """
    out = prepare_out_dir(out_dir)
    files: dict[str, Path] = {}
    doc = report_to_dict(report)
    files["json"] = out / JSON_NAME
    files["json"].write_text(
        json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8"
    )
    files["markdown"] = out / MARKDOWN_NAME
    files["markdown"].write_text(render_markdown(report), encoding="utf-8")
    plot = plot_report(report, out / PLOT_NAME)
    if plot is not None:
        files["plot"] = plot
    return files
