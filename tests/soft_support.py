"""Small, real soft compressors and a tiny random causal LM for the soft-context tests.

The compressors follow the soft contract (``CompressionOutput(embeddings, vectors_per_passage)``
in the generator's input-embedding space) with the simplest methods that mean something:

- :class:`MeanEmbeddingCompressor`: one vector per passage, the mean of its tokens' input
  embeddings; passages beyond the budget are dropped.
- :class:`TokenEmbeddingCompressor`: one vector per kept token, the token's own input embedding.
  Spliced into the prompt it must read exactly as the text it came from, which makes the splice
  positions and order testable against plain generation.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.core.tokenization import TokenCounter

if TYPE_CHECKING:
    from ragzip.generators.embedded import EmbeddedGenerator

HIDDEN = 576
"""Width of SmolLM2-135M's input embeddings, and of the tiny model below."""

QUERY = "What is the capital of Zorbania?"
PASSAGES = [
    "The capital of Zorbania is Quillton.",
    "Zorbania borders the Sea of Mists.",
    "Its main export is amber.",
]
"""A question and three passages of an invented country (no model knows the answer)."""


def tiny_llama(tokenizer: Any, *, seed: int = 0) -> Any:
    """A randomly initialised one-layer Llama over ``tokenizer``'s vocabulary (576 wide)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.eval()


class _TableCompressor(Compressor):
    """Base of the test compressors: token ids from the counter's tokenizer, rows of a table."""

    soft = True

    def __init__(self, *, counter: TokenCounter, table: torch.Tensor | np.ndarray) -> None:
        super().__init__(counter=counter)
        tokenizer = getattr(counter, "tokenizer", None)
        if tokenizer is None:
            msg = "the test soft compressors need a counter over a Hugging Face tokenizer"
            raise TypeError(msg)
        self.tokenizer = tokenizer
        self.table = torch.as_tensor(table).detach().float().cpu()

    def _ids(self, text: str) -> list[int]:
        return [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def _output(self, rows: list[torch.Tensor], counts: list[int]) -> CompressionOutput:
        width = int(self.table.shape[1])
        stacked = torch.cat(rows) if rows else torch.zeros(0, width)
        return CompressionOutput(
            embeddings=stacked.numpy().astype(np.float32), vectors_per_passage=counts
        )


class MeanEmbeddingCompressor(_TableCompressor):
    """One vector per passage: the mean input embedding of its tokens."""

    name = "test-soft-mean"

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        rows: list[torch.Tensor] = []
        counts: list[int] = []
        for passage in request.passages:
            ids = self._ids(passage.text)
            if ids and len(rows) < request.budget_tokens:
                rows.append(self.table[ids].mean(0, keepdim=True))
                counts.append(1)
            else:
                counts.append(0)
        return self._output(rows, counts)


class TokenEmbeddingCompressor(_TableCompressor):
    """One vector per token, the token's own input embedding; passages cut at the budget."""

    name = "test-soft-tokens"

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        rows: list[torch.Tensor] = []
        counts: list[int] = []
        left = request.budget_tokens
        for passage in request.passages:
            ids = self._ids(passage.text)[:left]
            left -= len(ids)
            if ids:
                rows.append(self.table[ids])
            counts.append(len(ids))
        return self._output(rows, counts)


def small_generator(*, seed: int, max_positions: int, name: str = "tiny") -> EmbeddedGenerator:
    """An ``EmbeddedGenerator`` over a 32-wide, two-layer random Llama and SmolLM2's tokenizer.

    For tests that need a real, fast causal LM but not SmolLM2's embedding width.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    from ragzip.generators.embedded import EmbeddedGenerator
    from ragzip.weights import smollm2_counter

    tokenizer = smollm2_counter().tokenizer
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return EmbeddedGenerator(model, tokenizer, name=name)


@lru_cache(maxsize=1)
def tiny_generator() -> Any:
    """An ``EmbeddedGenerator`` over :func:`tiny_llama` and SmolLM2's tokenizer (shared)."""
    from ragzip.generators.embedded import EmbeddedGenerator
    from ragzip.weights import smollm2_counter

    tokenizer = smollm2_counter().tokenizer
    return EmbeddedGenerator(tiny_llama(tokenizer), tokenizer, name="tiny-llama")


def embedding_table(generator: Any) -> torch.Tensor:
    """The input-embedding table of an embedded generator's model."""
    return generator.model.get_input_embeddings().weight.detach()


THIRD_HIDDEN = 48
"""Width of the tiny model folders below: neither SmolLM2's 576 nor Gemma 3 270M's 640."""


def tiny_model_folder(folder: Path, *, arch: str = "llama", hidden: int = THIRD_HIDDEN) -> Path:
    """Save a random two-layer causal LM over SmolLM2's tokenizer as a Hugging Face folder.

    ``arch="gemma3"`` makes a Gemma 3 text model (its embeddings are scaled by
    ``sqrt(hidden)`` before the first layer); any other value a Llama.
    """
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig

    from ragzip.weights import smollm2_counter

    tokenizer = smollm2_counter().tokenizer
    common: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if arch == "gemma3":
        config: Any = Gemma3TextConfig(head_dim=hidden // 4, **common)
    else:
        config = LlamaConfig(**common)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
