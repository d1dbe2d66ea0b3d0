"""Request schemas of the model server (``ragzip serve-model``): the OpenAI chat and text
completion bodies the embedded generator can honour, every message shape included."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from ragzip.core.errors import ConfigError
from ragzip.core.messages import Role
from ragzip.server.schemas import WireMessage

DEFAULT_MAX_TOKENS = 256


class ModelMessage(WireMessage):
    """One chat message in any shape the OpenAI API sends: ``content`` as a string or as
    content parts, ``name``, ``developer`` instructions, tool and function results, assistant
    turns that only call tools. The embedded generator reads text: text parts are joined, a part
    of another type (an image, audio, a file) is refused naming it."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _text_parts_only(
        cls, value: str | list[dict[str, Any]] | None
    ) -> str | list[dict[str, Any]] | None:
        if isinstance(value, list):
            for i, part in enumerate(value):
                kind = part.get("type")
                if kind != "text" or not isinstance(part.get("text"), str):
                    msg = (
                        f"part {i} is of type {kind!r}: this model reads text only "
                        '(parts {"type": "text", "text": ...})'
                    )
                    raise ValueError(msg)
        return value

    def turn(self) -> dict[str, str] | None:
        """The turn the generator reads (``None`` for an assistant turn with no text, one that
        only called tools): developer instructions are system turns, a tool's or function's
        result a user turn that names it."""
        content = self.content
        text = "\n".join(p["text"] for p in content) if isinstance(content, list) else content
        text = text or ""
        role: Role
        if self.role in ("system", "developer"):
            role = "system"
        elif self.role in ("tool", "function"):
            role, text = "user", f"Result of {self.name or 'the tool'}:\n{text}"
        else:
            role = self.role  # type: ignore[assignment]
        if not text and role == "assistant":
            return None
        return {"role": role, "content": text}


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class _Sampling(BaseModel):
    """Fields shared by both routes; unknown OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    stream: bool = False
    stream_options: _StreamOptions | None = None
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0)
    n: StrictInt | None = Field(default=None, ge=1)

    def check_greedy(self) -> None:
        """Refuse sampling settings this server cannot honour."""
        if self.temperature not in (None, 0.0):
            msg = f"this server decodes greedily: temperature must be 0, got {self.temperature}"
            raise ConfigError(msg)
        if self.n not in (None, 1):
            msg = f"this server returns one choice: n must be 1, got {self.n}"
            raise ConfigError(msg)


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ModelMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)

    def limit(self) -> int:
        """``max_completion_tokens``, else ``max_tokens``, else the server default."""
        return self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS


class TextRequest(_Sampling):
    """``POST /v1/completions`` with one string prompt."""

    prompt: str = Field(min_length=1)

    def limit(self) -> int:
        """``max_tokens`` or the server default."""
        return self.max_tokens or DEFAULT_MAX_TOKENS
