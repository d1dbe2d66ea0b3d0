"""Marginal Information Gain selection: relevant sentences that do not repeat each other.

Training-free text selection after the coarse stage of COMI (Tang et al., "COMI: Coarse-to-fine
Context Compression via Marginal Information Gain", ICLR 2026, arXiv:2602.01719). COMI scores a
unit by its *marginal information gain*, its relevance to the question minus its semantic
redundancy with other units, and uses it to decide where the budget goes. Here the units are
sentences, the scores come from a sentence embedder, and the budget is spent greedily:

    MIG(u | S) = cos(q, u) - λ · max_{s ∈ S} cos(u, s)

where ``S`` holds the sentences chosen so far. At each step the sentence with the best MIG among
those that still fit is kept; kept sentences are returned in their original order. COMI's
fine-grained stage (merging token embeddings inside the model) has no text analogue and is not
part of this method.

λ and title use were chosen on questions 0-399 of the NQ-open dev file (394 with the answer in
the gold passage; gold passage among the 9 other passages with the most IDF-weighted word overlap
with the question), disjoint from the questions the tests evaluate on (1000-1199). Answer-in-context
recall, SmolLM2 tokenizer (``python tests/compressors/measure_nq.py tune``)::

    λ          0      0.05   0.1    0.15   0.25   0.5    0.75   1.0
    title 4x   0.987  0.987  0.985  0.987  0.987  0.964  0.937  0.865
    title 8x   0.949  0.949  0.952  0.942  0.931  0.904  0.843  0.734
    bare  4x   0.959  -      -      -      0.939  0.926  0.891  0.827
    bare  8x   0.881  -      -      -      0.873  0.840  0.772  0.708

Embedding the title with each sentence helps clearly; up to λ≈0.15 recall is flat (one case is
worth 0.25 points), beyond it falls: those passages do not repeat each other, and sentences of one
passage share its title in the embedded text, so a large λ pushes the answer's neighbours out.
The default λ=0.1 keeps the redundancy term at no measured cost; retrieval sets with
overlapping chunks are where it earns its place, and near-duplicates are also cut outright by
``max_similarity``.

**The retriever's order** (``position_weight=0.15``). Passages are taken to arrive best first:
a sentence of the passage at place ``i`` has ``0.15 · log2(1 + i)`` taken off its relevance,
unless it holds a number or identifier the question names (``named_exempt``: the record a
key/value question asks for keeps its chance wherever it stands; without it the asked value
survived in 47 of 100 key/value cases at 4x instead of 100). Chosen on the 300 NQ ``val``
questions (top-10 hybrid passages, answer-in-context recall; uncompressed 99.0%;
``ragzip eval --split val -n 300 --compressors "mig:position_weight=W" --ratios 4,8,16``)::

    position_weight   0      0.02   0.05   0.1    0.15   0.2    0.3    0.5
    4x                92.7   94.0   95.3   96.0   97.3   97.3   97.0   97.0
    8x                88.7   89.3   90.7   91.3   92.7   92.0   91.0   90.7
    16x               69.7   70.0   71.0   70.3   69.7   68.3   68.3   68.0

(with ``named_exempt``, the default: 97.3 / 92.3 / 69.7). ``position_weight=0`` ranks every
passage alike, for passages in no meaningful order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Protocol

import numpy as np

from ragzip.cache.feature_cache import FeatureCache, FeatureTable
from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.compressors.order import order_prior
from ragzip.compressors.units import (
    Granularity,
    Ranking,
    Units,
    fill_request,
    passage_relevance,
    split_units,
    titled,
)
from ragzip.core.cancellation import checkpoint
from ragzip.core.errors import CompressionError
from ragzip.core.fields import Checked, Ge, Gt
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Passage
from ragzip.encoders.embedding import Precision, autocast, device_of
from ragzip.encoders.onnx import Backend
from ragzip.retrievers.dense import feature_model

ENCODE_SLICE = 256
"""Texts embedded between two cancellation checkpoints (length sorting works within a slice)."""


class Embedder(Protocol):
    """What MIG needs of a sentence embedder (a ``SentenceTransformer`` fits)."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any:
        """Embed ``sentences``; called with ``normalize_embeddings=True``, numpy output."""
        ...


