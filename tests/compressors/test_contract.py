"""The contract every registered compressor keeps, checked with real tokenizers.

Parametrised over ragzip's own registered compressors: a newly registered one is tested here
without edits. Its budget must hold on its own (the base class's trim must never fire), output
must be cut from the original passages, and bad input must raise ``InputError``.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ragzip
from ragzip import (
    Budget,
    BudgetError,
    ConfigError,
    InputError,
    MissingDependencyError,
    ModelError,
    Passage,
    RegistryError,
)
from ragzip.compressor import Compressor, join_spans
from ragzip.core.framing import PLAIN_CONTEXT, ContextFormat
from ragzip.core.tokenization import TokenCounter
from ragzip.prompts import NUMBERED_CONTEXT, PROMPT_CONTEXT
from ragzip.registry import entries
from tests.compressors.support import PROSE

# ragzip's own compressors: test modules register doubles (failing, hanging ones) whose import
# before this one must not put them under the contract
NAMES = [e.name for e in entries() if e.target.startswith("ragzip.")]

_compressors: dict[tuple[str, str], Compressor] = {}


@pytest.fixture(params=NAMES)
def compressor(request: pytest.FixtureRequest, counter: TokenCounter) -> Compressor:
    """Each registered compressor over each real counter (built once per pair)."""
    key = (request.param, counter.name)
    if key not in _compressors:
        try:
            _compressors[key] = ragzip.create_compressor(request.param, counter=counter)
        except (MissingDependencyError, ModelError, ConfigError) as exc:
            # e.g. a policy that needs a profile file, or weights not installed here; shown by -ra
            pytest.skip(f"{request.param!r} cannot be built with its defaults here: {exc}")
    return _compressors[key]


# ---------------------------------------------------------------------------- strategies

_PIECES = [
    "the", "river", "Paris", "1965", "naïve", "Dr.", "U.S.", "e.g.", "3.14", "--", "...",
    "東京", "日本語の文章です。", "中文句子。", "😀", "🇫🇷", "👩‍👩‍👧", "def f(x):", "return x**2;",
    '{"a": [1, 2]}', "<b>bold</b>", "\t", "\n", "  ", "Ω", "ß", "\u200b",
]  # fmt: skip

_sentence = st.builds(
    lambda words, end: " ".join(words) + end,
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=20),
    st.sampled_from([".", "!", "?", "", "。", ".\n"]),
)
_passage_text = st.one_of(
    st.just(""),
    st.sampled_from([" ", "\n\n", "\t \n"]),
    st.builds(
        lambda sents, sep: sep.join(sents),
        st.lists(_sentence, min_size=1, max_size=8),
        st.sampled_from([" ", "\n", "\n\n", ""]),
    ),
    st.text(max_size=160),
)
_passages = st.lists(
    st.one_of(
        _passage_text,
        st.builds(lambda t, h: {"text": t, "title": h}, _passage_text, st.text(max_size=20)),
    ),
    min_size=0,
    max_size=6,
)
_budgets = st.one_of(
    st.integers(min_value=1, max_value=8).map(Budget.tokens),
    st.integers(min_value=1, max_value=300).map(Budget.tokens),
    st.floats(min_value=1.0, max_value=20.0).map(Budget.compression),
    st.builds(
        lambda n, r: Budget(max_tokens=n, ratio=r),
        st.integers(min_value=1, max_value=200),
        st.floats(min_value=1.0, max_value=10.0),
    ),
)
_queries = st.one_of(
    st.sampled_from(["who wrote the song yesterday", "東京の人口は?", "what does f(x) return"]),
    st.text(min_size=1, max_size=40).filter(str.strip),
)


def _sent(counter: TokenCounter, layout: ContextFormat, passages: list[Passage], texts: Any) -> int:
    """Tokens of what ``layout`` sends, counted independently of the compressor."""
    block = layout.render(passages, list(texts))[0]
    return counter.count(block) if block else 0


def _check(
    compressor: Compressor,
    query: str,
    passages: list[Any],
    budget: Budget,
    trims: list[str],
    layout: ContextFormat = PLAIN_CONTEXT,
) -> None:
    counter = compressor.counter
    originals = [Passage.coerce(p) for p in passages]
    if compressor.soft:  # vectors stand in for passages: the budget counts the passages alone
        original = sum(counter.count(p.text) for p in originals)
    else:
        original = _sent(counter, layout, originals, [p.text for p in originals])
    if budget.resolve(original) == 0 and original > 0:  # nothing could be sent: refused
        with pytest.raises(BudgetError):
            compressor.compress(query, passages, budget=budget, layout=layout)
        return
    before = len(trims)
    has_text = any(p.text.strip() and counter.count(p.text) for p in originals)
    try:
        result = compressor.compress(query, passages, budget=budget, layout=layout)
    except BudgetError as exc:  # a token budget that keeps nothing of a context with text
        assert has_text and budget.max_tokens is not None and not compressor.soft, exc
        assert "keeps nothing of this context" in str(exc)
        return
    assert len(trims) == before, f"{compressor.name} relied on the base class trim: {trims}"
    assert result.query == query
    assert result.compressor == compressor.name
    assert result.compressed_tokens <= result.budget_tokens
    assert len(result.passages) == len(originals)
    if result.embeddings is None:  # what is sent, counted afresh, holds the budget
        if result.budget_raised:  # a ratio that kept nothing, raised until something is kept
            assert budget.max_tokens is None
            assert budget.resolve(original) <= result.budget_tokens <= original
        else:
            assert result.budget_tokens == budget.resolve(original)
        if has_text:  # a context with text never comes back empty
            assert any(p.spans for p in result.passages)
        assert result.original_tokens == original
        sent = _sent(counter, layout, originals, [p.text for p in result.passages])
        assert sent == result.compressed_tokens <= result.budget_tokens
        assert result.context == layout.render(originals, [p.text for p in result.passages])[0]
    if result.embeddings is not None:  # soft compressor: vectors stand in for the text
        _check_soft(result, originals, counter)
        again = compressor.compress(query, passages, budget=budget, layout=layout)
        assert again.embeddings is not None
        assert np.array_equal(again.embeddings, result.embeddings)
        return
    for out, original in zip(result.passages, originals, strict=True):
        assert out.passage == original  # same passages, same order
        spans = list(out.spans)
        assert spans == sorted(spans)
        for (_, e0), (s1, _) in itertools.pairwise(spans):
            assert e0 < s1, "spans must be disjoint and not touching"
        for s, e in spans:
            assert 0 <= s < e <= len(original.text)
        assert out.text == join_spans(original.text, spans)[0]
        assert out.tokens == counter.count(out.text)
        assert out.original_tokens == counter.count(original.text)
    # deterministic on repeat
    again = compressor.compress(query, passages, budget=budget, layout=layout)
    assert [p.spans for p in again.passages] == [p.spans for p in result.passages]


def _check_soft(result: Any, originals: list[Passage], counter: TokenCounter) -> None:
    rows, _ = result.embeddings.shape
    assert result.embeddings.dtype == np.float32
    assert np.isfinite(result.embeddings).all()
    assert rows == result.compressed_tokens == sum(p.tokens for p in result.passages)
    for out, original in zip(result.passages, originals, strict=True):
        assert out.passage == original
        assert out.text == "" and out.spans == ()
        assert out.tokens >= 0
        assert out.original_tokens == counter.count(original.text)


def _examples(n: int) -> Any:
    """Hypothesis settings of the property tests below (``n`` examples each)."""
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@_examples(30)
@given(query=_queries, passages=_passages, budget=_budgets)
def test_budget_and_cut_from_original(
    compressor: Compressor,
    trim_warnings: list[str],
    query: str,
    passages: list[Any],
    budget: Budget,
) -> None:
    _check(compressor, query, passages, budget, trim_warnings)


@_examples(15)
@given(query=_queries, passages=_passages, budget=_budgets)
def test_budget_counts_the_prompt_as_sent(
    compressor: Compressor,
    trim_warnings: list[str],
    query: str,
    passages: list[Any],
    budget: Budget,
) -> None:
    """With the pipeline's prompt layout (header, numbers, question line) and a titled layout."""
    _check(compressor, query, passages, budget, trim_warnings, PROMPT_CONTEXT)
    _check(compressor, query, passages, budget, trim_warnings, _TITLED)


