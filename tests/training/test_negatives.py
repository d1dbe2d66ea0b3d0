"""The one hard-negative miner: BM25's best passages for a question, never its gold one."""

from __future__ import annotations

from ragzip.experiments.datasets import NQExample
from ragzip.training.common import own_random_state
from ragzip.training.negatives import HardNegatives


def _ex(i: int, question: str, title: str, text: str) -> NQExample:
    return NQExample(index=i, question=question, answers=("x",), title=title, text=text)


CORPUS = [
    _ex(0, "who wrote the song yesterday", "Yesterday", "Yesterday is a song by the Beatles."),
    _ex(1, "when was paris founded", "Paris", "Paris is the capital of France."),
    _ex(2, "who sang yesterday first", "Yesterday (cover)", "Yesterday was covered by many."),
    _ex(3, "what is the capital of france", "France", "France has Paris as its capital city."),
    _ex(4, "who wrote the song yesterday", "Yesterday", "Yesterday is a song by the Beatles."),
]


def test_best_passages_other_than_the_gold_one() -> None:
    miner = HardNegatives.over_questions(CORPUS)
    assert len(miner.docs) == 4  # the repeated passage is indexed once
    top = miner.top([CORPUS[0], CORPUS[3]], k=2)
    assert all(text != CORPUS[0].text for _, text in top[0])
    assert top[0][0] == ("Yesterday (cover)", CORPUS[2].text)
    assert all(text != CORPUS[3].text for _, text in top[1])
    assert top[1][0][0] == "Paris"
    assert all(len(row) <= 2 for row in top)


def test_a_run_seeds_only_its_own_random_state() -> None:
    import torch

    @own_random_state
    def run() -> float:
        torch.manual_seed(123)
        return float(torch.rand(1))

    torch.manual_seed(7)
    expected_next = float(torch.rand(1))
    torch.manual_seed(7)
    first = run()
    assert first == run()  # seeded inside: the same draw each time
    assert float(torch.rand(1)) == expected_next  # the caller's stream is untouched
