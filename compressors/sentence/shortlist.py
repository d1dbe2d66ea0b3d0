"""Which sentences the classifier reads: a cheap first look that spares it the unlikely ones.

The classifier reads each sentence with the question and its neighbours, so its cost grows with
the sentences it reads. A shortlist picks the share of them worth reading:

* ``static`` (the default) ranks ``"title. sentence"`` by its cosine to the question under
  static token vectors distilled from MiniLM (:mod:`ragzip.encoders.static`: a vector is a mean
  of token vectors, about a microsecond per sentence), plus the retriever's order as ``mig``
  weighs it (:func:`~ragzip.compressors.order.order_prior`, ``0.15 · log2(1 + place)``);
* ``words`` ranks by the content words a sentence shares with the question, earlier first.

Sentences left out rank below every sentence read. Chosen on the 300 NQ ``val`` questions
(top-10 hybrid passages, answer-in-context recall; cost in float32 MiniLM passes over the same
passages, one thread, AMD EPYC with AVX512-BF16; ``benchmarks/compress_latency.py --split val
--questions 300 --threads 1 --modes cold``, ``benchmarks/results/sentence_shortlist_val*.md``)::

    shortlist  share  4x     8x     passes (4x)
    (all)      1.0    98.0   -      0.84
    words      0.7    98.7   93.3   0.64     (the former default)
    static     0.2    96.7   -      0.19
    static     0.3    97.3   94.0   0.30     <- default
    static     0.4    97.7   -      0.37
    static     0.5    98.0   94.0   0.43
    static     0.7    98.3   -      0.57

The rule: the cheapest share that reads at most 0.35 passes and keeps the mean recall over 4x
and 8x within half a point of the former default's: 95.65 against 96.0 (4x alone loses 1.3
points, four questions; 8x gains 0.7), at half the cost. Within a point of the former default
at 4x alone, nothing measured reads less than 0.37 passes. ``shortlist=words;prefilter=0.7`` is
the former behaviour. On the 500 ``test`` questions, measured once after the choice: 96.8% at 4x
for both, 93.8% against 94.6% at 8x, 0.27 against 0.65 passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ragzip.compressors.order import order_prior
from ragzip.compressors.units import Units, titled
from ragzip.core.text import words
from ragzip.encoders.static import StaticEmbedder

Shortlist = Literal["static", "words"]

PLACE_WEIGHT = 0.15
"""Weight of the retriever's order in the static shortlist (``mig``'s ``position_weight``)."""

_FUNCTION_WORDS = (
    "a an and are as at be by did do does for from had has have how in is it its of on or "
    "the that this to was were what when where which who whom whose why will with"
)
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())


def _top_share(scores: Sequence[float], share: float) -> np.ndarray:
    """The best ``share`` of the scores (at least one; ties: earlier first) as a mask."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: (-float(scores[i]), i))
    keep = np.zeros(n, dtype=bool)
    keep[order[: max(1, math.ceil(share * n))]] = True
    return keep


def lexical_shortlist(query: str, units: Units, share: float) -> np.ndarray:
    """Which units the classifier reads: the ``share`` of them sharing the most content words
    with ``query`` (ties: earlier first); all of them for a share of 1."""
    n = len(units)
    if share >= 1.0 or n == 0:
        return np.ones(n, dtype=bool)
    asked = {w for w in words(query) if w not in FUNCTION_WORDS}
    return _top_share([len(asked & set(words(u.text))) for u in units.items], share)


def static_shortlist(
    query: str,
    units: Units,
    titles: Sequence[str],
    share: float,
    embedder: StaticEmbedder,
) -> np.ndarray:
    """Which units the classifier reads: the ``share`` of them whose ``"title. text"`` is most
    similar to ``query`` under ``embedder``, less ``PLACE_WEIGHT · log2(1 + place)`` of their
    passage (none for a unit naming a value the question asks for); all for a share of 1.

    Args:
        query: The question.
        units: The sentences of the request.
        titles: Each passage's title (``""`` for none), indexed by ``Unit.passage``.
        share: Share of the units to read, in (0, 1].
        embedder: The static embedder.
    """
    n = len(units)
    if share >= 1.0 or n == 0:
        return np.ones(n, dtype=bool)
    texts = [titled(titles[u.passage], u.text) for u in units.items]
    vectors = embedder.encode([query, *texts])
    scores = vectors[1:] @ vectors[0]
    prior = order_prior(query, units, PLACE_WEIGHT)
    if prior is not None:
        scores = scores + prior
    return _top_share(scores.tolist(), share)
