"""Evaluation metrics.

* Exact match and token F1 as in the SQuAD v1.1 evaluation script (Rajpurkar et al., 2016,
  *SQuAD: 100,000+ Questions for Machine Comprehension of Text*): answers normalised by
  :func:`ragzip.experiments.answers.normalize_answer`, best score over the accepted answers.
* Answer accuracy as in Liu et al. (2023), *Lost in the Middle*: whether any accepted answer occurs
  in the prediction — fair to generators that answer in a sentence.
* Answer-in-context recall: whether any accepted answer survives in the (compressed) context.
* Retrieval recall@k: whether a gold document is among the first ``k`` results; chunks count for
  the document they were cut from.
* Rate adherence: achieved compression factor over the requested one (1.0 = exactly on target,
  above 1 = compressed more than asked).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

from ragzip.core.errors import InputError
from ragzip.core.types import Passage
from ragzip.experiments.answers import answer_in_text, normalize_answer

SOURCE_ID_KEY = "doc_id"
"""Metadata key naming the document a retrieved chunk was cut from (set by the chunker)."""


def _check_answers(answers: Sequence[str]) -> None:
    if isinstance(answers, str) or not answers:
        msg = "answers must be a non-empty list of strings"
        raise InputError(msg)


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """SQuAD exact match: 1.0 if the normalised prediction equals a normalised answer."""
    _check_answers(answers)
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in answers))


def _f1(prediction: str, truth: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(truth).split()
    common = Counter(pred_tokens) & Counter(truth_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, answers: Sequence[str]) -> float:
    """SQuAD token F1 between prediction and the best-matching answer."""
    _check_answers(answers)
    return max(_f1(prediction, a) for a in answers)


def answer_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if any accepted answer occurs (normalised, whole words) in the prediction."""
    _check_answers(answers)
    return float(answer_in_text(list(answers), prediction))


def answer_in_context(answers: Sequence[str], texts: Iterable[str]) -> bool:
    """Whether any accepted answer occurs in one of the context texts.

    Each text is searched on its own, so an answer is never "found" across the seam of two
    passages.
    """
    _check_answers(answers)
    return any(answer_in_text(list(answers), t) for t in texts)


def source_id(passage: Passage) -> str:
    """The id of the document ``passage`` belongs to: ``metadata["doc_id"]``, else its own id."""
    value = passage.metadata.get(SOURCE_ID_KEY)
    return str(value) if value is not None and value != "" else passage.id


def hit_at_k(retrieved: Sequence[str], gold: Collection[str], k: int) -> bool:
    """Whether one of the first ``k`` retrieved document ids is gold."""
    if k < 1:
        msg = f"k must be >= 1, got {k}"
        raise InputError(msg)
    return any(doc in gold for doc in retrieved[:k])


def recall_at_k(
    retrieved: Sequence[Sequence[str]], gold: Sequence[Collection[str]], k: int
) -> float:
    """Fraction of queries with a gold document among their first ``k`` results.

    Args:
        retrieved: Per query, the source document ids of the results, best first.
        gold: Per query, the ids of its gold documents.
        k: Cut-off.
    """
    if len(retrieved) != len(gold):
        msg = f"{len(retrieved)} result lists for {len(gold)} queries"
        raise InputError(msg)
    if not retrieved:
        msg = "recall@k needs at least one query"
        raise InputError(msg)
    return sum(hit_at_k(r, g, k) for r, g in zip(retrieved, gold, strict=True)) / len(retrieved)


def pooled_ratio(original_tokens: Iterable[int], compressed_tokens: Iterable[int]) -> float:
    """Achieved compression factor over many inputs: total original over total kept tokens."""
    orig = sum(original_tokens)
    kept = sum(compressed_tokens)
    if kept == 0:
        return math.inf if orig else 1.0
    return orig / kept


def rate_adherence(achieved: float, requested: float) -> float:
    """Achieved over requested compression factor (1.0 on target, > 1 over-compressed)."""
    if not (math.isfinite(requested) and requested >= 1.0):
        msg = f"requested ratio must be a finite number >= 1, got {requested}"
        raise InputError(msg)
    return achieved / requested


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean; NaN for no values (reported as ``null`` in JSON)."""
    items = list(values)
    return sum(items) / len(items) if items else math.nan


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN for no values."""
    items = sorted(values)
    if not items:
        return math.nan
    if not 0.0 <= q <= 100.0:
        msg = f"percentile must lie in [0, 100], got {q}"
        raise InputError(msg)
    pos = (len(items) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(items) - 1)
    return items[lo] + (items[hi] - items[lo]) * (pos - lo)


def mean_map(rows: Sequence[Mapping[str, float]], keys: Sequence[str]) -> dict[str, float]:
    """Mean of each of ``keys`` over ``rows``."""
    return {k: mean(r[k] for r in rows) for k in keys}
