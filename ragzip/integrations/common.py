"""What every framework adapter shares: compressors loaded once per process, budgets read from a
user's value, and the figures each compressed document carries.

A compressor given by spec (``"mig"``, ``"sentence:threshold=0.3"``) is built on first use and
kept for the life of the process, one per spec and tokenizer, as the proxy keeps its compressors:
LangChain, LlamaIndex, Haystack and LiteLLM adapters built with the same spec share its model
and its feature cache.
"""

from __future__ import annotations

import math
import threading
from typing import Any, TypeVar

from ragzip.compressor import Compressor
from ragzip.core.errors import CompressionError, ConfigError
from ragzip.core.tokenization import TokenCounter
from ragzip.core.types import Budget, CompressedPassage, CompressionResult

DEFAULT_COMPRESSOR = "mig"
"""The compressor an adapter uses when given none."""
DEFAULT_BUDGET = "4x"
"""The budget an adapter holds context to when given none."""
METADATA_PREFIX = "ragzip_"
"""Prefix of the metadata keys adapters add to each compressed document."""

T = TypeVar("T")

_lock = threading.Lock()
_counters: dict[str, TokenCounter] = {}
_compressors: dict[tuple[str, str], Compressor] = {}


def as_budget(value: Budget | str | int) -> Budget:
    """A budget from a :class:`~ragzip.core.types.Budget`, a string (``"256"``, ``"4x"``) or a
    token count.

    Raises:
        ConfigError: Anything else, or a string that is not a budget.
    """
    if isinstance(value, Budget):
        return value
    if isinstance(value, str):
        return Budget.parse(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return Budget.tokens(value)
    msg = f"budget must be a Budget, a string like '256' or '4x', or an int, got {value!r}"
    raise ConfigError(msg)


def require(value: T, kind: type, field: str, what: str) -> T:
    """``value`` when it is a ``kind``.

    Raises:
        ConfigError: It is not (naming ``field``, ``what`` it must be, and what it is).
    """
    if not isinstance(value, kind):
        msg = f"{field} must be {what}, got {type(value).__name__}"
        raise ConfigError(msg)
    return value


def token_counter(tokenizer: str | None = None) -> TokenCounter:
    """The token counter budgets are counted in, loaded once per process.

    Args:
        tokenizer: ``None`` or ``"smollm2"`` (the embedded SmolLM2), ``"gemma3-270m"``, or the
            folder of a Hugging Face tokenizer (the generator's).

    Raises:
        ConfigError: No tokenizer loads from that folder.
        MissingDependencyError: The ``models`` extra is not installed.
    """
    key = tokenizer or "smollm2"
    with _lock:
        found = _counters.get(key)
        if found is None:
            found = _counters[key] = _load_counter(key)
        return found


def _load_counter(name: str) -> TokenCounter:
    from ragzip import weights as models

    if name == "smollm2":
        return models.smollm2_counter()
    if name == "gemma3-270m":
        from ragzip.core.tokenization import HFTokenCounter
        from ragzip.generators.local import load_tokenizer

        return HFTokenCounter(load_tokenizer(name), name=name)
    return models.counter_from_folder(name)


def shared_compressor(spec: str = DEFAULT_COMPRESSOR, tokenizer: str | None = None) -> Compressor:
    """The compressor of ``spec`` counting in ``tokenizer``, built once per process.

    Args:
        spec: ``NAME`` or ``NAME:KEY=VALUE;...``, as on the command line.
        tokenizer: See :func:`token_counter`.

    Raises:
        RegistryError: An unknown compressor name.
        ConfigError: A malformed spec or a bad setting.
        MissingDependencyError: The compressor's extra is not installed.
    """
    from ragzip.registry import create_compressor, parse_spec

    if not isinstance(spec, str):
        msg = f"compressor must be a registry spec such as 'mig', got {spec!r}"
        raise ConfigError(msg)
    parse_spec(spec)  # a malformed spec fails before anything loads
    key = (spec, tokenizer or "smollm2")
    with _lock:
        found = _compressors.get(key)
    if found is not None:
        return found
    counter = token_counter(tokenizer)
    built = create_compressor(spec, counter=counter)
    with _lock:  # two first calls may both build; the first one stored is the one shared
        return _compressors.setdefault(key, built)


def require_text(result: CompressionResult, framework: str) -> None:
    """Refuse a soft result (vectors), which no document can carry.

    Raises:
        CompressionError: ``result`` holds embeddings.
    """
    if result.embeddings is not None:
        msg = (
            f"compressor {result.compressor!r} returns embeddings, not text; "
            f"a {framework} adapter needs a text compressor"
        )
        raise CompressionError(msg)


def figures(result: CompressionResult, kept: CompressedPassage) -> dict[str, Any]:
    """The metadata a compressed document carries (keys start with :data:`METADATA_PREFIX`).

    ``compressor``; ``original_tokens`` / ``compressed_tokens`` and ``ratio`` of this document;
    ``context_original_tokens`` / ``context_compressed_tokens`` / ``budget_tokens`` of the whole
    context it was compressed with.
    """
    values: dict[str, Any] = {
        "compressor": result.compressor,
        "original_tokens": kept.original_tokens,
        "compressed_tokens": kept.tokens,
        "ratio": kept.original_tokens / kept.tokens if kept.tokens else math.inf,
        "context_original_tokens": result.original_tokens,
        "context_compressed_tokens": result.compressed_tokens,
        "budget_tokens": result.budget_tokens,
    }
    return {f"{METADATA_PREFIX}{k}": v for k, v in values.items()}


def dropped_spans(kept: CompressedPassage) -> list[list[int]]:
    """``[start, end)`` character ranges of the original text that were not kept."""
    out: list[list[int]] = []
    at = 0
    for start, end in kept.spans:
        if start > at:
            out.append([at, start])
        at = max(at, end)
    if at < len(kept.passage.text):
        out.append([at, len(kept.passage.text)])
    return out
