"""``ragzip eval``: run the evaluation and write ``eval.json``, ``eval.md`` and ``eval.png``.

A plain function with typer annotations; the CLI registers it with ``app.command("eval")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ragzip.core.errors import ConfigError, RagzipError
from ragzip.evaluation.config import EvalConfig
from ragzip.evaluation.results import EvalReport


def _split_list(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        msg = f"give at least one {what} (a comma-separated list)"
        raise typer.BadParameter(msg)
    return items


def parse_compressors(text: str) -> tuple[str, ...]:
    """``"sentence:mode=budgeted,mig"`` → canonical spec labels (see :mod:`ragzip.registry`).

    Names and settings are checked here (the compressors' modules are imported, no model is
    loaded), so a typo fails before any expensive work.
    """
    from ragzip.registry import parse_specs

    try:
        specs = parse_specs(text)
        for spec in specs:
            spec.build_config()
        return tuple(spec.label for spec in specs)
    except RagzipError as exc:
        raise typer.BadParameter(str(exc)) from exc


def parse_ratios(text: str) -> tuple[float, ...]:
    """``"1,2,4,8"`` or ``"1x,2x"`` → ``(1.0, 2.0, ...)``."""
    out: list[float] = []
    for item in _split_list(text, "ratio"):
        try:
            out.append(float(item.lower().removesuffix("x")))
        except ValueError as exc:
            msg = f"cannot read ratio {item!r}: use numbers like 1,2,4,8"
            raise typer.BadParameter(msg) from exc
    return tuple(out)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%" if value == value else "-"  # NaN check


def print_report(report: EvalReport, console: Console) -> None:
    """Print the report's tables."""
    if report.retrieval is not None:
        r = report.retrieval
        ks = sorted({k for m in r.modes for k in m.recall})
        table = Table(title=f"Retrieval recall ({r.questions} questions, {r.index_units} units)")
        table.add_column("mode")
        for k in ks:
            table.add_column(f"@{k}", justify="right")
        table.add_column("ms/query", justify="right")
        for m in r.modes:
            table.add_row(m.mode, *[_pct(m.recall[k]) for k in ks], f"{m.ms_per_query:.1f}")
        console.print(table)
    if report.compression is not None:
        c = report.compression
        table = Table(
            title=(
                f"Compression of top-{c.k} contexts ({c.questions} questions; "
                f"uncompressed answer recall {_pct(c.context_answer_recall)})"
            )
        )
        for col in ("compressor", "ratio", "answer recall", "achieved", "violations", "ms/1k tok"):
            if col == "compressor":
                table.add_column(col, overflow="fold")
            else:
                table.add_column(col, justify="right")
        for row in c.rows:
            table.add_row(
                row.compressor,
                f"{row.requested_ratio:g}x",
                _pct(row.answer_recall),
                f"{row.achieved_ratio:.2f}x",
                str(row.budget_violations),
                f"{row.ms_per_1k_tokens:.1f}",
            )
        console.print(table)
    if report.generation is not None:
        g = report.generation
        table = Table(title=f"Generation ({g.generator})")
        for col in ("context", "ratio", "n", "EM", "F1", "accuracy", "prompt tok", "TTFT ms"):
            table.add_column(col, justify="left" if col == "context" else "right")
        for grow in g.rows:
            table.add_row(
                grow.setting,
                f"{grow.ratio:g}x",
                str(grow.n),
                _pct(grow.em),
                _pct(grow.f1),
                _pct(grow.accuracy),
                f"{grow.prompt_tokens:.0f}",
                f"{grow.ttft_ms:.0f}",
            )
        console.print(table)
    if report.kv is not None:
        kv = report.kv
        table = Table(title=f"Key-value: value survives ({kv.cases} cases)")
        for col in ("compressor", "ratio", "value survives", "achieved", "violations"):
            table.add_column(col, justify="left" if col == "compressor" else "right")
        for krow in kv.rows:
            table.add_row(
                krow.compressor,
                f"{krow.requested_ratio:g}x",
                _pct(krow.value_survival),
                f"{krow.achieved_ratio:.2f}x",
                str(krow.budget_violations),
            )
        console.print(table)


