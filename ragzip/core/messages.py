"""Chat messages: the one conversation type generators, prompts and adapters share.

The HTTP servers validate the OpenAI wire form with their own pydantic schemas
(:mod:`ragzip.server.schemas`) and hand generators these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ragzip.core.errors import InputError

Role = Literal["system", "user", "assistant"]
ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})


@dataclass(frozen=True)
class ChatMessage:
    """One chat turn.

    Args:
        role: ``"system"``, ``"user"`` or ``"assistant"``.
        content: The text of the turn.

    Raises:
        InputError: An unknown role or non-string content.
    """

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            msg = f"message role must be one of {sorted(ROLES)}, got {self.role!r}"
            raise InputError(msg)
        if not isinstance(self.content, str):
            msg = f"message content must be str, got {type(self.content).__name__}"
            raise InputError(msg)

    @classmethod
    def coerce(cls, value: ChatMessage | Mapping[str, Any]) -> ChatMessage:
        """A message from a ``ChatMessage`` or an OpenAI-style ``{"role", "content"}`` mapping."""
        if isinstance(value, ChatMessage):
            return value
        if isinstance(value, Mapping):
            missing = {"role", "content"} - set(value)
            if missing:
                msg = f"a message mapping needs 'role' and 'content', missing {sorted(missing)}"
                raise InputError(msg)
            return cls(role=value["role"], content=value["content"])
        msg = f"cannot make a ChatMessage from {type(value).__name__}"
        raise InputError(msg)

    def to_dict(self) -> dict[str, str]:
        """The OpenAI wire form ``{"role": ..., "content": ...}``."""
        return {"role": self.role, "content": self.content}


def validate_messages(
    messages: Sequence[ChatMessage | Mapping[str, Any]],
) -> tuple[ChatMessage, ...]:
    """Coerce and check a conversation.

    Raises:
        InputError: Not a sequence, empty, a bad message, or no message with any text.
    """
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        msg = f"messages must be a sequence of chat messages, got {type(messages).__name__}"
        raise InputError(msg)
    if not messages:
        msg = "messages must not be empty"
        raise InputError(msg)
    items = tuple(ChatMessage.coerce(m) for m in messages)
    if not any(m.content.strip() for m in items):
        msg = "every message is empty: there is nothing to answer"
        raise InputError(msg)
    return items
