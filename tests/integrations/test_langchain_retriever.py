"""RagzipRetriever (a ragzip index as a LangChain retriever, with langchain-tests' standard suite)
and LangChainRetriever (any LangChain retriever as a ragzip pipeline's retrieval stage)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests
from pydantic import ValidationError

import ragzip
from ragzip.core.errors import ConfigError, IndexNotFoundError, InputError
from ragzip.core.types import Budget, Passage
from ragzip.integrations import LangChainRetriever, RagzipRetriever
from ragzip.integrations.langchain_retriever import SearchMode
from ragzip.pipeline import Pipeline
from ragzip.prompts import PROMPT_CONTEXT
from ragzip.retrievers.base import Retriever

QUESTION = "What is a context layout?"  # budgets.md first in every mode, no tie


class TestRagzipRetrieverStandard(RetrieversIntegrationTests):
    """langchain-tests' standard retriever suite over a real hybrid index of docs/."""

    @pytest.fixture(autouse=True)
    def _use_index(self, index: Any) -> None:
        self._index = index

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return RagzipRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"index": self._index, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return QUESTION


def test_documents_carry_chunk_metadata_and_scores(index: Any) -> None:
    docs = RagzipRetriever(index=index, k=4).invoke(QUESTION)
    expected = index.search(QUESTION, 4)
    assert [d.page_content for d in docs] == [p.text for p in expected]
    assert [d.id for d in docs] == [p.id for p in expected]
    for doc, passage in zip(docs, expected, strict=True):
        assert doc.metadata["score"] == passage.score
        assert doc.metadata["title"] == passage.title
        assert doc.metadata["source"] == passage.metadata["source"]
        assert "chunk_index" in doc.metadata
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    assert "budgets.md" in docs[0].metadata["source"]


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_modes_match_the_index(index: Any, mode: SearchMode) -> None:
    retriever = RagzipRetriever(index=index, k=3, mode=mode)
    ids = [d.id for d in retriever.invoke(QUESTION)]
    assert ids == [p.id for p in index.search(QUESTION, 3, mode=mode)]
    # per-call overrides
    per_call = RagzipRetriever(index=index).invoke(QUESTION, k=2, mode=mode)
    assert [d.id for d in per_call] == ids[:2]


def test_from_path_loads_a_saved_index(index: Any, tmp_path: Path) -> None:
    index.save(tmp_path / "idx")
    retriever = RagzipRetriever.from_path(tmp_path / "idx", k=2, mode="bm25")
    assert [d.id for d in retriever.invoke(QUESTION)] == [
        p.id for p in index.search(QUESTION, 2, mode="bm25")
    ]
    with pytest.raises(IndexNotFoundError):
        RagzipRetriever.from_path(tmp_path / "missing")


def test_any_ragzip_retriever_in_its_own_ranking(index: Any) -> None:
    class OnlyRetrieve:
        def retrieve(self, query: str, k: int = 10) -> list[Passage]:
            return index.retrieve(query, k)

    retriever = RagzipRetriever(index=OnlyRetrieve(), k=2)
    assert [d.id for d in retriever.invoke(QUESTION)] == [p.id for p in index.retrieve(QUESTION, 2)]
    with pytest.raises(ConfigError, match="needs a HybridIndex"):
        retriever.invoke(QUESTION, mode="bm25")


def test_bad_arguments(index: Any) -> None:
    with pytest.raises(ValidationError, match="HybridIndex or Retriever"):
        RagzipRetriever(index="not an index")
    with pytest.raises(ValidationError, match="positive int"):
        RagzipRetriever(index=index, k=0)
    with pytest.raises(ValidationError):
        RagzipRetriever(index=index, mode="sparse")  # type: ignore[arg-type]
    retriever = RagzipRetriever(index=index)
    with pytest.raises(ConfigError, match="positive int"):
        retriever.invoke(QUESTION, k=-1)
    with pytest.raises(InputError, match="query"):
        retriever.invoke("   ")


