"""Whether a text holds an answer: SQuAD-style normalisation, as evaluation, training and the
benchmarks match answers."""

from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Normalise as in the SQuAD evaluation: lower case, no punctuation/articles/extra spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_in_text(answers: list[str], text: str) -> bool:
    """Whether any normalised answer occurs in the normalised text (as whole words)."""
    norm = f" {normalize_answer(text)} "
    return any((a := normalize_answer(ans)) and f" {a} " in norm for ans in answers)
