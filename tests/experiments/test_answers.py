"""Answer matching as evaluation, training and the benchmarks use it: SQuAD normalisation, whole
words only."""

from __future__ import annotations

from ragzip.experiments.answers import answer_in_text, normalize_answer


def test_normalisation_drops_case_punctuation_articles_and_extra_space() -> None:
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("An apple, a pear") == "apple pear"
    assert normalize_answer("...") == ""


def test_an_answer_is_found_as_whole_words_only() -> None:
    assert answer_in_text(["Paris"], "It was built in paris, France.")
    assert answer_in_text(["the 1889 fair"], "for the 1889 Fair in Paris")
    assert not answer_in_text(["Paris"], "Parisians built it")
    assert not answer_in_text(["1889"], "in 18890")


def test_an_empty_answer_matches_nothing() -> None:
    assert not answer_in_text(["", "  ", "!"], "any text at all")
    assert answer_in_text(["", "fair"], "the fair")
