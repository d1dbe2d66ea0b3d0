"""Marginal Information Gain selection: the greedy rule on known vectors, the real embedder on
redundant input, and answer recall on NQ against the baselines."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

import ragzip
from ragzip import Budget, CompressionError, ConfigError
from ragzip.compressors.mig import MIGCompressor
from ragzip.compressors.units import split_units
from ragzip.core.tokenization import TokenCounter
from ragzip.experiments.answers import answer_in_text


class TableEmbedder:
    """A tiny embedder: a lookup table of unit vectors, recording every call."""

    device = "table"

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = {
            k: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for k, v in table.items()
        }
        self.calls: list[list[str]] = []

    def encode(self, sentences: list[str], **kwargs: Any) -> np.ndarray:
        assert kwargs["normalize_embeddings"] is True
        self.calls.append(list(sentences))
        return np.stack([self.table[s] for s in sentences])


# q = query; a, b relevant and near each other; c less relevant but different
TABLE = {
    "Q?": [1.0, 0.0, 0.0],
    "Alpha one.": [0.9, 0.43, 0.0],
    "Alpha two.": [0.88, 0.47, 0.0],
    "Gamma.": [0.6, -0.2, 0.77],
}
TEXT = "Alpha one. Alpha two. Gamma."


def _kept(comp: MIGCompressor, budget: int) -> list[str]:
    result = comp.compress("Q?", [TEXT], budget=Budget.tokens(budget))
    units = split_units([TEXT], comp.counter)
    return [
        u.text
        for u in units.items
        if any(s <= u.start and u.end <= e for s, e in result.passages[0].spans)
    ]


def test_greedy_rule_on_known_vectors(minilm_counter: TokenCounter) -> None:
    units = split_units([TEXT], minilm_counter)
    two = units[0].tokens + units[1].tokens
    assert units[2].tokens <= units[1].tokens  # Gamma fits wherever Alpha two would
    # relevance only: the two near-duplicates win
    relevance_only = MIGCompressor(
        MIGCompressor.Config(redundancy_weight=0.0, include_title=False, max_similarity=1.5),
        counter=minilm_counter,
        embedder=TableEmbedder(TABLE),
    )
    assert _kept(relevance_only, two) == ["Alpha one.", "Alpha two."]
    # MIG: after "Alpha one." (0.90), "Alpha two." scores 0.88 - 1.0 * 0.998 < "Gamma." 0.6 - 0.45
    mig = MIGCompressor(
        MIGCompressor.Config(redundancy_weight=1.0, include_title=False, max_similarity=1.5),
        counter=minilm_counter,
        embedder=TableEmbedder(TABLE),
    )
    assert _kept(mig, two) == ["Alpha one.", "Gamma."]


def test_position_prior_lowers_later_passages(minilm_counter: TokenCounter) -> None:
    """Relevance minus ``position_weight · log2(1 + place)``: "Alpha one." (cosine 0.90, second
    passage) beats "Gamma." (0.60, first) alone, and loses to it at weight 0.5 (0.90 - 0.5)."""

    table = {**TABLE, "Q 17?": TABLE["Q?"], "Unit 17.": TABLE["Alpha one."]}

    def first(weight: float, query: str = "Q?", second: str = "Alpha one.", **config: Any) -> str:
        comp = MIGCompressor(
            MIGCompressor.Config(include_title=False, position_weight=weight, **config),
            counter=minilm_counter,
            embedder=TableEmbedder(table),
        )
        result = comp.compress(query, ["Gamma.", second], budget=Budget.tokens(4))
        return "".join(p.text for p in result.passages)

    assert first(0.0) == "Alpha one."
    assert first(0.5) == "Gamma."
    # a unit holding a value the question names keeps its place's penalty off
    assert first(0.5, "Q 17?", "Unit 17.") == "Unit 17."
    assert first(0.5, "Q 17?", "Unit 17.", named_exempt=False) == "Gamma."


def test_rank_matches_the_formula(minilm_counter: TokenCounter) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(12, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = vectors[0]
    units = split_units([" ".join(f"Sentence {i}." for i in range(11))], minilm_counter)
    assert len(units) == 11
    lam = 0.7
    comp = MIGCompressor(
        MIGCompressor.Config(redundancy_weight=lam, max_similarity=2.0),
        counter=minilm_counter,
        embedder=TableEmbedder({}),
    )
    order = comp.rank(query, vectors[1:], units, budget_tokens=10_000)
    # recompute by brute force
    chosen: list[int] = []
    left = list(range(11))
    while left:

        def gain(i: int) -> float:
            red = max((float(vectors[1 + i] @ vectors[1 + j]) for j in chosen), default=0.0)
            return float(vectors[1 + i] @ query) - lam * max(red, 0.0)

        best = max(left, key=lambda i: (gain(i), -i))
        chosen.append(best)
        left.remove(best)
    assert order == chosen


def test_one_encode_call_with_titles(minilm_counter: TokenCounter) -> None:
    table = {"Q?": [1.0, 0.0], "Page. Alpha one.": [1.0, 0.1], "Page. Gamma.": [0.0, 1.0]}
    emb = TableEmbedder(table)
    comp = MIGCompressor(
        MIGCompressor.Config(include_title=True), counter=minilm_counter, embedder=emb
    )
    result = comp.compress(
        "Q?", [{"title": "Page", "text": "Alpha one. Gamma."}], budget=Budget.tokens(3)
    )
    assert emb.calls == [["Q?", "Page. Alpha one.", "Page. Gamma."]]
    assert result.passages[0].text == "Alpha one."
    assert {"split", "embed", "select"} <= set(result.timings)


def test_embedder_failure_is_a_compression_error(minilm_counter: TokenCounter) -> None:
    class Broken:
        def encode(self, sentences: list[str], **kwargs: Any) -> np.ndarray:
            raise RuntimeError("out of memory")

    comp = MIGCompressor(counter=minilm_counter, embedder=Broken())
    with pytest.raises(CompressionError, match="out of memory"):
        comp.compress("q?", ["Some text. More text."], budget=Budget.compression(2))


@pytest.mark.parametrize(
    "config",
    [
        {"redundancy_weight": -1},
        {"redundancy_weight": float("nan")},
        {"max_similarity": 0},
        {"batch_size": 0},
        {"precision": "int4"},
        {"granularity": "paragraph"},
        {"lambda": 0.5},
    ],
)
def test_bad_config(minilm_counter: TokenCounter, config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ragzip.create_compressor(
            "mig", counter=minilm_counter, config=config, embedder=TableEmbedder({})
        )


# ------------------------------------------------------------------------ real embedder


REDUNDANT = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It was built for the "
    "1889 World's Fair.",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. Gustave Eiffel's company "
    "designed and built it.",
    "The tower is 330 metres tall, about the height of an 81-storey building. It was the tallest "
    "man-made structure in the world until 1930.",
]
DUPLICATE = "The Eiffel Tower is a wrought-iron lattice tower in Paris, France."


@pytest.mark.parametrize("config", [{}, {"redundancy_weight": 0.5, "max_similarity": 1.5}])
def test_duplicate_sentence_kept_at_most_once(
    minilm_counter: TokenCounter, config: dict[str, Any]
) -> None:
    """The repeated sentence is chosen once: by the default cut-off, and by MIG alone at λ=0.5."""
    query = "what is the eiffel tower and how tall is it?"
    budget = Budget.tokens(2 * minilm_counter.count(DUPLICATE) + 20)
    relevance_only = ragzip.create_compressor(
        "mig", counter=minilm_counter, config={"redundancy_weight": 0.0, "max_similarity": 1.5}
    )
    plain = relevance_only.compress(query, REDUNDANT, budget=budget).context
    assert plain.count(DUPLICATE) == 2  # the premise: relevance alone keeps both copies
    mig = ragzip.create_compressor("mig", counter=minilm_counter, config=config)
    result = mig.compress(query, REDUNDANT, budget=budget)
    assert result.context.count(DUPLICATE) == 1
    assert result.compressed_tokens <= result.budget_tokens


@pytest.mark.slow
def test_mig_beats_random_on_nq(nq_eval_cases: list[Any], smollm2_counter: TokenCounter) -> None:
    """Answer-in-context recall at 4x over ~200 NQ questions, gold among 9 distractors."""
    assert len(nq_eval_cases) >= 190
    budget = Budget.compression(4)

    def recall(name: str) -> float:
        comp = ragzip.create_compressor(name, counter=smollm2_counter)
        hits = 0
        for case in nq_eval_cases:
            result = comp.compress(case.question, list(case.passages), budget=budget)
            hits += answer_in_text(list(case.answers), result.context)
        return hits / len(nq_eval_cases)

    mig, rnd, trunc = recall("mig"), recall("random"), recall("truncate")
    static = recall("mig:encoder=static")
    print(f"recall@4x mig={mig:.3f} static={static:.3f} random={rnd:.3f} truncate={trunc:.3f}")
    assert mig >= rnd + 0.25
    assert mig >= trunc + 0.10
    assert static >= rnd + 0.2  # static token vectors: no transformer pass, still far from chance


def test_static_encoder_keeps_its_own_vectors(minilm_counter: TokenCounter) -> None:
    from ragzip.encoders.static import STATIC_NAME

    comp = ragzip.create_compressor("mig:encoder=static", counter=minilm_counter)
    assert isinstance(comp, MIGCompressor) and STATIC_NAME in comp.feature_model
    passages = [
        ragzip.Passage("The Pacific is the largest ocean. Jane Austen wrote Pride and Prejudice."),
        ragzip.Passage("Paris is the capital of France. It lies on the Seine."),
    ]
    kept = comp.compress("who wrote pride and prejudice", passages, budget=Budget.tokens(14))
    assert "Jane Austen" in kept.context and kept.compressed_tokens <= kept.budget_tokens


def test_budget_covering_everything_keeps_it_verbatim(minilm_counter: TokenCounter) -> None:
    """At 1x nothing needs compressing: even a repeated sentence stays, passages stay whole."""
    mig = ragzip.create_compressor("mig", counter=minilm_counter, config={"max_similarity": 0.5})
    passages = [TEXT, f"{DUPLICATE} {DUPLICATE}"]
    result = mig.compress("Q?", passages, budget=Budget.compression(1))
    assert [p.text for p in result.passages] == passages
    assert result.compressed_tokens == result.original_tokens


def test_seen_text_is_not_embedded_again(minilm_counter: TokenCounter) -> None:
    table = {**TABLE, "Beta.": [0.5, 0.5, 0.7]}
    emb = TableEmbedder(table)
    comp = MIGCompressor(
        MIGCompressor.Config(include_title=False), counter=minilm_counter, embedder=emb
    )
    first = comp.compress("Q?", [TEXT], budget=Budget.tokens(4))
    assert first.timings["cache_hits"] == 0 and first.timings["cache_misses"] == 4
    again = comp.compress("Q?", [TEXT], budget=Budget.tokens(4))
    assert len(emb.calls) == 1  # everything came from the cache
    assert again.timings["cache_hits"] == 4 and again.timings["cache_misses"] == 0
    assert again.texts == first.texts
    changed = comp.compress("Q?", [TEXT.replace("Gamma.", "Beta.")], budget=Budget.tokens(4))
    assert emb.calls[-1] == ["Beta."]  # only the new sentence is embedded
    assert changed.timings["cache_hits"] == 3
    off = MIGCompressor(
        MIGCompressor.Config(include_title=False, cache_mb=0), counter=minilm_counter, embedder=emb
    )
    off.compress("Q?", [TEXT], budget=Budget.tokens(4))
    off.compress("Q?", [TEXT], budget=Budget.tokens(4))
    assert len(emb.calls) == 4  # no cache: both calls embed


def test_passages_asked_about_are_split_once(
    minilm_counter: TokenCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ragzip.compressors.mig as mig_module

    calls: list[list[str]] = []

    def counting(texts: list[str], *args: Any, **kwargs: Any) -> Any:
        calls.append(list(texts))
        return split_units(texts, *args, **kwargs)

    monkeypatch.setattr(mig_module, "split_units", counting)
    comp = MIGCompressor(
        MIGCompressor.Config(include_title=False),
        counter=minilm_counter,
        embedder=TableEmbedder(TABLE),
    )
    request = ragzip.compressor.CompressionRequest(
        query="Q?", passages=(ragzip.Passage(TEXT),), passage_tokens=(8,), budget_tokens=4
    )
    comp.cached_share(request)  # what ``auto`` asks first
    first = comp.compress_request(request)
    assert calls == [[TEXT]]  # the split of the question about the same passages is reused
    comp.compress_request(replace(request, passages=(ragzip.Passage("Gamma."),)))
    assert calls == [[TEXT], ["Gamma."]]
    assert comp.compress_request(request).spans == first.spans


def test_passages_carry_their_best_sentence_cosine(minilm_counter: TokenCounter) -> None:
    """The relevance MIG computed while selecting reranks the passages at no extra cost."""
    comp = MIGCompressor(
        MIGCompressor.Config(include_title=False),
        counter=minilm_counter,
        embedder=TableEmbedder(TABLE),
    )
    passages = ["Gamma.", "Alpha one. Alpha two."]
    result = comp.compress("Q?", passages, budget=Budget.tokens(4))
    cosines = {s: float(v @ comp.embedder.table["Q?"]) for s, v in comp.embedder.table.items()}
    relevance = [p.relevance for p in result.passages]
    assert relevance == pytest.approx([cosines["Gamma."], cosines["Alpha one."]], abs=1e-5)
    assert [p.passage.text for p in result.ranked()] == ["Alpha one. Alpha two.", "Gamma."]
    assert result.to_dict()["passages"][1]["relevance"] == pytest.approx(cosines["Alpha one."])
