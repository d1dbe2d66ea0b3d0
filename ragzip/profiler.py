"""Latency break-even profiling: when does compressing the context make the answer come sooner?

Compression pays only inside a window of prompt length, ratio and hardware (Jha et al., 2025,
"Prompt Compression in the Wild: Measuring Latency, Rate Adherence, and Quality for Faster LLM
Inference"): below some length the compressor costs more than the prefill it saves. This module
measures that window for one generator on one machine and fits simple cost models:

* compression time ``T_c(n) = a + b·n`` per (compressor, ratio), ``n`` = context tokens;
* time to first token ``TTFT(p) = a + b·p + c·p²`` over prompt tokens ``p`` (context plus the
  fixed prompt overhead of template, instructions and question);
* decode seconds per token ``d(p) = a + b·p`` (a constant when the slope is not positive).

The break-even length ``n*`` is the smallest ``n`` with ``T_c(n) + TTFT(n/r) < TTFT(n)`` (and the
same with the expected answer's decode time added for end-to-end latency). A
:class:`Profile` is saved as JSON keyed by machine and generator, so a policy
(:mod:`ragzip.policy`) can decide per request whether, how and how much to compress.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import platform
import resource
import statistics
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from ragzip.errors import ConfigError, InputError, RagzipError
from ragzip.prompts import build_messages
from ragzip.types import Budget, Passage

if TYPE_CHECKING:
    from ragzip.compressor import Compressor
    from ragzip.generators.base import Generator
    from ragzip.tokenization import TokenCounter
    from ragzip.types import CompressionResult

logger = logging.getLogger(__name__)

SCHEMA = "ragzip-profile/1"
JSON_NAME = "profile.json"
SHIPPED_PROFILE = Path(__file__).resolve().parent / "data" / "default_profile.json"
"""The portable default: the embedded generator profiled on a 2-core x86-64 CPU, used by
``auto`` (with a warning) until ``ragzip profile`` has measured this machine."""


def user_profile_path() -> Path:
    """Where ``ragzip profile`` saves, and ``auto`` first looks: the user cache folder."""
    from ragzip.models import cache_dir

    return cache_dir() / "profile" / JSON_NAME


def find_profile(path: str | Path | None = None, *, generator: str | None = None) -> Profile:
    """The profile ``auto`` uses.

    Args:
        path: A profile file to use as it is (this machine's profile must be in it). ``None``:
            this machine's profile in :func:`user_profile_path`, else the shipped portable
            default (:data:`SHIPPED_PROFILE`), with a warning that it was measured elsewhere.
        generator: The generator's name, when the file holds several.

    Raises:
        ConfigError: No usable profile.
    """
    if path is not None:
        return load_profile(path, generator=generator)
    mine = user_profile_path()
    if mine.is_file():
        try:
            return load_profile(mine, generator=generator)
        except ConfigError:
            pass  # another machine's or generator's: fall through to the portable default
    return load_profile(SHIPPED_PROFILE, generator=generator, any_machine=True)


LATENCY_PLOT = "latency.png"
SPEEDUP_PLOT = "speedup.png"
CHECK_JSON = "check.json"
CHECK_MD = "check.md"


# -- cost models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearModel:
    """``y = intercept + slope · x``."""

    intercept: float
    slope: float

    def __call__(self, x: float | np.ndarray) -> Any:
        return self.intercept + self.slope * np.asarray(x, dtype=float)


@dataclass(frozen=True)
class QuadraticModel:
    """``y = a + b·x + c·x²``."""

    a: float
    b: float
    c: float

    def __call__(self, x: float | np.ndarray) -> Any:
        x = np.asarray(x, dtype=float)
        return self.a + self.b * x + self.c * x * x


def _check_xy(xs: Sequence[float], ys: Sequence[float], needed: int) -> tuple[Any, Any]:
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        msg = f"need two equally long 1-d sequences, got shapes {x.shape} and {y.shape}"
        raise InputError(msg)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        msg = "measurements must be finite numbers"
        raise InputError(msg)
    if len(np.unique(x)) < needed:
        msg = f"need at least {needed} distinct lengths to fit this model, got {len(np.unique(x))}"
        raise InputError(msg)
    return x, y


def _row_weights(y: np.ndarray, relative: bool) -> np.ndarray:
    """``1 / y`` (least *relative* squares) when asked and every ``y`` is positive, else ones."""
    if relative and bool((y > 0).all()):
        return np.asarray(1.0 / y, dtype=float)
    return np.ones_like(y)


def fit_linear(xs: Sequence[float], ys: Sequence[float], *, relative: bool = False) -> LinearModel:
    """Least-squares line through ``(xs, ys)``.

    With one distinct ``x`` the line is flat through the mean (a constant cost).

    Args:
        xs: Lengths.
        ys: Measured values.
        relative: Minimise relative rather than absolute residuals, so short, fast points
            weigh as much as long, slow ones (when every ``y`` is positive).
    """
    x, y = _check_xy(xs, ys, 1)
    if len(np.unique(x)) == 1:
        return LinearModel(float(y.mean()), 0.0)
    w = _row_weights(y, relative)
    design = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
    coef, *_ = np.linalg.lstsq(design, y * w, rcond=None)
    return LinearModel(float(coef[0]), float(coef[1]))


def fit_quadratic(
    xs: Sequence[float], ys: Sequence[float], *, relative: bool = False
) -> QuadraticModel:
    """Least-squares ``a + b·x + c·x²`` through ``(xs, ys)``; a line when only two lengths.

    Args:
        xs: Lengths.
        ys: Measured values.
        relative: Minimise relative residuals (see :func:`fit_linear`).
    """
    x, y = _check_xy(xs, ys, 2)
    if len(np.unique(x)) == 2:
        line = fit_linear(xs, ys, relative=relative)
        return QuadraticModel(line.intercept, line.slope, 0.0)
    scale = float(np.abs(x).max()) or 1.0  # condition the design matrix
    xn = x / scale
    w = _row_weights(y, relative)
    design = np.stack([np.ones_like(xn), xn, xn * xn], axis=1) * w[:, None]
    coef, *_ = np.linalg.lstsq(design, y * w, rcond=None)
    return QuadraticModel(float(coef[0]), float(coef[1] / scale), float(coef[2] / scale**2))


def fit_cost(xs: Sequence[float], ys: Sequence[float], *, relative: bool = False) -> LinearModel:
    """A line for a time cost: least squares, or through the origin when the intercept is negative.

    A negative intercept would predict free work for short inputs outside the measured range.

    Args:
        xs: Lengths.
        ys: Measured seconds.
        relative: Minimise relative residuals (see :func:`fit_linear`).
    """
    line = fit_linear(xs, ys, relative=relative)
    if line.intercept >= 0:
        return line
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    w = _row_weights(y, relative) ** 2
    xx = float((w * x) @ x)
    return LinearModel(0.0, float((w * x) @ y) / xx if xx > 0 else 0.0)


def fit_decode(xs: Sequence[float], ys: Sequence[float]) -> LinearModel:
    """Decode seconds per token against prompt tokens: a line, or the median when it falls."""
    line = fit_linear(xs, ys)
    if line.slope <= 0:
        return LinearModel(float(np.median(np.asarray(ys, dtype=float))), 0.0)
    return line


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


@dataclass(frozen=True)
class CompressorCost:
    """The fitted cost of one compressor at one ratio.

    Attributes:
        compressor: Registry name.
        ratio: Requested compression factor.
        cost: ``T_c(n)`` in seconds over context tokens ``n``.
        achieved_ratio: Median measured ``original / compressed`` tokens.
    """

    compressor: str
    ratio: float
    cost: LinearModel
    achieved_ratio: float

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


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware")):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key() -> str:
    """What decides compression and prefill speed on this machine: OS, CPU model and count.

    Kernel builds, host names and library patch levels are left out, so a profile stays valid
    across updates of the same machine (and on identical machines).
    """
    return f"{platform.system()}-{platform.machine()}|{_cpu_model()}|{os.cpu_count()}cpu"


@dataclass(frozen=True)
class Profile:
    """Fitted latency models of one generator on one machine, with the measurements behind them.

    Attributes:
        machine: :func:`machine_key` of the machine measured.
        generator: The generator's name.
        ttft: ``TTFT(p)`` over prompt tokens ``p``.
        decode: Decode seconds per token over prompt tokens.
        prompt_overhead_tokens: Prompt tokens beyond the context (template, instructions, question).
        prompt_overhead_per_token: Further prompt tokens per context token (passage numbering and
            titles grow with the context): prompt = context · (1 + this) + the fixed overhead.
        compressors: The fitted cost of each (compressor, ratio).
        expected_output_tokens: Answer length assumed for end-to-end predictions.
        kv_bytes_per_token: KV-cache bytes one prompt token takes (``None`` for remote models).
        max_context_tokens: The generator's context window when known.
        peak_rss_bytes: Peak resident memory of the profiling process.
        generation_samples: Measured generator timings.
        compression_samples: Measured compression timings.
        created_at: ISO timestamp.
    """

    machine: str
    generator: str
    ttft: QuadraticModel
    decode: LinearModel
    prompt_overhead_tokens: int
    compressors: tuple[CompressorCost, ...]
    expected_output_tokens: int = 32
    kv_bytes_per_token: int | None = None
    max_context_tokens: int | None = None
    peak_rss_bytes: int | None = None
    generation_samples: tuple[GenerationSample, ...] = ()
    compression_samples: tuple[CompressionSample, ...] = ()
    created_at: str = ""
    prompt_overhead_per_token: float = 0.0

    @property
    def key(self) -> str:
        """``machine|generator``: where the profile is filed in a profile JSON."""
        return f"{self.machine}|{self.generator}"

    def cost(self, compressor: str, ratio: float) -> CompressorCost:
        """The fitted cost of ``compressor`` at ``ratio``.

        Raises:
            ConfigError: The pair was not profiled (the message lists those that were).
        """
        key = candidate_key(compressor, ratio)
        for c in self.compressors:
            if c.key == key:
                return c
        known = ", ".join(c.key for c in self.compressors) or "none"
        msg = f"{key} was not profiled for {self.generator}; profiled: {known}"
        raise ConfigError(msg)

    def _generation_s(self, context: np.ndarray, output_tokens: int) -> tuple[Any, Any]:
        prompt = context * (1.0 + self.prompt_overhead_per_token) + self.prompt_overhead_tokens
        ttft = np.maximum(self.ttft(prompt), 0.0)
        decode = np.maximum(self.decode(prompt), 0.0) * max(output_tokens - 1, 0)
        return ttft, ttft + decode

    def predict(
        self,
        compressor: str,
        ratio: float,
        n: int,
        *,
        expected_output_tokens: int | None = None,
    ) -> Prediction:
        """Predicted latency of a context of ``n`` tokens with and without compression.

        Args:
            compressor: Registry name of a profiled compressor.
            ratio: A profiled ratio.
            n: Context tokens before compression.
            expected_output_tokens: Answer length; defaults to the profile's.
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            msg = f"n must be a non-negative int, got {n!r}"
            raise InputError(msg)
        cost = self.cost(compressor, ratio)
        out = (
            self.expected_output_tokens
            if expected_output_tokens is None
            else expected_output_tokens
        )
        # A soft compressor's vector count follows its passages, not the requested ratio: use
        # the measured ratio where it compresses further than asked.
        achieved = cost.achieved_ratio if math.isfinite(cost.achieved_ratio) else 0.0
        m = int(n // max(float(ratio), achieved))
        tc = max(float(cost.cost(n)), 0.0)
        base_ttft, base = self._generation_s(np.asarray(float(n)), out)
        comp_ttft, comp = self._generation_s(np.asarray(float(m)), out)
        return Prediction(
            context_tokens=int(n),
            compressed_tokens=m,
            compression_s=tc,
            baseline_ttft_s=float(base_ttft),
            compressed_ttft_s=tc + float(comp_ttft),
            baseline_s=float(base),
            compressed_s=tc + float(comp),
        )

    def curves(
        self, compressor: str, ratio: float, ns: np.ndarray, *, end_to_end: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted seconds without and with compression over the lengths ``ns`` (vectorised)."""
        cost = self.cost(compressor, ratio)
        n = np.asarray(ns, dtype=float)
        m = np.floor(n / float(ratio))
        out = self.expected_output_tokens if end_to_end else 1
        base_ttft, base = self._generation_s(n, out)
        comp_ttft, comp = self._generation_s(m, out)
        tc = np.maximum(cost.cost(n), 0.0)
        if end_to_end:
            return base, tc + comp
        return base_ttft, tc + comp_ttft

    def break_even(
        self,
        compressor: str,
        ratio: float,
        *,
        end_to_end: bool = False,
        n_max: int | None = None,
    ) -> int | None:
        """The smallest context length at which compressing is predicted to be faster.

        Args:
            compressor: Registry name of a profiled compressor.
            ratio: A profiled ratio.
            end_to_end: Compare whole-answer latency (with the expected output length) instead of
                time to first token.
            n_max: Largest length searched; the generator's context window, else 32,768.

        Returns:
            ``n*``, or ``None`` when compression never wins up to ``n_max``.
        """
        limit = n_max or self.max_context_tokens or 32_768
        ns = np.arange(1, int(limit) + 1)
        base, comp = self.curves(compressor, ratio, ns, end_to_end=end_to_end)
        wins = np.flatnonzero(comp < base)
        return int(ns[wins[0]]) if wins.size else None

    def kv_bytes_saved(self, ratio: float, n: int) -> int | None:
        """KV-cache bytes not allocated when ``n`` context tokens shrink by ``ratio``."""
        if self.kv_bytes_per_token is None:
            return None
        return self.kv_bytes_per_token * (n - int(n // float(ratio)))

    # -- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`from_dict`)."""
        out = asdict(self)
        out["compressors"] = {c.key: asdict(c) for c in self.compressors}
        return _finite(out)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """Rebuild a profile written by :meth:`to_dict`.

        Raises:
            ConfigError: Missing or malformed fields.
        """
        try:
            comps = data["compressors"]
            items = comps.values() if isinstance(comps, Mapping) else comps
            return cls(
                machine=str(data["machine"]),
                generator=str(data["generator"]),
                ttft=QuadraticModel(**data["ttft"]),
                decode=LinearModel(**data["decode"]),
                prompt_overhead_tokens=int(data["prompt_overhead_tokens"]),
                compressors=tuple(
                    CompressorCost(
                        compressor=str(c["compressor"]),
                        ratio=float(c["ratio"]),
                        cost=LinearModel(**c["cost"]),
                        achieved_ratio=_num(c.get("achieved_ratio")),
                    )
                    for c in items
                ),
                expected_output_tokens=int(data.get("expected_output_tokens", 32)),
                kv_bytes_per_token=_opt_int(data.get("kv_bytes_per_token")),
                max_context_tokens=_opt_int(data.get("max_context_tokens")),
                peak_rss_bytes=_opt_int(data.get("peak_rss_bytes")),
                generation_samples=tuple(
                    GenerationSample(**{**s, "decode_s_per_token": _num(s["decode_s_per_token"])})
                    for s in data.get("generation_samples", ())
                ),
                compression_samples=tuple(
                    CompressionSample(**s) for s in data.get("compression_samples", ())
                ),
                created_at=str(data.get("created_at", "")),
                prompt_overhead_per_token=float(data.get("prompt_overhead_per_token", 0.0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            msg = f"malformed profile: {exc!r}"
            raise ConfigError(msg) from exc


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _finite(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_profile(profile: Profile, path: str | Path) -> Path:
    """Write ``profile`` into the JSON file at ``path`` under :attr:`Profile.key`.

    Profiles of other machines or generators already in the file are kept.
    """
    path = Path(path)
    doc: dict[str, Any] = {"schema": SCHEMA, "profiles": {}}
    if path.is_file():
        doc = _read_doc(path)
    doc["profiles"][profile.key] = profile.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _read_doc(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        msg = f"cannot read profile file {path}: {exc}"
        raise ConfigError(msg) from exc
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        msg = f"{path} is not a ragzip profile file (schema {SCHEMA!r} expected)"
        raise ConfigError(msg)
    if not isinstance(doc.get("profiles"), dict):
        msg = f"{path} has no 'profiles' mapping"
        raise ConfigError(msg)
    return doc


def load_profile(
    path: str | Path,
    *,
    generator: str | None = None,
    machine: str | None = None,
    any_machine: bool = False,
) -> Profile:
    """Read a profile from a file written by :func:`save_profile`.

    Args:
        path: The JSON file.
        generator: The generator's name; may be left out when the file holds one profile for
            the machine.
        machine: A :func:`machine_key`; defaults to this machine's.
        any_machine: When the file holds no profile of this machine, take the generator's
            profile measured on another one (with a warning that says so) instead of failing.

    Raises:
        ConfigError: No such file, a foreign file, or no (unique) profile for the machine and
            generator (the message lists the profiles present).
    """
    path = Path(path)
    if not path.is_file():
        msg = f"no profile file at {path}: run `ragzip profile` first"
        raise ConfigError(msg)
    profiles: dict[str, Any] = _read_doc(path)["profiles"]
    machine = machine or machine_key()
    mine = [p for p in profiles.values() if generator is None or p.get("generator") == generator]
    found = [p for p in mine if p.get("machine") == machine]
    if not found and any_machine and len(mine) == 1:
        logger.warning(
            "no latency profile of this machine (%s) in %s: using the one measured on %s; "
            "run `ragzip profile` to calibrate `auto` here",
            machine,
            path,
            mine[0].get("machine"),
        )
        found = mine
    if len(found) != 1:
        what = "no profile" if not found else "several profiles"
        msg = (
            f"{what} for machine {machine!r} and generator {generator or 'any'!r} in {path}; "
            f"present: {', '.join(profiles) or 'none'}"
        )
        raise ConfigError(msg)
    return Profile.from_dict(found[0])


# -- measuring --------------------------------------------------------------------------------


def load_nq_passages(path: str | Path, *, limit: int = 400) -> list[Passage]:
    """Gold passages of NQ-open questions, in file order, with the question in metadata."""
    path = Path(path)
    if not path.is_file():
        msg = f"no NQ data at {path} (expected nq_open_dev.jsonl.gz)"
        raise ConfigError(msg)
    out: list[Passage] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            out.append(
                Passage(
                    text=row["text"], title=row.get("title", ""), metadata={"q": row["question"]}
                )
            )
            if len(out) >= limit:
                break
    if not out:
        msg = f"{path} holds no passages"
        raise ConfigError(msg)
    return out


def calibration_passages() -> list[Passage]:
    """The calibration corpus that ships with ragzip: the prose of its own docstrings.

    About 20k SmolLM2 tokens of English in paragraphs of 200 characters or more, present
    wherever ragzip is installed, so ``ragzip profile`` needs no data download.
    """
    import ast
    import importlib.util

    out: list[Passage] = []
    for package in ("ragzip", "ragzip.compressors", "ragzip.retrievers", "ragzip.server"):
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            for file in sorted(Path(folder).rglob("*.py")):
                tree = ast.parse(file.read_text(encoding="utf-8"))
                for node in ast.walk(tree):
                    if isinstance(
                        node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
                    ):
                        doc = ast.get_docstring(node)
                        if doc and len(doc) >= 200:
                            out.append(Passage(" ".join(doc.split()), title=file.stem))
    return list(dict.fromkeys(out))


def calibration_pool(
    data: str | Path | None = None, index: str | Path | None = None, *, limit: int = 400
) -> list[Passage]:
    """Passages to build profiling contexts from: NQ data, an index's chunks, or the shipped
    corpus (:func:`calibration_passages`) when neither is given."""
    if data is not None:
        return load_nq_passages(data, limit=limit)
    if index is not None:
        from ragzip.retrievers.index import HybridIndex

        return list(HybridIndex.load(index).chunks[:limit])
    return calibration_passages()


def build_context(pool: Sequence[Passage], n: int, counter: TokenCounter) -> list[Passage]:
    """Real passages concatenated until they hold exactly ``n`` tokens of ``counter``.

    The last passage is cut at a word boundary so the total is ``n`` (or just under when a
    single word spans the boundary).

    Raises:
        InputError: ``n`` below 1, or the pool holds fewer than ``n`` tokens.
    """
    if n < 1:
        msg = f"context length must be >= 1 token, got {n}"
        raise InputError(msg)
    out: list[Passage] = []
    left = n
    for passage in pool:
        tokens = counter.count(passage.text)
        if tokens <= left:
            out.append(passage)
            left -= tokens
        else:
            words = passage.text.split(" ")
            lo, hi = 0, len(words)
            while lo < hi:  # the most words that fit in `left`
                mid = (lo + hi + 1) // 2
                if counter.count(" ".join(words[:mid])) <= left:
                    lo = mid
                else:
                    hi = mid - 1
            if lo:
                out.append(Passage(text=" ".join(words[:lo]), title=passage.title))
            left = 0
        if left == 0:
            return out
    msg = f"the passage pool holds {n - left} tokens, fewer than the {n} asked for"
    raise InputError(msg)


def kv_bytes_per_token(model: Any) -> int | None:
    """``2 × layers × kv_heads × head_dim × dtype bytes`` from a Hugging Face model's config."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    if not (layers and heads and hidden):
        return None
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    try:
        dtype_bytes = next(model.parameters()).element_size()
    except (AttributeError, StopIteration):
        dtype_bytes = 4
    return int(2 * layers * kv_heads * head_dim * dtype_bytes)


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (``getrusage``; kilobytes on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _median(values: Iterable[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return statistics.median(vals) if vals else math.nan


def _time_generation(
    generator: Generator, query: str, texts: list[str], max_new: int, repeats: int
) -> tuple[int, float, float]:
    messages = build_messages(query, texts)
    ttfts: list[float] = []
    decode: list[float] = []
    prompt_tokens = 0
    for _ in range(repeats):
        gen = generator.generate(messages, max_new_tokens=max_new)
        prompt_tokens = gen.prompt_tokens or generator.count_prompt_tokens(messages)
        ttfts.append(gen.ttft_s)
        rate = gen.decode_tokens_per_s
        decode.append(1.0 / rate if rate > 0 else math.nan)
    return prompt_tokens, _median(ttfts), _median(decode)


def kept_context_tokens(result: CompressionResult) -> int:
    """Context tokens a result keeps, in the profile's unit: passage text without the layout's
    separators and template (those are part of the modelled prompt overhead); vectors for a
    soft result."""
    if result.embeddings is not None:
        return result.compressed_tokens
    return sum(p.tokens for p in result.passages)


def _time_soft_prefill(
    generator: Generator, result: CompressionResult, repeats: int
) -> GenerationSample:
    """TTFT of a prompt holding a soft compressor's vectors (one token generated: no decode)."""
    ttfts = []
    prompt_tokens = 0
    for _ in range(repeats):
        gen = generator.generate_compressed(result, max_new_tokens=1)
        prompt_tokens = gen.prompt_tokens
        ttfts.append(gen.ttft_s)
    return GenerationSample(
        result.compressed_tokens, prompt_tokens, _median(ttfts), math.nan, repeats
    )


def measure(
    generator: Generator,
    compressors: Mapping[str, Compressor],
    *,
    lengths: Sequence[int],
    ratios: Sequence[float],
    pool: Sequence[Passage],
    repeats: int = 3,
    expected_output_tokens: int = 32,
    progress: Callable[[str], None] | None = None,
    max_context_tokens: int | None = None,
) -> Profile:
    """Time compression and generation over a grid of lengths and ratios, and fit a profile.

    For every length ``n`` and ratio ``r`` each compressor compresses a real ``n``-token context;
    the generator answers from contexts of ``n`` and of ``n / r`` tokens. A soft compressor's
    vectors are also prefilled as such (when the generator reads embeddings), adding a TTFT
    sample at its vector count. One untimed warm-up run precedes each kind of measurement;
    reported figures are medians over ``repeats``.

    Args:
        generator: Embedded or remote generator; budgets are counted in its tokenizer.
        compressors: Registry name → compressor built on ``generator.counter``.
        lengths: Context lengths ``n`` in tokens (at least two distinct).
        ratios: Compression factors ``r`` (each > 1).
        pool: Real passages to build contexts from (:func:`load_nq_passages`).
        repeats: Timed runs per point.
        expected_output_tokens: ``max_new_tokens`` of each generation and the answer length
            assumed in end-to-end predictions.
        progress: Called with a line of text before each point.
        max_context_tokens: The generator's context window, when it cannot be read from the
            model (remote generators).
    """
    lengths = sorted({int(n) for n in lengths})
    ratios = sorted({float(r) for r in ratios})
    if len(lengths) < 2 or lengths[0] < 1:
        msg = f"need at least two distinct positive lengths, got {lengths}"
        raise ConfigError(msg)
    if not ratios or ratios[0] <= 1.0:
        msg = f"ratios must be compression factors > 1, got {ratios}"
        raise ConfigError(msg)
    if repeats < 1 or expected_output_tokens < 1:
        msg = "repeats and expected_output_tokens must be >= 1"
        raise ConfigError(msg)
    if not compressors:
        msg = "no compressors to profile"
        raise ConfigError(msg)
    say = progress or (lambda _line: None)
    counter = generator.counter
    query = str(pool[0].metadata.get("q") or "What is this about?")
    contexts = {n: build_context(pool, n, counter) for n in lengths}

    gen_lengths = sorted(set(lengths) | {max(1, int(n // r)) for n in lengths for r in ratios})
    gen_contexts = {m: contexts.get(m) or build_context(pool, m, counter) for m in gen_lengths}
    say("warm-up generation")
    generator.generate(
        build_messages(query, [p.text for p in gen_contexts[gen_lengths[0]]]), max_new_tokens=2
    )
    gen_samples: list[GenerationSample] = []
    for m in gen_lengths:
        say(f"generate: {m} context tokens")
        prompt, ttft, dec = _time_generation(
            generator, query, [p.text for p in gen_contexts[m]], expected_output_tokens, repeats
        )
        gen_samples.append(GenerationSample(m, prompt, ttft, dec, repeats))

    comp_samples: list[CompressionSample] = []
    soft_points: set[tuple[str, int]] = set()
    for name, comp in compressors.items():
        say(f"warm-up {name}")
        comp.compress(query, contexts[lengths[0]], budget=Budget.compression(ratios[0]))
        for n in lengths:
            for r in ratios:
                say(f"compress: {name} n={n} r={r:g}")
                secs: list[float] = []
                kept = 0
                for _ in range(repeats):
                    res = comp.compress(query, contexts[n], budget=Budget.compression(r))
                    secs.append(float(res.timings["total"]))
                    kept = kept_context_tokens(res)
                comp_samples.append(CompressionSample(name, r, n, kept, _median(secs), repeats))
                soft = res.embeddings is not None and generator.accepts_embeddings
                if soft and (name, kept) not in soft_points:  # the prefill at its vector count
                    soft_points.add((name, kept))
                    say(f"generate: {name}, {kept} vectors")
                    gen_samples.append(_time_soft_prefill(generator, res, repeats))
    return fit_profile(
        generator=profile_name(generator),
        generation=gen_samples,
        compression=comp_samples,
        expected_output_tokens=expected_output_tokens,
        kv_bytes_per_token=kv_bytes_per_token(getattr(generator, "model", None)),
        max_context_tokens=max_context_tokens or _context_window(generator),
        peak_rss=peak_rss_bytes(),
    )


def profile_name(generator: Generator) -> str:
    """The name a profile files ``generator`` under: remote models carry their server's URL.

    The same model served over HTTP and run in-process has different latencies, so
    ``smollm2-135m-instruct`` and ``smollm2-135m-instruct@http://127.0.0.1:8001`` are kept apart.
    """
    base = getattr(generator, "base_url", None)
    return f"{generator.name}@{base}" if isinstance(base, str) and base else generator.name


def _context_window(generator: Generator) -> int | None:
    model = getattr(generator, "model", None)
    value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) else None


def fit_profile(
    *,
    generator: str,
    generation: Sequence[GenerationSample],
    compression: Sequence[CompressionSample],
    expected_output_tokens: int = 32,
    kv_bytes_per_token: int | None = None,
    max_context_tokens: int | None = None,
    peak_rss: int | None = None,
    machine: str | None = None,
) -> Profile:
    """Fit the cost models of a :class:`Profile` to measured samples.

    Raises:
        InputError: Too few distinct lengths for a model.
    """
    prompts = [s.prompt_tokens for s in generation]
    ttft = fit_quadratic(prompts, [s.ttft_s for s in generation], relative=True)
    dec_points = [(s.prompt_tokens, s.decode_s_per_token) for s in generation]
    dec_points = [(p, d) for p, d in dec_points if math.isfinite(d)]
    decode = (
        fit_decode([p for p, _ in dec_points], [d for _, d in dec_points])
        if dec_points
        else LinearModel(0.0, 0.0)
    )
    overhead = round(statistics.median([s.prompt_tokens - s.context_tokens for s in generation]))
    per_token = 0.0
    if len({s.context_tokens for s in generation}) >= 2:
        grow = fit_linear([s.context_tokens for s in generation], prompts)
        if grow.slope >= 1.0 and grow.intercept >= 0.0:
            overhead, per_token = round(grow.intercept), grow.slope - 1.0
    groups: dict[tuple[str, float], list[CompressionSample]] = {}
    for s in compression:
        groups.setdefault((s.compressor, s.ratio), []).append(s)
    costs = tuple(
        CompressorCost(
            compressor=name,
            ratio=ratio,
            cost=fit_cost([s.context_tokens for s in ss], [s.seconds for s in ss], relative=True),
            achieved_ratio=_median(
                s.context_tokens / s.compressed_tokens for s in ss if s.compressed_tokens
            ),
        )
        for (name, ratio), ss in groups.items()
    )
    return Profile(
        machine=machine or machine_key(),
        generator=generator,
        ttft=ttft,
        decode=decode,
        prompt_overhead_tokens=overhead,
        compressors=costs,
        expected_output_tokens=expected_output_tokens,
        kv_bytes_per_token=kv_bytes_per_token,
        max_context_tokens=max_context_tokens,
        peak_rss_bytes=peak_rss,
        generation_samples=tuple(generation),
        compression_samples=tuple(compression),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        prompt_overhead_per_token=per_token,
    )


# -- output -----------------------------------------------------------------------------------


def summary_table(profile: Profile) -> Any:
    """A rich table: per (compressor, ratio) cost slope, break-even lengths and KV savings."""
    from rich.table import Table

    lengths = sorted({s.context_tokens for s in profile.compression_samples})
    memory = []
    if profile.peak_rss_bytes is not None:
        memory.append(f"peak RSS {profile.peak_rss_bytes / 2**20:.0f} MiB")
    if profile.kv_bytes_per_token is not None:
        memory.append(f"KV cache {profile.kv_bytes_per_token / 1024:.1f} KiB/token")
    table = Table(
        title=f"{profile.generator} on {profile.machine}", caption="; ".join(memory) or None
    )
    for col in ("compressor", "ratio", "T_c ms/1k tok", "n* TTFT", "n* end-to-end"):
        table.add_column(col, justify="right" if col != "compressor" else "left")
    for n in lengths:
        table.add_column(f"speedup @{n}", justify="right")
    table.add_column("KV saved @max", justify="right")
    for c in profile.compressors:
        n_ttft = profile.break_even(c.compressor, c.ratio)
        n_e2e = profile.break_even(c.compressor, c.ratio, end_to_end=True)
        kv = profile.kv_bytes_saved(c.ratio, lengths[-1]) if lengths else None
        table.add_row(
            c.compressor,
            f"{c.ratio:g}x",
            f"{1000 * 1000 * c.cost.slope:.2f}",
            "never" if n_ttft is None else str(n_ttft),
            "never" if n_e2e is None else str(n_e2e),
            *[f"{profile.predict(c.compressor, c.ratio, n).speedup:.2f}x" for n in lengths],
            "-" if kv is None else f"{kv / 2**20:.1f} MiB",
        )
    return table


def plot_profile(profile: Profile, out_dir: str | Path) -> list[Path]:
    """Write ``latency.png`` (latency vs n, n* marked) and ``speedup.png`` (n × r heat map)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = sorted({c.compressor for c in profile.compressors})
    measured = [s.context_tokens for s in profile.compression_samples]
    n_hi = int(max(measured) * 1.5) if measured else 4096
    ns = np.unique(np.geomspace(4, n_hi, 300).astype(int))  # log axis: small n* stay visible

    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        costs = sorted(
            (c for c in profile.compressors if c.compressor == name), key=lambda c: c.ratio
        )
        base, _ = profile.curves(name, costs[0].ratio, ns)
        ax.plot(ns, base, color="black", lw=2, label="no compression")
        for c in costs:
            _, comp = profile.curves(name, c.ratio, ns)
            (line,) = ax.plot(ns, comp, label=f"{c.ratio:g}x")
            n_star = profile.break_even(name, c.ratio, end_to_end=True)
            if n_star is not None and n_star <= n_hi:
                ax.axvline(n_star, color=line.get_color(), ls="--", lw=1)
                ax.text(
                    n_star,
                    0.98,
                    f" n*={n_star} ({c.ratio:g}x)",
                    transform=ax.get_xaxis_transform(),
                    color=line.get_color(),
                    rotation=90,
                    va="top",
                    fontsize=8,
                )
        gs = profile.generation_samples
        ax.scatter(
            [s.context_tokens for s in gs],
            [
                s.ttft_s
                + (s.decode_s_per_token if math.isfinite(s.decode_s_per_token) else 0)
                * (profile.expected_output_tokens - 1)
                for s in gs
            ],
            color="black",
            s=12,
            zorder=3,
            label="measured (no compression)",
        )
        ax.set_title(f"{name}: end-to-end latency, {profile.expected_output_tokens}-token answer")
        ax.set_xscale("log")
        ax.set_xlabel("context tokens n (log scale)")
        ax.set_ylabel("seconds")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{profile.generator}\n{profile.machine}", fontsize=8)
    fig.tight_layout()
    latency = out / LATENCY_PLOT
    fig.savefig(latency, dpi=110)
    plt.close(fig)

    grid_n = np.unique(np.geomspace(64, max(n_hi, 128), 12).astype(int))
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        costs = sorted(
            (c for c in profile.compressors if c.compressor == name), key=lambda c: c.ratio
        )
        speed = np.array(
            [
                [b / c_ for b, c_ in zip(*profile.curves(name, c.ratio, grid_n), strict=True)]
                for c in costs
            ]
        )
        bound = max(abs(np.log2(speed)).max(), 0.1)
        im = ax.imshow(
            np.log2(speed), aspect="auto", cmap="RdYlGn", vmin=-bound, vmax=bound, origin="lower"
        )
        ax.set_xticks(range(len(grid_n)), [str(n) for n in grid_n], rotation=60, fontsize=7)
        ax.set_yticks(range(len(costs)), [f"{c.ratio:g}x" for c in costs])
        for i in range(speed.shape[0]):
            for j in range(speed.shape[1]):
                ax.text(j, i, f"{speed[i, j]:.2f}", ha="center", va="center", fontsize=6)
        ax.set_title(f"{name}: predicted speedup (green > 1)")
        ax.set_xlabel("context tokens n")
        ax.set_ylabel("ratio r")
        fig.colorbar(im, ax=ax, label="log2 speedup")
    fig.tight_layout()
    speedup = out / SPEEDUP_PLOT
    fig.savefig(speedup, dpi=110)
    plt.close(fig)
    return [latency, speedup]


# -- command line -----------------------------------------------------------------------------


def _csv(text: str, kind: Callable[[str], Any], what: str) -> list[Any]:
    try:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        msg = f"--{what} must be a comma-separated list of numbers, got {text!r}"
        raise ConfigError(msg) from exc
    if not values:
        msg = f"--{what} is empty"
        raise ConfigError(msg)
    return values


def _build_generator(generator: str, model: str | None) -> Generator:
    if generator == "embedded":
        from ragzip.generators.embedded import EmbeddedGenerator

        return EmbeddedGenerator()
    if not model:
        msg = "--model is needed with a remote --generator URL"
        raise ConfigError(msg)
    from ragzip.generators.openai_compat import OpenAIGenerator

    return OpenAIGenerator(generator, model)


def run_profile(
    *,
    compressors: Sequence[str],
    lengths: Sequence[int],
    ratios: Sequence[float],
    repeats: int,
    generator: Generator,
    out_dir: str | Path,
    expected_output_tokens: int,
    data: str | Path | None = None,
    index: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    max_context_tokens: int | None = None,
    check_repeats: int = 0,
    check_ratios: Sequence[float] | None = None,
) -> tuple[Profile, list[Path]]:
    """Measure, fit, save ``profile.json`` and the plots under ``out_dir``.

    With ``check_repeats`` above 0, the predictions are then checked at ``0.5``, ``1`` and
    ``1.5`` times each break-even length (:func:`ragzip.profile_check.check_profile`) and the
    report is written as ``check.json`` and ``check.md`` beside the profile (only the ratios in
    ``check_ratios`` when given).
    """
    from ragzip.registry import create_compressor

    pool = calibration_pool(data, index, limit=max(50, max(lengths) // 40 + 50))
    built = {name: create_compressor(name, counter=generator.counter) for name in compressors}
    profile = measure(
        generator,
        built,
        lengths=lengths,
        ratios=ratios,
        pool=pool,
        repeats=repeats,
        expected_output_tokens=expected_output_tokens,
        progress=progress,
        max_context_tokens=max_context_tokens,
    )
    out = Path(out_dir)
    path = save_profile(profile, out / JSON_NAME)
    files = [path, *plot_profile(profile, out)]
    if check_repeats > 0:
        from ragzip.profile_check import check_profile, render_check_markdown

        report = check_profile(
            profile,
            generator,
            built,
            pool,
            repeats=check_repeats,
            ratios=check_ratios,
            progress=progress,
        )
        check_json = out / CHECK_JSON
        check_json.write_text(
            json.dumps(_finite(report.to_dict()), indent=2, allow_nan=False) + "\n",
            encoding="utf-8",
        )
        check_md = out / CHECK_MD
        check_md.write_text(render_check_markdown([report]), encoding="utf-8")
        files += [check_json, check_md]
    return profile, files


def profile_command(
    compressors: Annotated[
        str, typer.Option("--compressors", help="Comma-separated registry names.")
    ] = "truncate,mig",
    lengths: Annotated[
        str, typer.Option("--lengths", help="Context lengths in tokens, comma-separated.")
    ] = "256,512,1024,2048",
    ratios: Annotated[
        str, typer.Option("--ratios", help="Compression factors, comma-separated.")
    ] = "2,4",
    repeats: Annotated[int, typer.Option("--repeats", help="Timed runs per point (medians).")] = 3,
    generator: Annotated[
        str,
        typer.Option(
            "--generator", help="'embedded' or the base URL of an OpenAI-compatible server."
        ),
    ] = "embedded",
    model: Annotated[
        str | None, typer.Option("--model", help="Served model name (remote generator).")
    ] = None,
    context_window: Annotated[
        int | None,
        typer.Option("--context-window", help="The remote model's context window in tokens."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Output folder (default: the user cache folder, where auto looks)."
        ),
    ] = None,
    expected_output_tokens: Annotated[
        int, typer.Option("--expected-output-tokens", help="Answer length for end-to-end latency.")
    ] = 32,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="NQ-open jsonl.gz to build contexts from."),
    ] = None,
    index: Annotated[
        Path | None,
        typer.Option(
            "--index",
            help="Build contexts from this index's chunks (default: a corpus shipped with ragzip).",
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            help="Then measure again at 0.5, 1 and 1.5 times each n* and report the error.",
        ),
    ] = False,
    check_repeats: Annotated[
        int, typer.Option("--check-repeats", help="Timed runs per check point.")
    ] = 5,
    check_ratios: Annotated[
        str | None,
        typer.Option("--check-ratios", help="Check only these ratios (comma-separated)."),
    ] = None,
) -> None:
    """Measure when compression speeds up answers: break-even context lengths per compressor."""
    from rich.console import Console

    console = Console(stderr=True)
    try:
        names = _csv(compressors, str, "compressors")
        grid_n = _csv(lengths, int, "lengths")
        grid_r = _csv(ratios, float, "ratios")
        if data is not None and not Path(data).is_file():
            msg = f"no NQ data at {data} (pass --data PATH/nq_open_dev.jsonl.gz)"
            raise ConfigError(msg)
        if check and check_repeats < 1:
            msg = "--check-repeats must be >= 1"
            raise ConfigError(msg)
        gen = _build_generator(generator, model)
        profile, files = run_profile(
            compressors=names,
            lengths=grid_n,
            ratios=grid_r,
            repeats=repeats,
            generator=gen,
            out_dir=out if out is not None else user_profile_path().parent,
            expected_output_tokens=expected_output_tokens,
            data=data,
            index=index,
            progress=lambda line: console.log(line),
            max_context_tokens=context_window,
            check_repeats=check_repeats if check else 0,
            check_ratios=None
            if check_ratios is None
            else _csv(check_ratios, float, "check-ratios"),
        )
    except RagzipError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from exc
    Console().print(summary_table(profile))
    for f in files:
        console.print(f"wrote {f}")


__all__ = [
    "CompressionSample",
    "CompressorCost",
    "GenerationSample",
    "LinearModel",
    "Prediction",
    "Profile",
    "QuadraticModel",
    "build_context",
    "calibration_passages",
    "calibration_pool",
    "candidate_key",
    "find_profile",
    "fit_cost",
    "fit_decode",
    "fit_linear",
    "fit_profile",
    "fit_quadratic",
    "kv_bytes_per_token",
    "load_nq_passages",
    "load_profile",
    "machine_key",
    "measure",
    "plot_profile",
    "profile_command",
    "profile_name",
    "run_profile",
    "save_profile",
    "summary_table",
    "user_profile_path",
]
