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

LlamaIndex (``pip install 'ragzip[llamaindex]'``): :class:`RagzipNodePostprocessor` (compresses
retrieved nodes), :class:`RagzipLlamaIndexRetriever` (a ragzip index as a retriever) and
:class:`RagzipLLM` (a ragzip generator as an LLM).

Haystack (``pip install 'ragzip[haystack]'``): :class:`RagzipDocumentCompressor`, a component.

LiteLLM (``pip install 'ragzip[litellm]'``): :class:`RagzipLiteLLMHook`, a proxy callback;
``ragzip.integrations.litellm_hook.handler`` is one with the defaults.

Every adapter defaults to ``mig`` at 4x counted in SmolLM2's tokenizer, and shares compressors
given by spec across the process (:mod:`ragzip.integrations.common`).

Importing this package is cheap; a framework is imported when one of these names is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragzip.integrations.haystack import RagzipDocumentCompressor
    from ragzip.integrations.langchain_chat import RagzipChatModel
    from ragzip.integrations.langchain_compressor import RagzipCompressor
    from ragzip.integrations.langchain_documents import document_to_passage, passage_to_document
    from ragzip.integrations.langchain_retriever import LangChainRetriever, RagzipRetriever
    from ragzip.integrations.litellm_hook import RagzipLiteLLMHook
    from ragzip.integrations.llamaindex import RagzipLlamaIndexRetriever, RagzipNodePostprocessor
    from ragzip.integrations.llamaindex_llm import RagzipLLM

__all__ = [
    "LangChainRetriever",
    "RagzipChatModel",
    "RagzipCompressor",
    "RagzipDocumentCompressor",
    "RagzipLLM",
    "RagzipLiteLLMHook",
    "RagzipLlamaIndexRetriever",
    "RagzipNodePostprocessor",
    "RagzipRetriever",
    "document_to_passage",
    "passage_to_document",
]

_MODULES = {
    "LangChainRetriever": "langchain_retriever",
    "RagzipChatModel": "langchain_chat",
    "RagzipCompressor": "langchain_compressor",
    "RagzipDocumentCompressor": "haystack",
    "RagzipLLM": "llamaindex_llm",
    "RagzipLiteLLMHook": "litellm_hook",
    "RagzipLlamaIndexRetriever": "llamaindex",
    "RagzipNodePostprocessor": "llamaindex",
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
