"""``cascade``: coarse-to-fine compression for high ratios (after LongLLMLingua's coarse then fine
stages: Jiang et al., 2024, *LongLLMLingua: Accelerating and Enhancing LLMs in Long Context
Scenarios via Prompt Compression*).

Whole sentences stop fitting from about 8x on: at 16x a ten-passage context leaves ~70 tokens,
two or three sentences, and the budget is spent on a sentence's filler words as much as on its
facts. The cascade keeps more sentences and fewer words of each:

1. **Coarse.** A sentence-level compressor (``sentence``'s classifier, or ``mig``) ranks every
   sentence; the best are kept up to an *intermediate* budget, ``expand`` times the final one.
2. **Fine.** The token classifier (``token``) reads only the kept sentences, each passage's kept
   sentences joined, with the question, and scores their words. Words are ranked across all
   passages by their keep-probability plus ``relevance_weight`` times their sentence's coarse
   score (scaled so the best sentence has 1), so the final budget goes to the passages and
   sentences the coarse stage rated highest; the longest prefix of that ranking that fits the
   budget exactly is kept (:func:`~ragzip.compressors.token.selection.select_words`).
   Numbers written over several words and key/value pairs are one unit (kept or dropped whole,
   :func:`~ragzip.compressors.kept_whole.value_units`), formed within a sentence, and identifiers
   and numbers the question names rank first, as in ``token``. Words of the shape the question
   asks for (a date for *when*, a number for *how many*, a name for *who*:
   :mod:`~ragzip.compressors.answer_shape`) add ``answer_weight`` to their rank.

``expand`` 1 is the coarse stage alone. By default it follows the ratio asked for
(:data:`EXPANSION`): 1 up to 2x, 1.5 from 4x on. The defaults were chosen on 150 NQ ``val``
questions (top-10 hybrid passages, answer-in-context recall, SmolLM2 tokenizer; uncompressed
98.7%), ``ragzip eval --split val -n 150``::

    coarse    expand  weight   4x     8x     16x    32x
    mig       1.25    0.5      93.3   88.7   77.3   55.3
    mig       1.5     0        86.7   76.0   70.0   55.3
    mig       1.5     0.5      94.7   87.3   76.0   56.7
    mig       1.5     1        95.3   88.0   82.0   58.7   <- default
    mig       1.5     2        95.3   88.7   80.0   58.0
    mig       2       0.5      94.0   86.0   73.3   56.7
    mig       3       0.5      94.0   86.7   66.7   52.0
    sentence  2       0.5      94.7   89.3   74.0   53.3
    sentence  3       0.5      94.7   88.7   75.3   50.7
    (alone)   mig              92.0   88.7   69.3   35.3
    (alone)   sentence         94.0   86.0   62.7   38.0

With ``ensemble`` (:mod:`ragzip.compressors.ensemble`) as the coarse stage, a later run on the
same questions (where the default above measured 94.7, 89.3, 80.7, 56.7)::

    ensemble  1.25    1        98.0   95.3   86.0   64.7
    ensemble  1.5     1        97.3   94.7   84.0   63.3
    ensemble  1.5     2        98.7   95.3   86.0   63.3
    ensemble  2       1        98.0   94.0   84.7   63.3

The answer-shape bonus (``answer_weight``; 0 in every row above), on the same questions::

    coarse    expand  weight  answer   4x     8x     16x    32x
    mig       1.5     1       0        94.7   89.3   80.7   56.7
    mig       1.5     1       0.5      94.0   90.7   84.0   66.0   <- default
    ensemble  1.5     1       0.5      97.3   96.0   90.0   70.0

(``answer_weight=1`` kept the same at 8x to 32x.)

A small expansion wins: the fine stage prunes best when it only has to drop a third of what it
reads, and the sentence score must weigh as much as the word's own (weight 0 loses 12 points at
16x). ``mig`` is the default coarse stage: as good as the sentence classifier here at less than
half its CPU. ``coarse=ensemble`` keeps 3-6 points more from 8x on, at about twice the CPU
(both scorers' passes): the choice where recall matters more than the proxy's cores.
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, Protocol

import numpy as np

from ragzip.cache.feature_cache import FeatureCache
from ragzip.compressor import (
    REMEMBERED_REQUESTS,
    CompressionOutput,
    CompressionRequest,
    Compressor,
)
from ragzip.compressors.answer_shape import expected_shape, shape_mask
from ragzip.compressors.kept_whole import value_units
from ragzip.compressors.token import TokenCompressor
from ragzip.compressors.token.selection import select_words
from ragzip.compressors.token.words import unit_maximum
from ragzip.compressors.units import (
    Ranking,
    Units,
    fill_request,
    passage_relevance,
    split_words,
)
from ragzip.core.errors import ConfigError
from ragzip.core.fields import Checked, Ge
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Span

Coarse = Literal["sentence", "mig", "ensemble"]

EXPANSION: tuple[tuple[float, float], ...] = ((2.0, 1.0), (4.0, 1.5))
"""``(ratio, expand)``: the intermediate budget as a multiple of the final one, by the ratio
asked for (interpolated in log-ratio between rows, the end rows beyond them)."""


class Ranker(Protocol):
    """A sentence-level compressor that can rank a request's sentences (``sentence``, ``mig``,
    ``ensemble``)."""

    def ranking(self, request: CompressionRequest, budget_tokens: int) -> Ranking:
        """The request's sentences, scored and in the order they would be kept."""
        ...


