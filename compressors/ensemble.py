"""``ensemble``: whole sentences ranked by the sentence classifier and MiniLM together, with the
retriever's order as a prior.

The two sentence-level scorers err differently. The trained classifier (``sentence``) reads a
sentence in its passage and knows what answers look like, but only reads the sentences sharing
words with the question (its prefilter) and judges each context on its own scale; MiniLM's cosine
(``mig``) sees every sentence but only topical closeness. Each sentence's score here is

    w · z(classifier probability) + (1 − w) · z(cosine) − p · log2(1 + its passage's position)

with ``z`` the standardisation over the request's sentences (so neither scale dominates),
``w = classifier_weight`` and ``p = position_weight``: passages are taken to arrive best first, as
a retriever returns them, and a sentence of a later passage needs a better score to be kept (the
reranking LongLLMLingua and Provence get from the retriever's order). The penalty grows with the
logarithm of the position, so that among many passages in no useful order (75 key/value records)
a sentence that stands out is still kept wherever it stands. Sentences are then kept
best first, exactly within the budget, as ``sentence`` keeps them.

The weights were chosen on 150 NQ ``val`` questions (top-10 hybrid passages, SmolLM2 tokenizer,
answer-in-context recall; uncompressed 98.7%). ``ragzip eval --split val -n 150 --ratios
4,8,16,32``::

    classifier_weight  position prior            4x     8x     16x    32x
    0.5                0.5 · log2(1 + place)     98.7   94.0   74.0   42.7   <- default
    0.5                0.2 · place               98.0   93.3   74.7   41.3
    0.4                0.2 · place               98.0   92.0   77.3   42.0
    0.5                0.1 · place               97.3   92.7   74.0   40.7
    (sentence alone)                             94.0   88.0   62.0   -

To see what each part brings, the same questions' scores fused after one pass of each
scorer (whole sentences kept best first; 4x, 8x)::

    MiniLM alone                          92.0   89.3
    classifier alone, every sentence      92.7   85.3
    both, no position prior               96.7   88.7
    both, position prior 0.2 · place      98.0   92.0
    both, position prior 0.5 · log2(1+p)  98.7   93.3

Both scorers together are worth 4-5 points at 4x, the position prior 1-3 more. A prior linear in the
place kept the asked value of only 13 of 30 key/value cases (75 records, the asked one anywhere) at
4x; the logarithmic one, with sentences holding an identifier the question names ranked first
(``named_first``), keeps it in all 100 at 2x to 16x. The cost is both passes (the classifier reads
70% of the sentences): for 8x and beyond, use it as ``cascade``'s coarse stage
(``cascade:coarse=ensemble``), which prunes words inside the sentences it keeps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ragzip.cache.feature_cache import FeatureCache
from ragzip.compressor import (
    REMEMBERED_REQUESTS,
    CompressionOutput,
    CompressionRequest,
    Compressor,
)
from ragzip.compressors.mig import MIGCompressor
from ragzip.compressors.order import named_units
from ragzip.compressors.sentence import SentenceCompressor
from ragzip.compressors.units import Ranking, fill_request, passage_relevance, place_penalty
from ragzip.core.errors import ConfigError
from ragzip.core.fields import Checked, Count, NonNegative, Share
from ragzip.core.tokenization import TokenCounter


def standardised(values: np.ndarray) -> np.ndarray:
    """``values`` minus their mean over their standard deviation (zeros when all are equal)."""
    x = np.asarray(values, dtype=np.float64)
    spread = float(x.std()) if len(x) else 0.0
    return (x - x.mean()) / spread if spread > 0 else np.zeros_like(x)


class EnsembleCompressor(Compressor):
    """Whole sentences by the sentence classifier's and MiniLM's scores fused, passages' order
    as a prior.

    Args:
        config: The fusion's weights.
        counter: Token counter of the generator's tokenizer.
        sentence: A ready :class:`SentenceCompressor` (default: the shipped classifier).
        mig: A ready :class:`MIGCompressor` (default: the shipped MiniLM); it must split
            sentences as ``sentence`` does (its default granularity).
    """

    name: ClassVar[str] = "ensemble"

    @dataclass(frozen=True)
    class Config(Checked):
        """Settings of :class:`EnsembleCompressor`.

        Attributes:
            classifier_weight: Weight of the classifier's standardised probability; MiniLM's
                standardised cosine gets the rest.
            position_weight: Standard deviations a sentence loses per doubling of its passage's
                place (``log2(1 + position)``, 0 for the first passage; 0: no prior).
            named_first: Sentences holding a number or identifier the question names (the
                record asked for by its key) rank above all others, as ``token`` keeps them.
            cache_size: Requests whose sentence probabilities the classifier remembers
                (a context seen again, e.g. at several ratios, is scored once).
        """

        classifier_weight: Share = 0.5
        position_weight: NonNegative = 0.5
        named_first: bool = True
        cache_size: Count = REMEMBERED_REQUESTS

    def __init__(
        self,
        config: Config | None = None,
        *,
        counter: TokenCounter,
        sentence: SentenceCompressor | None = None,
        mig: MIGCompressor | None = None,
    ) -> None:
        super().__init__(counter=counter)
        self.config = config or EnsembleCompressor.Config()
        # the weights above were chosen with the classifier reading 70% of the sentences, those
        # sharing the most words with the question; its static shortlist is not measured here
        options = SentenceCompressor.Config(
            cache_size=self.config.cache_size, shortlist="words", prefilter=0.7
        )
        self.sentence = sentence or SentenceCompressor(options, counter=counter)
        self.mig = mig or MIGCompressor(counter=counter)
        for stage in (self.sentence, self.mig):
            if stage.counter is not counter:
                msg = f"the {stage.name} scorer counts tokens with another counter"
                raise ConfigError(msg)

    @property
    def features(self) -> FeatureCache:
        """MiniLM's vector cache (where ``ragzip index`` vectors land)."""
        return self.mig.features

    def scores(self, request: CompressionRequest) -> tuple[Ranking, np.ndarray]:
        """Every sentence of ``request`` with its fused score, best first, and the fused score
        of its content alone (without the position prior: what passages are reranked by)."""
        by_classifier = self.sentence.ranking(request, request.sent_limit)
        by_minilm = self.mig.ranking(request, request.sent_limit)
        units = by_classifier.units
        if [u.span for u in units.items] != [u.span for u in by_minilm.units.items]:
            msg = "the mig scorer splits sentences unlike the sentence classifier"
            raise ConfigError(msg)
        w = float(self.config.classifier_weight)
        probs = np.clip(np.asarray(by_classifier.scores, dtype=np.float64), 0.0, None)
        content = w * standardised(probs) + (1 - w) * standardised(by_minilm.scores)
        penalty = place_penalty([u.passage for u in units.items], self.config.position_weight)
        fused = content - penalty
        asked = named_units(request.query, units) if self.config.named_first else None
        if asked is not None and len(fused):
            fused = fused + asked * (float(np.ptp(fused)) + 1.0)  # above every other sentence
        order = tuple(sorted(range(len(units)), key=lambda i: (-float(fused[i]), i)))
        low, high = (float(fused.min()), float(fused.max())) if len(fused) else (0.0, 0.0)
        scaled = (fused - low) / (high - low) if high > low else np.ones_like(fused)
        return Ranking(units, scaled.astype(np.float32), order), content

    def ranking(self, request: CompressionRequest, budget_tokens: int) -> Ranking:
        """Every sentence, best first, its fused score scaled to [0, 1] (best = 1); what
        ``cascade`` selects from. ``budget_tokens`` is not needed here."""
        del budget_tokens
        return self.scores(request)[0]

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        t0 = time.perf_counter()
        if request.sent_limit <= 0:  # nothing can be sent: no need to run either scorer
            return CompressionOutput(spans=[[] for _ in request.passages])
        ranking, content = self.scores(request)
        if not len(ranking.units):
            return CompressionOutput(spans=[[] for _ in request.passages])
        t_score = time.perf_counter()
        fill = fill_request(ranking.units, ranking.order, request, self.counter)
        relevance = Ranking(ranking.units, content.astype(np.float32), ranking.order)
        return CompressionOutput(
            spans=fill.spans,
            timings={"score": t_score - t0, "select": time.perf_counter() - t_score},
            relevance=passage_relevance(relevance, len(request.passages)),
        )
