"""The EXIT-style sentence compressor: contract, whole-sentence selection, modes, trained model.

Property tests run over a tiny randomly initialised classifier (same code path, fast); the mode
and quality tests use the shipped trained classifier over the packaged MiniLM.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ragzip
from ragzip import PLAIN_CONTEXT, Budget, BudgetError, ConfigError, InputError, Passage
from ragzip.compressor import join_spans
from ragzip.compressors.sentence.compressor import SentenceCompressor
from ragzip.compressors.sentence.features import (
    CONTEXT,
    QUESTION,
    SENTENCE,
    SPECIAL,
    Featurizer,
    InputLimits,
    PassageSentences,
)
from ragzip.compressors.sentence.model import (
    WEIGHTS_DIR,
    SentenceClassifier,
    load_base,
    read_config,
)
from ragzip.compressors.sentence.scorer import SentenceScorer, load_scorer
from ragzip.compressors.units import place_penalty, sentence_spans, split_units
from ragzip.core.errors import ModelError
from ragzip.core.tokenization import TokenCounter
from ragzip.experiments.answers import answer_in_text
from ragzip.registry import get_class
from tests.compressors.support import tiny_bert_config


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from ragzip.weights import minilm_dir

    return AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)


def _tiny_scorer(tokenizer: Any, *, cache_size: int = 0) -> SentenceScorer:
    """A 2-layer, 32-wide BERT with a random head: real code path, fast."""
    from transformers import BertModel

    config = tiny_bert_config(tokenizer.vocab_size, layers=2, max_position_embeddings=256)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = SentenceClassifier(BertModel(config, add_pooling_layer=False), n_frozen=1)
    return SentenceScorer(
        model, tokenizer, limits=InputLimits(), threshold=0.5, cache_size=cache_size
    )


@pytest.fixture(scope="module")
def tiny_scorer(tokenizer: Any) -> SentenceScorer:
    return _tiny_scorer(tokenizer)


@pytest.fixture(scope="module")
def trained() -> SentenceScorer:
    return load_scorer()


@pytest.fixture(scope="module")
def gen_counter(minilm_counter: TokenCounter) -> TokenCounter:
    """The generator's tokenizer when ``smollm2_counter`` is available, else MiniLM's."""
    from ragzip import weights as models

    factory = getattr(models, "smollm2_counter", None)
    if factory is None:
        return minilm_counter
    counter: TokenCounter = factory()
    return counter


PRIDE = Passage(
    title="Pride and Prejudice",
    text=(
        "Pride and Prejudice is an 1813 novel of manners written by Jane Austen. "
        "The novel follows the character development of Elizabeth Bennet, the dynamic "
        "protagonist of the book. It was first published by Thomas Egerton. "
        "The story is set in rural England at the turn of the 19th century."
    ),
)
BATH = Passage(
    title="Bath, Somerset",
    text=(
        "Bath is the largest city in the county of Somerset, England. "
        "It is known for and named after its Roman-built baths. "
        "The city became a World Heritage Site in 1987."
    ),
)
REGENCY = Passage(
    title="Regency era",
    text=(
        "The Regency era of British history officially spanned the years 1811 to 1820. "
        "It was a period distinguished by elegance and achievements in the fine arts and "
        "architecture. The era saw the rise of the Romantic movement in literature."
    ),
)
EASY = ("Who wrote the novel Pride and Prejudice?", [BATH, PRIDE, REGENCY], "Jane Austen")


def _sentence_count(result: Any) -> int:
    """Number of kept sentences, counted on the original texts' sentence spans."""
    n = 0
    for cp in result.passages:
        for s, e in sentence_spans(cp.passage.text):
            n += any(a <= s and e <= b for a, b in cp.spans)
    return n