def eval_command(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Folder with nq_open_dev.jsonl.gz and kv_retrieval_dev.jsonl.gz."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for eval.json, eval.md, eval.png (default: reports/eval)."),
    ] = None,
    questions: Annotated[
        int, typer.Option("--questions", "-n", "--limit", help="Questions of the split to use.")
    ] = 500,
    split: Annotated[str, typer.Option(help="NQ split: train, val, test or all.")] = "test",
    k: Annotated[int, typer.Option("--k", help="Passages retrieved per question.")] = 10,
    compressors: Annotated[
        str,
        typer.Option(
            help="Comma-separated compressor specs: a registered name, optionally with config "
            "settings as NAME:KEY=VALUE;KEY=VALUE (quote it in the shell), e.g. "
            "'sentence:mode=budgeted,sentence:mode=adaptive;threshold=0.4,mig'."
        ),
    ] = "truncate,random,mig",
    ratios: Annotated[str, typer.Option(help="Comma-separated compression ratios.")] = "1,2,4,8",
    generate_n: Annotated[
        int, typer.Option(help="Questions to answer with the embedded generator (0: skip).")
    ] = 0,
    generate_ratio: Annotated[float, typer.Option(help="Compression ratio for generation.")] = 4.0,
    generator: Annotated[
        str | None,
        typer.Option(
            help="The local model that answers: smollm2 (default), gemma3-270m, a model folder "
            "or a .gguf file; soft compressors make their vectors for it."
        ),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length limit.")] = 32,
    retrieval: Annotated[bool, typer.Option(help="Score retrieval recall.")] = True,
    compression: Annotated[bool, typer.Option(help="Score compression on NQ.")] = True,
    kv: Annotated[bool, typer.Option(help="Score value survival on the key-value cases.")] = True,
    kv_cases: Annotated[
        int | None, typer.Option(help="Key-value cases to use (default: all).")
    ] = None,
    index_cache: Annotated[
        Path | None, typer.Option(help="Folder to reuse (or save) the NQ index in.")
    ] = None,
    chunk: Annotated[bool, typer.Option(help="Chunk passages when indexing.")] = False,
    backend: Annotated[
        str, typer.Option(help="Where the NQ index lives: folder or postgres.")
    ] = "folder",
    dsn: Annotated[
        str | None,
        typer.Option(help="Postgres URL for --backend postgres, or 'embedded' (no setup)."),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="torch CPU threads (1 is fastest on a busy shared machine)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Evaluate retrieval, compression and generation on NQ-open and key-value retrieval."""
    from ragzip.evaluation.report import prepare_out_dir, write_report
    from ragzip.evaluation.runner import run_eval

    err = Console(stderr=True)
    if threads is not None:
        if threads < 1:
            msg = f"threads must be >= 1, got {threads}"
            raise typer.BadParameter(msg)
        import torch

        torch.set_num_threads(threads)
    try:
        config = EvalConfig(
            data_dir=data_dir,
            split=split,
            questions=questions,
            k=k,
            compressors=parse_compressors(compressors),
            ratios=parse_ratios(ratios),
            retrieval=retrieval,
            compression=compression,
            generate_n=generate_n,
            generate_ratio=generate_ratio,
            generator=generator,
            max_new_tokens=max_new_tokens,
            kv=kv,
            kv_cases=kv_cases,
            index_cache=index_cache,
            chunk=chunk,
            backend=backend,
            dsn=dsn,
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if out is None:
        from ragzip.core.paths import paths

        out = paths().report("eval")
    try:
        prepare_out_dir(out)
        report = run_eval(
            config,
            progress=progress,
            console=err,
            on_stage=lambda name: err.log(f"stage: {name}") if progress else None,
            checkpoint=lambda partial: write_report(partial, out),
        )
        files = write_report(report, out)
    except RagzipError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from exc
    print_report(report, Console())
    for kind, path in files.items():
        err.print(f"wrote {kind}: {path}")
