"""``serve(settings)``: run the proxy with uvicorn (what ``ragzip serve`` calls)."""

from __future__ import annotations

import logging

from ragzip.server.app import create_app
from ragzip.server.settings import Settings

logger = logging.getLogger("ragzip.server")


def serve(settings: Settings | None = None) -> None:
    """Serve the proxy on ``settings.host:settings.port`` until interrupted.

    Args:
        settings: Proxy settings; ``Settings.load()`` (``RAGZIP_SETTINGS_FILE`` and ``RAGZIP_*``
            environment variables) when ``None``.
    """
    import uvicorn

    settings = settings if settings is not None else Settings.load()
    app = create_app(settings)
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
