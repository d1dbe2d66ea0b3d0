"""Answer accuracy of compressor settings, each at its own ratio, answered by one local model.

What ``ragzip eval --generate-n`` measures, for settings it cannot put in one run: the same
compressor at several ratios (e.g. ``mig`` at 4x and at 8x, the text part of a ``merge`` that
keeps half its budget as text), without its uncompressed row. Used to choose soft-compressor
settings on the val split before one ``ragzip eval`` run reports them on test:

    python benchmarks/soft_settings.py --generator gemma3-270m --split val --name gemma-val \\
        --setting "none" --setting "mig@4" --setting "mig@8" \\
        --setting "merge:adapter=default;text_share=0.5@4"

A setting is ``SPEC@RATIO`` (a compressor spec as ``ragzip eval`` takes it), or ``none`` for the
question alone. Contexts are the top-10 hybrid passages, answers greedy, scored as
``ragzip eval`` scores them (:mod:`ragzip.evaluation.answering`). Writes
``benchmarks/results/soft_context/NAME.json`` and ``.md``. Needs ``../shared/data`` (or
``RAGZIP_DATA_DIR``); builds or reuses the evaluation index under the cache folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ragzip import Budget
from ragzip.core.machine import machine_info
from ragzip.core.paths import paths
from ragzip.core.tokenization import TokenCounter
from ragzip.evaluation.answering import AnswerSetting, answer_all, prefill_gflops, summarize
from ragzip.evaluation.indexing import load_or_build_index
from ragzip.experiments.datasets import load_nq, nq_corpus, nq_split
from ragzip.experiments.reporting import markdown_table
from ragzip.generators.local import embedded_generator
from ragzip.registry import create_compressor, generator_config

RESULTS = Path(__file__).resolve().parent / "results" / "soft_context"


def setting(text: str, generator: str, counter: TokenCounter) -> AnswerSetting:
    """``SPEC@RATIO`` or ``none`` as an answer setting for ``generator``."""
    if text == "none":
        identity = create_compressor("identity", counter=counter)
        return AnswerSetting("no context", identity, Budget.compression(1.0), with_context=False)
    spec, sep, ratio = text.rpartition("@")
    if not sep:
        sys.exit(f"a setting is SPEC@RATIO or none, got {text!r}")
    config = generator_config(spec, generator) or None
    comp = create_compressor(spec, counter=counter, config=config)
    return AnswerSetting(text, comp, Budget.compression(float(ratio)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="smollm2")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--setting", action="append", required=True, help="SPEC@RATIO or none")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", required=True, help="Result file name (no suffix).")
    parser.add_argument("--index-cache", type=Path, default=paths().index_cache)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    all_nq = load_nq(None)
    questions = nq_split(args.split, examples=all_nq)[: args.questions]
    index, _, _ = load_or_build_index(
        nq_corpus(all_nq), cache=args.index_cache, chunk=False, progress=False
    )
    found = index.search_batch([q.question for q in questions], args.k, mode="hybrid")
    contexts = [list(r) for r in found]
    generator = embedded_generator(args.generator)
    settings = [setting(s, args.generator, generator.counter) for s in args.setting]
    t0 = time.perf_counter()
    answers = answer_all(generator, settings, questions, contexts)
    model = getattr(generator, "model", None)
    rows = []
    for s in settings:
        row = summarize(s.label, s.budget.ratio or 1.0, answers[s.label])
        if model is not None:
            row = replace(row, prefill_gflops=prefill_gflops(model, row.prompt_tokens))
        rows.append(asdict(row))
    report = {
        "command": " ".join(sys.argv),
        "generator": generator.name,
        "split": args.split,
        "questions": len(questions),
        "k": args.k,
        "threads": args.threads,
        "seconds": time.perf_counter() - t0,
        "machine": machine_info(),
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    table = markdown_table(
        ["setting", "accuracy", "EM", "F1", "context tok", "TTFT p50 ms", "prefill GFLOP"],
        [
            [
                r["setting"],
                f"{r['accuracy']:.0%}",
                f"{r['em']:.0%}",
                f"{r['f1']:.1%}",
                f"{r['context_tokens']:.0f}",
                f"{r['ttft_ms_p50']:,.0f}",
                f"{r['prefill_gflops']:.1f}",
            ]
            for r in rows
        ],
    )
    md = (
        f"# Answer accuracy by setting: {generator.name}, NQ-open {args.split}, "
        f"{len(questions)} questions\n\n`{report['command']}`\n\n"
        f"Top-{args.k} hybrid passages; greedy answers; {args.threads} torch thread(s).\n\n"
        f"{table}\n"
    )
    (RESULTS / f"{args.name}.md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