def expansion(ratio: float, table: tuple[tuple[float, float], ...] = EXPANSION) -> float:
    """The intermediate budget's multiple of the final one for compression ``ratio``."""
    ratios = [r for r, _ in table]
    if ratio <= ratios[0]:
        return table[0][1]
    if ratio >= ratios[-1]:
        return table[-1][1]
    i = bisect.bisect_right(ratios, ratio)
    (r0, e0), (r1, e1) = table[i - 1], table[i]
    t = (math.log(ratio) - math.log(r0)) / (math.log(r1) - math.log(r0))
    return e0 + t * (e1 - e0)


class CascadeCompressor(Compressor):
    """Sentences by a sentence-level compressor, then words inside them by the token classifier.

    Args:
        config: Coarse stage, expansion and relevance weight.
        counter: Token counter of the generator's tokenizer.
        coarse: A ready sentence-level compressor with a ``ranking`` method (default: the
            registered one ``config.coarse`` names).
        fine: A ready :class:`TokenCompressor` (default: the shipped classifier).
    """

    name: ClassVar[str] = "cascade"

    @dataclass(frozen=True)
    class Config(Checked):
        """Settings of :class:`CascadeCompressor`.

        Attributes:
            coarse: ``"mig"`` (MiniLM relevance), ``"sentence"`` (the trained sentence
                classifier, about twice the CPU) or ``"ensemble"`` (both, fused, with the
                passages' order as a prior; see :mod:`ragzip.compressors.ensemble`).
            expand: The intermediate budget as a multiple of the final one (1 keeps whole
                sentences only); ``None`` follows the ratio (:data:`EXPANSION`).
            relevance_weight: How much a sentence's coarse score (best sentence = 1) adds to
                its words' keep-probabilities when they compete for the final budget.
            answer_weight: What a word of the shape the question asks for (a date for *when*,
                a number for *how many*, a name for *who*; see
                :mod:`~ragzip.compressors.answer_shape`) adds to its keep-probability.
            cache_size: Requests whose sentence probabilities the ``sentence`` stage remembers
                (a context seen again, e.g. at several ratios, is scored once).
        """

        coarse: Coarse = "mig"
        expand: Annotated[float, Ge(1)] | None = None
        relevance_weight: Annotated[float, Ge(0)] = 1.0
        answer_weight: Annotated[float, Ge(0)] = 0.5
        cache_size: Annotated[int, Ge(0)] = REMEMBERED_REQUESTS

    def __init__(
        self,
        config: Config | None = None,
        *,
        counter: TokenCounter,
        coarse: Compressor | None = None,
        fine: TokenCompressor | None = None,
    ) -> None:
        super().__init__(counter=counter)
        self.config = config or CascadeCompressor.Config()
        from ragzip.registry import create_compressor

        if coarse is None:
            cached = self.config.coarse in ("sentence", "ensemble")
            options = {"cache_size": self.config.cache_size} if cached else {}
            coarse = create_compressor(self.config.coarse, counter=counter, config=options)
        if not callable(getattr(coarse, "ranking", None)):
            msg = f"the coarse stage ({type(coarse).__name__}) cannot rank sentences"
            raise ConfigError(msg)
        self.coarse = coarse
        self.fine = fine or TokenCompressor(counter=counter)
        for stage in (self.coarse, self.fine):
            if stage.counter is not counter:
                msg = f"the {stage.name} stage counts tokens with another counter"
                raise ConfigError(msg)

    @property
    def features(self) -> FeatureCache | None:
        """The coarse stage's vector cache (``mig``'s), where ``ragzip index`` vectors land."""
        cache = getattr(self.coarse, "features", None)
        return cache if isinstance(cache, FeatureCache) else None

    def expand_for(self, request: CompressionRequest) -> float:
        """The expansion used for ``request``: the configured one, or the ratio's."""
        if self.config.expand is not None:
            return float(self.config.expand)
        sent = request.original_tokens + request.framing_tokens
        ratio = sent / max(1, request.sent_limit)
        return expansion(ratio)

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        t0 = time.perf_counter()
        budget = request.budget_tokens
        empty = CompressionOutput(spans=[[] for _ in request.passages])
        sendable = request.sent_limit  # the layout of the kept passages included
        if sendable <= 0:
            return empty
        whole = request.original_tokens + request.framing_tokens
        mid = min(whole, max(sendable, math.ceil(self.expand_for(request) * sendable)))
        ranker: Ranker = self.coarse  # type: ignore[assignment]  # checked in __init__
        if mid <= sendable:  # the coarse stage alone, exactly within the budget
            ranking = ranker.ranking(request, sendable)
            fill = fill_request(ranking.units, ranking.order, request, self.counter)
            return CompressionOutput(
                spans=fill.spans,
                timings={"rank": time.perf_counter() - t0},
                relevance=passage_relevance(ranking, len(request.passages)),
            )
        ranking = ranker.ranking(request, whole)
        t_rank = time.perf_counter()
        # the best sentences until their text reaches the intermediate budget: the one that
        # crosses it is read too (the fine stage makes the budget exact), so a long answer
        # sentence is never left out for its length
        kept: list[int] = []
        text, touched = 0, set[int]()
        for idx in ranking.order:
            framing = request.framing
            if (framing.estimate(text, sorted(touched)) if framing else text) >= mid:
                break
            kept.append(idx)
            text += ranking.units[idx].tokens
            touched.add(ranking.units[idx].passage)
        spans = self.prune(request, ranking, tuple(kept), budget)
        timings = {"rank": t_rank - t0, "prune": time.perf_counter() - t_rank}
        relevance = passage_relevance(ranking, len(request.passages))
        return CompressionOutput(spans=spans, timings=timings, relevance=relevance)

    def prune(
        self, request: CompressionRequest, ranking: Ranking, kept: tuple[int, ...], budget: int
    ) -> list[list[Span]]:
        """Words of the ``kept`` sentences the token classifier ranks highest (their sentence's
        relevance added), exactly within ``budget``."""
        units: Units = ranking.units
        texts = [p.text for p in request.passages]
        n = len(texts)
        members: list[list[int]] = [[] for _ in range(n)]
        for idx in sorted(kept, key=lambda i: (units[i].passage, units[i].start)):
            members[units[idx].passage].append(idx)
        scores = np.clip(np.asarray(ranking.scores, dtype=np.float64), 0.0, None)
        top = float(scores[list(kept)].max()) if kept else 0.0
        relevance = scores / top if top > 0 else np.zeros_like(scores)
        # the classifier reads each passage's kept sentences joined by a space
        read = [i for i in range(n) if members[i]]
        if not read:
            return [[] for _ in range(n)]
        joined: list[str] = []
        joined_words: list[list[Span]] = []
        origin: list[list[Span]] = []  # each read word's span in the passage
        word_counts: list[list[int]] = []  # words of each kept sentence, in order (contiguous)
        for i in read:
            parts: list[str] = []
            jw: list[Span] = []
            ow: list[Span] = []
            counts: list[int] = []
            at = 0
            for idx in members[i]:
                unit = units[idx]
                found = split_words(unit.text)
                jw.extend((at + s, at + e) for s, e in found)
                ow.extend((unit.start + s, unit.start + e) for s, e in found)
                counts.append(len(found))
                parts.append(unit.text)
                at += len(unit.text) + 1
            joined.append(" ".join(parts))
            joined_words.append(jw)
            origin.append(ow)
            word_counts.append(counts)
        probs = self.fine.word_probabilities(request.query, joined, joined_words)
        word_units: list[list[Span]] = [[] for _ in range(n)]
        unit_probs: list[np.ndarray] = [np.zeros(0) for _ in range(n)]
        boosts: list[np.ndarray] = [np.zeros(0) for _ in range(n)]
        for r, i in enumerate(read):
            spans, unit_p, boost = [], [], []
            first = 0
            for idx, count in zip(members[i], word_counts[r], strict=True):
                # value units within one sentence, never across a gap
                words = origin[r][first : first + count]
                grouped = value_units(texts[i], words)
                unit_p.append(unit_maximum(words, grouped, probs[r][first : first + count]))
                first += count
                spans.extend(grouped)
                boost.extend([relevance[idx]] * len(grouped))
            word_units[i] = spans
            unit_probs[i] = np.concatenate(unit_p) if unit_p else np.zeros(0)
            boosts[i] = np.asarray(boost, dtype=np.float64)
        priority = self.fine.priority(request.query, texts, word_units, unit_probs)
        weight = float(self.config.relevance_weight)
        ranked = [p + weight * b for p, b in zip(priority, boosts, strict=True)]
        if self.config.answer_weight and (shape := expected_shape(request.query)):
            bonus = float(self.config.answer_weight)
            for i in read:
                mask = shape_mask(request.query, texts[i], word_units[i], shape)
                ranked[i] = ranked[i] + bonus * mask
        return select_words(
            texts,
            word_units,
            ranked,
            budget,
            self.counter,
            drop_separators=self.fine.config.drop_separators,
            framing=request.framing,
            sent_limit=request.sent_limit,
        )
