"""A synchronous HTTP client for one server that retries what is safe to retry.

Connection failures, timeouts, HTTP 429 and 5xx are retried with exponential backoff (honouring
``Retry-After``, :mod:`ragzip.core.retry`) as long as no byte of the response body has been read.
Errors pass through ``redact`` so a secret never reaches a message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

from ragzip.core.errors import UpstreamError
from ragzip.core.retry import RETRY_STATUSES, Backoff, parse_retry_after
from ragzip.generators.openai_wire import Redact, error_detail

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _RetryableStatus(Exception):
    def __init__(self, error: UpstreamError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class RetryingClient:
    """Requests to the server at ``base``, retried while nothing of the answer was read.

    Args:
        base: The server's root URL; request paths are appended to it.
        client: An ``httpx.Client`` to use (not closed by :meth:`close`); by default one is
            created and owned.
        timeout_s: Seconds allowed to connect and for each read.
        max_retries: Extra attempts after a retryable failure.
        backoff: Waits between attempts.
        headers: Request headers, asked for on every attempt.
        redact: Removes secrets from error messages.
    """

    def __init__(
        self,
        base: str,
        *,
        client: httpx.Client | None,
        timeout_s: float,
        max_retries: int,
        backoff: Backoff,
        headers: Callable[[], dict[str, str]],
        redact: Redact,
    ) -> None:
        self.base = base
        self._timeout = httpx.Timeout(timeout_s)
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._backoff = backoff
        self._headers = headers
        self._redact = redact
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=self._timeout)

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_client:
            self._client.close()

    def call(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None,
        handle: Callable[[httpx.Response], T],
    ) -> T:
        """Send a request, retrying failures that happen before the body is read.

        ``handle`` reads the response; httpx errors it raises before the first body byte count
        as retryable, it raises :class:`UpstreamError` itself for failures after that.
        """
        url = f"{self.base}{path}"
        for attempt in range(self._max_retries + 1):
            retry_after: float | None = None
            cause: BaseException | None = None
            try:
                with self._client.stream(
                    method, url, json=payload, headers=self._headers(), timeout=self._timeout
                ) as response:
                    if response.status_code >= 400:
                        self._raise_status(response, url)
                    return handle(response)
            except _RetryableStatus as exc:
                error, retry_after = exc.error, exc.retry_after
            except httpx.TimeoutException as exc:
                error = UpstreamError(
                    self._redact(f"{url}: no response within {self._timeout_s:g} s ({exc!r})")
                )
                cause = exc
            except httpx.TransportError as exc:
                error = UpstreamError(self._redact(f"cannot reach {url}: {exc!r}"))
                cause = exc
            if attempt == self._max_retries:
                if attempt:
                    error = UpstreamError(
                        f"{error} (after {attempt + 1} attempts)", status_code=error.status_code
                    )
                raise error from cause
            delay = self._backoff.delay(attempt, retry_after)
            logger.warning(
                "%s failed (%s); retry %d of %d in %.2f s",
                url,
                error,
                attempt + 1,
                self._max_retries,
                delay,
            )
            time.sleep(delay)
        msg = "unreachable"  # pragma: no cover - the loop always returns or raises
        raise AssertionError(msg)  # pragma: no cover

    def _raise_status(self, response: httpx.Response, url: str) -> None:
        status = response.status_code
        try:
            body = response.read().decode("utf-8", errors="replace")
        except httpx.HTTPError:
            body = ""
        detail = error_detail(body)
        if status in (401, 403):
            detail = f"authentication failed (check api_key): {detail}"
        error = UpstreamError(
            self._redact(f"{url} answered HTTP {status}: {detail}"), status_code=status
        )
        if status in RETRY_STATUSES or status >= 500:  # any 5xx, besides 429
            raise _RetryableStatus(error, parse_retry_after(response.headers.get("retry-after")))
        raise error