def _assert_whole_sentences(result: Any) -> None:
    """Every kept span is a run of whole sentences (or the whole passage, when a budget covers
    it: with the whitespace around its sentences); the text is the spans joined."""
    for cp in result.passages:
        text = cp.passage.text
        sents = sentence_spans(text)
        starts, ends = {s for s, _ in sents}, {e for _, e in sents}
        if cp.spans == ((0, len(text)),):  # the passage kept whole, its edge whitespace too
            continue
        for a, b in cp.spans:
            assert a in starts and b in ends, (text, cp.spans)
        for s, e in sents:
            inside = any(a <= s and e <= b for a, b in cp.spans)
            outside = all(e <= a or b <= s for a, b in cp.spans)
            assert inside or outside, f"sentence {text[s:e]!r} was cut"
        assert cp.text == join_spans(text, cp.spans)[0]


# ---------------------------------------------------------------------------- configuration


def test_registered_under_its_name() -> None:
    assert get_class("sentence") is SentenceCompressor
    assert "sentence" in ragzip.available_compressors()


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "greedy"},
        {"threshold": 1.5},
        {"threshold": float("nan")},
        {"threshold": True},
        {"batch_size": 0},
        {"precision": "float16"},
        {"min_sentences": -1},
        {"thresold": 0.3},
    ],
)
def test_bad_config_is_a_config_error(bad: dict[str, Any], minilm_counter: TokenCounter) -> None:
    with pytest.raises(ConfigError):
        ragzip.create_compressor("sentence", counter=minilm_counter, config=bad)


def test_input_limits_are_checked() -> None:
    with pytest.raises(ConfigError):
        InputLimits(query=0)
    with pytest.raises(ConfigError):
        InputLimits(context=-1)


def test_bad_input_is_an_input_error(
    tiny_scorer: SentenceScorer, minilm_counter: TokenCounter
) -> None:
    comp = SentenceCompressor(counter=minilm_counter, scorer=tiny_scorer)
    with pytest.raises(InputError):
        comp.compress("  ", [PRIDE], budget=Budget.compression(2))
    with pytest.raises(InputError):
        comp.compress("q", "a single string", budget=Budget.compression(2))


# ---------------------------------------------------------------------------- featurizer


def test_featurizer_layout(tokenizer: Any) -> None:
    limits = InputLimits(query=8, sentence=6, title=3, context=10)
    feat = Featurizer(tokenizer, limits)
    passage = PassageSentences(
        title="Alpha Beta",
        sentences=("one two three.", "four five six seven eight nine ten eleven.", "twelve."),
    )
    enc = feat.encode("who is it", [passage])
    assert len(enc) == 3
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for e in enc:
        assert len(e.input_ids) == len(e.token_type_ids) <= limits.max_length
        assert e.input_ids[0] == cls and e.input_ids[-1] == sep
        assert list(e.input_ids).count(sep) == 3
        first_sep = e.input_ids.index(sep)
        assert set(e.token_type_ids[: first_sep + 1]) == {0}
        assert set(e.token_type_ids[first_sep + 1 :]) == {1}
        assert len(e.segment_ids) == len(e.input_ids)
        for tok_id, seg in zip(e.input_ids, e.segment_ids, strict=True):
            assert (seg == SPECIAL) == (tok_id in (cls, sep))
        assert e.segment_ids[1:first_sep] == (QUESTION,) * (first_sep - 1)
        assert SENTENCE in e.segment_ids and CONTEXT in e.segment_ids
    # the middle sentence is cut to 6 tokens in the classifier's view; its context holds the
    # title, the end of the sentence before and the start of the one after
    middle = tokenizer.decode(list(enc[1].input_ids))
    assert "four five six seven eight nine" in middle and "eleven" not in middle.split("[SEP]")[1]
    context = middle.split("[SEP]")[2]
    assert context.strip().startswith("alpha beta :")
    assert "three" in context and "twelve" in context


# ---------------------------------------------------------------------------- contract (tiny)