# -- the reverse adapter ------------------------------------------------------------------------


class MiniLMEmbeddings(Embeddings):
    """LangChain embeddings over the embedded all-MiniLM-L6-v2."""

    def __init__(self) -> None:
        from ragzip.weights import load_embedder

        self.model = load_embedder("cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = self.model.encode(texts, normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


@pytest.fixture(scope="module")
def vector_store(index: Any) -> InMemoryVectorStore:
    chunks = list(index.chunks)
    return InMemoryVectorStore.from_texts(
        [c.text for c in chunks],
        MiniLMEmbeddings(),
        metadatas=[{"title": c.title, "source": c.metadata.get("source")} for c in chunks],
        ids=[c.id for c in chunks],
    )


def test_langchain_vector_store_as_ragzip_retriever(vector_store: InMemoryVectorStore) -> None:
    adapter = LangChainRetriever(vector_store.as_retriever())
    assert isinstance(adapter, Retriever)
    passages = adapter.retrieve(QUESTION, k=3)
    assert len(passages) == 3
    assert all(isinstance(p, Passage) and p.text for p in passages)
    assert "budgets.md" in passages[0].metadata["source"]
    hits = vector_store.similarity_search_with_score(QUESTION, k=3)
    assert [p.id for p in passages] == [d.id for d, _ in hits]
    assert len(adapter.retrieve(QUESTION, k=1)) == 1
    assert [p.id for p in asyncio.run(adapter.aretrieve(QUESTION, k=3))] == [p.id for p in passages]


def test_langchain_retriever_as_the_retrieval_stage_of_a_pipeline(
    vector_store: InMemoryVectorStore, counter: Any
) -> None:
    retriever = LangChainRetriever(vector_store.as_retriever())
    pipeline = Pipeline(
        ragzip.create_compressor("mig", counter=counter),
        Budget.compression(2.0),
        retriever=retriever,
        k=4,
    )
    result = pipeline.run(QUESTION)
    assert [p.id for p in result.retrieved] == [p.id for p in retriever.retrieve(QUESTION, 4)]
    # the budget counts the context as the prompt holds it
    assert result.compression.original_tokens == counter.count(
        PROMPT_CONTEXT.render_texts([p.text for p in result.retrieved])
    )
    assert 0 < result.compression.compressed_tokens <= result.compression.budget_tokens
    assert result.compression.budget_tokens == result.compression.original_tokens // 2


def test_round_trip_through_both_adapters(index: Any) -> None:
    adapter = LangChainRetriever(RagzipRetriever(index=index))
    passages = adapter.retrieve(QUESTION, k=3)
    expected = index.retrieve(QUESTION, 3)
    assert passages == expected
    assert [p.score for p in passages] == [p.score for p in expected]


def test_retriever_returning_a_fixed_number_is_cut_to_k(index: Any) -> None:
    calls: list[str] = []

    def fixed(query: str) -> list[Document]:
        calls.append(query)
        return [Document(page_content=c.text, id=c.id) for c in index.chunks[:6]]

    adapter = LangChainRetriever(RunnableLambda(fixed), k_arg=None)
    assert [p.id for p in adapter.retrieve("anything", k=2)] == [c.id for c in index.chunks[:2]]
    assert calls == ["anything"]


def test_reverse_adapter_errors() -> None:
    with pytest.raises(ConfigError, match="LangChain retriever"):
        LangChainRetriever(lambda q: [])  # type: ignore[arg-type]

    def not_documents(query: str) -> Any:
        return "not documents"

    adapter = LangChainRetriever(RunnableLambda(not_documents), k_arg=None)
    with pytest.raises(InputError, match="not documents"):
        adapter.retrieve("question")
    with pytest.raises(InputError, match="query"):
        adapter.retrieve("")
    with pytest.raises(ConfigError, match="positive int"):
        adapter.retrieve("question", k=0)