def encode_unit_norm(embedder: Embedder, texts: Sequence[str], *, batch_size: int) -> np.ndarray:
    """Unit-norm float32 embeddings ``(len(texts), d)`` of ``texts``.

    Raises:
        CompressionError: The embedder failed or returned one row per text in no 2-D array.
    """
    parts = []
    step = max(batch_size, ENCODE_SLICE)
    for start in range(0, len(texts), step):
        checkpoint()  # a cancelled request stops between slices
        try:
            out = embedder.encode(
                list(texts[start : start + step]),
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        except (RuntimeError, ValueError) as exc:
            msg = f"the embedder failed on {len(texts)} texts: {exc}"
            raise CompressionError(msg) from exc
        parts.append(np.asarray(out, dtype=np.float32))
    vectors = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        msg = f"the embedder returned shape {vectors.shape} for {len(texts)} texts"
        raise CompressionError(msg)
    return vectors


class MIGCompressor(Compressor):
    """Greedy sentence selection by Marginal Information Gain (COMI's coarse stage).

    Args:
        config: λ, title use, near-duplicate cut-off, batch size, device.
        counter: Token counter of the generator's tokenizer.
        embedder: A sentence embedder; defaults to the packaged all-MiniLM-L6-v2
            (:func:`ragzip.weights.load_embedder`).
    """

    name: ClassVar[str] = "mig"

    @dataclass(frozen=True)
    class Config(Checked):
        """Settings of :class:`MIGCompressor`.

        Attributes:
            redundancy_weight: λ, the weight of redundancy against relevance (0 = relevance
                only).
            include_title: Embed ``"title. sentence"`` instead of the bare sentence, so a
                sentence that names its subject only through the page title is still found.
            max_similarity: A sentence whose cosine similarity to an already kept sentence
                reaches this value is never kept (a near-duplicate adds nothing); ``1.0`` or more
                turns the cut-off off.
            granularity: ``"sentence"`` or ``"word"`` units.
            batch_size: Embedding batch size. Small batches of length-sorted sentences pad
                little; 16 used about 35% less CPU than 64 on 10 NQ passages.
            device: Device of the default embedder (``None`` picks one).
            precision: ``"bfloat16"`` runs the embedder under ``torch.autocast`` (about twice as
                fast on CPUs with bfloat16 instructions; cosine to the float32 embeddings
                > 0.9999); ``"auto"`` does so on such CPUs only; ``"float32"`` never.
            encoder: The default embedder: ``"minilm"`` (all-MiniLM-L6-v2) or ``"static"``
                (token vectors distilled from it, :mod:`ragzip.encoders.static`: no transformer
                pass, so cold compression costs a few milliseconds, at some recall: on the 300
                NQ ``val`` questions 96.0% at 4x and 87.7% at 8x against 97.3% and 91.7%; on
                300 ``test`` questions 95.0% against 98.0% at 4x, cold p50 4.7 against 170 ms
                on one thread, ``benchmarks/results/mig_static_test.md``).
            backend: What runs the default embedder on the CPU: ``"auto"`` (ONNX Runtime int8
                where the CPU has no AMX and no precision is pinned, torch elsewhere; see
                :func:`~ragzip.encoders.onnx.resolve_backend`), ``"torch"``, ``"onnx"`` or
                ``"onnx-int8"``.
            cache_mb: MiB of sentence and query vectors kept by content
                (:class:`~ragzip.cache.feature_cache.FeatureCache`), so text seen before is not
                embedded again; 0 turns the cache off. Ignored when a cache is injected.
            position_weight: The retriever's order as a prior: a unit of the passage at place
                ``i`` (0 for the first) has its relevance lowered by ``position_weight ·
                log2(1 + i)``; 0 ranks every passage alike.
            named_exempt: A unit holding a number or identifier the question names (the record
                it asks for by its key) loses nothing for its place.
        """

        redundancy_weight: Annotated[float, Ge(0)] = 0.1
        include_title: bool = True
        max_similarity: Annotated[float, Gt(0)] = 0.95
        granularity: Granularity = "sentence"
        batch_size: Annotated[int, Ge(1)] = 16
        device: str | None = None
        precision: Precision = "auto"
        encoder: Literal["minilm", "static"] = "minilm"
        backend: Backend = "auto"
        cache_mb: Annotated[int, Ge(0)] = 64
        position_weight: Annotated[float, Ge(0)] = 0.15
        named_exempt: bool = True

    def __init__(
        self,
        config: Config | None = None,
        *,
        counter: TokenCounter,
        embedder: Embedder | None = None,
        features: FeatureCache | None = None,
    ) -> None:
        super().__init__(counter=counter)
        self.config = config or MIGCompressor.Config()
        if embedder is None and self.config.encoder == "static":
            from ragzip.encoders.static import load_static_embedder

            embedder = load_static_embedder()
        elif embedder is None:
            from ragzip.weights import load_embedder

            embedder = load_embedder(self.config.device, self.config.backend, self.config.precision)
        self.embedder = embedder
        self.features = features or FeatureCache(self.config.cache_mb * 2**20)
        self._model_key = feature_model(embedder, self.config.precision)
        self._last_split: tuple[tuple[str, ...], Units] | None = None

    @property
    def feature_model(self) -> str:
        """The namespace of this compressor's vectors in a :class:`FeatureCache`."""
        return self._model_key

    def cached_share(self, request: CompressionRequest) -> float:
        """The share of the vectors ``request`` needs that are already cached (what ``auto``
        reads to predict this compressor's cost)."""
        texts = self._unit_texts(request.passages)
        return self.features.found_share(self._model_key, [request.query, *texts])

    def unit_keys(self, passage: Passage) -> list[bytes]:
        """The content addresses of the vectors of ``passage``'s units (as :meth:`precompute`
        stores them)."""
        return [FeatureCache.key(self._model_key, t) for t in self._unit_texts([passage])]

    def _unit_texts(self, passages: Sequence[Passage]) -> list[str]:
        return self._embedded_texts(self._split(passages), passages)

    def _split(self, passages: Sequence[Passage]) -> Units:
        texts = tuple(p.text for p in passages)
        last = self._last_split  # one tuple, read once: safe beside other threads
        if last is not None and last[0] == texts:  # ``auto`` asked about these passages first
            return last[1]
        units = split_units(list(texts), self.counter, granularity=self.config.granularity)
        self._last_split = (texts, units)
        return units

    def _embedded_texts(self, units: Units, passages: Sequence[Passage]) -> list[str]:
        """What is embedded for each unit: its text, after its passage's title if configured."""
        return [self._embed_text(u.text, passages[u.passage].title) for u in units.items]

    def precompute(self, passages: Sequence[Passage], *, batch: int = 512) -> FeatureTable:
        """The vectors of every unit ``passages`` split into, as ``_compress`` would embed them
        (no question needed): what ``ragzip index`` stores so requests over indexed chunks only
        embed their question. Units are split per passage, as in a request."""
        texts = [t for passage in passages for t in self._unit_texts([passage])]
        unique = list(dict.fromkeys(texts))
        if not unique:
            return FeatureTable.from_texts(self._model_key, [], np.zeros((0, 0), np.float32))
        rows = [self._encode(unique[i : i + batch]) for i in range(0, len(unique), batch)]
        return FeatureTable.from_texts(self._model_key, unique, np.concatenate(rows))

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        if request.budget_tokens >= request.original_tokens:  # nothing to compress: keep it all
            return CompressionOutput(spans=[[(0, len(p.text))] for p in request.passages])
        t0 = time.perf_counter()
        units = self._split(request.passages)
        t_split = time.perf_counter()
        if not len(units) or request.sent_limit <= 0:
            return CompressionOutput(
                spans=[[] for _ in request.passages], timings={"split": t_split - t0}
            )
        vectors, hits = self._vectors(request, units)
        t_embed = time.perf_counter()
        cap = request.budget_tokens + request.framing_tokens  # kept passages pay their layout
        order = self.rank(
            vectors[0], vectors[1:], units, cap, prior=self.prior(request.query, units)
        )
        selection = fill_request(units, order, request, self.counter)
        t_select = time.perf_counter()
        return CompressionOutput(
            spans=selection.spans,
            timings={
                "split": t_split - t0,
                "embed": t_embed - t_split,
                "select": t_select - t_embed,
                "cache_hits": float(hits),
                "cache_misses": float(len(units) + 1 - hits),
            },
            relevance=passage_relevance(
                Ranking(units, vectors[1:] @ vectors[0], ()), len(request.passages)
            ),
        )

    def _vectors(self, request: CompressionRequest, units: Units) -> tuple[np.ndarray, int]:
        """The question's vector, then each unit's, and how many came from the cache."""
        texts = self._embedded_texts(units, request.passages)
        return self.features.vectors(self._model_key, [request.query, *texts], self._encode)

    def ranking(self, request: CompressionRequest, budget_tokens: int) -> Ranking:
        """The units of ``request`` in MIG order for ``budget_tokens``, scored by their cosine
        to the question; what ``cascade`` selects from."""
        units = self._split(request.passages)
        if not len(units):
            return Ranking(units, np.zeros(0, dtype=np.float32), ())
        vectors, _ = self._vectors(request, units)
        prior = self.prior(request.query, units)
        order = self.rank(vectors[0], vectors[1:], units, budget_tokens, prior=prior)
        return Ranking(units, vectors[1:] @ vectors[0], tuple(order))

    def prior(self, query: str, units: Units) -> np.ndarray | None:
        """What each unit's place adds to its relevance (:func:`order_prior` with
        ``position_weight`` and ``named_exempt``); ``None`` when nothing."""
        cfg = self.config
        return order_prior(query, units, cfg.position_weight, exempt_named=cfg.named_exempt)

    def rank(
        self,
        query: np.ndarray,
        vectors: np.ndarray,
        units: Units,
        budget_tokens: int,
        *,
        prior: np.ndarray | None = None,
    ) -> list[int]:
        """Greedy MIG order of the units that fit ``budget_tokens`` (by their own costs).

        Args:
            query: Unit-norm query embedding ``(d,)``.
            vectors: Unit-norm unit embeddings ``(n, d)``, in the order of ``units``.
            units: The units (their token costs bound the selection).
            budget_tokens: Tokens to fill.
            prior: Added to each unit's relevance (:meth:`prior`); none when ``None``.

        Returns:
            Unit indices in the order they were chosen (best first).
        """
        lam = float(self.config.redundancy_weight)
        relevance = vectors @ query if prior is None else vectors @ query + prior
        # max cosine similarity to a chosen unit, clipped at 0 (dissimilar is not redundant)
        redundancy = np.zeros(len(units), dtype=np.float32)
        costs = np.array([u.tokens for u in units.items])
        open_ = np.ones(len(units), dtype=bool)
        left = budget_tokens
        order: list[int] = []
        while True:
            open_ &= costs <= left
            if not open_.any():
                break
            gain = np.where(open_, relevance - lam * redundancy, -np.inf)
            best = int(np.argmax(gain))
            order.append(best)
            open_[best] = False
            left -= int(costs[best])
            redundancy = np.maximum(redundancy, vectors @ vectors[best])
            open_ &= redundancy < self.config.max_similarity
        return order

    def _embed_text(self, text: str, title: str) -> str:
        return titled(title, text) if self.config.include_title else text

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        with autocast(device_of(self.embedder), self.config.precision):
            return encode_unit_norm(self.embedder, texts, batch_size=self.config.batch_size)
