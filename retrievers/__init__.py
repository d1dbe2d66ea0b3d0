"""Retrieval: BM25 (bm25s), dense (MiniLM + faiss) and their reciprocal rank fusion.

Typical use::

    from ragzip.retrievers import HybridIndex, load_documents

    index = HybridIndex.build(load_documents(["docs/"]))
    index.save("my-index")
    index = HybridIndex.load("my-index")
    passages = index.search("how do I configure the budget?", k=5)

Importing this package is cheap: bm25s, faiss and the embedding model load on first use.
"""

from __future__ import annotations

from ragzip.retrievers.base import Retriever
from ragzip.retrievers.bm25 import BM25Config, BM25Index
from ragzip.retrievers.chunking import ChunkConfig, chunk_passages
from ragzip.retrievers.dense import DenseConfig, DenseIndex
from ragzip.retrievers.documents import load_documents
from ragzip.retrievers.fusion import reciprocal_rank_fusion
from ragzip.retrievers.index import HybridIndex

__all__ = [
    "BM25Config",
    "BM25Index",
    "ChunkConfig",
    "DenseConfig",
    "DenseIndex",
    "HybridIndex",
    "Retriever",
    "chunk_passages",
    "load_documents",
    "reciprocal_rank_fusion",
]
