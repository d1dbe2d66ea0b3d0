"""The proxy's models built from its settings: the token counter budgets are counted in, and the
renderer of prompt embeddings for soft context."""

from __future__ import annotations

from pathlib import Path

from ragzip.errors import (
    ConfigError,
)
from ragzip.generators.prompt_embeds import PromptEmbedder
from ragzip.server.settings import Settings
from ragzip.tokenization import TokenCounter


def build_counter(settings: Settings) -> TokenCounter:
    """The token counter budgets are counted in: ``settings.tokenizer`` or SmolLM2's tokenizer.

    Raises:
        ConfigError: The tokenizer folder cannot be loaded, or none is configured and the
            embedded SmolLM2 tokenizer is not available.
    """
    if settings.tokenizer:
        from ragzip.models import counter_from_folder

        return counter_from_folder(settings.tokenizer)
    from ragzip import models

    factory = getattr(models, "smollm2_counter", None)
    if factory is None:
        msg = "no tokenizer configured: set tokenizer (RAGZIP_TOKENIZER) to a tokenizer folder"
        raise ConfigError(msg)
    counter: TokenCounter = factory()
    return counter


def build_embedder(settings: Settings) -> PromptEmbedder:
    """The renderer of prompt embeddings for soft context (see ``upstream_prompt_embeds``).

    Loads ``settings.embedding_model`` (or the ``tokenizer`` folder), else the embedded SmolLM2.

    Raises:
        ConfigError: The folder holds no loadable causal LM with a chat template.
    """
    from ragzip.generators.embedded import EmbeddedGenerator

    folder = settings.embedding_model or settings.tokenizer
    if not folder:
        return EmbeddedGenerator(device="cpu")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        msg = (
            f"upstream_prompt_embeds needs the upstream model's input embeddings, but no model "
            f"loads from {folder!r} (set embedding_model to its folder): {exc}"
        )
        raise ConfigError(msg) from exc
    return EmbeddedGenerator(model, tokenizer, device="cpu", name=Path(folder).name)
