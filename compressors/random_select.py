"""A seeded random-sentence baseline."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.compressors.units import Granularity, fill_request, split_units
from ragzip.core.fields import Checked
from ragzip.core.tokenization import TokenCounter


class RandomCompressor(Compressor):
    """Keep randomly chosen sentences up to the budget, in their original order.

    The sentences of all passages are shuffled with a private ``random.Random(seed)`` and kept
    greedily while they fit (see :func:`ragzip.compressors.units.greedy_fill`). The same seed and
    input always give the same output. It is the floor any selection method must clear.

    Args:
        config: Seed and unit granularity.
        counter: Token counter of the generator's tokenizer.
    """

    name: ClassVar[str] = "random"

    @dataclass(frozen=True)
    class Config(Checked):
        """Settings of :class:`RandomCompressor`.

        Attributes:
            seed: Seed of the shuffle.
            granularity: ``"sentence"`` or ``"word"`` units.
        """

        seed: int = 0
        granularity: Granularity = "sentence"

    def __init__(self, config: Config | None = None, *, counter: TokenCounter) -> None:
        super().__init__(counter=counter)
        self.config = config or RandomCompressor.Config()

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        units = split_units(
            [p.text for p in request.passages], self.counter, granularity=self.config.granularity
        )
        order = list(range(len(units)))
        random.Random(self.config.seed).shuffle(order)
        selection = fill_request(units, order, request, self.counter)
        return CompressionOutput(spans=selection.spans)
