"""Answer-in-context recall of compressors on NQ-open cases (gold passage among distractors).

Not a test module (pytest does not collect it); run it from the repository root:

    python tests/compressors/measure_nq.py eval --questions 1000:1200 --ratios 2 4 8
    python tests/compressors/measure_nq.py tune --questions 0:400 --ratio 4 8

``eval`` compares compressors; ``tune`` grids MIG's λ and title use on questions kept apart from
the evaluation questions (1000 onwards), reusing each text's embedding across the grid.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from conftest import (  # the NQ helpers beside this script (its folder is on sys.path)
    context_recall,
    load_nq,
    nq_cases,
    train_bytebpe,
)

import ragzip
from ragzip.core.tokenization import TokenCounter

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2] / "shared" / "data"


class MemoEmbedder:
    """Wraps an embedder and remembers each text's vector (for grids over one data set)."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.device = getattr(base, "device", "cpu")
        self.memo: dict[str, np.ndarray] = {}

    def encode(self, sentences: list[str], **kwargs: Any) -> np.ndarray:
        missing = list(dict.fromkeys(s for s in sentences if s not in self.memo))
        if missing:
            for text, vec in zip(missing, self.base.encode(missing, **kwargs), strict=True):
                self.memo[text] = np.asarray(vec, dtype=np.float32)
        return np.stack([self.memo[s] for s in sentences])


def make_counter(name: str) -> TokenCounter:
    if name == "smollm2":
        from ragzip.weights import smollm2_counter

        return smollm2_counter()
    if name == "bytebpe":
        return train_bytebpe()
    if name == "minilm":
        from transformers import AutoTokenizer

        from ragzip.weights import minilm_dir

        return ragzip.HFTokenCounter(
            AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
        )
    raise SystemExit(f"unknown counter {name!r}")


def span(text: str) -> range:
    start, _, stop = text.partition(":")
    return range(int(start), int(stop))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["eval", "tune"])
    parser.add_argument("--questions", type=span, default=None)
    parser.add_argument("--distractors", type=int, default=9)
    parser.add_argument("--ratios", "--ratio", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    parser.add_argument("--counter", default="smollm2", choices=["smollm2", "minilm", "bytebpe"])
    parser.add_argument("--methods", nargs="+", default=["mig", "random", "truncate", "identity"])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--titles", type=int, nargs="+", default=[0, 1], help="tune: 0/1")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    args = parser.parse_args()

    questions = args.questions or (range(1000, 1200) if args.mode == "eval" else range(0, 400))
    rows = load_nq(DATA)
    cases = nq_cases(rows, questions, distractors=args.distractors)
    counter = make_counter(args.counter)
    print(
        f"{len(cases)} cases (questions {questions.start}-{questions.stop - 1} with an answer in "
        f"the gold passage), 1 gold + {args.distractors} distractors each, counter={args.counter}"
    )
    from ragzip.weights import load_embedder

    embedder = MemoEmbedder(load_embedder())
    results: list[dict[str, Any]] = []
    if args.mode == "eval":
        setups: list[tuple[str, dict[str, Any]]] = [(m, {}) for m in args.methods]
    else:
        setups = [
            ("mig", {"redundancy_weight": lam, "include_title": title})
            for title, lam in itertools.product([bool(t) for t in args.titles], args.lambdas)
        ]
    for name, config in setups:
        extra = {"embedder": embedder} if name == "mig" else {}
        comp = ragzip.create_compressor(name, counter=counter, config=config or None, **extra)
        row: dict[str, Any] = {"method": name, **config}
        for ratio in args.ratios:
            t0 = time.perf_counter()
            row[f"{ratio:g}x"] = context_recall(comp, cases, ragzip.Budget.compression(ratio))
            row[f"s@{ratio:g}x"] = time.perf_counter() - t0
        results.append(row)
        cells = " | ".join(f"{ratio:g}x {row[f'{ratio:g}x']:.3f}" for ratio in args.ratios)
        print(f"{name} {config or ''} | {cells}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
