"""The ``ragzip`` command line: index, ask, compress, eval, profile, serve, serve-model."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ragzip.commands import console, fail
from ragzip.core.errors import RagzipError
from ragzip.core.types import Budget

app = typer.Typer(
    name="ragzip",
    help="Compress retrieved context between retrieval and an LLM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # help texts are plain text: "pip install 'ragzip[postgres]'" must not read as markup
    rich_markup_mode=None,
)
DEFAULT_INDEX = Path(".ragzip/index")
BACKEND_HELP = "'folder' (the --index folder) or 'postgres' (pip install 'ragzip[postgres]')."
DSN_HELP = "Postgres URL for --backend postgres, or 'embedded' (a local server, no setup)."
SPEC_HELP = (
    "Compressor spec: a registered name, optionally with config settings as "
    "NAME:KEY=VALUE;KEY=VALUE (quote it in the shell), e.g. 'sentence:mode=adaptive;threshold=0.4'."
)


def _print_version(value: bool) -> None:
    if value:
        from ragzip import __version__

        typer.echo(f"ragzip {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Compress retrieved context between retrieval and an LLM."""


def _quiet_libraries() -> None:
    """Silence the progress bars and warnings of the libraries ragzip drives.

    The commands show one progress display of their own (``--no-progress`` turns it off);
    bars of transformers, sentence-transformers, huggingface_hub, bm25s and faiss, and the
    deprecation warnings of those libraries, say nothing a user of ragzip can act on.
    """
    for name, value in (
        ("TQDM_DISABLE", "1"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
        ("TOKENIZERS_PARALLELISM", "false"),
    ):
        os.environ.setdefault(name, value)
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)


@contextmanager
def _activity(progress: bool, what: str) -> Iterator[None]:
    """A spinner on stderr while ``what`` runs (nothing with ``--no-progress``)."""
    if not progress:
        yield
        return
    with console.status(what):
        yield


def _check_compressor(spec: str, options: dict[str, Any]) -> None:
    """Fail on a misspelt compressor name or setting before any model loads."""
    from ragzip.registry import resolve_config

    try:
        resolve_config(spec, options or None)
    except RagzipError as exc:
        raise fail(exc) from exc


