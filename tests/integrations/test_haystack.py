"""The Haystack component, in a real Pipeline (InMemoryDocumentStore + InMemoryBM25Retriever)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

pytest.importorskip("haystack")

from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore

from ragzip.core.errors import InputError, RegistryError
from ragzip.integrations.common import shared_compressor, token_counter
from ragzip.integrations.haystack import RagzipDocumentCompressor
from tests.integrations.conftest import REPO, snippets

QUERY = "Which library does ragzip use for BM25 retrieval?"


def _store(index: Any) -> InMemoryDocumentStore:
    store = InMemoryDocumentStore()
    chunks = index.retrieve("ragzip retrieval compression proxy budget", k=40)
    store.write_documents(
        [
            Document(id=p.id, content=p.text, meta={"title": p.title, "n": i})
            for i, p in enumerate(chunks)
        ]
    )
    return store


def _pipeline(store: InMemoryDocumentStore, **kwargs: Any) -> Pipeline:
    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=6))
    pipe.add_component("compressor", RagzipDocumentCompressor(**kwargs))
    pipe.connect("retriever.documents", "compressor.documents")
    return pipe


def test_pipeline_compresses_within_the_budget_keeping_meta(index: Any) -> None:
    store = _store(index)
    pipe = _pipeline(store)  # defaults: mig at 4x in SmolLM2's tokenizer
    out = pipe.run(
        {"retriever": {"query": QUERY}, "compressor": {"query": QUERY}},
        include_outputs_from={"retriever"},
    )
    retrieved = out["retriever"]["documents"]
    docs = out["compressor"]["documents"]
    assert docs and len(docs) + len(out["compressor"]["dropped"]) == len(retrieved)
    counter = token_counter()
    sent = counter.count("\n\n".join(d.content for d in docs))
    original = counter.count("\n\n".join(d.content for d in retrieved))
    assert sent <= docs[0].meta["ragzip_budget_tokens"] in (original // 4, math.ceil(original / 4))
    by_id = {d.id: d for d in retrieved}
    for d in docs:
        src = by_id[d.id]
        assert d.score == src.score and d.meta["n"] == src.meta["n"]
        assert d.meta["ragzip_compressor"] == "mig"
        pieces, at = [], 0  # the kept text and the dropped spans tile the original
        for start, end in d.meta["ragzip_dropped_spans"]:
            pieces.append(src.content[at:start])
            at = end
        pieces.append(src.content[at:])
        assert "".join("".join(pieces).split()) == "".join(d.content.split())


def test_yaml_round_trip(index: Any) -> None:
    pipe = _pipeline(_store(index), compressor="sentence", budget="3x")
    text = pipe.dumps()
    assert "ragzip.integrations.haystack.RagzipDocumentCompressor" in text
    again = Pipeline.loads(text, allowed_modules=["ragzip"])
    comp = again.get_component("compressor")
    assert isinstance(comp, RagzipDocumentCompressor)
    assert comp.to_dict() == pipe.get_component("compressor").to_dict()
    first = pipe.run({"retriever": {"query": QUERY}, "compressor": {"query": QUERY}})
    second = again.run({"retriever": {"query": QUERY}, "compressor": {"query": QUERY}})
    assert [d.content for d in first["compressor"]["documents"]] == [
        d.content for d in second["compressor"]["documents"]
    ]
    comp.warm_up()
    assert comp._compressor is shared_compressor("sentence")  # loaded once per process


def test_async_matches_sync_and_inputs_are_untouched() -> None:
    docs = [
        Document(content="ragzip uses bm25s for lexical retrieval. It is fast.", meta={"k": [1]}),
        Document(content="Dense retrieval uses MiniLM. Vectors sit in FAISS.", meta={"k": [2]}),
    ]
    before = [d.to_dict() for d in docs]
    comp = RagzipDocumentCompressor(compressor="sentence", budget="2x")
    sync = comp.run(documents=docs, query=QUERY)
    done = asyncio.run(comp.run_async(documents=docs, query=QUERY))
    assert [d.content for d in done["documents"]] == [d.content for d in sync["documents"]]
    assert [d.to_dict() for d in docs] == before


def test_bad_input_is_a_clear_error() -> None:
    comp = RagzipDocumentCompressor(compressor="truncate")
    with pytest.raises(InputError, match="non-empty query"):
        comp.run(documents=[Document(content="x")], query=" ")
    with pytest.raises(InputError, match="no text content"):
        comp.run(documents=[Document(content=None)], query=QUERY)
    with pytest.raises(InputError, match="Haystack Document"):
        comp.run(documents=["text"], query=QUERY)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="budget"):
        RagzipDocumentCompressor(budget="lots")
    with pytest.raises(RegistryError):
        RagzipDocumentCompressor(compressor="nope")
    assert comp.run(documents=[], query=QUERY) == {"documents": [], "dropped": []}


def test_the_documented_pipeline_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    (snippet,) = snippets("haystack")
    monkeypatch.chdir(REPO)
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    docs = namespace["out"]["compressor"]["documents"]
    assert docs and all(d.meta["ragzip_budget_tokens"] > 0 for d in docs)
    assert isinstance(namespace["again"].get_component("compressor"), RagzipDocumentCompressor)
