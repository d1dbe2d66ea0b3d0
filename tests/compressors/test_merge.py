"""COMI-style MIG token merging: the soft-compressor contract, allocation by MIG, merging, adapter.

Fast tests run the real SmolLM2 tokenizer over a small seeded embedding table (the model is
injected); slow tests load SmolLM2-135M-Instruct and generate from the merged vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ragzip import Budget, ConfigError, InputError, ModelError
from ragzip.compressors.merge.adapter import Adapter
from ragzip.compressors.merge.allocation import allocate, group_mig, merge_runs, run_bounds
from ragzip.compressors.merge.compressor import MergeCompressor
from ragzip.core.tokenization import HFTokenCounter
from ragzip.generators.target import SoftTarget
from ragzip.registry import create_compressor
from tests.compressors.support import PROSE, PROSE_QUERY

PASSAGES = PROSE[:-1]  # prose, blank and CJK passages (no code)
QUERY = PROSE_QUERY


class TinyModel(nn.Module):
    """Anything with ``get_input_embeddings()``: a seeded random table over SmolLM2's vocab."""

    def __init__(self, vocab: int, dim: int = 16) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.embed = nn.Embedding(vocab, dim)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(vocab, dim, generator=generator))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed


@pytest.fixture(scope="module")
def counter() -> HFTokenCounter:
    from ragzip.weights import smollm2_counter

    return smollm2_counter()


@pytest.fixture(scope="module")
def tiny(counter: HFTokenCounter) -> TinyModel:
    return TinyModel(len(counter.tokenizer))


def make(counter: HFTokenCounter, tiny: TinyModel, **config: Any) -> MergeCompressor:
    """A merge compressor over the tiny table; everything merged unless ``text_share`` is
    given (the merging itself is what most tests here check)."""
    config.setdefault("text_share", 0.0)
    return MergeCompressor(
        MergeCompressor.Config(**config), counter=counter, model=tiny, tokenizer=counter.tokenizer
    )


def passage_ids(counter: HFTokenCounter, text: str) -> list[int]:
    return list(counter.tokenizer(text, add_special_tokens=False)["input_ids"])


# ------------------------------------------------------------------------------ the contract


@pytest.mark.parametrize(
    "budget",
    [Budget.tokens(1), Budget.tokens(7), Budget.compression(1.0),
     Budget.compression(2.0), Budget.compression(4.0), Budget.compression(8.0),
     Budget(max_tokens=20, ratio=2.0)],
    ids=str,
)  # fmt: skip
def test_soft_contract(counter: HFTokenCounter, tiny: TinyModel, budget: Budget) -> None:
    comp = make(counter, tiny)
    result = comp.compress(QUERY, PASSAGES, budget=budget)
    emb = result.embeddings
    assert emb is not None
    assert emb.dtype == np.float32
    assert emb.ndim == 2 and emb.shape[1] == 16
    assert np.isfinite(emb).all()
    counts = [p.tokens for p in result.passages]
    assert sum(counts) == emb.shape[0] == result.compressed_tokens
    assert result.compressed_tokens <= result.budget_tokens
    assert result.budget_tokens == budget.resolve(sum(counter.count(p) for p in PASSAGES))
    assert [p.passage.text for p in result.passages] == PASSAGES
    assert all(p.text == "" and p.spans == () for p in result.passages)
    # empty and whitespace-only passages never get a vector
    assert counts[2] == counts[3] == 0
    # no vector is wasted: the budget is used up to the passages' real tokens
    real_tokens = sum(len(passage_ids(counter, p)) for p in PASSAGES if p.strip())
    assert result.compressed_tokens == min(result.budget_tokens, real_tokens)


def test_ratio_one_is_lossless_and_in_order(counter: HFTokenCounter, tiny: TinyModel) -> None:
    """At 1x every token keeps its own vector: the exact input embeddings, in passage order."""
    comp = make(counter, tiny)
    result = comp.compress(QUERY, PASSAGES, budget=Budget.compression(1.0))
    ids = [i for p in PASSAGES if p.strip() for i in passage_ids(counter, p)]
    expected = tiny.get_input_embeddings().weight.detach().numpy()[ids]
    assert result.embeddings is not None
    np.testing.assert_array_equal(result.embeddings, expected)


