"""Weighted reciprocal rank fusion.

Cormack, Clarke & Büttcher, "Reciprocal Rank Fusion outperforms Condorcet and individual Rank
Learning Methods" (SIGIR 2009): a document's fused score is ``Σ_i w_i / (k + rank_i)`` over the
rankings that contain it, with 1-based ranks and ``k = 60``. Only ranks matter, so scores on
different scales (BM25, cosine) fuse without calibration.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from ragzip.core.errors import ConfigError, InputError
from ragzip.core.types import Passage

T = TypeVar("T", bound=Hashable)

Mode = Literal["hybrid", "bm25", "dense"]
MODES: tuple[Mode, ...] = ("hybrid", "bm25", "dense")

FUSION_DEPTH = 100
"""How many candidates each ranking contributes to hybrid fusion (at least ``k``)."""

RRF_K = 60
"""The constant of Cormack et al. (2009)."""

HYBRID_RRF_K = 5
"""The constant hybrid search uses by default: chosen on NQ-open val questions and the
key-value set (``benchmarks/fusion.py``), where it is the only setting at least as good as the
better single retriever on both: NQ recall@10 1.000 on val, 0.994 on test (dense 0.990 / 0.994,
BM25 0.953 / 0.936, k = 60: 0.983 / 0.974); key-value recall@1 1.00 (BM25 1.00, dense 0.95).
A small constant lets a first-ranked hit of either retriever stand out, as an exact key match in
BM25 does."""


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[T]],
    weights: Sequence[float] | None = None,
    *,
    k: float = RRF_K,
) -> list[tuple[T, float]]:
    """Fuse ranked lists into one.

    Args:
        rankings: Ranked lists of item keys, best first. An item repeated inside one list counts
            at its first (best) position only.
        weights: One non-negative weight per list; all ``1.0`` when ``None``.
        k: The rank offset; larger values flatten the difference between top and lower ranks.

    Returns:
        ``(item, score)`` pairs sorted by descending score. Ties are broken by the best rank the
        item reached in any list with non-zero weight, then by the order of first appearance,
        so the result is deterministic.

    Raises:
        ConfigError: Weights of the wrong length, negative or non-finite, or a negative ``k``.
    """
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        msg = f"got {len(weights)} weights for {len(rankings)} rankings"
        raise ConfigError(msg)
    if any(not math.isfinite(w) or w < 0 for w in weights):
        msg = f"fusion weights must be finite and >= 0, got {list(weights)}"
        raise ConfigError(msg)
    if not math.isfinite(k) or k < 0:
        msg = f"the rank constant k must be finite and >= 0, got {k}"
        raise ConfigError(msg)
    scores: dict[T, float] = {}
    best: dict[T, int] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        if weight == 0:
            continue
        seen: set[T] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
            best[item] = min(best.get(item, rank), rank)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], best[kv[0]], order[kv[0]]))


def fuse_hits(
    chunks: Sequence[Passage],
    bm25_hits: tuple[np.ndarray, np.ndarray],
    dense_hits: tuple[np.ndarray, np.ndarray],
    options: SearchOptions,
) -> list[Passage]:
    """The top ``options.k`` of ``chunks`` from the BM25 and dense hits (row ids and scores,
    best first): fused by weighted RRF in ``"hybrid"`` mode, else one ranking as it is. Each
    result is a new passage with the fused (or the retriever's) score and both retrievers' ranks
    and scores in its metadata."""
    k, mode = options.k, options.mode
    bm25_ids = bm25_hits[0].tolist()
    dense_ids = dense_hits[0].tolist()
    extra: dict[int, dict[str, Any]] = {}
    for prefix, (ids, scores) in (("bm25", bm25_hits), ("dense", dense_hits)):
        pairs = zip(ids.tolist(), scores.tolist(), strict=True)
        for rank, (pos, score) in enumerate(pairs, start=1):
            info = extra.setdefault(pos, {})
            info[f"{prefix}_rank"] = rank
            info[f"{prefix}_score"] = score
    if mode == "hybrid":
        fused = reciprocal_rank_fusion([bm25_ids, dense_ids], options.weights, k=options.rrf_k)
        ranked = fused[:k]
    else:
        hits = bm25_hits if mode == "bm25" else dense_hits
        ranked = list(zip(hits[0].tolist()[:k], hits[1].tolist()[:k], strict=True))
    out = []
    for pos, score in ranked:
        chunk = chunks[pos]
        metadata = dict(chunk.metadata)
        metadata.update(extra[pos])
        out.append(
            Passage(
                text=chunk.text,
                id=chunk.id,
                title=chunk.title,
                metadata=metadata,
                score=float(score),
            )
        )
    return out


def check_search(queries: Sequence[str], k: int, mode: str, weights: Sequence[float]) -> None:
    """Refuse what a search cannot answer.

    Raises:
        InputError: One string instead of a list, a query that is no string or is empty.
        ConfigError: ``k`` below 1, an unknown mode, or weights that are not two finite
            numbers >= 0 (not both zero in hybrid mode).
    """
    if isinstance(queries, str):
        msg = "search_batch takes a list of queries, not one string (use search)"
        raise InputError(msg)
    for q in queries:
        if not isinstance(q, str):
            msg = f"a query must be a string, got {type(q).__name__}"
            raise InputError(msg)
        if not q.strip():
            msg = "the query is empty"
            raise InputError(msg)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        msg = f"k must be a positive int, got {k!r}"
        raise ConfigError(msg)
    if mode not in MODES:
        msg = f"mode must be one of {', '.join(MODES)}, got {mode!r}"
        raise ConfigError(msg)
    if len(weights) != 2 or any(not math.isfinite(w) or w < 0 for w in weights):
        msg = f"weights must be two finite numbers >= 0 (bm25, dense), got {weights!r}"
        raise ConfigError(msg)
    if mode == "hybrid" and not any(weights):
        msg = "at least one fusion weight must be > 0"
        raise ConfigError(msg)


@dataclass(frozen=True)
class SearchOptions:
    """One search's settings, checked (see :meth:`HybridSearch.search` for each)."""

    k: int = 10
    mode: Mode = "hybrid"
    weights: tuple[float, float] = (1.0, 1.0)
    depth: int = FUSION_DEPTH
    rrf_k: float = HYBRID_RRF_K

    @property
    def uses_bm25(self) -> bool:
        """Whether the lexical ranking takes part (a zero hybrid weight skips it)."""
        return self.mode == "bm25" or (self.mode == "hybrid" and self.weights[0] > 0)

    @property
    def uses_dense(self) -> bool:
        """Whether the dense ranking takes part."""
        return self.mode == "dense" or (self.mode == "hybrid" and self.weights[1] > 0)


class HybridSearch(ABC):
    """What every hybrid index answers (the folder index and the Postgres one): ``search``,
    ``search_batch`` and the :class:`~ragzip.retrievers.base.Retriever` protocol's
    ``retrieve``, all checked here and answered by the index's own :meth:`_search_batch`."""

    @abstractmethod
    def _search_batch(self, queries: list[str], options: SearchOptions) -> list[list[Passage]]:
        """The top ``options.k`` chunks of each of the (checked, non-empty) ``queries``."""

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        mode: Mode = "hybrid",
        weights: tuple[float, float] = (1.0, 1.0),
        depth: int = FUSION_DEPTH,
        rrf_k: float = HYBRID_RRF_K,
    ) -> list[list[Passage]]:
        """:meth:`search` for many queries (their embeddings made in batches); one list per
        query.

        Raises:
            InputError: One string instead of a list, or an empty query.
            ConfigError: ``k`` below 1, an unknown mode or bad weights.
        """
        check_search(queries, k, mode, weights)
        if not queries:
            return []
        w_bm25, w_dense = (float(w) for w in weights)
        options = SearchOptions(k, mode, (w_bm25, w_dense), depth, float(rrf_k))
        return self._search_batch(list(queries), options)

    def retrieve(self, query: str, k: int = 10) -> list[Passage]:
        """Hybrid search with default weights (the :class:`Retriever` protocol)."""
        return self.search(query, k)

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        mode: Mode = "hybrid",
        weights: tuple[float, float] = (1.0, 1.0),
        depth: int = FUSION_DEPTH,
        rrf_k: float = HYBRID_RRF_K,
    ) -> list[Passage]:
        """The top ``k`` chunks for ``query``.

        Args:
            query: The question.
            k: How many chunks to return.
            mode: ``"hybrid"`` (BM25 and dense fused), ``"bm25"`` or ``"dense"``.
            weights: Fusion weights ``(bm25, dense)`` for hybrid mode; a zero weight skips that
                retriever entirely.
            depth: Candidates each retriever contributes to the fusion (at least ``k``).
            rrf_k: The reciprocal-rank-fusion constant.

        Returns:
            Chunks, best first, as new passages: ``score`` is the fused RRF score in hybrid mode,
            the BM25 score in BM25 mode and the cosine similarity in dense mode; ``metadata``
            has the chunk's (``doc_id``, ``title``, ``chunk_index``, ``char_start``,
            ``char_end``, ...) plus ``bm25_rank``/``bm25_score`` and ``dense_rank``/
            ``dense_score`` (1-based ranks) for the retrievers that found it. BM25-only results
            leave out chunks sharing no word with the query, so fewer than ``k`` may come back.

        Raises:
            InputError: An empty query, ``k`` below 1 or an unknown mode.
        """
        hits = self.search_batch([query], k, mode=mode, weights=weights, depth=depth, rrf_k=rrf_k)
        return hits[0]
