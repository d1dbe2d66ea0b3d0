"""Check a latency profile's predictions against fresh measurements around the break-even length.

A fitted :class:`~ragzip.profiling.profile.Profile` predicts, per (compressor, ratio), the
break-even
context length ``n*`` where ``T_c(n) + TTFT(n/r)`` falls below ``TTFT(n)`` (Jha et al., 2025,
"Prompt Compression in the Wild: Measuring Latency, Rate Adherence, and Quality for Faster LLM
Inference"). :func:`check_profile` measures both sides again at ``n*·0.5``, ``n*`` and
``n*·1.5`` on new contexts — the real compressor on a real context, then the generator's time to
first token on what it kept — and reports predicted against measured seconds and the error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from ragzip.core.errors import ConfigError
from ragzip.core.machine import peak_rss_bytes
from ragzip.core.types import Budget, Passage
from ragzip.experiments.reporting import finite_median, markdown_table
from ragzip.profiling.measure import build_context, kept_context_tokens
from ragzip.profiling.profile import Profile
from ragzip.prompts import build_messages

if TYPE_CHECKING:
    from ragzip.compressor import Compressor
    from ragzip.generators.base import Generator

DEFAULT_FACTORS = (0.5, 1.0, 1.5)
MIN_CHECK_TOKENS = 1


@dataclass(frozen=True)
class CheckPoint:
    """Predicted and measured seconds at one context length.

    Attributes:
        compressor: Registry name.
        ratio: Requested compression factor.
        n_star: Predicted break-even length (time to first token).
        factor: ``n / n*``.
        context_tokens: ``n``.
        compressed_tokens: Context tokens the compressor kept (median over repeats).
        predicted_baseline_s: ``TTFT(n)`` from the profile.
        measured_baseline_s: Median measured time to first token on the whole context.
        predicted_compressed_s: ``T_c(n) + TTFT(n/r)`` from the profile.
        measured_compressed_s: Median of measured compression seconds plus time to first token
            on the kept context.
        measured_compression_s: Median measured compression seconds.
        kv_bytes_saved: KV-cache bytes the kept context does not need (``None`` if unknown).
    """

    compressor: str
    ratio: float
    n_star: int
    factor: float
    context_tokens: int
    compressed_tokens: int
    predicted_baseline_s: float
    measured_baseline_s: float
    predicted_compressed_s: float
    measured_compressed_s: float
    measured_compression_s: float
    kv_bytes_saved: int | None

    @property
    def baseline_error(self) -> float:
        """``predicted / measured - 1`` without compression."""
        return self.predicted_baseline_s / self.measured_baseline_s - 1.0

    @property
    def compressed_error(self) -> float:
        """``predicted / measured - 1`` with compression."""
        return self.predicted_compressed_s / self.measured_compressed_s - 1.0

    @property
    def measured_speedup(self) -> float:
        """Measured ``baseline / compressed`` (above 1: compressing was faster)."""
        return self.measured_baseline_s / self.measured_compressed_s

    @property
    def predicted_speedup(self) -> float:
        """Predicted ``baseline / compressed``."""
        return self.predicted_baseline_s / self.predicted_compressed_s

    def to_dict(self) -> dict[str, Any]:
        """Every field plus the errors and speedups, JSON-ready."""
        out = asdict(self)
        out["baseline_error"] = self.baseline_error
        out["compressed_error"] = self.compressed_error
        out["measured_speedup"] = self.measured_speedup
        out["predicted_speedup"] = self.predicted_speedup
        return out


@dataclass(frozen=True)
class CheckReport:
    """All check points of one profile.

    Attributes:
        machine: The profile's machine key.
        generator: The profile's generator.
        points: One per (compressor, ratio, factor) with a finite ``n*``.
        skipped: ``"name@ratio"`` → why it was not checked (e.g. no break-even).
        tolerance: The relative error a prediction may have to pass.
        peak_rss_bytes: Peak resident memory of the checking process.
    """

    machine: str
    generator: str
    points: tuple[CheckPoint, ...]
    skipped: Mapping[str, str]
    tolerance: float
    peak_rss_bytes: int

    @property
    def max_abs_error(self) -> float:
        """The largest absolute relative error over all predictions (NaN without points)."""
        errors = [abs(e) for p in self.points for e in (p.baseline_error, p.compressed_error)]
        return max(errors) if errors else math.nan

    @property
    def passed(self) -> bool:
        """Every prediction within :attr:`tolerance` of its measurement (and some checked)."""
        return bool(self.points) and self.max_abs_error <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}  # no recursion: set below
        out.update(max_abs_error=self.max_abs_error, passed=self.passed)
        out.update(skipped=dict(self.skipped), points=[p.to_dict() for p in self.points])
        return out


def _ttft(generator: Generator, query: str, texts: list[str]) -> float:
    return generator.generate(build_messages(query, texts), max_new_tokens=1).ttft_s


def check_profile(
    profile: Profile,
    generator: Generator,
    compressors: Mapping[str, Compressor],
    pool: Sequence[Passage],
    *,
    factors: Sequence[float] = DEFAULT_FACTORS,
    repeats: int = 5,
    tolerance: float = 0.15,
    ratios: Collection[float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CheckReport:
    """Measure latency at ``n*·f`` for every profiled (compressor, ratio) with a finite ``n*``.

    Contexts of exactly ``n`` tokens are built from ``pool``. Each point gets one untimed
    warm-up of the compressor, then ``repeats`` timed rounds of: time to first token on the whole
    context; compression; time to first token on the kept context. Figures are medians.

    Args:
        profile: The profile whose predictions are checked (of this generator and machine).
        generator: The generator the profile was measured with.
        compressors: Registry name → compressor on ``generator.counter``, for every profiled
            name that should be checked.
        pool: Real passages to build contexts from.
        factors: Multiples of ``n*`` to measure at.
        repeats: Timed runs per point.
        tolerance: Largest relative error counted as a pass.
        ratios: Check only these profiled ratios (all when ``None``).
        progress: Called with a line of text before each point.

    Raises:
        ConfigError: ``repeats`` below 1, no factors, or a non-positive factor.
    """
    if repeats < 1 or not factors or min(factors) <= 0:
        msg = "repeats must be >= 1 and factors positive"
        raise ConfigError(msg)
    say = progress or (lambda _line: None)
    query = str(pool[0].metadata.get("q") or "What is this about?")
    window = profile.max_context_tokens or 32_768
    n_max = window - profile.prompt_overhead_tokens - 2
    points: list[CheckPoint] = []
    skipped: dict[str, str] = {}
    warmed = False
    wanted = None if ratios is None else {float(r) for r in ratios}
    for cost in profile.compressors:
        if wanted is not None and cost.ratio not in wanted:
            continue
        comp = compressors.get(cost.compressor)
        if comp is None:
            skipped[cost.key] = "compressor not given"
            continue
        n_star = profile.break_even(cost.compressor, cost.ratio)
        if n_star is None:
            skipped[cost.key] = "compression never pays within the context window"
            continue
        budget = Budget.compression(cost.ratio)
        for f in factors:
            n = max(MIN_CHECK_TOKENS, round(n_star * f))
            if n > n_max:
                skipped[f"{cost.key}x{f:g}"] = f"{n} tokens exceed the context window"
                continue
            say(f"check {cost.key} at {f:g}·n* = {n} tokens")
            context = build_context(pool, n, generator.counter)
            texts = [p.text for p in context]
            if not warmed:
                _ttft(generator, query, texts)
                warmed = True
            comp.compress(query, context, budget=budget)  # warm-up
            base: list[float] = []
            with_comp: list[float] = []
            comp_s: list[float] = []
            kept: list[int] = []
            for _ in range(repeats):
                base.append(_ttft(generator, query, texts))
                result = comp.compress(query, context, budget=budget)
                seconds = float(result.timings["total"])
                comp_s.append(seconds)
                kept.append(kept_context_tokens(result))
                with_comp.append(seconds + _ttft(generator, query, result.texts or [""]))
            pred = profile.predict(cost.compressor, cost.ratio, n)
            kept_tokens = round(finite_median([float(k) for k in kept]))
            kv = profile.kv_bytes_per_token
            points.append(
                CheckPoint(
                    compressor=cost.compressor,
                    ratio=cost.ratio,
                    n_star=n_star,
                    factor=float(f),
                    context_tokens=n,
                    compressed_tokens=kept_tokens,
                    predicted_baseline_s=pred.baseline_ttft_s,
                    measured_baseline_s=finite_median(base),
                    predicted_compressed_s=pred.compressed_ttft_s,
                    measured_compressed_s=finite_median(with_comp),
                    measured_compression_s=finite_median(comp_s),
                    kv_bytes_saved=None if kv is None else kv * (n - kept_tokens),
                )
            )
    return CheckReport(
        machine=profile.machine,
        generator=profile.generator,
        points=tuple(points),
        skipped=skipped,
        tolerance=float(tolerance),
        peak_rss_bytes=peak_rss_bytes(),
    )


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


CHECK_HEADER = (
    "compressor",
    "ratio",
    "n*",
    "n",
    "kept",
    "TTFT(n) pred / meas (ms)",
    "err",
    "T_c+TTFT(kept) pred / meas (ms)",
    "err",
    "speedup pred / meas",
    "KV saved",
)


def render_check_markdown(reports: Sequence[CheckReport]) -> str:
    """A Markdown table per report: predicted vs measured seconds at each checked length."""
    lines: list[str] = []
    for rep in reports:
        verdict = "PASS" if rep.passed else "FAIL"
        lines += [
            f"### {rep.generator}",
            "",
            f"Machine `{rep.machine}`; tolerance ±{100 * rep.tolerance:.0f}%; largest error "
            f"{100 * rep.max_abs_error:.1f}% → **{verdict}**; peak RSS "
            f"{rep.peak_rss_bytes / 2**20:.0f} MiB.",
            "",
        ]
        rows = []
        for p in rep.points:
            kv = "-" if p.kv_bytes_saved is None else f"{p.kv_bytes_saved / 2**20:.1f} MiB"
            rows.append(
                [
                    p.compressor,
                    f"{p.ratio:g}x",
                    str(p.n_star),
                    str(p.context_tokens),
                    str(p.compressed_tokens),
                    f"{1000 * p.predicted_baseline_s:.1f} / {1000 * p.measured_baseline_s:.1f}",
                    _pct(p.baseline_error),
                    f"{1000 * p.predicted_compressed_s:.1f} / {1000 * p.measured_compressed_s:.1f}",
                    _pct(p.compressed_error),
                    f"{p.predicted_speedup:.2f} / {p.measured_speedup:.2f}",
                    kv,
                ]
            )
        lines.append(markdown_table(CHECK_HEADER, rows))
        for key, why in rep.skipped.items():
            lines.append(f"\nNot checked: {key}: {why}.")
        lines.append("")
    return "\n".join(lines)


__all__ = ["CheckPoint", "CheckReport", "check_profile", "render_check_markdown"]
