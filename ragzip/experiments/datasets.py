"""Evaluation data: Natural Questions (open) with gold passages, and synthetic key-value retrieval.

Both files come from the "Lost in the Middle" release (Liu et al., 2023, *Lost in the Middle: How
Language Models Use Long Contexts*, TACL 2024):

* ``nq_open_dev.jsonl.gz`` — 2,000 NQ-open questions, each with the Wikipedia passage that answers
  it (``{"question", "answers", "title", "text"}``). All passages together form the retrieval
  corpus; a question's own passage is its gold document.
* ``kv_retrieval_dev.jsonl.gz`` — 100 cases of 75 ``[key, value]`` UUID pairs and the key asked
  for. A compressor that mangles identifiers loses the exact value.

Splits of the NQ questions are fixed: a shuffle seeded with :data:`SPLIT_SEED` orders the 2,000
line numbers; the first 1,200 are ``train`` (for training compressors), the next 300 ``val`` and
the last 500 ``test``. Within a split, questions keep their file order. Reports use ``test`` so a
trained compressor is never scored on its own training questions.
"""

from __future__ import annotations

import gzip
import random
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ragzip.core.errors import InputError
from ragzip.core.jsonl import json_objects
from ragzip.core.paths import paths
from ragzip.core.types import Passage

NQ_FILE = "nq_open_dev.jsonl.gz"
KV_FILE = "kv_retrieval_dev.jsonl.gz"
"""Where the data lies relative to the project root (the working directory of CLI runs)."""

SPLIT_SEED = 20231
"""Seed of the shuffle that assigns NQ questions to splits. Changing it changes every split."""

SplitName = Literal["train", "val", "test", "all"]
SPLIT_SIZES: Mapping[str, int] = {"train": 1200, "val": 300, "test": 500}
"""Split sizes, in shuffle order; they add up to the 2,000 questions of the file."""
NQ_SIZE = sum(SPLIT_SIZES.values())


@dataclass(frozen=True)
class NQExample:
    """One NQ-open question with its gold passage.

    Attributes:
        index: Zero-based line number in the file; stable across runs.
        question: The question text.
        answers: Accepted answers (at least one).
        title: Title of the gold passage's Wikipedia page.
        text: The gold passage.
    """

    index: int
    question: str
    answers: tuple[str, ...]
    title: str
    text: str

    @property
    def doc_id(self) -> str:
        """Identifier of this question's passage in the retrieval corpus."""
        return nq_doc_id(self.index)

    def passage(self) -> Passage:
        """The gold passage as a :class:`~ragzip.core.types.Passage` (its id is :attr:`doc_id`)."""
        return Passage(
            text=self.text, id=self.doc_id, title=self.title, metadata={"doc_id": self.doc_id}
        )


@dataclass(frozen=True)
class KVCase:
    """One key-value retrieval case.

    Attributes:
        index: Zero-based line number in the file.
        records: The ``(key, value)`` pairs, in order.
        key: The key asked for.
        value: Its value, which must survive compression verbatim.
    """

    index: int
    records: tuple[tuple[str, str], ...]
    key: str
    value: str

    @property
    def query(self) -> str:
        """The question asked of the context."""
        return f"What is the value of key {self.key}?"

    @property
    def gold_position(self) -> int:
        """Position of the asked pair among the records."""
        return next(i for i, (k, _) in enumerate(self.records) if k == self.key)

    def passages(self) -> list[Passage]:
        """One passage per record, ``"{key}": "{value}"``, in record order."""
        return [
            Passage(text=f'"{k}": "{v}"', id=f"kv-{self.index:03d}-{i:02d}")
            for i, (k, v) in enumerate(self.records)
        ]


