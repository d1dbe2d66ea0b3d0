"""``create_model_app(generator)``: the embedded model behind an OpenAI-compatible HTTP API.

Serves one :class:`~ragzip.generators.embedded.EmbeddedGenerator` (SmolLM2 by default) on
``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``, streamed or not.
Streams are server-sent events with one chunk per decoded token, so a client measures the real
time to the first token; they end with ``data: [DONE]``. Decoding is greedy (the generator's
contract): ``temperature`` must be absent or 0, ``n`` absent or 1. When the client disconnects,
decoding stops after the current token.

It is what ``ragzip serve-model`` runs, and what the latency profiler measures as a *remote*
generator when no other server is at hand. ``ragzip serve-model --simulate NAME`` serves a
:class:`~ragzip.generators.simulated.SimulatedGenerator` the same way: the timing of a GPU-hosted
model, labelled simulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ragzip import __version__
from ragzip.core.errors import ConfigError, GenerationError, RagzipError
from ragzip.server.errors import error_body, install_error_handlers, spec_for
from ragzip.server.model_server.schemas import ChatRequest, TextRequest
from ragzip.server.streaming import DONE

if TYPE_CHECKING:
    from ragzip.generators.base import StreamedToken, TokenStreamer


_END = object()


class _TokenPump:
    """Runs a token iterator in a thread and hands its items to the event loop.

    The model keeps decoding while the loop writes earlier tokens to the socket; :meth:`stop`
    makes the thread quit after the token in progress and close the iterator (which frees the
    model).
    """

    def __init__(self, tokens: Generator[StreamedToken, None, None]) -> None:
        self._tokens = tokens
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ragzip-model-stream", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _run(self) -> None:
        try:
            for item in self._tokens:
                self._put(item)
                if self._stopped.is_set():
                    break
        except Exception as exc:  # handed to the loop, which reports it
            self._put(exc)
        finally:
            self._tokens.close()
            self._put(_END)

    def stop(self) -> None:
        """Stop decoding after the current token."""
        self._stopped.set()

    async def __aiter__(self) -> AsyncIterator[StreamedToken]:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class ModelService:
    """Generation for the routes of :func:`create_model_app`.

    Args:
        generator: The embedded model to serve.
        model_name: The name clients send as ``model``; the generator's name by default.
    """

    def __init__(self, generator: TokenStreamer, model_name: str | None = None) -> None:
        self.generator = generator
        self.model_name = model_name or generator.name
        self.created = int(time.time())

    def check(self, body: ChatRequest | TextRequest) -> None:
        """Refuse requests for another model, or with sampling settings not honoured here.

        Raises:
            ConfigError: ``body.model`` is not the served model, or it asks for sampling.
        """
        if body.model != self.model_name:
            msg = f"model {body.model!r} is not served here; served: {self.model_name!r}"
            raise ConfigError(msg)
        body.check_greedy()

    def models(self) -> dict[str, Any]:
        """The ``/v1/models`` listing."""
        return {
            "object": "list",
            "data": [
                {
                    "id": self.model_name,
                    "object": "model",
                    "created": self.created,
                    "owned_by": "ragzip",
                }
            ],
        }

    async def respond(
        self,
        request: Request,
        prompt_ids: list[int],
        body: ChatRequest | TextRequest,
    ) -> Response:
        """Generate from ``prompt_ids`` and answer in ``body``'s shape (chat or text completion),
        at its length limit, streamed when it asks.

        Raises:
            InputError: The prompt does not fit the model's context window (before any byte is
                sent).
        """
        chat = isinstance(body, ChatRequest)
        tokens = await asyncio.to_thread(
            self.generator.stream_ids, prompt_ids, max_new_tokens=body.limit()
        )
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            events = self._stream(request, tokens, ident, chat, len(prompt_ids), usage)
            return StreamingResponse(
                events, media_type="text/event-stream", headers={"cache-control": "no-cache"}
            )
        text: list[str] = []
        finish = "length"
        count = 0
        async for token in _TokenPump(tokens):
            text.append(token.text)
            count += 1
            finish = token.finish_reason or finish
        content = "".join(text)
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": content}}
            if chat
            else {"index": 0, "text": content, "logprobs": None}
        )
        choice["finish_reason"] = finish
        return JSONResponse(
            {
                "id": ident,
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": self.model_name,
                "choices": [choice],
                "usage": _usage(len(prompt_ids), count),
            }
        )

    async def _stream(
        self,
        request: Request,
        tokens: Generator[StreamedToken, None, None],
        ident: str,
        chat: bool,
        prompt_tokens: int,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        created = int(time.time())
        head = {
            "id": ident,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": self.model_name,
        }

        def chunk(text: str | None, finish: str | None, first: bool) -> dict[str, Any]:
            if chat:
                delta: dict[str, Any] = {} if text is None else {"content": text}
                if first:
                    delta["role"] = "assistant"
                choice: dict[str, Any] = {"index": 0, "delta": delta}
            else:
                choice = {"index": 0, "text": text or "", "logprobs": None}
            choice["finish_reason"] = finish
            return {**head, "choices": [choice]}

        pump = _TokenPump(tokens)
        count = 0
        try:
            async for token in pump:
                count += 1
                if await request.is_disconnected():
                    pump.stop()
                    return
                if token.text or count == 1:
                    yield _sse(chunk(token.text, None, count == 1))
                if token.finish_reason is not None:
                    yield _sse(chunk(None, token.finish_reason, False))
            if include_usage:
                yield _sse({**head, "choices": [], "usage": _usage(prompt_tokens, count)})
        except RagzipError as exc:
            spec = spec_for(exc)
            yield _sse(error_body(str(exc), type=spec.type, code=spec.code))
        except Exception as exc:  # the stream has started: report it
            err = GenerationError(f"{type(exc).__name__}: {exc}")
            spec = spec_for(err)
            yield _sse(error_body(str(err), type=spec.type, code=spec.code))
        finally:
            pump.stop()
        yield DONE


def create_model_app(generator: TokenStreamer, *, model_name: str | None = None) -> FastAPI:
    """An OpenAI-compatible app serving ``generator``.

    Args:
        generator: The embedded model (SmolLM2 by default: ``EmbeddedGenerator()``).
        model_name: The model id clients use; defaults to ``generator.name``.

    Returns:
        The app; ``app.state.model_service`` holds its :class:`ModelService`.
    """
    service = ModelService(generator, model_name)
    app = FastAPI(
        title="ragzip model server",
        version=__version__,
        summary="An embedded ragzip generator behind an OpenAI-compatible API.",
    )
    app.state.model_service = service
    install_error_handlers(app)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return service.models()

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request) -> Response:
        service.check(body)
        messages = [t for m in body.messages if (t := m.turn()) is not None]
        ids = await asyncio.to_thread(generator.prompt_ids, messages)
        return await service.respond(request, ids, body)

    @app.post("/v1/completions")
    async def completions(body: TextRequest, request: Request) -> Response:
        service.check(body)
        tokenizer = generator.tokenizer
        ids = [int(i) for i in tokenizer(body.prompt, add_special_tokens=False)["input_ids"]]
        return await service.respond(request, ids, body)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "model": service.model_name, "version": __version__}

    return app


def serve_model(
    generator: TokenStreamer,
    *,
    host: str = "127.0.0.1",
    port: int = 8001,
    model_name: str | None = None,
    log_level: str = "info",
) -> None:
    """Serve ``generator`` with uvicorn until interrupted (what ``ragzip serve-model`` runs)."""
    import uvicorn

    uvicorn.run(
        create_model_app(generator, model_name=model_name),
        host=host,
        port=port,
        log_level=log_level,
        server_header=False,
    )


__all__ = [
    "ChatRequest",
    "ModelService",
    "TextRequest",
    "create_model_app",
    "serve_model",
]