_WORDS = ["the", "river", "Paris", "1965", "naïve", "Dr.", "U.S.", "e.g.", "東京", "😀", "Ω"]
_sentence = st.builds(
    lambda ws, end: " ".join(ws) + end,
    st.lists(st.sampled_from(_WORDS), min_size=1, max_size=14),
    st.sampled_from([".", "!", "?", "", "。"]),
)
_passage = st.one_of(
    st.builds(
        lambda ss, sep, title: {"text": sep.join(ss), "title": title},
        st.lists(_sentence, min_size=0, max_size=7),
        st.sampled_from([" ", "\n", "\n\n"]),
        st.text(max_size=15),
    ),
    st.text(max_size=120),
)
_budget = st.one_of(
    st.integers(min_value=1, max_value=250).map(Budget.tokens),
    st.floats(min_value=1.0, max_value=16.0).map(Budget.compression),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    query=st.text(min_size=1, max_size=30).filter(str.strip),
    passages=st.lists(_passage, min_size=0, max_size=6),
    budget=_budget,
    mode=st.sampled_from(["adaptive", "budgeted"]),
    threshold=st.floats(min_value=0.0, max_value=1.0),
)
def test_contract_properties(
    tiny_scorer: SentenceScorer,
    minilm_counter: TokenCounter,
    trim_warnings: list[str],
    query: str,
    passages: list[dict[str, str] | str],
    budget: Budget,
    mode: str,
    threshold: float,
) -> None:
    config = SentenceCompressor.Config(mode=mode, threshold=threshold)
    comp = SentenceCompressor(config, counter=minilm_counter, scorer=tiny_scorer)
    sent = (
        PLAIN_CONTEXT.render(
            [Passage.coerce(p) for p in passages], [Passage.coerce(p).text for p in passages]
        )[0]
        if passages
        else ""
    )
    original = minilm_counter.count(sent) if sent else 0
    if original > 0 and budget.resolve(original) == 0:
        with pytest.raises(BudgetError):
            comp.compress(query, passages, budget=budget)
        return
    try:
        result = comp.compress(query, passages, budget=budget)
    except BudgetError as exc:  # a token budget that keeps nothing is refused, never emptied
        assert budget.max_tokens is not None and "keeps nothing" in str(exc)
        return
    assert not trim_warnings
    assert result.query == query
    assert result.compressor == "sentence"
    recount = minilm_counter.count(result.context) if result.context else 0
    assert recount == result.compressed_tokens <= result.budget_tokens
    assert len(result.passages) == len(passages)
    _assert_whole_sentences(result)
    again = comp.compress(query, passages, budget=budget)
    assert [p.spans for p in again.passages] == [p.spans for p in result.passages]


def test_position_prior_orders_the_fill(
    tiny_scorer: SentenceScorer, minilm_counter: TokenCounter
) -> None:
    """With the prior, a slightly less probable sentence of an earlier passage is kept first."""
    comp = SentenceCompressor(counter=minilm_counter, scorer=tiny_scorer)
    units = split_units(["Passage one here.", "Passage two here."], minilm_counter)
    probs = np.array([0.5, 0.6], dtype=np.float32)
    room = max(u.tokens for u in units.items)  # one sentence fits, not two

    def kept(prior: np.ndarray | None) -> list[str]:
        return [units[i].text for i in comp.select(units, probs, room, prior=prior).kept]

    assert kept(None) == ["Passage two here."]
    assert kept(-place_penalty([u.passage for u in units.items], 0.2)) == ["Passage one here."]
    assert comp.config.position_weight == 0.2


def test_empty_and_zero_budget(tiny_scorer: SentenceScorer, minilm_counter: TokenCounter) -> None:
    comp = SentenceCompressor(counter=minilm_counter, scorer=tiny_scorer)
    assert comp.compress("q", [], budget=Budget.tokens(10)).passages == ()
    with pytest.raises(BudgetError):
        comp.compress("q", ["", "  \n", PRIDE], budget=Budget.compression(10_000))
    result = comp.compress("q", ["", "  \n"], budget=Budget.tokens(1))
    assert result.compressed_tokens == 0


