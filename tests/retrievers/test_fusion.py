from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragzip.core.errors import ConfigError
from ragzip.retrievers.fusion import RRF_K, reciprocal_rank_fusion


def test_scores_are_weighted_reciprocal_ranks() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], [1.0, 2.0], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 2 / 62)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 2 / 61)


def test_order_is_by_descending_score() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], [1.0, 2.0])
    assert [item for item, _ in fused] == ["c", "a", "b"]
    scores = [s for _, s in fused]
    assert scores == sorted(scores, reverse=True)


def test_default_constant_and_weights() -> None:
    assert RRF_K == 60
    fused = dict(reciprocal_rank_fusion([["x"], ["x"]]))
    assert fused["x"] == pytest.approx(2 / 61)


def test_agreement_beats_a_single_top_rank() -> None:
    # "b" is second in both lists, "a" and "c" first in one each and absent from the other.
    fused = reciprocal_rank_fusion([["a", "b"], ["c", "b"]])
    assert fused[0][0] == "b"


def test_zero_weight_ignores_a_list() -> None:
    fused = reciprocal_rank_fusion([["a", "b"], ["z", "y"]], [1.0, 0.0])
    assert [item for item, _ in fused] == ["a", "b"]


def test_single_list_keeps_its_order() -> None:
    ranking = ["q", "w", "e", "r", "t"]
    assert [item for item, _ in reciprocal_rank_fusion([ranking])] == ranking


def test_repeated_item_counts_at_its_best_rank_only() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b", "a"]]))
    assert fused["a"] == pytest.approx(1 / 61)


def test_ties_are_broken_by_best_rank_then_first_appearance() -> None:
    # Symmetric lists give an exact tie; both items reach rank 1, so first appearance decides.
    fused = reciprocal_rank_fusion([["a", "b"], ["b", "a"]])
    assert fused[0][1] == fused[1][1]
    assert [item for item, _ in fused] == ["a", "b"]
    fused = reciprocal_rank_fusion([["b", "a"], ["a", "b"]])
    assert [item for item, _ in fused] == ["b", "a"]


def test_empty_inputs() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []


@pytest.mark.parametrize(
    ("rankings", "weights", "k"),
    [
        ([["a"]], [1.0, 1.0], 60),
        ([["a"]], [-1.0], 60),
        ([["a"]], [math.nan], 60),
        ([["a"]], [math.inf], 60),
        ([["a"]], [1.0], -1),
    ],
)
def test_bad_arguments_raise(rankings: list[list[str]], weights: list[float], k: float) -> None:
    with pytest.raises(ConfigError):
        reciprocal_rank_fusion(rankings, weights, k=k)


@given(
    st.lists(st.lists(st.integers(0, 30), max_size=20), min_size=1, max_size=4),
    st.data(),
)
def test_matches_the_formula(rankings: list[list[int]], data: st.DataObject) -> None:
    weights = data.draw(
        st.lists(st.floats(0, 5, allow_nan=False), min_size=len(rankings), max_size=len(rankings))
    )
    k = data.draw(st.floats(0, 100, allow_nan=False))
    fused = reciprocal_rank_fusion(rankings, weights, k=k)
    expected: dict[int, float] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        if w == 0:
            continue
        firsts: dict[int, int] = {}
        for rank, item in enumerate(ranking, start=1):
            firsts.setdefault(item, rank)
        for item, rank in firsts.items():
            expected[item] = expected.get(item, 0.0) + w / (k + rank)
    assert {item for item, _ in fused} == set(expected)
    for item, score in fused:
        assert score == pytest.approx(expected[item])
    scores = [s for _, s in fused]
    assert scores == sorted(scores, reverse=True)