_TITLED = ContextFormat(
    template="{text}", title_template="## {title}\n{text}", separator="\n---\n", prefix="Docs:\n"
)


@pytest.mark.parametrize(
    "budget",
    [Budget.tokens(1), Budget.tokens(7), Budget.compression(1.0),
     Budget.compression(2.0), Budget.compression(4.0), Budget.compression(1000.0),
     Budget(max_tokens=20, ratio=2.0)],
    ids=str,
)  # fmt: skip
def test_fixed_inputs(compressor: Compressor, budget: Budget, trim_warnings: list[str]) -> None:
    _check(compressor, "who wrote yesterday?", PROSE, budget, trim_warnings)


def test_impossible_budget_is_refused(compressor: Compressor) -> None:
    with pytest.raises(BudgetError, match="leaves 0 of the context's"):
        compressor.compress("who wrote yesterday?", PROSE, budget=Budget.compression(1000))
    with pytest.raises(BudgetError, match="at least 1"):
        Budget.tokens(0)
    with pytest.raises(BudgetError, match="at least 1"):
        Budget.parse("0")


@pytest.mark.parametrize(
    "layout", [PLAIN_CONTEXT, PROMPT_CONTEXT, NUMBERED_CONTEXT, _TITLED], ids=str
)
@pytest.mark.parametrize("budget", [Budget.compression(1), Budget.tokens(100_000)], ids=str)
def test_budget_covering_the_context_keeps_it_whole(
    compressor: Compressor, budget: Budget, layout: ContextFormat
) -> None:
    """``1x`` (or any budget the whole context fits) is no compression, in every text compressor;
    ``auto`` alone decides by itself how much to keep below such a cap."""
    if compressor.soft or compressor.decides_amount:
        pytest.skip(f"{compressor.name} does not keep text whole by design")
    passages = [Passage(t, title=f"T{i}" if i % 2 else "") for i, t in enumerate(PROSE)]
    result = compressor.compress("who wrote yesterday?", passages, budget=budget, layout=layout)
    assert [p.text for p in result.passages] == [p.text for p in passages]
    assert result.compressed_tokens == result.original_tokens


