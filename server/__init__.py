"""OpenAI-compatible HTTP proxy that compresses context on the way to the LLM.

Point an OpenAI client at the proxy; it compresses the context the request marks (see
:mod:`ragzip.server.context`) and forwards the request to the upstream server. Entry points:
:func:`create_app` (an ASGI app), :func:`serve` (uvicorn), :class:`Settings`.

``Settings`` needs only the core install; ``create_app`` and ``serve`` need the ``server`` extra
(``pip install 'ragzip[server]'``) and are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ragzip.server.settings import Settings

if TYPE_CHECKING:
    from ragzip.server.app import create_app
    from ragzip.server.main import serve

__all__ = ["Settings", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "serve"):
        module = "ragzip.server.app" if name == "create_app" else "ragzip.server.main"
        try:
            return getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as exc:
            from ragzip.core.errors import MissingDependencyError

            msg = f"the proxy needs {exc.name!r}: pip install 'ragzip[server]'"
            raise MissingDependencyError(msg, name=exc.name) from exc
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