def test_adaptive_falls_back_to_min_sentences(
    tiny_scorer: SentenceScorer, minilm_counter: TokenCounter
) -> None:
    passages = [PRIDE, BATH]
    query = EASY[0]
    for minimum in (0, 1, 2):
        config = SentenceCompressor.Config(mode="adaptive", threshold=1.0, min_sentences=minimum)
        comp = SentenceCompressor(config, counter=minilm_counter, scorer=tiny_scorer)
        result = comp.compress(query, passages, budget=Budget.compression(1))
        assert _sentence_count(result) == minimum
        _assert_whole_sentences(result)
    # a budget too small for the most probable sentence still keeps one that fits
    smallest = min(
        minilm_counter.count(p.text[s:e]) for p in passages for s, e in sentence_spans(p.text)
    )
    comp = SentenceCompressor(
        SentenceCompressor.Config(mode="adaptive", threshold=1.0),
        counter=minilm_counter,
        scorer=tiny_scorer,
    )
    result = comp.compress(query, passages, budget=Budget.tokens(smallest))
    assert _sentence_count(result) == 1


def test_kept_whole_or_dropped_whole_on_nq_passages(
    tiny_scorer: SentenceScorer, minilm_counter: TokenCounter, data_dir: Path
) -> None:
    """On real passages, at every budget and in both modes, no sentence is ever cut."""
    from ragzip.experiments.datasets import nq_split

    questions = nq_split("val", data_dir)[:6]
    passages = [Passage(text=q.text, title=q.title) for q in questions]
    for mode in ("adaptive", "budgeted"):
        config = SentenceCompressor.Config(mode=mode, threshold=0.5)
        comp = SentenceCompressor(config, counter=minilm_counter, scorer=tiny_scorer)
        for q in questions[:3]:
            for budget in (Budget.compression(r) for r in (1.0, 1.5, 2.0, 4.0, 8.0)):
                result = comp.compress(q.question, passages, budget=budget)
                assert result.compressed_tokens <= result.budget_tokens
                _assert_whole_sentences(result)


def test_score_cache_reuses_probabilities(tokenizer: Any, minilm_counter: TokenCounter) -> None:
    scorer = _tiny_scorer(tokenizer, cache_size=2)
    calls: list[int] = []
    predict = scorer.predict

    def counting_predict(encoded: Any, **kwargs: Any) -> np.ndarray:
        calls.append(len(encoded))
        return predict(encoded, **kwargs)

    scorer.predict = counting_predict  # type: ignore[method-assign]
    inputs = {
        name: [PassageSentences(p.title, tuple(p.text[s:e] for s, e in sentence_spans(p.text)))]
        for name, p in (("pride", PRIDE), ("bath", BATH), ("regency", REGENCY))
    }
    first = scorer.score(EASY[0], inputs["pride"])
    again = scorer.score(EASY[0], inputs["pride"])
    assert len(calls) == 1
    np.testing.assert_array_equal(first[0], again[0])
    again[0][:] = -1  # callers get copies
    np.testing.assert_array_equal(scorer.score(EASY[0], inputs["pride"])[0], first[0])
    scorer.score("another question?", inputs["pride"])  # the question is part of the key
    scorer.score(EASY[0], inputs["pride"], precision="bfloat16")  # and the precision
    assert len(calls) == 3
    scorer.score(EASY[0], inputs["bath"])
    scorer.score(EASY[0], inputs["pride"])  # evicted: two requests remembered
    assert len(calls) == 5
    # a compressor asking for a cache makes it at least that large, never smaller
    config = SentenceCompressor.Config(cache_size=8)
    SentenceCompressor(config, counter=minilm_counter, scorer=scorer)
    assert scorer.cache_size == 8
    SentenceCompressor(
        SentenceCompressor.Config(cache_size=1), counter=minilm_counter, scorer=scorer
    )
    assert scorer.cache_size == 8
    # compressing at several budgets scores the context once, with the same selections
    uncached = _tiny_scorer(tokenizer)
    cached_comp = SentenceCompressor(
        SentenceCompressor.Config(mode="budgeted"), counter=minilm_counter, scorer=scorer
    )
    plain_comp = SentenceCompressor(
        SentenceCompressor.Config(mode="budgeted"), counter=minilm_counter, scorer=uncached
    )
    before = len(calls)
    for ratio in (1.0, 2.0, 4.0):
        budget = Budget.compression(ratio)
        a = cached_comp.compress(EASY[0], [BATH, PRIDE, REGENCY], budget=budget)
        b = plain_comp.compress(EASY[0], [BATH, PRIDE, REGENCY], budget=budget)
        assert [p.spans for p in a.passages] == [p.spans for p in b.passages]
    assert len(calls) == before + 1
    with pytest.raises(ConfigError):
        SentenceCompressor.Config(cache_size=-1)
    with pytest.raises(ConfigError):
        scorer.reserve_cache(-2)


