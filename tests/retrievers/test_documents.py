from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ragzip.core.errors import InputError
from ragzip.retrievers.documents import load_documents


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_markdown_title_is_first_heading(tmp_path: Path) -> None:
    md = write(
        tmp_path / "guide.md",
        "---\ntitle: ignored\n---\n```\n# not a heading\n```\nIntro.\n\n## Getting started ##\n"
        "Body text.\n# Later\n",
    )
    [doc] = load_documents([md])
    assert doc.title == "Getting started"
    assert doc.text == md.read_text(encoding="utf-8")
    assert doc.metadata["source"] == str(md)
    assert doc.id == md.resolve().as_posix()


def test_title_falls_back_to_file_stem(tmp_path: Path) -> None:
    write(tmp_path / "notes.txt", "# looks like a heading but this is text\n")
    write(tmp_path / "plain.md", "No heading here.\n")
    write(tmp_path / "page.rst", "Title\n=====\n\nBody.\n")
    docs = {Path(d.id).name: d for d in load_documents([tmp_path])}
    assert docs["notes.txt"].title == "notes"
    assert docs["plain.md"].title == "plain"
    assert docs["page.rst"].title == "page"


def test_folders_are_walked_recursively_skipping_hidden_binary_and_other_files(
    tmp_path: Path,
) -> None:
    write(tmp_path / "a.md", "Alpha.")
    write(tmp_path / "sub" / "deeper" / "b.markdown", "Beta.")
    write(tmp_path / "sub" / "c.txt", "Gamma.")
    write(tmp_path / ".hidden.md", "Hidden file.")
    write(tmp_path / ".git" / "d.md", "Hidden folder.")
    write(tmp_path / "image.md", b"\x89PNG\r\n\x1a\n\x00\x00binary")
    write(tmp_path / "latin1.txt", "caf\xe9".encode("latin-1"))
    write(tmp_path / "code.py", "print('not a document')")
    write(tmp_path / "empty.txt", "   \n")
    docs = load_documents([tmp_path])
    assert sorted(d.text for d in docs) == ["Alpha.", "Beta.", "Gamma."]


def test_jsonl_records(tmp_path: Path) -> None:
    lines = [
        {"text": "First record.", "title": "One", "id": "r1"},
        {"text": "Second record."},
        {"text": "   "},
    ]
    path = write(tmp_path / "corpus.jsonl", "\n".join(json.dumps(x) for x in lines[:2]) + "\n\n")
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(lines[2]) + "\n")
    docs = load_documents([path])
    assert [(d.id, d.title, d.text) for d in docs] == [
        ("r1", "One", "First record."),
        (f"{path}:2", "corpus", "Second record."),
    ]
    assert docs[1].metadata["line"] == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "ok"}\n{not json\n', ":2: not valid JSON"),
        ('["a list"]\n', "expected a JSON object"),
        ('{"title": "no text"}\n', "needs a string 'text'"),
        ('{"text": "x", "title": 3}\n', "'title' must be a string"),
    ],
)
def test_malformed_jsonl_is_refused_with_its_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = write(tmp_path / "bad.jsonl", content)
    with pytest.raises(InputError, match=message):
        load_documents([path])


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.jsonl", '{"text": "a", "id": "x"}\n{"text": "b", "id": "x"}\n')
    with pytest.raises(InputError, match="duplicate document id 'x'"):
        load_documents([path])


def test_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        load_documents([tmp_path / "nope"])


def test_folder_without_documents_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "x.py", "pass")
    write(tmp_path / ".hidden.md", "hidden")
    with pytest.raises(InputError, match="no readable documents"):
        load_documents([tmp_path])


def test_explicit_unsupported_or_binary_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a supported document type"):
        load_documents([write(tmp_path / "x.pdf", b"%PDF-1.4")])
    with pytest.raises(InputError, match="looks binary"):
        load_documents([write(tmp_path / "x.txt", b"abc\x00def")])


def test_single_path_and_empty_list(tmp_path: Path) -> None:
    path = write(tmp_path / "one.txt", "One document.")
    assert [d.text for d in load_documents(path)] == ["One document."]
    with pytest.raises(InputError, match="no paths given"):
        load_documents([])


def test_a_document_is_the_same_through_any_path(tmp_path: Path, monkeypatch: Any) -> None:
    md = write(tmp_path / "docs" / "guide.md", "# Guide\n\nBody text.\n")
    monkeypatch.chdir(tmp_path)
    by_relative = load_documents(["docs"])
    by_absolute = load_documents([str(tmp_path / "docs" / ".." / "docs")])
    assert [d.id for d in by_relative] == [d.id for d in by_absolute] == [md.resolve().as_posix()]
    assert by_relative[0].metadata["sha256"] == by_absolute[0].metadata["sha256"]
    # overlapping paths read the file once, not twice under one id
    assert len(load_documents(["docs", "docs/guide.md", str(md)])) == 1
    # the content hash follows the content
    md.write_text("# Guide\n\nOther body text.\n", encoding="utf-8")
    assert load_documents([md])[0].metadata["sha256"] != by_relative[0].metadata["sha256"]


def test_the_author_may_give_a_stable_id(tmp_path: Path) -> None:
    write(tmp_path / "a.md", "---\nid: 'install-guide'\ntitle: x\n---\n# Install\n\nRun it.\n")
    write(tmp_path / "b.md", "---\nid: install-guide\n---\nSame id, another file.\n")
    with pytest.raises(InputError, match="duplicate document id 'install-guide'"):
        load_documents([tmp_path])
    (tmp_path / "b.md").unlink()
    [doc] = load_documents([tmp_path])
    assert doc.id == "install-guide" and doc.metadata["path"] == (tmp_path / "a.md").as_posix()
