"""The connection to the upstream OpenAI-compatible server: bounded retries, timeouts, streams.

A request is retried (at most ``max_retries`` times, with doubling backoff) when the connection
fails, when the upstream closes it early, or when it answers a status of ``retry_statuses`` --
and only while nothing has been sent to the client: a non-streaming answer is read whole before
the client sees a byte, and a stream is committed once its first chunk has arrived. Read
timeouts are retried only with ``retry_timeouts`` (a slow upstream is not asked twice).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import anyio
import httpx

from ragzip.core.errors import UpstreamError
from ragzip.core.retry import Backoff
from ragzip.server.errors import UpstreamTimeoutError
from ragzip.server.metrics import Metrics
from ragzip.server.redact import MAX_UPSTREAM_BODY, Redactor, redact_url
from ragzip.server.settings import Settings

logger = logging.getLogger("ragzip.server")

# Client headers forwarded upstream, besides Authorization (see UpstreamClient.headers).
FORWARDED_HEADERS = (
    "accept",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "x-request-id",
    "user-agent",
)
# Connections are spread over this many pools: httpcore's pool bookkeeping costs time quadratic
# in the pool's size on every request, which small pools keep negligible under high concurrency.
POOL_SHARDS = 8
# Upstream response headers not passed back to the client.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "date",
        "server",
    }
)


@dataclass
class UpstreamReply:
    """An upstream answer.

    Attributes:
        status: HTTP status.
        headers: Response headers to pass back (hop-by-hop ones removed).
        content: The whole body (non-streaming, or any error status).
        first_chunk: For an open stream, its first raw chunk.
        stream: For an open stream, the rest of it; call :meth:`aclose` when done.
    """

    status: int
    headers: dict[str, str]
    content: bytes = b""
    first_chunk: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    _response: httpx.Response | None = None

    @property
    def content_type(self) -> str:
        """The upstream content type (``application/json`` when absent)."""
        return self.headers.get("content-type", "application/json")

    async def aclose(self) -> None:
        """Release the upstream connection (safe to call twice, shielded from cancellation)."""
        response, self._response = self._response, None
        if response is not None:
            with anyio.CancelScope(shield=True):
                await response.aclose()


class UpstreamClient:
    """One pooled ``httpx.AsyncClient`` to the upstream server.

    Args:
        settings: Proxy settings (URL, key, timeouts, retries).
        metrics: Where retries are counted.
        transport: An ``httpx`` transport to use instead of the network (tests).
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._given = transport
        self._pools: list[httpx.AsyncBaseTransport] = []
        self._next = 0
        self._base = httpx.URL(settings.upstream_base_url + "/")
        self._urls: dict[str, httpx.URL] = {}
        self._timeout = httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.write_timeout,
            pool=settings.pool_timeout,
        ).as_dict()
        self.redactor = Redactor(settings.secret_values())

    def _pool(self) -> httpx.AsyncBaseTransport:
        """The next connection pool, round robin over :data:`POOL_SHARDS` (made on first use)."""
        if not self._pools:
            if self._given is not None:
                self._pools = [self._given]
            else:
                total = self.settings.max_upstream_connections
                shards = min(POOL_SHARDS, total)
                size = -(-total // shards)
                limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
                tls = httpx.create_ssl_context()  # one context for all pools (costly to make)
                self._pools = [
                    httpx.AsyncHTTPTransport(verify=tls, limits=limits, trust_env=False)
                    for _ in range(shards)
                ]
        self._next = (self._next + 1) % len(self._pools)
        return self._pools[self._next]

    def start(self) -> None:
        """Make the connection pools now rather than on the first request."""
        self._pool()

    async def _send(
        self, method: str, path: str, content: bytes | None, headers: Mapping[str, str]
    ) -> httpx.Response:
        """One attempt, straight on the transport (no client layers: no cookies, redirects)."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self._base.join(path)
        request = httpx.Request(
            method, url, headers=headers, content=content, extensions={"timeout": self._timeout}
        )
        response = await self._pool().handle_async_request(request)
        response.request = request
        return response

    async def aclose(self) -> None:
        """Close the connection pools."""
        pools, self._pools = self._pools, []
        for pool in pools:
            await pool.aclose()

    def headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        """Headers for the upstream request.

        ``Authorization`` carries ``upstream_api_key`` when set; when neither it nor the proxy's
        own ``auth_token`` is set, the client's ``Authorization`` is forwarded as it came.
        """
        out = {"content-type": "application/json", "accept-encoding": "identity"}
        for name in FORWARDED_HEADERS:
            value = client_headers.get(name)
            if value is not None:
                out[name] = value
        if self.settings.upstream_api_key is not None:
            out["authorization"] = "Bearer " + self.settings.upstream_api_key.get_secret_value()
        elif self.settings.auth_token is None and "authorization" in client_headers:
            out["authorization"] = client_headers["authorization"]
        return out

    def scrub(self, data: bytes, status: int = 200) -> bytes:
        """A body passed back to the client: the configured secrets masked; for an error
        answer (4xx/5xx) also anything that looks like a bearer token, key or URL password,
        and cut to :data:`~ragzip.server.redact.MAX_UPSTREAM_BODY` bytes."""
        if status < 400:
            return self.redactor.secrets_only(data)
        if len(data) <= MAX_UPSTREAM_BODY:
            return self.redactor.mask(data)
        # too long to pass on whole: an OpenAI-shaped error holding its (masked) beginning
        head = self.redactor.mask_text(data[:MAX_UPSTREAM_BODY].decode("utf-8", "replace"))
        error = {"message": f"upstream error (truncated): {head}", "type": "upstream_error"}
        return json.dumps({"error": {**error, "param": None, "code": None}}).encode()

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None,
        headers: Mapping[str, str],
        stream: bool = False,
    ) -> UpstreamReply:
        """Send a request, retrying while it is safe; see the module docstring.

        Args:
            method: ``GET`` or ``POST``.
            path: Relative to ``upstream_base_url`` (``"chat/completions"``).
            content: The JSON body.
            headers: Upstream request headers (:meth:`headers`).
            stream: Return an open stream after its first chunk instead of the whole body
                (only for a 2xx answer; error answers are always read whole).

        Raises:
            UpstreamTimeoutError: No answer in time.
            UpstreamError: Connection failed, closed early, or a 5xx status, after the retries.
        """
        s = self.settings
        attempts = s.max_retries + 1
        for attempt in range(attempts):
            if attempt:
                self.metrics.retries.inc()
                await asyncio.sleep(Backoff(s.retry_backoff).delay(attempt - 1))
            last = attempt == attempts - 1
            response: httpx.Response | None = None
            try:
                response = await self._send(method, path, content, headers)
                if response.status_code in s.retry_statuses and not last:
                    logger.warning("upstream answered %d; retrying", response.status_code)
                    await response.aclose()
                    continue
                reply = UpstreamReply(
                    status=response.status_code,
                    headers={
                        k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP
                    },
                )
                if stream and response.status_code < 400:
                    iterator = response.aiter_raw()
                    reply.first_chunk = await anext(iterator, b"")
                    reply.stream, reply._response = iterator, response
                    response = None  # the caller owns it now
                else:
                    reply.content = self.scrub(await response.aread(), response.status_code)
                if reply.status >= 500:
                    detail = _describe_status(reply, self.redactor)
                    raise UpstreamError(detail, status_code=reply.status)
                return reply
            except httpx.HTTPError as exc:
                error = self.translate_error(exc)
                if last or not self._retryable(exc):
                    raise error from exc
                logger.warning("upstream attempt %d failed (%s); retrying", attempt + 1, error)
            finally:
                if response is not None:
                    with anyio.CancelScope(shield=True):
                        await response.aclose()
        msg = "no upstream attempt was made"  # unreachable: attempts >= 1
        raise UpstreamError(msg)

    def _retryable(self, exc: httpx.HTTPError) -> bool:
        if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
            return True
        if isinstance(exc, httpx.TimeoutException):
            return self.settings.retry_timeouts
        return isinstance(exc, httpx.TransportError)

    def translate_error(self, exc: httpx.HTTPError) -> UpstreamError:
        """The :class:`~ragzip.core.errors.UpstreamError` (or timeout) to report for an httpx
        error."""
        url = redact_url(self.settings.upstream_base_url)
        if isinstance(exc, httpx.TimeoutException):
            what = {
                httpx.ConnectTimeout: "connecting to",
                httpx.ReadTimeout: "waiting for an answer from",
                httpx.WriteTimeout: "sending the request to",
                httpx.PoolTimeout: "waiting for a free connection to",
            }.get(type(exc), "talking to")
            msg = f"timed out {what} the upstream server {url}"
            return UpstreamTimeoutError(msg)
        if isinstance(exc, httpx.ConnectError):
            msg = f"cannot connect to the upstream server {url}"
        elif isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            msg = f"the upstream server {url} closed the connection early"
        else:
            msg = f"upstream request to {url} failed: {type(exc).__name__}"
        return UpstreamError(msg)


def _describe_status(reply: UpstreamReply, redactor: Redactor) -> str:
    """A short message for an upstream 5xx (its own error message, secrets masked)."""
    detail = ""
    try:
        data = json.loads(reply.content)
        if isinstance(data, dict):
            err = data.get("error", data)
            detail = str(err.get("message", "")) if isinstance(err, dict) else str(err)
    except ValueError:
        detail = reply.content[:200].decode("utf-8", "replace")
    detail = redactor.mask_text(" ".join(detail.split()))
    return f"upstream server answered {reply.status}" + (f": {detail}" if detail else "")
