"""Comparing xrag with text settings: EM/F1, prefill time and FLOPs on test questions."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragzip.compressors.xrag import WEIGHTS_DIR
from ragzip.core.errors import ConfigError
from ragzip.evaluation.answering import AnswerSetting, answer_all, prefill_gflops, summarize
from ragzip.experiments.datasets import NQExample, load_nq, nq_split

logger = logging.getLogger(__name__)


def evaluate_answers(
    generator: Any,
    settings: Sequence[AnswerSetting],
    questions: Sequence[NQExample],
    contexts: Sequence[Sequence[Any]],
    *,
    max_new_tokens: int = 32,
) -> list[dict[str, Any]]:
    """SQuAD EM/F1 and prompt cost of each setting, answered as ``ragzip eval`` answers
    (:func:`ragzip.evaluation.answering.answer_all`), with a budget per setting so text and soft
    compressors can be compared at the same number of context tokens."""
    answers = answer_all(generator, settings, questions, contexts, max_new_tokens=max_new_tokens)
    rows: list[dict[str, Any]] = []
    for setting in settings:
        done = answers[setting.label]
        row = summarize(setting.label, 0.0, done)
        rows.append(
            {
                "setting": setting.label,
                "budget": str(setting.budget),
                "n": row.n,
                "em": row.em,
                "f1": row.f1,
                "accuracy": row.accuracy,
                "context_tokens": row.context_tokens,
                "prompt_tokens": row.prompt_tokens,
                "prefill_gflops": prefill_gflops(generator.model, row.prompt_tokens),
                "ttft_ms": row.ttft_ms,
                "compress_ms": row.compress_ms,
                "seconds": sum(a.compress_ms + a.total_ms for a in done) / 1000,
                "predictions": [a.prediction for a in done[:10]],
            }
        )
        logger.info("%s", {k: v for k, v in rows[-1].items() if k != "predictions"})
    return rows


def time_prefill(
    generator: Any,
    settings: Sequence[AnswerSetting],
    questions: Sequence[NQExample],
    contexts: Sequence[Sequence[Any]],
    *,
    repeats: int = 3,
) -> list[dict[str, Any]]:
    """Prefill (time to first token) and compression time per setting, side by side.

    Questions are visited in turn and every setting runs on the same question before the next,
    so load on the machine hits all settings alike; each prefill is the best of ``repeats``.
    """
    per: dict[str, dict[str, list[float]]] = {
        s.label: {"ttft": [], "compress": [], "tokens": []} for s in settings
    }
    for q, passages in zip(questions, contexts, strict=True):
        for s in settings:
            best = math.inf
            for _ in range(repeats):
                context = passages if s.with_context else []
                result = s.compressor.compress(q.question, context, budget=s.budget)
                gen = generator.generate_compressed(result, max_new_tokens=1)
                best = min(best, gen.ttft_s)
            per[s.label]["ttft"].append(best * 1000)
            per[s.label]["compress"].append(result.timings.get("total", 0.0) * 1000)
            per[s.label]["tokens"].append(gen.prompt_tokens)
    out = []
    for label, values in per.items():
        tokens = float(np.mean(values["tokens"]))
        out.append(
            {
                "setting": label,
                "n": len(questions),
                "prompt_tokens": tokens,
                "prefill_ms": float(np.mean(values["ttft"])),
                "prefill_ms_p50": float(np.median(values["ttft"])),
                "compress_ms": float(np.mean(values["compress"])),
                "prefill_gflops": prefill_gflops(generator.model, tokens),
            }
        )
    return out


def run_comparison(
    *,
    n: int = 100,
    k: int = 10,
    timing_n: int = 0,
    index_cache: str | None = None,
    data_dir: str | None = None,
    settings_filter: Sequence[str] = (),
) -> dict[str, Any]:
    """EM/F1 on the first ``n`` test questions (hybrid top-``k`` contexts, as ``ragzip eval``).

    Rows: uncompressed; xrag with the trained and an untrained (seed-0) projector; text
    compressors at the same number of context tokens as xrag's vectors; merge when registered.
    With ``timing_n`` > 0, only prefill timings of the settings on that many questions instead.
    """
    from ragzip.compressors.xrag import init_projector
    from ragzip.core.types import Budget
    from ragzip.evaluation.indexing import load_or_build_index
    from ragzip.evaluation.metrics import source_id
    from ragzip.experiments.datasets import gold_doc_ids, nq_corpus
    from ragzip.generators.embedded import EmbeddedGenerator
    from ragzip.registry import available, create_compressor

    examples = load_nq(data_dir)
    questions = nq_split("test", examples=examples)[:n]
    index, _, _ = load_or_build_index(
        nq_corpus(examples),
        cache=Path(index_cache) if index_cache else None,
        chunk=False,
        progress=False,
    )
    contexts = [
        list(r) for r in index.search_batch([q.question for q in questions], k, mode="hybrid")
    ]
    gold = gold_doc_ids(examples)
    generator = EmbeddedGenerator()
    counter = generator.counter

    def make(name: str, **kw: Any) -> Any:
        return create_compressor(name, counter=counter, **kw)

    untrained = init_projector(seed=0).eval()
    stage1 = WEIGHTS_DIR / "stage1"  # the paraphrase checkpoint a training run leaves there
    full = Budget.compression(1)
    factories: dict[str, tuple[Any, Any]] = {
        "uncompressed": (lambda: make("identity"), full),
        "no context": (lambda: make("identity"), None),
        "xrag top1": (lambda: make("xrag", config={"top_k": 1}), full),
        "xrag top1 untrained": (
            lambda: make("xrag", config={"top_k": 1}, projector=untrained),
            full,
        ),
        "xrag top3": (lambda: make("xrag", config={"top_k": 3}), full),
        "xrag top3 untrained": (
            lambda: make("xrag", config={"top_k": 3}, projector=untrained),
            full,
        ),
    }
    if stage1.is_dir():
        factories["xrag top1 stage1"] = (
            lambda: make("xrag", config={"top_k": 1, "weights": str(stage1)}),
            full,
        )
    for tokens in (1, 3):
        for name in ("truncate", "mig"):
            factories[f"{name} {tokens} tok"] = (
                lambda name=name: make(name),
                Budget.tokens(tokens),
            )
    if "merge" in available():
        factories["merge 3 tok"] = (lambda: make("merge"), Budget.tokens(3))
    wanted = [w for w in settings_filter if w] or list(factories)
    unknown = sorted(set(wanted) - set(factories))
    if unknown:
        msg = f"unknown settings {unknown}; choose from {sorted(factories)}"
        raise ConfigError(msg)
    settings = [
        AnswerSetting(w, factories[w][0](), factories[w][1] or full, factories[w][1] is not None)
        for w in wanted
    ]
    record: dict[str, Any] = {
        "split": "test",
        "questions": len(questions),
        "k": k,
        "generator": generator.name,
        "gold_at_1": float(
            np.mean(
                [
                    source_id(ctx[0]) in gold[q.index]
                    for q, ctx in zip(questions, contexts, strict=True)
                ]
            )
        ),
    }
    if timing_n:
        record["prefill"] = time_prefill(
            generator, settings, questions[:timing_n], contexts[:timing_n]
        )
        return record
    t0 = time.perf_counter()
    record["rows"] = evaluate_answers(generator, settings, questions, contexts)
    record["answer_seconds"] = time.perf_counter() - t0
    return record
