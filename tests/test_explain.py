"""What compression kept, shown: segments of each passage, the plain and the styled view."""

from __future__ import annotations

import io
import itertools

from rich.console import Console

from ragzip.core.types import Budget, Passage
from ragzip.explain import plain, show, styled
from ragzip.registry import create_compressor
from ragzip.weights import smollm2_counter

PASSAGES = [
    Passage(
        "The Seine flows through Paris. It is 777 km long. Boats carry tourists.", title="Seine"
    ),
    Passage("Paris is the capital of France. About two million people live there.", id="p2"),
]


def _result():  # type: ignore[no-untyped-def]
    comp = create_compressor("truncate", counter=smollm2_counter())
    return comp.compress("How long is the Seine?", PASSAGES, budget=Budget.tokens(12))


def test_segments_cover_the_text_and_follow_the_spans() -> None:
    result = _result()
    for passage in result.passages:
        segments = passage.segments()
        assert "".join(text for text, _ in segments) == passage.passage.text
        assert "".join(text for text, kept in segments if kept) == "".join(
            passage.passage.text[s:e] for s, e in passage.spans
        )
        kept_flags = [kept for _, kept in segments]
        assert all(a != b for a, b in itertools.pairwise(kept_flags))


def test_plain_view_marks_dropped_text_and_counts() -> None:
    result = _result()
    text = plain(result)
    first = result.passages[0]
    assert text.startswith(
        f"truncate: {result.original_tokens} → {result.compressed_tokens} context tokens"
    )
    assert f"budget {result.budget_tokens}" in text
    assert (
        f"[1] Seine ({first.passage.id}): {first.original_tokens} → {first.tokens} tokens" in text
    )
    assert "[2] (p2):" in text
    dropped = [t for p in result.passages for t, kept in p.segments() if not kept]
    assert dropped and all(f"[-{t}-]" in text for t in dropped)
    unmarked = text.replace("[-", "").replace("-]", "")
    assert all(p.passage.text in unmarked for p in result.passages)


def test_terminal_view_styles_kept_and_dropped() -> None:
    result = _result()
    buffer = io.StringIO()
    show(result, Console(file=buffer, force_terminal=True, width=200))
    out = buffer.getvalue()
    assert "\x1b[" in out and "[-" not in out  # styled, not marked
    spans = [
        (str(s.style), body.plain[s.start : s.end])
        for body in styled(result).renderables
        for s in body.spans  # type: ignore[union-attr]
    ]
    assert ("bold green", result.passages[0].text) in spans
    buffer = io.StringIO()
    show(result, Console(file=buffer, force_terminal=False))
    assert buffer.getvalue() == plain(result)
