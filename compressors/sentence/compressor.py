"""The ``sentence`` compressor: keep the sentences the trained classifier finds useful, adaptive
or within a budget; see :mod:`ragzip.compressors.sentence`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np
import torch

from ragzip.compressor import (
    REMEMBERED_REQUESTS,
    CompressionOutput,
    CompressionRequest,
    Compressor,
)
from ragzip.compressors.order import order_prior
from ragzip.compressors.sentence.features import PassageSentences
from ragzip.compressors.sentence.model import Mode
from ragzip.compressors.sentence.scorer import SentenceScorer, load_scorer
from ragzip.compressors.sentence.shortlist import Shortlist, lexical_shortlist, static_shortlist
from ragzip.compressors.units import (
    Ranking,
    Selection,
    Units,
    greedy_fill,
    passage_relevance,
    split_units,
)
from ragzip.core.errors import CompressionError
from ragzip.core.fields import Checked, Ge, Interval
from ragzip.core.framing import Framing
from ragzip.core.tokenization import TokenCounter
from ragzip.encoders.embedding import FixedPrecision, Precision, resolve_precision
from ragzip.encoders.onnx import Backend
from ragzip.encoders.static import StaticEmbedder, load_static_embedder


class SentenceCompressor(Compressor):
    """Keep whole sentences that a trained context-aware classifier finds useful (EXIT).

    Args:
        config: Mode, threshold, batching, device and weights folder.
        counter: Token counter of the generator's tokenizer; budgets are counted in it.
        scorer: A :class:`SentenceScorer`; defaults to the shipped classifier
            (:func:`load_scorer`).
        static: The static embedder of the ``"static"`` shortlist; defaults to the one distilled
            from the shipped MiniLM (:func:`~ragzip.encoders.static.load_static_embedder`).
    """

    name: ClassVar[str] = "sentence"

    @dataclass(frozen=True)
    class Config(Checked):
        """Settings of :class:`SentenceCompressor`.

        Attributes:
            mode: ``"budgeted"`` (most probable sentences until the budget is full; a budget
                covering the whole context keeps it whole) or ``"adaptive"`` (sentences with
                P ≥ threshold: the compressor decides how much to keep and the budget only caps
                it, so ``1x`` lets it choose freely).
            threshold: Probability a sentence needs in adaptive mode; ``None`` uses the
                threshold chosen on the validation split and stored with the weights.
            min_sentences: Adaptive mode keeps at least this many sentences (the most probable)
                when fewer reach the threshold, budget permitting.
            batch_size: Sentences per forward pass.
            precision: ``"auto"`` (bfloat16 where the hardware computes it natively, float32
                elsewhere), ``"float32"`` or ``"bfloat16"`` (autocast; about 2x faster on CPUs
                with native bfloat16, probabilities within a few thousandths).
            device: Device of the default classifier (``None`` picks one).
            backend: What runs the default classifier on the CPU: ``"auto"`` (where the CPU
                has no AMX and no precision is pinned, ONNX Runtime with int8 weights in the
                four frozen MiniLM layers and float32 in the rest,
                :data:`~ragzip.encoders.onnx.AUTO_ONNX_CLASSIFIER`; torch elsewhere; see
                :func:`~ragzip.encoders.onnx.resolve_backend`), ``"torch"``, ``"onnx"``
                (float32) or ``"onnx-int8"`` (int8 weights in every layer).
            weights: Folder of another trained classifier (default: the shipped one).
            prefilter: Share of a request's sentences the classifier reads, those the
                ``shortlist`` ranks first; the others rank below every sentence read. 1.0 reads
                them all.
            shortlist: How the sentences to read are picked
                (:mod:`~ragzip.compressors.sentence.shortlist`): ``"static"`` by their
                similarity to the question under static MiniLM token vectors and their passage's
                place, ``"words"`` by the content words they share with the question.
            cache_size: Requests whose sentence probabilities the scorer remembers (at least;
                the cache is the scorer's, shared by the compressors using it), so a question
                asked again over the same passages, or a context compressed at several budgets
                or in both modes, is scored once. 0 adds no cache.
            position_weight: The retriever's order as a prior: a sentence of the passage at
                place ``i`` (0 for the first) ranks as its probability minus
                ``position_weight · log2(1 + i)``, unless it holds a number or identifier the
                question names (:func:`~ragzip.compressors.order.order_prior`; the adaptive
                threshold still reads the probability); 0 ranks every passage alike.
        """

        mode: Mode = "budgeted"
        threshold: Annotated[float, Interval(ge=0, le=1)] | None = None
        min_sentences: Annotated[int, Ge(0)] = 1
        batch_size: Annotated[int, Ge(1)] = 32
        precision: Precision = "auto"
        device: str | None = None
        backend: Backend = "auto"
        weights: str | None = field(default=None)
        cache_size: Annotated[int, Ge(0)] = REMEMBERED_REQUESTS
        prefilter: Annotated[float, Interval(gt=0, le=1)] = 0.3
        shortlist: Shortlist = "static"
        position_weight: Annotated[float, Ge(0)] = 0.2

    def __init__(
        self,
        config: Config | None = None,
        *,
        counter: TokenCounter,
        scorer: SentenceScorer | None = None,
        static: StaticEmbedder | None = None,
    ) -> None:
        super().__init__(counter=counter)
        self.config = config or SentenceCompressor.Config()
        if static is None and self.config.shortlist == "static" and self.config.prefilter < 1:
            static = load_static_embedder()
        self.static = static
        if scorer is None:
            scorer = load_scorer(
                self.config.weights, self.config.device, self.config.backend, self.config.precision
            )
        self.scorer = scorer
        if self.config.cache_size:
            scorer.reserve_cache(self.config.cache_size)

    @property
    def decides_amount(self) -> bool:
        """In adaptive mode the threshold decides how much to keep; the budget only caps it."""
        return self.config.mode == "adaptive"

    @property
    def allows_empty(self) -> bool:
        """Adaptive mode with ``min_sentences=0`` was asked to keep nothing when no sentence
        reaches the threshold."""
        return self.config.mode == "adaptive" and self.config.min_sentences == 0

    @property
    def precision(self) -> FixedPrecision:
        """The precision the classifier runs in (``"auto"`` resolved for its device)."""
        return resolve_precision(self.config.precision, torch.device(self.scorer.device).type)

    @property
    def threshold(self) -> float:
        """The adaptive-mode threshold in use."""
        if self.config.threshold is not None:
            return float(self.config.threshold)
        return self.scorer.threshold

    def ranking(self, request: CompressionRequest, budget_tokens: int) -> Ranking:
        """Every sentence of ``request`` with its probability, most probable first (ties in
        text order); what ``cascade`` selects from. ``budget_tokens`` is not needed here."""
        del budget_tokens
        units = split_units([p.text for p in request.passages], self.counter)
        if not len(units):
            return Ranking(units, np.zeros(0, dtype=np.float32), ())
        probs = self.score(request.query, request.passages, units)
        order = sorted(range(len(probs)), key=lambda i: (-float(probs[i]), i))
        return Ranking(units, probs, tuple(order))

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        t0 = time.perf_counter()
        units = split_units([p.text for p in request.passages], self.counter)
        t_split = time.perf_counter()
        if not len(units) or request.sent_limit <= 0:
            return CompressionOutput(
                spans=[[] for _ in request.passages], timings={"split": t_split - t0}
            )
        probs = self.score(request.query, request.passages, units)
        t_score = time.perf_counter()
        selection = self.select(
            units,
            probs,
            request.budget_tokens,
            framing=request.framing,
            limit=request.sent_limit,
            prior=order_prior(request.query, units, self.config.position_weight),
        )
        t_select = time.perf_counter()
        return CompressionOutput(
            spans=selection.spans,
            timings={
                "split": t_split - t0,
                "score": t_score - t_split,
                "select": t_select - t_score,
            },
            relevance=passage_relevance(Ranking(units, probs, ()), len(request.passages)),
        )

    def score(self, query: str, passages: Sequence[Any], units: Units) -> np.ndarray:
        """P(useful) of every unit of ``units`` (the sentences of ``passages``), in unit order;
        sentences the prefilter leaves out get -1."""
        read = self.shortlist(query, passages, units)
        grouped: list[list[str]] = [[] for _ in passages]
        for i, u in enumerate(units.items):
            if read[i]:
                grouped[u.passage].append(u.text)
        inputs = [
            PassageSentences(title=getattr(p, "title", "") or "", sentences=tuple(g))
            for p, g in zip(passages, grouped, strict=True)
        ]
        try:
            per_passage = self.scorer.score(
                query, inputs, batch_size=self.config.batch_size, precision=self.precision
            )
        except RuntimeError as exc:
            msg = f"the sentence classifier failed on {len(units)} sentences: {exc}"
            raise CompressionError(msg) from exc
        scored = np.concatenate(per_passage) if per_passage else np.zeros(0, dtype=np.float32)
        probs = np.full(len(units), -1.0, dtype=np.float32)
        if scored.shape == (int(read.sum()),):
            probs[read] = scored
        if scored.shape != (int(read.sum()),) or not np.isfinite(probs).all():
            msg = (
                f"the sentence classifier returned {probs.shape} scores for {len(units)} sentences"
            )
            raise CompressionError(msg)
        return probs

    def shortlist(self, query: str, passages: Sequence[Any], units: Units) -> np.ndarray:
        """Which units of ``units`` the classifier reads (``prefilter`` and ``shortlist``)."""
        share = self.config.prefilter
        if self.config.shortlist == "words" or self.static is None:
            return lexical_shortlist(query, units, share)
        titles = [getattr(p, "title", "") or "" for p in passages]
        return static_shortlist(query, units, titles, share, self.static)

    def select(
        self,
        units: Units,
        probs: np.ndarray,
        budget_tokens: int,
        *,
        framing: Framing | None = None,
        limit: int | None = None,
        prior: np.ndarray | None = None,
    ) -> Selection:
        """The kept sentences, exactly within ``budget_tokens`` (with the layout's ``framing``,
        charged for the passages kept: within ``limit`` for what is sent; see
        :func:`greedy_fill`).

        Sentences are offered to :func:`greedy_fill` most probable first (by probability plus
        ``prior`` when given; ties in text order):
        all of them in budgeted mode, those reaching the threshold in adaptive mode. When the
        adaptive choice leaves fewer than ``min_sentences`` kept (too few reached the threshold,
        or the chosen ones do not fit), the most probable remaining sentences that fit on their
        own are offered too, up to that number.
        """
        key = probs if prior is None else probs + prior
        ranked = sorted(range(len(key)), key=lambda i: (-float(key[i]), i))
        fill: dict[str, Any] = {"framing": framing, "sent_limit": limit}
        if self.config.mode == "budgeted":
            return greedy_fill(units, ranked, budget_tokens, self.counter, **fill)
        chosen = [i for i in ranked if probs[i] >= self.threshold]
        selection = greedy_fill(units, chosen, budget_tokens, self.counter, **fill)
        need = self.config.min_sentences - len(selection.kept)
        if need > 0:
            offered = set(chosen)
            extra = [i for i in ranked if i not in offered and units[i].tokens <= budget_tokens]
            if extra:
                offer = chosen + extra[:need]
                selection = greedy_fill(units, offer, budget_tokens, self.counter, **fill)
        return selection
