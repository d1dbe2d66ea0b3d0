"""A SIMULATED generator: the timing of a GPU-hosted model serving many users, without the model.

Compression pays only when it costs less than the prefill it saves, and that depends on how fast
the generator prefills and how busy it is. :class:`SimulatedGenerator` stands in for a fast
generator this machine cannot run: alone, a request gets its first token ``overhead_s +
per_token_s · prompt_tokens`` seconds after it arrives (then one token every ``decode_s``),
counting prompt tokens with SmolLM2's tokenizer; concurrent requests share one simulated GPU
(:mod:`ragzip.generators.simulated_engine`: prefill first come first served at the preset's
rate, decode steps slowed by the batch, a KV-cache capacity beyond which requests queue).
Its answer is a fixed sentence that says it is simulated; only its timing means anything.
``ragzip serve-model --simulate NAME`` serves it behind the OpenAI-compatible API, so the proxy,
the profiler and the benchmarks measure it over real HTTP like any server.

Presets (:data:`PRESETS`): approximate prefill and decode rates of published vLLM serving figures
for an 8B model on L4-, A100- and H100-class GPUs and a 70B model on A100-class GPUs, KV-cache
capacities from the models' KV size per token and the memory left after the weights, and the
embedded SmolLM2-135M on this project's 2-core CPU as its profile measured it. Every figure from
them is a simulation and is labelled so.
"""

from __future__ import annotations

import collections.abc
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from ragzip.core.errors import ConfigError, InputError
from ragzip.core.fields import Checked, Count, Ge, NonNegative
from ragzip.core.messages import ChatMessage, validate_messages
from ragzip.generators.base import StreamedToken
from ragzip.generators.simulated_engine import SharedEngine

ANSWER = "This answer is simulated."


@dataclass(frozen=True)
class PrefillModel(Checked):
    """Timing of a simulated generator.

    Attributes:
        name: The served model name (always starts with ``simulated-``).
        overhead_s: Seconds to the first token of an empty prompt (scheduling, one decode step).
        per_token_s: Prefill seconds per prompt token.
        decode_s: Seconds per further token.
        source: Where the figures come from.
        context_window: Tokens of prompt and answer together it reads; a longer prompt is
            refused (as a real server answers 400), the answer cut to what is left.
        decode_batch_s: Seconds a decode step gains per other request decoding at once.
        kv_tokens: KV-cache tokens of all requests in flight together (0: no limit).
    """

    name: str
    overhead_s: NonNegative
    per_token_s: NonNegative
    decode_s: NonNegative
    source: str = ""
    context_window: Annotated[int, Ge(2)] = 8192
    decode_batch_s: NonNegative = 0.0
    kv_tokens: Count = 0

    def __post_init__(self) -> None:
        if not self.name.startswith("simulated-"):
            msg = f"a simulated generator's name starts with 'simulated-', got {self.name!r}"
            raise ConfigError(msg)
        super().__post_init__()

    def describe(self) -> str:
        """One line saying what is simulated and from which figures."""
        capacity = f"{self.kv_tokens} KV-cache tokens" if self.kv_tokens else "no KV limit"
        return (
            f"SIMULATED generator {self.name}: first token after {self.overhead_s * 1e3:g} ms + "
            f"{self.per_token_s * 1e3:g} ms per prompt token, prefill shared first come first "
            f"served, {capacity} ({self.source})"
        )

    def ttft_s(self, prompt_tokens: int) -> float:
        """Seconds to the first token of a prompt of ``prompt_tokens`` tokens."""
        return self.overhead_s + self.per_token_s * prompt_tokens


PRESETS: Mapping[str, PrefillModel] = {
    "8b-l4": PrefillModel(
        "simulated-8b-l4",
        overhead_s=0.03,
        per_token_s=0.0004,
        decode_s=0.055,
        decode_batch_s=0.0006,
        kv_tokens=40_000,
        source="an 8B model in vLLM on one L4-class GPU (24 GB): ~2.5k prefill tokens/s, ~18 "
        "tokens/s decode alone, ~5 GB of KV cache at 128 KiB per token (approximate, published "
        "serving benchmarks)",
    ),
    "8b-a100": PrefillModel(
        "simulated-8b-a100",
        overhead_s=0.015,
        per_token_s=0.0001,
        decode_s=0.012,
        decode_batch_s=0.00015,
        kv_tokens=400_000,
        source="an 8B model in vLLM on one A100-class GPU: ~10k prefill tokens/s, ~80 tokens/s "
        "decode alone, ~50 GB of KV cache at 128 KiB per token (approximate, published serving "
        "benchmarks)",
    ),
    "8b-h100": PrefillModel(
        "simulated-8b-h100",
        overhead_s=0.01,
        per_token_s=0.00004,
        decode_s=0.007,
        decode_batch_s=0.0001,
        kv_tokens=450_000,
        source="an 8B model in vLLM on one H100-class GPU: ~25k prefill tokens/s, ~140 tokens/s "
        "decode alone (approximate, published serving benchmarks)",
    ),
    "70b-a100": PrefillModel(
        "simulated-70b-a100",
        overhead_s=0.035,
        per_token_s=0.001,
        decode_s=0.035,
        decode_batch_s=0.0004,
        kv_tokens=450_000,
        source="a 70B model in vLLM on A100-class GPUs: ~1k prefill tokens/s, ~30 tokens/s "
        "decode alone, KV cache at 320 KiB per token (approximate, published serving "
        "benchmarks)",
    ),
    "smollm2-cpu": PrefillModel(
        "simulated-smollm2-cpu",
        overhead_s=0.063,
        per_token_s=0.0033,
        decode_s=0.065,
        source="the embedded SmolLM2-135M on this project's 2-core CPU, as `ragzip profile` "
        "measured it (ragzip/data/default_profile.json)",
    ),
}


