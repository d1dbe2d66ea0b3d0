"""ragzip in Haystack 2: a component that compresses retrieved documents for the query.

Put :class:`RagzipDocumentCompressor` between a retriever and a prompt builder::

    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(document_store=store))
    pipe.add_component("compressor", RagzipDocumentCompressor(budget="4x"))
    pipe.connect("retriever.documents", "compressor.documents")
    pipe.run({"retriever": {"query": q}, "compressor": {"query": q}})

The budget counts the documents' contents joined by blank lines, in the tokenizer named (the
generator's; SmolLM2's by default). Pipelines holding it serialise to YAML; load them with
``Pipeline.loads(text, allowed_modules=["ragzip"])``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from ragzip.compressor import Compressor
from ragzip.core.errors import InputError, needs_extra
from ragzip.core.framing import PLAIN_CONTEXT
from ragzip.core.types import CompressionResult, Passage
from ragzip.integrations.common import (
    DEFAULT_BUDGET,
    DEFAULT_COMPRESSOR,
    METADATA_PREFIX,
    as_budget,
    dropped_spans,
    figures,
    require_text,
    shared_compressor,
)

with needs_extra("haystack", "the Haystack integration needs haystack-ai"):
    from haystack import Document, component, default_from_dict, default_to_dict


def _passage(doc: Any) -> Passage:
    if not isinstance(doc, Document):
        msg = f"expected a Haystack Document, got {type(doc).__name__}"
        raise InputError(msg)
    if doc.content is None:
        msg = f"document {doc.id!r} has no text content (only text documents can be compressed)"
        raise InputError(msg)
    meta = copy.deepcopy(doc.meta)
    title = meta.get("title")
    return Passage(
        text=doc.content,
        id=doc.id,
        title=title if isinstance(title, str) else "",
        metadata=meta,
        score=doc.score,
    )


@component
class RagzipDocumentCompressor:
    """Compress documents for a query within a budget.

    Outputs ``documents``: copies of the documents that kept any text, in input order, with the
    kept text as ``content`` (cut from the original) and their ``id``, ``score`` and ``meta``;
    ``meta`` gains the ``ragzip_*`` figures (see :func:`ragzip.integrations.common.figures`) and
    ``ragzip_dropped_spans``, the ``[start, end)`` character ranges of the original content that
    were dropped. ``dropped`` lists the documents dropped entirely, unchanged.

    Args:
        compressor: A registry spec: ``"mig"`` (default), ``"sentence"``, ... Loaded once per
            process (at ``warm_up`` or first run) and shared.
        budget: ``"4x"`` (default), ``"256"`` or a token count.
        tokenizer: What budgets are counted in: ``None`` (SmolLM2's tokenizer), ``"gemma3-270m"``
            or the folder of your generator's Hugging Face tokenizer.

    Raises:
        ConfigError: A bad budget or spec; RegistryError: an unknown compressor.
    """

    def __init__(
        self,
        compressor: str = DEFAULT_COMPRESSOR,
        budget: str | int = DEFAULT_BUDGET,
        tokenizer: str | None = None,
    ) -> None:
        from ragzip.registry import parse_spec

        parse_spec(compressor)
        self.budget = as_budget(budget)
        self.compressor_spec, self.budget_value, self.tokenizer = compressor, budget, tokenizer
        self._compressor: Compressor | None = None

    def warm_up(self) -> None:
        """Load the compressor (shared by every component of this process with the same spec)."""
        if self._compressor is None:
            self._compressor = shared_compressor(self.compressor_spec, self.tokenizer)

    def to_dict(self) -> dict[str, Any]:
        """The component as Haystack serialises it."""
        return default_to_dict(
            self,
            compressor=self.compressor_spec,
            budget=self.budget_value,
            tokenizer=self.tokenizer,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RagzipDocumentCompressor:
        """The component from :meth:`to_dict`'s output."""
        out: RagzipDocumentCompressor = default_from_dict(cls, data)
        return out

    def _inputs(self, documents: list[Document], query: str) -> list[Passage]:
        if not isinstance(query, str) or not query.strip():
            msg = "RagzipDocumentCompressor needs a non-empty query"
            raise InputError(msg)
        self.warm_up()
        return [_passage(d) for d in documents]

    @component.output_types(documents=list[Document], dropped=list[Document])
    def run(self, documents: list[Document], query: str) -> dict[str, list[Document]]:
        """Compress ``documents`` for ``query``.

        Raises:
            InputError: An empty query, or a document without text.
        """
        passages = self._inputs(documents, query)
        if not passages:
            return {"documents": [], "dropped": []}
        assert self._compressor is not None
        result = self._compressor.compress(
            query, passages, budget=self.budget, layout=PLAIN_CONTEXT
        )
        return _outputs(documents, result)

    @component.output_types(documents=list[Document], dropped=list[Document])
    async def run_async(self, documents: list[Document], query: str) -> dict[str, list[Document]]:
        """Async :meth:`run`, through the compressor's ``acompress``."""
        passages = self._inputs(documents, query)
        if not passages:
            return {"documents": [], "dropped": []}
        assert self._compressor is not None
        result = await self._compressor.acompress(
            query, passages, budget=self.budget, layout=PLAIN_CONTEXT
        )
        return _outputs(documents, result)


def _outputs(documents: list[Document], result: CompressionResult) -> dict[str, list[Document]]:
    require_text(result, "Haystack")
    kept_docs: list[Document] = []
    dropped: list[Document] = []
    for doc, kept in zip(documents, result.passages, strict=True):
        if not kept.text.strip():
            dropped.append(doc)
            continue
        meta = {
            **copy.deepcopy(doc.meta),
            **figures(result, kept),
            f"{METADATA_PREFIX}dropped_spans": dropped_spans(kept),
        }
        kept_docs.append(dataclasses.replace(doc, content=kept.text, meta=meta))
    return {"documents": kept_docs, "dropped": dropped}
