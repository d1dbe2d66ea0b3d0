"""The proxy's compression: its models (token counter, prompt embedder, compressors, each built
once), the compression lanes, request limits, and the fallback to forwarding uncompressed.

:class:`ProxyService` (:mod:`ragzip.server.service`) holds one :class:`CompressionService`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Sequence
from typing import Any

from ragzip.cache.feature_cache import FeatureCache
from ragzip.cache.redis_tier import RedisTier
from ragzip.compressor import Compressor
from ragzip.core.cancellation import CancelToken
from ragzip.core.errors import (
    CompressionError,
    ConfigError,
    InputError,
    RagzipError,
    RegistryError,
)
from ragzip.core.framing import PLAIN_CONTEXT, ContextLayout
from ragzip.core.machine import usable_cpus
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Budget, CompressionResult, Passage
from ragzip.generators.prompt_embeds import PromptEmbedder
from ragzip.policy import decision_of
from ragzip.profiling.load import LoadWatch
from ragzip.registry import (
    create_compressor,
    generator_config,
    get_class,
    parse_spec,
    resolve_config,
)
from ragzip.server.builders import build_counter, build_embedder, soft_generator
from ragzip.server.context import (
    ContextPlan,
    PlanLayout,
)
from ragzip.server.errors import CompressorNotAllowedError, RequestLimitError
from ragzip.server.lanes import Lanes
from ragzip.server.metrics import Metrics
from ragzip.server.schemas import (
    AutoDecisionOut,
    RagzipOptions,
    RagzipUsage,
)
from ragzip.server.settings import Settings

logger = logging.getLogger("ragzip.server")

# Errors caused by the request itself: answered as 400, never hidden by the fallback.
CLIENT_ERRORS = (InputError, ConfigError, RegistryError)


class CompressionService:
    """Compression shared by all requests of one app.

    Args:
        settings: Proxy settings.
        metrics: The app's metrics.
        counter: Token counter of the upstream model's tokenizer; built from ``settings`` when
            not given.
        embedder: Renders prompts as the upstream model's input embeddings for soft context;
            built from ``settings`` on first use when not given.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        counter: TokenCounter | None = None,
        embedder: PromptEmbedder | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.budget: Budget = settings.budget
        self._counter = counter
        self._embedder = embedder
        self._embedder_lock = asyncio.Lock()
        self._compressors: dict[str, Compressor] = {}
        self._counter_lock = asyncio.Lock()
        self._compressor_lock = asyncio.Lock()
        self.lanes = Lanes(settings)
        self.remote: RedisTier | None = None
        if settings.feature_cache_redis_url is not None:
            self.remote = RedisTier(
                settings.feature_cache_redis_url.get_secret_value(),
                namespace=settings.feature_cache_redis_namespace,
                ttl_s=settings.feature_cache_redis_ttl,
                on_failure=metrics.feature_cache_remote_failures.inc,
            )
        self.features = FeatureCache(settings.feature_cache_mb * 2**20, remote=self.remote)
        self.load = LoadWatch(cpus=usable_cpus())

    @property
    def loaded(self) -> bool:
        """Whether the token counter and the default compressor are loaded."""
        return self._counter is not None and self.settings.default_compressor in self._compressors

    def shutdown(self) -> None:
        """Stop the compression threads."""
        self.lanes.shutdown()

    # --- models --------------------------------------------------------------------------

    async def in_thread(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Short work (model loading, prompt rendering) on the small lane's threads."""
        return await self.lanes.submit_plain(functools.partial(fn, *args, **kwargs))

    async def counter(self) -> TokenCounter:
        """The token counter (loaded on first use)."""
        if self._counter is None:
            async with self._counter_lock:
                if self._counter is None:
                    self._counter = await self.in_thread(build_counter, self.settings)
        assert self._counter is not None
        return self._counter

    async def embedder(self) -> PromptEmbedder:
        """The prompt-embedding renderer for soft context (loaded on first use)."""
        if self._embedder is None:
            async with self._embedder_lock:
                if self._embedder is None:
                    self._embedder = await self.in_thread(build_embedder, self.settings)
        assert self._embedder is not None
        return self._embedder

    async def compressor(self, name: str) -> Compressor:
        """The compressor of a spec, ``NAME`` or ``NAME:KEY=VALUE;...`` as on the command line
        (built on first use, one per spec).

        Raises:
            CompressorNotAllowedError: The name is not in ``settings.compressors``.
            RegistryError: Unknown name.
            ConfigError: A malformed spec or bad settings (empty name included).
            MissingDependencyError: Its extra is not installed.
        """
        spec = parse_spec(name)  # an unknown name reads as such, allowed or not
        resolve_config(spec)  # a bad setting is the client's error, found before building
        allowed = self.settings.compressors
        if allowed is not None and name not in allowed and spec.name not in allowed:
            enabled = ", ".join(allowed)
            msg = f"compressor {name!r} is not enabled on this server; enabled: {enabled}"
            raise CompressorNotAllowedError(msg)
        found = self._compressors.get(name)
        if found is not None:
            return found
        counter = await self.counter()
        async with self._compressor_lock:
            if name not in self._compressors:
                self._compressors[name] = await self.in_thread(self._build, name, counter)
        return self._compressors[name]

    # --- compression ---------------------------------------------------------------------------

    def _build(self, name: str, counter: TokenCounter) -> Compressor:
        """The compressor of spec ``name``, sharing the proxy's feature cache if it takes one."""
        spec = parse_spec(name)
        cls = get_class(spec.name)
        takes = inspect.signature(cls.__init__).parameters
        extra: dict[str, Any] = {"features": self.features} if "features" in takes else {}
        if "load" in takes:  # auto follows the upstream's load
            extra["load"] = self.load.snapshot
        config = generator_config(spec, soft_generator(self.settings))  # for the upstream model
        return create_compressor(name, counter=counter, config=config or None, **extra)

    async def compress(
        self,
        query: str,
        passages: Sequence[Passage],
        *,
        budget: Budget,
        compressor: str,
        layout: ContextLayout = PLAIN_CONTEXT,
    ) -> CompressionResult:
        """Compress ``passages`` for ``query`` in the compression thread pool.

        Raises:
            InputError, BudgetError, RegistryError, CompressorNotAllowedError: Bad request.
            CompressionError: The compressor failed (or crashed) on valid input.
        """
        self._check_limits(passages)
        comp = await self.compressor(compressor)
        start = time.perf_counter()
        lane = self.lanes.lane_for(passages)
        token = CancelToken()

        def work() -> CompressionResult:
            texts = [p.text for p in passages]
            limit = self.settings.max_context_tokens
            # no tokenizer makes more tokens than UTF-8 bytes: below the limit, nothing to count
            small = sum(len(t.encode()) for t in texts) <= limit
            tokens = 0 if small else sum(comp.counter.count_batch(texts))
            if tokens > limit:
                msg = f"{tokens} tokens of context exceed the limit of {limit} (max_context_tokens)"
                raise RequestLimitError(msg)
            return comp.compress(query, list(passages), budget=budget, layout=layout)

        try:
            with self.load.compressing():
                result: CompressionResult = await asyncio.wait_for(
                    self.lanes.run(lane, work, token), timeout=self.settings.compression_timeout
                )
        except RagzipError:
            raise
        except TimeoutError as exc:
            msg = (
                f"compressor {compressor!r} took longer than "
                f"{self.settings.compression_timeout:g} s (stopped)"
            )
            raise CompressionError(msg) from exc
        except Exception as exc:
            msg = f"compressor {compressor!r} failed: {type(exc).__name__}: {exc}"
            raise CompressionError(msg) from exc
        finally:
            self.metrics.stage.labels("compress").observe(time.perf_counter() - start)
        for kind in ("hits", "misses"):
            if f"cache_{kind}" in result.timings:
                self.metrics.feature_cache.labels(kind).inc(result.timings[f"cache_{kind}"])
        self.metrics.tokens.labels("original").inc(result.original_tokens)
        self.metrics.tokens.labels("compressed").inc(result.compressed_tokens)
        return result

    def _check_limits(self, passages: Sequence[Passage]) -> None:
        """Refuse, naming the limit, a context larger than one request may send (413)."""
        s = self.settings
        if len(passages) > s.max_passages:
            msg = f"{len(passages)} passages exceed the limit of {s.max_passages} (max_passages)"
            raise RequestLimitError(msg)
        chars = sum(len(p.text) for p in passages)
        if chars > s.max_context_chars:
            msg = (
                f"{chars} characters of context exceed the limit of {s.max_context_chars} "
                "(max_context_chars)"
            )
            raise RequestLimitError(msg)

    async def run_plan(
        self,
        plan: ContextPlan,
        options: RagzipOptions | None,
        *,
        soft_route: bool = False,
        prefix_block: bool = True,
    ) -> tuple[list[str], RagzipUsage, CompressionResult | None]:
        """Compress the plan's passages; the budget counts the context exactly as it is sent.

        Args:
            plan: The request's context.
            options: The ``ragzip`` field.
            soft_route: The route can send soft context upstream (chat completions).
            prefix_block: The ``ragzip`` field's block goes in front of other text.

        Returns:
            The text to forward for each passage, the usage report, and the result when it is
            soft (vectors to send as prompt embeddings), else ``None``.

        Raises:
            ConfigError: A soft result that cannot be sent (see ``upstream_prompt_embeds``).
        """
        name = self.settings.default_compressor
        if options is not None and options.compressor is not None:
            name = options.compressor  # "" is an error, never silently the default
        budget = options.budget_or(self.budget) if options else self.budget
        query = question_of(plan, options)
        passages = plan.passages
        if not passages:
            return (
                [],
                RagzipUsage(
                    compressor=name,
                    original_tokens=0,
                    compressed_tokens=0,
                    saved_tokens=0,
                    budget_tokens=0,
                    passages=0,
                    kept_passages=0,
                    compress_ms=0.0,
                ),
                None,
            )
        require_question(query)
        start = time.perf_counter()
        try:
            layout = PlanLayout(plan, self.settings.context_header, prefix_block)
            result = await self.compress(
                query, passages, budget=budget, compressor=name, layout=layout
            )
            if result.embeddings is not None:
                self._check_soft(name, soft_route)
        except CLIENT_ERRORS:
            raise
        except RagzipError as exc:  # the server's failure (model, dependency, crash)
            kept, usage = await self._fallback(name, budget, passages, exc, start)
            return kept, usage, None
        kept = [p.text for p in result.passages]
        usage = RagzipUsage.of(
            result, name, passages=len(passages), start=start, decision=_decision_out(result)
        )
        return kept, usage, (result if result.embeddings is not None else None)

    def _check_soft(self, name: str, soft_route: bool) -> None:
        """Refuse a soft result that this route or upstream cannot take (400)."""
        if not self.settings.upstream_prompt_embeds:
            msg = (
                f"compressor {name!r} returns embeddings (soft context), which cannot be sent "
                "as text; enable upstream_prompt_embeds (RAGZIP_UPSTREAM_PROMPT_EMBEDS=true) "
                "when the upstream is vLLM started with --enable-prompt-embeds, or use a text "
                "compressor"
            )
            raise ConfigError(msg)
        if not soft_route:
            msg = (
                f"compressor {name!r} returns embeddings (soft context), which this proxy "
                "sends only for /v1/chat/completions"
            )
            raise ConfigError(msg)

    async def _fallback(
        self,
        name: str,
        budget: Budget,
        passages: Sequence[Passage],
        exc: RagzipError,
        start: float,
    ) -> tuple[list[str], RagzipUsage]:
        if not self.settings.fallback_to_passthrough:
            raise exc
        self.metrics.fallbacks.inc()
        logger.warning("compression with %r failed, forwarding uncompressed: %s", name, exc)
        counter = await self.counter()
        # Not in the compression pool, which may be what is stuck.
        counts = await asyncio.to_thread(counter.count_batch, [p.text for p in passages])
        total = int(sum(counts))
        self.metrics.tokens.labels("original").inc(total)
        self.metrics.tokens.labels("compressed").inc(total)
        return [p.text for p in passages], RagzipUsage(
            compressor=name,
            original_tokens=total,
            compressed_tokens=total,
            saved_tokens=0,
            budget_tokens=budget.resolve(total),
            passages=len(passages),
            kept_passages=len(passages),
            compress_ms=round((time.perf_counter() - start) * 1000, 3),
            fallback=True,
        )


def question_of(plan: ContextPlan, options: RagzipOptions | None) -> str:
    """The question a request's context is compressed and retrieved for: ``ragzip.query``, else
    the one found in the request."""
    return options.query if options and options.query is not None else plan.default_query


def require_question(query: str) -> None:
    """Refuse a request with no question to compress (or retrieve) its context for.

    Raises:
        InputError: ``query`` is blank.
    """
    if not query.strip():
        msg = (
            "no question to compress the context for: ask it in the last user message "
            "outside <ragzip:context>, or give ragzip.query"
        )
        raise InputError(msg)


def _decision_out(result: CompressionResult) -> AutoDecisionOut | None:
    """The ``auto`` compressor's decision for the usage report (``None`` for the others)."""
    decision = decision_of(result)
    if decision is None:
        return None
    fields = decision.to_dict()
    return AutoDecisionOut(**{name: fields[name] for name in AutoDecisionOut.model_fields})
