"""A ragzip generator as a LangChain chat model.

:class:`RagzipChatModel` lets the embedded SmolLM2 (or any ragzip
:class:`~ragzip.generators.base.Generator`, such as an
:class:`~ragzip.generators.openai_compat.OpenAIGenerator`) answer in LangChain chains. Decoding is
greedy: the same messages give the same answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from ragzip.core.errors import ConfigError, InputError, needs_extra
from ragzip.core.messages import ROLES, ChatMessage
from ragzip.generators.base import Generation, Generator
from ragzip.integrations.common import require

with needs_extra("langchain", "the LangChain integration needs langchain-core"):
    from langchain_core.callbacks import (
        AsyncCallbackManagerForLLMRun,
        CallbackManagerForLLMRun,
    )
    from langchain_core.language_models import BaseChatModel, LangSmithParams
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        HumanMessage,
        SystemMessage,
    )
    from langchain_core.messages import ChatMessage as LCChatMessage
    from langchain_core.messages.ai import UsageMetadata
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from pydantic import ConfigDict, Field, field_validator


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        else:
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            msg = f"only text content is supported, got a {kind!r} content block"
            raise InputError(msg)
    return "".join(parts)


def to_chat_messages(messages: Sequence[BaseMessage]) -> list[ChatMessage]:
    """Convert LangChain messages to ragzip :class:`~ragzip.generators.base.ChatMessage`.

    System, human and AI messages map to ``system``, ``user`` and ``assistant``; a generic
    ``ChatMessage`` keeps its role when it is one of those.

    Raises:
        InputError: Tool or function messages, other roles, or non-text content.
    """
    out: list[ChatMessage] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            role = "system"
        elif isinstance(message, HumanMessage):
            role = "user"
        elif isinstance(message, AIMessage):
            if message.tool_calls:
                msg = "tool calls are not supported by ragzip generators"
                raise InputError(msg)
            role = "assistant"
        elif isinstance(message, LCChatMessage) and message.role in ROLES:
            role = message.role
        else:
            msg = (
                f"unsupported message type {message.type!r}: ragzip generators take system, "
                "user (human) and assistant (ai) messages"
            )
            raise InputError(msg)
        out.append(ChatMessage(role, _text(message)))  # type: ignore[arg-type]
    return out


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cuts = [i for s in stop if s and (i := text.find(s)) >= 0]
    if not cuts:
        return text, False
    return text[: min(cuts)], True


class RagzipChatModel(BaseChatModel):
    """A ragzip generator as a LangChain ``BaseChatModel``.

    Args:
        generator: The ragzip generator; ``None`` loads the embedded SmolLM2-135M-Instruct.
        max_new_tokens: Answer length limit (also accepted as ``max_tokens``); a call may
            override it with ``invoke(..., max_new_tokens=n)``.
        stop: Default stop sequences: the answer is cut before the first one.
        temperature: Only ``None`` or ``0`` (decoding is greedy).

    ragzip generators return whole answers, so ``stream`` delivers each answer as one chunk
    (marked as the last) once it is generated; there is no token-by-token streaming.

    Every answer carries ``usage_metadata`` (prompt tokens as the model saw them, chat template
    included) and ``response_metadata`` with the model name, the finish reason and the time to
    first token and total time in seconds.

    Example::

        from ragzip.generators.embedded import EmbeddedGenerator

        llm = RagzipChatModel(generator=EmbeddedGenerator(), max_new_tokens=32)
        llm.invoke("What is the capital of France?").content
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    generator: Generator
    """The wrapped ragzip generator."""
    max_new_tokens: int = Field(default=64, alias="max_tokens")
    """Answer length limit."""
    stop: list[str] | None = None
    """Default stop sequences."""
    temperature: float | None = None
    """Accepted for the standard interface; decoding is greedy, so only 0 or None."""

    def __init__(self, generator: Generator | None = None, **kwargs: Any) -> None:
        if generator is None:
            from ragzip.generators.embedded import EmbeddedGenerator

            generator = EmbeddedGenerator()
        fields: dict[str, Any] = {"generator": generator}
        super().__init__(**fields, **kwargs)

    @field_validator("generator", mode="before")
    @classmethod
    def _check_generator(cls, value: Any) -> Generator:
        return require(value, Generator, "generator", "a ragzip Generator")

    @field_validator("max_new_tokens")
    @classmethod
    def _check_max_new_tokens(cls, value: int) -> int:
        if value < 1:
            msg = f"max_new_tokens must be >= 1, got {value}"
            raise ConfigError(msg)
        return value

    @field_validator("temperature")
    @classmethod
    def _check_temperature(cls, value: float | None) -> float | None:
        if value not in (None, 0, 0.0):
            msg = f"ragzip generators decode greedily; temperature must be 0 or None, got {value}"
            raise ConfigError(msg)
        return value

    @property
    def _llm_type(self) -> str:
        return "ragzip"

    @property
    def model_name(self) -> str:
        """The generator's model name."""
        return self.generator.name

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.generator.name, "max_new_tokens": self.max_new_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="ragzip",
            ls_model_name=str(kwargs.get("model") or self.generator.name),
            ls_model_type="chat",
            ls_temperature=0.0,
            ls_max_tokens=int(kwargs.get("max_new_tokens") or self.max_new_tokens),
        )
        stops = stop or self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params

    def _options(self, stop: list[str] | None, kwargs: dict[str, Any]) -> tuple[int, list[str]]:
        unknown = sorted(set(kwargs) - {"max_new_tokens", "max_tokens"})
        if unknown:
            msg = f"unsupported call options {unknown}; ragzip chat models take max_new_tokens"
            raise ConfigError(msg)
        limit = kwargs.get("max_new_tokens", kwargs.get("max_tokens", self.max_new_tokens))
        return limit, list(stop if stop is not None else self.stop or [])

    def _message_parts(
        self, generation: Generation, stop: list[str]
    ) -> tuple[str, UsageMetadata, dict[str, Any]]:
        text, stopped = _cut_at_stop(generation.text, stop)
        finish_reason = "stop" if stopped else generation.finish_reason
        usage = UsageMetadata(
            input_tokens=generation.prompt_tokens,
            output_tokens=generation.completion_tokens,
            total_tokens=generation.prompt_tokens + generation.completion_tokens,
        )
        metadata = {
            "model_name": self.generator.name,
            "model_provider": "ragzip",
            "finish_reason": finish_reason,
            "ttft_s": generation.ttft_s,
            "total_s": generation.total_s,
        }
        return text, usage, metadata

    def _result(self, generation: Generation, stop: list[str]) -> ChatResult:
        text, usage, metadata = self._message_parts(generation, stop)
        message = AIMessage(content=text, usage_metadata=usage, response_metadata=metadata)
        return ChatResult(
            generations=[ChatGeneration(message=message)],
            llm_output={"model_name": self.generator.name},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        limit, stops = self._options(stop, kwargs)
        generation = self.generator.generate(to_chat_messages(messages), max_new_tokens=limit)
        return self._result(generation, stops)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        limit, stops = self._options(stop, kwargs)
        generation = await self.generator.agenerate(
            to_chat_messages(messages), max_new_tokens=limit
        )
        return self._result(generation, stops)

    def _chunk(self, generation: Generation, stop: list[str]) -> ChatGenerationChunk:
        text, usage, metadata = self._message_parts(generation, stop)
        message = AIMessageChunk(
            content=text,
            usage_metadata=usage,
            response_metadata=metadata,
            chunk_position="last",
        )
        return ChatGenerationChunk(message=message)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        limit, stops = self._options(stop, kwargs)
        generation = self.generator.generate(to_chat_messages(messages), max_new_tokens=limit)
        chunk = self._chunk(generation, stops)
        if run_manager is not None:
            run_manager.on_llm_new_token(chunk.text, chunk=chunk)
        yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        limit, stops = self._options(stop, kwargs)
        generation = await self.generator.agenerate(
            to_chat_messages(messages), max_new_tokens=limit
        )
        chunk = self._chunk(generation, stops)
        if run_manager is not None:
            await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
        yield chunk
