"""Settings dataclasses checked from their declaration.

A field's annotation says what it holds (``int``, ``float``, ``bool``, ``str``, a ``Literal`` of
choices, ``X | None``) and its bounds ride along as annotated-types markers::

    batch_size: Annotated[int, Ge(1)] = 16
    threshold: Annotated[float, Interval(ge=0, le=1)] | None = None

:func:`check_fields`, called from a dataclass's ``__post_init__``, checks an instance against
both, so that method keeps only the rules tying fields together; a dataclass deriving from
:class:`Checked` gets that ``__post_init__`` without writing one; :mod:`ragzip.core.coerce` reads
the same annotations to type values written as text. Numbers are finite, an ``int`` is never a
``bool``, a ``float`` accepts an ``int``, a string field accepts a path (``pathlib.Path``) and
keeps its text. Other annotations (paths, tuples, objects) are not
checked here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import os
import types
import typing
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Union

from annotated_types import BaseMetadata, Ge, GroupedMetadata, Gt, Interval, Le, Lt

from ragzip.core.errors import ConfigError

__all__ = [
    "Checked",
    "Count",
    "Ge",
    "Gt",
    "Interval",
    "Le",
    "Lt",
    "NonNegative",
    "Positive",
    "PositiveInt",
    "Share",
    "check_fields",
]

PositiveInt = Annotated[int, Ge(1)]
"""An int >= 1 (sizes, steps, threads)."""
Count = Annotated[int, Ge(0)]
"""An int >= 0 (0 often meaning none or no limit)."""
Positive = Annotated[float, Gt(0)]
"""A finite number > 0 (learning rates, durations)."""
NonNegative = Annotated[float, Ge(0)]
"""A finite number >= 0 (weights, seconds)."""
Share = Annotated[float, Interval(ge=0, le=1)]
"""A finite number in [0, 1]."""

_BOUNDS: dict[type, tuple[str, str, Any]] = {
    Ge: ("ge", ">=", operator.ge),
    Gt: ("gt", ">", operator.gt),
    Le: ("le", "<=", operator.le),
    Lt: ("lt", "<", operator.lt),
}
_WHAT = {int: "an int", float: "a finite number", bool: "true or false", str: "a string"}


class Checked:
    """Base of a settings dataclass whose fields are checked on creation (:func:`check_fields`).

    A subclass with rules tying fields together overrides ``__post_init__`` and calls
    ``super().__post_init__()`` where its own rules need the fields checked first.
    """

    __slots__ = ()

    def __post_init__(self) -> None:
        check_fields(self)


def check_fields(obj: Any) -> None:
    """Check every field of the dataclass instance ``obj`` against its annotation.

    Raises:
        ConfigError: A value of the wrong type, outside its bounds or not one of its choices;
            the message names the field, what it must be and the value given.
    """
    hints: dict[str, Any] = _hints(obj.__class__)
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if isinstance(value, os.PathLike) and _base_kind(hints[field.name]) is str:
            value = os.fspath(value)  # a folder given as a Path is kept as its text
            object.__setattr__(obj, field.name, value)
        _check(field.name, value, hints[field.name])


def _base_kind(hint: Any) -> Any:
    """The one kind ``hint`` holds, under ``Annotated`` and ``| None`` (``None`` for several)."""
    if typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (Union, types.UnionType):
        kinds = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _base_kind(kinds[0]) if len(kinds) == 1 else None
    return hint


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _check(name: str, value: Any, hint: Any) -> None:
    bounds: list[BaseMetadata] = []
    if typing.get_origin(hint) is Annotated:
        hint, *extras = typing.get_args(hint)
        for extra in extras:
            grouped = isinstance(extra, GroupedMetadata)
            bounds.extend(typing.cast("Iterable[BaseMetadata]", extra) if grouped else [extra])
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return
        kinds = [arg for arg in args if arg is not type(None)]
        if len(kinds) == 1:
            _check(name, value, Annotated[(kinds[0], *bounds)] if bounds else kinds[0])
        return
    if origin is Literal:
        if value not in args or isinstance(value, bool) != isinstance(args[0], bool):
            choices = ", ".join(str(choice) for choice in args)
            msg = f"{name} must be one of {choices}, got {value!r}"
            raise ConfigError(msg)
        return
    if hint in _WHAT and not _is(value, hint):
        msg = f"{name} must be {_WHAT[hint]}, got {value!r}"
        raise ConfigError(msg)
    if bounds:
        _check_bounds(name, value, hint, bounds)


def _is(value: Any, kind: type) -> bool:
    if kind is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _check_bounds(name: str, value: Any, kind: Any, bounds: list[BaseMetadata]) -> None:
    parts: list[str] = []
    ok = True
    for bound in bounds:
        attr, sign, test = _BOUNDS[type(bound)]
        limit = getattr(bound, attr)
        parts.append(f"{sign} {limit}")
        ok = ok and test(value, limit)
    if not ok:
        what = _WHAT.get(kind, "a value")
        msg = f"{name} must be {what} {' and '.join(parts)}, got {value!r}"
        raise ConfigError(msg)
