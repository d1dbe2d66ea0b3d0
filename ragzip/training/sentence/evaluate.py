"""Validation of a sentence classifier: AUC, and answer recall against kept share."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ragzip.experiments.answers import answer_in_text
from ragzip.training.sentence.samples import Sample
from ragzip.training.sentence.train import auc, within_question_auc


def adaptive_curve(
    samples: Sequence[Sample],
    probs: np.ndarray,
    answers: dict[int, list[str]],
    texts: Sequence[str],
    thresholds: Sequence[float],
) -> list[dict[str, float]]:
    """Answer-in-context recall and kept share of tokens of adaptive selection per threshold.

    Each question's candidates are its validation sentences (gold passage plus retrieved ones);
    as in the compressor, at least the most probable sentence is kept.
    """
    by_q: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        by_q.setdefault(s.question, []).append(i)
    rows = []
    for t in thresholds:
        hits, kept_share, kept_n = [], [], []
        for q, idx in by_q.items():
            keep = [i for i in idx if probs[i] >= t] or [max(idx, key=lambda i: probs[i])]
            hits.append(answer_in_text(answers[q], " ".join(texts[i] for i in keep)))
            kept_share.append(
                sum(samples[i].tokens for i in keep) / sum(samples[i].tokens for i in idx)
            )
            kept_n.append(len(keep))
        rows.append(
            {
                "threshold": float(t),
                "answer_in_context_recall": float(np.mean(hits)),
                "kept_token_share": float(np.mean(kept_share)),
                "kept_sentences": float(np.mean(kept_n)),
            }
        )
    return rows


def evaluate(samples: Sequence[Sample], probs: np.ndarray, threshold: float) -> dict[str, float]:
    """Sentence-level validation figures at ``threshold`` (ambiguous sentences left out)."""
    clean = [i for i, s in enumerate(samples) if not s.ambiguous]
    y = np.array([samples[i].label for i in clean])
    p = probs[clean]
    pred = p >= threshold
    gold = [i for i in clean if samples[i].gold]
    by_q: dict[int, list[int]] = {}
    for i in clean:
        by_q.setdefault(samples[i].question, []).append(i)
    top1 = [samples[max(idx, key=lambda i: probs[i])].label for idx in by_q.values()]
    return {
        "sentences": len(clean),
        "positives": int(y.sum()),
        "questions": len(by_q),
        "auc": auc(y, p),
        "auc_within_gold_passage": within_question_auc([samples[i] for i in gold], probs[gold]),
        "accuracy": float((pred == y.astype(bool)).mean()),
        "answer_sentence_recall": float(pred[y == 1].mean()),
        "precision": float(y[pred].mean()) if pred.any() else math.nan,
        "top1_is_answer_sentence": float(np.mean(top1)),
    }


def choose_threshold(curve: Sequence[dict[str, float]], full_recall: float, share: float) -> float:
    """The highest threshold whose recall is at least ``share`` of the whole context's."""
    ok = [r["threshold"] for r in curve if r["answer_in_context_recall"] >= share * full_recall]
    return max(ok) if ok else min(r["threshold"] for r in curve)
