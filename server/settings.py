"""Proxy settings: environment variables (``RAGZIP_*``), an optional settings file, or arguments.

Precedence, highest first: keyword arguments, ``RAGZIP_*`` environment variables, the settings
file (TOML or JSON, keys are the field names below, or a ``.env`` file with ``RAGZIP_*`` keys),
then the defaults. Secrets are :class:`pydantic.SecretStr` and never appear in ``repr`` or logs.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from ragzip.core.errors import BudgetError, ConfigError
from ragzip.core.types import Budget

SETTINGS_FILE_ENV = "RAGZIP_SETTINGS_FILE"


class Settings(BaseSettings):
    """Configuration of the OpenAI-compatible compression proxy.

    Attributes:
        upstream_base_url: Base URL of the OpenAI-compatible server, including its ``/v1``
            (e.g. ``http://127.0.0.1:8000/v1`` for vLLM).
        upstream_api_key: Bearer key sent upstream. When unset and ``auth_token`` is unset too,
            the client's own ``Authorization`` header is forwarded instead.
        auth_token: When set, clients must send ``Authorization: Bearer <auth_token>`` to
            ``/v1/*``, ``/metrics``, ``/readyz`` and the OpenAPI pages (``/docs``,
            ``/openapi.json``); only the liveness check ``/healthz`` stays open.
        allow_anonymous: Serve without ``auth_token`` although ``upstream_api_key`` is set, so
            that anyone who reaches the port is served on the operator's key. Off, such a
            proxy refuses to start.
        inspect: Serve the inspector page ``GET /inspect`` (behind ``auth_token`` like every
            route; a browser may log in with HTTP Basic, any user name, the token as password).
        host: Interface :func:`ragzip.server.main.serve` binds to.
        port: Port :func:`ragzip.server.main.serve` listens on.
        default_compressor: Registry name used when a request names none.
        default_budget: Budget used when a request gives none: ``"256"`` tokens or ``"4x"``.
        compressors: Names clients may ask for; ``None`` allows every registered compressor.
        tokenizer: Folder of a Hugging Face tokenizer of the upstream model, in which budgets
            are counted; ``None`` uses the embedded SmolLM2 tokenizer.
        compression_workers: Threads per compression lane (there are two: small and large
            requests, so a heavy request never queues in front of small ones).
        feature_cache_mb: MiB of passage vectors all compressors of this proxy share, kept by
            content (:class:`~ragzip.cache.feature_cache.FeatureCache`); 0 turns it off.
        feature_cache_redis_url: A Redis all replicas share the vectors through
            (:class:`~ragzip.cache.redis_tier.RedisTier`; a secret, since it may hold a password);
            ``None``: this process's memory only.
        feature_cache_redis_namespace: Key prefix in that Redis (one per deployment).
        feature_cache_redis_ttl: Seconds a vector lives in Redis after it was last written.
        retrieval_backend: Where the proxy retrieves passages for requests that ask it to
            (``"ragzip": {"retrieve": true}``): ``"folder"`` (an index written by ``ragzip
            index``) or ``"postgres"``; inferred from ``retrieval_index`` / ``retrieval_dsn``
            when unset. ``None`` with neither: the proxy does not retrieve.
        retrieval_index: Folder of the ``folder`` backend's index.
        retrieval_dsn: Postgres URL of the ``postgres`` backend, or ``"embedded"`` (a secret:
            it may hold a password).
        retrieval_table: The Postgres index's name.
        retrieval_k: Passages retrieved when a request gives no ``k``.
        max_retrieval_k: The most passages one request may ask to retrieve.
        retrieval_timeout: Seconds one retrieval may take (then 503, ``retrieval_failed``).
        retrieval_workers: Retrievals that run at once (threads; also the most Postgres
            connections kept open).
        retrieval_startup_wait: Seconds start-up waits for the retrieval database to answer
            (then it fails with one line); later outages are survived without a restart.
        index_watch_interval: Seconds between looks for a newly published version of the
            folder index (``ragzip index`` into the same path), served from the next request
            on; 0: only on ``SIGHUP`` or ``POST /admin/reload``.
        retrieve_by_default: Retrieve for every request that marks no context of its own
            (plain OpenAI clients then get retrieval-augmented answers unchanged).
        compression_timeout: Seconds one compression may take (queueing included) before it
            counts as failed (then 500, or the fallback); the work itself is then stopped.
        max_queued_compressions: Compressions one lane holds (running or waiting); a request
            beyond it is answered 503 with ``Retry-After`` at once.
        max_queue_seconds: Estimated seconds of queued work one lane accepts (from the
            running average duration of its jobs); beyond it, 503 with ``Retry-After``.
        small_request_chars: Context characters up to which a request takes the small lane.
        max_passages: Passages one request may mark as context (413 beyond).
        max_context_chars: Characters of context one request may send (413 beyond).
        max_context_tokens: Tokens of context one request may send (413 beyond; counted in the
            compression lane, before any model runs).
        context_placement: Where context from the ``ragzip`` request field goes in a chat:
            ``"system"`` inserts a system message before the last user message, ``"user"``
            prefixes the last user message (for chat templates that allow one system message).
        context_header: Line put above the inserted context block.
        max_request_bytes: Larger request bodies are refused with 413.
        connect_timeout: Seconds to open a connection upstream.
        read_timeout: Seconds to wait for upstream bytes (per chunk when streaming) of a
            completion: long prompts on a busy server take a while to start.
        response_timeout: Seconds a completion may take in all until its answer (not
            streamed) or its first chunk (streamed), retries included; later chunks each wait
            up to ``read_timeout``.
        models_timeout: Seconds the whole ``GET /v1/models`` may take (a listing: short).
        readiness_timeout: Seconds ``/readyz`` waits for the upstream's ``GET /models``.
        write_timeout: Seconds to send the request upstream.
        pool_timeout: Seconds to wait for a free upstream connection.
        max_retries: Extra attempts after a connection failure or a retryable status
            (``retry_statuses``), only while nothing was sent to the client yet.
        retry_backoff: Seconds before the first retry, doubled for each further one.
        retry_statuses: Upstream statuses that are retried (then reported as 502).
        retry_timeouts: Also retry upstream read timeouts (off: a slow upstream is not hit twice).
        max_upstream_connections: Size of the upstream connection pool.
        fallback_to_passthrough: When compression fails on the server's side, forward the
            context uncompressed instead of answering 500.
        upstream_prompt_embeds: The upstream accepts vLLM-style ``prompt_embeds`` on
            ``/v1/completions`` (``vllm serve --enable-prompt-embeds``). Needed by soft
            compressors (vectors instead of text): their chat requests are then sent as prompt
            embeddings and the answers converted back to chat completions. Off, a soft
            compressor's requests are refused with 400.
        embedding_model: Folder of the upstream model (Hugging Face format) whose input
            embeddings render prompts for ``upstream_prompt_embeds``; ``None`` uses the
            ``tokenizer`` folder when set, else the embedded SmolLM2.
        access_log: Let uvicorn log each request line.
        log_level: uvicorn's log level.
    """

    model_config = SettingsConfigDict(
        env_prefix="RAGZIP_",
        extra="forbid",
        validate_default=True,
        case_sensitive=False,
    )

    upstream_base_url: str = "http://127.0.0.1:8000/v1"
    upstream_api_key: SecretStr | None = None
    auth_token: SecretStr | None = None
    allow_anonymous: bool = False
    inspect: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)

    default_compressor: str = "mig"
    default_budget: str = "4x"
    compressors: list[str] | None = None
    tokenizer: str | None = None
    compression_workers: int = Field(default=1, ge=1, le=64)
    compression_timeout: float = Field(default=60.0, gt=0)
    retrieval_backend: Literal["folder", "postgres"] | None = None
    retrieval_index: str | None = None
    retrieval_dsn: SecretStr | None = None
    retrieval_table: str = "ragzip"
    retrieval_k: int = Field(default=5, ge=1)
    max_retrieval_k: int = Field(default=50, ge=1)
    retrieval_timeout: float = Field(default=10.0, gt=0)
    retrieval_workers: int = Field(default=2, ge=1, le=64)
    retrieval_startup_wait: float = Field(default=30.0, ge=0)
    index_watch_interval: float = Field(default=0.5, ge=0)
    retrieve_by_default: bool = False
    feature_cache_mb: int = Field(default=256, ge=0)
    feature_cache_redis_url: SecretStr | None = None
    feature_cache_redis_namespace: str = Field(default="ragzip", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    feature_cache_redis_ttl: int = Field(default=7 * 24 * 3600, ge=1)
    max_queued_compressions: int = Field(default=256, ge=1)
    max_queue_seconds: float = Field(default=10.0, gt=0)
    small_request_chars: int = Field(default=20_000, ge=1)
    max_passages: int = Field(default=2_000, ge=1)
    max_context_chars: int = Field(default=2_000_000, ge=1)
    max_context_tokens: int = Field(default=400_000, ge=1)
    context_placement: Literal["system", "user"] = "system"
    context_header: str = "Context:"

    max_request_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=300.0, gt=0)
    models_timeout: float = Field(default=10.0, gt=0)
    response_timeout: float = Field(default=600.0, gt=0)
    readiness_timeout: float = Field(default=5.0, gt=0)
    write_timeout: float = Field(default=30.0, gt=0)
    pool_timeout: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    retry_backoff: float = Field(default=0.2, ge=0)
    retry_statuses: frozenset[int] = frozenset({500, 502, 503, 504})
    retry_timeouts: bool = False
    max_upstream_connections: int = Field(default=256, ge=1)
    fallback_to_passthrough: bool = False
    upstream_prompt_embeds: bool = False
    embedding_model: str | None = None

    access_log: bool = True
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"

    @field_validator("upstream_base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            msg = f"upstream_base_url must start with http:// or https://, got {value!r}"
            raise ValueError(msg)
        return value.rstrip("/")

    @field_validator("default_budget")
    @classmethod
    def _check_budget(cls, value: str) -> str:
        try:
            Budget.parse(value)
        except BudgetError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("retry_statuses")
    @classmethod
    def _check_statuses(cls, value: frozenset[int]) -> frozenset[int]:
        bad = sorted(s for s in value if not 500 <= s <= 599)
        if bad:
            msg = f"only 5xx statuses can be retried, got {bad}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check_retrieval(self) -> Settings:
        if self.retrieval_backend is None:
            if self.retrieval_index and self.retrieval_dsn is not None:
                msg = "set retrieval_backend: both retrieval_index and retrieval_dsn are given"
                raise ValueError(msg)
            if self.retrieval_index:
                self.retrieval_backend = "folder"
            elif self.retrieval_dsn is not None:
                self.retrieval_backend = "postgres"
        if self.retrieval_backend == "folder" and not self.retrieval_index:
            msg = "retrieval_backend 'folder' needs retrieval_index (an index folder)"
            raise ValueError(msg)
        if self.retrieval_backend == "postgres" and self.retrieval_dsn is None:
            msg = "retrieval_backend 'postgres' needs retrieval_dsn (a Postgres URL or 'embedded')"
            raise ValueError(msg)
        if self.retrieve_by_default and self.retrieval_backend is None:
            msg = "retrieve_by_default needs a retrieval backend (retrieval_index or retrieval_dsn)"
            raise ValueError(msg)
        if self.retrieval_k > self.max_retrieval_k:
            msg = f"retrieval_k {self.retrieval_k} exceeds max_retrieval_k {self.max_retrieval_k}"
            raise ValueError(msg)
        return self

    @property
    def upstream_display(self) -> str:
        """``upstream_base_url`` with any credentials in it masked (for logs and reports)."""
        from ragzip.server.redact import redact_url

        return redact_url(self.upstream_base_url)

    def secret_values(self) -> list[str]:
        """Every secret of the settings, as plain strings (to mask them wherever they echo)."""
        import httpx

        values = [
            s.get_secret_value()
            for s in (
                self.upstream_api_key,
                self.auth_token,
                self.feature_cache_redis_url,
                self.retrieval_dsn,
            )
            if s is not None
        ]
        url = httpx.URL(self.upstream_base_url)
        values += [v for v in (url.password, url.userinfo.decode()) if v]
        for secret in (self.feature_cache_redis_url, self.retrieval_dsn):
            if secret is not None:
                parts = urlsplit(secret.get_secret_value())
                values += [v for v in (parts.password, parts.netloc) if v and "@" in parts.netloc]
        return values

    def check_safe(self) -> None:
        """Refuse a configuration that would serve the operator's upstream key to anyone.

        Raises:
            ConfigError: ``upstream_api_key`` set, no ``auth_token`` and no
                ``allow_anonymous``.
        """
        if (
            self.upstream_api_key is not None
            and self.auth_token is None
            and not (self.allow_anonymous)
        ):
            msg = (
                "refusing to start: upstream_api_key is set but auth_token is not, so anyone who "
                "reaches the proxy would be served on your key. Set an auth token "
                "(--auth-token / RAGZIP_AUTH_TOKEN) that clients send as 'Authorization: Bearer "
                "...', or pass --allow-anonymous (RAGZIP_ALLOW_ANONYMOUS=true) to accept that"
            )
            raise ConfigError(msg)

    @property
    def budget(self) -> Budget:
        """``default_budget`` parsed."""
        return Budget.parse(self.default_budget)

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> Settings:
        """Settings from a file, the environment and ``overrides``.

        Args:
            path: A ``.toml``/``.json`` file of field names, or a ``.env`` file of ``RAGZIP_*``
                keys. ``None`` reads the file named by ``RAGZIP_SETTINGS_FILE`` if that is set.
            **overrides: Field values that win over both.

        Raises:
            ConfigError: Unreadable file, unknown keys or invalid values.
        """
        if path is None:
            path = os.environ.get(SETTINGS_FILE_ENV) or None
        try:
            if path is None:
                return cls(**overrides)
            file = Path(path)
            if not file.is_file():
                msg = f"settings file {file} does not exist"
                raise ConfigError(msg)
            if file.suffix == ".env" or file.name == ".env":
                return cls(_env_file=file, **overrides)  # type: ignore[call-arg]
            values = _read_file(file)
            from_env = EnvSettingsSource(cls)()  # the environment outranks the file
            values = {k: v for k, v in values.items() if k not in from_env}
            return cls(**{**values, **overrides})
        except ValidationError as exc:
            msg = f"invalid settings: {_describe(exc)}"
            raise ConfigError(msg) from exc

    def public_dict(self) -> dict[str, Any]:
        """The settings as JSON-safe values, secrets shown only as set or unset."""
        out = self.model_dump(mode="json")
        for key in ("upstream_api_key", "auth_token", "feature_cache_redis_url", "retrieval_dsn"):
            out[key] = "set" if getattr(self, key) is not None else None
        return out


def _read_file(file: Path) -> dict[str, Any]:
    try:
        if file.suffix == ".toml":
            data: Any = tomllib.loads(file.read_text(encoding="utf-8"))
        elif file.suffix == ".json":
            data = json.loads(file.read_text(encoding="utf-8"))
        else:
            msg = f"settings file {file} must end in .toml, .json or .env"
            raise ConfigError(msg)
    except (OSError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        msg = f"cannot read settings file {file}: {exc}"
        raise ConfigError(msg) from exc
    if isinstance(data, dict) and isinstance(data.get("server"), dict) and len(data) == 1:
        data = data["server"]  # a [server] table is accepted too
    if not isinstance(data, dict):
        msg = f"settings file {file} must hold a table/object of settings"
        raise ConfigError(msg)
    return data


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "settings"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
