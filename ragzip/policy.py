"""Compress only when it pays: a latency- and quality-aware choice per request.

Compression speeds answers up only above a break-even context length that depends on the
compressor, the ratio and the hardware (Jha et al., 2025, "Prompt Compression in the Wild:
Measuring Latency, Rate Adherence, and Quality for Faster LLM Inference"). :class:`AutoPolicy`
reads a measured :class:`~ragzip.profiler.Profile` and, for a context of ``n`` tokens, picks the
(compressor, ratio) with the lowest predicted end-to-end latency among those whose measured
quality (answer-in-context recall from ``ragzip eval``) meets a floor, or decides not to compress.
:class:`AutoCompressor` (registry name ``"auto"``) wraps the policy as a compressor.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from ragzip.compressor import CompressionOutput, CompressionRequest, Compressor
from ragzip.errors import ConfigError, InputError
from ragzip.profiler import Profile, find_profile, load_profile
from ragzip.tokenization import TokenCounter
from ragzip.types import PLAIN_CONTEXT, Budget, CompressionResult, ContextLayout, Passage

QualityKey = tuple[str, float]


@dataclass(frozen=True)
class Decision:
    """What the policy chose for one context.

    Attributes:
        compress: Whether to compress at all.
        compressor: The chosen compressor's registry name (``None`` when not compressing).
        ratio: The chosen compression factor (``None`` when not compressing).
        reason: Why, in one sentence.
        predicted_s: Predicted end-to-end seconds of the chosen path.
        baseline_s: Predicted end-to-end seconds without compression.
        context_tokens: The context length decided on.
    """

    compress: bool
    compressor: str | None
    ratio: float | None
    reason: str
    predicted_s: float
    baseline_s: float
    context_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)


@dataclass(frozen=True)
class AutoCompressionResult(CompressionResult):
    """A :class:`~ragzip.types.CompressionResult` of ``"auto"`` with the decision behind it.

    Attributes:
        decision: Whether the policy compressed, with which compressor and ratio, and why.
    """

    decision: Decision | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The base result's dict with ``decision`` added."""
        out = super().to_dict()
        out["decision"] = None if self.decision is None else self.decision.to_dict()
        return out


def decision_of(result: CompressionResult) -> Decision | None:
    """The policy's decision carried by ``result`` (``None`` for other compressors)."""
    return result.decision if isinstance(result, AutoCompressionResult) else None


