"""``serve(settings)``: run the proxy with uvicorn (what ``ragzip serve`` calls)."""

from __future__ import annotations

import logging
import signal

from ragzip.server.app import create_app
from ragzip.server.retrieval import open_configured
from ragzip.server.settings import Settings

logger = logging.getLogger("ragzip.server")


def serve(settings: Settings | None = None) -> None:
    """Serve the proxy on ``settings.host:settings.port`` until interrupted.

    Args:
        settings: Proxy settings; ``Settings.load()`` (``RAGZIP_SETTINGS_FILE`` and ``RAGZIP_*``
            environment variables) when ``None``.

    The retrieval index and its query embedder open before the server listens (a database that
    does not answer within ``retrieval_startup_wait`` seconds fails the start with one line).
    ``SIGHUP`` makes the proxy serve the folder index's newest published version.

    Raises:
        RagzipError: Bad settings, or an index that cannot be opened.
    """
    import uvicorn

    settings = settings if settings is not None else Settings.load()
    retriever = open_configured(settings)
    if retriever is not None:  # the query embedder loads (first run: exports) before listening
        from ragzip.weights import load_embedder

        load_embedder()
    try:
        app = create_app(settings, retriever=retriever, close_retriever=True)
    except BaseException:
        close = getattr(retriever, "close", None)
        if callable(close):
            close()
        raise
    signal.signal(signal.SIGHUP, lambda *_: app.state.service.retrieval.reload_soon())
    logger.info(
        "ragzip proxy on http://%s:%d → %s (compressor %s, budget %s)",
        settings.host,
        settings.port,
        settings.upstream_display,
        settings.default_compressor,
        settings.default_budget,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
