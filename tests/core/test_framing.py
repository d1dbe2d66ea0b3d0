"""The layout's cost per kept passage: its estimate, and selections that charge it only for the
passages they keep, verified on what is sent."""

from __future__ import annotations

import pytest

from ragzip.compressors.units import greedy_fill, split_units
from ragzip.core.framing import PLAIN_CONTEXT, Framing, join_spans, measure_framing
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Passage
from ragzip.prompts import NUMBERED_CONTEXT, PROMPT_CONTEXT

TEXTS = [
    "Paris is the capital of France. It lies on the Seine.",
    "The Eiffel Tower was completed in 1889. It is 330 metres tall.",
    "Berlin is the capital of Germany. It lies on the Spree.",
    "Rome is the capital of Italy. It lies on the Tiber.",
]


def _framing(counter: TokenCounter, layout: object, texts: list[str]) -> Framing:
    passages = [Passage(t) for t in texts]
    counts = counter.count_batch(texts)

    def sent(kept: list[str] | tuple[str, ...]) -> int:
        pieces = [p for p in layout.render(passages, list(kept)) if p]  # type: ignore[attr-defined]
        return sum(counter.count_batch(pieces)) if pieces else 0

    total = sent(texts) - sum(counts)
    framing = measure_framing(texts, counts, total, sent)
    assert framing is not None
    return framing


@pytest.mark.parametrize(
    "layout", [PLAIN_CONTEXT, PROMPT_CONTEXT, NUMBERED_CONTEXT], ids=["plain", "prompt", "numbered"]
)
def test_estimate_is_close_to_what_is_sent(minilm_counter: TokenCounter, layout: object) -> None:
    framing = _framing(minilm_counter, layout, TEXTS)
    counts = minilm_counter.count_batch(TEXTS)
    assert framing.estimate(sum(counts), range(len(TEXTS))) == pytest.approx(
        framing.sent(TEXTS), abs=2
    )
    for kept in ([0], [1, 3], [0, 1, 2]):
        texts = [t if i in kept else "" for i, t in enumerate(TEXTS)]
        estimate = framing.estimate(sum(counts[i] for i in kept), kept)
        assert estimate == pytest.approx(framing.sent(texts), abs=2)
    assert framing.estimate(0, []) == 0


def test_nothing_to_frame_is_none(minilm_counter: TokenCounter) -> None:
    assert measure_framing(["", " "], [0, 0], 2, lambda texts: 0) is None


def test_a_kept_passage_pays_its_opening_and_a_dropped_one_nothing(
    minilm_counter: TokenCounter,
) -> None:
    # a layout that numbers its passages: each kept passage pays for its number
    framing = _framing(minilm_counter, NUMBERED_CONTEXT, TEXTS)
    units = split_units(TEXTS, minilm_counter)
    first = units[0].tokens
    limit = framing.fixed + framing.openings[0] + first + 1  # room for one sentence, framed
    reserved = limit - framing.total  # what the text may use if every passage were framed
    order = list(range(len(units)))
    without = greedy_fill(units, order, max(0, reserved), minilm_counter)
    with_framing = greedy_fill(
        units, order, max(0, reserved), minilm_counter, framing=framing, sent_limit=limit
    )
    assert without.kept == ()  # reserving every passage's layout leaves no room
    assert with_framing.kept[:1] == (0,)
    kept = [join_spans(t, s)[0] for t, s in zip(TEXTS, with_framing.spans, strict=True)]
    assert framing.sent(kept) <= limit


def test_a_low_estimate_is_caught_by_the_exact_count(minilm_counter: TokenCounter) -> None:
    real = _framing(minilm_counter, NUMBERED_CONTEXT, TEXTS)
    wrong = Framing((0,) * len(TEXTS), 0, real.total, real.sent)  # says the layout is free
    units = split_units(TEXTS, minilm_counter)
    limit = 40
    fill = greedy_fill(
        units, list(range(len(units))), 0, minilm_counter, framing=wrong, sent_limit=limit
    )
    sent = real.sent([join_spans(t, s)[0] for t, s in zip(TEXTS, fill.spans, strict=True)])
    assert 0 < sent <= limit
