"""xrag: one projected MiniLM embedding per passage, in SmolLM2's input-embedding space."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import ragzip
from ragzip import Budget, BudgetError, ConfigError, InputError, ModelError
from ragzip.compressors.units import titled
from ragzip.compressors.xrag import (
    EMBED_DIM,
    WEIGHTS_DIR,
    Projector,
    XragCompressor,
    init_projector,
    load_projector,
    save_projector,
)
from ragzip.core.tokenization import TokenCounter
from ragzip.generators.target import load_target

HIDDEN_DIM = 576
"""Width of SmolLM2-135M-Instruct's input embeddings, the default generator's."""

PASSAGES: list[Any] = [
    {
        "title": "Yesterday",
        "text": "Yesterday is a song by the Beatles, written by Paul McCartney.",
    },
    "Paris is the capital of France. The Seine flows through the city.",
    "   ",
    {"title": "Tokyo", "text": "東京は日本の首都です。"},
]
QUERY = "who wrote yesterday?"


@pytest.fixture(scope="module")
def embedder() -> Any:
    from ragzip.weights import load_embedder

    return load_embedder("cpu")


@pytest.fixture(scope="module")
def untrained() -> Projector:
    return init_projector(seed=0).eval()


def make(
    counter: TokenCounter, embedder: Any, projector: Projector, **config: Any
) -> XragCompressor:
    return XragCompressor(
        XragCompressor.Config(**config), counter=counter, embedder=embedder, projector=projector
    )


def test_one_vector_per_kept_passage(
    smollm2_counter: TokenCounter, embedder: Any, untrained: Projector
) -> None:
    comp = make(smollm2_counter, embedder, untrained, top_k=3)
    result = comp.compress(QUERY, PASSAGES, budget=Budget.compression(2))
    assert result.compressor == "xrag"
    assert result.embeddings is not None
    assert result.embeddings.dtype == np.float32
    assert result.embeddings.shape == (3, HIDDEN_DIM)
    # the whitespace passage gets no vector; the first three non-empty ones do, in order
    assert [p.tokens for p in result.passages] == [1, 1, 0, 1]
    assert result.compressed_tokens == 3
    assert all(p.text == "" and p.spans == () for p in result.passages)
    # rows are the projections of the passages' MiniLM embeddings, in passage order
    texts = [titled(p["title"], p["text"]) if isinstance(p, dict) else p for p in PASSAGES]
    vecs = embedder.encode([texts[0], texts[1], texts[3]], normalize_embeddings=True)
    with torch.no_grad():
        expected = untrained(torch.as_tensor(vecs)).numpy()
    np.testing.assert_allclose(result.embeddings, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("top_k", "budget", "n"), [(1, 100, 1), (3, 2, 2), (10, 1000, 3)])
def test_top_k_and_budget_cap_the_vectors(
    smollm2_counter: TokenCounter, embedder: Any, untrained: Projector, top_k: int, budget: int,
    n: int,
) -> None:  # fmt: skip
    comp = make(smollm2_counter, embedder, untrained, top_k=top_k)
    result = comp.compress(QUERY, PASSAGES, budget=Budget.tokens(budget))
    assert result.embeddings is not None
    assert result.embeddings.shape == (n, HIDDEN_DIM)
    assert sum(p.tokens for p in result.passages) == n == result.compressed_tokens
    assert result.compressed_tokens <= result.budget_tokens


def test_sentences_give_the_closest_sentences_a_vector_each(
    smollm2_counter: TokenCounter, embedder: Any, untrained: Projector
) -> None:
    passages = [
        {
            "title": "Yesterday",
            "text": "Yesterday is a song by the Beatles. It was written by Paul McCartney. "
            "It was recorded in 1965. Many artists covered it.",
        },
        "Paris is the capital of France. The Seine flows through the city.",
    ]
    comp = make(smollm2_counter, embedder, untrained, top_k=2, sentences=2)
    result = comp.compress(QUERY, passages, budget=Budget.tokens(100))
    assert result.embeddings is not None
    assert [p.tokens for p in result.passages] == [2, 2]
    # the first passage's two sentences closest to the question, in passage order, title first
    sentences = [
        "Yesterday is a song by the Beatles.",
        "It was written by Paul McCartney.",
        "It was recorded in 1965.",
        "Many artists covered it.",
    ]
    vecs = embedder.encode(
        [QUERY, *(titled("Yesterday", t) for t in sentences)], normalize_embeddings=True
    )
    best = sorted(np.argsort(-(vecs[1:] @ vecs[0]))[:2])
    with torch.no_grad():
        expected = untrained(torch.as_tensor(vecs[1:][best])).numpy()
    np.testing.assert_allclose(result.embeddings[:2], expected, rtol=1e-4, atol=1e-5)
    # a passage with fewer sentences than asked gives each one; the budget caps the total
    capped = comp.compress(QUERY, passages, budget=Budget.tokens(3))
    assert [p.tokens for p in capped.passages] == [2, 1]
    whole = make(smollm2_counter, embedder, untrained, top_k=2, sentences=9)
    assert [
        p.tokens for p in whole.compress(QUERY, passages, budget=Budget.tokens(99)).passages
    ] == [
        4,
        2,
    ]


def test_zero_budget_and_empty_passages_give_no_vectors(
    smollm2_counter: TokenCounter, embedder: Any, untrained: Projector
) -> None:
    comp = make(smollm2_counter, embedder, untrained, top_k=4)
    with pytest.raises(BudgetError):
        comp.compress(QUERY, PASSAGES, budget=Budget.compression(10_000))
    blank = comp.compress(QUERY, ["", " \n"], budget=Budget.tokens(10))
    assert blank.embeddings is not None and blank.embeddings.shape == (0, HIDDEN_DIM)


def test_deterministic(smollm2_counter: TokenCounter, embedder: Any, untrained: Projector) -> None:
    comp = make(smollm2_counter, embedder, untrained, top_k=2)
    a = comp.compress(QUERY, PASSAGES, budget=Budget.tokens(50))
    b = comp.compress(QUERY, PASSAGES, budget=Budget.tokens(50))
    assert a.embeddings is not None and b.embeddings is not None
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert (
        init_projector(seed=3)
        .state_dict()["net.0.weight"]
        .equal(init_projector(seed=3).state_dict()["net.0.weight"])
    )


@pytest.mark.parametrize(
    ("query", "passages", "budget"),
    [("", ["text"], Budget.tokens(3)), ("q?", [42], Budget.tokens(3)), ("q?", ["t"], 3)],
)
def test_bad_input(
    smollm2_counter: TokenCounter, embedder: Any, untrained: Projector, query: Any,
    passages: Any, budget: Any,
) -> None:  # fmt: skip
    comp = make(smollm2_counter, embedder, untrained)
    with pytest.raises(InputError):
        comp.compress(query, passages, budget=budget)


def test_bad_config_and_weights(
    smollm2_counter: TokenCounter, embedder: Any, tmp_path: Path
) -> None:
    for bad in ({"top_k": 0}, {"top_k": 1.5}, {"sentences": -1}, {"batch_size": 0}, {"nope": 1}):
        with pytest.raises(ConfigError):
            ragzip.create_compressor("xrag", counter=smollm2_counter, config=bad, embedder=embedder)
    with pytest.raises(ConfigError):
        XragCompressor(counter=smollm2_counter, embedder=embedder, projector=Projector(out_dim=64))
    with pytest.raises(ModelError):
        load_projector(str(tmp_path))
    (tmp_path / "config.json").write_text('{"format": "something-else"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError):
        load_projector(str(tmp_path))


def test_save_load_round_trip(tmp_path: Path) -> None:
    projector = init_projector(hidden=64, seed=1)
    save_projector(projector, tmp_path, target=load_target("smollm2"))
    loaded = load_projector(str(tmp_path))
    x = torch.nn.functional.normalize(torch.randn(3, EMBED_DIM, generator=torch.Generator()), dim=1)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), projector(x).numpy(), atol=2e-2)


def test_shipped_weights_load_from_the_registry(
    smollm2_counter: TokenCounter, embedder: Any
) -> None:
    if not (WEIGHTS_DIR / "model.safetensors").is_file():
        pytest.skip("no projector shipped in compressors/weights/xrag")
    comp = ragzip.create_compressor("xrag", counter=smollm2_counter, embedder=embedder)
    result = comp.compress(QUERY, PASSAGES, budget=Budget.tokens(8))
    assert result.embeddings is not None and result.embeddings.shape == (1, HIDDEN_DIM)
    assert np.isfinite(result.embeddings).all()


# -------------------------------------------------------------------------- with SmolLM2


@pytest.fixture(scope="module")
def soft_lm() -> Any:
    from ragzip.training.xrag.trainer import SoftLM
    from ragzip.weights import load_smollm2

    model, tokenizer = load_smollm2("cpu")
    return SoftLM(model, tokenizer)


@pytest.mark.slow
def test_trained_projector_reconstructs_better_than_untrained(
    data_dir: Path, soft_lm: Any, embedder: Any, untrained: Projector
) -> None:
    """Passages the projector never saw (val split): the trained one regenerates them better."""
    if not (WEIGHTS_DIR / "model.safetensors").is_file():
        pytest.skip("no projector shipped in compressors/weights/xrag")
    from ragzip.experiments.datasets import nq_split
    from ragzip.training.xrag.config import TrainConfig
    from ragzip.training.xrag.trainer import Trainer

    val = nq_split("val", data_dir)[100:116]  # past the val questions the curves used
    vecs = np.asarray(
        embedder.encode([titled(ex.title, ex.text) for ex in val], normalize_embeddings=True),
        dtype=np.float32,
    )
    trainer = Trainer(TrainConfig(val_n=len(val)), soft_lm, val, vecs, val, vecs)
    trained = load_projector(None)
    with torch.no_grad():
        losses = {
            name: [
                float(trainer.recon_loss(p, ex, torch.as_tensor(v)))
                for ex, v in zip(val, vecs, strict=True)
            ]
            for name, p in (("trained", trained), ("untrained", untrained))
        }
    assert np.mean(losses["trained"]) < np.mean(losses["untrained"]), losses


@pytest.mark.slow
def test_generation_from_spliced_vectors(embedder: Any) -> None:
    from ragzip.generators.embedded import EmbeddedGenerator
    from ragzip.prompts import build_messages

    gen = EmbeddedGenerator(device="cpu")
    projector = load_projector(None) if (WEIGHTS_DIR / "model.safetensors").is_file() else None
    comp = XragCompressor(
        XragCompressor.Config(top_k=2),
        counter=gen.counter,
        embedder=embedder,
        projector=projector or init_projector(seed=0),
    )
    result = comp.compress(QUERY, PASSAGES, budget=Budget.compression(1))
    assert result.embeddings is not None
    context = ["<empty_output>" * p.tokens for p in result.passages if p.tokens]
    messages = build_messages(QUERY, context)
    embeds = gen.embed_messages(
        messages, placeholder="<empty_output>", replacements=result.embeddings
    )
    ids = gen.prompt_ids(messages)
    assert embeds.shape == (1, len(ids), HIDDEN_DIM)
    spliced = list(gen.renderer.ids(messages).soft_positions)
    assert len(spliced) == 2
    assert [ids[i] for i in spliced] == [gen.renderer.placeholder_id] * 2
    np.testing.assert_allclose(embeds[0, spliced].numpy(), result.embeddings, atol=1e-6)
    out = gen.generate_from_embeds(embeds, max_new_tokens=12)
    assert out.prompt_tokens == len(ids)
    assert 1 <= out.completion_tokens <= 12
    assert out.text.strip()
    # two vectors stand for two whole passages: the prompt is shorter than with their text
    full = gen.count_prompt_tokens(
        build_messages(QUERY, [p.passage.text for p in result.passages if p.tokens])
    )
    assert len(ids) < full
