"""What profiling measures and predicts: generation and compression samples, fitted costs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragzip.profiling.fit import LinearModel

if TYPE_CHECKING:
    pass


# -- measurements and the profile -------------------------------------------------------------


@dataclass(frozen=True)
class GenerationSample:
    """Median timings of the generator at one prompt length.

    Attributes:
        context_tokens: Context tokens handed to the prompt.
        prompt_tokens: Tokens of the whole prompt (template and question included).
        ttft_s: Median seconds to the first token.
        decode_s_per_token: Median seconds per generated token after the first (NaN if unknown).
        repeats: Timed runs.
    """

    context_tokens: int
    prompt_tokens: int
    ttft_s: float
    decode_s_per_token: float
    repeats: int


@dataclass(frozen=True)
class CompressionSample:
    """Median compression time of one compressor at one length and ratio."""

    compressor: str
    ratio: float
    context_tokens: int
    compressed_tokens: int
    seconds: float
    repeats: int
    warm_seconds: float | None = None
    """Median time with every feature already cached (``None``: the compressor caches none)."""


@dataclass(frozen=True)
class CompressorCost:
    """The fitted cost of one compressor at one ratio.

    Attributes:
        compressor: Registry name.
        ratio: Requested compression factor.
        cost: ``T_c(n)`` in seconds over context tokens ``n``.
        achieved_ratio: Median measured ``original / compressed`` tokens.
        warm_cost: ``T_c(n)`` when every feature of the request is already cached (passages
            seen before, or vectors from the index); ``None`` when the compressor caches none.
    """

    compressor: str
    ratio: float
    cost: LinearModel
    achieved_ratio: float
    warm_cost: LinearModel | None = None

    def seconds(self, n: Any, cached_share: float = 0.0) -> Any:
        """Predicted seconds for ``n`` context tokens of which ``cached_share`` of the features
        are cached: the cold line, moved toward the warm one in proportion."""
        cold = self.cost(n)
        if self.warm_cost is None or cached_share <= 0.0:
            return cold
        share = min(float(cached_share), 1.0)
        return (1.0 - share) * cold + share * self.warm_cost(n)

    @property
    def key(self) -> str:
        """``"name@ratio"``, the key in a profile."""
        return candidate_key(self.compressor, self.ratio)


def candidate_key(compressor: str, ratio: float) -> str:
    """The key of a (compressor, ratio) pair in a profile: ``"mig@4"``."""
    return f"{compressor}@{float(ratio):g}"


@dataclass(frozen=True)
class Prediction:
    """Predicted seconds with and without compression for one context length.

    Attributes:
        context_tokens: ``n``.
        compressed_tokens: ``n / r`` (rounded down), with ``r`` the measured ratio when it is
            higher than the requested one (soft compressors: the vector count).
        compression_s: ``T_c(n)``.
        baseline_ttft_s: ``TTFT(n)``.
        compressed_ttft_s: ``T_c(n) + TTFT(n / r)``.
        baseline_s: End-to-end without compression (TTFT plus decoding the expected answer).
        compressed_s: End-to-end with compression.
    """

    context_tokens: int
    compressed_tokens: int
    compression_s: float
    baseline_ttft_s: float
    compressed_ttft_s: float
    baseline_s: float
    compressed_s: float

    @property
    def speedup(self) -> float:
        """``baseline_s / compressed_s`` (above 1 means compression helps)."""
        return self.baseline_s / self.compressed_s if self.compressed_s > 0 else math.inf
