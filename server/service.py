"""The proxy's work: find the context, compress it, forward the request, report what was saved.

One :class:`ProxyService` lives on ``app.state.service``; routes only call it. Compressors run in
a small thread pool (``compression_workers``) so the event loop keeps serving other requests;
they are built once per name, on first use (the default one at startup).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
from fastapi import Request
from starlette.responses import Response

from ragzip.cancellation import CancelToken
from ragzip.compressor import Compressor
from ragzip.errors import (
    CompressionError,
    ConfigError,
    InputError,
    MissingDependencyError,
    RagzipError,
    RegistryError,
)
from ragzip.generators.prompt_embeds import PromptEmbedder, encode_prompt_embeds
from ragzip.policy import decision_of
from ragzip.prompts import SOFT_PLACEHOLDER
from ragzip.registry import create_compressor, parse_spec, resolve_config
from ragzip.server.context import (
    ContextPlan,
    PlanLayout,
    plan_chat,
    plan_completion,
    render_chat,
    render_completion,
)
from ragzip.server.errors import CompressorNotAllowedError, RequestLimitError, UpstreamTimeoutError
from ragzip.server.lanes import Lanes
from ragzip.server.metrics import Metrics
from ragzip.server.protocol import (
    AutoDecisionOut,
    ChatCompletionRequest,
    CompletionRequest,
    RagzipOptions,
    RagzipUsage,
)
from ragzip.server.settings import Settings
from ragzip.server.soft import chat_from_completion, chat_stream, completion_body, render_soft_chat
from ragzip.server.streaming import UpstreamStreamResponse, wait_for_disconnect
from ragzip.server.upstream import UpstreamClient, UpstreamReply
from ragzip.tokenization import HFTokenCounter, TokenCounter
from ragzip.types import PLAIN_CONTEXT, Budget, CompressionResult, ContextLayout, Passage

logger = logging.getLogger("ragzip.server")
T = TypeVar("T")

# Errors caused by the request itself: answered as 400, never hidden by the fallback.
CLIENT_ERRORS = (InputError, ConfigError, RegistryError)
CLIENT_CLOSED = 499  # nginx's status for "client closed request"; nobody reads it


def build_counter(settings: Settings) -> TokenCounter:
    """The token counter budgets are counted in: ``settings.tokenizer`` or SmolLM2's tokenizer.

    Raises:
        ConfigError: The tokenizer folder cannot be loaded, or none is configured and the
            embedded SmolLM2 tokenizer is not available.
    """
    if settings.tokenizer:
        try:
            from transformers import AutoTokenizer
        except ModuleNotFoundError as exc:
            msg = "a tokenizer folder needs transformers: pip install 'ragzip[models]'"
            raise MissingDependencyError(msg, name=exc.name) from exc
        from ragzip.models import offline

        try:
            with offline():
                tokenizer = AutoTokenizer.from_pretrained(settings.tokenizer)
        except (OSError, ValueError) as exc:
            msg = f"cannot load a tokenizer from {settings.tokenizer!r}: {exc}"
            raise ConfigError(msg) from exc
        return HFTokenCounter(tokenizer, name=Path(settings.tokenizer).name)
    from ragzip import models

    factory = getattr(models, "smollm2_counter", None)
    if factory is None:
        msg = "no tokenizer configured: set tokenizer (RAGZIP_TOKENIZER) to a tokenizer folder"
        raise ConfigError(msg)
    counter: TokenCounter = factory()
    return counter


def build_embedder(settings: Settings) -> PromptEmbedder:
    """The renderer of prompt embeddings for soft context (see ``upstream_prompt_embeds``).

    Loads ``settings.embedding_model`` (or the ``tokenizer`` folder), else the embedded SmolLM2.

    Raises:
        ConfigError: The folder holds no loadable causal LM with a chat template.
    """
    from ragzip.generators.embedded import EmbeddedGenerator

    folder = settings.embedding_model or settings.tokenizer
    if not folder:
        return EmbeddedGenerator(device="cpu")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragzip.models import offline

    try:
        with offline():
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        msg = (
            f"upstream_prompt_embeds needs the upstream model's input embeddings, but no model "
            f"loads from {folder!r} (set embedding_model to its folder): {exc}"
        )
        raise ConfigError(msg) from exc
    return EmbeddedGenerator(model, tokenizer, device="cpu", name=Path(folder).name)


def _dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class ProxyService:
    """Compression and forwarding, shared by all requests of one app.

    Args:
        settings: Proxy settings.
        metrics: The app's metrics.
        counter: Token counter of the upstream model's tokenizer; built from ``settings`` when
            not given.
        transport: An ``httpx`` transport to the upstream (tests); the network when ``None``.
        embedder: Renders prompts as the upstream model's input embeddings for soft context;
            built from ``settings`` on first use when not given.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        counter: TokenCounter | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        embedder: PromptEmbedder | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.budget: Budget = settings.budget
        self.upstream = UpstreamClient(settings, metrics, transport=transport)
        self._counter = counter
        self._embedder = embedder
        self._embedder_lock = asyncio.Lock()
        self._compressors: dict[str, Compressor] = {}
        self._counter_lock = asyncio.Lock()
        self._compressor_lock = asyncio.Lock()
        self.lanes = Lanes(settings)

    # --- lifecycle ----------------------------------------------------------------------------

    async def startup(self) -> None:
        """Load the tokenizer and the default compressor, so bad settings fail at start."""
        self.upstream.start()
        await self.compressor(self.settings.default_compressor)

    async def readiness(self) -> tuple[bool, str]:
        """Whether requests can be served now, and why not.

        Ready means: the tokenizer and the default compressor are loaded, and the upstream
        answers ``GET /models`` with a 2xx within ``readiness_timeout`` seconds.
        """
        if self._counter is None or self.settings.default_compressor not in self._compressors:
            return False, "models are still loading"
        try:
            reply = await asyncio.wait_for(
                self.upstream.request(
                    "GET", "models", content=None, headers=self.upstream.headers({})
                ),
                timeout=self.settings.readiness_timeout,
            )
        except (RagzipError, TimeoutError) as exc:
            return False, f"upstream unreachable: {exc}"
        if reply.status >= 300:
            return False, f"upstream answered {reply.status} to GET /models"
        return True, "ok"

    async def aclose(self) -> None:
        """Close the upstream pool and the compression threads."""
        await self.upstream.aclose()
        self.lanes.shutdown()

    # --- compression --------------------------------------------------------------------------

    async def _in_thread(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Short work (model loading, prompt rendering) on the small lane's threads."""
        return await self.lanes.submit_plain(functools.partial(fn, *args, **kwargs))

    async def counter(self) -> TokenCounter:
        """The token counter (loaded on first use)."""
        if self._counter is None:
            async with self._counter_lock:
                if self._counter is None:
                    self._counter = await self._in_thread(build_counter, self.settings)
        assert self._counter is not None
        return self._counter

    async def embedder(self) -> PromptEmbedder:
        """The prompt-embedding renderer for soft context (loaded on first use)."""
        if self._embedder is None:
            async with self._embedder_lock:
                if self._embedder is None:
                    self._embedder = await self._in_thread(build_embedder, self.settings)
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
                self._compressors[name] = await self._in_thread(
                    create_compressor, name, counter=counter
                )
        return self._compressors[name]

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

    async def _run_plan(
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
        query = options.query if options and options.query is not None else plan.default_query
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
        if not query.strip():
            msg = (
                "no question to compress the context for: ask it in the last user message "
                "outside <ragzip:context>, or give ragzip.query"
            )
            raise InputError(msg)
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
        usage = RagzipUsage(
            compressor=name,
            original_tokens=result.original_tokens,
            compressed_tokens=result.compressed_tokens,
            saved_tokens=result.saved_tokens,
            budget_tokens=result.budget_tokens,
            passages=len(passages),
            kept_passages=sum(1 for p in result.passages if p.text or p.tokens),
            compress_ms=round((time.perf_counter() - start) * 1000, 3),
            decision=_decision_out(result),
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

    # --- OpenAI routes ------------------------------------------------------------------------

    async def chat_completions(self, body: ChatCompletionRequest, request: Request) -> Response:
        """``POST /v1/chat/completions``: compress the marked context, then forward."""
        raw: dict[str, Any] = await request.json()
        options = body.ragzip
        plan = plan_chat(raw["messages"], options.passage_list() if options else [])
        usage: RagzipUsage | None = None
        if plan.has_work:
            done = await self._until_disconnect(  # a client gone stops its compression
                request,
                self._run_plan(
                    plan,
                    options,
                    soft_route=True,
                    prefix_block=self.settings.context_placement == "user",
                ),
            )
            if done is None:
                return Response(status_code=CLIENT_CLOSED)
            kept, usage, soft = done
            if soft is not None:
                return await self._forward_soft(raw, plan, soft, request, usage)
            forward = {k: v for k, v in raw.items() if k != "ragzip"}
            forward["messages"] = render_chat(
                raw["messages"],
                plan,
                kept,
                placement=self.settings.context_placement,
                header=self.settings.context_header,
            )
            content = _dumps(forward)
        elif "ragzip" in raw:
            content = _dumps({k: v for k, v in raw.items() if k != "ragzip"})
        else:
            content = await request.body()  # nothing to do: forward the very bytes
        return await self._forward("chat/completions", content, request, bool(body.stream), usage)

    async def completions(self, body: CompletionRequest, request: Request) -> Response:
        """``POST /v1/completions``: compress the marked context, then forward."""
        raw: dict[str, Any] = await request.json()
        options = body.ragzip
        plan = plan_completion(raw["prompt"], options.passage_list() if options else [])
        usage: RagzipUsage | None = None
        if plan.has_work:
            done = await self._until_disconnect(request, self._run_plan(plan, options))
            if done is None:
                return Response(status_code=CLIENT_CLOSED)
            kept, usage, _ = done
            forward = {k: v for k, v in raw.items() if k != "ragzip"}
            forward["prompt"] = render_completion(
                raw["prompt"], plan, kept, header=self.settings.context_header
            )
            content = _dumps(forward)
        elif "ragzip" in raw:
            content = _dumps({k: v for k, v in raw.items() if k != "ragzip"})
        else:
            content = await request.body()
        return await self._forward("completions", content, request, bool(body.stream), usage)

    async def _forward_soft(
        self,
        raw: dict[str, Any],
        plan: ContextPlan,
        result: CompressionResult,
        request: Request,
        usage: RagzipUsage,
    ) -> Response:
        """Send a chat with soft context upstream as ``/v1/completions`` prompt embeddings."""
        messages, rows = render_soft_chat(
            raw["messages"],
            plan,
            result,
            placement=self.settings.context_placement,
            header=self.settings.context_header,
        )
        embedder = await self.embedder()
        start = time.perf_counter()
        embeds = await self._in_thread(
            embedder.embed_messages, messages, placeholder=SOFT_PLACEHOLDER, replacements=rows
        )
        encoded, _ = await asyncio.to_thread(encode_prompt_embeds, embeds)
        self.metrics.stage.labels("embed").observe(time.perf_counter() - start)
        content = _dumps(completion_body(raw, encoded))
        stream = bool(raw.get("stream"))
        reply = await self._forward_reply("completions", content, request, stream)
        if reply is None:
            return Response(status_code=CLIENT_CLOSED)
        out_headers = {**reply.headers, **usage.headers()}
        if reply.stream is not None:
            if reply.content_type.startswith("text/event-stream"):
                reply = replace(
                    reply, first_chunk=b"", stream=chat_stream(reply.first_chunk, reply.stream)
                )
            return UpstreamStreamResponse(
                reply,
                headers=out_headers,
                metrics=self.metrics,
                translate=self.upstream.translate_error,
            )
        body = reply.content
        if 200 <= reply.status < 300:
            with contextlib.suppress(ValueError):
                body = _dumps(chat_from_completion(json.loads(body)))
            body = _with_usage(body, usage)
        return Response(body, status_code=reply.status, headers=out_headers)

    async def _forward_reply(
        self, path: str, content: bytes, request: Request, stream: bool
    ) -> UpstreamReply | None:
        headers = self.upstream.headers(request.headers)
        start = time.perf_counter()
        limit = self.settings.response_timeout
        answer = self.upstream.request(
            "POST", path, content=content, headers=headers, stream=stream
        )
        try:
            return await self._until_disconnect(request, asyncio.wait_for(answer, timeout=limit))
        except TimeoutError as exc:
            what = "its first chunk" if stream else "an answer"
            msg = (
                f"the upstream server {self.settings.upstream_display} sent no {what} "
                f"within {limit:g} s (response_timeout)"
            )
            raise UpstreamTimeoutError(msg) from exc
        finally:
            self.metrics.stage.labels("upstream").observe(time.perf_counter() - start)

    async def models(self, request: Request) -> Response:
        """``GET /v1/models``, passed through."""
        headers = self.upstream.headers(request.headers)
        listing = self.upstream.request("GET", "models", content=None, headers=headers)
        try:
            reply = await self._until_disconnect(
                request, asyncio.wait_for(listing, timeout=self.settings.models_timeout)
            )
        except TimeoutError as exc:
            msg = (
                f"the upstream server {self.settings.upstream_display} did not list its models "
                f"within {self.settings.models_timeout:g} s"
            )
            raise UpstreamTimeoutError(msg) from exc
        if reply is None:
            return Response(status_code=CLIENT_CLOSED)
        return Response(reply.content, status_code=reply.status, headers=reply.headers)

    async def _forward(
        self,
        path: str,
        content: bytes,
        request: Request,
        stream: bool,
        usage: RagzipUsage | None,
    ) -> Response:
        reply = await self._forward_reply(path, content, request, stream)
        if reply is None:
            return Response(status_code=CLIENT_CLOSED)
        out_headers = dict(reply.headers)
        if usage is not None:
            out_headers.update(usage.headers())
        if reply.stream is not None:
            return UpstreamStreamResponse(
                reply,
                headers=out_headers,
                metrics=self.metrics,
                translate=self.upstream.translate_error,
            )
        body = reply.content
        if usage is not None and 200 <= reply.status < 300:
            body = _with_usage(body, usage)
        return Response(body, status_code=reply.status, headers=out_headers)

    async def _until_disconnect(self, request: Request, work: Awaitable[T]) -> T | None:
        """Await ``work``; cancel it and return ``None`` if the client disconnects first.

        A watcher task waits for the client's ``http.disconnect`` and cancels this task; the
        work itself runs in this task (one task per request instead of two).
        """
        current = asyncio.current_task()
        assert current is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            await wait_for_disconnect(request.receive)
            gone = True
            current.cancel()

        watcher = asyncio.create_task(watch())
        reply: T | None = None
        try:
            reply = await work
        except asyncio.CancelledError:
            if not gone:
                raise  # cancelled from outside (shutdown): not ours to swallow
            current.uncancel()
        finally:
            watcher.cancel()
        if gone:
            if reply is not None:  # the disconnect raced the answer: take the pending cancel
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0)
                current.uncancel()
                close = getattr(reply, "aclose", None)
                if close is not None:
                    await close()
            self.metrics.disconnects.inc()
            logger.info("client disconnected before the answer; request cancelled")
            return None
        return reply


def _decision_out(result: CompressionResult) -> AutoDecisionOut | None:
    """The ``auto`` compressor's decision for the usage report (``None`` for the others)."""
    decision = decision_of(result)
    if decision is None:
        return None
    return AutoDecisionOut(
        compress=decision.compress,
        compressor=decision.compressor,
        ratio=decision.ratio,
        reason=decision.reason,
        predicted_s=decision.predicted_s,
        baseline_s=decision.baseline_s,
    )


def _with_usage(content: bytes, usage: RagzipUsage) -> bytes:
    """The upstream JSON body with a ``ragzip`` key added (unchanged if it is not an object)."""
    try:
        data = json.loads(content)
    except ValueError:
        return content
    if not isinstance(data, dict):
        return content
    data["ragzip"] = usage.model_dump()
    return _dumps(data)
