"""The retrieval benchmark's reference: LangChain's EnsembleRetriever (BM25Retriever + FAISS,
reciprocal rank fusion) over the same chunks, with the same MiniLM behind its Embeddings."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragzip.retrievers.dense import embed_texts


def langchain_parts() -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_community.retrievers import BM25Retriever
        from langchain_community.vectorstores import FAISS
        from langchain_core.documents import Document
        from langchain_core.embeddings import Embeddings

        try:
            from langchain_classic.retrievers import EnsembleRetriever
        except ModuleNotFoundError:
            from langchain.retrievers import EnsembleRetriever  # type: ignore[no-redef]
    return {
        "BM25Retriever": BM25Retriever,
        "FAISS": FAISS,
        "Document": Document,
        "Embeddings": Embeddings,
        "EnsembleRetriever": EnsembleRetriever,
    }


def minilm_for_langchain(embedder: Any, known: dict[str, np.ndarray] | None = None) -> Any:
    """The same MiniLM behind LangChain's Embeddings interface (normalised, batch 32).

    ``known`` maps queries to vectors embedded beforehand in batches (the recall run only:
    the vectors are the model's own, so rankings are the same, without 2,000 single calls).
    """
    base = langchain_parts()["Embeddings"]

    class MiniLM(base):  # type: ignore[misc, valid-type]
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return embed_texts(embedder, texts, batch_size=32).tolist()

        def embed_query(self, text: str) -> list[float]:
            if known is not None and text in known:
                return known[text].tolist()
            return embed_texts(embedder, [text])[0].tolist()

    return MiniLM()


def langchain_ensemble(
    texts: Sequence[str],
    doc_ids: Sequence[str],
    lc_embeddings: Any,
    vectors: np.ndarray | None,
    k: int,
) -> Any:
    lc = langchain_parts()
    metadatas = [{"doc_id": d} for d in doc_ids]
    bm25 = lc["BM25Retriever"].from_texts(list(texts), metadatas=metadatas, k=k)
    if vectors is None:
        docs = [
            lc["Document"](page_content=t, metadata=m)
            for t, m in zip(texts, metadatas, strict=True)
        ]
        store = lc["FAISS"].from_documents(docs, lc_embeddings)
    else:
        store = lc["FAISS"].from_embeddings(
            list(zip(texts, vectors, strict=True)), lc_embeddings, metadatas=metadatas
        )
    dense = store.as_retriever(search_kwargs={"k": k})
    return lc["EnsembleRetriever"](retrievers=[bm25, dense], weights=[0.5, 0.5], c=60)
