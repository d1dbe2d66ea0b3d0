"""The proxy's models built from its settings: the token counter budgets are counted in, and the
renderer of prompt embeddings for soft context."""

from __future__ import annotations

from ragzip.core.errors import (
    ConfigError,
)
from ragzip.core.tokenization import TokenCounter
from ragzip.generators.prompt_embeds import PromptEmbedder
from ragzip.server.settings import Settings


def build_counter(settings: Settings) -> TokenCounter:
    """The token counter budgets are counted in: ``settings.tokenizer`` or SmolLM2's tokenizer.

    Raises:
        ConfigError: The tokenizer folder cannot be loaded, or none is configured and the
            embedded SmolLM2 tokenizer is not available.
    """
    if settings.tokenizer:
        from ragzip.weights import counter_from_folder

        return counter_from_folder(settings.tokenizer)
    from ragzip import weights as models

    factory = getattr(models, "smollm2_counter", None)
    if factory is None:
        msg = "no tokenizer configured: set tokenizer (RAGZIP_TOKENIZER) to a tokenizer folder"
        raise ConfigError(msg)
    counter: TokenCounter = factory()
    return counter


def soft_generator(settings: Settings) -> str | None:
    """The generator soft vectors are made for: ``embedding_model``, else the ``tokenizer``
    folder, else ``None`` (the embedded SmolLM2)."""
    return settings.embedding_model or settings.tokenizer or None


def build_embedder(settings: Settings) -> PromptEmbedder:
    """The renderer of prompt embeddings for soft context (see ``upstream_prompt_embeds``).

    Reads only the upstream model's tokenizer and input-embedding table
    (:class:`~ragzip.generators.prompt_embeds.TableEmbedder`), from ``embedding_model`` (a model
    folder, a ``.gguf`` file, ``smollm2`` or ``gemma3-270m``), else the ``tokenizer`` folder,
    else the embedded SmolLM2.

    Raises:
        ConfigError: No table or tokenizer loads from there.
    """
    from ragzip.core.errors import ModelError
    from ragzip.generators.local import load_tokenizer
    from ragzip.generators.prompt_embeds import TableEmbedder
    from ragzip.generators.target import load_table

    spec = soft_generator(settings)
    try:
        return TableEmbedder(load_tokenizer(spec), load_table(spec))
    except ModelError as exc:
        msg = (
            f"upstream_prompt_embeds needs the upstream model's input embeddings, but none load "
            f"from {spec!r} (set embedding_model to its folder or .gguf file): {exc}"
        )
        raise ConfigError(msg) from exc