def test_plain_average_of_consecutive_runs(counter: HFTokenCounter, tiny: TinyModel) -> None:
    """Uniform weights and no rescaling: each vector is the mean of a run of consecutive tokens."""
    comp = make(counter, tiny, sharpness=0.0, token_sharpness=0.0, keep_norm=False)
    text = "Paris is the capital and most populous city of France."
    ids = passage_ids(counter, text)
    result = comp.compress("capital of France?", [text], budget=Budget.tokens(4))
    table = tiny.get_input_embeddings().weight.detach().numpy()
    expected = np.stack([table[ids[a:b]].mean(axis=0) for a, b in run_bounds(len(ids), 4)])
    assert result.embeddings is not None
    np.testing.assert_allclose(result.embeddings, expected, rtol=1e-5, atol=1e-6)


def test_deterministic(counter: HFTokenCounter, tiny: TinyModel) -> None:
    comp = make(counter, tiny)
    a = comp.compress(QUERY, PASSAGES, budget=Budget.compression(4))
    b = make(counter, tiny).compress(QUERY, PASSAGES, budget=Budget.compression(4))
    assert a.embeddings is not None and b.embeddings is not None
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert [p.tokens for p in a.passages] == [p.tokens for p in b.passages]


def test_no_passages(counter: HFTokenCounter, tiny: TinyModel) -> None:
    result = make(counter, tiny).compress(QUERY, [], budget=Budget.compression(4))
    assert result.passages == ()
    assert result.compressed_tokens == 0


@pytest.mark.parametrize(
    ("query", "passages", "budget"),
    [
        ("", ["text"], Budget.tokens(10)),
        (None, ["text"], Budget.tokens(10)),
        ("q?", [42], Budget.tokens(10)),
        ("q?", "a single string", Budget.tokens(10)),
        ("q?", ["text"], "4x"),
    ],
)
def test_bad_input(
    counter: HFTokenCounter, tiny: TinyModel, query: Any, passages: Any, budget: Any
) -> None:
    with pytest.raises(InputError):
        make(counter, tiny).compress(query, passages, budget=budget)


