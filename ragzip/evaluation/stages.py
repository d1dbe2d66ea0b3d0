"""The evaluation stages: retrieval recall, compression quality and cost, generation, KV."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ragzip.core.errors import ConfigError
from ragzip.core.framing import PLAIN_CONTEXT
from ragzip.core.types import Budget, Passage
from ragzip.evaluation import metrics
from ragzip.evaluation.config import NO_CONTEXT, RETRIEVAL_MODES, UNCOMPRESSED
from ragzip.evaluation.progress import ProgressTask
from ragzip.evaluation.results import CompressionRow, GenerationRow, KVRow, RetrievalModeResult
from ragzip.experiments.datasets import (
    KVCase,
    NQExample,
)

if TYPE_CHECKING:
    from rich.progress import Progress

    from ragzip.compressor import Compressor
    from ragzip.core.tokenization import TokenCounter
    from ragzip.generators.base import Generator
    from ragzip.retrievers.base import SearchIndex
    from ragzip.retrievers.fusion import Mode


def _source_ids(results: Sequence[Passage]) -> list[str]:
    return [metrics.source_id(p) for p in results]


def _recount_violation(counter: TokenCounter, context: str, budget_tokens: int) -> bool:
    """Whether the context as sent, counted again, exceeds the budget (ratios are of what is
    sent: the passages joined as the default layout writes them)."""
    return (counter.count(context) if context else 0) > budget_tokens


def _sent_tokens(counter: TokenCounter, passages: Sequence[Passage]) -> int:
    """Tokens of ``passages`` as the default layout sends them whole."""
    whole = PLAIN_CONTEXT.render_texts([p.text for p in passages])
    return counter.count(whole) if whole else 0


def _ms_per_1k(seconds: float, original_tokens: int) -> float:
    return seconds * 1e6 / original_tokens if original_tokens else math.nan


# -- stages -----------------------------------------------------------------------------------


def evaluate_retrieval(
    index: SearchIndex,
    questions: Sequence[NQExample],
    gold: Mapping[int, frozenset[str]],
    *,
    ks: Sequence[int] = (1, 5, 10),
    modes: Sequence[Mode] = RETRIEVAL_MODES,
    bar: Progress | None = None,
) -> list[RetrievalModeResult]:
    """Recall@k of each search mode for ``questions`` (batched search)."""
    queries = [q.question for q in questions]
    golds = [gold[q.index] for q in questions]
    task = ProgressTask(bar, "retrieval", len(modes))
    out: list[RetrievalModeResult] = []
    for mode in modes:
        t0 = time.perf_counter()
        results = index.search_batch(queries, max(ks), mode=mode)
        seconds = time.perf_counter() - t0
        ids = [_source_ids(r) for r in results]
        out.append(
            RetrievalModeResult(
                mode=mode,
                recall={k: metrics.recall_at_k(ids, golds, k) for k in ks},
                ms_per_query=seconds * 1000 / len(queries),
            )
        )
        task.advance()
    return out


def evaluate_compression(
    compressors: Mapping[str, Compressor],
    questions: Sequence[NQExample],
    contexts: Sequence[Sequence[Passage]],
    ratios: Sequence[float],
    counter: TokenCounter,
    *,
    bar: Progress | None = None,
    on_step: Callable[[str], None] | None = None,
) -> list[CompressionRow]:
    """Answer-in-context recall, achieved ratio, violations and speed per compressor × ratio.

    ``on_step`` is called with ``"<compressor> <ratio>x"`` as each row starts.
    """
    task = ProgressTask(bar, "compression", len(compressors) * len(ratios) * len(questions))
    rows: list[CompressionRow] = []
    for name, comp in compressors.items():
        for ratio in ratios:
            if on_step is not None:
                on_step(f"{name} {ratio:g}x")
            budget = Budget.compression(ratio)
            answered: list[int] = []
            originals, kept, violations, seconds, per_1k = [], [], 0, [], []
            for q, ctx in zip(questions, contexts, strict=True):
                res = comp.compress(q.question, ctx, budget=budget)
                if metrics.answer_in_context(q.answers, res.texts):
                    answered.append(q.index)
                originals.append(res.original_tokens)
                kept.append(res.compressed_tokens)
                allowed = budget.resolve(_sent_tokens(counter, ctx))
                # a ratio raised because it would have kept nothing: held to the budget used
                allowed = res.budget_tokens if res.budget_raised else allowed
                violations += _recount_violation(counter, res.context, allowed)
                seconds.append(res.timings["total"])
                per_1k.append(_ms_per_1k(res.timings["total"], res.original_tokens))
                task.advance()
            achieved = metrics.pooled_ratio(originals, kept)
            rows.append(
                CompressionRow(
                    compressor=name,
                    requested_ratio=ratio,
                    n=len(questions),
                    answer_recall=len(answered) / len(questions),
                    achieved_ratio=achieved,
                    adherence=metrics.rate_adherence(achieved, ratio),
                    budget_violations=violations,
                    original_tokens=metrics.mean(originals),
                    compressed_tokens=metrics.mean(kept),
                    ms_per_1k_tokens=metrics.mean(v for v in per_1k if math.isfinite(v)),
                    ms_mean=metrics.mean(s * 1000 for s in seconds),
                    ms_p95=metrics.percentile((s * 1000 for s in seconds), 95),
                    answered=tuple(answered),
                )
            )
    return rows


def evaluate_generation(
    generator: Generator,
    compressors: Mapping[str, Compressor],
    questions: Sequence[NQExample],
    contexts: Sequence[Sequence[Passage]],
    ratio: float,
    *,
    max_new_tokens: int = 32,
    n_examples: int = 5,
    bar: Progress | None = None,
) -> tuple[list[GenerationRow], list[dict[str, Any]]]:
    """EM/F1 of ``generator`` on uncompressed contexts and on each compressor's at ``ratio``.

    The uncompressed row sends every retrieved passage whole (the ``identity`` compressor at 1x),
    through the same :class:`~ragzip.pipeline.Pipeline` as the compressed rows. Soft compressors
    (vectors instead of text) need a generator that reads embeddings; their rows count vectors as
    context tokens, and the prompt length includes one placeholder per vector.

    Raises:
        ConfigError: A soft compressor with a generator that cannot read embeddings (found by
            compressing the first question before any generation).
    """
    from ragzip.registry import create_compressor

    if questions and not generator.accepts_embeddings:
        first = (questions[0].question, contexts[0], Budget.compression(ratio))
        for name, comp in compressors.items():
            if comp.compress(first[0], first[1], budget=first[2]).embeddings is not None:
                msg = (
                    f"compressor {name!r} returns embeddings, and generator "
                    f"{generator.name!r} cannot read them: "
                    f"{generator.embeddings_unsupported_reason()}"
                )
                raise ConfigError(msg)

    from ragzip.evaluation.answering import (
        AnswerSetting,
        answer_all,
        example_records,
        prefill_gflops,
        summarize,
    )

    identity = create_compressor("identity", counter=generator.counter)
    settings = [
        AnswerSetting(UNCOMPRESSED, identity, Budget.compression(1.0)),
        AnswerSetting(NO_CONTEXT, identity, Budget.compression(1.0), with_context=False),
        *(
            AnswerSetting(name, comp, Budget.compression(ratio))
            for name, comp in compressors.items()
        ),
    ]
    task = ProgressTask(bar, "generation", len(settings) * len(questions))
    answers = answer_all(
        generator,
        settings,
        questions,
        contexts,
        max_new_tokens=max_new_tokens,
        on_answer=lambda _: task.advance(),
    )
    rows = [summarize(s.label, s.budget.ratio or ratio, answers[s.label]) for s in settings]
    model = getattr(generator, "model", None)
    if model is not None:
        rows = [replace(r, prefill_gflops=prefill_gflops(model, r.prompt_tokens)) for r in rows]
    examples = [r for s in settings for r in example_records(answers[s.label], n_examples)]
    return rows, examples


def evaluate_kv(
    compressors: Mapping[str, Compressor],
    cases: Sequence[KVCase],
    ratios: Sequence[float],
    counter: TokenCounter,
    *,
    bar: Progress | None = None,
    on_step: Callable[[str], None] | None = None,
) -> list[KVRow]:
    """Whether the asked value survives each compressor at each ratio.

    ``on_step`` is called with ``"<compressor> <ratio>x"`` as each row starts.
    """
    task = ProgressTask(bar, "key-value", len(compressors) * len(ratios) * len(cases))
    prepared = [(case, case.passages()) for case in cases]
    originals_by_case = [_sent_tokens(counter, ps) for _, ps in prepared]
    rows: list[KVRow] = []
    for name, comp in compressors.items():
        for ratio in ratios:
            if on_step is not None:
                on_step(f"{name} {ratio:g}x")
            budget = Budget.compression(ratio)
            survived: list[int] = []
            pair_hits = violations = 0
            originals, kept, per_1k = [], [], []
            for (case, passages), original in zip(prepared, originals_by_case, strict=True):
                res = comp.compress(case.query, passages, budget=budget)
                record = f'"{case.key}": "{case.value}"'
                if any(case.value in t for t in res.texts):
                    survived.append(case.index)
                pair_hits += any(record in t for t in res.texts)
                allowed = res.budget_tokens if res.budget_raised else budget.resolve(original)
                violations += _recount_violation(counter, res.context, allowed)
                originals.append(res.original_tokens)
                kept.append(res.compressed_tokens)
                per_1k.append(_ms_per_1k(res.timings["total"], res.original_tokens))
                task.advance()
            rows.append(
                KVRow(
                    compressor=name,
                    requested_ratio=ratio,
                    n=len(cases),
                    value_survival=len(survived) / len(cases),
                    pair_survival=pair_hits / len(cases),
                    achieved_ratio=metrics.pooled_ratio(originals, kept),
                    budget_violations=violations,
                    ms_per_1k_tokens=metrics.mean(v for v in per_1k if math.isfinite(v)),
                    survived=tuple(survived),
                )
            )
    return rows
