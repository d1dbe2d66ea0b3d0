"""The retrieval benchmark's corpus: NQ passages, synthetic chunks made of their sentences, and
cached MiniLM embeddings (a synthetic chunk's vector composed from its sentences')."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from timing import log

from ragzip.core.types import Passage
from ragzip.encoders.embedding import normalize
from ragzip.experiments import datasets as data
from ragzip.retrievers import ChunkConfig
from ragzip.retrievers.dense import embed_texts

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
MAX_WORDS = ChunkConfig().max_words


def load_nq(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "nq_open_dev.jsonl.gz"
    if not path.is_file():
        sys.exit(f"NQ data not found at {path} (use --data-dir)")
    return [dataclasses.asdict(e) for e in data.read_nq(path)]


def cached_embeddings(
    cache: Path, tag: str, texts: Sequence[str], embedder: Any, batch_size: int = 32
) -> np.ndarray:
    """MiniLM embeddings of ``texts``, cached on disk by content hash."""
    digest = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()[:16]
    path = cache / f"{tag}-{len(texts)}-{digest}.npy"
    if path.is_file():
        log(f"embeddings: cache hit {path}")
        return np.load(path)
    log(f"embeddings: computing {len(texts)} for {tag} (cached at {path})")
    t0 = time.perf_counter()
    vectors = embed_texts(embedder, texts, batch_size=batch_size, progress=True)
    log(f"embeddings: {len(texts)} in {time.perf_counter() - t0:.1f}s")
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def nq_docs(rows: Sequence[dict[str, Any]]) -> list[Passage]:
    return [Passage(text=r["text"], title=r["title"], id=f"nq{i}") for i, r in enumerate(rows)]


def synthesize(
    sentences: Sequence[str], n: int, seed: int
) -> tuple[list[str], list[np.ndarray], list[str]]:
    """``n`` synthetic chunks: (texts, sentence indices per chunk, kind per chunk)."""
    rng = np.random.default_rng(seed)
    words = np.array([len(s.split()) for s in sentences])
    texts, members, kinds = [], [], []
    for j in range(n):
        length = int(rng.integers(2, 7))
        if j % 2 == 0:
            start = int(rng.integers(0, len(sentences) - length))
            ids = np.arange(start, start + length)
            kind = "window"
        else:
            ids = rng.choice(len(sentences), size=length, replace=False)
            kind = "shuffle"
        while len(ids) > 1 and words[ids].sum() > MAX_WORDS:
            ids = ids[:-1]
        texts.append(" ".join(sentences[int(i)] for i in ids))
        members.append(ids)
        kinds.append(kind)
    return texts, members, kinds


def compose(sentence_vectors: np.ndarray, members: Sequence[np.ndarray]) -> np.ndarray:
    out = np.empty((len(members), sentence_vectors.shape[1]), dtype=np.float32)
    for i, ids in enumerate(members):
        out[i] = sentence_vectors[ids].sum(axis=0)
    return normalize(out)
