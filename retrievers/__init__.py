"""Retrieval: BM25 (bm25s), dense (MiniLM + faiss) and their reciprocal rank fusion."""
