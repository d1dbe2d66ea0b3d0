"""A ragzip generator as a LlamaIndex LLM.

:class:`RagzipLLM` lets the embedded SmolLM2 (or any ragzip
:class:`~ragzip.generators.base.Generator`, such as an
:class:`~ragzip.generators.openai_compat.OpenAIGenerator` in front of vLLM) answer in LlamaIndex
query engines, offline. Decoding is greedy: the same prompt gives the same answer.
"""

from __future__ import annotations

from typing import Any

from ragzip.core.errors import InputError, needs_extra
from ragzip.generators.base import Generator
from ragzip.integrations.common import require

with needs_extra("llamaindex", "the LlamaIndex integration needs llama-index-core"):
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.llms import (
        CompletionResponse,
        CompletionResponseGen,
        CustomLLM,
        LLMMetadata,
    )
    from llama_index.core.llms.callbacks import llm_completion_callback


class RagzipLLM(CustomLLM):
    """A ragzip generator as a LlamaIndex ``CustomLLM`` (a completion model).

    Each prompt is sent as one user message through the generator's chat template.

    Args:
        generator: A ragzip generator; the embedded SmolLM2 when omitted (loaded on first use).
        max_new_tokens: The most tokens an answer may have.
        context_window: The model's context window, for LlamaIndex's prompt packing.
    """

    max_new_tokens: int = Field(default=64, gt=0, description="Most tokens per answer.")
    context_window: int = Field(default=8192, gt=0, description="The model's context window.")
    _generator: Generator | None = PrivateAttr(default=None)

    def __init__(self, generator: Generator | None = None, **kwargs: Any) -> None:
        if generator is not None:
            require(generator, Generator, "generator", "a ragzip Generator")
        super().__init__(**kwargs)
        self._generator = generator

    @classmethod
    def class_name(cls) -> str:
        return "RagzipLLM"

    @property
    def generator(self) -> Generator:
        """The wrapped generator (the embedded SmolLM2 is loaded on first use)."""
        if self._generator is None:
            from ragzip.generators.embedded import EmbeddedGenerator

            self._generator = EmbeddedGenerator()
        return self._generator

    @property
    def metadata(self) -> LLMMetadata:
        name = self._generator.name if self._generator is not None else "smollm2"
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_new_tokens,
            model_name=name,
            is_chat_model=False,
        )

    def _answer(self, prompt: str) -> Any:
        if not isinstance(prompt, str) or not prompt.strip():
            msg = "the prompt must be a non-empty string"
            raise InputError(msg)
        return self.generator.generate(
            [{"role": "user", "content": prompt}], max_new_tokens=self.max_new_tokens
        )

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        done = self._answer(prompt)
        return CompletionResponse(
            text=done.text,
            raw={
                "prompt_tokens": done.prompt_tokens,
                "completion_tokens": done.completion_tokens,
                "finish_reason": done.finish_reason,
            },
        )

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        done = self.complete(prompt, formatted=formatted, **kwargs)

        def gen() -> CompletionResponseGen:
            yield CompletionResponse(text=done.text, delta=done.text, raw=done.raw)

        return gen()
