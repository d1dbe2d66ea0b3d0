"""The token compressor on a tiny random encoder: budgets never exceeded, the passages' order as a
prior, forced words, robustness, caches and configuration
(ragzip.compressors.token.compressor)."""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import ragzip
from ragzip import PLAIN_CONTEXT, Budget, BudgetError, ConfigError
from ragzip.cache.feature_cache import forget_remembered
from ragzip.compressor import REMEMBERED_REQUESTS, join_spans
from ragzip.compressors.kept_whole import value_units
from ragzip.compressors.token.compressor import TokenCompressor
from ragzip.compressors.token.selection import select_words
from ragzip.compressors.token.words import forced_mask, is_separator
from ragzip.compressors.units import split_words
from ragzip.core.tokenization import TokenCounter

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HEXISH = re.compile(r"[0-9a-f-]{6,}")

_pieces = [
    "the", "river", "Paris", "1965", "naïve", "U.S.", "東京", "日本語の文章です。", "😀", "👩‍👩‍👧",
    "def f(x):", "return x**2;", "<b>x</b>", "|", "--", "123e4567-e89b-12d3-a456-426614174000",
    "a@b.io", "\n", "Ω", "\u200b",
]  # fmt: skip


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    passages=st.lists(
        st.one_of(
            st.lists(st.sampled_from(_pieces), max_size=60).map(" ".join),
            st.text(max_size=120),
        ),
        min_size=1,
        max_size=5,
    ),
    budget=st.one_of(
        st.integers(min_value=1, max_value=200).map(Budget.tokens),
        st.sampled_from([1.0, 1.5, 2.0, 3.0, 4.0, 8.0, 20.0]).map(Budget.compression),
    ),
)
def test_budget_never_exceeded(
    tiny_compressor: TokenCompressor, passages: list[str], budget: Budget
) -> None:
    counter = tiny_compressor.counter
    sent = PLAIN_CONTEXT.render_texts(passages)
    original = counter.count(sent) if sent else 0
    if original > 0 and budget.resolve(original) == 0:
        with pytest.raises(BudgetError):
            tiny_compressor.compress("who wrote it?", passages, budget=budget)
        return
    try:
        result = tiny_compressor.compress("who wrote it?", passages, budget=budget)
    except BudgetError as exc:  # a token budget that keeps nothing is refused, never emptied
        assert budget.max_tokens is not None and "keeps nothing" in str(exc)
        return
    recount = counter.count(result.context) if result.context else 0
    assert recount == result.compressed_tokens <= result.budget_tokens
    if result.budget_tokens >= result.original_tokens:
        assert [p.text for p in result.passages] == passages


def test_ratio_budgets_are_met_exactly_on_prose(tiny_compressor: TokenCompressor) -> None:
    text = (
        "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. "
        "It is named after the engineer Gustave Eiffel, whose company designed and built "
        "the tower from 1887 to 1889. Locally nicknamed La dame de fer, it was constructed "
        "as the centrepiece of the 1889 World's Fair."
    )
    for ratio in (2.0, 3.0, 4.0, 8.0):
        result = tiny_compressor.compress(
            "who built it?", [text, text[::-1]], budget=Budget(ratio=ratio)
        )
        assert result.compressed_tokens <= result.budget_tokens
        assert result.budget_tokens - result.compressed_tokens <= 3, ratio


def forced_need(counter: TokenCounter, passages: list[str], **force: Any) -> int:
    """Tokens the forced units of ``passages`` (a value with the words naming it) take, plus
    the separators between passages, which the budget pays first."""
    need = counter.count("\n\n".join(passages)) - sum(counter.count_batch(passages))
    for text in passages:
        units = value_units(text, split_words(text))
        forced = forced_mask(text, units, **force)
        need += counter.count(
            join_spans(text, [u for u, f in zip(units, forced, strict=True) if f])[0]
        )
    return need


