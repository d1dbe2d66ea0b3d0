"""HTTP routes. Thin: each one validates its input and calls the service on ``app.state``."""

from __future__ import annotations

import base64
import binascii
import hmac

from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import JSONResponse, Response

from ragzip import __version__
from ragzip.server.errors import AuthenticationError
from ragzip.server.schemas import (
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
    given = (
        credentials.credentials.encode() if credentials is not None else _basic_password(request)
    )
    if not hmac.compare_digest(given, token.get_secret_value().encode()):
        msg = "missing or wrong bearer token for this proxy"
        raise AuthenticationError(msg)


def _basic_password(request: Request) -> bytes:
    """The password of ``Authorization: Basic ...`` (how a browser logs in to ``/inspect``; any
    user name), or nothing."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return b""
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""
    return decoded.partition(b":")[2]


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
protected_ops = APIRouter(dependencies=[Depends(require_auth)])


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
    result = await service.compression.compress(
        body.query,
        body.passage_list(),
        budget=body.budget_or(service.compression.budget),
        compressor=(
            body.compressor if body.compressor is not None else service.settings.default_compressor
        ),
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
        upstream=settings.upstream_display,
        default_compressor=settings.default_compressor,
    )


@protected_ops.get("/readyz", summary="Readiness", response_model=None)
async def readyz(request: Request) -> Response:
    """Whether the proxy can serve: the tokenizer and the default compressor are loaded and the
    upstream answers ``GET /models`` (503 with the reason otherwise)."""
    ready, reason = await service_of(request).readiness()
    body = {"status": "ready" if ready else "not ready", "reason": reason}
    return JSONResponse(body, status_code=200 if ready else 503)


@protected_ops.post("/admin/reload", summary="Serve the newest index version", response_model=None)
async def reload_index(request: Request) -> Response:
    """Load the version of the folder index its path names now and serve it from the next
    request on (as ``SIGHUP`` does). 409 when the proxy has no folder index to reload."""
    done = await service_of(request).retrieval.reload()
    if done is None:
        body = {"reloaded": False, "reason": "this proxy has no folder index to reload"}
        return JSONResponse(body, status_code=409)
    status = 200 if done.error is None else 503
    return JSONResponse(
        {
            "reloaded": done.reloaded,
            "version": done.version,
            "chunks": done.chunks,
            "error": done.error,
        },
        status_code=status,
    )


@protected_ops.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus exposition text of this app's metrics."""
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)


def docs_router(app: FastAPI) -> APIRouter:
    """``/openapi.json`` and ``/docs`` behind the same auth as the API."""
    router = APIRouter(dependencies=[Depends(require_auth)], include_in_schema=False)

    @router.get("/openapi.json")
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs")
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="ragzip proxy")

    return router