def test_generous_budget_is_used(compressor: Compressor) -> None:
    """At 2x a compressor keeps something: no method may return an empty context."""
    result = compressor.compress("who wrote yesterday?", PROSE, budget=Budget.compression(2))
    assert result.budget_tokens > 0
    assert result.compressed_tokens > 0


def test_no_passages(compressor: Compressor) -> None:
    result = compressor.compress("anything?", [], budget=Budget.compression(4))
    assert result.passages == ()
    assert result.compressed_tokens == result.original_tokens == 0


def test_identity_keeps_everything_at_ratio_one(counter: TokenCounter) -> None:
    identity = ragzip.create_compressor("identity", counter=counter)
    result = identity.compress("who wrote yesterday?", PROSE, budget=Budget.compression(1))
    assert [p.text for p in result.passages] == [p for p in PROSE]
    assert result.compressed_tokens == result.original_tokens


@pytest.mark.parametrize(
    ("query", "passages", "budget"),
    [
        ("", ["text"], Budget.tokens(10)),
        ("   \n", ["text"], Budget.tokens(10)),
        (None, ["text"], Budget.tokens(10)),
        (42, ["text"], Budget.tokens(10)),
        ("q?", [42], Budget.tokens(10)),
        ("q?", [None], Budget.tokens(10)),
        ("q?", [b"bytes"], Budget.tokens(10)),
        ("q?", [{"title": "no text key"}], Budget.tokens(10)),
        ("q?", [{"text": 7}], Budget.tokens(10)),
        ("q?", "a single string, not a list", Budget.tokens(10)),
        ("q?", ["text"], 10),
        ("q?", ["text"], "4x"),
        ("q?", ["text"], None),
        ("q?", ["text"], 0.25),
    ],
)
def test_bad_input_raises_input_error(
    compressor: Compressor, query: Any, passages: Any, budget: Any
) -> None:
    with pytest.raises(InputError):
        compressor.compress(query, passages, budget=budget)


def test_unknown_name_lists_valid_names(minilm_counter: TokenCounter) -> None:
    with pytest.raises(RegistryError) as info:
        ragzip.create_compressor("no-such-method", counter=minilm_counter)
    message = str(info.value)
    assert "no-such-method" in message
    for name in NAMES:
        assert name in message


def test_registered_names_cover_the_baselines() -> None:
    assert {"identity", "truncate", "random", "mig"} <= set(NAMES)


def test_a_short_context_is_kept_or_refused_never_dropped(compressor: Compressor) -> None:
    """4x of one short passage is less than a numbered prompt's layout: a ratio is raised
    until something is kept (and says so); a token budget that keeps nothing is refused."""
    if compressor.soft:
        pytest.skip("soft compressors count vectors, not the layout")
    passages = ["The Eiffel Tower stands in Paris, France."]
    query = "Where is the Eiffel Tower?"
    result = compressor.compress(
        query, passages, budget=Budget.parse("4x"), layout=NUMBERED_CONTEXT
    )
    assert result.budget_raised
    assert result.budget_tokens > Budget.parse("4x").resolve(result.original_tokens)
    assert result.passages[0].text.strip() and result.compressed_tokens <= result.budget_tokens
    with pytest.raises(BudgetError, match=r"keeps nothing of this context: .* layout takes \d+"):
        compressor.compress(query, passages, budget=Budget.tokens(5), layout=NUMBERED_CONTEXT)
