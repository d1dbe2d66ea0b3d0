"""``auto``: compress only where it pays, as a :class:`~ragzip.policy.AutoPolicy` decides.

The decision (whether, with which candidate, at what ratio, and why) is part of the result:
:attr:`~ragzip.core.types.CompressionResult.decision`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from ragzip.cache.feature_cache import CachesFeatures
from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.core.errors import ConfigError
from ragzip.core.tokenization import TokenCounter
from ragzip.policy import SHIPPED_QUALITY, AutoPolicy, QualityKey, load_quality
from ragzip.profiling.load import Load
from ragzip.profiling.profile import find_profile


class AutoCompressor(Compressor):
    """Compress with whichever candidate :class:`AutoPolicy` picks, or keep the context whole.

    The caller's budget stays a hard cap: when the policy chooses ratio ``r`` the budget is the
    tighter of ``original / r`` and the caller's; when it skips compression, whole passages are
    kept while they fit the caller's budget (pass ``Budget(ratio=1.0)`` to let the policy decide
    freely). The result's :attr:`~ragzip.core.types.CompressionResult.decision` says whether the
    policy compressed, with which candidate and ratio, its predicted and baseline seconds, and
    why.

    Args:
        config: Paths of the profile and eval report and the quality floor, used when ``policy``
            is not injected.
        counter: Token counter of the generator's tokenizer.
        policy: A ready policy.
        candidates: Registry name → compressor built on the same counter; missing ones are
            created from the registry.
        load: Returns the generator's load now (a proxy's
            :meth:`~ragzip.profiling.load.LoadWatch.snapshot`): once it has seen the generator
            answer, each decision follows the load (compress when the generator is the
            bottleneck, skip when it is idle and compression would only add latency); without
            it, the profile's latency lines decide.
    """

    name: ClassVar[str] = "auto"

    @dataclass(frozen=True)
    class Config:
        """Where the policy's inputs live.

        Attributes:
            profile_path: A profile JSON written by ``ragzip profile``; ``None`` uses this
                machine's profile in the user cache folder, else the shipped portable default
                (with a warning; see :func:`~ragzip.profiling.profile.find_profile`).
            eval_path: An ``eval.json`` of ``ragzip eval`` for quality; ``None`` reads the table
                ragzip ships (:data:`SHIPPED_QUALITY`: answer-in-context recall of each
                profiled candidate on 300 NQ-open validation questions, top-10 hybrid
                passages). A missing file means unknown quality, which is an error only with
                ``min_quality`` above 0.
            min_quality: Answer-in-context recall a candidate needs (uncompressed context keeps
                0.99 on the shipped table's questions); 0 lets every candidate compete on speed
                alone.
            generator: Which generator's profile to use when the file holds several.
        """

        profile_path: str | None = None
        eval_path: str | None = None
        min_quality: float = 0.9
        generator: str | None = None

    def __init__(
        self,
        config: Config | None = None,
        *,
        counter: TokenCounter,
        policy: AutoPolicy | None = None,
        candidates: Mapping[str, Compressor] | None = None,
        load: Callable[[], Load] | None = None,
    ) -> None:
        super().__init__(counter=counter)
        self.config = config or AutoCompressor.Config()
        if policy is None:
            profile = find_profile(self.config.profile_path, generator=self.config.generator)
            quality: dict[QualityKey, float] = {}
            eval_path = self.config.eval_path or str(SHIPPED_QUALITY)
            if Path(eval_path).is_file() or self.config.min_quality:
                quality = load_quality(eval_path)
            policy = AutoPolicy(profile, quality, self.config.min_quality)
        self.policy = policy
        from ragzip.compressors.identity import IdentityCompressor
        from ragzip.registry import create_compressor

        built = dict(candidates or {})
        for cost in policy.profile.compressors:
            if cost.compressor not in built:
                built[cost.compressor] = create_compressor(cost.compressor, counter=counter)
        for name, comp in built.items():
            if comp.counter is not counter:
                msg = f"candidate {name!r} counts tokens with another counter than the auto one"
                raise ConfigError(msg)
        self.candidates: dict[str, Compressor] = built
        self._identity = IdentityCompressor(counter=counter)
        self.load = load

    @property
    def decides_amount(self) -> bool:
        """``auto`` decides whether and how much to compress; the budget only caps it."""
        return True

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        shares = {
            name: comp.cached_share(request)
            for name, comp in self.candidates.items()
            if isinstance(comp, CachesFeatures)
        }
        load = self.load() if self.load is not None else None
        decision = self.policy.decide(request.original_tokens, shares, load)
        if not decision.compress or decision.compressor is None or decision.ratio is None:
            out = self._identity.compress_request(request)
            return replace(out, decision=decision)
        sent = request.original_tokens + request.framing_tokens  # the ratio is of what is sent
        allowed = min(request.sent_limit, math.floor(sent / decision.ratio))
        out = self.candidates[decision.compressor].compress_request(request.with_limit(allowed))
        return replace(out, decision=decision)
