"""Run the evaluation: retrieval, compression, generation and key-value survival.

Four stages, each optional, over one :class:`EvalConfig`:

1. **retrieval** — a hybrid index (a folder, or Postgres with ``--backend``) over all 2,000 NQ
   passages; recall@k of ``bm25``, ``dense`` and ``hybrid`` search for the split's questions.
2. **compression** — each question's top-``k`` hybrid results are compressed by every compressor
   at every requested ratio; answer-in-context recall, achieved ratio, budget violations (recounted
   here, independently of the compressor's own numbers) and compression speed.
3. **generation** — the embedded generator answers the first ``generate_n`` questions from the
   uncompressed context and from each compressor's context at one ratio; SQuAD EM/F1, answer
   accuracy, prompt tokens and time to first token.
4. **kv** — each key-value case's 75 records as passages; whether the asked value survives
   compression verbatim (the "Lost in the Middle" KV task, Liu et al., 2023).

Budgets are counted in the generator's tokenizer throughout.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ragzip.core.machine import machine_info
from ragzip.core.types import Passage
from ragzip.evaluation import metrics
from ragzip.evaluation.config import EvalConfig
from ragzip.evaluation.indexing import load_or_build_index
from ragzip.evaluation.progress import progress_bar
from ragzip.evaluation.results import (
    CompressionStage,
    EvalReport,
    GenerationStage,
    KVStage,
    RetrievalResult,
)
from ragzip.evaluation.stages import (
    _source_ids,
    evaluate_compression,
    evaluate_generation,
    evaluate_kv,
    evaluate_retrieval,
)
from ragzip.experiments.datasets import (
    gold_doc_ids,
    load_kv,
    load_nq,
    nq_corpus,
    nq_split,
    resolve_data_dir,
)

if TYPE_CHECKING:
    from rich.console import Console

    from ragzip.compressor import Compressor
    from ragzip.core.tokenization import TokenCounter
    from ragzip.generators.base import Generator

logger = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- orchestration ----------------------------------------------------------------------------


def _compressor_config(comp: Compressor) -> Any:
    config = getattr(comp, "config", None)
    if config is not None and dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return None


def run_eval(
    config: EvalConfig,
    *,
    counter: TokenCounter | None = None,
    generator: Generator | None = None,
    embedder: Any = None,
    progress: bool = True,
    console: Console | None = None,
    on_stage: Callable[[str], None] | None = None,
    checkpoint: Callable[[EvalReport], object] | None = None,
) -> EvalReport:
    """Run every enabled stage of ``config``.

    Args:
        config: What to evaluate.
        counter: Token counter budgets are counted in; defaults to the generator's, or
            SmolLM2's tokenizer when there is no generator.
        generator: Used when ``config.generate_n > 0``; defaults to the local model
            ``config.generator`` names (the embedded SmolLM2).
        embedder: Sentence embedder for the dense index (defaults to the embedded MiniLM).
        progress: Show rich progress bars.
        console: Console the progress bars draw on.
        on_stage: Called with each stage's name as it starts, and with
            ``"compression: <compressor> <ratio>x"`` (``kv: ...``) as each row starts.
        checkpoint: Called with the report so far after each stage (e.g. to write it, so a
            long run that fails late keeps what it measured).

    Raises:
        InputError: Missing or malformed data files.
        RegistryError: An unknown compressor name.
        ConfigError: A malformed compressor spec or a bad setting in one.
    """
    from ragzip.registry import create_compressor, generator_config, parse_spec

    started, t_start = _now(), time.perf_counter()
    for name in config.compressors:
        parse_spec(name).build_config()  # fail on bad names or settings before expensive work
    data_dir = resolve_data_dir(config.data_dir)
    all_nq = load_nq(data_dir)
    split = nq_split(config.split, examples=all_nq)
    questions = split[: config.questions]
    need_nq_index = config.retrieval or config.compression or config.generate_n > 0
    gen_questions = questions[: config.generate_n]

    if config.generate_n and generator is None:
        from ragzip.generators.local import embedded_generator

        generator = embedded_generator(config.generator)
    if counter is None:
        if generator is not None:
            counter = generator.counter
        else:
            from ragzip.weights import smollm2_counter

            counter = smollm2_counter()

    compressors = {
        n: create_compressor(
            n, counter=counter, config=generator_config(n, config.generator) or None
        )
        for n in config.compressors
    }
    stage_seconds: dict[str, float] = {}
    retrieval: RetrievalResult | None = None
    compression: CompressionStage | None = None
    generation: GenerationStage | None = None
    kv: KVStage | None = None
    machine = machine_info()
    data: dict[str, Any] = {
        "data_dir": str(data_dir),
        "split": config.split,
        "split_size": len(split),
        "questions": len(questions),
        "question_indices": [q.index for q in questions],
        "corpus_documents": len(all_nq),
    }

    def stage(name: str) -> None:
        if on_stage is not None:
            on_stage(name)

    def snapshot() -> EvalReport:
        assert counter is not None
        return EvalReport(
            config=config,
            started_at=started,
            finished_at=_now(),
            duration_s=time.perf_counter() - t_start,
            tokenizer=counter.name,
            data=data,
            machine=machine,
            retrieval=retrieval,
            compression=compression,
            generation=generation,
            kv=kv,
            stage_seconds=dict(stage_seconds),
        )

    def done() -> None:
        if checkpoint is not None:
            checkpoint(snapshot())

    with progress_bar(progress, console) as bar:
        contexts: list[list[Passage]] = []
        if need_nq_index:
            stage("index")
            t0 = time.perf_counter()
            corpus = nq_corpus(all_nq)
            gold = gold_doc_ids(all_nq)
            index, source, index_s = load_or_build_index(
                corpus,
                cache=config.index_cache,
                chunk=config.chunk,
                embedder=embedder,
                progress=progress,
                backend=config.backend,
                dsn=config.dsn,
            )
            stage_seconds["index"] = time.perf_counter() - t0
            if config.retrieval:
                stage("retrieval")
                t0 = time.perf_counter()
                modes = evaluate_retrieval(index, questions, gold, ks=config.retrieval_ks, bar=bar)
                retrieval = RetrievalResult(
                    questions=len(questions),
                    corpus_documents=len(corpus),
                    index_units=len(index),
                    index_seconds=index_s,
                    index_source=source,
                    modes=tuple(modes),
                )
                stage_seconds["retrieval"] = time.perf_counter() - t0
                done()
            if config.compression or config.generate_n:
                t0 = time.perf_counter()
                ctx_questions = questions if config.compression else gen_questions
                found = index.search_batch(
                    [q.question for q in ctx_questions], config.k, mode="hybrid"
                )
                contexts = [list(r) for r in found]
                stage_seconds["contexts"] = time.perf_counter() - t0
            if config.compression:
                stage("compression")
                t0 = time.perf_counter()
                rows = evaluate_compression(
                    compressors,
                    questions,
                    contexts,
                    config.ratios,
                    counter,
                    bar=bar,
                    on_step=lambda step: stage(f"compression: {step}"),
                )
                compression = CompressionStage(
                    k=config.k,
                    questions=len(questions),
                    context_answer_recall=metrics.mean(
                        float(metrics.answer_in_context(q.answers, [p.text for p in c]))
                        for q, c in zip(questions, contexts, strict=True)
                    ),
                    gold_in_context=metrics.mean(
                        float(metrics.hit_at_k(_source_ids(c), gold[q.index], config.k))
                        for q, c in zip(questions, contexts, strict=True)
                    ),
                    rows=tuple(rows),
                    compressor_configs={n: _compressor_config(c) for n, c in compressors.items()},
                )
                stage_seconds["compression"] = time.perf_counter() - t0
                done()
            if config.generate_n:
                assert generator is not None
                stage("generation")
                t0 = time.perf_counter()
                gen_rows, examples = evaluate_generation(
                    generator,
                    compressors,
                    gen_questions,
                    contexts[: len(gen_questions)],
                    config.generate_ratio,
                    max_new_tokens=config.max_new_tokens,
                    bar=bar,
                )
                generation = GenerationStage(
                    generator=generator.name,
                    tokenizer=generator.counter.name,
                    max_new_tokens=config.max_new_tokens,
                    rows=tuple(gen_rows),
                    examples=tuple(examples),
                )
                stage_seconds["generation"] = time.perf_counter() - t0
                done()
        if config.kv:
            stage("kv")
            t0 = time.perf_counter()
            cases = load_kv(data_dir)[: config.kv_cases]
            kv_rows = evaluate_kv(
                compressors,
                cases,
                config.ratios,
                counter,
                bar=bar,
                on_step=lambda step: stage(f"kv: {step}"),
            )
            kv = KVStage(
                cases=len(cases),
                records_per_case=metrics.mean(len(c.records) for c in cases),
                rows=tuple(kv_rows),
            )
            stage_seconds["kv"] = time.perf_counter() - t0
            done()

    return snapshot()
