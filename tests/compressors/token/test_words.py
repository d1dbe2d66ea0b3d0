"""Words, forced words and separators (ragzip.compressors.token.words)."""

from __future__ import annotations

from ragzip.compressors.token.words import forced_mask, is_separator
from ragzip.compressors.units import split_words


def test_words_are_whitespace_runs_and_cjk_characters() -> None:
    text = "Call foo_bar() at 10:30, 東京 ok"
    words = [text[s:e] for s, e in split_words(text)]
    assert words == ["Call", "foo_bar()", "at", "10:30,", "東", "京", "ok"]
    assert split_words("  \n\t ") == []


def test_forced_patterns_and_strings() -> None:
    text = (
        "id 123e4567-e89b-12d3-a456-426614174000 mail bob@example.com see "
        "https://x.org/a?b=1 call os.path.join and snake_case or camelCase in 1987 by New York"
    )
    words = split_words(text)
    mask = forced_mask(text, words, strings=["New York"], numbers=True)
    forced = {text[s:e] for (s, e), m in zip(words, mask, strict=True) if m}
    assert forced == {
        "123e4567-e89b-12d3-a456-426614174000",
        "bob@example.com",
        "https://x.org/a?b=1",
        "os.path.join",
        "snake_case",
        "camelCase",
        "1987",
        "New",
        "York",
    }
    default = forced_mask(text, words)
    assert {text[s:e] for (s, e), m in zip(words, default, strict=True) if m} == forced - {
        "1987",
        "New",
        "York",
    }
    off = forced_mask(text, words, strings=["bob"], patterns=False)
    assert {text[s:e] for (s, e), m in zip(words, off, strict=True) if m} == {"bob@example.com"}


def test_separators() -> None:
    assert is_separator("|") and is_separator("--") and is_separator("•")
    assert not is_separator("a|") and not is_separator("1")
