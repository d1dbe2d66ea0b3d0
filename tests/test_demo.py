"""``make demo``: its question about ragzip's own docs is answered right with its settings
(the user docs indexed as ``make demo`` does, ``sentence`` at 4x, the embedded SmolLM2), and
the demo question set is well formed (benchmarks/demo_quality.py measures the rest)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = json.loads((ROOT / "tests" / "data" / "demo_questions.json").read_text())


def _makefile(name: str) -> str:
    match = re.search(rf"^{name} \?= (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match is not None, name
    return match.group(1).strip()


def test_the_question_set_is_split_and_well_formed() -> None:
    tune, holdout = QUESTIONS["tune"], QUESTIONS["holdout"]
    assert len(tune) >= 10 and len(holdout) >= 10
    asked = [q["question"] for q in tune + holdout]
    assert len(set(asked)) == len(asked)
    assert all(q["answers"] and all(a.strip() for a in q["answers"]) for q in tune + holdout)


@pytest.mark.slow
def test_the_demo_question_is_answered_right() -> None:
    from ragzip.generators.embedded import EmbeddedGenerator
    from ragzip.pipeline import Pipeline
    from ragzip.registry import create_compressor
    from ragzip.retrievers.documents import load_documents
    from ragzip.retrievers.index import HybridIndex
    from ragzip.types import Budget

    makefile = (ROOT / "Makefile").read_text()
    assert "--compressor sentence --budget 4x --explain" in makefile  # the settings used here
    question = _makefile("DEMO_QUESTION")
    docs = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "architecture.md")
    index = HybridIndex.build(load_documents(docs), progress=False)
    generator = EmbeddedGenerator()
    compressor = create_compressor("sentence", counter=generator.counter)
    result = Pipeline(compressor, Budget.parse("4x"), retriever=index, generator=generator).run(
        question
    )
    assert "bm25s" in result.compression.context
    assert "bm25s" in result.answer.lower(), result.answer
