"""Run the evaluation: retrieval, compression, generation and key-value survival.

Four stages, each optional, over one :class:`EvalConfig`:

1. **retrieval** — a :class:`~ragzip.retrievers.index.HybridIndex` over all 2,000 NQ passages;
   recall@k of ``bm25``, ``dense`` and ``hybrid`` search for the split's questions.
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

import contextlib
import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragzip.errors import ConfigError, IndexStoreError
from ragzip.evaluation import metrics
from ragzip.evaluation.data import (
    SPLIT_SIZES,
    KVCase,
    NQExample,
    gold_doc_ids,
    load_kv,
    load_nq,
    nq_corpus,
    nq_split,
    resolve_data_dir,
)
from ragzip.types import Budget, Passage

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from ragzip.compressor import Compressor
    from ragzip.generators.base import Generator
    from ragzip.retrievers.index import HybridIndex, Mode
    from ragzip.tokenization import TokenCounter

logger = logging.getLogger(__name__)

RETRIEVAL_MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid")
UNCOMPRESSED = "uncompressed"
"""Label of the generation row that sends the full top-k context."""


def _positive_ratio(value: float) -> float:
    ratio = float(value)
    if not (math.isfinite(ratio) and ratio >= 1.0):
        msg = f"ratios are compression factors >= 1, got {value!r}"
        raise ConfigError(msg)
    return ratio


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate.

    Attributes:
        data_dir: Folder with the NQ and KV files; ``None`` means ``../shared/data``.
        split: NQ split to score (``test`` keeps training questions out of reports).
        questions: Questions of the split to use (the first ones, in file order).
        k: Passages retrieved per question as the context to compress.
        compressors: Specs of the compressors to compare: registry names, optionally with
            config settings (``sentence:mode=budgeted;threshold=0.4``, see
            :mod:`ragzip.registry`); rows are labelled with the spec.
        ratios: Requested compression factors.
        retrieval_ks: Cut-offs for retrieval recall.
        retrieval: Run the retrieval stage.
        compression: Run the compression stage.
        generate_n: Questions to answer with the generator (0 skips the stage).
        generate_ratio: Compression factor for the generation stage.
        max_new_tokens: Answer length limit for the generator.
        kv: Run the key-value stage.
        kv_cases: Key-value cases to use (``None`` for all).
        index_cache: Folder to load the NQ index from, or to save it to after building.
        chunk: Chunk passages when indexing (NQ passages are already passage-sized).
    """

    data_dir: Path | None = None
    split: str = "test"
    questions: int = 500
    k: int = 10
    compressors: tuple[str, ...] = ("truncate", "random", "mig")
    ratios: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    retrieval_ks: tuple[int, ...] = (1, 5, 10)
    retrieval: bool = True
    compression: bool = True
    generate_n: int = 0
    generate_ratio: float = 4.0
    max_new_tokens: int = 32
    kv: bool = True
    kv_cases: int | None = None
    index_cache: Path | None = None
    chunk: bool = False

    def __post_init__(self) -> None:
        if self.split not in (*SPLIT_SIZES, "all"):
            msg = f"unknown split {self.split!r}; choose one of: {', '.join([*SPLIT_SIZES, 'all'])}"
            raise ConfigError(msg)
        for name in ("questions", "k"):
            if getattr(self, name) < 1:
                msg = f"{name} must be >= 1, got {getattr(self, name)}"
                raise ConfigError(msg)
        if self.generate_n < 0:
            msg = f"generate_n must be >= 0, got {self.generate_n}"
            raise ConfigError(msg)
        if self.max_new_tokens < 1:
            msg = f"max_new_tokens must be >= 1, got {self.max_new_tokens}"
            raise ConfigError(msg)
        if self.kv_cases is not None and self.kv_cases < 1:
            msg = f"kv_cases must be >= 1, got {self.kv_cases}"
            raise ConfigError(msg)
        if not self.ratios:
            msg = "give at least one ratio"
            raise ConfigError(msg)
        ratios = tuple(sorted({_positive_ratio(r) for r in self.ratios}))
        object.__setattr__(self, "ratios", ratios)
        object.__setattr__(self, "generate_ratio", _positive_ratio(self.generate_ratio))
        if not self.retrieval_ks or any(int(k) < 1 for k in self.retrieval_ks):
            msg = f"retrieval cut-offs must be >= 1, got {self.retrieval_ks}"
            raise ConfigError(msg)
        object.__setattr__(self, "retrieval_ks", tuple(sorted({int(k) for k in self.retrieval_ks})))
        names = tuple(dict.fromkeys(c.strip() for c in self.compressors if c.strip()))
        if (self.compression or self.kv or self.generate_n) and not names:
            msg = "give at least one compressor"
            raise ConfigError(msg)
        object.__setattr__(self, "compressors", names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        out = dataclasses.asdict(self)
        for key in ("data_dir", "index_cache"):
            out[key] = str(out[key]) if out[key] is not None else None
        for key in ("compressors", "ratios", "retrieval_ks"):
            out[key] = list(out[key])
        return out


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
        budget_violations: Contexts whose recounted kept tokens exceed the budget (must be 0).
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


# -- helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress(enabled: bool, console: Console | None) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        yield bar


class _Task:
    """A progress task that does nothing when progress bars are off."""

    def __init__(self, bar: Progress | None, description: str, total: int) -> None:
        self._bar = bar
        self._id = bar.add_task(description, total=total) if bar is not None else None

    def advance(self, n: int = 1) -> None:
        if self._bar is not None and self._id is not None:
            self._bar.advance(self._id, n)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def corpus_fingerprint(corpus: Sequence[Passage], *, chunk: bool) -> str:
    """A hash of the corpus and index settings, naming the cached index."""
    h = hashlib.sha256(f"chunk={chunk}\x00".encode())
    for p in corpus:
        h.update(f"{p.id}\x00{p.title}\x00{p.text}\x01".encode())
    return h.hexdigest()


def load_or_build_index(
    corpus: Sequence[Passage],
    *,
    cache: Path | None,
    chunk: bool,
    embedder: Any = None,
    progress: bool = True,
) -> tuple[HybridIndex, str, float]:
    """The NQ index: loaded from ``cache`` when a matching one is there, else built (and saved).

    Returns:
        The index, ``"cache"`` or ``"built"``, and the seconds it took.
    """
    from ragzip.retrievers.index import HybridIndex

    t0 = time.perf_counter()
    path = None
    if cache is not None:
        mode = "chunked" if chunk else "whole"
        path = Path(cache) / f"nq-{mode}-{corpus_fingerprint(corpus, chunk=chunk)[:16]}"
        if path.exists():
            try:
                index = HybridIndex.load(path)
            except IndexStoreError as exc:
                logger.warning("cached index at %s is unusable (%s); rebuilding", path, exc)
            else:
                return index, "cache", time.perf_counter() - t0
    chunking: Any = None
    if chunk:
        from ragzip.retrievers.chunking import ChunkConfig

        chunking = ChunkConfig()
    index = HybridIndex.build(list(corpus), chunking=chunking, embedder=embedder, progress=progress)
    if path is not None:
        index.save(path)
    return index, "built", time.perf_counter() - t0


def _source_ids(results: Sequence[Passage]) -> list[str]:
    return [metrics.source_id(p) for p in results]


def _recount_violation(counter: TokenCounter, texts: Sequence[str], budget_tokens: int) -> bool:
    return sum(counter.count_batch(list(texts))) > budget_tokens


def _ms_per_1k(seconds: float, original_tokens: int) -> float:
    return seconds * 1e6 / original_tokens if original_tokens else math.nan


# -- stages -----------------------------------------------------------------------------------


def evaluate_retrieval(
    index: HybridIndex,
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
    task = _Task(bar, "retrieval", len(modes))
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
    task = _Task(bar, "compression", len(compressors) * len(ratios) * len(questions))
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
                allowed = budget.resolve(sum(counter.count_batch([p.text for p in ctx])))
                violations += _recount_violation(counter, res.texts, allowed)
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
    from ragzip.pipeline import Pipeline
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

    settings: list[tuple[str, Compressor, float]] = [
        (UNCOMPRESSED, create_compressor("identity", counter=generator.counter), 1.0)
    ]
    settings += [(name, comp, ratio) for name, comp in compressors.items()]
    task = _Task(bar, "generation", len(settings) * len(questions))
    rows: list[GenerationRow] = []
    examples: list[dict[str, Any]] = []
    for label, comp, r in settings:
        pipe = Pipeline(
            comp, Budget.compression(r), generator=generator, max_new_tokens=max_new_tokens
        )
        em, f1, acc, ctx_tok, prompt_tok, ttft, total, comp_s = ([] for _ in range(8))
        for i, (q, ctx) in enumerate(zip(questions, contexts, strict=True)):
            result = pipe.run(q.question, ctx)
            gen = result.generation
            assert gen is not None
            em.append(metrics.exact_match(gen.text, q.answers))
            f1.append(metrics.f1_score(gen.text, q.answers))
            acc.append(metrics.answer_accuracy(gen.text, q.answers))
            ctx_tok.append(result.compression.compressed_tokens)
            prompt_tok.append(gen.prompt_tokens)
            ttft.append(gen.ttft_s * 1000)
            total.append(gen.total_s * 1000)
            comp_s.append(result.timings.get("compress", 0.0) * 1000)
            if i < n_examples:
                examples.append(
                    {
                        "setting": label,
                        "question": q.question,
                        "answers": list(q.answers),
                        "prediction": gen.text,
                        "em": em[-1],
                    }
                )
            task.advance()
        rows.append(
            GenerationRow(
                setting=label,
                ratio=r,
                n=len(questions),
                em=metrics.mean(em),
                f1=metrics.mean(f1),
                accuracy=metrics.mean(acc),
                context_tokens=metrics.mean(ctx_tok),
                prompt_tokens=metrics.mean(prompt_tok),
                ttft_ms=metrics.mean(ttft),
                ttft_ms_p50=metrics.percentile(ttft, 50),
                total_ms=metrics.mean(total),
                compress_ms=metrics.mean(comp_s),
            )
        )
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
    task = _Task(bar, "key-value", len(compressors) * len(ratios) * len(cases))
    prepared = [(case, case.passages()) for case in cases]
    originals_by_case = [sum(counter.count_batch([p.text for p in ps])) for _, ps in prepared]
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
                violations += _recount_violation(counter, res.texts, budget.resolve(original))
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
        generator: Used when ``config.generate_n > 0``; defaults to the embedded SmolLM2.
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
    from ragzip.evaluation.report import machine_info
    from ragzip.registry import create_compressor, parse_spec

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
        from ragzip.generators.embedded import EmbeddedGenerator

        generator = EmbeddedGenerator()
    if counter is None:
        if generator is not None:
            counter = generator.counter
        else:
            from ragzip.models import smollm2_counter

            counter = smollm2_counter()

    compressors = {n: create_compressor(n, counter=counter) for n in config.compressors}
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

    with _progress(progress, console) as bar:
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
