"""What an evaluation run measures: one frozen result type per stage and the whole report."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ragzip.evaluation.config import EvalConfig

if TYPE_CHECKING:
    pass


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalModeResult:
    """Recall of one search mode.

    Attributes:
        mode: ``bm25``, ``dense`` or ``hybrid``.
        recall: Recall at each cut-off.
        ms_per_query: Batched search time per query.
    """

    mode: str
    recall: Mapping[int, float]
    ms_per_query: float


@dataclass(frozen=True)
class RetrievalResult:
    """The retrieval stage.

    Attributes:
        questions: Questions scored.
        corpus_documents: Documents indexed (the 2,000 NQ passages).
        index_units: Passages or chunks in the index.
        index_seconds: Time to build or load the index.
        index_source: ``built`` or ``cache``.
        modes: One result per search mode.
    """

    questions: int
    corpus_documents: int
    index_units: int
    index_seconds: float
    index_source: str
    modes: tuple[RetrievalModeResult, ...]


@dataclass(frozen=True)
class CompressionRow:
    """One compressor at one requested ratio, over the NQ contexts.

    Attributes:
        compressor: Registry name.
        requested_ratio: Asked-for compression factor.
        n: Contexts compressed.
        answer_recall: Fraction of contexts in which an accepted answer survived.
        achieved_ratio: Mean original tokens over mean kept tokens.
        adherence: ``achieved_ratio / requested_ratio``.
        budget_violations: Contexts whose recounted kept tokens exceed the budget (must be 0;
            a ratio raised because it would have kept nothing is held to the budget used).
        original_tokens: Mean context tokens before compression.
        compressed_tokens: Mean context tokens after compression.
        ms_per_1k_tokens: Mean compression time per 1,000 original tokens.
        ms_mean: Mean compression time per context.
        ms_p95: 95th percentile of compression time per context.
        answered: NQ line numbers of the questions whose answer survived (for subset analyses).
    """

    compressor: str
    requested_ratio: float
    n: int
    answer_recall: float
    achieved_ratio: float
    adherence: float
    budget_violations: int
    original_tokens: float
    compressed_tokens: float
    ms_per_1k_tokens: float
    ms_mean: float
    ms_p95: float
    answered: tuple[int, ...] = ()


@dataclass(frozen=True)
class CompressionStage:
    """The compression stage.

    Attributes:
        k: Passages per context.
        questions: Questions whose contexts were compressed.
        context_answer_recall: Fraction of uncompressed contexts holding an accepted answer.
        gold_in_context: Fraction of contexts holding the gold passage.
        rows: One row per compressor × ratio.
        compressor_configs: Each compressor's configuration (seeds included).
    """

    k: int
    questions: int
    context_answer_recall: float
    gold_in_context: float
    rows: tuple[CompressionRow, ...]
    compressor_configs: Mapping[str, Any]


@dataclass(frozen=True)
class GenerationRow:
    """The generator answering from one kind of context.

    Attributes:
        setting: ``uncompressed`` or a compressor name.
        ratio: Requested compression factor (1.0 uncompressed).
        n: Questions answered.
        em: SQuAD exact match.
        f1: SQuAD token F1.
        accuracy: An accepted answer occurs in the generation.
        context_tokens: Mean context tokens sent.
        prompt_tokens: Mean prompt tokens (template and question included).
        ttft_ms: Mean time to first token.
        ttft_ms_p50: Median time to first token.
        total_ms: Mean generation time.
        compress_ms: Mean compression time.
        prefill_gflops: Estimated prefill cost of the mean prompt (``nan`` when the generator's
            weights are not local).
    """

    setting: str
    ratio: float
    n: int
    em: float
    f1: float
    accuracy: float
    context_tokens: float
    prompt_tokens: float
    ttft_ms: float
    ttft_ms_p50: float
    total_ms: float
    compress_ms: float
    prefill_gflops: float = math.nan


@dataclass(frozen=True)
class GenerationStage:
    """The generation stage.

    Attributes:
        generator: Name of the generator (the model it runs).
        tokenizer: Name of its tokenizer (budgets are counted in it).
        max_new_tokens: Answer length limit.
        rows: Uncompressed first, then one row per compressor.
        examples: The first few predictions of each setting, for reading.
    """

    generator: str
    tokenizer: str
    max_new_tokens: int
    rows: tuple[GenerationRow, ...]
    examples: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class KVRow:
    """One compressor at one ratio on the key-value cases.

    Attributes:
        compressor: Registry name.
        requested_ratio: Asked-for compression factor.
        n: Cases.
        value_survival: Fraction of cases whose asked value survives verbatim.
        pair_survival: Fraction whose whole ``"key": "value"`` record survives verbatim.
        achieved_ratio: Mean original over mean kept tokens.
        budget_violations: Cases over budget (must be 0).
        ms_per_1k_tokens: Mean compression time per 1,000 original tokens.
        survived: Indices of the cases whose value survived.
    """

    compressor: str
    requested_ratio: float
    n: int
    value_survival: float
    pair_survival: float
    achieved_ratio: float
    budget_violations: int
    ms_per_1k_tokens: float
    survived: tuple[int, ...] = ()


@dataclass(frozen=True)
class KVStage:
    """The key-value stage.

    Attributes:
        cases: Cases scored.
        records_per_case: Mean records (passages) per case.
        rows: One row per compressor × ratio.
    """

    cases: int
    records_per_case: float
    rows: tuple[KVRow, ...]


@dataclass(frozen=True)
class EvalReport:
    """Everything one evaluation run measured.

    Attributes:
        config: What was asked for.
        started_at: ISO-8601 UTC start time.
        finished_at: ISO-8601 UTC end time.
        duration_s: Wall time.
        tokenizer: Name of the token counter budgets were counted in.
        data: Data files, split and question ids used.
        machine: Platform and library versions.
        retrieval: Retrieval stage, or ``None`` when skipped.
        compression: Compression stage, or ``None``.
        generation: Generation stage, or ``None``.
        kv: Key-value stage, or ``None``.
    """

    config: EvalConfig
    started_at: str
    finished_at: str
    duration_s: float
    tokenizer: str
    data: Mapping[str, Any]
    machine: Mapping[str, Any]
    retrieval: RetrievalResult | None = None
    compression: CompressionStage | None = None
    generation: GenerationStage | None = None
    kv: KVStage | None = None
    stage_seconds: Mapping[str, float] = field(default_factory=dict)