@pytest.mark.parametrize(
    "config",
    [
        {"redundancy_weight": -1.0},
        {"sharpness": float("nan")},
        {"token_sharpness": "5"},
        {"max_group_tokens": 0},
        {"max_group_tokens": True},
        {"keep_norm": "yes"},
        {"adapter": ""},
        {"text_share": 1.5},
        {"text_share": "half"},
        {"no_such_key": 1},
    ],
)
def test_bad_config(counter: HFTokenCounter, tiny: TinyModel, config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        create_compressor(
            "merge", counter=counter, config=config, model=tiny, tokenizer=counter.tokenizer
        )


@pytest.mark.parametrize("share", [0.5, 1.0])
def test_text_share_keeps_mig_sentences_verbatim(
    counter: HFTokenCounter, tiny: TinyModel, share: float
) -> None:
    from ragzip.compressors.mig import MIGCompressor

    table = tiny.get_input_embeddings().weight.detach().numpy()
    adapter = Adapter(table.shape[1], rank=4)
    with torch.no_grad():
        adapter.up.weight.fill_(0.5)  # not the identity: merged vectors change, kept ones not
    comp = MergeCompressor(
        MergeCompressor.Config(text_share=share),
        counter=counter,
        model=tiny,
        tokenizer=counter.tokenizer,
        adapter=adapter,
    )
    budget = Budget.tokens(30)
    result = comp.compress(QUERY, PASSAGES, budget=budget)
    assert result.embeddings is not None
    assert result.compressed_tokens == len(result.embeddings) <= result.budget_tokens
    # the sentences MIG keeps in share of the budget are there as their own token embeddings
    text = MIGCompressor(counter=counter).compress(
        QUERY, PASSAGES, budget=Budget.tokens(int(share * result.budget_tokens))
    )
    kept = [p for p in text.passages if p.text]
    assert kept
    rows = {tuple(np.round(r, 5)) for r in result.embeddings}
    for p in kept:
        ids = passage_ids(counter, p.passage.text)
        offsets = counter.tokenizer(p.passage.text, add_special_tokens=False,
                                    return_offsets_mapping=True)["offset_mapping"]  # fmt: skip
        a, b = p.spans[0]
        inside = [i for i, (s, e) in zip(ids, offsets, strict=True) if e > a and s < b]
        assert inside and all(tuple(np.round(table[i], 5)) in rows for i in inside)
    # the rest of the budget is merged and adapted: those rows are no token's embedding
    vocab = {tuple(np.round(r, 5)) for r in table}
    verbatim = sum(tuple(np.round(r, 5)) in vocab for r in result.embeddings)
    assert verbatim == result.timings["text_vectors"] > 0
    assert result.compressed_tokens - verbatim == (result.budget_tokens - verbatim)


def test_half_the_budget_is_text_by_default_and_an_adapter_says_how_it_was_trained(
    counter: HFTokenCounter, tiny: TinyModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert MergeCompressor.Config().text_share == 0.5
    target = make(counter, tiny).target
    Adapter(16, rank=2).save(tmp_path / "a", target=target, extra={"text_share": 0.5})
    assert Adapter.load(tmp_path / "a").text_share == 0.5
    Adapter(16, rank=2).save(tmp_path / "old", target=target)  # recorded nothing: all merged
    assert Adapter.load(tmp_path / "old").text_share == 0.0
    with caplog.at_level("WARNING"):
        make(counter, tiny, text_share=0.5, adapter=str(tmp_path / "a"))
    assert not caplog.records
    with caplog.at_level("WARNING"):
        make(counter, tiny, adapter=str(tmp_path / "a"))
    assert "trained with text_share=0.5, used with text_share=0" in caplog.text


def test_model_and_tokenizer_go_together(counter: HFTokenCounter, tiny: TinyModel) -> None:
    with pytest.raises(ConfigError):
        MergeCompressor(counter=counter, model=tiny)


def test_registered(counter: HFTokenCounter, tiny: TinyModel) -> None:
    comp = create_compressor(
        "merge:sharpness=2", counter=counter, model=tiny, tokenizer=counter.tokenizer
    )
    assert isinstance(comp, MergeCompressor)
    assert comp.config.sharpness == 2.0


# ------------------------------------------------------------------------- MIG and allocation


def test_allocation_follows_mig() -> None:
    """Equal-length groups: more MIG, more vectors; the lowest can get none; totals are exact."""
    counts = allocate([10, 10, 10, 10], np.array([0.9, 0.1, 0.5, 0.3]), 12, sharpness=1.0)
    assert sum(counts) == 12
    assert counts[0] > counts[2] > counts[3] >= counts[1]
    sharp = allocate([10, 10, 10, 10], np.array([0.9, 0.1, 0.5, 0.3]), 6, sharpness=3.0)
    assert sum(sharp) == 6 and sharp[1] == 0 and sharp[0] == max(sharp)


def test_allocation_caps_at_group_size_and_passes_the_surplus_on() -> None:
    counts = allocate([2, 10, 10], np.array([5.0, 0.0, 0.1]), 12, sharpness=4.0)
    assert counts[0] == 2  # never more vectors than tokens
    assert sum(counts) == 12
    assert allocate([3, 4], np.array([0.0, 1.0]), 100, sharpness=1.0) == [3, 4]
    assert allocate([3, 4], np.array([0.0, 1.0]), 0, sharpness=1.0) == [0, 0]
    assert allocate([], np.zeros(0), 5, sharpness=1.0) == []


def test_uniform_allocation_without_sharpness() -> None:
    counts = allocate([8, 16, 8], np.array([1.0, 0.0, -1.0]), 8, sharpness=0.0)
    assert counts == [2, 4, 2]


def test_mig_penalises_the_less_relevant_duplicate() -> None:
    q = np.array([1.0, 0.0, 0.0])
    a = np.array([0.9, 0.4, 0.0])
    dup = np.array([0.85, 0.45, 0.0])  # nearly a, a little less relevant
    other = np.array([0.6, 0.0, 0.8])
    mig = group_mig(q, np.stack([a, dup, other]), redundancy_weight=1.0)
    relevance = group_mig(q, np.stack([a, dup, other]), redundancy_weight=0.0)
    assert mig[0] == pytest.approx(relevance[0])  # the most relevant pays nothing
    assert relevance[1] > relevance[2]
    assert mig[1] < mig[2]  # the duplicate now ranks below the distinct group


def test_high_mig_group_keeps_more_vectors_end_to_end(
    counter: HFTokenCounter, tiny: TinyModel
) -> None:
    """A passage made of the question's own tokens gets more vectors per token than filler."""
    comp = make(counter, tiny, sharpness=2.0)
    query = "Which river flows through the old harbour town?"
    relevant = "Which river flows through the old harbour town? " * 2
    filler = "Numbers: 12, 47, 93, 18, 55, 71, 26, 84, 39, 60, 11, 98."
    result = comp.compress(query, [filler, relevant], budget=Budget.compression(4))
    per_token = [p.tokens / len(passage_ids(counter, p.passage.text)) for p in result.passages]
    assert per_token[1] > 2 * per_token[0]


def test_merge_runs_weights_relevant_tokens() -> None:
    states = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    query = np.array([1.0, 0.0], dtype=np.float32)
    out = merge_runs(
        states, states, query, 1, redundancy_weight=0.0, token_sharpness=5.0, keep_norm=True
    )
    assert out.shape == (1, 2)
    assert out[0, 0] > 0.9 * np.linalg.norm(out[0])  # leans to the token like the question
    assert np.linalg.norm(out[0]) == pytest.approx(1.0, rel=1e-5)  # norm kept


# ------------------------------------------------------------------------------------ adapter


def test_adapter_starts_as_identity_and_round_trips(tmp_path: Path) -> None:
    adapter = Adapter(16, rank=4, scale=0.5)
    x = torch.randn(3, 16)
    torch.testing.assert_close(adapter(x), x)
    with torch.no_grad():
        adapter.up.weight.normal_()
        adapter.bias.normal_()
    target = SoftTarget("tiny", "0123456789abcdef", hidden_size=16, vocab_size=10)
    adapter.save(tmp_path / "a", target=target)
    loaded = Adapter.load(tmp_path / "a", target)
    torch.testing.assert_close(loaded(x), adapter(x))
    other = SoftTarget("other", "fedcba9876543210", hidden_size=16, vocab_size=10)
    with pytest.raises(ModelError, match="trained for tiny, not for other"):
        Adapter.load(tmp_path / "a", other)


def test_adapter_from_config_is_applied(
    counter: HFTokenCounter, tiny: TinyModel, tmp_path: Path
) -> None:
    adapter = Adapter(16, rank=4)
    with torch.no_grad():
        adapter.bias.fill_(1.0)
    plain_comp = make(counter, tiny)
    adapter.save(tmp_path / "a", target=plain_comp.target)
    plain = plain_comp.compress(QUERY, PASSAGES, budget=Budget.compression(4))
    adapted = make(counter, tiny, adapter=str(tmp_path / "a")).compress(
        QUERY, PASSAGES, budget=Budget.compression(4)
    )
    assert plain.embeddings is not None and adapted.embeddings is not None
    np.testing.assert_allclose(adapted.embeddings, plain.embeddings + 1.0, rtol=1e-5, atol=1e-5)


def test_bad_adapter_folder(counter: HFTokenCounter, tiny: TinyModel, tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        make(counter, tiny, adapter=str(tmp_path / "missing"))
    wide = SoftTarget("wide", "0123456789abcdef", hidden_size=32, vocab_size=10)
    Adapter(32, rank=2).save(tmp_path / "wide", target=wide)
    with pytest.raises(ModelError):
        make(counter, tiny, adapter=str(tmp_path / "wide"))


# ------------------------------------------------------------------------- with SmolLM2 itself


@pytest.mark.slow
def test_generation_from_merged_tokens() -> None:
    """SmolLM2 reads merged SmolLM2 embeddings through ``inputs_embeds`` and answers."""
    from ragzip.generators.embedded import EmbeddedGenerator
    from ragzip.prompts import build_messages

    generator = EmbeddedGenerator(device="cpu")
    comp = MergeCompressor(
        counter=generator.counter, model=generator.model, tokenizer=generator.tokenizer
    )
    question = "What is the capital of France?"
    passages = [
        "Paris is the capital and most populous city of France. It lies on the Seine.",
        "The Nile is a major north-flowing river in northeastern Africa.",
    ]
    for budget, expect in ((Budget.compression(1.0), True), (Budget.compression(2.0), None)):
        result = comp.compress(question, passages, budget=budget)
        assert result.embeddings is not None
        assert result.embeddings.shape[1] == generator.hidden_size
        context = ["<empty_output>" * p.tokens for p in result.passages if p.tokens]
        messages = build_messages(question, context)
        embeds = generator.embed_messages(
            messages, placeholder="<empty_output>", replacements=result.embeddings
        )
        gen = generator.generate_from_embeds(embeds, max_new_tokens=12)
        assert gen.prompt_tokens == generator.count_prompt_tokens(messages)
        assert gen.text.strip()
        if expect:
            assert "paris" in gen.text.lower()
    with pytest.raises(InputError):  # one vector short of the placeholders
        generator.embed_messages(
            messages, placeholder="<empty_output>", replacements=result.embeddings[:-1]
        )


@pytest.mark.slow
def test_shipped_adapter_loads_and_fits_smollm2() -> None:
    from ragzip.compressors.merge.adapter import WEIGHTS_DIR
    from ragzip.weights import load_smollm2, smollm2_counter

    if not (WEIGHTS_DIR / "model.safetensors").is_file():
        pytest.skip("no trained merge adapter shipped")
    model, tokenizer = load_smollm2("cpu")
    comp = MergeCompressor(
        MergeCompressor.Config(adapter="default"),
        counter=smollm2_counter(),
        model=model,
        tokenizer=tokenizer,
    )
    assert comp.adapter is not None
    result = comp.compress(QUERY, PASSAGES, budget=Budget.compression(4))
    assert result.embeddings is not None and np.isfinite(result.embeddings).all()


@pytest.mark.slow
def test_pipeline_with_merge() -> None:
    """``merge`` runs in a Pipeline with the embedded generator (vectors spliced in)."""
    from ragzip.generators.embedded import EmbeddedGenerator
    from ragzip.pipeline import Pipeline
    from ragzip.prompts import build_messages

    generator = EmbeddedGenerator(device="cpu")
    if not hasattr(generator, "generate_compressed"):
        pytest.skip("this generator cannot answer from compression results")
    comp = create_compressor(
        "merge", counter=generator.counter, model=generator.model, tokenizer=generator.tokenizer
    )
    pipe = Pipeline(comp, Budget.compression(2), generator=generator, max_new_tokens=12)
    question = "What is the capital of France?"
    passages = [
        "Paris is the capital and most populous city of France. It lies on the Seine.",
        "The Nile is a major north-flowing river in northeastern Africa.",
    ]
    result = pipe.run(question, passages)
    assert result.compression.embeddings is not None
    assert result.generation is not None and result.generation.text.strip()
    context = ["<empty_output>" * p.tokens for p in result.compression.passages if p.tokens]
    assert result.generation.prompt_tokens == generator.count_prompt_tokens(
        build_messages(question, context)
    )
