"""JSON lines: one object per non-blank line, with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from ragzip.core.errors import InputError


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
