"""A lazy, explicit registry of compressors: name → import path + the pip extra it needs.

Nothing is imported until a compressor is asked for. An unknown name raises
:class:`~ragzip.core.errors.RegistryError` listing the valid names; a missing optional dependency
raises :class:`~ragzip.core.errors.MissingDependencyError` naming ``pip install 'ragzip[extra]'``.

A compressor *spec* names a compressor and, optionally, settings of its ``Config``, as text for
command lines and settings files::

    NAME[:KEY=VALUE[;KEY=VALUE...]]      e.g.  sentence:mode=budgeted;threshold=0.4

Several specs form a comma-separated list (``sentence:mode=adaptive,mig``), so values hold no
``,`` or ``;``. Values are read by the field's declared type: ``true``/``false`` for booleans,
numbers for ``int``/``float``, ``none`` for optional fields, one of the choices for ``Literal``
fields, ``|``-separated items for tuples. :func:`parse_spec` reads one, :func:`parse_specs` a
list; :func:`create_compressor` accepts a spec wherever it accepts a name.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ragzip.compressor import Compressor
from ragzip.core.coerce import coerce_options
from ragzip.core.errors import ConfigError, MissingDependencyError, RegistryError
from ragzip.core.tokenization import TokenCounter


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


SPEC_SEPARATOR = ","
"""Separates specs in a list (``--compressors``)."""
OPTION_SEPARATOR = ";"
"""Separates ``key=value`` settings within one spec."""


@dataclass(frozen=True)
class CompressorSpec:
    """A registered compressor name with config settings still as text.

    Attributes:
        name: Registry name.
        options: ``key → value`` settings in the order given (values not yet typed).
    """

    name: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """The spec in canonical text form, e.g. ``sentence:mode=budgeted;threshold=0.4``."""
        if not self.options:
            return self.name
        return f"{self.name}:" + OPTION_SEPARATOR.join(f"{k}={v}" for k, v in self.options)

    def __str__(self) -> str:
        return self.label

    def config_values(self) -> dict[str, Any]:
        """The settings typed by the compressor's ``Config`` fields (imports the compressor).

        Raises:
            RegistryError: Unknown compressor.
            MissingDependencyError: Its extra is not installed.
            ConfigError: A key the ``Config`` lacks, or a value of the wrong type.
        """
        cls = get_class(self.name)
        config_cls = getattr(cls, "Config", None)
        if config_cls is None:
            if self.options:
                msg = f"compressor {self.name!r} takes no configuration, got {self.label!r}"
                raise ConfigError(msg)
            return {}
        try:
            return coerce_options(config_cls, dict(self.options))
        except ConfigError as exc:
            msg = f"compressor spec {self.label!r}: {exc}"
            raise ConfigError(msg) from exc

    def build_config(self) -> Any:
        """The compressor's typed ``Config`` (``None`` for one without), checked."""
        config_cls = getattr(get_class(self.name), "Config", None)
        values = self.config_values()
        if config_cls is None:
            return None
        try:
            return build_config(config_cls, values)
        except ConfigError as exc:
            msg = f"compressor spec {self.label!r}: {exc}"
            raise ConfigError(msg) from exc


def parse_spec(text: str | CompressorSpec) -> CompressorSpec:
    """Read ``NAME[:KEY=VALUE[;KEY=VALUE...]]`` (see the module docstring).

    Only the syntax and the name are checked here; :meth:`CompressorSpec.build_config` types
    and checks the values.

    Raises:
        ConfigError: Malformed spec (empty name or key, missing ``=``, repeated key, a ``,``).
        RegistryError: Unknown compressor name (lists the valid ones).
    """
    if isinstance(text, CompressorSpec):
        return text
    if not isinstance(text, str):
        msg = f"a compressor spec is a string, got {type(text).__name__}"
        raise ConfigError(msg)
    raw = text.strip()
    name, colon, rest = raw.partition(":")
    name = name.strip()
    if not name:
        msg = f"compressor spec {text!r} has no name; write NAME or NAME:KEY=VALUE;KEY=VALUE"
        raise ConfigError(msg)
    if "=" in name:
        msg = (
            f"{raw!r} is not a compressor name; a spec is NAME:KEY=VALUE;KEY=VALUE "
            f"(settings of one compressor are separated by {OPTION_SEPARATOR!r}, "
            f"compressors by {SPEC_SEPARATOR!r})"
        )
        raise ConfigError(msg)
    if SPEC_SEPARATOR in raw:
        msg = (
            f"compressor spec {raw!r} holds {SPEC_SEPARATOR!r}; separate settings with "
            f"{OPTION_SEPARATOR!r}, e.g. sentence:mode=adaptive;threshold=0.4"
        )
        raise ConfigError(msg)
    get_entry(name)
    options: dict[str, str] = {}
    if colon:
        items = [item.strip() for item in rest.split(OPTION_SEPARATOR)]
        for item in items:
            if not item:
                continue
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not eq or not key or not value:
                msg = f"compressor spec {raw!r}: settings look like key=value, got {item!r}"
                raise ConfigError(msg)
            if key in options:
                msg = f"compressor spec {raw!r} sets {key!r} twice"
                raise ConfigError(msg)
            options[key] = value
    return CompressorSpec(name=name, options=tuple(options.items()))


def parse_specs(text: str) -> list[CompressorSpec]:
    """Read a comma-separated list of specs (repeats removed, order kept).

    Raises:
        ConfigError: An empty list or a malformed spec.
        RegistryError: An unknown compressor name.
    """
    specs: dict[str, CompressorSpec] = {}
    for item in text.split(SPEC_SEPARATOR):
        if item.strip():
            spec = parse_spec(item)
            specs.setdefault(spec.label, spec)
    if not specs:
        msg = f"give at least one compressor (a {SPEC_SEPARATOR!r}-separated list of specs)"
        raise ConfigError(msg)
    return list(specs.values())


