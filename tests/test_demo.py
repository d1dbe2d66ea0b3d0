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
def test_the_demo_question_is_answered_right(tmp_path: Path) -> None:
    """The demo's own two commands, as the Makefile runs them (features stored, ``ask``)."""
    import subprocess
    import sys

    makefile = (ROOT / "Makefile").read_text()
    settings = "--compressor sentence --budget 4x --explain"
    assert settings in makefile  # the settings used here
    question = _makefile("DEMO_QUESTION")
    docs = sorted(str(p) for p in (ROOT / "docs").glob("*.md") if p.name != "architecture.md")
    ragzip = str(Path(sys.executable).with_name("ragzip"))
    index = str(tmp_path / "demo-index")
    built = subprocess.run(
        [ragzip, "index", *docs, "--index", index, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    asked = subprocess.run(
        [ragzip, "ask", question, "--index", index, *settings.split(), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert asked.returncode == 0, asked.stderr
    # the answer runs from "Answer:" to the figures' table (titled "<compressor> @ <budget>")
    answer = asked.stdout.split("Answer:", 1)[1].split("sentence @ 4x", 1)[0]
    assert "bm25s" in answer.lower(), asked.stdout