def test_position_prior_ranks_earlier_passages_first(tiny_compressor: TokenCompressor) -> None:
    """A word loses ``position_weight · log2(1 + place)``; a forced word stays above all."""
    texts = ["alpha beta", "gamma 7f3e2a10-5b6c-4d7e-8f90-a1b2c3d4e5f6"]
    units = [split_words(t) for t in texts]
    probs = [np.array([0.5, 0.2]), np.array([0.5, 0.1])]
    ranked = tiny_compressor.priority("what?", texts, units, probs, position_weight=0.3)
    np.testing.assert_allclose(ranked[0], [0.5, 0.2])
    np.testing.assert_allclose(ranked[1], [0.5 - 0.3, 1.1])  # log2(2) = 1; the UUID is forced
    plain = tiny_compressor.priority("what?", texts, units, probs)
    np.testing.assert_allclose(plain[1], [0.5, 1.1])


def test_a_strong_position_prior_fills_passages_in_order(
    tiny_compressor: TokenCompressor,
) -> None:
    """With a prior far above any probability, a later passage keeps a word only once every
    earlier one is whole, whatever the classifier says."""
    first = "The first passage says the tower is tall and old and made of stone."
    second = "The second passage talks about rivers, bridges and the weather in spring."
    compressor = TokenCompressor(
        replace(tiny_compressor.config, position_weight=100.0),
        counter=tiny_compressor.counter,
        model=tiny_compressor.model,
        tokenizer=tiny_compressor.tokenizer,
    )
    for ratio in (1.5, 3.0):
        result = compressor.compress("what?", [first, second], budget=Budget(ratio=ratio))
        kept = [p.text for p in result.passages]
        assert kept[1] == "" or kept[0] == first, (ratio, kept)
    assert compressor.compress("what?", [first, second], budget=Budget(ratio=3.0)).context


def test_forced_words_survive_when_the_budget_allows(tiny_compressor: TokenCompressor) -> None:
    counter = tiny_compressor.counter
    text = (
        "Contact alice@corp.example or open https://corp.example/docs today. The ticket "
        "7f3e2a10-5b6c-4d7e-8f90-a1b2c3d4e5f6 mentions PROJECT-ZEUS and the flag use_cache, "
        "which was added in 2019 after a long discussion about caching in general."
    )
    filler = "Nothing in this sentence matters at all for the question at hand. " * 6
    config = TokenCompressor.Config(
        force_keep=("PROJECT-ZEUS", "long discussion"), force_numbers=True
    )
    compressor = TokenCompressor(
        config,
        counter=counter,
        model=tiny_compressor.model,
        tokenizer=tiny_compressor.tokenizer,
    )
    must = [
        "alice@corp.example",
        "https://corp.example/docs",
        "7f3e2a10-5b6c-4d7e-8f90-a1b2c3d4e5f6",
        "PROJECT-ZEUS",
        "use_cache,",
        "2019",
        "long discussion",
    ]
    need = forced_need(counter, [text, filler], strings=config.force_keep, numbers=True)
    result = compressor.compress("what?", [text, filler], budget=Budget.tokens(need + 2))
    kept = result.passages[0].text
    for s in must:
        assert s in kept, s
    assert result.compressed_tokens <= need + 2


