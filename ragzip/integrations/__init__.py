"""Integrations of ragzip with other frameworks.

LangChain (``pip install 'ragzip[langchain]'``; only ``langchain-core`` is needed at import):

- :class:`RagzipCompressor`: any registered compressor as a LangChain ``BaseDocumentCompressor``
  (for ``ContextualCompressionRetriever`` or an LCEL chain).
- :class:`RagzipRetriever`: a ragzip :class:`~ragzip.retrievers.index.HybridIndex` as a LangChain
  ``BaseRetriever``.
- :class:`LangChainRetriever`: the reverse, any LangChain retriever as the retrieval stage of a
  :class:`~ragzip.pipeline.Pipeline`.
- :class:`RagzipChatModel`: a ragzip :class:`~ragzip.generators.base.Generator` (the embedded
  SmolLM2 by default) as a LangChain chat model.

Importing this package is cheap; LangChain is imported when one of these names is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragzip.integrations.langchain_chat import RagzipChatModel
    from ragzip.integrations.langchain_compressor import RagzipCompressor
    from ragzip.integrations.langchain_documents import document_to_passage, passage_to_document
    from ragzip.integrations.langchain_retriever import LangChainRetriever, RagzipRetriever

__all__ = [
    "LangChainRetriever",
    "RagzipChatModel",
    "RagzipCompressor",
    "RagzipRetriever",
    "document_to_passage",
    "passage_to_document",
]

_MODULES = {
    "LangChainRetriever": "langchain_retriever",
    "RagzipChatModel": "langchain_chat",
    "RagzipCompressor": "langchain_compressor",
    "RagzipRetriever": "langchain_retriever",
    "document_to_passage": "langchain_documents",
    "passage_to_document": "langchain_documents",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
