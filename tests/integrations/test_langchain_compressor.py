"""RagzipCompressor: new documents, metadata kept, stats right, budget held, real async, and use
inside ContextualCompressionRetriever and LCEL."""

from __future__ import annotations

import asyncio
import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

import ragzip
from ragzip.compressor import Compressor
from ragzip.core.errors import BudgetError, ConfigError, InputError, RegistryError
from ragzip.core.framing import PLAIN_CONTEXT, ContextLayout
from ragzip.core.types import Budget, CompressionResult, Passage
from ragzip.integrations import RagzipCompressor, RagzipRetriever
from ragzip.integrations.langchain_compressor import METADATA_PREFIX

QUERY = "Which city is the capital of France?"


def _documents() -> list[Document]:
    return [
        Document(
            page_content=(
                "Paris is the capital and largest city of France. It lies on the Seine. "
                "The city has been a centre of finance, diplomacy and the arts since the 17th "
                "century."
            ),
            metadata={"source": "france.md", "tags": ["geo", "eu"], "nested": {"rank": 1}},
            id="doc-france",
        ),
        Document(
            page_content=(
                "Berlin is the capital of Germany. The city is known for its museums. "
                "It was divided during the Cold War until 1990."
            ),
            metadata={"source": "germany.md"},
            id="doc-germany",
        ),
        Document(
            page_content=(
                "Madrid is the capital of Spain. The Prado museum holds one of the finest "
                "collections of European art."
            ),
            metadata={"source": "spain.md", "title": "Spain"},
        ),
    ]


@pytest.fixture(params=["identity", "truncate", "random", "mig"])
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_never_mutates_the_callers_documents(counter: Any, name: str) -> None:
    docs = _documents()
    before = copy.deepcopy(docs)
    out = RagzipCompressor(name, "2x", counter=counter).compress_documents(docs, QUERY)
    assert docs == before
    assert all(d.metadata == b.metadata for d, b in zip(docs, before, strict=True))
    for new in out:
        assert all(new is not d and new.metadata is not d.metadata for d in docs)
        new.metadata["tags"] = "overwritten"
    assert docs == before


def test_metadata_preserved_and_stats_consistent(counter: Any, name: str) -> None:
    docs = _documents()
    budget = Budget.compression(2.0)
    out = RagzipCompressor(name, budget, counter=counter).compress_documents(docs, QUERY)
    assert out, "a 2x budget over three passages keeps something"
    by_source = {d.metadata["source"]: d for d in docs}
    # the budget counts the documents as a chain sends them: joined by blank lines
    total_original = counter.count("\n\n".join(d.page_content for d in docs))
    allowed = budget.resolve(total_original)
    kept_tokens = 0
    for new in out:
        src = by_source[new.metadata["source"]]
        assert new.id == src.id
        for key, value in src.metadata.items():
            assert new.metadata[key] == value
        assert new.metadata[f"{METADATA_PREFIX}compressor"] == name
        n_orig = new.metadata[f"{METADATA_PREFIX}original_tokens"]
        n_kept = new.metadata[f"{METADATA_PREFIX}compressed_tokens"]
        assert n_orig == counter.count(src.page_content)
        assert n_kept == counter.count(new.page_content) > 0
        assert math.isclose(new.metadata[f"{METADATA_PREFIX}ratio"], n_orig / n_kept)
        assert new.metadata[f"{METADATA_PREFIX}context_original_tokens"] == total_original
        assert new.metadata[f"{METADATA_PREFIX}budget_tokens"] == allowed
    kept_tokens = counter.count("\n\n".join(d.page_content for d in out))
    assert kept_tokens <= allowed
    assert all(
        d.metadata[f"{METADATA_PREFIX}context_compressed_tokens"] == kept_tokens for d in out
    )
    # output keeps the input order
    order = [d.metadata["source"] for d in docs]
    assert [d.metadata["source"] for d in out] == [
        s for s in order if s in {o.metadata["source"] for o in out}
    ]


def test_kept_text_is_cut_from_the_original(counter: Any) -> None:
    docs = _documents()
    out = RagzipCompressor("truncate", "2x", counter=counter).compress_documents(docs, QUERY)
    by_id = {d.metadata["source"]: d.page_content for d in docs}
    for new in out:
        assert by_id[new.metadata["source"]].startswith(new.page_content)
        assert len(new.page_content) < len(by_id[new.metadata["source"]])


def test_documents_dropped_entirely_are_left_out(counter: Any) -> None:
    docs = _documents()
    joined = counter.count("\n\n".join(d.page_content for d in docs))
    framing = joined - sum(counter.count_batch([d.page_content for d in docs]))
    first = counter.count(docs[0].page_content) + framing  # the separators are paid first
    out = RagzipCompressor("identity", first, counter=counter).compress_documents(docs, QUERY)
    assert [d.id for d in out] == ["doc-france"]
    assert out[0].page_content == docs[0].page_content
    assert out[0].metadata[f"{METADATA_PREFIX}ratio"] == 1.0


def test_empty_input_gives_empty_output(counter: Any) -> None:
    comp = RagzipCompressor("mig", "4x", counter=counter)
    assert comp.compress_documents([], QUERY) == []
    assert asyncio.run(comp.acompress_documents([], QUERY)) == []


def test_async_matches_sync(counter: Any, name: str) -> None:
    comp = RagzipCompressor(name, "3x", counter=counter)
    docs = _documents()
    before = copy.deepcopy(docs)
    sync = comp.compress_documents(docs, QUERY)
    async_out = asyncio.run(comp.acompress_documents(docs, QUERY))
    assert list(async_out) == list(sync)
    assert docs == before


