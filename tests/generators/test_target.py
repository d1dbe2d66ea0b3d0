"""Generators for soft context: which model a spec names, its input-embedding table read without
the model, its identity, and artefacts refused for another model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ragzip.core.errors import ConfigError, ModelError
from ragzip.core.types import Budget
from ragzip.generators.local import load_causal_lm, resolve_generator
from ragzip.generators.prompt_embeds import TableEmbedder
from ragzip.generators.target import load_table, load_target
from ragzip.prompts import SOFT_PLACEHOLDER, build_messages
from tests.soft_support import THIRD_HIDDEN, tiny_model_folder

QUESTION = "Who wrote Yesterday?"
PASSAGES = ["Yesterday is a song by the Beatles, written by Paul McCartney.", "Paris is big."]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generators")
    return {arch: tiny_model_folder(root / arch, arch=arch) for arch in ("llama", "gemma3")}


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_the_table_is_what_the_model_reads(folders: dict[str, Path], arch: str) -> None:
    table = load_table(str(folders[arch]))
    model, _ = load_causal_lm(str(folders[arch]))
    ids = torch.tensor([[0, 5, 400, 49151]])
    read = model.get_input_embeddings()(ids)[0].detach().numpy()
    np.testing.assert_array_equal(table.weight[[0, 5, 400, 49151]], read)  # Gemma: scaled
    assert table.target.hidden_size == THIRD_HIDDEN
    assert table.target.vocab_size == 49152
    assert not table.weight.flags.writeable


def test_identities_tell_models_apart(folders: dict[str, Path]) -> None:
    llama, gemma = (load_target(str(folders[a])) for a in ("llama", "gemma3"))
    smollm2 = load_target("smollm2")
    assert len({llama.identity, gemma.identity, smollm2.identity}) == 3
    assert (smollm2.name, smollm2.hidden_size) == ("smollm2-135m-instruct", 576)
    assert load_target(str(folders["llama"])) == llama  # stable


def test_a_gguf_and_its_conversion_read_the_same_table() -> None:
    from ragzip.generators.target import _from_folder, _from_gguf
    from ragzip.weights import ensure_smollm2_cache, smollm2_gguf

    _, from_gguf = _from_gguf(smollm2_gguf())
    _, from_folder = _from_folder(ensure_smollm2_cache())
    np.testing.assert_array_equal(from_gguf, from_folder)


def test_unknown_generators_are_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown generator 'llama-9000'"):
        resolve_generator("llama-9000")
    with pytest.raises(ConfigError, match="causal LM"):
        resolve_generator(str(tmp_path))  # a folder without config.json


def test_the_table_embedder_renders_as_the_model_does(folders: dict[str, Path]) -> None:
    from ragzip.generators.embedded import EmbeddedGenerator
    from ragzip.generators.local import load_tokenizer

    spec = str(folders["gemma3"])
    model, tokenizer = load_causal_lm(spec)
    generator = EmbeddedGenerator(model, tokenizer)
    embedder = TableEmbedder(load_tokenizer(spec), load_table(spec))
    messages = build_messages(QUESTION, [SOFT_PLACEHOLDER * 2, PASSAGES[1]])
    rows = torch.randn(2, THIRD_HIDDEN, generator=torch.Generator().manual_seed(0))
    ours = embedder.embed_messages(messages, SOFT_PLACEHOLDER, rows)
    theirs = generator.embed_messages(messages, SOFT_PLACEHOLDER, rows)
    assert ours.shape == theirs.shape == (1, ours.shape[1], THIRD_HIDDEN)
    torch.testing.assert_close(ours, theirs)
    with pytest.raises(Exception, match="2 placeholder"):
        embedder.embed_messages(messages, SOFT_PLACEHOLDER, rows[:1])


def test_artefacts_belong_to_their_generator(folders: dict[str, Path], tmp_path: Path) -> None:
    """A projector and an adapter made for the third model work for it, and only for it."""
    from ragzip.compressors.merge.adapter import Adapter
    from ragzip.compressors.merge.compressor import MergeCompressor
    from ragzip.compressors.xrag import XragCompressor, init_projector, save_projector
    from ragzip.core.tokenization import HFTokenCounter
    from ragzip.generators.embedded import EmbeddedGenerator

    spec = str(folders["llama"])
    target = load_target(spec)
    save_projector(init_projector(64, out_dim=THIRD_HIDDEN), tmp_path / "xrag", target=target)
    Adapter(THIRD_HIDDEN, rank=4).save(tmp_path / "merge", target=target)
    model, tokenizer = load_causal_lm(spec)
    generator = EmbeddedGenerator(model, tokenizer, name="third")
    counter: Any = HFTokenCounter(tokenizer)
    xrag = XragCompressor(
        XragCompressor.Config(generator=spec, weights=str(tmp_path / "xrag"), top_k=2),
        counter=counter,
    )
    merge = MergeCompressor(
        MergeCompressor.Config(generator=spec, adapter=str(tmp_path / "merge")), counter=counter
    )
    for compressor in (xrag, merge):
        result = compressor.compress(QUESTION, PASSAGES, budget=Budget.compression(4))
        assert result.embeddings is not None and result.embeddings.shape[1] == THIRD_HIDDEN
        answer = generator.generate_compressed(result, max_new_tokens=3)
        assert answer.completion_tokens >= 1
    with pytest.raises(ModelError, match="trained for llama, not for smollm2-135m-instruct"):
        XragCompressor(XragCompressor.Config(weights=str(tmp_path / "xrag")), counter=counter)
    with pytest.raises(ModelError, match="trained for llama"):
        MergeCompressor(MergeCompressor.Config(adapter=str(tmp_path / "merge")), counter=counter)
    with pytest.raises(ModelError, match="no xrag projector ships for llama"):
        XragCompressor(XragCompressor.Config(generator=spec), counter=counter)
