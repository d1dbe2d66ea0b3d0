"""Fixtures for compressor tests: real token counters and NQ question/context cases.

Counters:
  * ``minilm``: the WordPiece tokenizer shipped with the MiniLM weights.
  * ``bytebpe``: a GPT-2-style byte-level BPE, trained here on ragzip's own source files with
    the ``tokenizers`` library (no download); it splits CJK and emoji into several tokens with
    overlapping character offsets, the hard case for cutting at token boundaries.
  * ``smollm2``: the generator's own tokenizer from ``ragzip.weights.smollm2_counter()``; skipped
    while that function does not exist.

The NQ helpers (``load_nq``, ``nq_cases``, ``context_recall``) are plain functions so that
``measure_nq.py`` beside this file can use them outside pytest.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ragzip.core.errors import MissingDependencyError
from ragzip.core.tokenization import HFTokenCounter, TokenCounter
from ragzip.experiments import datasets as data
from ragzip.experiments.answers import answer_in_text

REPO = Path(__file__).resolve().parents[2]
COUNTER_NAMES = ("minilm", "bytebpe", "smollm2")


def train_bytebpe(vocab_size: int = 2000) -> HFTokenCounter:
    """A byte-level BPE (GPT-2 style) trained on the repository's Python sources."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    files = sorted(str(p) for p in (REPO / "ragzip").rglob("*.py"))
    bpe = ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=False)
    bpe.train(files, vocab_size=vocab_size, min_frequency=2, show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer)
    return HFTokenCounter(tok, name="bytebpe")


@pytest.fixture(scope="session")
def bytebpe_counter() -> HFTokenCounter:
    """A GPT-2-style byte-level BPE counter (trained locally, see :func:`train_bytebpe`)."""
    return train_bytebpe()


@pytest.fixture(scope="session")
def smollm2_counter() -> TokenCounter:
    """SmolLM2's tokenizer, once ``ragzip.weights.smollm2_counter`` exists."""
    from ragzip import weights as models

    factory = getattr(models, "smollm2_counter", None)
    if factory is None:
        pytest.skip("ragzip.weights.smollm2_counter() is not available yet")
    try:
        counter: TokenCounter = factory()
    except MissingDependencyError as exc:
        pytest.skip(f"SmolLM2's tokenizer is not installed: {exc}")
    return counter


@pytest.fixture(scope="session", params=COUNTER_NAMES)
def counter(request: pytest.FixtureRequest) -> TokenCounter:
    """Each real tokenizer in turn."""
    name = request.param
    fixture: TokenCounter = request.getfixturevalue(f"{name}_counter")
    return fixture


class _TrimWarnings(logging.Handler):
    """Keeps the base class's "exceeded its budget" warnings, live, in ``messages``."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "exceeded its budget" in message:
            self.messages.append(message)


@pytest.fixture(autouse=True)
def trim_warnings() -> Iterator[list[str]]:
    """Every compressor test fails if the base class had to trim a method's output.

    Methods must meet the budget on their own; the trim in ``Compressor._build`` is a last
    resort that logs "exceeded its budget". Tests may also read the live list to check one call.
    """
    handler = _TrimWarnings()
    log = logging.getLogger("ragzip.compressor")
    log.addHandler(handler)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)
    assert not handler.messages, f"the base class trimmed a method's output: {handler.messages}"


# --------------------------------------------------------------------------------------------
# NQ question + mixed context cases


@dataclass(frozen=True)
class NQCase:
    """A question with its gold passage hidden among distractor passages."""

    question: str
    answers: tuple[str, ...]
    passages: tuple[dict[str, str], ...]
    gold: int


def load_nq(data_dir: Path) -> list[dict[str, Any]]:
    """All rows of ``nq_open_dev.jsonl.gz``."""
    return [dataclasses.asdict(e) for e in data.read_nq(data_dir / data.NQ_FILE)]


_WORD = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def nq_cases(
    rows: Sequence[dict[str, Any]],
    questions: range,
    *,
    distractors: int = 9,
    seed: int = 0,
) -> list[NQCase]:
    """Mix each question's gold passage with the most lexically similar other passages.

    Distractors are the ``distractors`` passages of *other* rows with the highest IDF-weighted
    word overlap with the question (a small stand-in for a retriever's near misses), so they
    are on related topics. Only questions whose gold passage contains an answer are used; the
    gold passage is put at a seeded random position.
    """
    docs = [_words(f"{r['title']} {r['text']}") for r in rows]
    df = Counter(w for d in docs for w in d)
    idf = {w: math.log(len(docs) / n) for w, n in df.items()}
    rng = random.Random(seed)
    cases = []
    for qi in questions:
        row = rows[qi]
        if not answer_in_text(row["answers"], row["text"]):
            continue
        qwords = _words(row["question"])
        scores = {j: sum(idf[w] for w in qwords & d) for j, d in enumerate(docs) if j != qi}
        nearest = sorted(scores, key=lambda j: (-scores[j], j))[:distractors]
        picked = [rows[j] for j in nearest]
        passages = [{"title": r["title"], "text": r["text"]} for r in picked]
        gold = rng.randrange(len(passages) + 1)
        passages.insert(gold, {"title": row["title"], "text": row["text"]})
        cases.append(NQCase(row["question"], tuple(row["answers"]), tuple(passages), gold))
    return cases


def context_recall(compressor: Any, cases: Sequence[NQCase], budget: Any) -> float:
    """Share of cases whose compressed context still contains an answer."""
    hits = 0
    for case in cases:
        result = compressor.compress(case.question, list(case.passages), budget=budget)
        hits += answer_in_text(list(case.answers), result.context)
    return hits / len(cases)


@pytest.fixture(scope="session")
def nq_rows(data_dir: Path) -> list[dict[str, Any]]:
    """Rows of the NQ-open dev file (skips when the data folder is absent)."""
    return load_nq(data_dir)


EVAL_QUESTIONS = range(1000, 1200)
"""Questions the method tests evaluate on; MIG's λ was tuned on questions 0-399."""


@pytest.fixture(scope="session")
def nq_eval_cases(nq_rows: list[dict[str, Any]]) -> list[NQCase]:
    """Evaluation questions 1000-1199, each gold passage among 9 lexically similar ones."""
    return nq_cases(nq_rows, EVAL_QUESTIONS, distractors=9)
