"""The generator value types and input validation shared by every generator."""

from __future__ import annotations

import dataclasses

import pytest

import ragzip.generators as generators
from ragzip.core.errors import ConfigError, InputError
from ragzip.core.messages import ChatMessage, validate_messages
from ragzip.generators.base import Generation, count_templated_tokens, validate_max_new_tokens


def test_exported_members() -> None:
    exported = {name for name in dir(generators) if not name.startswith("_")}
    assert set(generators.__all__) <= exported | {"EmbeddedGenerator"}
    for name in generators.__all__:
        assert getattr(generators, name) is not None
    with pytest.raises(AttributeError):
        _ = generators.NoSuchGenerator  # type: ignore[attr-defined]


def test_chat_message_is_frozen_and_validated() -> None:
    msg = ChatMessage("user", "hi")
    assert msg.to_dict() == {"role": "user", "content": "hi"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.content = "changed"  # type: ignore[misc]
    with pytest.raises(InputError, match="role"):
        ChatMessage("tool", "hi")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="content"):
        ChatMessage("user", None)  # type: ignore[arg-type]


def test_chat_message_coerce() -> None:
    msg = ChatMessage("system", "be brief")
    assert ChatMessage.coerce(msg) is msg
    assert ChatMessage.coerce({"role": "assistant", "content": "ok"}) == ChatMessage(
        "assistant", "ok"
    )
    with pytest.raises(InputError, match="missing"):
        ChatMessage.coerce({"content": "no role"})
    with pytest.raises(InputError):
        ChatMessage.coerce(("user", "tuple"))  # type: ignore[arg-type]


def test_validate_messages() -> None:
    items = validate_messages([{"role": "system", "content": ""}, ChatMessage("user", "q")])
    assert items == (ChatMessage("system", ""), ChatMessage("user", "q"))
    for bad in ([], (), "text", {"role": "user", "content": "x"}, None):
        with pytest.raises(InputError):
            validate_messages(bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="empty"):
        validate_messages([{"role": "user", "content": " \n"}])


def test_validate_max_new_tokens() -> None:
    assert validate_max_new_tokens(1) == 1
    for bad in (0, -3, 2.0, "8", None, False):
        with pytest.raises(ConfigError):
            validate_max_new_tokens(bad)  # type: ignore[arg-type]


def test_generation_decode_speed() -> None:
    gen = Generation("a b c", 10, 5, ttft_s=0.5, total_s=1.5, finish_reason="stop")
    assert gen.decode_tokens_per_s == pytest.approx(4.0)
    assert Generation("", 10, 1, 0.5, 0.5, "stop").decode_tokens_per_s == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        gen.text = "x"  # type: ignore[misc]


def test_count_templated_tokens_without_template_sums_contents(minilm_counter) -> None:
    messages = validate_messages(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}]
    )
    assert count_templated_tokens(minilm_counter, messages) == 4
