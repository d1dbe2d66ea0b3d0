"""Retrieve → compress → generate, in one call, over one typed state.

Data flows one way: a retriever (or the caller) supplies passages, a compressor cuts them to the
budget, a generator answers from what is left. Each stage is timed. Soft compressors (which
return vectors, not text) need a generator that reads embeddings
(:attr:`~ragzip.generators.base.Generator.accepts_embeddings`); the generation stage then splices
the vectors into the prompt at placeholder tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ragzip.cache.feature_cache import FeatureCache
from ragzip.compressor import Compressor
from ragzip.core.errors import ConfigError, InputError
from ragzip.core.types import Budget, CompressionResult, Decision, Passage
from ragzip.prompts import DEFAULT_SYSTEM_PROMPT, PROMPT_CONTEXT

if TYPE_CHECKING:
    from ragzip.generators.base import Generation, Generator
    from ragzip.retrievers.base import Retriever


@dataclass(frozen=True)
class PipelineResult:
    """Everything one pipeline run produced.

    Attributes:
        query: The question, verbatim.
        retrieved: Passages from the retrieval stage (or given by the caller).
        compression: The compressor's result.
        generation: The generator's answer, or ``None`` when the pipeline has no generator.
        prompt_tokens: Tokens of the full prompt sent to the generator (0 without one); for a
            soft compressor one per vector, template and question included.
        timings: Seconds per stage: ``retrieve``, ``compress``, ``generate``, ``total``.
    """

    query: str
    retrieved: tuple[Passage, ...]
    compression: CompressionResult
    generation: Generation | None
    prompt_tokens: int
    timings: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "timings", MappingProxyType(dict(self.timings)))

    @property
    def answer(self) -> str:
        """The generated answer (empty without a generator)."""
        return self.generation.text if self.generation else ""

    @property
    def decision(self) -> Decision | None:
        """With the ``"auto"`` compressor: whether and how it compressed, and why; else ``None``."""
        return self.compression.decision


@dataclass(frozen=True)
class _State:
    query: str
    passages: tuple[Passage, ...] = ()
    compression: CompressionResult | None = None
    generation: Generation | None = None
    prompt_tokens: int = 0
    timings: Mapping[str, float] = field(default_factory=dict)

    def timed(self, stage: str, seconds: float, **changes: Any) -> _State:
        return replace(self, timings={**self.timings, stage: seconds}, **changes)


class Pipeline:
    """Retrieve, compress and generate.

    Args:
        compressor: Any :class:`~ragzip.compressor.Compressor`; its token counter should be the
            generator's (``Pipeline.from_defaults`` wires that).
        budget: Context budget in the generator's tokenizer.
        retriever: Supplies passages for a query; optional when passages are passed to ``run``.
        generator: Answers from the compressed context; optional (compression-only pipeline).
        k: Passages to retrieve.
        system_prompt: Instructions sent verbatim.
        max_new_tokens: Answer length limit.
    """

    def __init__(
        self,
        compressor: Compressor,
        budget: Budget,
        *,
        retriever: Retriever | None = None,
        generator: Generator | None = None,
        k: int = 10,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_new_tokens: int = 32,
    ) -> None:
        if k < 1:
            msg = f"k must be >= 1, got {k}"
            raise ConfigError(msg)
        self.compressor = compressor
        self.budget = budget
        self.retriever = retriever
        self.generator = generator
        self.k = k
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        cache = feature_cache_of(compressor)
        share = getattr(retriever, "share_features", None)
        if cache is not None and callable(share):
            # the question's vector from dense retrieval and the sentences' vectors precomputed
            # at index time are then found by the compressor instead of being computed again
            share(cache)

    @classmethod
    def from_defaults(
        cls,
        index: str | Path | Retriever | None = None,
        *,
        compressor: str = "mig",
        budget: Budget | str = "4x",
        generator: Generator | None = None,
        compressor_config: Mapping[str, Any] | None = None,
        k: int = 5,
    ) -> Pipeline:
        """The embedded defaults: a hybrid index on disk, a registered compressor, SmolLM2.

        Args:
            index: Path of an index written by ``ragzip index`` (or any retriever), or ``None``.
            compressor: Registry name.
            budget: A :class:`Budget` or a string such as ``"256"`` or ``"4x"``.
            generator: Defaults to the embedded SmolLM2 generator.
            compressor_config: Config fields of the compressor.
            k: Passages to retrieve.
        """
        from ragzip.registry import create_compressor

        if generator is None:
            from ragzip.generators.embedded import EmbeddedGenerator

            generator = EmbeddedGenerator()
        retriever: Retriever | None
        if index is None or not isinstance(index, str | Path):
            retriever = index
        else:
            from ragzip.retrievers.index import HybridIndex

            retriever = HybridIndex.load(index)
        comp = create_compressor(compressor, counter=generator.counter, config=compressor_config)
        parsed = budget if isinstance(budget, Budget) else Budget.parse(budget)
        return cls(comp, parsed, retriever=retriever, generator=generator, k=k)

    def run(
        self,
        query: str,
        passages: Sequence[Passage | str | Mapping[str, Any]] | None = None,
        *,
        budget: Budget | None = None,
    ) -> PipelineResult:
        """Answer ``query``.

        Args:
            query: The user's question.
            passages: Context to use instead of retrieving.
            budget: Overrides the pipeline's budget for this call.

        Raises:
            InputError: Empty query, or neither passages nor a retriever.
        """
        if not isinstance(query, str) or not query.strip():
            msg = "query must be a non-empty string"
            raise InputError(msg)
        t0 = time.perf_counter()
        state = _State(query=query)
        state = self._retrieve(state, passages)
        state = self._compress(state, budget or self.budget)
        state = self._generate(state)
        timings = {**state.timings, "total": time.perf_counter() - t0}
        assert state.compression is not None
        return PipelineResult(
            query=query,
            retrieved=state.passages,
            compression=state.compression,
            generation=state.generation,
            prompt_tokens=state.prompt_tokens,
            timings=timings,
        )

    __call__ = run

    async def arun(
        self,
        query: str,
        passages: Sequence[Passage | str | Mapping[str, Any]] | None = None,
        *,
        budget: Budget | None = None,
    ) -> PipelineResult:
        """Async variant of :meth:`run` (runs in a worker thread)."""
        return await asyncio.to_thread(self.run, query, passages, budget=budget)

    # -- stages -------------------------------------------------------------------------------

    def _retrieve(
        self, state: _State, passages: Sequence[Passage | str | Mapping[str, Any]] | None
    ) -> _State:
        t = time.perf_counter()
        if passages is not None:
            if isinstance(passages, str | bytes):
                msg = "passages must be a sequence, not a single string"
                raise InputError(msg)
            found = tuple(Passage.coerce(p) for p in passages)
        elif self.retriever is not None:
            found = tuple(self.retriever.retrieve(state.query, k=self.k))
        else:
            msg = "no passages given and the pipeline has no retriever"
            raise InputError(msg)
        return state.timed("retrieve", time.perf_counter() - t, passages=found)

    def _compress(self, state: _State, budget: Budget) -> _State:
        t = time.perf_counter()
        # The budget counts the context exactly as the prompt writes it.
        result = self.compressor.compress(
            state.query, state.passages, budget=budget, layout=PROMPT_CONTEXT
        )
        return state.timed("compress", time.perf_counter() - t, compression=result)

    def _generate(self, state: _State) -> _State:
        if self.generator is None:
            return state
        assert state.compression is not None
        t = time.perf_counter()
        generation = self.generator.generate_compressed(
            state.compression, system_prompt=self.system_prompt, max_new_tokens=self.max_new_tokens
        )
        return state.timed(
            "generate",
            time.perf_counter() - t,
            generation=generation,
            prompt_tokens=generation.prompt_tokens,
        )


def feature_cache_of(compressor: Compressor) -> FeatureCache | None:
    """The feature cache ``compressor`` (or, for ``auto``, one of its candidates) embeds
    through, or ``None``."""
    candidates = getattr(compressor, "candidates", {})
    for comp in (compressor, *candidates.values()):
        cache = getattr(comp, "features", None)
        if isinstance(cache, FeatureCache):
            return cache
    return None