def load_quality(path: str | Path) -> dict[QualityKey, float]:
    """Answer-in-context recall per (compressor, requested ratio) from a ``ragzip eval`` JSON.

    Reads ``compression.rows[*].{compressor, requested_ratio, answer_recall}`` of an
    ``eval.json`` (schema ``ragzip-eval/1``).

    Raises:
        ConfigError: Missing file, another format, or no compression stage in it.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        msg = f"cannot read eval report {path}: {exc}"
        raise ConfigError(msg) from exc
    if not isinstance(doc, dict) or doc.get("schema") != "ragzip-eval/1":
        msg = f"{path} is not a ragzip eval report (schema 'ragzip-eval/1')"
        raise ConfigError(msg)
    stage = doc.get("compression")
    if not isinstance(stage, dict) or not stage.get("rows"):
        msg = f"{path} has no compression results: run `ragzip eval` with the compression stage"
        raise ConfigError(msg)
    out: dict[QualityKey, float] = {}
    for row in stage["rows"]:
        recall = row.get("answer_recall")
        if recall is not None:
            out[(str(row["compressor"]), float(row["requested_ratio"]))] = float(recall)
    return out


class AutoPolicy:
    """Choose whether and how to compress from a latency profile and quality figures.

    Args:
        profile: Measured latency models of the generator on this machine.
        quality_floor: Quality (e.g. answer-in-context recall) of each (compressor, ratio);
            ``None`` or a missing pair means unknown.
        min_quality: Candidates below this quality are never chosen; with a floor above 0, a
            candidate of unknown quality is not chosen either.
        expected_output_tokens: Answer length for the latency predictions; defaults to the
            profile's.
    """

    def __init__(
        self,
        profile: Profile,
        quality_floor: Mapping[QualityKey, float | None] | None = None,
        min_quality: float = 0.0,
        *,
        expected_output_tokens: int | None = None,
    ) -> None:
        if not math.isfinite(min_quality) or not 0.0 <= min_quality <= 1.0:
            msg = f"min_quality must lie in [0, 1], got {min_quality}"
            raise ConfigError(msg)
        if not profile.compressors:
            msg = "the profile holds no compressors to choose from"
            raise ConfigError(msg)
        self.profile = profile
        self.quality = {(str(c), float(r)): q for (c, r), q in (quality_floor or {}).items()}
        self.min_quality = float(min_quality)
        self.expected_output_tokens = expected_output_tokens

    def _eligible(self, compressor: str, ratio: float) -> tuple[bool, str]:
        quality = self.quality.get((compressor, float(ratio)))
        if self.min_quality <= 0.0:
            return True, ""
        if quality is None:
            return False, "unknown quality"
        if quality < self.min_quality:
            return False, f"quality {quality:.3f} < {self.min_quality:.3f}"
        return True, ""

    def decide(self, n_tokens: int) -> Decision:
        """The decision for a context of ``n_tokens`` tokens (generator's tokenizer).

        Raises:
            InputError: ``n_tokens`` is not a non-negative int.
        """
        if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 0:
            msg = f"n_tokens must be a non-negative int, got {n_tokens!r}"
            raise InputError(msg)
        first = self.profile.compressors[0]
        base = self.profile.predict(
            first.compressor,
            first.ratio,
            n_tokens,
            expected_output_tokens=self.expected_output_tokens,
        ).baseline_s
        best: tuple[float, str, float] | None = None
        faster_but_rejected: list[str] = []
        for cost in self.profile.compressors:
            pred = self.profile.predict(
                cost.compressor,
                cost.ratio,
                n_tokens,
                expected_output_tokens=self.expected_output_tokens,
            )
            ok, why = self._eligible(cost.compressor, cost.ratio)
            if pred.compressed_s >= pred.baseline_s:
                continue
            if not ok:
                faster_but_rejected.append(f"{cost.key} ({why})")
                continue
            if best is None or pred.compressed_s < best[0]:
                best = (pred.compressed_s, cost.compressor, cost.ratio)
        if best is not None:
            seconds, name, ratio = best
            return Decision(
                compress=True,
                compressor=name,
                ratio=ratio,
                reason=(
                    f"{name} at {ratio:g}x is predicted fastest for {n_tokens} tokens "
                    f"({seconds:.3f} s vs {base:.3f} s uncompressed)"
                ),
                predicted_s=seconds,
                baseline_s=base,
                context_tokens=n_tokens,
            )
        if faster_but_rejected:
            reason = (
                f"no candidate faster at {n_tokens} tokens meets the quality floor "
                f"{self.min_quality:g}: {', '.join(faster_but_rejected)}"
            )
        else:
            reason = f"{n_tokens} tokens is below the break-even length of every candidate"
        return Decision(False, None, None, reason, base, base, n_tokens)


class AutoCompressor(Compressor):
    """Compress with whichever candidate :class:`AutoPolicy` picks, or keep the context whole.

    The caller's budget stays a hard cap: when the policy chooses ratio ``r`` the budget is the
    tighter of ``original / r`` and the caller's; when it skips compression, whole passages are
    kept while they fit the caller's budget (pass ``Budget(ratio=1.0)`` to let the policy decide
    freely). The result's timings carry ``decision_compress`` (1.0 or 0.0), ``predicted_s``,
    ``baseline_s`` and ``decision_ratio`` (0.0 when skipping); the full :class:`Decision` of the
    latest call is :attr:`last_decision` (shared across threads: read it from the same thread).

    Args:
        config: Paths of the profile and eval report and the quality floor, used when ``policy``
            is not injected.
        counter: Token counter of the generator's tokenizer.
        policy: A ready policy.
        candidates: Registry name → compressor built on the same counter; missing ones are
            created from the registry.
    """

    name: ClassVar[str] = "auto"

    @dataclass(frozen=True)
    class Config:
        """Where the policy's inputs live.

        Attributes:
            profile_path: A profile JSON written by ``ragzip profile``; ``None`` uses this
                machine's profile in the user cache folder, else the shipped portable default
                (with a warning; see :func:`~ragzip.profiler.find_profile`).
            eval_path: An ``eval.json`` of ``ragzip eval`` for quality, or ``None`` (unknown
                quality). A missing file means unknown quality, which is an error only with
                ``min_quality`` above 0.
            min_quality: Answer-in-context recall a candidate needs.
            generator: Which generator's profile to use when the file holds several.
        """

        profile_path: str | None = None
        eval_path: str | None = None
        min_quality: float = 0.0
        generator: str | None = None

    def __init__(
        self,
        config: Config | None = None,
        *,
        counter: TokenCounter,
        policy: AutoPolicy | None = None,
        candidates: Mapping[str, Compressor] | None = None,
    ) -> None:
        super().__init__(counter=counter)
        self.config = config or AutoCompressor.Config()
        if policy is None:
            profile = find_profile(self.config.profile_path, generator=self.config.generator)
            quality: dict[QualityKey, float] = {}
            eval_path = self.config.eval_path
            if eval_path is not None and (Path(eval_path).is_file() or self.config.min_quality):
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
        self._local = threading.local()

    @property
    def decides_amount(self) -> bool:
        """``auto`` decides whether and how much to compress; the budget only caps it."""
        return True

    @property
    def last_decision(self) -> Decision | None:
        """The decision of this thread's latest call (prefer the result's ``decision``)."""
        decision: Decision | None = getattr(self._local, "decision", None)
        return decision

    def compress(
        self,
        query: str,
        passages: Sequence[Passage | str | Mapping[str, Any]],
        *,
        budget: Budget,
        layout: ContextLayout = PLAIN_CONTEXT,
    ) -> AutoCompressionResult:
        """Decide from the context's length, then compress (or not) as decided.

        Returns:
            The result with the :class:`Decision` in ``decision``; ``compressor`` is ``"auto"``.
        """
        self._local.decision = None
        result = super().compress(query, passages, budget=budget, layout=layout)
        decision = self.last_decision
        if decision is None:  # no passages: nothing was decided, nothing to compress
            decision = Decision(False, None, None, "no context to compress", 0.0, 0.0, 0)
            self._local.decision = decision
        values = {f.name: getattr(result, f.name) for f in fields(CompressionResult)}
        return AutoCompressionResult(**values, decision=decision)

    def _compress(self, request: CompressionRequest) -> CompressionOutput:
        decision = self.policy.decide(request.original_tokens)
        self._local.decision = decision
        stats = {
            "decision_compress": 1.0 if decision.compress else 0.0,
            "decision_ratio": decision.ratio or 0.0,
            "predicted_s": decision.predicted_s,
            "baseline_s": decision.baseline_s,
        }
        if not decision.compress or decision.compressor is None or decision.ratio is None:
            out = self._identity._compress(request)
            return CompressionOutput(spans=out.spans, timings={**out.timings, **stats})
        sent = request.original_tokens + request.framing_tokens  # the ratio is of what is sent
        allowed = math.floor(sent / decision.ratio) - request.framing_tokens
        budget = max(0, min(request.budget_tokens, allowed))
        chosen = self.candidates[decision.compressor]
        sub = replace(request, budget_tokens=budget)
        out = chosen._compress(sub)
        return CompressionOutput(
            spans=out.spans,
            embeddings=out.embeddings,
            vectors_per_passage=out.vectors_per_passage,
            timings={**out.timings, **stats},
        )


def policy_from_files(
    profile_path: str | Path,
    eval_path: str | Path | None = None,
    *,
    min_quality: float = 0.0,
    generator: str | None = None,
) -> AutoPolicy:
    """An :class:`AutoPolicy` from a profile JSON and, optionally, an eval report."""
    profile = load_profile(profile_path, generator=generator)
    quality: Mapping[QualityKey, Any] = load_quality(eval_path) if eval_path is not None else {}
    return AutoPolicy(profile, quality, min_quality)


__all__ = [
    "AutoCompressionResult",
    "AutoCompressor",
    "AutoPolicy",
    "Decision",
    "decision_of",
    "load_quality",
    "policy_from_files",
]
