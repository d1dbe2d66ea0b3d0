"""Load documents from files and folders into :class:`~ragzip.core.types.Passage` objects.

Supported: Markdown (``.md``, ``.markdown``), plain text (``.txt``), reStructuredText (``.rst``)
and JSON Lines (``.jsonl``: one object per line with ``"text"`` and optional ``"title"``/``"id"``).
Folders are walked recursively in sorted order; hidden files and folders (a name starting with
``.``), files of other types, empty files and binary files found inside a folder are skipped. A
path given explicitly must exist and be a readable document, else :class:`InputError`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ragzip.core.errors import InputError
from ragzip.core.jsonl import json_objects
from ragzip.core.types import Passage

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".rst"})
"""File types read as one document each."""
JSONL_SUFFIXES = frozenset({".jsonl"})
"""File types read as one document per line."""
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | JSONL_SUFFIXES

_BINARY_SNIFF_BYTES = 8192
_ATX_HEADING = re.compile(r"^\s{0,3}#{1,6}[ \t]+(?P<title>.+?)[ \t]*#*[ \t]*$")
_FRONT_MATTER = re.compile(r"\A---\r?\n.*?\r?\n(---|\.\.\.)\r?\n", re.DOTALL)
_FRONT_MATTER_ID = re.compile(r"^id:[ \t]*(?P<id>\S.*?)[ \t]*$", re.MULTILINE)


PathArg = str | os.PathLike[str]


@dataclass(frozen=True)
class Documents:
    """What :func:`read_documents` found.

    Attributes:
        passages: The documents, as :func:`load_documents` returns them.
        skipped: ``(path, reason)`` of every file or record left out (empty, binary, not UTF-8).
    """

    passages: tuple[Passage, ...]
    skipped: tuple[tuple[str, str], ...]


def load_documents(paths: Sequence[PathArg] | PathArg) -> list[Passage]:
    """Read every supported document under ``paths`` (see :func:`read_documents`)."""
    return list(read_documents(paths).passages)


def read_documents(paths: Sequence[PathArg] | PathArg) -> Documents:
    """Read every supported document under ``paths``, and say which files were skipped.

    Args:
        paths: Files and/or folders. Folders are searched recursively.

    Returns:
        One passage per text file and one per JSON Lines record, in path order. Each passage has
        ``metadata["source"]`` (the path as given), ``metadata["path"]`` (the file's absolute,
        resolved path), ``metadata["sha256"]`` (of its title and text) and, for JSON Lines,
        ``metadata["line"]``. Its id is the one its author gave (a JSON Lines record's ``"id"``,
        a Markdown front matter's ``id:``), else the resolved path (``path:line`` for JSON
        Lines): the same file reached through another path is the same document. A file found
        twice (overlapping paths) is read once.

    Raises:
        InputError: A path is missing, an explicitly named file is not a supported document, a
            JSON Lines record is malformed, or no readable document was found at all.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if not paths:
        msg = "no paths given: pass at least one file or folder"
        raise InputError(msg)
    passages: list[Passage] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    seen_files: set[Path] = set()
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            msg = f"no such file or folder: {str(raw)!r}"
            raise InputError(msg)
        if root.is_dir():
            files = list(_walk(root))
        else:
            if root.suffix.lower() not in SUPPORTED_SUFFIXES:
                msg = (
                    f"{str(root)!r} is not a supported document type "
                    f"(supported: {', '.join(sorted(SUPPORTED_SUFFIXES))})"
                )
                raise InputError(msg)
            files = [root]
        for file in files:
            if file.resolve() in seen_files:
                continue
            seen_files.add(file.resolve())
            loaded = _load_file(file, explicit=file is root, skipped=skipped)
            for passage in loaded:
                if passage.id in seen:
                    msg = f"duplicate document id {passage.id!r} (from {str(file)!r})"
                    raise InputError(msg)
                seen.add(passage.id)
            passages.extend(loaded)
    if not passages:
        shown = ", ".join(repr(str(p)) for p in paths)
        msg = (
            f"no readable documents in {shown} "
            f"(looked for {', '.join(sorted(SUPPORTED_SUFFIXES))}; hidden, empty and binary "
            "files are skipped)"
        )
        raise InputError(msg)
    return Documents(tuple(passages), tuple(skipped))