def _parse_budget(text: str) -> Budget:
    try:
        return Budget.parse(text)
    except RagzipError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _parse_options(options: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as JSON when they parse, else kept as strings."""
    out: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            msg = f"options look like key=value, got {item!r}"
            raise typer.BadParameter(msg)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@app.command()
def index(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files or folders (.md .txt .rst .jsonl).")
    ] = None,
    index_path: Annotated[Path, typer.Option("--index", help="Where to write the index.")] = (
        DEFAULT_INDEX
    ),
    max_words: Annotated[int, typer.Option(help="Chunk size in words.")] = 120,
    overlap_words: Annotated[int, typer.Option(help="Overlap between chunks in words.")] = 24,
    features: Annotated[
        bool,
        typer.Option(
            help="Store the chunks' sentence vectors, so `mig` embeds only the question at "
            "query time (about 0.8 KB per sentence)."
        ),
    ] = True,
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "folder",
    dsn: Annotated[str | None, typer.Option(help=DSN_HELP)] = None,
    pg_table: Annotated[str, typer.Option("--table", help="Postgres index name.")] = "ragzip",
    progress: Annotated[bool, typer.Option(help="Show progress (on stderr).")] = True,
    prune: Annotated[
        bool,
        typer.Option(
            help="Postgres: also remove the documents read from these paths before that are "
            "no longer there (the folder backend always holds exactly the documents given)."
        ),
    ] = False,
    stats: Annotated[
        bool, typer.Option(help="Print the index's documents, chunks and size, and stop.")
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="'local' (this process) or 'ray': documents prepared by a pool of Ray workers, "
            "resumable (pip install 'ragzip[ray]')."
        ),
    ] = "local",
    workers: Annotated[
        int | None, typer.Option(min=1, help="Ray workers (default: one per CPU).")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="A running Ray cluster to use (default: start one here).")
    ] = None,
) -> None:
    """Chunk documents and build a hybrid (BM25 + dense) index (a folder, or Postgres).

    A document's id is the one its author gave (JSON Lines "id", Markdown front matter "id:"), else its file's resolved path. Into Postgres only new and changed documents are embedded and written; --prune removes what left the sources.
    """  # noqa: E501 - typer rewraps the help text; one line per paragraph reads best
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from ragzip.retrievers.backends import check_backend, index_stats, write_index
    from ragzip.retrievers.chunking import ChunkConfig
    from ragzip.retrievers.documents import read_documents
    from ragzip.retrievers.postgres.schema import check_table_name

    try:  # settings first: nothing heavy loads for a typo
        check_backend(backend)
        if backend == "postgres":
            check_table_name(pg_table)
        if engine not in ("local", "ray"):
            msg = f"engine must be 'local' or 'ray', got {engine!r}"
            raise typer.BadParameter(msg, param_hint="--engine")
        if stats:
            shown = index_stats(backend, index_path=index_path, dsn=dsn, table=pg_table)  # type: ignore[arg-type]
            typer.echo(json.dumps(shown, indent=2))
            return
        if not paths:
            msg = "give the files or folders to index"
            raise typer.BadParameter(msg, param_hint="PATHS")
    except RagzipError as exc:
        raise fail(exc) from exc

    labels = {"chunk": "chunking documents", "embed": "embedding chunks", "bm25": "indexing"}
    if engine == "ray":
        labels["embed"] = "preparing documents on Ray"
    display = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def report(stage: str, done: int, total: int) -> None:
        stage = "bm25" if stage == "faiss" else stage
        if stage not in tasks:
            tasks[stage] = display.add_task(labels[stage], total=total)
        display.update(tasks[stage], completed=done, total=total)

    try:
        config = ChunkConfig(max_words=max_words, overlap_words=overlap_words)
        with display:
            found = read_documents(paths)
            kwargs: dict[str, Any] = {"index_path": index_path, "dsn": dsn, "table": pg_table}
            kwargs |= {"chunking": config, "features": features, "progress": report}
            if engine == "ray":
                from ragzip.indexing.ray_engine import RayOptions, load_ray, write_index_ray

                load_ray()  # Ray Data sets its loggers up when imported
                logging.getLogger("ray.data").setLevel(logging.ERROR)
                options = RayOptions(ray_address, workers, log_level=logging.ERROR)
                written = write_index_ray(
                    backend, found.passages, options=options, prune=paths if prune else (), **kwargs
                )
            else:
                written = write_index(
                    backend,  # type: ignore[arg-type]
                    found.passages,
                    prune=paths if prune else (),
                    **kwargs,
                )
    except RagzipError as exc:
        raise fail(exc) from exc
    if found.skipped:
        console.print(f"[yellow]skipped {len(found.skipped)} file(s):[/]")
        for where, reason in found.skipped:
            console.print(f"  {where}: {reason}", markup=False, highlight=False)
    line = f"indexed [bold]{written.documents}[/] documents as [bold]{written.chunks}[/] chunks"
    if written.unchanged:
        line += f", {written.unchanged} unchanged"
    if written.removed:
        line += f", {written.removed} removed"
    console.print(f"{line} → {written.where}")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    index_path: Annotated[
        Path, typer.Option("--index", help="Index written by `ragzip index`.")
    ] = (DEFAULT_INDEX),
    compressor: Annotated[str, typer.Option(help=SPEC_HELP)] = "mig",
    budget: Annotated[str, typer.Option(help="Token budget ('256') or ratio ('4x').")] = "4x",
    k: Annotated[int, typer.Option(help="Passages to retrieve.")] = 5,
    option: Annotated[
        list[str], typer.Option("--option", "-o", help="Compressor config key=value.")
    ] = [],  # noqa: B006 - typer reads the default, it is never mutated
    max_new_tokens: Annotated[int, typer.Option(help="Answer length limit.")] = 32,
    show_context: Annotated[bool, typer.Option(help="Print the compressed context.")] = False,
    explain: Annotated[
        bool,
        typer.Option(
            help="Show each retrieved passage with the kept text highlighted and the dropped "
            "text dimmed (marked [-like this-] when stdout is not a terminal), tokens before "
            "and after, and the budget."
        ),
    ] = False,
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "folder",
    dsn: Annotated[str | None, typer.Option(help=DSN_HELP)] = None,
    pg_table: Annotated[str, typer.Option("--table", help="Postgres index name.")] = "ragzip",
    progress: Annotated[bool, typer.Option(help="Show progress (on stderr).")] = True,
) -> None:
    """Retrieve, compress and answer with the embedded generator."""
    from ragzip.pipeline import Pipeline
    from ragzip.retrievers.backends import open_retriever

    parsed = _parse_budget(budget)
    options = _parse_options(option)
    _check_compressor(compressor, options)
    try:
        with _activity(progress, "loading models"):
            retriever = open_retriever(backend, index_path=index_path, dsn=dsn, table=pg_table)  # type: ignore[arg-type]
            pipe = Pipeline.from_defaults(
                retriever, compressor=compressor, budget=parsed, compressor_config=options, k=k
            )
        pipe.max_new_tokens = max_new_tokens
        with _activity(progress, "retrieving, compressing, answering"):
            result = pipe.run(question)
    except RagzipError as exc:
        raise fail(exc) from exc
    comp = result.compression
    if show_context:
        console.rule("compressed context")
        console.print(f"{comp.context}{question}", markup=False, highlight=False)
        console.rule()
    if explain:
        from ragzip.explain import show

        show(comp, Console())
        typer.echo(f"\nQuestion: {question}\nAnswer: {result.answer.strip()}")
    else:
        typer.echo(result.answer.strip())
    table = Table(title=f"{compressor} @ {parsed}", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("passages retrieved", str(len(result.retrieved)))
    table.add_row("context tokens before", str(comp.original_tokens))
    table.add_row("context tokens after", str(comp.compressed_tokens))
    table.add_row(
        "tokens saved", f"{comp.saved_tokens} ({_pct(comp.saved_tokens, comp.original_tokens)})"
    )
    table.add_row("prompt tokens sent", str(result.prompt_tokens))
    for stage in ("retrieve", "compress", "generate", "total"):
        if stage in result.timings:
            table.add_row(f"{stage} time", f"{result.timings[stage] * 1000:.0f} ms")
    if result.generation is not None:
        table.add_row("time to first token", f"{result.generation.ttft_s * 1000:.0f} ms")
    console.print(table)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "0%"


@app.command()
def compress(
    compressor: Annotated[str, typer.Option(help=SPEC_HELP)] = "mig",
    budget: Annotated[str | None, typer.Option(help="Overrides the input's budget.")] = None,
    option: Annotated[
        list[str], typer.Option("--option", "-o", help="Compressor config key=value.")
    ] = [],  # noqa: B006 - typer reads the default, it is never mutated
    progress: Annotated[bool, typer.Option(help="Show progress (on stderr).")] = True,
) -> None:
    """Compress JSON from stdin to JSON on stdout.

    Input: ``{"query": str, "passages": [str | {"text", "title", "id"}], "budget": "4x"}``.
    Output: the CompressionResult as JSON.
    """
    from ragzip.registry import create_compressor
    from ragzip.weights import smollm2_counter

    try:
        payload = json.loads(sys.stdin.read())
    except json.JSONDecodeError as exc:
        raise fail(ValueError(f"stdin is not valid JSON: {exc}")) from exc
    if not isinstance(payload, dict) or "query" not in payload or "passages" not in payload:
        raise fail(ValueError('input must be a JSON object with "query" and "passages"'))
    parsed = _parse_budget(budget or str(payload.get("budget", "4x")))
    options = _parse_options(option)
    _check_compressor(compressor, options)
    try:
        with _activity(progress, f"compressing with {compressor}"):
            comp = create_compressor(compressor, counter=smollm2_counter(), config=options)
            result = comp.compress(payload["query"], payload["passages"], budget=parsed)
    except RagzipError as exc:
        raise fail(exc) from exc
    typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))


@app.command("compressors")
def list_compressors() -> None:
    """List registered compressors and the extra each needs."""
    from rich.text import Text

    from ragzip.registry import entries

    table = Table("name", "install", "what it does")
    for entry in entries():
        extra = f"ragzip[{entry.extra}]" if entry.extra else "-"
        table.add_row(entry.name, Text(extra), Text(entry.summary))  # Text: no markup
    Console().print(table)


def _register_optional_commands() -> None:
    from ragzip.evaluation.command import eval_command
    from ragzip.profiling.command import profile_command
    from ragzip.server.command import serve, serve_model
    from ragzip.training.command import train_app

    app.command("serve")(serve)
    app.command("serve-model")(serve_model)
    app.command("eval")(eval_command)
    app.command("profile")(profile_command)
    app.add_typer(train_app, name="train")


_register_optional_commands()


def main() -> None:
    """Console-script entry point: quiets the libraries, then runs the command."""
    _quiet_libraries()
    app()
