"""Exception type → OpenAI error body and HTTP status.

Every error the proxy answers has the OpenAI shape
``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`` (the errors not
defined here are :mod:`ragzip.core.errors`'):

==========================================  ======  ========================  ==================
exception                                   status  type                      code
==========================================  ======  ========================  ==================
request validation (pydantic), bad JSON     400     invalid_request_error     invalid_value
:class:`InputError`                         400     invalid_request_error     invalid_input
:class:`BudgetError`                        400     invalid_request_error     invalid_budget
:class:`RegistryError`                      400     invalid_request_error     unknown_compressor
:class:`CompressorNotAllowedError`          400     invalid_request_error     compressor_not_allowed
:class:`MissingDependencyError`             400     invalid_request_error     compressor_unavailable
:class:`AuthenticationError`                401     authentication_error      invalid_api_key
unknown route / method                      404/405 invalid_request_error     not_found / ...
:class:`RequestTooLargeError` (and limits)  413     invalid_request_error     request_too_large
:class:`ServerBusyError` (``Retry-After``)  503     server_error              server_busy
:class:`RetrievalError` (``Retry-After``)   503     server_error              retrieval_failed
:class:`CompressionError`                   500     server_error              compression_failed
:class:`UpstreamTimeoutError`               504     upstream_error            upstream_timeout
:class:`UpstreamError`                      502     upstream_error            upstream_error
anything else                               500     server_error              internal_error
==========================================  ======  ========================  ==================

Upstream 4xx answers are not errors of the proxy: they are passed to the client as they came
(with the upstream key scrubbed), so a wrong model name reads as the upstream server put it —
except that message positions are given back in the client's numbering: when the proxy inserted
a context message at position ``p``, the upstream's ``messages.N`` (or ``messages[N]``, or
``"messages", N`` in a validation location) becomes ``N - 1`` for ``N > p``, and the inserted
message itself reads ``ragzip_context`` (:func:`client_message_indices`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragzip.core.errors import (
    BudgetError,
    CompressionError,
    ConfigError,
    InputError,
    MissingDependencyError,
    ModelError,
    RagzipError,
    RegistryError,
    RetrievalError,
    UpstreamError,
)

logger = logging.getLogger("ragzip.server")


RETRIEVAL_RETRY_AFTER_S = 5
"""``Retry-After`` of a ``503 retrieval_failed``: seconds a client waits before trying again."""


class AuthenticationError(RagzipError):
    """The client's bearer token is missing or wrong."""


class RequestTooLargeError(InputError):
    """The request body is larger than ``max_request_bytes``."""


class ServerBusyError(RagzipError):
    """The compression queue is full; the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestLimitError(RequestTooLargeError):
    """The request's context exceeds a per-request limit (passages or characters)."""


class CompressorNotAllowedError(ConfigError):
    """The request named a compressor outside the server's allow-list."""


class UpstreamTimeoutError(UpstreamError):
    """The upstream server did not connect or answer in time."""


@dataclass(frozen=True)
class ErrorSpec:
    """How one exception type is answered."""

    status: int
    type: str
    code: str


# Most specific first: the first matching entry wins.
ERROR_SPECS: tuple[tuple[type[BaseException], ErrorSpec], ...] = (
    (AuthenticationError, ErrorSpec(401, "authentication_error", "invalid_api_key")),
    (ServerBusyError, ErrorSpec(503, "server_error", "server_busy")),
    (RequestTooLargeError, ErrorSpec(413, "invalid_request_error", "request_too_large")),
    (CompressorNotAllowedError, ErrorSpec(400, "invalid_request_error", "compressor_not_allowed")),
    (BudgetError, ErrorSpec(400, "invalid_request_error", "invalid_budget")),
    (RegistryError, ErrorSpec(400, "invalid_request_error", "unknown_compressor")),
    (MissingDependencyError, ErrorSpec(400, "invalid_request_error", "compressor_unavailable")),
    (InputError, ErrorSpec(400, "invalid_request_error", "invalid_input")),
    (ConfigError, ErrorSpec(400, "invalid_request_error", "invalid_value")),
    (UpstreamTimeoutError, ErrorSpec(504, "upstream_error", "upstream_timeout")),
    (UpstreamError, ErrorSpec(502, "upstream_error", "upstream_error")),
    (RetrievalError, ErrorSpec(503, "server_error", "retrieval_failed")),
    (CompressionError, ErrorSpec(500, "server_error", "compression_failed")),
    (ModelError, ErrorSpec(500, "server_error", "model_error")),
)
INTERNAL = ErrorSpec(500, "server_error", "internal_error")


