"""``python -m ragzip.training.merge train|evaluate``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragzip.core.paths import paths
from ragzip.training.common import set_threads
from ragzip.training.merge.config import TrainConfig
from ragzip.training.merge.evaluate import Setting, evaluate, markdown
from ragzip.training.merge.train import train

if TYPE_CHECKING:
    pass


# ---------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m ragzip.training.merge train|evaluate ...``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train the adapter")
    for name, value in asdict(TrainConfig()).items():
        flag = "--" + name.replace("_", "-")
        kind = type(value) if value is not None else str
        p_train.add_argument(flag, type=kind, default=value)
    p_eval = sub.add_parser("evaluate", help="EM/F1 and prefill cost on test questions")
    p_eval.add_argument("--settings", required=True, help="comma-separated spec@ratio")
    p_eval.add_argument("--n", type=int, default=100)
    p_eval.add_argument("--k", type=int, default=10)
    p_eval.add_argument("--max-new-tokens", type=int, default=32)
    p_eval.add_argument("--threads", type=int, default=1)
    p_eval.add_argument("--index-cache", default=str(paths().index_cache))
    p_eval.add_argument("--out", required=True)
    p_eval.add_argument("--no-uncompressed", action="store_true", help="skip the full-text row")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    command = " ".join(["python -m ragzip.training.merge", *(argv or sys.argv[1:])])
    set_threads(args.threads)
    if args.command == "train":
        values = {k: v for k, v in vars(args).items() if k != "command"}
        train(TrainConfig(**values), command=command)
        return
    settings = [Setting.parse(s) for s in args.settings.split(",") if s.strip()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(report: dict[str, Any]) -> None:
        report["command"] = command
        out.write_text(json.dumps(report, indent=2), encoding="utf-8")
        out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")

    report = evaluate(
        settings,
        n=args.n,
        k=args.k,
        max_new_tokens=args.max_new_tokens,
        index_cache=args.index_cache,
        uncompressed=not args.no_uncompressed,
        checkpoint=write,
    )
    write(report)


if __name__ == "__main__":
    main()
