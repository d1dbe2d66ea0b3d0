"""Setting values written as text (command lines, settings files), typed by the fields of a
compressor's Config: true/false for booleans, numbers for int/float, none
for optional fields, one of the choices for Literal fields, |-separated items for tuples."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from ragzip.core.errors import ConfigError

_NONE_WORDS = ("none", "null")
_TRUE_WORDS = ("true", "1", "yes", "on")
_FALSE_WORDS = ("false", "0", "no", "off")


def coerce_options(config_cls: type, options: Mapping[str, str]) -> dict[str, Any]:
    """Type text ``options`` by the fields of the dataclass ``config_cls``.

    Raises:
        ConfigError: A key ``config_cls`` lacks (the valid ones listed) or a value that does not
            read as the field's type.
    """
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - fields)
    if unknown and not fields:
        msg = f"{config_cls.__qualname__} takes no settings, got {unknown}"
        raise ConfigError(msg)
    if unknown:
        msg = (
            f"unknown {config_cls.__qualname__} keys {unknown}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
        raise ConfigError(msg)
    try:
        hints = typing.get_type_hints(config_cls)
    except (NameError, TypeError) as exc:
        msg = f"cannot read the field types of {config_cls.__name__}: {exc}"
        raise ConfigError(msg) from exc
    return {key: _coerce(value, hints[key], key) for key, value in options.items()}


def _coerce(value: str, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    word = value.strip().lower()
    if origin in (Union, types.UnionType):
        if type(None) in args and word in _NONE_WORDS:
            return None
        problems: list[str] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                problems.append(str(exc))
        msg = "; ".join(problems) or f"{key}: cannot read {value!r}"
        raise ConfigError(msg)
    if origin is Literal:
        for choice in args:
            if str(choice) == value:
                return choice
        msg = f"{key} must be one of {', '.join(map(str, args))}; got {value!r}"
        raise ConfigError(msg)
    if origin is tuple:
        item_type = args[0] if args else str
        return tuple(_coerce(v, item_type, key) for v in value.split("|") if v != "")
    if hint is bool:
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            return word in _TRUE_WORDS
        msg = f"{key} must be true or false, got {value!r}"
        raise ConfigError(msg)
    if hint in (int, float):
        try:
            return hint(value)
        except ValueError:
            what = "an integer" if hint is int else "a number"
            msg = f"{key} must be {what}, got {value!r}"
            raise ConfigError(msg) from None
    if hint in (str, Any):
        return value
    msg = f"{key} (of type {hint}) cannot be set from a spec"
    raise ConfigError(msg)
