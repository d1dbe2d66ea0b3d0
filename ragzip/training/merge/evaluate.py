"""EM/F1 and prefill cost of merge against text settings on test questions."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragzip.core.errors import ConfigError
from ragzip.core.types import Budget
from ragzip.evaluation.answering import (
    Answer,
    AnswerSetting,
    answer_all,
    example_records,
    prefill_gflops,
    summarize,
)
from ragzip.experiments.datasets import NQExample, load_nq, nq_split
from ragzip.experiments.reporting import markdown_table
from ragzip.training.merge.contexts import retrieve_contexts

if TYPE_CHECKING:
    from ragzip.generators.embedded import EmbeddedGenerator

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Setting:
    """One evaluated setting: a compressor spec at a compression factor."""

    spec: str
    ratio: float

    @property
    def label(self) -> str:
        """``spec@ratio``."""
        return f"{self.spec}@{self.ratio:g}"

    @classmethod
    def parse(cls, text: str) -> Setting:
        """Read ``spec@ratio`` (e.g. ``merge:adapter=default@4``)."""
        spec, sep, ratio = text.strip().rpartition("@")
        if not sep or not spec:
            msg = f"a setting looks like name@ratio, got {text!r}"
            raise ConfigError(msg)
        try:
            value = float(ratio)
        except ValueError as exc:
            msg = f"bad ratio in setting {text!r}"
            raise ConfigError(msg) from exc
        if not math.isfinite(value) or value < 1:
            msg = f"ratio must be >= 1 in setting {text!r}"
            raise ConfigError(msg)
        return cls(spec, value)


def _make_compressor(spec: str, generator: EmbeddedGenerator) -> Any:
    """A registered compressor from its spec; merge shares the generator's model."""
    from ragzip.registry import create_compressor, parse_spec

    components: dict[str, Any] = {}
    if parse_spec(spec).name == "merge":
        components = {"model": generator.model, "tokenizer": generator.tokenizer}
    return create_compressor(spec, counter=generator.counter, **components)


def evaluate(
    settings: Sequence[Setting],
    *,
    n: int = 100,
    k: int = 10,
    max_new_tokens: int = 32,
    index_cache: str | Path | None = None,
    data_dir: str | Path | None = None,
    uncompressed: bool = True,
    checkpoint: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """EM/F1 and prefill cost of each setting on the first ``n`` test questions.

    Every question's top-``k`` hybrid context (as ``ragzip eval`` builds it, gold not forced in)
    is answered uncompressed and under each setting, question by question, so all rows see the
    machine in the same state. ``uncompressed=False`` leaves the uncompressed row out (the
    savings columns are then relative to the first row). ``checkpoint`` receives the report
    so far after every ten questions.
    """
    from ragzip.generators.embedded import EmbeddedGenerator
    from ragzip.registry import create_compressor

    generator = EmbeddedGenerator(device="cpu")
    all_nq = load_nq(data_dir)
    questions = nq_split("test", examples=all_nq)[:n]
    contexts = retrieve_contexts(questions, all_nq, k=k, index_cache=index_cache, ensure_gold=False)
    rows: list[AnswerSetting] = []
    if uncompressed:
        identity = create_compressor("identity", counter=generator.counter)
        rows.append(AnswerSetting("uncompressed", identity, Budget.compression(1)))
    rows += [
        AnswerSetting(s.label, _make_compressor(s.spec, generator), Budget.compression(s.ratio))
        for s in settings
    ]
    done: list[Answer] = []

    def progress(answer: Answer) -> None:
        done.append(answer)
        if answer.setting != rows[-1].label:
            return
        qi = len(done) // len(rows)
        logger.info("question %d/%d done", qi, len(questions))
        if checkpoint is not None and qi % 10 == 0 and qi < len(questions):
            partial = {r.label: [a for a in done if a.setting == r.label] for r in rows}
            checkpoint(_report(partial, rows, questions[:qi], k, max_new_tokens, generator))

    answers = answer_all(
        generator,
        rows,
        questions,
        contexts,
        max_new_tokens=max_new_tokens,
        question_major=True,
        on_answer=progress,
    )
    return _report(answers, rows, questions, k, max_new_tokens, generator)


def _report(
    answers: Mapping[str, Sequence[Answer]],
    rows: Sequence[AnswerSetting],
    questions: Sequence[NQExample],
    k: int,
    max_new_tokens: int,
    generator: EmbeddedGenerator,
) -> dict[str, Any]:
    import torch

    params = sum(p.numel() for p in generator.model.parameters())
    summaries = [summarize(r.label, r.budget.ratio or 1.0, answers[r.label]) for r in rows]
    base = summaries[0]
    table = [
        {
            **{k: v for k, v in dataclasses.asdict(row).items() if k not in ("ratio", "total_ms")},
            "prefill_gflops": prefill_gflops(generator.model, row.prompt_tokens),
            "prefill_flops_saved": 1 - row.prompt_tokens / base.prompt_tokens,
            "ttft_saved": 1 - row.ttft_ms / base.ttft_ms,
        }
        for row in summaries
    ]
    return {
        "split": "test",
        "questions": len(questions),
        "question_indices": [q.index for q in questions],
        "k": k,
        "max_new_tokens": max_new_tokens,
        "generator": generator.name,
        "generator_parameters": params,
        "flops_formula": "2 * generator parameters * prompt positions "
        "(template and question included)",
        "threads": torch.get_num_threads(),
        "rows": table,
        "examples": [e for r in rows for e in example_records(answers[r.label], 5)],
    }


def markdown(report: dict[str, Any]) -> str:
    """A Markdown table of an :func:`evaluate` report."""
    header = [
        "setting",
        "EM",
        "F1",
        "accuracy",
        "context tokens",
        "prompt positions",
        "prefill GFLOPs",
        "FLOPs saved",
        "TTFT ms (mean / p50)",
        "TTFT saved",
        "compress ms",
    ]
    rows = [
        [
            r["setting"],
            f"{r['em']:.3f}",
            f"{r['f1']:.3f}",
            f"{r['accuracy']:.3f}",
            f"{r['context_tokens']:.0f}",
            f"{r['prompt_tokens']:.0f}",
            f"{r['prefill_gflops']:.1f}",
            f"{r['prefill_flops_saved']:.0%}",
            f"{r['ttft_ms']:.0f} / {r['ttft_ms_p50']:.0f}",
            f"{r['ttft_saved']:.0%}",
            f"{r['compress_ms']:.0f}",
        ]
        for r in report["rows"]
    ]
    intro = (
        f"NQ-open test, first {report['questions']} questions, top-{report['k']} hybrid context, "
        f"{report['generator']} (greedy, {report['max_new_tokens']} new tokens, "
        f"{report['threads']} torch threads)."
    )
    return f"{intro}\n\n{markdown_table(header, rows)}\n"
