"""ragzip in LlamaIndex: a node postprocessor that compresses retrieved nodes, and a retriever over
a ragzip index (folder or Postgres).

:class:`RagzipNodePostprocessor` goes where LlamaIndex users put ``LongLLMLinguaPostprocessor``::

    query_engine = RetrieverQueryEngine.from_args(
        retriever, llm=llm, node_postprocessors=[RagzipNodePostprocessor(budget="4x")]
    )

The budget counts the nodes as LlamaIndex's response synthesizers send them: each node's
``get_content(MetadataMode.LLM)`` (its LLM-visible metadata, a blank line, its text), joined by
blank lines.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragzip.compressor import Compressor
from ragzip.core.errors import ConfigError, InputError, needs_extra
from ragzip.core.framing import ContextFormat
from ragzip.core.types import Budget, CompressionResult, Passage
from ragzip.integrations.common import (
    DEFAULT_BUDGET,
    DEFAULT_COMPRESSOR,
    as_budget,
    figures,
    require,
    require_text,
    shared_compressor,
)
from ragzip.retrievers.base import Retriever

with needs_extra("llamaindex", "the LlamaIndex integration needs llama-index-core"):
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_validator
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

NODE_CONTEXT = ContextFormat(template="{text}", title_template="{title}\n\n{text}")
"""How response synthesizers write nodes (default ``text_template``), the LLM metadata as a
title; budgets count this."""


def _node_passage(item: Any) -> Passage:
    if not isinstance(item, NodeWithScore):
        msg = f"expected a LlamaIndex NodeWithScore, got {type(item).__name__}"
        raise InputError(msg)
    node = item.node
    return Passage(
        text=node.get_content(metadata_mode=MetadataMode.NONE),
        id=node.node_id,
        title=node.get_metadata_str(mode=MetadataMode.LLM),
        metadata=copy.deepcopy(dict(node.metadata)),
        score=item.score,
    )


def _query_of(query_bundle: QueryBundle | None) -> str:
    query = query_bundle.query_str if query_bundle is not None else ""
    if not isinstance(query, str) or not query.strip():
        msg = "RagzipNodePostprocessor needs the query: pass query_str or a query_bundle"
        raise InputError(msg)
    return query


class RagzipNodePostprocessor(BaseNodePostprocessor):
    """Compress retrieved nodes for the query within a budget.

    Nodes come back in their input order as copies with the kept text (cut from the original),
    their metadata, relationships and score; nodes dropped entirely are left out. Each copy's
    metadata gains the ``ragzip_*`` figures (see :func:`ragzip.integrations.common.figures`),
    hidden from the LLM and the embedder so they do not take budget.

    Args:
        compressor: A registry spec: ``"mig"`` (default), ``"sentence"``,
            ``"token:keep_numbers=false"``, ... Loaded once per process and shared.
        budget: ``"4x"`` (default), ``"256"`` or a token count.
        tokenizer: What budgets are counted in: ``None`` (SmolLM2's tokenizer), ``"gemma3-270m"``
            or the folder of your generator's Hugging Face tokenizer.

    Raises:
        ConfigError: A bad budget or spec; RegistryError: an unknown compressor.
    """

    compressor: str = Field(default=DEFAULT_COMPRESSOR, description="Compressor spec.")
    budget: str | int = Field(default=DEFAULT_BUDGET, description="Budget: '4x', '256' or int.")
    tokenizer: str | None = Field(default=None, description="Tokenizer budgets count in.")
    _compressor: Compressor | None = PrivateAttr(default=None)

    @field_validator("budget")
    @classmethod
    def _check_budget(cls, value: str | int) -> str | int:
        as_budget(value)
        return value

    @field_validator("compressor")
    @classmethod
    def _check_compressor(cls, value: str) -> str:
        from ragzip.registry import parse_spec

        parse_spec(value)
        return value

    @classmethod
    def class_name(cls) -> str:
        return "RagzipNodePostprocessor"

    @classmethod
    def from_compressor(
        cls, compressor: Compressor, budget: str | int = DEFAULT_BUDGET
    ) -> RagzipNodePostprocessor:
        """Wrap a compressor instance (its own counter counts the budget)."""
        if not isinstance(compressor, Compressor):
            msg = f"expected a ragzip Compressor, got {type(compressor).__name__}"
            raise ConfigError(msg)
        out = cls(compressor=compressor.name, budget=budget)
        out._compressor = compressor
        return out

    @property
    def loaded(self) -> Compressor:
        """The compressor (loaded on first use, shared across the process)."""
        if self._compressor is None:
            self._compressor = shared_compressor(self.compressor, self.tokenizer)
        return self._compressor

    @property
    def parsed_budget(self) -> Budget:
        """The budget as a :class:`~ragzip.core.types.Budget`."""
        return as_budget(self.budget)

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if not nodes:
            return []
        query, passages = _query_of(query_bundle), [_node_passage(n) for n in nodes]
        result = self.loaded.compress(
            query, passages, budget=self.parsed_budget, layout=NODE_CONTEXT
        )
        return _compressed_nodes(nodes, result)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if not nodes:
            return []
        query, passages = _query_of(query_bundle), [_node_passage(n) for n in nodes]
        result = await self.loaded.acompress(
            query, passages, budget=self.parsed_budget, layout=NODE_CONTEXT
        )
        return _compressed_nodes(nodes, result)


def _compressed_nodes(nodes: Sequence[NodeWithScore], result: CompressionResult) -> list[Any]:
    require_text(result, "LlamaIndex")
    out = []
    for item, kept in zip(nodes, result.passages, strict=True):
        if not kept.text.strip():  # dropped entirely
            continue
        node = item.node.model_copy(deep=True)
        node.set_content(kept.text)
        added = figures(result, kept)
        node.metadata.update(added)
        for keys in (node.excluded_llm_metadata_keys, node.excluded_embed_metadata_keys):
            keys.extend(k for k in added if k not in keys)
        out.append(NodeWithScore(node=node, score=item.score))
    return out


class RagzipLlamaIndexRetriever(BaseRetriever):
    """A ragzip index (hybrid BM25 + dense, folder or Postgres) as a LlamaIndex retriever.

    Nodes come back best first as ``TextNode`` objects whose id is the chunk id, whose metadata
    holds the chunk's metadata and ``title``, and whose score is the retriever's (the fused
    score in hybrid mode). Only ``title`` is shown to the LLM; the rest stays in metadata.

    Args:
        retriever: A :class:`~ragzip.retrievers.index.HybridIndex`, a Postgres index or any
            ragzip :class:`~ragzip.retrievers.base.Retriever`.
        k: Nodes to return.

    Example::

        retriever = RagzipLlamaIndexRetriever.from_path("my-index", k=10)
    """

    def __init__(self, retriever: Retriever, *, k: int = 5, **kwargs: Any) -> None:
        require(retriever, Retriever, "retriever", "a ragzip Retriever")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            msg = f"k must be a positive int, got {k!r}"
            raise ConfigError(msg)
        super().__init__(**kwargs)
        self.retriever = retriever
        self.k = k

    @classmethod
    def from_path(cls, path: str | Path, *, k: int = 5) -> RagzipLlamaIndexRetriever:
        """The folder index ``ragzip index`` wrote at ``path`` (it follows re-indexing).

        Raises:
            IndexNotFoundError, IndexFormatError, IndexCorruptedError: No readable index there.
        """
        from ragzip.retrievers.backends import open_retriever

        return cls(open_retriever("folder", index_path=Path(path), live=True), k=k)

    @classmethod
    def from_postgres(
        cls, dsn: str, *, table: str = "ragzip", k: int = 5
    ) -> RagzipLlamaIndexRetriever:
        """The Postgres index ``table`` at ``dsn`` (``ragzip index --backend postgres``).

        Raises:
            ConfigError: The database does not answer.
        """
        from ragzip.retrievers.backends import open_retriever

        return cls(open_retriever("postgres", index_path=Path(), dsn=dsn, table=table), k=k)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_bundle.query_str
        if not isinstance(query, str) or not query.strip():
            msg = "query must be a non-empty string"
            raise InputError(msg)
        return [_passage_node(p) for p in self.retriever.retrieve(query, k=self.k)]


def _passage_node(passage: Passage) -> NodeWithScore:
    metadata: dict[str, Any] = copy.deepcopy(dict(passage.metadata))
    metadata["title"] = passage.title
    hidden = [k for k in metadata if k != "title" or not passage.title]
    ids = {"id_": passage.id} if passage.id else {}
    node = TextNode(
        text=passage.text,
        metadata=metadata,
        excluded_llm_metadata_keys=hidden,
        excluded_embed_metadata_keys=list(hidden),
        **ids,
    )
    return NodeWithScore(node=node, score=passage.score)