def create_compressor(
    name: str | CompressorSpec,
    *,
    counter: TokenCounter,
    config: Mapping[str, Any] | Any | None = None,
    **components: Any,
) -> Compressor:
    """Build a registered compressor.

    Args:
        name: Registry name, e.g. ``"mig"``, or a spec such as ``"sentence:mode=budgeted"``
            (:func:`parse_spec`).
        counter: Token counter of the generator's tokenizer.
        config: The compressor's config dataclass, or a mapping of its fields. Settings in a
            spec are applied on top of it; a key set in both is an error.
        **components: Injected models/tokenizers the compressor accepts (e.g. ``embedder``).

    Raises:
        RegistryError: Unknown name (lists the valid ones).
        MissingDependencyError: The compressor's extra is not installed.
        ConfigError: A malformed spec, or unknown or invalid config keys.
    """
    cls, built = resolve_config(name, config)
    kwargs: dict[str, Any] = dict(components)
    if built is not None:
        kwargs["config"] = built
    return cls(counter=counter, **kwargs)


def generator_config(name: str | CompressorSpec, generator: str | None) -> dict[str, Any]:
    """Config that points a soft compressor at ``generator`` (the model its vectors are for),
    unless its spec names one itself; empty for every other compressor.

    Raises:
        RegistryError, ConfigError: See :func:`parse_spec`.
    """
    spec = parse_spec(name) if isinstance(name, str) else name
    fields = getattr(getattr(get_class(spec.name), "Config", None), "__dataclass_fields__", {})
    if generator and "generator" in fields and "generator" not in dict(spec.options):
        return {"generator": generator}
    return {}


def resolve_config(
    name: str | CompressorSpec, config: Mapping[str, Any] | Any | None = None
) -> tuple[type[Compressor], Any | None]:
    """The compressor class of a spec and its typed config, without building any model.

    Commands call it first, so a misspelt name or setting fails in a moment, before models
    load.

    Raises:
        RegistryError: Unknown name (lists the valid ones).
        MissingDependencyError: The compressor's extra is not installed.
        ConfigError: A malformed spec, or unknown or invalid config keys.
    """
    spec = parse_spec(name)
    cls = get_class(spec.name)
    config_cls = getattr(cls, "Config", None)
    if config_cls is not None:
        return cls, _merge(config_cls, config, spec)
    if config or spec.options:
        msg = f"compressor {spec.name!r} takes no configuration, got {config or spec.label!r}"
        raise ConfigError(msg)
    return cls, None


def _merge(config_cls: type, config: Mapping[str, Any] | Any | None, spec: CompressorSpec) -> Any:
    values = spec.config_values()
    if not values:
        return build_config(config_cls, config)
    if config is None:
        return build_config(config_cls, values)
    if isinstance(config, config_cls):
        current = {f.name: getattr(config, f.name) for f in dataclasses.fields(config_cls)}
        return build_config(config_cls, {**current, **values})
    if isinstance(config, Mapping):
        both = sorted(set(config) & set(values))
        if both:
            msg = f"{spec.label!r} and the config both set {both}"
            raise ConfigError(msg)
        return build_config(config_cls, {**config, **values})
    return build_config(config_cls, config)  # raises the type error


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


_BUILT_IN: dict[str, tuple[str, str]] = {
    "identity": (
        "identity:IdentityCompressor",
        "whole passages in retrieval order while they fit (the uncompressed baseline)",
    ),
    "truncate": (
        "truncate:TruncateCompressor",
        "keep the head of each passage, budget shared evenly",
    ),
    "random": (
        "random_select:RandomCompressor",
        "seeded random sentences up to the budget (a baseline)",
    ),
    "mig": (
        "mig:MIGCompressor",
        "sentences by relevance minus redundancy (COMI's coarse MIG stage), training-free",
    ),
    "token": (
        "token:TokenCompressor",
        "words kept by a query-aware MiniLM token classifier (LLMLingua-2), one threshold",
    ),
    "auto": (
        "auto:AutoCompressor",
        "compress only above the profiled break-even length, with the fastest candidate that "
        "meets a quality floor",
    ),
    "sentence": (
        "sentence:SentenceCompressor",
        "whole sentences a trained context-aware classifier (EXIT) finds useful",
    ),
    "ensemble": (
        "ensemble:EnsembleCompressor",
        "whole sentences by the sentence classifier and MiniLM together, the retriever's order "
        "as a prior",
    ),
    "cascade": (
        "cascade:CascadeCompressor",
        "sentences by MIG (or the sentence classifier, or both), then words inside them by the "
        "token classifier: coarse to fine, for 8x and beyond",
    ),
    "xrag": (
        "xrag:XragCompressor",
        "one soft token per passage: its MiniLM embedding projected into SmolLM2 (xRAG)",
    ),
    "merge": (
        "merge:MergeCompressor",
        "soft tokens: SmolLM2 token embeddings merged per sentence, budget shared by MIG (COMI); "
        "needs a generator that reads embeddings",
    ),
}
"""The compressors ragzip ships: name → (``module:Class`` under ``ragzip.compressors``, summary)."""
_CORE_ONLY = frozenset({"identity", "truncate", "random"})
"""Built-in compressors that need no extra; the others need ``ragzip[models]``."""

for _name, (_target, _summary) in _BUILT_IN.items():
    _extra = None if _name in _CORE_ONLY else "models"
    register(_name, f"ragzip.compressors.{_target}", extra=_extra, summary=_summary)
