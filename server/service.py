"""The proxy's work: find the context, compress it, forward the request, report what was saved.

One :class:`ProxyService` lives on ``app.state.service``; routes only call it. Compressors run in
a small thread pool (``compression_workers``) so the event loop keeps serving other requests;
they are built once per name, on first use (the default one at startup).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import httpx
from fastapi import Request
from starlette.responses import Response

from ragzip.core.errors import RagzipError
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import CompressionResult, Passage
from ragzip.generators.prompt_embeds import PromptEmbedder, encode_prompt_embeds
from ragzip.prompts import SOFT_PLACEHOLDER
from ragzip.retrievers.base import Retriever
from ragzip.server.compression import CompressionService, question_of, require_question
from ragzip.server.context import (
    ContextPlan,
    insert_position,
    plan_chat,
    plan_completion,
    render_chat,
    render_completion,
)
from ragzip.server.errors import UpstreamTimeoutError, client_message_indices
from ragzip.server.metrics import Metrics
from ragzip.server.retrieval import RetrievalService, Retrieved
from ragzip.server.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    RagzipOptions,
    RagzipUsage,
    dumps_json,
    with_usage,
)
from ragzip.server.settings import Settings
from ragzip.server.soft import chat_from_completion, chat_stream, completion_body, render_soft_chat
from ragzip.server.streaming import UpstreamStreamResponse, wait_for_disconnect
from ragzip.server.upstream import UpstreamClient, UpstreamReply

logger = logging.getLogger("ragzip.server")
T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's status for "client closed request"; nobody reads it


class ProxyService:
    """Compression and forwarding, shared by all requests of one app.

    Args:
        settings, metrics, counter, embedder: Handed to :class:`CompressionService`.
        transport: An ``httpx`` transport to the upstream (tests); the network when ``None``.
        retriever: The retriever of the retrieval mode, instead of the one the settings name.
        close_retriever: Close ``retriever`` at shutdown (it was opened from ``settings``).
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        counter: TokenCounter | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        embedder: PromptEmbedder | None = None,
        retriever: Retriever | None = None,
        close_retriever: bool = False,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.upstream = UpstreamClient(settings, metrics, transport=transport)
        self.compression = CompressionService(settings, metrics, counter=counter, embedder=embedder)
        self.retrieval = RetrievalService(
            settings, metrics, self.compression.features, retriever=retriever, owned=close_retriever
        )

    # --- lifecycle ----------------------------------------------------------------------------

    async def startup(self) -> None:
        """Load the tokenizer, the default compressor and the retriever, so bad settings fail
        at start."""
        self.upstream.start()
        await self.compression.compressor(self.settings.default_compressor)
        await self.retrieval.startup()

    async def readiness(self) -> tuple[bool, str]:
        """Whether requests can be served now, and why not.

        Ready means: the tokenizer and the default compressor are loaded, the retrieval
        database (if any) answers, and the upstream answers ``GET /models`` with a 2xx within
        ``readiness_timeout`` seconds.
        """
        if not self.compression.loaded:
            return False, "models are still loading"
        retrieval_ok, reason = await self.retrieval.health()
        if not retrieval_ok:
            return False, reason
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
        self.compression.shutdown()
        self.retrieval.shutdown()

    # --- OpenAI routes ------------------------------------------------------------------------

    async def chat_completions(self, body: ChatCompletionRequest, request: Request) -> Response:
        """``POST /v1/chat/completions``: compress the marked context, then forward."""
        return await self._compress_and_forward(body, request, chat=True)

    async def completions(self, body: CompletionRequest, request: Request) -> Response:
        """``POST /v1/completions``: compress the marked context, then forward."""
        return await self._compress_and_forward(body, request, chat=False)

    async def _compress_and_forward(
        self, body: ChatCompletionRequest | CompletionRequest, request: Request, *, chat: bool
    ) -> Response:
        """What both routes do: plan the context of the messages (``chat``) or the prompt
        (retrieving when asked), compress it, render it back and forward the body upstream (the
        very bytes when there was nothing to do); a chat may instead go up as soft prompt
        embeddings."""
        raw: dict[str, Any] = await request.json()
        field, plan_of = ("messages", plan_chat) if chat else ("prompt", plan_completion)
        options = body.ragzip
        planned = await self._plan(lambda ps: plan_of(raw[field], ps), options, request)
        if planned is None:
            return Response(status_code=CLIENT_CLOSED)
        plan, retrieved = planned
        usage: RagzipUsage | None = None
        inserted: int | None = None  # where a context message went in, if one did
        if plan.has_work:
            prefix_block = not chat or self.settings.context_placement == "user"
            done = await self._until_disconnect(  # a client gone stops its compression
                request,
                self.compression.run_plan(
                    plan, options, soft_route=chat, prefix_block=prefix_block
                ),
            )
            if done is None:
                return Response(status_code=CLIENT_CLOSED)
            kept, usage, soft = done
            usage = retrieved.report(usage)
            if soft is not None:
                return await self._forward_soft(raw, plan, soft, request, usage)
            forward = {k: v for k, v in raw.items() if k != "ragzip"}
            header = self.settings.context_header
            if chat:
                placement = self.settings.context_placement
                forward[field] = render_chat(
                    raw[field], plan, kept, placement=placement, header=header
                )
                if len(forward[field]) > len(raw[field]):
                    inserted = insert_position(raw[field])
            else:
                forward[field] = render_completion(raw[field], plan, kept, header=header)
            content = dumps_json(forward)
        elif "ragzip" in raw:
            content = dumps_json({k: v for k, v in raw.items() if k != "ragzip"})
        else:
            content = await request.body()  # nothing to do: forward the very bytes
        path = "chat/completions" if chat else "completions"
        return await self._forward(path, content, request, bool(body.stream), usage, inserted)

    async def _plan(
        self,
        make_plan: Callable[[list[Passage]], ContextPlan],
        options: RagzipOptions | None,
        request: Request,
    ) -> tuple[ContextPlan, Retrieved] | None:
        """The request's context: the passages it sends or marks, then those the proxy
        retrieves for it (none unless it asks, or the server retrieves by default); ``None``
        when the client left meanwhile."""
        given = options.passage_list() if options else []
        plan = make_plan(given)
        query = question_of(plan, options)
        if not self.retrieval.wanted(options, plan.has_work, bool(query.strip())):
            return plan, Retrieved()
        require_question(query)
        done = await self._until_disconnect(
            request, self.retrieval.retrieve(query, options.k if options else None)
        )
        if done is None:
            return None
        retrieved = Retrieved(*done)
        return (make_plan([*given, *retrieved.passages]) if retrieved.passages else plan), retrieved

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
        embedder = await self.compression.embedder()
        start = time.perf_counter()
        embeds = await self.compression.in_thread(
            embedder.embed_messages, messages, placeholder=SOFT_PLACEHOLDER, replacements=rows
        )
        encoded, _ = await asyncio.to_thread(encode_prompt_embeds, embeds)
        self.metrics.stage.labels("embed").observe(time.perf_counter() - start)
        content = dumps_json(completion_body(raw, encoded))
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
            return self._streamed(reply, out_headers)
        body = reply.content
        if 200 <= reply.status < 300:
            with contextlib.suppress(ValueError):
                body = dumps_json(chat_from_completion(json.loads(body)))
            body = with_usage(body, usage)
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
        tokens = len(content) // 4  # ≈ prompt tokens, for the load auto follows
        try:
            with self.compression.load.upstream(tokens):
                reply = await self._until_disconnect(
                    request, asyncio.wait_for(answer, timeout=limit)
                )
            if reply is not None and reply.status < 400:
                self.compression.load.observe(tokens, time.perf_counter() - start)
            return reply
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
        inserted: int | None = None,
    ) -> Response:
        reply = await self._forward_reply(path, content, request, stream)
        if reply is None:
            return Response(status_code=CLIENT_CLOSED)
        out_headers = dict(reply.headers)
        if usage is not None:
            out_headers.update(usage.headers())
        if reply.stream is not None:
            return self._streamed(reply, out_headers)
        body = reply.content
        if usage is not None and 200 <= reply.status < 300:
            body = with_usage(body, usage)
        elif inserted is not None and 400 <= reply.status < 500:
            body = client_message_indices(body, inserted)
        return Response(body, status_code=reply.status, headers=out_headers)

    def _streamed(self, reply: UpstreamReply, headers: dict[str, str]) -> Response:
        """The upstream's stream passed on as it comes, errors translated."""
        translate = self.upstream.translate_error
        return UpstreamStreamResponse(
            reply, headers=headers, metrics=self.metrics, translate=translate
        )

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
