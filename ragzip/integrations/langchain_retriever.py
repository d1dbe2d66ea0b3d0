"""Retrieval across the LangChain boundary, both ways.

- :class:`RagzipRetriever` serves a ragzip :class:`~ragzip.retrievers.index.HybridIndex` (BM25 +
  dense, fused with reciprocal rank fusion) as a LangChain ``BaseRetriever``.
- :class:`LangChainRetriever` wraps any LangChain retriever (a vector store's ``as_retriever()``
  over Qdrant, OpenSearch, Elasticsearch, ...) as a ragzip
  :class:`~ragzip.retrievers.base.Retriever`, the retrieval stage of a
  :class:`~ragzip.pipeline.Pipeline`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from ragzip.core.errors import ConfigError, InputError, needs_extra
from ragzip.core.types import Passage
from ragzip.integrations.common import require
from ragzip.integrations.langchain_documents import document_to_passage, passage_to_document
from ragzip.retrievers.base import Retriever

with needs_extra("langchain", "the LangChain integration needs langchain-core"):
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import Runnable
    from pydantic import ConfigDict, field_validator

SearchMode = Literal["hybrid", "bm25", "dense"]


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        msg = f"k must be a positive int, got {k!r}"
        raise ConfigError(msg)
    return k


class RagzipRetriever(BaseRetriever):
    """A ragzip index as a LangChain retriever.

    Documents come back best first; their metadata holds the chunk's metadata (``doc_id``,
    ``title``, ``chunk_index``, ...), the per-retriever ranks and scores, and ``id``, ``title``
    and ``score`` (the fused reciprocal-rank-fusion score in hybrid mode).

    Args:
        index: A :class:`~ragzip.retrievers.index.HybridIndex`, or any ragzip
            :class:`~ragzip.retrievers.base.Retriever` (then only ``mode="hybrid"``, meaning
            "its own ranking", is accepted).
        k: Documents to return; ``invoke(query, k=...)`` overrides it per call.
        mode: ``"hybrid"``, ``"bm25"`` or ``"dense"``; ``invoke(query, mode=...)`` overrides it.

    Example::

        retriever = RagzipRetriever.from_path("my-index", k=5)
        docs = retriever.invoke("how is the budget counted?")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any
    """The ragzip index or retriever."""
    k: int = 5
    """Documents to return."""
    mode: SearchMode = "hybrid"
    """Search mode of a :class:`~ragzip.retrievers.index.HybridIndex`."""

    @field_validator("index")
    @classmethod
    def _check_index(cls, value: Any) -> Any:
        what = "a ragzip HybridIndex or Retriever (with retrieve(query, k))"
        return require(value, Retriever, "index", what)

    @field_validator("k")
    @classmethod
    def _check_k_field(cls, value: int) -> int:
        return _check_k(value)

    @classmethod
    def from_path(cls, path: str | Path, **kwargs: Any) -> RagzipRetriever:
        """Load the index written by ``ragzip index`` (or ``HybridIndex.save``) at ``path``.

        Raises:
            IndexNotFoundError: Nothing at ``path``.
            IndexFormatError: Not a ragzip index of a readable version.
            IndexCorruptedError: Files missing or not matching their checksums.
        """
        from ragzip.retrievers.index import HybridIndex

        return cls(index=HybridIndex.load(path), **kwargs)

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        mode: SearchMode | None = None,
    ) -> list[Document]:
        n = self.k if k is None else _check_k(k)
        search_mode = self.mode if mode is None else mode
        if not isinstance(query, str) or not query.strip():
            msg = "query must be a non-empty string"
            raise InputError(msg)
        search = getattr(self.index, "search", None)
        if callable(search):
            passages = search(query, n, mode=search_mode)
        elif search_mode == "hybrid":
            passages = self.index.retrieve(query, k=n)
        else:
            msg = f"mode {search_mode!r} needs a HybridIndex, not {type(self.index).__name__}"
            raise ConfigError(msg)
        return [passage_to_document(p) for p in passages]


class LangChainRetriever:
    """Any LangChain retriever as a ragzip :class:`~ragzip.retrievers.base.Retriever`.

    The number of results is passed to the retriever as the keyword ``k_arg`` (vector-store
    retrievers merge it into their search arguments); the result is also cut to ``k``, for
    retrievers that return a fixed number. Scores are read from the documents' ``score`` or
    ``relevance_score`` metadata when present.

    Args:
        retriever: A LangChain ``BaseRetriever``, or any runnable from a string to documents.
        k_arg: Keyword that sets the number of results at ``invoke`` time; ``None`` passes none
            (for runnables that take no keyword arguments).

    Example::

        from langchain_core.vectorstores import InMemoryVectorStore

        store = InMemoryVectorStore.from_texts(texts, embeddings)
        pipeline = Pipeline(compressor, Budget.parse("4x"),
                            retriever=LangChainRetriever(store.as_retriever()))
    """

    def __init__(self, retriever: Runnable[str, list[Document]], *, k_arg: str | None = "k"):
        if not isinstance(retriever, Runnable):
            msg = (
                "retriever must be a LangChain retriever or runnable, "
                f"got {type(retriever).__name__}"
            )
            raise ConfigError(msg)
        self.retriever = retriever
        self.k_arg = k_arg

    def _kwargs(self, k: int) -> dict[str, Any]:
        return {self.k_arg: k} if self.k_arg else {}

    def _passages(self, documents: Any, k: int) -> list[Passage]:
        if not isinstance(documents, list | tuple):
            msg = f"the LangChain retriever returned {type(documents).__name__}, not documents"
            raise InputError(msg)
        return [document_to_passage(d) for d in documents[:k]]

    def _check(self, query: Any, k: Any) -> int:
        if not isinstance(query, str) or not query.strip():
            msg = "query must be a non-empty string"
            raise InputError(msg)
        return _check_k(k)

    def retrieve(self, query: str, k: int = 10) -> list[Passage]:
        """The top ``k`` passages for ``query`` from the wrapped retriever.

        Raises:
            InputError: An empty query, or the retriever returned something else than
                documents.
            ConfigError: ``k`` below 1.
        """
        n = self._check(query, k)
        return self._passages(self.retriever.invoke(query, **self._kwargs(n)), n)

    async def aretrieve(self, query: str, k: int = 10) -> list[Passage]:
        """Async :meth:`retrieve`, through the wrapped retriever's ``ainvoke``."""
        n = self._check(query, k)
        return self._passages(await self.retriever.ainvoke(query, **self._kwargs(n)), n)