def test_spec_selects_the_mode(tiny_scorer: SentenceScorer, minilm_counter: TokenCounter) -> None:
    comp = ragzip.create_compressor(
        "sentence:mode=budgeted;threshold=0.4;batch_size=4",
        counter=minilm_counter,
        scorer=tiny_scorer,
    )
    assert isinstance(comp, SentenceCompressor)
    assert comp.config == SentenceCompressor.Config(mode="budgeted", threshold=0.4, batch_size=4)
    assert comp.threshold == 0.4


# ---------------------------------------------------------------------------- trained model


def test_shipped_weights_are_small_and_complete() -> None:
    config = read_config(WEIGHTS_DIR)
    size = sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir())
    assert size <= 25 * 1024 * 1024
    assert 0.0 < config["threshold"] < 1.0
    record = json.loads((WEIGHTS_DIR / "training.json").read_text())
    val = record["validation"]["at_threshold"]
    assert val["auc"] > 0.8 and val["questions"] > 200


def test_budgeted_fills_the_budget(trained: SentenceScorer, gen_counter: TokenCounter) -> None:
    query, passages, _ = EASY
    comp = SentenceCompressor(
        SentenceCompressor.Config(mode="budgeted"), counter=gen_counter, scorer=trained
    )
    for ratio in (2.0, 4.0):
        result = comp.compress(query, passages, budget=Budget.compression(ratio))
        assert result.compressed_tokens <= result.budget_tokens
        _assert_whole_sentences(result)
        # no dropped sentence would still fit in what is left for the passages once the
        # separators are paid (``original_tokens`` counts them, the passages' own do not)
        framing = result.original_tokens - sum(p.original_tokens for p in result.passages)
        kept = sum(p.tokens for p in result.passages)
        for cp in result.passages:
            for s, e in sentence_spans(cp.passage.text):
                if any(a <= s and e <= b for a, b in cp.spans):
                    continue
                trial = gen_counter.count(join_spans(cp.passage.text, [*cp.spans, (s, e)])[0])
                assert kept - cp.tokens + trial > result.budget_tokens - framing


def test_adaptive_keeps_less_for_an_easy_question(
    trained: SentenceScorer, gen_counter: TokenCounter
) -> None:
    query, passages, answer = EASY
    adaptive = SentenceCompressor(
        SentenceCompressor.Config(mode="adaptive"), counter=gen_counter, scorer=trained
    )
    budgeted = SentenceCompressor(
        SentenceCompressor.Config(mode="budgeted"), counter=gen_counter, scorer=trained
    )
    a = adaptive.compress(query, passages, budget=Budget.compression(1.0))
    b = budgeted.compress(query, passages, budget=Budget.compression(1.0))
    assert _sentence_count(b) == sum(len(sentence_spans(p.text)) for p in passages)
    assert 1 <= _sentence_count(a) < _sentence_count(b)
    assert answer in a.context
    _assert_whole_sentences(a)