_prose = [
    "the",
    "river",
    "flows",
    "past",
    "old",
    "towns",
    "and",
    "wide",
    "fields",
    ",",
    "where",
    "farmers",
    "grow",
    "wheat",
]
_identifiers = [
    "123e4567-e89b-12d3-a456-426614174000",
    "ops@example.org",
    "https://example.com/a/b?c=1",
    "max_retries",
    "getValue()",
    "os.path.join",
    "PROJECT-ZEUS",
]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    passages=st.lists(
        st.lists(st.sampled_from(_prose + _identifiers), min_size=1, max_size=50).map(" ".join),
        min_size=1,
        max_size=4,
    ),
    extra=st.integers(min_value=0, max_value=60),
)
@example(passages=["the", "the"], extra=0)  # only the separator fits: refused
# the forced units fit exactly, but the estimated opening of the second passage said not
@example(passages=["the ops@example.org", "123e4567-e89b-12d3-a456-426614174000"], extra=0)
def test_forced_words_always_survive(
    tiny_compressor: TokenCompressor, passages: list[str], extra: int
) -> None:
    """Identifiers and user strings are kept whole whenever the forced words alone fit."""
    config = TokenCompressor.Config(force_keep=("PROJECT-ZEUS",))
    compressor = TokenCompressor(
        config,
        counter=tiny_compressor.counter,
        model=tiny_compressor.model,
        tokenizer=tiny_compressor.tokenizer,
    )
    counter = compressor.counter
    need = forced_need(counter, passages, strings=config.force_keep)
    try:
        result = compressor.compress("what?", passages, budget=Budget.tokens(max(1, need + extra)))
    except BudgetError as exc:  # nothing forced, and no word fits: refused, never emptied
        separators = counter.count("\n\n".join(passages)) - sum(counter.count_batch(passages))
        assert need == separators and "keeps nothing" in str(exc)  # no forced unit
        return
    assert result.compressed_tokens <= max(1, need + extra)
    for original, out in zip(passages, result.passages, strict=True):
        for ident in _identifiers:
            assert out.text.count(ident) == original.count(ident), ident


def test_uuids_are_never_cut(smollm2_counter: TokenCounter, tiny_parts: tuple[Any, Any]) -> None:
    rng = random.Random(3)
    uuids = [
        "-".join(
            "".join(rng.choice("0123456789abcdef") for _ in range(n)) for n in (8, 4, 4, 4, 12)
        )
        for _ in range(12)
    ]
    passages = [f'"{a}": "{b}"' for a, b in zip(uuids[::2], uuids[1::2], strict=True)]
    for patterns in (True, False):
        compressor = TokenCompressor(
            TokenCompressor.Config(force_patterns=patterns),
            counter=smollm2_counter,
            model=tiny_parts[0],
            tokenizer=tiny_parts[1],
        )
        for n in (5, 20, 40, 70, 100):
            try:
                result = compressor.compress("value?", passages, budget=Budget.tokens(n))
            except BudgetError:  # too small to keep anything whole: refused, never emptied
                continue
            for chunk in HEXISH.findall(result.context):
                assert chunk in uuids, chunk


@pytest.mark.parametrize(
    "text",
    [
        "東京は日本の首都です。人口は約千四百万人です。大阪は二番目に大きい都市圏です。",
        "😀🎉 party 👩‍👩‍👧 family 🇫🇷 flag " * 10,
        "def area(r):\n    return 3.14159 * r ** 2\n\nclass Foo(Bar):\n    x: int = 0\n" * 5,
        "\u200b\u200b zero-width \u200b and control \x00\x07 chars",
        "a" * 3000,
        "| | | -- -- == == • •",
    ],
)
def test_no_crash_on_unusual_text(tiny_compressor: TokenCompressor, text: str) -> None:
    for budget in (Budget.tokens(1), Budget.tokens(5), Budget.compression(3)):
        try:
            result = tiny_compressor.compress(
                "what is it?", [text, "plain words here"], budget=budget
            )
        except BudgetError as exc:  # a token budget that keeps nothing is refused
            assert budget.max_tokens is not None and "keeps nothing" in str(exc)
            continue
        assert result.compressed_tokens <= result.budget_tokens


def test_consecutive_separators_are_dropped(
    smollm2_counter: TokenCounter, tiny_parts: tuple[Any, Any]
) -> None:
    text = "alpha | | | beta -- -- gamma • • • delta"
    words = split_words(text)
    prio = [np.array([1.0 if is_separator(text[s:e]) else 0.5 for s, e in words])]
    kept = select_words([text], [words], prio, 1000, smollm2_counter, drop_separators=True)[0]
    out = [text[s:e] for s, e in kept]
    for a, b in itertools.pairwise(out):
        assert not (is_separator(a) and is_separator(b))
    assert {"alpha", "beta", "gamma", "delta"} <= set(out)


