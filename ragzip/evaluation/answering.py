"""Answering questions from compressed context and scoring the answers: the one generation loop
that ``ragzip eval`` and the soft compressors' comparison scripts share.

Every answer goes through :class:`~ragzip.pipeline.Pipeline` (same prompt for text and soft
context) and is timed the same way: ``compress_ms`` is the pipeline's compression stage,
``ttft_ms`` and ``total_ms`` the generator's own measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragzip.core.types import Budget, Passage
from ragzip.evaluation import metrics
from ragzip.evaluation.results import GenerationRow
from ragzip.experiments.datasets import NQExample

if TYPE_CHECKING:
    from ragzip.compressor import Compressor
    from ragzip.generators.base import Generator


@dataclass(frozen=True)
class AnswerSetting:
    """One way of giving the generator its context.

    Attributes:
        label: Name of the setting in reports.
        compressor: The compressor (``identity`` at 1x for the uncompressed baseline).
        budget: Its budget.
        with_context: ``False`` asks the question alone (the no-context baseline).
    """

    label: str
    compressor: Compressor
    budget: Budget
    with_context: bool = True


@dataclass(frozen=True)
class Answer:
    """One question answered under one setting, scored."""

    setting: str
    question: NQExample
    prediction: str
    em: float
    f1: float
    accuracy: float
    context_tokens: int
    prompt_tokens: int
    ttft_ms: float
    total_ms: float
    compress_ms: float


def answer_all(
    generator: Generator,
    settings: Sequence[AnswerSetting],
    questions: Sequence[NQExample],
    contexts: Sequence[Sequence[Passage]],
    *,
    max_new_tokens: int = 32,
    question_major: bool = False,
    on_answer: Callable[[Answer], None] | None = None,
) -> dict[str, list[Answer]]:
    """Every question answered under every setting, by setting label in ``settings`` order.

    Args:
        question_major: Answer each question under all settings before the next question (all
            settings then see the machine in the same state); by default one setting at a time.
        on_answer: Called after each answer (progress, checkpoints).
    """
    from ragzip.pipeline import Pipeline

    pipes = {
        s.label: Pipeline(
            s.compressor, s.budget, generator=generator, max_new_tokens=max_new_tokens
        )
        for s in settings
    }
    out: dict[str, list[Answer]] = {s.label: [] for s in settings}
    for setting, q, ctx in _order(settings, questions, contexts, question_major):
        result = pipes[setting.label].run(q.question, ctx if setting.with_context else [])
        gen = result.generation
        assert gen is not None
        answer = Answer(
            setting=setting.label,
            question=q,
            prediction=gen.text,
            em=metrics.exact_match(gen.text, q.answers),
            f1=metrics.f1_score(gen.text, q.answers),
            accuracy=metrics.answer_accuracy(gen.text, q.answers),
            context_tokens=result.compression.compressed_tokens,
            prompt_tokens=gen.prompt_tokens,
            ttft_ms=gen.ttft_s * 1000,
            total_ms=gen.total_s * 1000,
            compress_ms=result.timings.get("compress", 0.0) * 1000,
        )
        out[setting.label].append(answer)
        if on_answer is not None:
            on_answer(answer)
    return out


def _order(
    settings: Sequence[AnswerSetting],
    questions: Sequence[NQExample],
    contexts: Sequence[Sequence[Passage]],
    question_major: bool,
) -> Iterator[tuple[AnswerSetting, NQExample, Sequence[Passage]]]:
    pairs = list(zip(questions, contexts, strict=True))
    if question_major:
        for q, ctx in pairs:
            for s in settings:
                yield s, q, ctx
    else:
        for s in settings:
            for q, ctx in pairs:
                yield s, q, ctx


def summarize(label: str, ratio: float, answers: Sequence[Answer]) -> GenerationRow:
    """The means (and median TTFT) of one setting's answers."""
    ttft = [a.ttft_ms for a in answers]
    return GenerationRow(
        setting=label,
        ratio=ratio,
        n=len(answers),
        em=metrics.mean([a.em for a in answers]),
        f1=metrics.mean([a.f1 for a in answers]),
        accuracy=metrics.mean([a.accuracy for a in answers]),
        context_tokens=metrics.mean([float(a.context_tokens) for a in answers]),
        prompt_tokens=metrics.mean([float(a.prompt_tokens) for a in answers]),
        ttft_ms=metrics.mean(ttft),
        ttft_ms_p50=metrics.percentile(ttft, 50),
        total_ms=metrics.mean([a.total_ms for a in answers]),
        compress_ms=metrics.mean([a.compress_ms for a in answers]),
    )


def example_records(answers: Sequence[Answer], n: int) -> list[dict[str, Any]]:
    """The first ``n`` answers as report examples."""
    return [
        {
            "setting": a.setting,
            "question": a.question.question,
            "answers": list(a.question.answers),
            "prediction": a.prediction,
            "em": a.em,
        }
        for a in answers[:n]
    ]


def prefill_gflops(model: Any, prompt_tokens: float) -> float:
    """Prefill cost estimate in GFLOP: ``2 · parameters · prompt positions`` for the layers, and
    the output head (as wide as the input-embedding table) once, on the last position.

    The embedding lookup itself costs no multiply-adds; with a large vocabulary (Gemma's 262k
    tokens are most of its 270M parameters) counting the table at every position would
    overstate the cost several times.
    """
    n = sum(p.numel() for p in model.parameters())
    table = int(model.get_input_embeddings().weight.numel())
    return 2.0 * ((n - table) * prompt_tokens + table) / 1e9