class _Recording(Compressor):
    """Wraps a real compressor and records which entry point was used."""

    name = "recording"

    def __init__(self, inner: Compressor) -> None:
        super().__init__(counter=inner.counter)
        self.inner = inner
        self.calls: list[str] = []

    def _compress(self, request: Any) -> Any:
        return self.inner._compress(request)

    def compress(self, *args: Any, **kwargs: Any) -> CompressionResult:
        self.calls.append("compress")
        return super().compress(*args, **kwargs)

    async def acompress(
        self,
        query: str,
        passages: Sequence[Passage | str | Mapping[str, Any]],
        *,
        budget: Budget,
        layout: ContextLayout = PLAIN_CONTEXT,
    ) -> CompressionResult:
        self.calls.append("acompress")
        return await super().acompress(query, passages, budget=budget, layout=layout)


async def test_acompress_documents_goes_through_the_compressors_acompress(counter: Any) -> None:
    recording = _Recording(ragzip.create_compressor("truncate", counter=counter))
    comp = RagzipCompressor(recording, "2x")
    docs = _documents()
    results = await asyncio.gather(
        comp.acompress_documents(docs, QUERY), comp.acompress_documents(docs[:2], QUERY)
    )
    # acompress runs compress in a worker thread; both entry points are recorded per call
    assert recording.calls.count("acompress") == 2
    assert len(results[0]) == 3 and len(results[1]) == 2


def test_by_name_uses_the_given_counter_and_config(counter: Any) -> None:
    comp = RagzipCompressor("random", "4x", counter=counter, config={"seed": 7})
    assert comp.compressor.name == "random"
    assert comp.compressor.counter is counter
    assert comp.compressor.config.seed == 7  # type: ignore[attr-defined]
    assert comp.budget == Budget(ratio=4.0)


def test_default_counter_is_the_embedded_generators_tokenizer() -> None:
    from ragzip.weights import smollm2_counter

    comp = RagzipCompressor("truncate", 128)
    assert comp.compressor.counter is smollm2_counter()
    assert comp.budget == Budget(max_tokens=128)


def test_bad_arguments_raise_clear_errors(counter: Any) -> None:
    with pytest.raises(RegistryError, match="choose one of"):
        RagzipCompressor("no-such-compressor", "4x", counter=counter)
    instance = ragzip.create_compressor("truncate", counter=counter)
    with pytest.raises(ConfigError, match="compressor given by name"):
        RagzipCompressor(instance, "4x", counter=counter)
    with pytest.raises(BudgetError):
        RagzipCompressor(instance, "four times")
    with pytest.raises(ValueError, match="budget must be"):
        RagzipCompressor(instance, 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ragzip Compressor"):
        RagzipCompressor(object(), "4x")  # type: ignore[arg-type]
    comp = RagzipCompressor(instance, "4x")
    with pytest.raises(InputError, match="query"):
        comp.compress_documents(_documents(), "  ")
    with pytest.raises(InputError, match="Document"):
        comp.compress_documents(["plain string"], QUERY)  # type: ignore[list-item]


def _is_word_subsequence(kept: str, original: str) -> bool:
    words = iter(original.split())
    return all(any(w == o for o in words) for w in kept.split())


def test_inside_contextual_compression_retriever(index: Any, counter: Any) -> None:
    classic = pytest.importorskip("langchain_classic.retrievers")
    base = RagzipRetriever(index=index, k=4)
    question = "How is the budget counted?"
    retriever = classic.ContextualCompressionRetriever(
        base_compressor=RagzipCompressor("mig", "3x", counter=counter), base_retriever=base
    )
    raw = base.invoke(question)
    out = retriever.invoke(question)
    assert out
    assert all(d.metadata[f"{METADATA_PREFIX}compressor"] == "mig" for d in out)
    kept = sum(counter.count_batch([d.page_content for d in out]))
    assert kept <= Budget.compression(3.0).resolve(
        sum(counter.count_batch([d.page_content for d in raw]))
    )
    raw_text = {d.id: d.page_content for d in raw}
    for d in out:
        assert _is_word_subsequence(d.page_content, raw_text[d.id])
    out_async = asyncio.run(retriever.ainvoke(question))
    assert out_async == out


def test_in_an_lcel_chain(index: Any, counter: Any) -> None:
    compressor = RagzipCompressor("truncate", 64, counter=counter)
    retriever = RagzipRetriever(index=index, k=3)
    chain = RunnableParallel(docs=retriever, question=RunnablePassthrough()) | RunnableLambda(
        lambda x: compressor.compress_documents(x["docs"], x["question"])
    )
    out = chain.invoke("Which generators are there?")
    assert 0 < sum(d.metadata[f"{METADATA_PREFIX}compressed_tokens"] for d in out) <= 64
    assert sum(counter.count_batch([d.page_content for d in out])) <= 64


def test_outputs_never_share_nested_metadata_with_the_inputs(counter: Any) -> None:
    docs = [
        Document(page_content=d.page_content, metadata={**d.metadata, "tags": ["a"], "m": {"k": 1}})
        for d in _documents()
    ]
    out = RagzipCompressor("identity", "1x", counter=counter).compress_documents(docs, QUERY)
    out[0].metadata["tags"].append("changed")
    out[0].metadata["m"]["k"] = 2
    assert docs[0].metadata["tags"] == ["a"] and docs[0].metadata["m"] == {"k": 1}
