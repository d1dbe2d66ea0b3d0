"""JSON files and JSON lines (one object per non-blank line), with errors that name the file."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ragzip.core.errors import InputError, RagzipError


def load_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in the file ``path``.

    Raises:
        OSError: The file cannot be read.
        ValueError: It is not JSON, or holds something other than an object.
    """
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        msg = f"expected a JSON object, got {type(doc).__name__}"
        raise ValueError(msg)
    return doc


def read_json_object(path: Path, what: str, error: type[RagzipError]) -> dict[str, Any]:
    """:func:`load_json_object`, failing with ``error`` ("cannot read ``what`` ``path``: why")."""
    try:
        return load_json_object(path)
    except (OSError, ValueError) as exc:
        msg = f"cannot read {what} {path}: {exc}"
        raise error(msg) from exc


def json_object_or_none(path: Path) -> dict[str, Any] | None:
    """:func:`load_json_object`, or ``None`` where it fails (a file that may be absent or stale)."""
    try:
        return load_json_object(path)
    except (OSError, ValueError):
        return None


def json_objects(lines: Iterable[str], where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The objects of ``lines`` with their 1-based line numbers; blank lines are skipped.

    Args:
        lines: The lines of a JSON-lines file.
        where: The file, as error messages name it.

    Raises:
        InputError: A line that is not valid JSON, or not a JSON object.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            msg = f"{where}:{number}: not valid JSON ({exc.msg})"
            raise InputError(msg) from exc
        if not isinstance(row, dict):
            msg = f"{where}:{number}: expected a JSON object, got {type(row).__name__}"
            raise InputError(msg)
        yield number, row
