"""``create_app(settings)``: the proxy as a FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from ragzip import __version__
from ragzip.core.tokenization import TokenCounter
from ragzip.generators.prompt_embeds import PromptEmbedder
from ragzip.registry import get_entry, parse_spec, resolve_config
from ragzip.retrievers.base import Retriever
from ragzip.server.errors import install_error_handlers
from ragzip.server.inspect import inspect_router
from ragzip.server.limits import BodySizeLimitMiddleware
from ragzip.server.metrics import Metrics, MetricsMiddleware
from ragzip.server.routes import api, docs_router, ops, protected_ops
from ragzip.server.service import ProxyService
from ragzip.server.settings import Settings


def create_app(
    settings: Settings | None = None,
    *,
    counter: TokenCounter | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    embedder: PromptEmbedder | None = None,
    retriever: Retriever | None = None,
    close_retriever: bool = False,
) -> FastAPI:
    """Build the OpenAI-compatible compression proxy.

    Args:
        settings: Proxy settings; ``Settings.load()`` (file and environment) when ``None``.
        counter: Token counter of the upstream model's tokenizer; built from
            ``settings.tokenizer`` (or the embedded SmolLM2 tokenizer) when ``None``.
        transport: ``httpx`` transport to the upstream instead of the network (tests).
        embedder: Renders prompts as the upstream model's input embeddings, for soft
            compressors with ``upstream_prompt_embeds``; built from ``settings`` when ``None``.
        retriever: Where requests that ask for retrieval (``"ragzip": {"retrieve": true}``)
            get their passages: any :class:`~ragzip.retrievers.base.Retriever` (a
            :class:`~ragzip.integrations.langchain_retriever.LangChainRetriever` over any LangChain
            store included); the index the settings name (``retrieval_index`` /
            ``retrieval_dsn``) when ``None``.
        close_retriever: Close ``retriever`` when the app stops (it was opened for this app,
            as :func:`~ragzip.server.main.serve` opens the configured one).

    Returns:
        The app; ``app.state.service`` holds the :class:`~ragzip.server.service.ProxyService`,
        ``app.state.metrics`` its :class:`~ragzip.server.metrics.Metrics`. The tokenizer and the
        default compressor load at startup (lifespan), or on first use without one.

    Raises:
        RegistryError: ``default_compressor`` (or a name in ``compressors``) is not registered.
        ConfigError: ``default_compressor`` is badly configured, or the settings would serve the
            operator's upstream key to anonymous clients
            (:meth:`~ragzip.server.settings.Settings.check_safe`).
    """
    settings = settings if settings is not None else Settings.load()
    settings.check_safe()
    # the server's own configuration: checked now, never blamed on a client later
    resolve_config(settings.default_compressor)
    for name in settings.compressors or []:
        get_entry(parse_spec(name).name)
    metrics = Metrics()
    service = ProxyService(
        settings,
        metrics,
        counter=counter,
        transport=transport,
        embedder=embedder,
        retriever=retriever,
        close_retriever=close_retriever,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.startup()
        try:
            yield
        finally:
            await service.aclose()

    app = FastAPI(
        title="ragzip proxy",
        version=__version__,
        summary="OpenAI-compatible proxy that compresses retrieved context before the LLM.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = service
    install_error_handlers(app)
    app.include_router(api)
    app.include_router(ops)
    app.include_router(protected_ops)
    app.include_router(docs_router(app))
    if settings.inspect:
        app.include_router(inspect_router())
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes, metrics=metrics
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
