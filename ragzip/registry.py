"""A lazy, explicit registry of compressors: name → import path + the pip extra it needs.

Nothing is imported until a compressor is asked for. An unknown name raises
:class:`~ragzip.errors.RegistryError` listing the valid names; a missing optional dependency
raises :class:`~ragzip.errors.MissingDependencyError` naming ``pip install 'ragzip[extra]'``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ragzip.compressor import Compressor
from ragzip.errors import ConfigError, MissingDependencyError, RegistryError
from ragzip.tokenization import TokenCounter


@dataclass(frozen=True)
class Entry:
    """A registered compressor.

    Attributes:
        name: Registry name (``ragzip.create_compressor(name)``).
        target: ``"module:Class"`` import path.
        extra: The ``ragzip[extra]`` its dependencies come from, or ``None`` for core only.
        summary: One line for ``ragzip compressors`` listings.
    """

    name: str
    target: str
    extra: str | None
    summary: str


_ENTRIES: dict[str, Entry] = {}


def register(name: str, target: str, *, extra: str | None = None, summary: str = "") -> None:
    """Register a compressor class under ``name`` (``target`` is ``"module:Class"``)."""
    if ":" not in target:
        msg = f"target must look like 'package.module:Class', got {target!r}"
        raise ConfigError(msg)
    _ENTRIES[name] = Entry(name=name, target=target, extra=extra, summary=summary)


def available() -> list[str]:
    """Names of all registered compressors, sorted."""
    return sorted(_ENTRIES)


def entries() -> list[Entry]:
    """All registry entries, sorted by name."""
    return [_ENTRIES[n] for n in available()]


def get_entry(name: str) -> Entry:
    """The entry for ``name``; raises RegistryError listing valid names."""
    try:
        return _ENTRIES[name]
    except KeyError:
        msg = f"unknown compressor {name!r}; choose one of: {', '.join(available())}"
        raise RegistryError(msg) from None


def get_class(name: str) -> type[Compressor]:
    """Import and return the compressor class registered as ``name``."""
    entry = get_entry(name)
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            raise  # our own module is missing: a packaging bug, not a missing extra
        hint = f"pip install 'ragzip[{entry.extra}]'" if entry.extra else "reinstall ragzip"
        msg = f"compressor {name!r} needs the package {exc.name!r}: {hint}"
        raise MissingDependencyError(msg, name=exc.name) from exc
    cls = getattr(module, attr)
    if not (isinstance(cls, type) and issubclass(cls, Compressor)):
        msg = f"{entry.target} is not a Compressor subclass"
        raise ConfigError(msg)
    return cls


def create_compressor(
    name: str,
    *,
    counter: TokenCounter,
    config: Mapping[str, Any] | Any | None = None,
    **components: Any,
) -> Compressor:
    """Build a registered compressor.

    Args:
        name: Registry name, e.g. ``"mig"``.
        counter: Token counter of the generator's tokenizer.
        config: The compressor's config dataclass, or a mapping of its fields.
        **components: Injected models/tokenizers the compressor accepts (e.g. ``embedder``).

    Raises:
        RegistryError: Unknown name (lists the valid ones).
        MissingDependencyError: The compressor's extra is not installed.
        ConfigError: Unknown or invalid config keys.
    """
    cls = get_class(name)
    config_cls = getattr(cls, "Config", None)
    kwargs: dict[str, Any] = dict(components)
    if config_cls is not None:
        kwargs["config"] = build_config(config_cls, config)
    elif config:
        msg = f"compressor {name!r} takes no configuration, got {config!r}"
        raise ConfigError(msg)
    return cls(counter=counter, **kwargs)


def build_config(config_cls: type, config: Mapping[str, Any] | Any | None) -> Any:
    """Make ``config_cls`` from an instance, a mapping of its fields, or ``None`` (defaults)."""
    if config is None:
        return config_cls()
    if isinstance(config, config_cls):
        return config
    if not isinstance(config, Mapping):
        msg = f"config must be a {config_cls.__name__} or a mapping, got {type(config).__name__}"
        raise ConfigError(msg)
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        msg = (
            f"unknown {config_cls.__name__} keys {unknown}; valid keys: {', '.join(sorted(known))}"
        )
        raise ConfigError(msg)
    try:
        return config_cls(**config)
    except (TypeError, ValueError) as exc:
        msg = f"invalid {config_cls.__name__}: {exc}"
        raise ConfigError(msg) from exc


register(
    "identity",
    "ragzip.compressors.identity:IdentityCompressor",
    summary="whole passages in retrieval order while they fit (the uncompressed baseline)",
)
register(
    "truncate",
    "ragzip.compressors.truncate:TruncateCompressor",
    summary="keep the head of each passage, budget shared evenly",
)
register(
    "random",
    "ragzip.compressors.random_select:RandomCompressor",
    summary="seeded random sentences up to the budget (a baseline)",
)
register(
    "mig",
    "ragzip.compressors.mig:MIGCompressor",
    extra="models",
    summary="sentences by relevance minus redundancy (COMI's coarse MIG stage), training-free",
)
register(
    "token",
    "ragzip.compressors.token:TokenCompressor",
    extra="models",
    summary="words kept by a query-aware MiniLM token classifier (LLMLingua-2), one threshold",
)
register(
    "auto",
    "ragzip.policy:AutoCompressor",
    extra="models",
    summary="compress only above the profiled break-even length, with the fastest candidate "
    "that meets a quality floor",
)
register(
    "sentence",
    "ragzip.compressors.sentence:SentenceCompressor",
    extra="models",
    summary="whole sentences a trained context-aware classifier (EXIT) finds useful",
)