def nq_doc_id(index: int) -> str:
    """Corpus identifier of the passage on line ``index`` of the NQ file."""
    return f"nq-{index:04d}"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data folder: ``data_dir`` when given, else :attr:`ragzip.core.paths.Paths.data_dir`
    (``RAGZIP_DATA_DIR``, default ``../shared/data`` from the working directory).

    Raises:
        InputError: The folder does not exist.
    """
    path = Path(data_dir) if data_dir is not None else paths().data
    path = path.expanduser()
    if not path.is_dir():
        msg = (
            f"data folder {path} does not exist; pass --data-dir pointing at the folder "
            f"holding {NQ_FILE} and {KV_FILE}"
        )
        raise InputError(msg)
    return path


def _read_jsonl_gz(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        msg = f"{path.name} not found in {path.parent}"
        raise InputError(msg)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for number, row in json_objects(fh, str(path)):
                yield number - 1, row
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        msg = f"cannot read {path} as gzip-compressed UTF-8 JSON lines: {exc}"
        raise InputError(msg) from exc


def _field(path: Path, lineno: int, row: Mapping[str, Any], key: str, kind: type) -> Any:
    if key not in row:
        msg = f"{path}: line {lineno + 1} has no {key!r} field (keys: {sorted(row)})"
        raise InputError(msg)
    value = row[key]
    if not isinstance(value, kind):
        msg = (
            f"{path}: line {lineno + 1} field {key!r} must be {kind.__name__}, "
            f"got {type(value).__name__}"
        )
        raise InputError(msg)
    return value


def load_nq(data_dir: str | Path | None = None) -> list[NQExample]:
    """All NQ-open questions of ``nq_open_dev.jsonl.gz``, in file order.

    Raises:
        InputError: The file is missing, not gzip JSON lines, or a record lacks a field.
    """
    return read_nq(resolve_data_dir(data_dir) / NQ_FILE)


def read_nq(path: str | Path, *, limit: int | None = None) -> list[NQExample]:
    """The first ``limit`` (default: all) NQ-open questions of the gzip JSON-lines file ``path``.

    Raises:
        InputError: The file is missing, not gzip JSON lines, or a record lacks a field.
    """
    path = Path(path)
    examples: list[NQExample] = []
    for lineno, row in _read_jsonl_gz(path):
        answers = _field(path, lineno, row, "answers", list)
        if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
            msg = f"{path}: line {lineno + 1} needs a non-empty list of non-empty answer strings"
            raise InputError(msg)
        question = _field(path, lineno, row, "question", str)
        text = _field(path, lineno, row, "text", str)
        if not question.strip() or not text.strip():
            msg = f"{path}: line {lineno + 1} has an empty question or passage"
            raise InputError(msg)
        examples.append(
            NQExample(
                index=len(examples),
                question=question,
                answers=tuple(answers),
                title=_field(path, lineno, row, "title", str),
                text=text,
            )
        )
        if limit is not None and len(examples) >= limit:
            break
    if not examples:
        msg = f"{path} holds no records"
        raise InputError(msg)
    return examples


def load_kv(data_dir: str | Path | None = None) -> list[KVCase]:
    """All key-value retrieval cases of ``kv_retrieval_dev.jsonl.gz``, in file order.

    Raises:
        InputError: The file is missing or malformed, or a case's key is not among its records.
    """
    path = resolve_data_dir(data_dir) / KV_FILE
    cases: list[KVCase] = []
    for lineno, row in _read_jsonl_gz(path):
        raw = _field(path, lineno, row, "ordered_kv_records", list)
        records: list[tuple[str, str]] = []
        for pair in raw:
            if not (
                isinstance(pair, list)
                and len(pair) == 2
                and all(isinstance(x, str) and x for x in pair)
            ):
                msg = f"{path}: line {lineno + 1} has a record that is not a [key, value] pair"
                raise InputError(msg)
            records.append((pair[0], pair[1]))
        key = _field(path, lineno, row, "key", str)
        value = _field(path, lineno, row, "value", str)
        if (key, value) not in records:
            msg = f"{path}: line {lineno + 1}: the pair for key {key!r} is not among its records"
            raise InputError(msg)
        cases.append(KVCase(index=len(cases), records=tuple(records), key=key, value=value))
    if not cases:
        msg = f"{path} holds no records"
        raise InputError(msg)
    return cases


def split_indices(n: int = NQ_SIZE, *, seed: int = SPLIT_SEED) -> dict[str, list[int]]:
    """Line numbers of each split for a file of ``n`` questions, each list in file order.

    Raises:
        InputError: ``n`` is not the 2,000 questions the split sizes are fixed for.
    """
    if n != NQ_SIZE:
        msg = f"the NQ splits are fixed for {NQ_SIZE} questions, the file holds {n}"
        raise InputError(msg)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    out: dict[str, list[int]] = {}
    start = 0
    for name, size in SPLIT_SIZES.items():
        out[name] = sorted(order[start : start + size])
        start += size
    return out


def nq_split(
    name: str, data_dir: str | Path | None = None, *, examples: Sequence[NQExample] | None = None
) -> list[NQExample]:
    """The questions of split ``name`` (``train``, ``val``, ``test`` or ``all``), in file order.

    Args:
        name: Split name.
        data_dir: Data folder (see :func:`resolve_data_dir`); ignored when ``examples`` is given.
        examples: Already loaded questions (all 2,000, from :func:`load_nq`).

    Raises:
        InputError: Unknown split name, or a file that is not the 2,000-question release.
    """
    if name not in (*SPLIT_SIZES, "all"):
        msg = f"unknown split {name!r}; choose one of: {', '.join([*SPLIT_SIZES, 'all'])}"
        raise InputError(msg)
    rows = list(examples) if examples is not None else load_nq(data_dir)
    if name == "all":
        return rows
    return [rows[i] for i in split_indices(len(rows))[name]]


def nq_corpus(examples: Sequence[NQExample]) -> list[Passage]:
    """The retrieval corpus: every question's passage, ids from :func:`nq_doc_id`."""
    return [ex.passage() for ex in examples]


def gold_doc_ids(examples: Sequence[NQExample]) -> dict[int, frozenset[str]]:
    """For each question (by index), the corpus ids whose passage is its gold passage.

    A few passages occur on several lines (the same Wikipedia paragraph answers several
    questions); retrieving any copy counts as retrieving the gold passage.
    """
    by_text: dict[tuple[str, str], set[str]] = {}
    for ex in examples:
        by_text.setdefault((ex.title, ex.text), set()).add(ex.doc_id)
    return {ex.index: frozenset(by_text[(ex.title, ex.text)]) for ex in examples}
