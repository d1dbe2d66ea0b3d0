"""``python -m ragzip.training.xrag [eval]``: train the projector, or compare settings."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ragzip.core.paths import paths
from ragzip.training.common import set_threads
from ragzip.training.xrag.compare import run_comparison
from ragzip.training.xrag.config import TrainConfig
from ragzip.training.xrag.run import train


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m ragzip.training.xrag [--out DIR] [--stage1-examples N] ...``.

    ``python -m ragzip.training.xrag eval ...`` runs :func:`run_comparison` instead.
    """
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["eval"]:
        eval_main(args_in[1:])
        return
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        kind = type(value) if value is not None else str
        parser.add_argument(flag, type=kind, default=value)
    args = parser.parse_args(args_in)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = TrainConfig(**vars(args))
    set_threads(config.threads)
    command = " ".join(["python -m ragzip.training.xrag", *args_in])
    train(config, command=command)


def eval_main(argv: Sequence[str]) -> None:
    """``python -m ragzip.training.xrag eval [--n 100] [--timing-n 20] [--out FILE]``."""
    parser = argparse.ArgumentParser(description="EM/F1 of xrag against text compressors")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--timing-n", type=int, default=0)
    parser.add_argument("--index-cache", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--settings", default="", help="comma-separated labels to keep")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(paths().report("xrag", "eval.json")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    set_threads(args.threads)
    record = run_comparison(
        n=args.n,
        k=args.k,
        timing_n=args.timing_n,
        index_cache=args.index_cache,
        data_dir=args.data_dir,
        settings_filter=[s for s in args.settings.split(",") if s],
    )
    record["command"] = " ".join(["python -m ragzip.training.xrag eval", *argv])
    record["threads"] = args.threads
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
