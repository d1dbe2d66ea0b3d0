"""HTTP routes. Thin: each one validates its input and calls the service on ``app.state``."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response

from ragzip import __version__
from ragzip.server.errors import AuthenticationError
from ragzip.server.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    CompressRequest,
    CompressResponse,
    ErrorResponse,
    Health,
)
from ragzip.server.service import ProxyService

_bearer = HTTPBearer(auto_error=False, description="The proxy's auth_token, when it has one.")


def service_of(request: Request) -> ProxyService:
    """The :class:`~ragzip.server.service.ProxyService` of the app serving ``request``."""
    service: ProxyService = request.app.state.service
    return service


async def require_auth(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Security(_bearer),  # noqa: B008
) -> None:
    """Check ``Authorization: Bearer <auth_token>`` when the proxy has an ``auth_token``."""
    token = service_of(request).settings.auth_token
    if token is None:
        return
    given = credentials.credentials.encode() if credentials is not None else b""
    if not hmac.compare_digest(given, token.get_secret_value().encode()):
        msg = "missing or wrong bearer token for this proxy"
        raise AuthenticationError(msg)


ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Invalid request",
        401: "Missing or wrong bearer token",
        413: "Request body too large",
        502: "The upstream server failed",
        504: "The upstream server timed out",
    }.items()
}

api = APIRouter(prefix="/v1", dependencies=[Depends(require_auth)], responses=ERRORS)
ops = APIRouter()


@api.post("/chat/completions", response_model=None, summary="Chat completion, context compressed")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """OpenAI chat completion; marked context is compressed first (see ragzip.server.context)."""
    return await service_of(request).chat_completions(body, request)


@api.post("/completions", response_model=None, summary="Text completion, context compressed")
async def completions(body: CompletionRequest, request: Request) -> Response:
    """OpenAI text completion; marked context is compressed first (see ragzip.server.context)."""
    return await service_of(request).completions(body, request)


@api.post("/compress", summary="Compress passages for a query")
async def compress(body: CompressRequest, request: Request) -> CompressResponse:
    """Compression only: no upstream call."""
    service = service_of(request)
    result = await service.compress(
        body.query,
        body.passage_list(),
        budget=body.budget_or(service.budget),
        compressor=body.compressor or service.settings.default_compressor,
    )
    return CompressResponse.from_result(result)


@api.get("/models", response_model=None, summary="The upstream's model list")
async def models(request: Request) -> Response:
    """``GET /v1/models`` of the upstream server, passed through."""
    return await service_of(request).models(request)


@ops.get("/healthz", summary="Liveness")
async def healthz(request: Request) -> Health:
    """Whether the proxy runs (the upstream is not contacted)."""
    settings = service_of(request).settings
    return Health(
        status="ok",
        version=__version__,
        upstream=settings.upstream_base_url,
        default_compressor=settings.default_compressor,
    )


@ops.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus exposition text of this app's metrics."""
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)
