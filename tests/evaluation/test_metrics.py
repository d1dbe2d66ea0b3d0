"""Metrics against hand-checked SQuAD-style examples."""

from __future__ import annotations

import math

import pytest

from ragzip.core.errors import InputError
from ragzip.core.types import Passage
from ragzip.evaluation import metrics


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("Denver Broncos", ["Denver Broncos"], 1.0),
        ("the Denver Broncos.", ["Denver Broncos"], 1.0),  # articles and punctuation dropped
        ("  DENVER   broncos ", ["Denver Broncos"], 1.0),  # case and whitespace
        ("Denver Broncos won", ["Denver Broncos"], 0.0),
        ("Carolina Panthers", ["Denver Broncos", "Carolina Panthers"], 1.0),  # best answer
        ("", ["Denver Broncos"], 0.0),
    ],
)
def test_exact_match(prediction: str, answers: list[str], expected: float) -> None:
    assert metrics.exact_match(prediction, answers) == expected


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        # P = 2/3, R = 1 -> F1 = 0.8
        ("Denver Broncos won", ["Denver Broncos"], 0.8),
        # "levis stadium in santa clara" has 5 tokens: P = 1, R = 2/5 -> F1 = 0.8 / 1.4
        ("Santa Clara", ["Levi's Stadium in Santa Clara"], 2 * 1.0 * 0.4 / 1.4),
        # wait: normalised answer is "levis stadium in santa clara" (5 tokens): R = 2/5
        ("nothing in common", ["Denver Broncos"], 0.0),
        ("the", ["Denver Broncos"], 0.0),  # normalises to nothing
        # repeated tokens are counted with multiplicity (Counter intersection)
        ("Broncos Broncos", ["Denver Broncos"], 2 * 0.5 * 0.5 / 1.0),
        ("Denver", ["Carolina", "Denver Broncos"], 2 * 1 * 0.5 / 1.5),  # max over answers
    ],
)
def test_f1(prediction: str, answers: list[str], expected: float) -> None:
    assert metrics.f1_score(prediction, answers) == pytest.approx(expected)


def test_f1_matches_em_on_exact_answers() -> None:
    assert metrics.f1_score("the Eiffel Tower!", ["Eiffel Tower"]) == 1.0


def test_metrics_reject_empty_answers() -> None:
    with pytest.raises(InputError):
        metrics.exact_match("x", [])
    with pytest.raises(InputError):
        metrics.f1_score("x", "x")  # a bare string is not a list of answers


def test_answer_accuracy_and_context() -> None:
    assert metrics.answer_accuracy("It was the Denver Broncos, in 2016.", ["Denver Broncos"]) == 1
    assert metrics.answer_accuracy("Denverite", ["Denver"]) == 0  # whole words only
    assert metrics.answer_in_context(["1965"], ["banned in 1965.", "other"])
    assert not metrics.answer_in_context(["August 1965"], ["1 August", "1965 was"])  # no seam
    assert not metrics.answer_in_context(["1965"], [])


def test_source_id_prefers_metadata() -> None:
    chunk = Passage(text="a chunk", id="nq-0001#2", metadata={"doc_id": "nq-0001"})
    assert metrics.source_id(chunk) == "nq-0001"
    assert metrics.source_id(Passage(text="whole", id="nq-0002")) == "nq-0002"


def test_recall_at_k() -> None:
    retrieved = [["a", "b", "c"], ["x", "y", "z"], ["q", "gold2", "r"]]
    gold = [{"a"}, {"nope"}, {"gold", "gold2"}]
    assert metrics.recall_at_k(retrieved, gold, 1) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(retrieved, gold, 2) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(retrieved, gold, 10) == pytest.approx(2 / 3)
    with pytest.raises(InputError):
        metrics.recall_at_k(retrieved, gold[:2], 1)
    with pytest.raises(InputError):
        metrics.recall_at_k(retrieved, gold, 0)
    with pytest.raises(InputError):
        metrics.recall_at_k([], [], 1)


def test_ratios_and_adherence() -> None:
    assert metrics.pooled_ratio([100, 300], [50, 50]) == 4.0
    assert metrics.pooled_ratio([10], [0]) == math.inf
    assert metrics.pooled_ratio([0], [0]) == 1.0
    assert metrics.rate_adherence(4.4, 4.0) == pytest.approx(1.1)
    with pytest.raises(InputError):
        metrics.rate_adherence(2.0, 0.5)


def test_mean_and_percentile() -> None:
    assert math.isnan(metrics.mean([]))
    assert metrics.mean([1, 2, 3]) == 2
    assert metrics.percentile([1, 2, 3, 4], 50) == 2.5
    assert metrics.percentile([5, 1, 3], 100) == 5
    assert metrics.percentile([5, 1, 3], 0) == 1
    assert math.isnan(metrics.percentile([], 95))
    with pytest.raises(InputError):
        metrics.percentile([1.0], 101)
