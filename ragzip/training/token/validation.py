"""Validation: answer recall at each ratio on val questions, and top-1 on synthetic KV records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ragzip.compressors.token.compressor import aggregate_words
from ragzip.compressors.token.selection import select_words
from ragzip.compressors.token.words import forced_mask
from ragzip.compressors.units import split_words
from ragzip.core.types import Budget, Span
from ragzip.experiments.answers import answer_in_text
from ragzip.experiments.datasets import NQExample
from ragzip.training.token.config import VAL_RATIOS
from ragzip.training.token.labels import Example
from ragzip.training.token.student import Encoded, Student, cache_lower, encode, predict

# -- validation -----------------------------------------------------------------------------------


@dataclass
class ValContext:
    """A val question with its context passages, encoded once."""

    query: str
    answers: list[str]
    texts: list[str]
    words: list[list[Span]]
    forced: list[np.ndarray]
    encoded: list[Encoded]
    original_tokens: int


def build_val(
    examples: Sequence[NQExample],
    retrieved: Sequence[Sequence[str]],
    tokenizer: Any,
    counter: Any,
) -> list[ValContext]:
    """Gold passage + retrieved passages per val question, ready for scoring (words forced as
    the compressor's defaults force them)."""
    out = []
    for ex, others in zip(examples, retrieved, strict=True):
        texts = [ex.text, *others]
        words = [split_words(t) for t in texts]
        enc = [
            encode(tokenizer, Example(ex.question, t, tuple(w), np.zeros(len(w)), "val"), 10**6)
            for t, w in zip(texts, words, strict=True)
        ]
        out.append(
            ValContext(
                ex.question,
                list(ex.answers),
                texts,
                words,
                [forced_mask(t, w) for t, w in zip(texts, words, strict=True)],
                enc,
                sum(counter.count_batch(texts)),
            )
        )
    return out


def answer_recall(
    contexts: Sequence[ValContext],
    probs: Sequence[Sequence[np.ndarray]],
    counter: Any,
    ratios: Sequence[float] = VAL_RATIOS,
) -> dict[str, float]:
    """Share of contexts still holding an answer after selection at each ratio."""
    from ragzip.compressor import join_spans

    out: dict[str, float] = {}
    for ratio in ratios:
        hits = 0
        for ctx, ctx_probs in zip(contexts, probs, strict=True):
            budget = Budget(ratio=ratio).resolve(ctx.original_tokens)
            prio = []
            for enc, w, forced, tp in zip(
                ctx.encoded, ctx.words, ctx.forced, ctx_probs, strict=True
            ):
                wp = aggregate_words(w, enc.offsets, tp[enc.head : enc.head + len(enc.offsets)])
                prio.append(np.where(forced, 1.0 + wp, wp))
            spans = select_words(ctx.texts, ctx.words, prio, budget, counter, drop_separators=True)
            kept = [join_spans(t, s)[0] for t, s in zip(ctx.texts, spans, strict=True)]
            hits += answer_in_text(ctx.answers, "\n\n".join(kept))
        out[f"recall@{ratio:g}x"] = hits / max(1, len(contexts))
    return out


@dataclass
class KVVal:
    """Synthetic KV validation cases, encoded and with cached lower states."""

    gold: list[int]
    sizes: list[int]
    examples: list[Example]
    encoded: list[Encoded]
    hidden: list[torch.Tensor]


def build_kv_val(
    student: Student, tokenizer: Any, cases: Sequence[tuple[str, list[str], int]]
) -> KVVal:
    """Encode the cases' records and cache their lower-layer states."""
    exs = [
        Example(q, r, tuple(split_words(r)), np.zeros(len(split_words(r))), "kv")
        for q, records, _ in cases
        for r in records
    ]
    enc = [encode(tokenizer, e, 10**6) for e in exs]
    return KVVal(
        [g for _, _, g in cases], [len(r) for _, r, _ in cases], exs, enc, cache_lower(student, enc)
    )


def kv_top1(student: Student, kv: KVVal) -> float:
    """Share of synthetic KV cases whose asked value word gets the highest probability."""
    probs = predict(student, kv.hidden)
    value_prob = [
        float(aggregate_words(e.words, c.offsets, p[c.head : c.head + len(c.offsets)])[-1])
        for e, c, p in zip(kv.examples, kv.encoded, probs, strict=True)
    ]
    hits, k = 0, 0
    for gold, n in zip(kv.gold, kv.sizes, strict=True):
        hits += int(np.argmax(value_prob[k : k + n])) == gold
        k += n
    return hits / max(1, len(kv.gold))
