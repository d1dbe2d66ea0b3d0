"""EM/F1 and prefill cost of merge against text settings on test questions."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragzip.errors import ConfigError
from ragzip.evaluation import metrics
from ragzip.evaluation.data import NQExample, load_nq, nq_split
from ragzip.prompts import SOFT_PLACEHOLDER, build_messages
from ragzip.training.merge.contexts import retrieve_contexts, soft_messages
from ragzip.types import Budget, CompressionResult

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


def answer(generator: EmbeddedGenerator, result: CompressionResult, max_new_tokens: int) -> Any:
    """Generate from a text or soft result with the embedded generator."""
    if result.embeddings is None:
        return generator.generate(
            build_messages(result.query, result.texts), max_new_tokens=max_new_tokens
        )
    embeds = generator.embed_messages(
        soft_messages(result), placeholder=SOFT_PLACEHOLDER, replacements=result.embeddings
    )
    return generator.generate_from_embeds(embeds, max_new_tokens=max_new_tokens)


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
    rows: list[tuple[str, Any, Budget]] = []
    if uncompressed:
        identity = create_compressor("identity", counter=generator.counter)
        rows.append(("uncompressed", identity, Budget.compression(1)))
    rows += [
        (s.label, _make_compressor(s.spec, generator), Budget.compression(s.ratio))
        for s in settings
    ]
    stats: dict[str, dict[str, list[float]]] = {label: {} for label, _, _ in rows}
    examples: list[dict[str, Any]] = []
    for qi, (q, ctx) in enumerate(zip(questions, contexts, strict=True)):
        for label, comp, budget in rows:
            t0 = time.perf_counter()
            result = comp.compress(q.question, ctx, budget=budget)
            compress_s = time.perf_counter() - t0
            gen = answer(generator, result, max_new_tokens)
            values = {
                "em": metrics.exact_match(gen.text, q.answers),
                "f1": metrics.f1_score(gen.text, q.answers),
                "accuracy": metrics.answer_accuracy(gen.text, q.answers),
                "context_tokens": float(result.compressed_tokens),
                "prompt_tokens": float(gen.prompt_tokens),
                "ttft_ms": gen.ttft_s * 1000,
                "compress_ms": compress_s * 1000,
            }
            for key, v in values.items():
                stats[label].setdefault(key, []).append(v)
            if qi < 5:
                examples.append(
                    {
                        "setting": label,
                        "question": q.question,
                        "answers": list(q.answers),
                        "prediction": gen.text,
                    }
                )
        logger.info("question %d/%d done", qi + 1, len(questions))
        if checkpoint is not None and (qi + 1) % 10 == 0 and qi + 1 < len(questions):
            checkpoint(
                _report(stats, rows, questions[: qi + 1], k, max_new_tokens, generator, examples)
            )
    return _report(stats, rows, questions, k, max_new_tokens, generator, examples)


def _report(
    stats: dict[str, dict[str, list[float]]],
    rows: Sequence[tuple[str, Any, Budget]],
    questions: Sequence[NQExample],
    k: int,
    max_new_tokens: int,
    generator: EmbeddedGenerator,
    examples: list[dict[str, Any]],
) -> dict[str, Any]:
    import torch

    params = sum(p.numel() for p in generator.model.parameters())
    table = []
    base = stats[rows[0][0]]
    base_prompt = float(np.mean(base["prompt_tokens"]))
    base_ttft = float(np.mean(base["ttft_ms"]))
    for label, _, _ in rows:
        s = stats[label]
        prompt = float(np.mean(s["prompt_tokens"]))
        ttft = float(np.mean(s["ttft_ms"]))
        table.append(
            {
                "setting": label,
                "n": len(s["em"]),
                **{key: float(np.mean(v)) for key, v in s.items()},
                "ttft_ms_p50": float(np.median(s["ttft_ms"])),
                "prefill_gflops": 2 * params * prompt / 1e9,
                "prefill_flops_saved": 1 - prompt / base_prompt,
                "ttft_saved": 1 - ttft / base_ttft,
            }
        )
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
        "examples": examples,
    }


def markdown(report: dict[str, Any]) -> str:
    """A Markdown table of an :func:`evaluate` report."""
    lines = [
        f"NQ-open test, first {report['questions']} questions, top-{report['k']} hybrid context, "
        f"{report['generator']} (greedy, {report['max_new_tokens']} new tokens, "
        f"{report['threads']} torch threads).",
        "",
        "| setting | EM | F1 | accuracy | context tokens | prompt positions | prefill GFLOPs | "
        "FLOPs saved | TTFT ms (mean / p50) | TTFT saved | compress ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['setting']} | {r['em']:.3f} | {r['f1']:.3f} | {r['accuracy']:.3f} | "
            f"{r['context_tokens']:.0f} | {r['prompt_tokens']:.0f} | {r['prefill_gflops']:.1f} | "
            f"{r['prefill_flops_saved']:.0%} | {r['ttft_ms']:.0f} / {r['ttft_ms_p50']:.0f} | "
            f"{r['ttft_saved']:.0%} | {r['compress_ms']:.0f} |"
        )
    return "\n".join(lines) + "\n"
