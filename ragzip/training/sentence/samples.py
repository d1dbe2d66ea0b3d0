"""Training samples: sentences of gold passages and of BM25 hard negatives, useful or not."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ragzip.compressors.sentence.features import Encoded, Featurizer, PassageSentences
from ragzip.compressors.units import sentence_spans
from ragzip.core.errors import ConfigError
from ragzip.experiments.answers import answer_in_text
from ragzip.experiments.datasets import NQExample


@dataclass(frozen=True)
class Sample:
    """One labelled sentence.

    Attributes:
        question: Index of the question (line number in the NQ file).
        encoded: Classifier input.
        label: 1 if the sentence holds an accepted answer.
        gold: Whether the sentence comes from the question's gold passage.
        ambiguous: A retrieved (non-gold) sentence that holds an answer: not a clean label.
        tokens: Length of the sentence in the classifier's tokenizer (a cost proxy).
        text: The sentence.
    """

    question: int
    encoded: Encoded
    label: int
    gold: bool
    ambiguous: bool
    tokens: int
    text: str


def passage_sentences(title: str, text: str) -> PassageSentences:
    """A passage split into sentences exactly as the compressor splits it (pySBD)."""
    return PassageSentences(
        title=title, sentences=tuple(text[s:e] for s, e in sentence_spans(text))
    )


def build_samples(
    questions: Sequence[NQExample],
    retrieved: Sequence[Sequence[tuple[str, str]]],
    featurizer: Featurizer,
    *,
    rng: random.Random | None,
    retrieved_sentences: int | None,
) -> list[Sample]:
    """Labelled sentences for each question: all of its gold passage plus retrieved negatives.

    Args:
        questions: The questions.
        retrieved: Their non-gold passages ``(title, text)``, best first.
        featurizer: Builds the classifier inputs.
        rng: Sampler of retrieved sentences (``None`` with ``retrieved_sentences=None``).
        retrieved_sentences: Retrieved sentences kept per question; ``None`` keeps all and keeps
            ambiguous ones (flagged) too, as validation needs them.
    """
    tok = featurizer.tokenizer
    samples: list[Sample] = []
    for q, docs in zip(questions, retrieved, strict=True):
        answers = list(q.answers)
        gold = passage_sentences(q.title, q.text)
        labels = [int(answer_in_text(answers, s)) for s in gold.sentences]
        if not any(labels):
            continue
        others = [passage_sentences(t, x) for t, x in docs]
        encoded = featurizer.encode(q.question, [gold, *others])
        lengths = [len(x) for x in tok([*gold.sentences], add_special_tokens=False)["input_ids"]]
        for j, lab in enumerate(labels):
            samples.append(
                Sample(q.index, encoded[j], lab, True, False, lengths[j], gold.sentences[j])
            )
        cand: list[tuple[int, str, bool]] = []
        cursor = len(gold.sentences)
        for p in others:
            for s in p.sentences:
                cand.append((cursor, s, answer_in_text(answers, s)))
                cursor += 1
        if retrieved_sentences is not None:
            clean = [c for c in cand if not c[2]]
            if rng is None:
                msg = "sampling retrieved sentences needs an rng"
                raise ConfigError(msg)
            cand = rng.sample(clean, min(retrieved_sentences, len(clean)))
            cand.sort()
        if not cand:
            continue
        lengths = [
            len(x) for x in tok([s for _, s, _ in cand], add_special_tokens=False)["input_ids"]
        ]
        for (i, text, amb), n in zip(cand, lengths, strict=True):
            samples.append(Sample(q.index, encoded[i], int(amb), False, amb, n, text))
    return samples
