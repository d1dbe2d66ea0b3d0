"""Server-sent-event passthrough: upstream stream → client, closed upstream when the client leaves.

The stream is passed chunk by chunk as the upstream sent it. It always ends with
``data: [DONE]`` (added when the upstream left it out). When the upstream fails mid-stream the
client receives an OpenAI-shaped ``data: {"error": {...}}`` event, then ``data: [DONE]`` (the
official clients raise ``APIError`` on it). When the client disconnects, the upstream request is
closed at once, without waiting for the next upstream chunk.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import anyio
import httpx
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ragzip.core.errors import UpstreamError
from ragzip.server.errors import spec_for
from ragzip.server.metrics import Metrics
from ragzip.server.upstream import UpstreamReply

logger = logging.getLogger("ragzip.server")

DONE = b"data: [DONE]\n\n"


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has disconnected (the request body must be read already)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class UpstreamStreamResponse(Response):
    """Streams an open :class:`~ragzip.server.upstream.UpstreamReply` to the client.

    Args:
        reply: The upstream reply, its first chunk already read.
        headers: Response headers (content type included).
        metrics: Where disconnects and mid-stream errors are counted.
        translate: Maps an ``httpx`` error to the :class:`~ragzip.core.errors.UpstreamError` to
            report.
    """

    def __init__(
        self,
        reply: UpstreamReply,
        *,
        headers: dict[str, str],
        metrics: Metrics,
        translate: Callable[[httpx.HTTPError], UpstreamError],
    ) -> None:
        self.reply = reply
        self.status_code = reply.status
        self.media_type = None
        self.background = None
        self.metrics = metrics
        self.translate = translate
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = False
        try:
            async with anyio.create_task_group() as group:

                async def pump() -> None:
                    nonlocal disconnected
                    try:
                        await self._pump(send)
                    except OSError:  # the client socket is gone
                        disconnected = True
                    group.cancel_scope.cancel()

                group.start_soon(pump)
                await wait_for_disconnect(receive)
                disconnected = True
                group.cancel_scope.cancel()
        finally:
            await self.reply.aclose()
        if disconnected:
            self.metrics.disconnects.inc()
            logger.info("client disconnected; upstream stream closed")

    async def _pump(self, send: Send) -> None:
        reply = self.reply
        is_sse = reply.content_type.startswith("text/event-stream")
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        tail = b""
        try:
            if reply.first_chunk:
                await send(
                    {"type": "http.response.body", "body": reply.first_chunk, "more_body": True}
                )
                tail = reply.first_chunk[-32:]
            assert reply.stream is not None
            async for chunk in reply.stream:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    tail = (tail + chunk)[-32:]
            if is_sse and not tail.rstrip().endswith(b"data: [DONE]"):
                await send({"type": "http.response.body", "body": DONE, "more_body": True})
        except httpx.HTTPError as exc:
            error = self.translate(exc)
            spec = spec_for(error)
            self.metrics.errors.labels(spec.code).inc()
            logger.warning("upstream stream broke: %s", error)
            if not is_sse:
                raise error from exc  # a plain body cannot carry an error: abort the connection
            payload = {
                "error": {
                    "message": str(error),
                    "type": spec.type,
                    "param": None,
                    "code": spec.code,
                }
            }
            event = b"\n\ndata: " + json.dumps(payload).encode() + b"\n\n" + DONE
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
