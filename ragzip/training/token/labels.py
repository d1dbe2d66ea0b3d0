"""Training labels: teacher importance and gold-answer words on NQ, synthetic key-value records."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ragzip.compressors.units import sentence_spans, split_words
from ragzip.core.types import Span
from ragzip.experiments.answers import answer_in_text
from ragzip.experiments.datasets import NQExample

# -- labels ---------------------------------------------------------------------------------------


def answer_word_mask(text: str, words: Sequence[Span], answers: Sequence[str]) -> np.ndarray:
    """Words overlapping a case-insensitive occurrence of an accepted answer."""
    mask = np.zeros(len(words), dtype=bool)
    low = text.lower()
    for ans in answers:
        a = ans.strip().lower()
        if not a:
            continue
        pos = low.find(a)
        while pos >= 0:
            end = pos + len(a)
            before = pos == 0 or not low[pos - 1].isalnum()
            after = end >= len(low) or not low[end].isalnum()
            if before and after:
                for i, (s, e) in enumerate(words):
                    if s < end and e > pos:
                        mask[i] = True
            pos = low.find(a, pos + 1)
    return mask


def gold_labels(
    ex: NQExample,
    words: Sequence[Span],
    importance: np.ndarray,
    positive_fraction: float,
    grades: tuple[float, float, float] = (1.0, 0.75, 0.5),
) -> np.ndarray:
    """Graded keep-targets of a gold passage's words.

    ``grades`` are the targets of answer words, of the other words of answer-holding sentences,
    and of the ``positive_fraction`` most important words elsewhere; all other words get 0.
    Grading (instead of one *keep* class) teaches the order that matters at high compression:
    the answer first, then its sentence, then other question-relevant words.
    """
    n = len(words)
    target = np.zeros(n, dtype=np.float32)
    if not n:
        return target
    k = max(1, round(positive_fraction * n))
    target[np.argsort(-importance, kind="stable")[:k]] = grades[2]
    answers = list(ex.answers)
    for s, e in sentence_spans(ex.text):
        if answer_in_text(answers, ex.text[s:e]):
            inside = np.array([ws >= s and we <= e for ws, we in words], dtype=bool)
            target[inside] = np.maximum(target[inside], grades[1])
    target[answer_word_mask(ex.text, words, answers)] = grades[0]
    return target


@dataclass(frozen=True)
class Example:
    """A labelled training input: question, passage and a keep-label per word."""

    query: str
    text: str
    words: tuple[Span, ...]
    labels: np.ndarray
    kind: str


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID string from ``rng`` (seeded, unlike :func:`uuid.uuid4`)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


KV_FORMATS = ('"{k}": "{v}"', "{k}: {v}", "{k} = {v}", '"{k}": "{v}",', "{k} -> {v}")
KV_QUESTIONS = (
    "What is the value of key {k}?",
    "Find the value stored under {k}.",
    "Which value belongs to key {k}?",
    "Look up {k}",
    "{k}?",
)


def kv_examples(n: int, rng: random.Random) -> list[Example]:
    """Synthetic key-value records: for each question, the matching record (all keep) and three
    other records (all drop), one of them sharing the asked key's first group."""
    out: list[Example] = []
    for _ in range(n):
        key = random_uuid(rng)
        fmt = rng.choice(KV_FORMATS)
        query = rng.choice(KV_QUESTIONS).format(k=key)
        near = key[:9] + random_uuid(rng)[9:]
        keys = [key, near, random_uuid(rng), random_uuid(rng)]
        for j, k in enumerate(keys):
            text = fmt.format(k=k, v=random_uuid(rng))
            words = tuple(split_words(text))
            target = np.full(len(words), float(j == 0), dtype=np.float32)
            out.append(Example(query, text, words, target, "kv"))
    return out


def kv_cases(n: int, rng: random.Random, records: int = 75) -> list[tuple[str, list[str], int]]:
    """Synthetic validation cases in the KV layout: question, record passages, gold position."""
    cases = []
    for _ in range(n):
        pairs = [(random_uuid(rng), random_uuid(rng)) for _ in range(records)]
        gold = rng.randrange(records)
        cases.append(
            (
                f"What is the value of key {pairs[gold][0]}?",
                [f'"{k}": "{v}"' for k, v in pairs],
                gold,
            )
        )
    return cases
