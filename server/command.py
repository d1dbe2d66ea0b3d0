"""``ragzip serve`` (the compression proxy) and ``ragzip serve-model`` (a local generator as an
OpenAI-compatible server)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ragzip.commands import console, fail
from ragzip.core.errors import RagzipError

DSN_HELP = "Postgres URL for the postgres backend, or 'embedded' (a local server, no setup)."


def serve(
    config: Annotated[Path | None, typer.Option(help="Settings file (.toml/.json/.env).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    upstream: Annotated[
        str | None, typer.Option(help="Upstream OpenAI-compatible base URL.")
    ] = None,
    compressor: Annotated[str | None, typer.Option(help="Default compressor (a spec).")] = None,
    budget: Annotated[str | None, typer.Option(help="Default budget ('256' or '4x').")] = None,
    auth_token: Annotated[
        str | None,
        typer.Option(
            "--auth-token",
            envvar="RAGZIP_AUTH_TOKEN",
            help="Token clients must send as 'Authorization: Bearer TOKEN' to /v1/*, /metrics, "
            "/readyz and /docs (only /healthz stays open). Prefer the environment variable.",
            show_envvar=True,
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="Retrieve from this index for requests that ask to (folder or postgres; "
            "inferred from --index / --dsn)."
        ),
    ] = None,
    index_path: Annotated[
        Path | None, typer.Option("--index", help="Index folder to retrieve from.")
    ] = None,
    dsn: Annotated[
        str | None, typer.Option(help=DSN_HELP + " Prefer RAGZIP_RETRIEVAL_DSN.")
    ] = None,
    pg_table: Annotated[
        str | None, typer.Option("--table", help="Postgres index name to retrieve from.")
    ] = None,
    retrieve_by_default: Annotated[
        bool,
        typer.Option(
            "--retrieve-by-default",
            help="Retrieve for every request that marks no context of its own.",
        ),
    ] = False,
    allow_anonymous: Annotated[
        bool,
        typer.Option(
            "--allow-anonymous",
            help="Serve without --auth-token although RAGZIP_UPSTREAM_API_KEY is set (anyone "
            "reaching the port is then served on that key); refused otherwise.",
        ),
    ] = False,
    inspect: Annotated[
        bool,
        typer.Option(
            help="Serve the inspector page /inspect: paste a question and passages, see what a "
            "compressor keeps (behind --auth-token like every route)."
        ),
    ] = True,
) -> None:
    """Run the OpenAI-compatible proxy that compresses context on the way upstream.

    Safe defaults: it listens on 127.0.0.1 only.

    With RAGZIP_UPSTREAM_API_KEY set it refuses to start unless clients must authenticate (--auth-token / RAGZIP_AUTH_TOKEN) or --allow-anonymous says otherwise.

    Credentials never appear in responses, health reports, metrics or logs.

    With --index (or --dsn) it also retrieves: a request sending "ragzip": {"retrieve": true} gets passages from that index for its question, compressed like sent ones.

    Example: RAGZIP_AUTH_TOKEN=$(openssl rand -hex 24) ragzip serve --upstream URL
    """  # noqa: E501 - typer rewraps the help text; one line per paragraph reads best
    from ragzip.server import Settings
    from ragzip.server import serve as run_server

    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "upstream_base_url": upstream,
        "default_compressor": compressor,
        "default_budget": budget,
        "auth_token": auth_token,
        "allow_anonymous": allow_anonymous or None,
        "retrieval_backend": backend,
        "retrieval_index": str(index_path) if index_path is not None else None,
        "retrieval_dsn": dsn,
        "retrieval_table": pg_table,
        "retrieve_by_default": retrieve_by_default or None,
        "inspect": None if inspect else False,
    }
    try:
        settings = Settings.load(config, **{k: v for k, v in overrides.items() if v is not None})
        run_server(settings)
    except RagzipError as exc:
        raise fail(exc) from exc


def serve_model(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8001,
    name: Annotated[
        str | None, typer.Option(help="Model id clients send; the model's name by default.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, mps; the best by default.")] = None,
    simulate: Annotated[
        str | None,
        typer.Option(
            help="Serve a SIMULATED generator instead: first token after a + b·prompt tokens, "
            "a fixed answer (8b-a100, 70b-a100, smollm2-cpu)."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the embedded SmolLM2 generator as an OpenAI-compatible API (streamed)."""
    try:
        from ragzip.generators.base import TokenStreamer
        from ragzip.server.model_server.app import serve_model as run_model_server

        generator: TokenStreamer
        if simulate is not None:
            from ragzip.generators.simulated import SimulatedGenerator, preset

            generator = SimulatedGenerator(preset(simulate))
            console.print(generator.timing.describe())
        else:
            from ragzip.generators.embedded import EmbeddedGenerator

            generator = EmbeddedGenerator(device=device)
        console.print(f"serving {name or generator.name} on http://{host}:{port}/v1")
        run_model_server(generator, host=host, port=port, model_name=name, log_level=log_level)
    except RagzipError as exc:
        raise fail(exc) from exc
