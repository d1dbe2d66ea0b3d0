"""The answer-shape prior for word pruning (ragzip.compressors.answer_shape)."""

from __future__ import annotations

import pytest

from ragzip.compressors.answer_shape import expected_shape, shape_mask
from ragzip.compressors.units import split_words

TEXT = "The Eiffel Tower was completed on 31 March 1889 by Gustave Eiffel. It has 674 steps."


@pytest.mark.parametrize(
    ("question", "shape"),
    [
        ("When was the Eiffel Tower completed?", "date"),
        ("what year did the war end", "date"),
        ("how many steps does the eiffel tower have", "number"),
        ("How tall is the tower?", "number"),
        ("who designed the eiffel tower", "name"),
        ("where is the eiffel tower", "name"),
        ("what is the capital of france", None),
        ("", None),
    ],
)
def test_the_question_word_says_the_shape(question: str, shape: str | None) -> None:
    assert expected_shape(question) == shape


def _marked(question: str) -> list[str]:
    units = split_words(TEXT)
    mask = shape_mask(question, TEXT, units)
    return [TEXT[s:e] for (s, e), hit in zip(units, mask, strict=True) if hit]


def test_words_of_the_asked_shape_are_marked_but_not_the_questions_own() -> None:
    assert _marked("when was the tower completed") == ["31", "March", "1889"]
    assert _marked("how many steps does it have") == ["31", "1889", "674"]
    names = _marked("who designed the eiffel tower")
    assert "Gustave" in names and "Eiffel" not in names and "The" not in names and "It" not in names
    assert _marked("what is the tower made of") == []