def preset(name: str) -> PrefillModel:
    """The preset called ``name``.

    Raises:
        ConfigError: Unknown name (the message lists the presets).
    """
    try:
        return PRESETS[name]
    except KeyError:
        msg = f"unknown simulated generator {name!r}; presets: {', '.join(PRESETS)}"
        raise ConfigError(msg) from None


class SimulatedGenerator:
    """Streams a fixed answer with the timing of ``model`` (what :func:`create_model_app`
    serves in place of an embedded model).

    Args:
        model: The timing to simulate.
        tokenizer: Counts prompt tokens and renders chat prompts; SmolLM2's by default.
        sleep: Waits the simulated seconds (``time.sleep``; tests pass their own).
        clock: The engine's clock (``time.monotonic``; tests pass one their ``sleep`` moves).
    """

    def __init__(
        self,
        model: PrefillModel,
        tokenizer: Any = None,
        *,
        sleep: collections.abc.Callable[[float], None] = time.sleep,
        clock: collections.abc.Callable[[], float] = time.monotonic,
    ) -> None:
        if tokenizer is None:
            from ragzip.weights import smollm2_counter

            tokenizer = smollm2_counter().tokenizer
        self.timing = model
        self.engine = SharedEngine(model, clock=clock)
        self._tokenizer = tokenizer
        self._sleep = sleep
        self._answer = [int(i) for i in tokenizer(ANSWER, add_special_tokens=False)["input_ids"]]

    @property
    def name(self) -> str:
        return self.timing.name

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def prompt_ids(self, messages: Sequence[ChatMessage | Mapping[str, Any]]) -> list[int]:
        """Token ids of ``messages`` rendered with the chat template and generation prompt."""
        items = validate_messages(messages)
        text = self._tokenizer.apply_chat_template(
            [m.to_dict() for m in items], add_generation_prompt=True, tokenize=False
        )
        return [int(i) for i in self._tokenizer(text, add_special_tokens=False)["input_ids"]]

    def stream_ids(
        self, prompt_ids: Sequence[int], *, max_new_tokens: int = 64
    ) -> collections.abc.Generator[StreamedToken, None, None]:
        """The fixed answer, its first token after the simulated prefill of ``prompt_ids``.

        Raises:
            InputError: An empty prompt, or one the context window cannot hold.
            ConfigError: ``max_new_tokens`` below 1.
        """
        if not prompt_ids:
            msg = "the prompt holds no tokens"
            raise InputError(msg)
        if max_new_tokens < 1:
            msg = f"max_new_tokens must be >= 1, got {max_new_tokens}"
            raise ConfigError(msg)
        window = self.timing.context_window
        if len(prompt_ids) >= window:
            msg = (
                f"the prompt is {len(prompt_ids)} tokens; {self.name} reads at most {window} "
                "(compress the context further)"
            )
            raise InputError(msg)
        return self._steps(len(prompt_ids), min(max_new_tokens, window - len(prompt_ids)))

    def _steps(
        self, prompt_tokens: int, max_new_tokens: int
    ) -> collections.abc.Generator[StreamedToken, None, None]:
        admission = self.engine.admit(prompt_tokens, max_new_tokens)
        try:
            self._sleep(admission.wait_s)
            ids = self._answer[:max_new_tokens]
            self.engine.decoding(+1)
            try:
                for i, token in enumerate(ids):
                    if i:
                        self._sleep(self.engine.decode_step_s())
                    last = i == len(ids) - 1
                    finish = (
                        ("stop" if len(ids) == len(self._answer) else "length") if last else None
                    )
                    text = self._tokenizer.decode([token])
                    yield StreamedToken(token_id=token, text=text, finish_reason=finish)
            finally:
                self.engine.decoding(-1)
        finally:
            self.engine.release(admission)
