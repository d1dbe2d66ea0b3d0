"""Any ragzip compressor as a LangChain document compressor.

:class:`RagzipCompressor` plugs into ``ContextualCompressionRetriever`` (``langchain-classic``) or
an LCEL chain. It returns new ``Document`` objects cut from the originals, with the compression
numbers in their metadata; the caller's documents are never modified.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from ragzip.compressor import Compressor
from ragzip.core.errors import ConfigError, needs_extra
from ragzip.core.framing import PLAIN_CONTEXT, ContextFormat
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Budget, CompressionResult
from ragzip.integrations.common import METADATA_PREFIX as METADATA_PREFIX
from ragzip.integrations.common import (
    as_budget,
    figures,
    require,
    require_text,
    shared_compressor,
)
from ragzip.integrations.langchain_documents import document_to_passage

with needs_extra("langchain", "the LangChain integration needs langchain-core"):
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
    from pydantic import ConfigDict, field_validator


class RagzipCompressor(BaseDocumentCompressor):
    """A ragzip compressor with a budget, as a LangChain ``BaseDocumentCompressor``.

    The documents are compressed together, as one context, for the query; documents the
    compressor drops entirely are left out of the output, the others come back in their input
    order as new documents whose ``page_content`` is the kept text (always cut from the
    original). Each output document carries a copy of its input's metadata and ``id``, plus:

    - ``ragzip_compressor``: the compressor's registry name;
    - ``ragzip_original_tokens`` / ``ragzip_compressed_tokens``: this document's tokens before
      and after, in the generator's tokenizer;
    - ``ragzip_ratio``: their quotient (original / compressed);
    - ``ragzip_context_original_tokens`` / ``ragzip_context_compressed_tokens`` /
      ``ragzip_budget_tokens``: the same for the whole context, and the budget it was held to.

    The budget counts the documents as a chain sends them: by default their texts joined by
    blank lines (LangChain's stuff-documents default); give ``context_format`` when your prompt
    writes them otherwise (numbers, titles, a header). Metadata is deep-copied: changing an
    output document's metadata, nested values included, never changes the caller's documents.

    Args:
        compressor: A :class:`~ragzip.compressor.Compressor`, or a registry name such as
            ``"mig"`` (see ``ragzip.available_compressors()``).
        budget: A :class:`~ragzip.core.types.Budget`, a string such as ``"256"`` or ``"4x"``, or a
            token count.
        counter: With a registry name: the token counter budgets are counted in, which should
            be the generator's tokenizer. Defaults to the embedded SmolLM2's tokenizer.
        config: With a registry name: the compressor's configuration fields.

    Raises:
        ConfigError: ``counter`` or ``config`` given with a compressor instance, or a bad
            budget.
        RegistryError: An unknown compressor name.

    Example::

        from langchain_classic.retrievers import ContextualCompressionRetriever

        retriever = ContextualCompressionRetriever(
            base_compressor=RagzipCompressor("mig", "4x"),
            base_retriever=RagzipRetriever.from_path("my-index", k=10),
        )
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    compressor: Compressor
    """The wrapped compressor."""
    budget: Budget
    """The budget each call is held to."""
    context_format: ContextFormat = PLAIN_CONTEXT
    """How the chain writes the documents into the prompt; the budget counts that text."""

    def __init__(
        self,
        compressor: Compressor | str = "mig",
        budget: Budget | str | int = "4x",
        *,
        counter: TokenCounter | None = None,
        config: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(compressor, str) and counter is None and config is None:
            compressor = shared_compressor(compressor)  # loaded once per process
        elif isinstance(compressor, str):
            from ragzip.registry import create_compressor

            if counter is None:
                from ragzip.weights import smollm2_counter

                counter = smollm2_counter()
            compressor = create_compressor(compressor, counter=counter, config=config)
        elif counter is not None or config is not None:
            msg = "counter and config apply to a compressor given by name, not to an instance"
            raise ConfigError(msg)
        fields: dict[str, Any] = {"compressor": compressor, "budget": as_budget(budget)}
        super().__init__(**fields, **kwargs)

    @field_validator("compressor", mode="before")
    @classmethod
    def _check_compressor(cls, value: Any) -> Compressor:
        return require(value, Compressor, "compressor", "a ragzip Compressor or a registry name")

    @field_validator("budget", mode="before")
    @classmethod
    def _check_budget(cls, value: Any) -> Budget:
        return as_budget(value)

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Compress ``documents`` for ``query`` within the budget.

        Args:
            documents: The retrieved documents, best first; they are not modified.
            query: The question the context is kept for.
            callbacks: Unused; accepted for the LangChain interface.

        Returns:
            New documents, in input order, without those dropped entirely.

        Raises:
            InputError: An empty query or something that is not a ``Document``.
            CompressionError: The compressor returns embeddings instead of text.
        """
        if not documents:
            return []
        passages = [document_to_passage(d) for d in documents]
        result = self.compressor.compress(
            query, passages, budget=self.budget, layout=self.context_format
        )
        return self._documents(documents, result)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`, through the compressor's own ``acompress``."""
        if not documents:
            return []
        passages = [document_to_passage(d) for d in documents]
        result = await self.compressor.acompress(
            query, passages, budget=self.budget, layout=self.context_format
        )
        return self._documents(documents, result)

    def _documents(
        self, documents: Sequence[Document], result: CompressionResult
    ) -> list[Document]:
        require_text(result, "LangChain")
        out: list[Document] = []
        for doc, kept in zip(documents, result.passages, strict=True):
            if not kept.text.strip():  # dropped entirely
                continue
            metadata = {**copy.deepcopy(doc.metadata), **figures(result, kept)}
            out.append(Document(page_content=kept.text, metadata=metadata, id=doc.id))
        return out
