"""The retriever's order as a prior for sentence selection.

Passages are taken to arrive best first, as a retriever returns them: a sentence of the passage
at place ``i`` (0 for the first) loses ``weight · log2(1 + i)`` of its score
(:func:`~ragzip.compressors.units.place_penalty`), unless it holds a number or identifier the
question names — the record a key/value question asks for by its key keeps its chance
wherever it stands (:func:`~ragzip.compressors.kept_whole.named_values`). ``mig`` and
``sentence`` add it to what they rank by.
"""

from __future__ import annotations

import numpy as np

from ragzip.compressors.kept_whole import named_values
from ragzip.compressors.units import Units, place_penalty


def named_units(query: str, units: Units) -> np.ndarray | None:
    """Which units hold a number or identifier ``query`` names; ``None`` when it names none."""
    named = named_values(query)
    if named is None:
        return None
    return np.array([bool(named.search(u.text)) for u in units.items], dtype=bool)


def order_prior(
    query: str, units: Units, weight: float, *, exempt_named: bool = True
) -> np.ndarray | None:
    """What each unit's place adds to its score (``-weight · log2(1 + place)``, 0 for a unit
    naming a value of ``query`` when ``exempt_named``); ``None`` when ``weight`` is 0."""
    if not weight:
        return None
    prior = -place_penalty([u.passage for u in units.items], weight)
    asked = named_units(query, units) if exempt_named else None
    if asked is not None:
        prior = np.where(asked, 0.0, prior)
    return prior.astype(np.float32)