def test_repeat_runs_are_identical(tiny_compressor: TokenCompressor) -> None:
    passages = ["The cat sat on the mat. " * 20, "Dogs bark at night 42 times. " * 15]
    a = tiny_compressor.compress("what did the cat do?", passages, budget=Budget(ratio=3))
    b = tiny_compressor.compress("what did the cat do?", passages, budget=Budget(ratio=3))
    assert a.to_dict()["passages"] == b.to_dict()["passages"]


def test_score_cache_gives_the_same_output(
    smollm2_counter: TokenCounter, tiny_parts: tuple[Any, Any], tiny: TokenCompressor.Config
) -> None:

    model, tokenizer = tiny_parts
    plain = TokenCompressor(
        replace(tiny, cache_size=0), counter=smollm2_counter, model=model, tokenizer=tokenizer
    )
    cached = TokenCompressor(
        replace(tiny, cache_size=2), counter=smollm2_counter, model=model, tokenizer=tokenizer
    )
    requests = [
        ("who sat?", ["The cat sat on the mat. " * 10, "Dogs bark. " * 12]),
        ("who barked?", ["The cat sat on the mat. " * 10, "Dogs bark. " * 12]),
        ("what is it?", ["A third passage about rivers and towns. " * 8]),
    ]
    for ratio in (2.0, 4.0, 8.0):
        for question, passages in requests:
            a = plain.compress(question, passages, budget=Budget(ratio=ratio))
            b = cached.compress(question, passages, budget=Budget(ratio=ratio))
            assert [p.spans for p in a.passages] == [p.spans for p in b.passages]
    assert len(cached._cache) == 2  # least recently used request evicted


def test_a_repeated_request_is_scored_once_until_forgotten(
    smollm2_counter: TokenCounter, tiny_parts: tuple[Any, Any], tiny: TokenCompressor.Config
) -> None:
    model, tokenizer = tiny_parts
    comp = TokenCompressor(tiny, counter=smollm2_counter, model=model, tokenizer=tokenizer)
    assert comp.config.cache_size == REMEMBERED_REQUESTS  # remembered by default
    calls: list[str] = []
    score = comp.word_probabilities

    def counting(query: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(query)
        return score(query, *args, **kwargs)

    comp.word_probabilities = counting  # type: ignore[method-assign]
    passages = ["The cat sat on the mat. " * 10, "Dogs bark. " * 12]
    first = comp.compress("who sat?", passages, budget=Budget(ratio=4))
    again = comp.compress("who sat?", passages, budget=Budget(ratio=4))
    assert calls == ["who sat?"]
    assert [p.spans for p in first.passages] == [p.spans for p in again.passages]
    forget_remembered(comp)
    comp.compress("who sat?", passages, budget=Budget(ratio=4))
    assert calls == ["who sat?", "who sat?"]


def test_length_bucketing_does_not_change_the_result(
    smollm2_counter: TokenCounter, tiny_parts: tuple[Any, Any], tiny: TokenCompressor.Config
) -> None:

    passages = [("word " * n).strip() + "." for n in (5, 300, 40, 120, 2)]
    results = []
    for bucketing in (True, False):
        compressor = TokenCompressor(
            replace(tiny, length_bucketing=bucketing),
            counter=smollm2_counter,
            model=tiny_parts[0],
            tokenizer=tiny_parts[1],
        )
        probs = compressor.word_probabilities("q?", passages)
        results.append(np.concatenate(probs))
    assert np.allclose(results[0], results[1], atol=1e-5)


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"max_window": 600},
        {"max_window": 16},
        {"batch_size": 0},
        {"cache_size": -1},
        {"quantize": "int4"},
        {"force_keep": "a single string"},
        {"max_window": 64, "max_query_tokens": 60},
        {"no_such_key": 1},
    ],
)
def test_bad_config_raises(smollm2_counter: TokenCounter, config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ragzip.create_compressor("token", counter=smollm2_counter, config=config)


def test_model_without_tokenizer_raises(
    smollm2_counter: TokenCounter, tiny_parts: tuple[Any, Any]
) -> None:
    with pytest.raises(ConfigError, match="tokenizer"):
        TokenCompressor(counter=smollm2_counter, model=tiny_parts[0])
