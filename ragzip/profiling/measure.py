"""Measuring one generator and the compressors on this machine: contexts of exact length, TTFT,
decode and compression timings, and the fitted :class:`~ragzip.profiling.profile.Profile`."""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragzip.cache.feature_cache import FeatureCache, forget_remembered
from ragzip.core import machine as host
from ragzip.core.errors import ConfigError, InputError
from ragzip.core.types import Budget, Passage
from ragzip.experiments.reporting import finite_median
from ragzip.profiling.fit import LinearModel, fit_cost, fit_decode, fit_linear, fit_quadratic
from ragzip.profiling.profile import Profile
from ragzip.profiling.samples import CompressionSample, CompressorCost, GenerationSample
from ragzip.prompts import build_messages

if TYPE_CHECKING:
    from ragzip.compressor import Compressor
    from ragzip.core.tokenization import TokenCounter
    from ragzip.core.types import CompressionResult
    from ragzip.generators.base import Generator

logger = logging.getLogger(__name__)

# -- measuring --------------------------------------------------------------------------------


def load_nq_passages(path: str | Path, *, limit: int = 400) -> list[Passage]:
    """Gold passages of NQ-open questions, in file order, with the question in metadata."""
    from ragzip.experiments.datasets import read_nq

    path = Path(path)
    if not path.is_file():
        msg = f"no NQ data at {path} (expected nq_open_dev.jsonl.gz)"
        raise ConfigError(msg)
    try:
        examples = read_nq(path, limit=limit)
    except InputError as exc:
        raise ConfigError(str(exc)) from exc
    return [Passage(text=e.text, title=e.title, metadata={"q": e.question}) for e in examples]


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
    return prompt_tokens, finite_median(ttfts), finite_median(decode)


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
        result.compressed_tokens, prompt_tokens, finite_median(ttfts), math.nan, repeats
    )


def forget_features(comp: Compressor) -> FeatureCache | None:
    """Forget what ``comp`` remembers of earlier requests (:func:`forget_remembered`) and return
    its feature cache, or ``None`` when it keeps none."""
    forget_remembered(comp)
    cache = getattr(comp, "features", None)
    return cache if isinstance(cache, FeatureCache) else None


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
                warm: list[float] = []
                kept = 0
                budget = Budget.compression(r)
                for _ in range(repeats):
                    cache = forget_features(comp)  # cold: first sight of these passages
                    res = comp.compress(query, contexts[n], budget=budget)
                    secs.append(float(res.timings["total"]))
                    kept = kept_context_tokens(res)
                    if cache is not None:  # warm: the same request, every feature cached
                        again = comp.compress(query, contexts[n], budget=budget)
                        warm.append(float(again.timings["total"]))
                comp_samples.append(
                    CompressionSample(
                        name,
                        r,
                        n,
                        kept,
                        finite_median(secs),
                        repeats,
                        finite_median(warm) if warm else None,
                    )
                )
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
        peak_rss=host.peak_rss_bytes(),
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
            warm_cost=_warm_line(ss),
            achieved_ratio=finite_median(
                s.context_tokens / s.compressed_tokens for s in ss if s.compressed_tokens
            ),
        )
        for (name, ratio), ss in groups.items()
    )
    return Profile(
        machine=machine or host.machine_key(),
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


def _warm_line(samples: Sequence[CompressionSample]) -> LinearModel | None:
    warm = [(s.context_tokens, s.warm_seconds) for s in samples if s.warm_seconds is not None]
    if not warm:
        return None
    return fit_cost([n for n, _ in warm], [t for _, t in warm], relative=True)