def spec_for(exc: BaseException) -> ErrorSpec:
    """The :class:`ErrorSpec` of an exception (``internal_error`` for unknown types)."""
    for cls, spec in ERROR_SPECS:
        if isinstance(exc, cls):
            return spec
    return INTERNAL


def error_body(
    message: str, *, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """An OpenAI-shaped error body."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(
    message: str,
    *,
    status: int,
    type: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON response holding an OpenAI-shaped error body."""
    return JSONResponse(
        error_body(message, type=type, code=code, param=param), status_code=status, headers=headers
    )


def _count(request: Request, code: str) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(code).inc()


async def _ragzip_error(request: Request, exc: Exception) -> JSONResponse:
    spec = spec_for(exc)
    _count(request, spec.code)
    headers = None
    if spec.status == 401:  # a browser opening the inspector asks for the token as a password
        page = request.url.path.endswith("/inspect")
        headers = {"WWW-Authenticate": 'Basic realm="ragzip"' if page else "Bearer"}
    if isinstance(exc, ServerBusyError):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, RetrievalError):  # a backend that failed may be back soon
        headers = {"Retry-After": str(RETRIEVAL_RETRY_AFTER_S)}
    if spec.status >= 500 and not isinstance(exc, ServerBusyError):
        logger.warning(
            "%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc
        )
    return error_response(
        str(exc) or type(exc).__name__,
        status=spec.status,
        type=spec.type,
        code=spec.code,
        param=getattr(exc, "param", None),
        headers=headers,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    _count(request, "invalid_value")
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    param = ".".join(loc) or None
    parts = []
    for err in errors[:5]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return error_response(
        "invalid request: " + "; ".join(parts) + more,
        status=400,
        type="invalid_request_error",
        code="invalid_value",
        param=param,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, RagzipError):  # e.g. the body grew too large while read
        return await _ragzip_error(request, exc.__cause__)
    codes = {404: "not_found", 405: "method_not_allowed", 401: "invalid_api_key"}
    code = codes.get(exc.status_code, f"http_{exc.status_code}")
    _count(request, code)
    return error_response(
        str(exc.detail),
        status=exc.status_code,
        type="invalid_request_error" if exc.status_code < 500 else "server_error",
        code=code,
        headers=getattr(exc, "headers", None),
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _count(request, INTERNAL.code)
    logger.exception("%s %s: unexpected error", request.method, request.url.path, exc_info=exc)
    return error_response(
        "internal server error", status=500, type=INTERNAL.type, code=INTERNAL.code
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer every exception in the OpenAI error shape."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RagzipError, _ragzip_error)
    app.add_exception_handler(Exception, _unexpected)


_MESSAGE_INDEX = re.compile(r"""(messages(?:\.|\[|"\s*,\s*|'\s*,\s*))(\d+)""")


def client_message_indices(body: bytes, inserted: int) -> bytes:
    """An upstream error ``body`` with message positions as the client numbered them, the
    proxy having inserted a message at position ``inserted`` (see the module docstring)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body

    def renumber(match: re.Match[str]) -> str:
        prefix, number = match.group(1), int(match.group(2))
        if number < inserted:
            return match.group(0)
        if number > inserted:
            return f"{prefix}{number - 1}"
        quoted = prefix.startswith('messages"') or prefix.startswith("messages'")
        return f'{prefix}"ragzip_context"' if quoted else f"{prefix}ragzip_context"

    return _MESSAGE_INDEX.sub(renumber, text).encode("utf-8")