def test_adaptive_over_budget_keeps_the_most_probable_that_fit(
    trained: SentenceScorer, gen_counter: TokenCounter
) -> None:
    query, passages, _ = EASY
    comp = SentenceCompressor(
        SentenceCompressor.Config(mode="adaptive", threshold=0.0),
        counter=gen_counter,
        scorer=trained,
    )
    result = comp.compress(query, passages, budget=Budget.tokens(20))
    assert 0 < result.compressed_tokens <= 20
    probs = np.concatenate(
        trained.score(
            query,
            [
                PassageSentences(p.title, tuple(p.text[s:e] for s, e in sentence_spans(p.text)))
                for p in passages
            ],
        )
    )
    flat = [(i, s, e) for i, p in enumerate(passages) for s, e in sentence_spans(p.text)]
    best = int(np.argmax(probs))
    i, s, e = flat[best]
    framing = result.original_tokens - sum(p.original_tokens for p in result.passages)
    if gen_counter.count(passages[i].text[s:e]) <= 20 - framing:
        assert (s, e) in result.passages[i].spans


def test_deterministic_with_the_trained_model(
    trained: SentenceScorer, gen_counter: TokenCounter
) -> None:
    query, passages, _ = EASY
    comp = SentenceCompressor(counter=gen_counter, scorer=trained)
    first = comp.compress(query, passages, budget=Budget.compression(2))
    second = comp.compress(query, passages, budget=Budget.compression(2))
    assert first.to_dict()["passages"] == second.to_dict()["passages"]


def test_bfloat16_scores_stay_close(trained: SentenceScorer) -> None:
    query, passages, _ = EASY
    inputs = [
        PassageSentences(p.title, tuple(p.text[s:e] for s, e in sentence_spans(p.text)))
        for p in passages
    ]
    full = np.concatenate(trained.score(query, inputs))
    half = np.concatenate(trained.score(query, inputs, precision="bfloat16"))
    assert np.abs(full - half).max() < 0.05
    assert int(np.argmax(full)) == int(np.argmax(half))


@pytest.mark.slow
def test_trained_ranks_answer_sentences_above_an_untrained_head(
    trained: SentenceScorer, data_dir: Path
) -> None:
    """Within-passage AUC on val questions: the trained model clearly beats a random head."""
    from ragzip.experiments.datasets import nq_split
    from ragzip.training.sentence.train import auc

    questions = nq_split("val", data_dir)[:80]
    config = read_config(WEIGHTS_DIR)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        base, tokenizer, _ = load_base(int(config["n_frozen"]), int(config["head_hidden"]))
    untrained = SentenceScorer(base, tokenizer, limits=trained.limits)
    scores: dict[str, list[float]] = {"trained": [], "untrained": []}
    for q in questions:
        sents = tuple(q.text[s:e] for s, e in sentence_spans(q.text))
        labels = [answer_in_text(list(q.answers), s) for s in sents]
        if not 0 < sum(labels) < len(labels):
            continue
        passage = [PassageSentences(q.title, sents)]
        for name, scorer in (("trained", trained), ("untrained", untrained)):
            scores[name].append(auc(labels, scorer.score(q.question, passage)[0]))
    assert len(scores["trained"]) >= 30
    trained_auc = float(np.mean(scores["trained"]))
    untrained_auc = float(np.mean(scores["untrained"]))
    assert trained_auc >= 0.8
    assert trained_auc - untrained_auc >= 0.2


# ---------------------------------------------------------------------------- loading errors


def test_missing_weights_folder_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no trained sentence classifier"):
        load_scorer(str(tmp_path))


def test_weights_for_another_base_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    shutil.copytree(WEIGHTS_DIR, folder)
    config = json.loads((folder / "config.json").read_text())
    config["base_sha256"] = "0" * 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="another all-MiniLM-L6-v2"):
        load_scorer(str(folder))


def test_malformed_config_is_a_model_error(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    shutil.copytree(WEIGHTS_DIR, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["limits"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="malformed"):
        read_config(folder)


def test_foreign_config_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    shutil.copytree(WEIGHTS_DIR, folder)
    (folder / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelError, match="not a"):
        read_config(folder)
