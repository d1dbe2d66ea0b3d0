"""Compress only when it pays: a latency- and quality-aware choice per request.

Compression speeds answers up only above a break-even context length that depends on the
compressor, the ratio and the hardware (Jha et al., 2025, "Prompt Compression in the Wild:
Measuring Latency, Rate Adherence, and Quality for Faster LLM Inference"). :class:`AutoPolicy`
reads a measured :class:`~ragzip.profiling.profile.Profile` and, for a context of ``n`` tokens,
picks the
(compressor, ratio) with the lowest predicted end-to-end latency among those whose measured
quality (answer-in-context recall from ``ragzip eval``) meets a floor, or decides not to compress.
:class:`~ragzip.compressors.auto.AutoCompressor` (registry name ``"auto"``) wraps the policy as
a compressor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ragzip.core.errors import ConfigError, InputError
from ragzip.core.jsonl import read_json_object
from ragzip.core.types import CompressionResult, Decision
from ragzip.profiling.load import Load
from ragzip.profiling.profile import Profile, load_profile

QualityKey = tuple[str, float]
SHIPPED_QUALITY = Path(__file__).resolve().parent / "data" / "default_quality.json"
"""Answer recall of the shipped profile's candidates (an ``eval.json`` subset), what ``auto``
reads when no eval report is named."""


def load_quality(path: str | Path) -> dict[QualityKey, float]:
    """Answer-in-context recall per (compressor, requested ratio) from a ``ragzip eval`` JSON.

    Reads ``compression.rows[*].{compressor, requested_ratio, answer_recall}`` of an
    ``eval.json`` (schema ``ragzip-eval/1``).

    Raises:
        ConfigError: Missing file, another format, or no compression stage in it.
    """
    path = Path(path)
    doc = read_json_object(path, "eval report", ConfigError)
    if doc.get("schema") != "ragzip-eval/1":
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

    def decide(
        self,
        n_tokens: int,
        cached_share: Mapping[str, float] | None = None,
        load: Load | None = None,
    ) -> Decision:
        """The decision for a context of ``n_tokens`` tokens (generator's tokenizer).

        ``cached_share`` gives, per compressor, the share of this request's features already
        cached (passages seen before, vectors from the index): its predicted cost moves from the
        profile's cold line toward its warm one. With a ``load`` that has seen the generator
        answer, the choice follows the load (:meth:`decide_under_load`); without one, the
        profile's latency lines decide.

        Raises:
            InputError: ``n_tokens`` is not a non-negative int.
        """
        if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 0:
            msg = f"n_tokens must be a non-negative int, got {n_tokens!r}"
            raise InputError(msg)
        if load is not None and load.seconds_per_token:
            return self.decide_under_load(n_tokens, cached_share or {}, load)
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
                cached_share=(cached_share or {}).get(cost.compressor, 0.0),
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

    def decide_under_load(
        self, n_tokens: int, cached_share: Mapping[str, float], load: Load
    ) -> Decision:
        """Compress when the tokens a candidate removes are worth more generator time than the
        compression costs on this proxy's CPUs, as the generator is loaded now.

        A removed token is worth ``load.seconds_per_token``: the generator's recent wait per
        prompt token, queueing included, so it is worth its idle prefill time on a quiet
        generator and many times that on a busy one, where it frees the generator for every
        request queued behind. A compression costs the profile's CPU seconds for this context
        (cached features cheaper), stretched by the compressions already running
        (:attr:`~ragzip.profiling.load.Load.cpu_contention`). The candidate with the largest
        net gain among those meeting the quality floor is chosen; none with a gain means no
        compression.
        """
        per_token = float(load.seconds_per_token or 0.0)
        state = (
            f"the generator takes {1000 * per_token:.3g} ms per prompt token "
            f"({load.pressure:.1f}x its idle {1000 * (load.idle_seconds_per_token or 0):.3g} ms; "
            f"{load.tokens_in_flight} tokens in flight, {load.compressions_in_flight} "
            f"compressions running on {load.cpus} CPUs)"
        )
        baseline = per_token * n_tokens
        best: tuple[float, str, float, float, float] | None = None
        rejected: list[str] = []
        for cost in self.profile.compressors:
            achieved = cost.achieved_ratio if math.isfinite(cost.achieved_ratio) else cost.ratio
            saved = per_token * n_tokens * (1.0 - 1.0 / max(achieved, 1.0))
            share = cached_share.get(cost.compressor, 0.0)
            spend = max(float(cost.seconds(n_tokens, share)), 0.0) * load.cpu_contention
            if saved - spend <= 0:
                continue
            ok, why = self._eligible(cost.compressor, cost.ratio)
            if not ok:
                rejected.append(f"{cost.key} ({why})")
            elif best is None or saved - spend > best[0]:
                best = (saved - spend, cost.compressor, cost.ratio, saved, spend)
        if best is None:
            why_not = (
                f"no candidate that gains meets the quality floor {self.min_quality:g}: "
                + ", ".join(rejected)
                if rejected
                else "no compression saves more generator time than it costs"
            )
            reason = f"{why_not}; {state}"
            return Decision(False, None, None, reason, baseline, baseline, n_tokens)
        gain, name, ratio, saved, spend = best
        reason = (
            f"{name} at {ratio:g}x frees {saved:.3f} s of generator time for {spend:.3f} s of "
            f"compression; {state}"
        )
        return Decision(True, name, ratio, reason, baseline - gain, baseline, n_tokens)


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


AutoCompressionResult = CompressionResult
"""Kept for compatibility: every result now carries ``decision`` (``None`` unless ``auto``)."""


def decision_of(result: CompressionResult) -> Decision | None:
    """The policy's decision carried by ``result`` (``None`` for other compressors)."""
    return result.decision


__all__ = [
    "AutoCompressionResult",
    "AutoPolicy",
    "Decision",
    "decision_of",
    "load_quality",
    "policy_from_files",
]
