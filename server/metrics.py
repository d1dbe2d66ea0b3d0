"""Prometheus metrics of one proxy app, in a registry of its own (two apps never share counters).

Exposed at ``GET /metrics``:

- ``ragzip_requests_total{route,method,status}`` and ``ragzip_request_duration_seconds{route}``
  (until the last response byte, streams included);
- ``ragzip_requests_in_flight``;
- ``ragzip_stage_duration_seconds{stage}``: ``compress`` (context compression) and ``upstream``
  (until upstream response headers, retries included);
- ``ragzip_context_tokens_total{kind}``: context tokens ``original`` and ``compressed``;
- ``ragzip_errors_total{code}``: answered errors by OpenAI error code (``upstream_timeout``, ...);
- ``ragzip_upstream_retries_total``, ``ragzip_compression_fallbacks_total``,
  ``ragzip_client_disconnects_total``.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
KNOWN_ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/compress",
        "/v1/models",
        "/healthz",
        "/admin/reload",
        "/readyz",
        "/metrics",
        "/docs",
        "/openapi.json",
        "/inspect",
    }
)


class Metrics:
    """The proxy's metrics, registered in ``self.registry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ragzip_requests", "HTTP requests answered", ["route", "method", "status"], registry=r
        )
        self.duration = Histogram(
            "ragzip_request_duration_seconds",
            "Time until the last response byte",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("ragzip_requests_in_flight", "Requests being served", registry=r)
        self.stage = Histogram(
            "ragzip_stage_duration_seconds",
            "Seconds per proxy stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "ragzip_context_tokens", "Context tokens before/after compression", ["kind"], registry=r
        )
        self.errors = Counter("ragzip_errors", "Errors answered, by code", ["code"], registry=r)
        self.retries = Counter("ragzip_upstream_retries", "Upstream attempts retried", registry=r)
        self.fallbacks = Counter(
            "ragzip_compression_fallbacks",
            "Requests forwarded uncompressed after a compression failure",
            registry=r,
        )
        self.feature_cache = Counter(
            "ragzip_feature_cache_lookups",
            "Passage and query vectors looked up in the feature cache, by result",
            ["result"],
            registry=r,
        )
        self.feature_cache_remote_failures = Counter(
            "ragzip_feature_cache_remote_failures",
            "Calls to the shared (Redis) feature cache that failed; requests computed locally",
            registry=r,
        )
        self.disconnects = Counter(
            "ragzip_client_disconnects", "Clients gone before the response ended", registry=r
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware counting requests and timing them until the last body byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in KNOWN_ROUTES else "other"
        method = scope.get("method", "")
        start = time.perf_counter()
        status: dict[str, Any] = {"code": 500, "done": False}
        m = self.metrics

        def finish() -> None:
            if status["done"]:
                return
            status["done"] = True
            m.in_flight.dec()
            m.requests.labels(route, method, str(status["code"])).inc()
            m.duration.labels(route).observe(time.perf_counter() - start)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finish()

        m.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            finish()
