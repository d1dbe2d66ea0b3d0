"""JSON files and lines: objects read back, bad files and lines named."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragzip.core.errors import InputError, ModelError
from ragzip.core.jsonl import json_object_or_none, json_objects, read_json_object


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


def test_json_files_hold_one_object(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"format": "x", "n": [1, 2]}', encoding="utf-8")
    assert read_json_object(good, "demo", ModelError) == {"format": "x", "n": [1, 2]}
    assert json_object_or_none(good) == {"format": "x", "n": [1, 2]}
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    (tmp_path / "broken.json").write_text("{oops", encoding="utf-8")
    for name, why in (("list", "expected a JSON object, got list"), ("broken", ""), ("gone", "")):
        path = tmp_path / f"{name}.json"
        assert json_object_or_none(path) is None
        with pytest.raises(ModelError, match=f"cannot read the demo config {path}: {why}"):
            read_json_object(path, "the demo config", ModelError)
