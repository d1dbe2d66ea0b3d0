"""``python -m ragzip.training.sentence``: train the sentence classifier."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict

from ragzip.compressors.sentence.features import InputLimits
from ragzip.training.common import set_threads
from ragzip.training.sentence.config import TrainConfig
from ragzip.training.sentence.run import run

logger = logging.getLogger(__name__)


def _parse(argv: Sequence[str]) -> TrainConfig:
    parser = argparse.ArgumentParser(
        prog="python -m ragzip.training.sentence",
        description="Train the EXIT-style sentence classifier on the NQ-open train split.",
    )
    defaults = TrainConfig()
    ints = (
        "seed",
        "n_frozen",
        "head_hidden",
        "epochs",
        "batch_size",
        "retrieved_passages",
        "retrieved_sentences",
        "val_passages",
        "threads",
    )
    floats = ("lr", "head_lr", "weight_decay", "warmup", "threshold_recall")
    for f in ("data_dir", "out"):
        parser.add_argument(f"--{f.replace('_', '-')}", default=getattr(defaults, f))
    for f in ints:
        parser.add_argument(f"--{f.replace('_', '-')}", type=int, default=getattr(defaults, f))
    for f in floats:
        parser.add_argument(f"--{f.replace('_', '-')}", type=float, default=getattr(defaults, f))
    for f in ("train_limit", "val_limit"):
        parser.add_argument(f"--{f.replace('_', '-')}", type=int, default=None)
    for f, value in asdict(defaults.limits).items():
        parser.add_argument(f"--max-{f}-tokens", type=int, default=value, dest=f"limit_{f}")
    args = vars(parser.parse_args(list(argv)))
    limits = InputLimits(**{k[6:]: args.pop(k) for k in list(args) if k.startswith("limit_")})
    return TrainConfig(**args, limits=limits)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = _parse(args)
    set_threads(cfg.threads)
    record = run(cfg, args)
    logger.info("validation: %s", json.dumps(record["validation"]["at_threshold"]))
    logger.info("time: %s", json.dumps(record["time"]))


if __name__ == "__main__":
    main()
