"""JSON lines: objects with their line numbers, blank lines skipped, bad lines named."""

from __future__ import annotations

import pytest

from ragzip.core.errors import InputError
from ragzip.core.jsonl import json_objects


def test_objects_with_line_numbers() -> None:
    lines = ['{"a": 1}', "", "   ", '{"b": [2]}']
    assert list(json_objects(lines, "f.jsonl")) == [(1, {"a": 1}), (4, {"b": [2]})]


@pytest.mark.parametrize(
    ("line", "match"),
    [("{oops", r"f\.jsonl:2: not valid JSON"), ("[1]", r"f\.jsonl:2: expected a JSON object")],
)
def test_bad_lines_are_named(line: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        list(json_objects(['{"ok": true}', line], "f.jsonl"))