def _walk(folder: Path) -> Iterator[Path]:
    """Supported, non-hidden files under ``folder``, recursively, in sorted order."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.suffix.lower() not in SUPPORTED_SUFFIXES:
                continue
            if path.is_file():
                yield path


def _read_text(path: Path, *, explicit: bool, skipped: list[tuple[str, str]]) -> str | None:
    """The file's text, or ``None`` (skipped) for binary files found while walking a folder."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"cannot read {str(path)!r}: {exc.strerror or exc}"
        raise InputError(msg) from exc
    reason = ""
    if b"\x00" in data[:_BINARY_SNIFF_BYTES]:
        reason = "contains NUL bytes (binary)"
    else:
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            reason = f"is not UTF-8 text ({exc.reason} at byte {exc.start})"
    if explicit:
        msg = f"{str(path)!r} looks binary: it {reason}"
        raise InputError(msg)
    logger.info("skipping %s: it %s", path, reason)
    skipped.append((str(path), reason))
    return None


def _load_file(path: Path, *, explicit: bool, skipped: list[tuple[str, str]]) -> list[Passage]:
    text = _read_text(path, explicit=explicit, skipped=skipped)
    if text is None:
        return []
    if path.suffix.lower() in JSONL_SUFFIXES:
        return _load_jsonl(path, text, skipped)
    if not text.strip():
        logger.info("skipping %s: empty", path)
        skipped.append((str(path), "is empty"))
        return []
    title = _title(path, text)
    return [
        Passage(
            text=text,
            id=_front_matter_id(path, text) or path.resolve().as_posix(),
            title=title,
            metadata={
                "source": str(path),
                "path": path.resolve().as_posix(),
                "sha256": content_hash(title, text),
            },
        )
    ]


def content_hash(title: str, text: str) -> str:
    """SHA-256 of a document's title and text (what the index reads of it)."""
    return hashlib.sha256(f"{title}\0{text}".encode()).hexdigest()


def _front_matter_id(path: Path, text: str) -> str | None:
    """The ``id:`` a Markdown file's front matter gives, if any."""
    if path.suffix.lower() not in {".md", ".markdown"}:
        return None
    front = _FRONT_MATTER.match(text)
    match = _FRONT_MATTER_ID.search(front.group(0)) if front else None
    return match.group("id").strip().strip("\"'") or None if match else None


def _load_jsonl(path: Path, text: str, skipped: list[tuple[str, str]]) -> list[Passage]:
    passages: list[Passage] = []
    for number, record in json_objects(text.splitlines(), str(path)):
        where = f"{path}:{number}"
        body = record.get("text")
        if not isinstance(body, str):
            msg = f"{where}: needs a string 'text' field"
            raise InputError(msg)
        if not body.strip():
            logger.info("skipping %s: empty text", where)
            skipped.append((where, "has an empty text"))
            continue
        title = record.get("title", path.stem)
        if not isinstance(title, str):
            msg = f"{where}: 'title' must be a string"
            raise InputError(msg)
        record_id = record.get("id")
        resolved = path.resolve().as_posix()
        passages.append(
            Passage(
                text=body,
                id=str(record_id) if record_id not in (None, "") else f"{resolved}:{number}",
                title=title,
                metadata={
                    "source": str(path),
                    "line": number,
                    "path": resolved,
                    "sha256": content_hash(title, body),
                },
            )
        )
    return passages


def _title(path: Path, text: str) -> str:
    """The first Markdown heading of a Markdown file, else the file's stem."""
    if path.suffix.lower() in {".md", ".markdown"}:
        body = _FRONT_MATTER.sub("", text, count=1)
        in_fence = False
        for line in body.splitlines():
            if line.lstrip().startswith(("```", "~~~")):
                in_fence = not in_fence
                continue
            if in_fence:
                continue
            match = _ATX_HEADING.match(line)
            if match:
                return match.group("title").strip()
    return path.stem
