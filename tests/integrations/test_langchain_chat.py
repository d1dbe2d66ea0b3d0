"""RagzipChatModel: message conversion, and the embedded SmolLM2 behind LangChain's standard chat
model suites."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import ValidationError

from ragzip.core.errors import ConfigError, InputError
from ragzip.core.messages import ChatMessage as RagzipMessage
from ragzip.integrations import RagzipChatModel
from ragzip.integrations.langchain_chat import _cut_at_stop, to_chat_messages

# -- conversion (no model) -----------------------------------------------------------------------


def test_messages_map_to_roles() -> None:
    out = to_chat_messages(
        [
            SystemMessage("Be brief."),
            HumanMessage("Hi"),
            AIMessage("Hello."),
            ChatMessage(role="user", content="And?"),
            HumanMessage(content=[{"type": "text", "text": "Two "}, "parts"]),
        ]
    )
    assert out == [
        RagzipMessage("system", "Be brief."),
        RagzipMessage("user", "Hi"),
        RagzipMessage("assistant", "Hello."),
        RagzipMessage("user", "And?"),
        RagzipMessage("user", "Two parts"),
    ]


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (ToolMessage("42", tool_call_id="c1"), "unsupported message type 'tool'"),
        (ChatMessage(role="critic", content="x"), "unsupported message type"),
        (
            HumanMessage(content=[{"type": "image_url", "image_url": {"url": "data:,"}}]),
            "only text content",
        ),
        (
            AIMessage("", tool_calls=[{"name": "f", "args": {}, "id": "1"}]),
            "tool calls are not supported",
        ),
    ],
)
def test_unsupported_messages_are_input_errors(message: Any, match: str) -> None:
    with pytest.raises(InputError, match=match):
        to_chat_messages([message])


def test_cut_at_stop() -> None:
    assert _cut_at_stop("Paris. Next question", ["Next", "."]) == ("Paris", True)
    assert _cut_at_stop("Paris", ["\n"]) == ("Paris", False)
    assert _cut_at_stop("Paris", [""]) == ("Paris", False)


def test_only_ragzip_generators_are_accepted() -> None:
    with pytest.raises(ValidationError, match="ragzip Generator"):
        RagzipChatModel(generator="smollm2")  # type: ignore[arg-type]


# -- the embedded generator ---------------------------------------------------------------------


@pytest.mark.slow
def test_answers_like_the_generator_itself(generator: Any) -> None:
    llm = RagzipChatModel(generator=generator, max_new_tokens=12)
    messages = [
        SystemMessage("Reply with a short answer only, a few words."),
        HumanMessage("What is the capital of France?"),
    ]
    reply = llm.invoke(messages)
    direct = generator.generate(to_chat_messages(messages), max_new_tokens=12)
    assert isinstance(reply, AIMessage)
    assert reply.content == direct.text
    assert "Paris" in reply.content
    usage = reply.usage_metadata
    assert usage is not None
    assert (
        usage["input_tokens"]
        == direct.prompt_tokens
        == generator.count_prompt_tokens(to_chat_messages(messages))
    )
    assert usage["output_tokens"] == direct.completion_tokens
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    meta = reply.response_metadata
    assert meta["model_name"] == generator.name
    assert meta["finish_reason"] in {"stop", "length"}
    assert 0 < meta["ttft_s"] <= meta["total_s"]
    # greedy: the same messages give the same answer, sync or async
    assert llm.invoke(messages).content == reply.content
    assert asyncio.run(llm.ainvoke(messages)).content == reply.content


@pytest.mark.slow
def test_stop_sequences_and_limits(generator: Any) -> None:
    llm = RagzipChatModel(generator=generator, max_tokens=24)
    assert llm.max_new_tokens == 24
    prompt = "Name the first three months of the year, separated by commas."
    full = llm.invoke(prompt)
    assert "," in full.text
    cut = llm.invoke(prompt, stop=[","])
    assert cut.content == full.text.split(",")[0]
    assert cut.response_metadata["finish_reason"] == "stop"
    short = llm.invoke(prompt, max_new_tokens=2)
    assert short.usage_metadata is not None
    assert short.usage_metadata["output_tokens"] <= 2
    assert short.response_metadata["finish_reason"] == "length"
    with pytest.raises(ConfigError, match="unsupported call options"):
        llm.invoke(prompt, top_p=0.9)
    with pytest.raises(ValidationError, match="greedily"):
        RagzipChatModel(generator=generator, temperature=0.7)
    with pytest.raises(ValidationError, match="max_new_tokens"):
        RagzipChatModel(generator=generator, max_new_tokens=0)


# -- langchain-tests standard suites ------------------------------------------------------------


class _Params:
    @pytest.fixture(autouse=True)
    def _use_generator(self, generator: Any) -> None:
        self._generator = generator

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return RagzipChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"generator": self._generator}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # short answers keep the suite fast on a CPU
        return {**super().standard_chat_model_params, "max_tokens": 16}  # type: ignore[misc]


@pytest.mark.slow
class TestRagzipChatModelUnit(_Params, ChatModelUnitTests):
    """langchain-tests' unit suite (construction, standard parameters)."""


@pytest.mark.slow
class TestRagzipChatModelIntegration(_Params, ChatModelIntegrationTests):
    """langchain-tests' integration suite, run against the embedded SmolLM2.

    Tool calling, structured output, JSON mode and multimodal inputs are not offered, so the
    suite skips those tests by the feature flags below.
    """

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True
