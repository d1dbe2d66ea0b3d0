"""How often the demo's settings answer questions about ragzip's own docs, right.

The question set (tests/data/demo_questions.json) was written before any setting was chosen: a
``tune`` half to choose on, a ``holdout`` half for the final check. An answer is right when it
holds one of the question's accepted strings (case-insensitive). The corpus is what ``make
demo`` indexes: the user docs, docs/*.md but architecture.md.

    python benchmarks/demo_quality.py --split tune --setting sentence@4x --setting mig@4x
    python benchmarks/demo_quality.py --split holdout --setting sentence@4x   # the demo's

A setting is ``SPEC@BUDGET[@K]`` (K passages retrieved, 5 by default, as ``ragzip ask``);
``--generator`` names the local reader (``smollm2``, the demo's, or ``gemma3-270m``).
Writes benchmarks/results/demo_quality_<split>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from ragzip.core.machine import machine_info
from ragzip.core.types import Budget
from ragzip.experiments.reporting import markdown_table
from ragzip.generators.local import embedded_generator
from ragzip.pipeline import Pipeline
from ragzip.registry import create_compressor
from ragzip.retrievers.documents import load_documents
from ragzip.retrievers.index import HybridIndex

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "tests" / "data" / "demo_questions.json"
OUT = ROOT / "benchmarks" / "results"


def is_right(answer: str, accepted: list[str]) -> bool:
    """Whether ``answer`` holds one of the accepted strings (case-insensitive)."""
    return any(a.lower() in answer.lower() for a in accepted)


def demo_docs() -> list[Path]:
    """What ``make demo`` indexes."""
    return sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "architecture.md")


def run_setting(
    text: str, index: HybridIndex, generator: Any, questions: list[dict[str, Any]]
) -> dict[str, Any]:
    spec, budget, *rest = text.split("@")
    k = int(rest[0]) if rest else 5
    compressor = create_compressor(spec, counter=generator.counter)
    pipe = Pipeline(compressor, Budget.parse(budget), retriever=index, generator=generator, k=k)
    rows = []
    start = time.perf_counter()
    for q in questions:
        result = pipe.run(q["question"])
        rows.append(
            {
                "question": q["question"],
                "answer": result.answer.strip(),
                "right": is_right(result.answer, q["answers"]),
                "kept_answer": is_right(result.compression.context, q["answers"]),
                "context_tokens": result.compression.compressed_tokens,
            }
        )
    return {
        "setting": text,
        "right": sum(r["right"] for r in rows),
        "kept_answer": sum(r["kept_answer"] for r in rows),
        "questions": len(rows),
        "seconds": time.perf_counter() - start,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("tune", "holdout"), default="tune")
    parser.add_argument("--setting", action="append", default=[], help="SPEC@BUDGET[@K]")
    parser.add_argument("--generator", default="smollm2")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    questions = json.loads(QUESTIONS.read_text(encoding="utf-8"))[args.split]
    index = HybridIndex.build(load_documents(demo_docs()), progress=False)
    generator = embedded_generator(args.generator)
    results = [run_setting(s, index, generator, questions) for s in args.setting or ["sentence@4x"]]
    report = {"split": args.split, "generator": args.generator, "machine": machine_info()}
    report["results"] = results
    OUT.mkdir(parents=True, exist_ok=True)
    stem = OUT / f"demo_quality_{args.split}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    table = markdown_table(
        ["setting", "right", "answer kept in context", "seconds"],
        [
            [
                r["setting"],
                f"{r['right']}/{r['questions']}",
                str(r["kept_answer"]),
                f"{r['seconds']:.0f}",
            ]
            for r in results
        ],
    )
    answers = "\n".join(
        f"- {'right' if row['right'] else 'wrong'}: {row['question']} → {row['answer'][:120]!r}"
        for row in results[0]["rows"]
    )
    stem.with_suffix(".md").write_text(
        f"# Demo questions ({args.split} split), reader {args.generator}\n\n"
        f"`python benchmarks/demo_quality.py --split {args.split} "
        + " ".join(f"--setting {s}" for s in args.setting)
        + f" --generator {args.generator} --threads {args.threads}`; "
        f"CPU: {report['machine']['cpu']}\n\n"
        f"{table}\n\nAnswers of {results[0]['setting']}:\n\n{answers}\n",
        encoding="utf-8",
    )
    print(table)


if __name__ == "__main__":
    main()
