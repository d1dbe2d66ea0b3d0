"""Request size limit as pure ASGI middleware: 413 before the body is read when possible."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragzip.server.errors import RequestTooLargeError, error_response
from ragzip.server.metrics import Metrics


class BodySizeLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413.

    A declared ``Content-Length`` over the limit is answered at once; a chunked body is counted
    as it arrives and :class:`~ragzip.server.errors.RequestTooLargeError` raised once it passes
    the limit (answered as 413 by the error handlers).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, metrics: Metrics | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics

    def _message(self) -> str:
        return f"request body is larger than the limit of {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    if self.metrics is not None:
                        self.metrics.errors.labels("request_too_large").inc()
                    response = error_response(
                        self._message(),
                        status=413,
                        type="invalid_request_error",
                        code="request_too_large",
                        headers={"connection": "close"},
                    )
                    await response(scope, receive, send)
                    return
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestTooLargeError(self._message())
            return message

        await self.app(scope, limited_receive, send)
